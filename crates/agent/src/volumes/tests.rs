//! End-to-end tests of the volume manager on the real filesystem. They run as root (as CI
//! does): tmpfs and bind mounts are real and checked in /proc/self/mountinfo.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::facts::NodeAllocatable;

struct Env {
    tmp: Option<tempfile::TempDir>,
    base: PathBuf,
    vm: VolumeManager,
}

impl Drop for Env {
    /// TempDir's recursive delete crosses mount points: after a failed test a bind mount
    /// of a host directory could be left here, and deleting through it would delete host
    /// files. Unmount everything first; if anything stays mounted, keep the directory.
    fn drop(&mut self) {
        let clean = mounts::unmount_all_under(&self.base).is_ok_and(|left| left.is_empty());
        if !clean {
            if let Some(t) = self.tmp.take() {
                let kept = t.keep();
                eprintln!("left {} in place: still mounted", kept.display());
            }
        }
    }
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(tmp.path()).unwrap();
    let vm = VolumeManager::new(base.join("pods"), "podium-voltest");
    Env {
        tmp: Some(tmp),
        base,
        vm,
    }
}

fn pod(uid: &str, volumes: Value) -> Value {
    json!({
        "metadata": {
            "name": "web", "namespace": "ns", "uid": uid,
            "labels": {"tier": "front", "app": "nginx"},
            "annotations": {"build": "42"}
        },
        "spec": {
            "containers": [{
                "name": "main",
                "resources": {
                    "requests": {"cpu": "250m", "memory": "32Mi"},
                    "limits": {"cpu": "1", "memory": "64Mi"}
                }
            }],
            "volumes": volumes
        }
    })
}

fn facts() -> NodeFacts {
    NodeFacts {
        node_name: "node1".into(),
        allocatable: NodeAllocatable {
            memory: Quantity::parse("1Gi").unwrap(),
            cpu: Quantity::parse("4").unwrap(),
            ..NodeAllocatable::default()
        },
        ..NodeFacts::default()
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().mode() & 0o7777
}

fn lmode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn mounts_at(p: &Path) -> Vec<mounts::MountEntry> {
    mounts::mountinfo()
        .unwrap()
        .into_iter()
        .filter(|m| m.mount_point == p)
        .collect()
}

fn tmpfs_bytes(p: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(p).unwrap();
    s.blocks() * s.fragment_size()
}

fn resolved() -> Resolved {
    let mut r = Resolved::default();
    r.configmaps.insert(
        "cfg".into(),
        json!({"metadata": {"name": "cfg"}, "data": {"game.properties": "lives=3", "ui.properties": "color=red"}, "binaryData": {"blob": "AP8="}}),
    );
    r.secrets.insert(
        "creds".into(),
        json!({"metadata": {"name": "creds"}, "data": {"username": "YWRtaW4=", "password": "czNjcjN0"}}),
    );
    r
}

#[test]
fn empty_dir_on_disk_is_shared_kept_and_removed_with_the_pod() {
    let e = env();
    let p = pod("u-disk", json!([{"name": "cache", "emptyDir": {}}]));
    let vols = e.vm.setup(&p, &resolved(), &facts()).unwrap();
    let host = &vols["cache"];
    let want = e
        .base
        .join("pods/u-disk/volumes/kubernetes.io~empty-dir/cache");
    assert_eq!(host.path, want);
    assert!(!host.readonly);
    assert_eq!(mode(&want), 0o777);
    assert!(mounts_at(&want).is_empty(), "disk emptyDir is not a mount");
    fs::write(want.join("dump.rdb"), "data").unwrap();
    // A second setup (container restart, agent restart) keeps the data.
    e.vm.setup(&p, &resolved(), &facts()).unwrap();
    assert_eq!(fs::read_to_string(want.join("dump.rdb")).unwrap(), "data");
    assert_eq!(e.vm.list().unwrap(), ["u-disk"]);
    e.vm.teardown("u-disk").unwrap();
    assert!(!e.base.join("pods/u-disk").exists());
    assert!(e.vm.list().unwrap().is_empty());
}

#[test]
fn memory_empty_dir_is_a_sized_tmpfs_unmounted_by_teardown() {
    let e = env();
    let p = pod(
        "u-mem",
        json!([
            {"name": "fast", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
            {"name": "nolimit", "emptyDir": {"medium": "Memory"}}
        ]),
    );
    let vols = e.vm.setup(&p, &resolved(), &facts()).unwrap();
    let fast = &vols["fast"].path;
    let m = mounts_at(fast);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].fs_type, "tmpfs");
    assert_eq!(m[0].source, "podium-voltest");
    assert_eq!(tmpfs_bytes(fast), 16 << 20);
    // No sizeLimit: the pod's memory limit (64Mi) is below node allocatable (1Gi).
    assert_eq!(tmpfs_bytes(&vols["nolimit"].path), 64 << 20);
    fs::write(fast.join("f"), "x").unwrap();
    // Set up again: not mounted twice, content kept.
    e.vm.setup(&p, &resolved(), &facts()).unwrap();
    assert_eq!(mounts_at(fast).len(), 1);
    assert_eq!(fs::read_to_string(fast.join("f")).unwrap(), "x");

    let pod_dir = e.base.join("pods/u-mem");
    e.vm.teardown("u-mem").unwrap();
    assert!(mounts::mounts_under(&pod_dir).unwrap().is_empty());
    assert!(!pod_dir.exists());
    e.vm.teardown("u-mem").unwrap();
}

