//! A pod run for real by a pod worker over the Linux runtime and the image service: root
//! only, and it needs the `podium` binary as the shim (PODIUM_BIN, else the workspace's
//! debug build) and /bin/busybox. It checks the pod reaches Running with a correct status,
//! that its output is in the CRI log, and that deletion leaves nothing behind: no mounts
//! under the run root, no pod cgroups, no shim processes, no run or pod directories.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

use podium_agent::api::{ApiCall, FakeApi};
use podium_agent::facts::{NodeAllocatable, NodeFacts};
use podium_agent::images::{mounts_under, NodeImages};
use podium_agent::paths::{instance_name, Layout};
use podium_agent::status::StatusWriter;
use podium_agent::worker::{Deps, PodWorker};
use podium_api::quantity::Quantity;
use podium_image::ImageService;
use podium_runtime::{Backend, ContainerRuntime, LinuxRuntime, RuntimeOptions, ShimCommand};

fn podium_bin() -> Option<PathBuf> {
    let p = std::env::var_os("PODIUM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/podium"));
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("debug/podium"));
    [Some(p), target].into_iter().flatten().find(|p| p.exists())
}

/// A docker-save directory with a one-layer busybox image tagged `busybox:test`.
fn busybox_archive(dir: &Path) {
    let mut b = tar::Builder::new(Vec::new());
    let dir_entry = |b: &mut tar::Builder<Vec<u8>>, name: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, name, std::io::empty()).unwrap();
    };
    for d in ["bin", "etc", "tmp", "dev", "proc", "sys"] {
        dir_entry(&mut b, d);
    }
    let bb = std::fs::read("/bin/busybox").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(bb.len() as u64);
    b.append_data(&mut h, "bin/busybox", &bb[..]).unwrap();
    for app in ["sh", "sleep", "echo", "cat"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, format!("bin/{app}"), "busybox")
            .unwrap();
    }
    let passwd = b"root:x:0:0:root:/root:/bin/sh\n";
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(passwd.len() as u64);
    b.append_data(&mut h, "etc/passwd", &passwd[..]).unwrap();
    let layer = b.into_inner().unwrap();
    let diff_id = format!("sha256:{:x}", Sha256::digest(&layer));
    std::fs::write(dir.join("layer.tar"), &layer).unwrap();
    let config = json!({"architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}});
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let manifest = json!([{"Config": "config.json", "RepoTags": ["busybox:test"],
                           "Layers": ["layer.tar"]}]);
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
}

fn shim_count(instance: &str) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains("\0shim\0") && cmd.contains(instance) {
                n += 1;
            }
        }
    }
    n
}

