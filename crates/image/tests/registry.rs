//! Pulls from a REAL local registry: Debian's `docker-registry` (CNCF distribution),
//! started per test on 127.0.0.1 with its own storage, once without auth and once with
//! htpasswd (bcrypt) auth. Test images are built here from Debian's `busybox-static`
//! and pushed with the crate's own client. Blob downloads are counted in the
//! registry's access log.
//!
//! Needs `/usr/bin/docker-registry`, `htpasswd` (apache2-utils) and `/bin/busybox`;
//! a test whose tools are missing fails with a message saying which.
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use bytes::Bytes;
use podium_image::client::{Session, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST};
use podium_image::credentials::Keyring;
use podium_image::digest::Digest;
use podium_image::registries::RegistriesConfig;
use podium_image::{Credential, ImageService, PullError, PullPolicy, Reference};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    fn start(auth: Option<(&str, &str)>) -> Registry {
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "/usr/bin/docker-registry missing: apt-get install docker-registry"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((u, p)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .expect("htpasswd missing: apt-get install apache2-utils");
            assert!(out.status.success());
            let hp = dir.path().join("htpasswd");
            std::fs::write(&hp, &out.stdout).unwrap();
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
                hp.display()
            ));
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = dir.path().join("registry.log");
        let lf = std::fs::File::create(&log).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdout(Stdio::from(lf.try_clone().unwrap()))
            .stderr(Stdio::from(lf))
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Blob GETs in the access log so far.
    fn blob_gets(&self) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
            .count()
    }

    fn session(&self, repo: &str, cred: Option<Credential>) -> Session {
        let cfg = RegistriesConfig::default();
        let ep = cfg.endpoints(&self.host(), repo).remove(0);
        Session::new(&cfg, ep, cred, true).unwrap()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Layer 1: /bin/busybox + symlinks (gzip). Layer 2: /etc/message (zstd).
fn busybox_layers(message: &str) -> Vec<(Vec<u8>, &'static str, Digest)> {
    let bb = std::fs::read("/bin/busybox")
        .expect("/bin/busybox missing: apt-get install busybox-static");
    let mut t = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    t.append_data(&mut dir, "bin/", &[][..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(bb.len() as u64);
    t.append_data(&mut h, "bin/busybox", &bb[..]).unwrap();
    for l in ["sh", "ls", "cat", "echo"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        t.append_link(&mut h, format!("bin/{l}"), "busybox")
            .unwrap();
    }
    let l1 = t.into_inner().unwrap();
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(message.len() as u64);
    t.append_data(&mut h, "etc/message", message.as_bytes())
        .unwrap();
    let l2 = t.into_inner().unwrap();
    vec![
        (
            gzip(&l1),
            "application/vnd.oci.image.layer.v1.tar+gzip",
            Digest::of_bytes(&l1),
        ),
        (
            zstd::encode_all(&l2[..], 3).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd",
            Digest::of_bytes(&l2),
        ),
    ]
}

/// Pushes an image; returns (manifest digest, manifest bytes).
async fn push_image(
    s: &Session,
    tag: Option<&str>,
    arch: &str,
    layers: &[(Vec<u8>, &'static str, Digest)],
) -> (Digest, Vec<u8>) {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.2.to_string()).collect();
    let config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let cd = Digest::of_bytes(&config);
    s.push_blob(&cd, Bytes::from(config.clone())).await.unwrap();
    let mut descs = Vec::new();
    for (data, media, _) in layers {
        let d = Digest::of_bytes(data);
        s.push_blob(&d, Bytes::from(data.clone())).await.unwrap();
        descs.push(
            serde_json::json!({"mediaType": media, "size": data.len(), "digest": d.to_string()}),
        );
    }
    let m = serde_json::json!({
        "schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": cd.to_string()},
        "layers": descs,
    });
    let mb = serde_json::to_vec(&m).unwrap();
    let md = Digest::of_bytes(&mb);
    s.push_manifest(
        tag.map(str::to_string)
            .unwrap_or_else(|| md.to_string())
            .as_str(),
        MEDIA_OCI_MANIFEST,
        Bytes::from(mb.clone()),
    )
    .await
    .unwrap();
    (md, mb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_pull_and_pull_policies() {
    let reg = Registry::start(None);
    let s = reg.session("test/busybox", None);
    let (d1, _) = push_image(&s, Some("1"), "amd64", &busybox_layers("one")).await;
    let data = tempfile::tempdir().unwrap();
    let svc = ImageService::open(data.path()).unwrap();
    let image = format!("{}/test/busybox:1", reg.host());

    // Never on an absent image: ErrImageNeverPull, no request made.
    let e = svc
        .ensure(&image, PullPolicy::Never, &[], None)
        .await
        .unwrap_err();
    assert!(matches!(e, PullError::NeverPull { .. }), "{e}");
    assert_eq!(e.reason(), "ErrImageNeverPull");
    assert_eq!(reg.blob_gets(), 0);

    // IfNotPresent on an absent image pulls; two concurrent pulls share downloads.
    let (a, b) = tokio::join!(
        svc.ensure(&image, PullPolicy::IfNotPresent, &[], None),
        svc.ensure(&image, PullPolicy::IfNotPresent, &[], None)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.handle.manifest_digest, d1);
    assert_eq!(b.handle.id, a.handle.id);
    assert_eq!(
        a.handle.image_ref,
        format!("{}/test/busybox@{d1}", reg.host())
    );
    assert_eq!(a.handle.config.cmd, ["/bin/sh"]);
    assert_eq!(a.handle.diff_ids.len(), 2);
    // Config + 2 layers, each fetched once in spite of two pulls.
    assert_eq!(reg.blob_gets(), 3, "blob GETs");
    let fetched: usize = [&a, &b]
        .iter()
        .map(|e| e.pulled.as_ref().unwrap().layers_fetched)
        .sum();
    assert_eq!(fetched, 2);

    // The rootfs: snapshots with busybox and the message.
    let cdir = data.path().join("c1");
    let m = svc.rootfs(&a.handle, &cdir).unwrap();
    assert_eq!(m.lowerdirs.len(), 2);
    assert_eq!(
        std::fs::read_to_string(m.lowerdirs[0].join("etc/message")).unwrap(),
        "one"
    );
    assert_eq!(
        std::fs::read(m.lowerdirs[1].join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        std::fs::read_link(m.lowerdirs[1].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );

    // IfNotPresent and Never on a present image: no registry contact.
    let e = svc
        .ensure(&image, PullPolicy::IfNotPresent, &[], None)
        .await
        .unwrap();
    assert!(e.pulled.is_none());
    let e = svc
        .ensure(&image, PullPolicy::Never, &[], None)
        .await
        .unwrap();
    assert!(e.pulled.is_none());
    assert_eq!(e.handle.manifest_digest, d1);

    // Always with an unchanged digest: resolved, but no blob downloaded.
    let before = reg.blob_gets();
    let e = svc
        .ensure(&image, PullPolicy::Always, &[], None)
        .await
        .unwrap();
    let st = e.pulled.unwrap();
    assert_eq!(st.layers_fetched, 0);
    assert_eq!(st.bytes_fetched, 0);
    assert_eq!(
        reg.blob_gets(),
        before,
        "Always with the same digest fetched blobs"
    );

    // Re-push the tag: Always now uses the new digest and fetches only what changed.
    let (d2, _) = push_image(&s, Some("1"), "amd64", &busybox_layers("two")).await;
    assert_ne!(d1, d2);
    let e = svc
        .ensure(&image, PullPolicy::Always, &[], None)
        .await
        .unwrap();
    assert_eq!(e.handle.manifest_digest, d2);
    assert_eq!(e.pulled.unwrap().layers_fetched, 1);
    assert_eq!(
        reg.blob_gets(),
        before + 2,
        "new config + new top layer only"
    );
    let m = svc.rootfs(&e.handle, &data.path().join("c2")).unwrap();
    assert_eq!(
        std::fs::read_to_string(m.lowerdirs[0].join("etc/message")).unwrap(),
        "two"
    );
    // IfNotPresent now answers with the re-pulled image.
    let e = svc
        .ensure(&image, PullPolicy::IfNotPresent, &[], None)
        .await
        .unwrap();
    assert_eq!(e.handle.manifest_digest, d2);

    // Pull by digest works and does not need the tag.
    let by_digest = format!("{}/test/busybox@{d1}", reg.host());
    let e = svc
        .ensure(&by_digest, PullPolicy::IfNotPresent, &[], None)
        .await
        .unwrap();
    assert_eq!(e.handle.manifest_digest, d1);

    // Not found and invalid names.
    let e = svc
        .ensure(
            &format!("{}/test/nothing:1", reg.host()),
            PullPolicy::Always,
            &[],
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, PullError::NotFound { .. }), "{e}");
    assert_eq!(e.reason(), "ErrImagePull");
    let e = svc
        .ensure("Bad/Name", PullPolicy::Always, &[], None)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "InvalidImageName");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_with_pull_secrets() {
    let password = "Corr3ct-Horse-Battery";
    let reg = Registry::start(Some(("alice", password)));
    let s = reg.session("private/busybox", Some(Credential::new("alice", password)));
    let (d, _) = push_image(&s, Some("v1"), "amd64", &busybox_layers("private")).await;
    let data = tempfile::tempdir().unwrap();
    let svc = ImageService::open(data.path()).unwrap();
    let image = format!("{}/private/busybox:v1", reg.host());

    // Anonymous: unauthorized, naming image and registry.
    let e = svc
        .ensure(&image, PullPolicy::IfNotPresent, &[], None)
        .await
        .unwrap_err();
    assert!(matches!(e, PullError::Unauthorized { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&image) && msg.contains(&reg.host()), "{msg}");
    assert!(
        msg.contains("UNAUTHORIZED"),
        "registry's answer missing: {msg}"
    );

    // Wrong password from a dockerconfigjson secret: unauthorized, password absent.
    let wrong = "Wr0ng-Secret-Pass";
    let secret = |pw: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("alice:{pw}"));
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host())
    };
    let k = Keyring::from_dockerconfigjson("regsecret", secret(wrong).as_bytes()).unwrap();
    let creds = k.lookup(&Reference::parse(&image).unwrap().name());
    assert_eq!(creds.len(), 1);
    let e = svc
        .ensure(&image, PullPolicy::IfNotPresent, &creds, None)
        .await
        .unwrap_err();
    assert!(matches!(e, PullError::Unauthorized { .. }), "{e}");
    assert_eq!(e.reason(), "ErrImagePull");
    let (shown, dbg) = (e.to_string(), format!("{e:?}"));
    assert!(
        !shown.contains(wrong) && !dbg.contains(wrong),
        "{shown} / {dbg}"
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("alice:{wrong}"));
    assert!(!shown.contains(&b64) && !dbg.contains(&b64));

    // Right password (a wrong one first, as a second secret would be): pulls.
    let good = Keyring::from_dockerconfigjson("good", secret(password).as_bytes()).unwrap();
    let all = podium_image::lookup_all(&[k, good], &Reference::parse(&image).unwrap().name());
    assert_eq!(all.len(), 2);
    let e = svc
        .ensure(&image, PullPolicy::IfNotPresent, &all, None)
        .await
        .unwrap();
    assert_eq!(e.handle.manifest_digest, d);
    assert_eq!(e.pulled.unwrap().layers_fetched, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_io_through_a_mirror() {
    let reg = Registry::start(None);
    let s = reg.session("library/busybox", None);
    let (d, _) = push_image(&s, Some("latest"), "amd64", &busybox_layers("hub")).await;
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("registries.yaml"),
        format!(
            "mirrors:\n  docker.io:\n    endpoint:\n      - \"http://{}\"\n",
            reg.host()
        ),
    )
    .unwrap();
    let svc = ImageService::open(data.path()).unwrap();
    // The unchanged manifest's `image: busybox` with its default policy (no tag: Always).
    let policy = PullPolicy::Always;
    let e = svc.ensure("busybox", policy, &[], None).await.unwrap();
    assert_eq!(e.handle.manifest_digest, d);
    assert_eq!(e.handle.image_ref, format!("docker.io/library/busybox@{d}"));
    assert_eq!(
        e.handle.reference.to_string(),
        "docker.io/library/busybox:latest"
    );
    let e = svc
        .ensure(
            "docker.io/library/busybox:latest",
            PullPolicy::Never,
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(e.handle.manifest_digest, d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_arch_index_picks_amd64() {
    let reg = Registry::start(None);
    let s = reg.session("multi/busybox", None);
    let (amd, amd_bytes) = push_image(&s, None, "amd64", &busybox_layers("amd64")).await;
    let (arm, arm_bytes) = push_image(&s, None, "arm64", &busybox_layers("arm64")).await;
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX,
        "manifests": [
            {"mediaType": MEDIA_OCI_MANIFEST, "digest": arm.to_string(), "size": arm_bytes.len(),
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": MEDIA_OCI_MANIFEST, "digest": amd.to_string(), "size": amd_bytes.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
        ]
    });
    let ib = serde_json::to_vec(&index).unwrap();
    let id = Digest::of_bytes(&ib);
    s.push_manifest("latest", MEDIA_OCI_INDEX, Bytes::from(ib))
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let svc = ImageService::open(data.path()).unwrap();
    let e = svc
        .ensure(
            &format!("{}/multi/busybox", reg.host()),
            PullPolicy::Always,
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(e.handle.manifest_digest, amd);
    assert_eq!(
        e.handle.image_ref,
        format!("{}/multi/busybox@{id}", reg.host())
    );
    let m = svc.rootfs(&e.handle, &data.path().join("c")).unwrap();
    assert_eq!(
        std::fs::read_to_string(m.lowerdirs[0].join("etc/message")).unwrap(),
        "amd64"
    );
    // Only the amd64 image's blobs were downloaded: config + 2 layers.
    assert_eq!(reg.blob_gets(), 3);
}