#[test]
fn memory_empty_dir_without_any_limit_gets_node_allocatable() {
    let e = env();
    let mut p = pod(
        "u-alloc",
        json!([{"name": "m", "emptyDir": {"medium": "Memory"}}]),
    );
    p["spec"]["containers"][0]["resources"] = json!({});
    let mut f = facts();
    f.allocatable.memory = Quantity::parse("96Mi").unwrap();
    let vols = e.vm.setup(&p, &resolved(), &f).unwrap();
    assert_eq!(tmpfs_bytes(&vols["m"].path), 96 << 20);
    e.vm.teardown("u-alloc").unwrap();
}

#[test]
fn configmap_volume_tree_items_and_modes() {
    let e = env();
    let p = pod(
        "u-cm",
        json!([
            {"name": "all", "configMap": {"name": "cfg", "defaultMode": 0o600}},
            {"name": "some", "configMap": {"name": "cfg", "items": [
                {"key": "game.properties", "path": "conf/game", "mode": 0o400},
                {"key": "blob", "path": "bin"}
            ]}}
        ]),
    );
    let vols = e.vm.setup(&p, &resolved(), &facts()).unwrap();
    let all = &vols["all"];
    assert!(all.readonly);
    assert_eq!(
        all.path,
        e.base.join("pods/u-cm/volumes/kubernetes.io~configmap/all")
    );
    assert!(mounts_at(&all.path).is_empty(), "configMap is on disk");
    let ents = entries(&all.path);
    assert_eq!(ents.len(), 5, "{ents:?}");
    assert!(ents[0].starts_with("..20"));
    assert_eq!(&ents[1], "..data");
    assert_eq!(&ents[2..], ["blob", "game.properties", "ui.properties"]);
    assert_eq!(
        fs::read_link(all.path.join("game.properties")).unwrap(),
        Path::new("..data/game.properties")
    );
    assert_eq!(
        fs::read_link(all.path.join("..data")).unwrap(),
        Path::new(&ents[0])
    );
    assert_eq!(
        fs::read_to_string(all.path.join("game.properties")).unwrap(),
        "lives=3"
    );
    assert_eq!(fs::read(all.path.join("blob")).unwrap(), [0x00, 0xff]);
    assert_eq!(mode(&all.path.join("ui.properties")), 0o600);

    let some = &vols["some"].path;
    assert_eq!(entries(some)[2..], ["bin", "conf"]);
    assert_eq!(
        fs::read_to_string(some.join("conf/game")).unwrap(),
        "lives=3"
    );
    assert_eq!(mode(&some.join("conf/game")), 0o400);
    assert_eq!(mode(&some.join("bin")), 0o644);
    assert!(
        !some.join("ui.properties").exists(),
        "keys not in items are skipped"
    );
    e.vm.teardown("u-cm").unwrap();
}