fn cgroup_dirs(instance: &str, uid: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = h
            .path()
            .join(instance)
            .join("kubepods/besteffort")
            .join(format!("pod{uid}"));
        if p.exists() {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_pod_runs_and_leaves_nothing_behind() {
    if !nix_is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let Some(bin) = podium_bin() else {
        eprintln!("skipped: no podium binary (set PODIUM_BIN)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let archive = tmp.path().join("image");
    std::fs::create_dir_all(&archive).unwrap();
    busybox_archive(&archive);
    let svc = Arc::new(ImageService::open(&data).unwrap());
    podium_image::import::import_path(&svc, &archive, None).unwrap();

    let instance = instance_name(&data);
    let layout = Layout::new(&instance, &data, &tmp.path().join("run"));
    let runtime = Arc::new(LinuxRuntime::new(RuntimeOptions {
        instance: instance.clone(),
        root: layout.run_root.clone(),
        shim: ShimCommand {
            exe: bin,
            leading_args: vec!["shim".into()],
        },
        backend: Backend::Builtin,
        start_timeout: Duration::from_secs(20),
        log_rotation: None,
    }));
    let api = Arc::new(FakeApi::new());
    let deps = Arc::new(Deps {
        api: api.clone(),
        runtime: runtime.clone(),
        images: Arc::new(NodeImages::new(svc)),
        status: StatusWriter::new(),
        volumes: podium_agent::volumes::VolumeManager::new(
            layout.pods_root.clone(),
            &layout.instance,
        ),
        sync_frequency: Duration::from_secs(60),
        pod_pids_limit: None,
        layout: layout.clone(),
        facts: NodeFacts {
            node_name: "n1".into(),
            hostname: "n1".into(),
            host_ips: vec!["192.0.2.1".into()],
            cluster_dns: vec!["10.43.0.10".into()],
            cluster_domain: "cluster.local".into(),
            allocatable: NodeAllocatable {
                cpu: Quantity::parse("2").unwrap(),
                memory: Quantity::parse("4Gi").unwrap(),
                ephemeral_storage: Quantity::parse("10Gi").unwrap(),
                pods: 110,
            },
            resolv_conf: Some("nameserver 192.0.2.53\n".into()),
            cgroup_root: layout.cgroup_root(),
            ..Default::default()
        },
        admitted: Default::default(),
    });
    let (_stop, stop_rx) = watch::channel(false);
    tokio::spawn(deps.status.clone().run(api.clone(), stop_rx));

    let uid = "6a1f3c2e-0000-4000-8000-000000000001";
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "bb", "namespace": "default", "uid": uid},
        "spec": {"nodeName": "n1", "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                 "terminationGracePeriodSeconds": 30,
                 "containers": [{"name": "main", "image": "busybox:test",
                     "imagePullPolicy": "IfNotPresent",
                     "terminationMessagePath": "/dev/termination-log",
                     "command": ["sh", "-c",
                        "trap 'exit 0' TERM; echo hello from $HOSTNAME; cat /etc/resolv.conf; while true; do sleep 0.1; done"]}]}});
    let (tx, rx) = watch::channel(Some(pod.clone()));
    let task = tokio::spawn(PodWorker::new(deps.clone(), pod.clone(), rx).run());

    let mut status = Value::Null;
    for _ in 0..200 {
        if let Some(s) = api.last_status("bb") {
            if s["phase"] == "Running" {
                status = s;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status["phase"], "Running", "{:?}", api.calls());
    let cs = &status["containerStatuses"][0];
    let id = format!("{instance}-{uid}-main-1");
    assert_eq!(cs["containerID"], format!("podium://{id}"));
    assert_eq!(cs["ready"], true);
    assert!(cs["imageID"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(status["qosClass"], "BestEffort");

    // Output reached the CRI log, with the pod's hostname and managed resolv.conf.
    let log = layout.log_path("default", "bb", uid, "main", 0);
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("nameserver") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(text.contains(" stdout F hello from bb"), "{text}");
    assert!(text.contains("nameserver 10.43.0.10"), "{text}");
    assert!(text.contains("search default.svc.cluster.local"), "{text}");
    assert_eq!(shim_count(&instance), 1);
    assert!(!cgroup_dirs(&instance, uid).is_empty());
    assert!(!mounts_under(&layout.run_root).is_empty());

    // Graceful deletion: SIGTERM is trapped, so this is quick; then everything is gone.
    let mut deleting = pod.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    deleting["metadata"]["deletionGracePeriodSeconds"] = json!(30);
    let t0 = std::time::Instant::now();
    tx.send(Some(deleting)).unwrap();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(api.calls().contains(&ApiCall::Finalize {
        name: "bb".into(),
        uid: uid.into()
    }));
    assert_eq!(mounts_under(&layout.run_root), Vec::<PathBuf>::new());
    assert_eq!(cgroup_dirs(&instance, uid), Vec::<PathBuf>::new());
    assert_eq!(shim_count(&instance), 0);
    assert_eq!(runtime.list().unwrap(), Vec::<String>::new());
    assert!(!layout.run_root.join("pods").join(uid).exists());
    assert!(!layout.pod_dir(uid).exists());
    assert!(!layout.pod_log_dir("default", "bb", uid).exists());
    let rootfs_dir = layout.run_root.join("rootfs");
    assert_eq!(
        std::fs::read_dir(&rootfs_dir)
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
    // Instance cgroup parents (kubepods/...) stay, as kubelet's QoS cgroups do; remove them.
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let root = h.path().join(&instance);
        for sub in ["kubepods/besteffort", "kubepods", ""] {
            let _ = std::fs::remove_dir(root.join(sub));
        }
    }
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
