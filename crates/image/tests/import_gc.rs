//! Import of an OCI layout directory, an OCI archive and a `docker save` archive (no
//! registry), then image GC between the high/low thresholds with an in-use image.
#![allow(clippy::unwrap_used)]

use podium_image::digest::Digest;
use podium_image::gc::{self, DiskUsage, GcPolicy};
use podium_image::import::import_path;
use podium_image::{ImageService, PullPolicy};
use std::collections::HashSet;
use std::path::Path;

fn layer(name: &str, content: &str) -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(content.len() as u64);
    t.append_data(&mut h, name, content.as_bytes()).unwrap();
    t.into_inner().unwrap()
}

fn config(diff_ids: &[Digest]) -> Vec<u8> {
    let ids: Vec<String> = diff_ids.iter().map(|d| d.to_string()).collect();
    serde_json::to_vec(&serde_json::json!({"architecture":"amd64","os":"linux",
        "config":{"Entrypoint":["/bin/hello"]},"rootfs":{"type":"layers","diff_ids":ids}}))
    .unwrap()
}

/// Writes an OCI layout with one image named `name` (a ref.name annotation).
fn oci_layout(dir: &Path, name: &str, content: &str) -> Digest {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |b: &[u8]| {
        let d = Digest::of_bytes(b);
        std::fs::write(blobs.join(d.hex()), b).unwrap();
        d
    };
    let l = layer("etc/hello", content);
    let ld = put(&l);
    let c = config(std::slice::from_ref(&ld));
    let cd = put(&c);
    let m = serde_json::to_vec(&serde_json::json!({"schemaVersion":2,
        "mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":c.len(),"digest":cd.to_string()},
        "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","size":l.len(),"digest":ld.to_string()}]}))
    .unwrap();
    let md = put(&m);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&serde_json::json!({"schemaVersion":2,
        "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":m.len(),"digest":md.to_string(),
        "annotations":{"org.opencontainers.image.ref.name":name}}]})).unwrap()).unwrap();
    md
}