#[test]
fn missing_sources_fail_unless_optional() {
    let e = env();
    let p = pod("u-miss", json!([{"name": "x", "configMap": {"name": "x"}}]));
    let err = e.vm.setup(&p, &resolved(), &facts()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"x\" : configmap \"x\" not found"
    );
    assert_eq!(err.reason(), "FailedMount");
    assert!(matches!(&err, VolumeError::SetUp { cause, .. } if cause.is_missing_source()));
    assert!(
        !e.base
            .join("pods/u-miss/volumes/kubernetes.io~configmap/x")
            .exists(),
        "nothing half-made"
    );

    let p = pod(
        "u-miss",
        json!([{"name": "s", "secret": {"secretName": "nope"}}]),
    );
    assert_eq!(
        e.vm.setup(&p, &resolved(), &facts())
            .unwrap_err()
            .to_string(),
        "MountVolume.SetUp failed for volume \"s\" : secret \"nope\" not found"
    );
    let p = pod(
        "u-miss",
        json!([{"name": "k", "configMap": {"name": "cfg", "items": [{"key": "nokey", "path": "a"}]}}]),
    );
    assert_eq!(
        e.vm.setup(&p, &resolved(), &facts()).unwrap_err().to_string(),
        "MountVolume.SetUp failed for volume \"k\" : configmap references non-existent config key: nokey"
    );

    // Optional: an empty volume (only the AtomicWriter's own entries).
    let p = pod(
        "u-miss",
        json!([
            {"name": "o", "configMap": {"name": "x", "optional": true}},
            {"name": "os", "secret": {"secretName": "nope", "optional": true}}
        ]),
    );
    let vols = e.vm.setup(&p, &resolved(), &facts()).unwrap();
    for v in ["o", "os"] {
        let ents = entries(&vols[v].path);
        assert_eq!(ents.len(), 2, "{ents:?}");
        assert_eq!(ents[1], "..data");
    }
    e.vm.teardown("u-miss").unwrap();
}

#[test]
fn secret_volume_is_decoded_onto_tmpfs() {
    let e = env();
    let p = pod(
        "u-sec",
        json!([{"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o440,
            "items": [{"key": "password", "path": "db/pass", "mode": 0o400}, {"key": "username", "path": "user"}]}}]),
    );
    let vols = e.vm.setup(&p, &resolved(), &facts()).unwrap();
    let v = &vols["creds"];
    assert!(v.readonly);
    assert_eq!(
        v.path,
        e.base.join("pods/u-sec/volumes/kubernetes.io~secret/creds")
    );
    let m = mounts_at(&v.path);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].fs_type, "tmpfs");
    assert_eq!(
        fs::read_to_string(v.path.join("db/pass")).unwrap(),
        "s3cr3t"
    );
    assert_eq!(fs::read_to_string(v.path.join("user")).unwrap(), "admin");
    assert_eq!(mode(&v.path.join("db/pass")), 0o400);
    assert_eq!(mode(&v.path.join("user")), 0o440);
    assert_eq!(
        fs::read_link(v.path.join("db")).unwrap(),
        Path::new("..data/db")
    );
    e.vm.teardown("u-sec").unwrap();
    assert!(mounts::mounts_under(&e.base).unwrap().is_empty());
}

#[test]
fn downward_api_volume_values_and_modes() {
    let e = env();
    let p = pod(
        "u-dw",
        json!([{"name": "podinfo", "downwardAPI": {"defaultMode": 0o644, "items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o400},
            {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}},
            {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
            {"path": "tier", "fieldRef": {"fieldPath": "metadata.labels['tier']"}},
            {"path": "res/mem_limit", "resourceFieldRef": {"containerName": "main", "resource": "limits.memory", "divisor": "1Mi"}},
            {"path": "res/cpu_request", "resourceFieldRef": {"containerName": "main", "resource": "requests.cpu", "divisor": "1m"}}
        ]}}]),
    );
    let vols = e.vm.setup(&p, &resolved(), &facts()).unwrap();
    let d = &vols["podinfo"].path;
    assert!(d.ends_with("kubernetes.io~downward-api/podinfo"));
    let read = |f: &str| fs::read_to_string(d.join(f)).unwrap();
    assert_eq!(read("labels"), "app=\"nginx\"\ntier=\"front\"");
    assert_eq!(read("annotations"), "build=\"42\"");
    assert_eq!(read("name"), "web");
    assert_eq!(read("ns"), "ns");
    assert_eq!(read("uid"), "u-dw");
    assert_eq!(read("tier"), "front");
    assert_eq!(read("res/mem_limit"), "64");
    assert_eq!(read("res/cpu_request"), "250");
    assert_eq!(mode(&d.join("name")), 0o400);
    assert_eq!(mode(&d.join("labels")), 0o644);

    let bad = pod(
        "u-dw",
        json!([{"name": "b", "downwardAPI": {"items": [{"path": "x", "fieldRef": {"fieldPath": "metadata.nope"}}]}}]),
    );
    assert_eq!(
        e.vm.setup(&bad, &resolved(), &facts())
            .unwrap_err()
            .to_string(),
        "MountVolume.SetUp failed for volume \"b\" : unsupported fieldPath: metadata.nope"
    );
    let escape = pod(
        "u-dw",
        json!([{"name": "c", "downwardAPI": {"items": [{"path": "../x", "fieldRef": {"fieldPath": "metadata.name"}}]}}]),
    );
    assert_eq!(
        e.vm.setup(&escape, &resolved(), &facts())
            .unwrap_err()
            .to_string(),
        "MountVolume.SetUp failed for volume \"c\" : invalid path: must not contain '..': ../x"
    );
    e.vm.teardown("u-dw").unwrap();
}

#[test]
fn projected_volume_merges_sources_with_its_default_mode() {
    let e = env();
    let p = pod(
        "u-proj",
        json!([{"name": "all-in-one", "projected": {"defaultMode": 0o640, "sources": [
            {"configMap": {"name": "cfg", "items": [{"key": "game.properties", "path": "cfg/game"}]}},
            {"secret": {"name": "creds", "items": [{"key": "username", "path": "secret/user", "mode": 0o400}]}},
            {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
        ]}}]),
    );
    let vols = e.vm.setup(&p, &resolved(), &facts()).unwrap();
    let d = &vols["all-in-one"].path;
    assert!(vols["all-in-one"].readonly);
    assert!(d.ends_with("kubernetes.io~projected/all-in-one"));
    assert_eq!(mounts_at(d).len(), 1, "projected is on tmpfs");
    assert_eq!(entries(d)[2..], ["cfg", "labels", "secret"]);
    assert_eq!(fs::read_to_string(d.join("cfg/game")).unwrap(), "lives=3");
    assert_eq!(fs::read_to_string(d.join("secret/user")).unwrap(), "admin");
    assert_eq!(
        fs::read_to_string(d.join("labels")).unwrap(),
        "app=\"nginx\"\ntier=\"front\""
    );
    assert_eq!(mode(&d.join("cfg/game")), 0o640);
    assert_eq!(mode(&d.join("secret/user")), 0o400);
    e.vm.teardown("u-proj").unwrap();
}

#[test]
fn refresh_swaps_content_atomically() {
    let e = env();
    let p = pod(
        "u-ref",
        json!([
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "scratch", "emptyDir": {}}
        ]),
    );
    let mut r = resolved();
    let vols = e.vm.setup(&p, &r, &facts()).unwrap();
    let d = vols["cfg"].path.clone();
    let file = d.join("game.properties");
    let mut reader = fs::File::open(&file).unwrap();
    let old_ts = fs::read_link(d.join("..data")).unwrap();

    // Unchanged sources: nothing rewritten.
    e.vm.refresh(&p, &r, &facts()).unwrap();
    assert_eq!(fs::read_link(d.join("..data")).unwrap(), old_ts);

    r.configmaps.insert(
        "cfg".into(),
        json!({"data": {"game.properties": "lives=9", "new.properties": "n=1"}}),
    );
    e.vm.refresh(&p, &r, &facts()).unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), "lives=9");
    assert_eq!(fs::read_to_string(d.join("new.properties")).unwrap(), "n=1");
    assert!(fs::symlink_metadata(d.join("ui.properties")).is_err());
    assert!(fs::symlink_metadata(d.join("blob")).is_err());
    assert!(!d.join(&old_ts).exists());
    let mut old = String::new();
    reader.read_to_string(&mut old).unwrap();
    assert_eq!(old, "lives=3", "an open reader keeps the old file");

    // The source disappears: an error, and the content stays as it was.
    r.configmaps.clear();
    let err = e.vm.refresh(&p, &r, &facts()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"cfg\" : configmap \"cfg\" not found"
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), "lives=9");
    e.vm.teardown("u-ref").unwrap();
}