fn tar_dir(dir: &Path, out: &Path) {
    let mut t = tar::Builder::new(std::fs::File::create(out).unwrap());
    t.append_dir_all(".", dir).unwrap();
    t.finish().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_layouts_and_archives_then_gc() {
    let data = tempfile::tempdir().unwrap();
    let svc = ImageService::open(data.path()).unwrap();

    // OCI layout directory, named by a full reference.
    let src = tempfile::tempdir().unwrap();
    let md = oci_layout(src.path(), "example.com/app:1", "from-layout");
    let recs = import_path(&svc, src.path(), None).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].manifest_digest, md);
    let e = svc
        .ensure("example.com/app:1", PullPolicy::Never, &[], None)
        .await
        .unwrap();
    assert_eq!(e.handle.config.entrypoint, ["/bin/hello"]);
    let m = svc.rootfs(&e.handle, &data.path().join("c")).unwrap();
    assert_eq!(
        std::fs::read_to_string(m.lowerdirs[0].join("etc/hello")).unwrap(),
        "from-layout"
    );

    // OCI archive with only a tag annotation + --name.
    let src2 = tempfile::tempdir().unwrap();
    oci_layout(src2.path(), "2", "from-archive");
    let ar = data.path().join("oci.tar");
    tar_dir(src2.path(), &ar);
    import_path(&svc, &ar, Some("example.com/other")).unwrap();
    let e2 = svc
        .ensure("example.com/other:2", PullPolicy::Never, &[], None)
        .await
        .unwrap();

    // docker save: manifest.json + <id>.json + layer.tar, with a symlinked layer.
    let ds = tempfile::tempdir().unwrap();
    let l = layer("etc/hello", "from-docker-save");
    let ld = Digest::of_bytes(&l);
    let c = config(&[ld]);
    let cd = Digest::of_bytes(&c);
    std::fs::create_dir_all(ds.path().join("abc")).unwrap();
    std::fs::write(ds.path().join("abc/layer.tar"), &l).unwrap();
    std::fs::create_dir_all(ds.path().join("def")).unwrap();
    std::os::unix::fs::symlink("../abc/layer.tar", ds.path().join("def/layer.tar")).unwrap();
    std::fs::write(ds.path().join(format!("{}.json", cd.hex())), &c).unwrap();
    std::fs::write(ds.path().join("manifest.json"), serde_json::to_vec(&serde_json::json!([
        {"Config": format!("{}.json", cd.hex()), "RepoTags": ["saved:1"], "Layers": ["def/layer.tar"]}])).unwrap()).unwrap();
    let dar = data.path().join("save.tar");
    tar_dir(ds.path(), &dar);
    let recs = import_path(&svc, &dar, None).unwrap();
    assert_eq!(recs[0].id, cd);
    let e3 = svc
        .ensure("saved:1", PullPolicy::Never, &[], None)
        .await
        .unwrap();
    let m = svc.rootfs(&e3.handle, &data.path().join("c3")).unwrap();
    assert_eq!(
        std::fs::read_to_string(m.lowerdirs[0].join("etc/hello")).unwrap(),
        "from-docker-save"
    );

    // A tampered layout blob is refused by the store.
    let bad = tempfile::tempdir().unwrap();
    oci_layout(bad.path(), "example.com/bad:1", "x");
    for e in std::fs::read_dir(bad.path().join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        if std::fs::read(&p).unwrap().starts_with(b"etc/hello") {
            let mut b = std::fs::read(&p).unwrap();
            let n = b.len();
            b[n / 3] ^= 1;
            std::fs::write(&p, b).unwrap();
        }
    }
    assert!(import_path(&svc, bad.path(), None).is_err());
    assert!(svc
        .ensure("example.com/bad:1", PullPolicy::Never, &[], None)
        .await
        .is_err());

    // GC: below the high mark nothing happens.
    let policy = GcPolicy {
        min_age: std::time::Duration::ZERO,
        ..GcPolicy::default()
    };
    let in_use: HashSet<Digest> = [e.handle.id.clone()].into();
    let r = gc::collect(
        &svc,
        &policy,
        DiskUsage {
            capacity: 1000,
            available: 200,
        },
        &in_use,
    )
    .unwrap();
    assert!(r.removed_images.is_empty());
    // Above it: LRU first, never the in-use one; stop once enough is freed.
    svc.metadata().set_last_used(&e.handle.id, 1).unwrap();
    svc.metadata().set_last_used(&e2.handle.id, 2).unwrap();
    svc.metadata().set_last_used(&e3.handle.id, 3).unwrap();
    let r = gc::collect(
        &svc,
        &policy,
        DiskUsage {
            capacity: 1000,
            available: 100,
        },
        &in_use,
    )
    .unwrap();
    assert_eq!(r.removed_images.first(), Some(&e2.handle.id), "{r:?}");
    assert!(!r.removed_images.contains(&e.handle.id));
    assert!(r.removed_blobs >= 3 && r.removed_snapshots >= 1, "{r:?}");
    assert!(svc
        .ensure("example.com/other:2", PullPolicy::Never, &[], None)
        .await
        .is_err());
    assert!(svc
        .ensure("example.com/app:1", PullPolicy::Never, &[], None)
        .await
        .is_ok());
    assert!(svc.store().contains(&e.handle.manifest_digest));
    // Real statvfs works on the data dir.
    assert!(gc::disk_usage(data.path()).unwrap().capacity > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_import_ls_inspect_rm() {
    use podium_image::cli::run_image_cli;
    let data = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    oci_layout(src.path(), "example.com/cli:1", "cli");
    let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let p = src.path().to_str().unwrap();
    assert_eq!(
        run_image_cli(data.path(), &a(&["import", p]))
            .await
            .unwrap(),
        0
    );
    assert_eq!(run_image_cli(data.path(), &a(&["ls"])).await.unwrap(), 0);
    assert_eq!(
        run_image_cli(data.path(), &a(&["inspect", "example.com/cli:1"]))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        run_image_cli(data.path(), &a(&["inspect", "nope:1"]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(run_image_cli(data.path(), &a(&["bogus"])).await.unwrap(), 2);
    assert_eq!(
        run_image_cli(data.path(), &a(&["rm", "example.com/cli:1"]))
            .await
            .unwrap(),
        0
    );
    let svc = ImageService::open(data.path()).unwrap();
    assert!(svc.metadata().list().is_empty());
    assert!(
        svc.store().list().unwrap().is_empty(),
        "rm pruned the blobs"
    );
    assert!(svc.snapshots().list().unwrap().is_empty());
}