#[test]
fn fs_group_ownership_as_kubelet() {
    let e = env();
    let mut p = pod(
        "u-fsg",
        json!([
            {"name": "scratch", "emptyDir": {}},
            {"name": "mem", "emptyDir": {"medium": "Memory"}},
            {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o400}},
            {"name": "sec", "secret": {"secretName": "creds"}}
        ]),
    );
    p["spec"]["securityContext"] = json!({"fsGroup": 2345});
    let vols = e.vm.setup(&p, &resolved(), &facts()).unwrap();
    let scratch = &vols["scratch"].path;
    let m = fs::metadata(scratch).unwrap();
    assert_eq!(m.gid(), 2345);
    assert_eq!(m.mode() & 0o7777, 0o2777, "setgid dir, g+rwx");
    let mem = fs::metadata(&vols["mem"].path).unwrap();
    assert_eq!(mem.gid(), 2345);
    assert_eq!(mem.mode() & 0o7777, 0o3777, "tmpfs 1777 plus setgid");

    let cfg = &vols["cfg"].path;
    let f = cfg.join("game.properties");
    assert_eq!(fs::metadata(&f).unwrap().gid(), 2345);
    assert_eq!(mode(&f), 0o440, "0400 plus g+r (read-only volume)");
    let ts = cfg.join(fs::read_link(cfg.join("..data")).unwrap());
    assert_eq!(fs::metadata(&ts).unwrap().gid(), 2345);
    assert_eq!(mode(&ts), 0o2755);
    assert_eq!(
        fs::symlink_metadata(cfg.join("..data")).unwrap().gid(),
        2345
    );
    let user = vols["sec"].path.join("username");
    assert_eq!(fs::metadata(&user).unwrap().gid(), 2345);
    assert_eq!(mode(&user), 0o644);
    e.vm.teardown("u-fsg").unwrap();

    // Without fsGroup nothing is re-grouped.
    let e2 = env();
    let p = pod("u-nofsg", json!([{"name": "scratch", "emptyDir": {}}]));
    let vols = e2.vm.setup(&p, &resolved(), &facts()).unwrap();
    assert_eq!(fs::metadata(&vols["scratch"].path).unwrap().gid(), 0);
    assert_eq!(lmode(&vols["scratch"].path), 0o777);
    e2.vm.teardown("u-nofsg").unwrap();
}

#[test]
fn host_path_volumes_are_checked_and_used_in_place() {
    let e = env();
    let data = e.base.join("hostdata");
    let p = pod(
        "u-hp",
        json!([
            {"name": "made", "hostPath": {"path": data.join("made"), "type": "DirectoryOrCreate"}},
            {"name": "f", "hostPath": {"path": data.join("made/file"), "type": "FileOrCreate"}},
            {"name": "null", "hostPath": {"path": "/dev/null", "type": "CharDevice"}}
        ]),
    );
    let vols = e.vm.setup(&p, &resolved(), &facts()).unwrap();
    assert_eq!(vols["made"].path, data.join("made"));
    assert!(!vols["made"].readonly);
    assert!(data.join("made").is_dir());
    assert!(data.join("made/file").is_file());

    let p = pod(
        "u-hp",
        json!([{"name": "d", "hostPath": {"path": data.join("made/file"), "type": "Directory"}}]),
    );
    let err = e.vm.setup(&p, &resolved(), &facts()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "MountVolume.SetUp failed for volume \"d\" : hostPath type check failed: {} is not a directory",
            data.join("made/file").display()
        )
    );
    // Teardown never touches the host path.
    e.vm.teardown("u-hp").unwrap();
    assert!(data.join("made/file").is_file());
}

#[test]
fn unsupported_volume_types_fail_setup() {
    let e = env();
    let p = pod(
        "u-pvc",
        json!([{"name": "claim", "persistentVolumeClaim": {"claimName": "c"}}]),
    );
    assert_eq!(
        e.vm.setup(&p, &resolved(), &facts()).unwrap_err().to_string(),
        "MountVolume.SetUp failed for volume \"claim\" : volume type persistentVolumeClaim is not supported by Podium"
    );
    assert!(e
        .vm
        .setup(&pod("../x", json!([])), &resolved(), &facts())
        .is_err());
}

/// A directory outside every volume (standing in for a host directory such as /etc, so
/// that even a broken implementation only ever exposes this test's own files), holding
/// `passwd` with the content `host`.
fn outside(e: &Env) -> PathBuf {
    let d = e.base.join("outside");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("passwd"), "host").unwrap();
    d
}

/// A pod with one disk emptyDir, its host path returned.
fn scratch(e: &Env, uid: &str) -> VolumeHost {
    let p = pod(uid, json!([{"name": "scratch", "emptyDir": {}}]));
    e.vm.setup(&p, &resolved(), &facts()).unwrap()["scratch"].clone()
}

#[test]
fn subpath_mounts_the_resolved_inode_on_a_staging_path() {
    let e = env();
    let v = scratch(&e, "u-sp");
    fs::create_dir_all(v.path.join("a/b")).unwrap();
    fs::write(v.path.join("a/b/f"), "inside").unwrap();
    std::os::unix::fs::symlink("a/b", v.path.join("link")).unwrap();

    let staged = e.vm.subpath("u-sp", "main", 2, &v, "a/b").unwrap();
    assert_eq!(staged, e.base.join("pods/u-sp/volume-subpaths/main/2"));
    assert_eq!(mounts_at(&staged).len(), 1);
    assert_eq!(fs::read_to_string(staged.join("f")).unwrap(), "inside");
    fs::write(staged.join("g"), "via mount").unwrap();
    assert_eq!(
        fs::read_to_string(v.path.join("a/b/g")).unwrap(),
        "via mount"
    );

    // A file, through a symlink that stays inside the volume.
    let staged = e.vm.subpath("u-sp", "main", 3, &v, "link/f").unwrap();
    assert!(staged.is_file());
    assert_eq!(fs::read_to_string(&staged).unwrap(), "inside");

    // Again for the same mount (container restart): re-bound, still one mount.
    let staged = e.vm.subpath("u-sp", "main", 3, &v, "a/b/g").unwrap();
    assert_eq!(mounts_at(&staged).len(), 1);
    assert_eq!(fs::read_to_string(&staged).unwrap(), "via mount");

    // Missing directories are created with the volume root's mode.
    let staged = e.vm.subpath("u-sp", "side", 0, &v, "new/dir").unwrap();
    assert!(staged.is_dir());
    assert_eq!(mode(&v.path.join("new")), 0o777);
    assert_eq!(mode(&v.path.join("new/dir")), 0o777);

    e.vm.teardown("u-sp").unwrap();
    assert!(mounts::mounts_under(&e.base).unwrap().is_empty());
    assert!(!e.base.join("pods/u-sp").exists());
}

#[test]
fn subpath_into_a_configmap_key_follows_its_internal_symlinks() {
    let e = env();
    let p = pod(
        "u-spcm",
        json!([{"name": "cfg", "configMap": {"name": "cfg"}}]),
    );
    let v = e.vm.setup(&p, &resolved(), &facts()).unwrap()["cfg"].clone();
    let staged =
        e.vm.subpath("u-spcm", "main", 0, &v, "game.properties")
            .unwrap();
    assert_eq!(fs::read_to_string(&staged).unwrap(), "lives=3");
    e.vm.teardown("u-spcm").unwrap();
}

#[test]
fn subpath_symlinks_cannot_escape_the_volume() {
    let e = env();
    let v = scratch(&e, "u-evil");
    let host = outside(&e);
    std::os::unix::fs::symlink(&host, v.path.join("evil")).unwrap();
    // The volume is <base>/pods/u-evil/volumes/kubernetes.io~empty-dir/scratch.
    std::os::unix::fs::symlink("../../../../../outside", v.path.join("up")).unwrap();
    fs::create_dir(v.path.join("d")).unwrap();
    std::os::unix::fs::symlink("../../../../../../outside/passwd", v.path.join("d/rel")).unwrap();
    std::os::unix::fs::symlink("loop", v.path.join("loop")).unwrap();
    fs::write(v.path.join("file"), "x").unwrap();

    for sub in [
        "evil",
        "evil/passwd",
        "up",
        "up/passwd",
        "d/rel",
        "loop",
        "file/x",
    ] {
        let err = e.vm.subpath("u-evil", "main", 0, &v, sub).unwrap_err();
        assert_eq!(err.reason(), "Failed");
        assert_eq!(
            err.to_string(),
            "failed to prepare subPath for volumeMount #0 of container \"main\"",
            "{sub}"
        );
        let detail = std::error::Error::source(&err).unwrap().to_string();
        assert!(
            !detail.contains(&*e.base.to_string_lossy()),
            "no host detail: {detail}"
        );
    }
    for sub in ["/outside", "a/../../outside"] {
        assert!(e.vm.subpath("u-evil", "main", 0, &v, sub).is_err(), "{sub}");
    }
    let staging = e.base.join("pods/u-evil/volume-subpaths/main/0");
    assert!(mounts_at(&staging).is_empty());
    // The outside was never touched: nothing created or changed through the links.
    assert_eq!(entries(&host), ["passwd"]);
    assert_eq!(fs::read_to_string(host.join("passwd")).unwrap(), "host");
    e.vm.teardown("u-evil").unwrap();
}

#[test]
fn a_swap_after_resolution_does_not_change_the_mount() {
    let e = env();
    let v = scratch(&e, "u-pin");
    fs::create_dir(v.path.join("d")).unwrap();
    fs::write(v.path.join("d/passwd"), "inside").unwrap();
    let staged = e.vm.subpath("u-pin", "main", 0, &v, "d").unwrap();
    // The container (owner of the volume) swaps the directory for a link outside.
    let host = outside(&e);
    fs::rename(v.path.join("d"), v.path.join("d.old")).unwrap();
    std::os::unix::fs::symlink(&host, v.path.join("d")).unwrap();
    assert_eq!(fs::read_to_string(staged.join("passwd")).unwrap(), "inside");
    e.vm.teardown("u-pin").unwrap();
}

#[test]
fn racing_symlink_swaps_never_escape() {
    let e = env();
    let v = scratch(&e, "u-race");
    fs::create_dir(v.path.join("d")).unwrap();
    fs::write(v.path.join("d/passwd"), "inside").unwrap();
    std::os::unix::fs::symlink(outside(&e), v.path.join("alt")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let (d, alt) = (v.path.join("d"), v.path.join("alt"));
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                nix::fcntl::renameat2(
                    None,
                    &d,
                    None,
                    &alt,
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                )
                .unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let (mut ok, mut refused, mut escaped) = (0, 0, 0);
    for _ in 0..300 {
        match e.vm.subpath("u-race", "main", 0, &v, "d/passwd") {
            Ok(staged) => {
                ok += 1;
                if fs::read_to_string(&staged).ok().as_deref() != Some("inside") {
                    escaped += 1;
                }
            }
            Err(_) => refused += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    assert!(swapper.join().unwrap() > 0);
    assert_eq!(
        escaped, 0,
        "a subPath mount showed a file outside the volume"
    );
    assert_eq!(ok + refused, 300);
    e.vm.teardown("u-race").unwrap();
    assert!(mounts::mounts_under(&e.base).unwrap().is_empty());
}

#[test]
fn teardown_unmounts_nested_mounts_is_idempotent_and_list_finds_leftovers() {
    let e = env();
    let p = pod(
        "u-td",
        json!([
            {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
            {"name": "sec", "secret": {"secretName": "creds"}}
        ]),
    );
    let vols = e.vm.setup(&p, &resolved(), &facts()).unwrap();
    fs::create_dir(vols["mem"].path.join("sub")).unwrap();
    // A subPath bind of a directory inside the tmpfs, and one of a secret file.
    e.vm.subpath("u-td", "main", 0, &vols["mem"], "sub")
        .unwrap();
    e.vm.subpath("u-td", "main", 1, &vols["sec"], "username")
        .unwrap();
    // Another pod, and a log dir that is not a pod's volume dir.
    scratch(&e, "u-other");
    fs::create_dir_all(e.base.join("pods/ns_web_u-td/main")).unwrap();
    assert_eq!(e.vm.list().unwrap(), ["u-other", "u-td"]);

    let pod_dir = e.base.join("pods/u-td");
    assert_eq!(mounts::mounts_under(&pod_dir).unwrap().len(), 4);
    e.vm.teardown("u-td").unwrap();
    assert!(mounts::mounts_under(&pod_dir).unwrap().is_empty());
    assert!(!pod_dir.exists());
    e.vm.teardown("u-td").unwrap();
    assert_eq!(e.vm.list().unwrap(), ["u-other"]);
    // The other pod and the log dir are untouched.
    assert!(e.base.join("pods/ns_web_u-td/main").is_dir());
    e.vm.teardown("u-other").unwrap();
    assert!(e.vm.list().unwrap().is_empty());
    // A never-set-up pod and a missing pods root are fine.
    e.vm.teardown("never").unwrap();
    let fresh = VolumeManager::new(e.base.join("nothing-here"), "x");
    fresh.teardown("u").unwrap();
    assert!(fresh.list().unwrap().is_empty());
    assert!(matches!(
        e.vm.teardown(".."),
        Err(VolumeError::InvalidPodUid(_))
    ));
}
