//! Real containers (ROOT REQUIRED; CI runs as root): busybox-static rootfs, the shim
//! binary of this crate, libcontainer, cgroup v1 (or v2), pinned sandbox namespaces.
//! Each test uses its own instance name, root directory and cgroup parent, and checks
//! that delete leaves nothing behind. Needs Debian's `busybox-static` (/bin/busybox).
//! The key checks run twice ([`both_backends!`]): with the builtin runtime under their
//! plain name and with runc (`/usr/sbin/runc`, Debian's `runc`) as `root_runc_*`, which
//! is skipped with a printed reason when runc is not installed.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use podium_runtime::cgroup::CgroupLayout;
use podium_runtime::*;

static N: AtomicUsize = AtomicUsize::new(0);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
    };
}

const RUNC: &str = "/usr/sbin/runc";

/// runc as the shim's backend, if installed.
fn runc() -> Option<Backend> {
    Path::new(RUNC)
        .exists()
        .then(|| Backend::External(PathBuf::from(RUNC)))
}

/// `check(backend)` as a test with the builtin runtime (`$builtin`) and one with runc
/// (`$runc`), skipped when runc is missing.
macro_rules! both_backends {
    ($check:ident => $builtin:ident, $runc:ident) => {
        #[test]
        fn $builtin() {
            require_root!();
            $check(Backend::Builtin);
        }

        #[test]
        fn $runc() {
            require_root!();
            let Some(b) = runc() else {
                eprintln!("SKIPPED: {RUNC} not found (apt-get install runc)");
                return;
            };
            $check(b);
        }
    };
}

struct Env {
    _tmp: tempfile::TempDir,
    rootfs: PathBuf,
    logs: PathBuf,
    rt: LinuxRuntime,
    instance: String,
}

fn busybox_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "dev", "sys", "tmp", "etc", "www"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("/bin/busybox missing: apt-get install busybox-static");
    for tool in [
        "sh", "echo", "sleep", "cat", "id", "hostname", "nc", "touch", "seq", "true", "ls",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
    rootfs
}

fn env() -> Env {
    env_with(Backend::Builtin)
}

fn env_with(backend: Backend) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(tmp.path());
    let instance = format!(
        "podium-rt-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let rt = LinuxRuntime::new(RuntimeOptions {
        instance: instance.clone(),
        root: tmp.path().join("run"),
        shim: ShimCommand {
            exe: PathBuf::from(env!("CARGO_BIN_EXE_podium-runtime-shim")),
            leading_args: vec!["shim".into()],
        },
        backend,
        start_timeout: Duration::from_secs(20),
        log_rotation: None,
    });
    Env {
        logs: tmp.path().join("logs"),
        _tmp: tmp,
        rootfs,
        rt,
        instance,
    }
}

impl Env {
    fn config(&self, id: &str, args: &[&str]) -> ContainerConfig {
        let mut c =
            ContainerConfig::new(&self.rootfs, args.iter().map(|s| s.to_string()).collect());
        c.env = vec![("PATH".into(), "/bin".into())];
        c.cgroup_path = Some(format!("{}/{id}", self.rt.cgroup_parent()));
        c
    }

    fn start(&self, id: &str, cfg: ContainerConfig) -> ContainerInfo {
        self.rt
            .start(&ContainerRequest {
                id: id.into(),
                config: cfg,
                log_path: self.log(id),
            })
            .unwrap()
    }

    fn log(&self, id: &str) -> PathBuf {
        self.logs.join(format!("{id}.log"))
    }

    fn log_text(&self, id: &str) -> String {
        std::fs::read_to_string(self.log(id)).unwrap_or_default()
    }

    /// Content of the stdout/stderr records, one per line.
    fn log_lines(&self, id: &str) -> Vec<String> {
        self.log_text(id)
            .lines()
            .map(|l| l.splitn(4, ' ').nth(3).unwrap_or("").to_string())
            .collect()
    }

    /// With runc: its `state` of the container (`running`, `stopped`, ...).
    fn runc_status(&self, id: &str) -> Option<String> {
        let Backend::External(bin) = &self.rt.options().backend else {
            return None;
        };
        let out = std::process::Command::new(bin)
            .arg("--root")
            .arg(self.rt.oci_root())
            .args(["state", id])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "runc state {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        Some(v["status"].as_str().unwrap().to_string())
    }

    fn run(&self, id: &str, cfg: ContainerConfig) -> ExitStatus {
        self.start(id, cfg);
        self.rt
            .wait(id, Some(Duration::from_secs(20)))
            .unwrap()
            .expect("container did not exit")
    }

    /// Deletes and checks nothing is left of the container.
    fn delete_clean(&self, id: &str, pid: Option<i32>) {
        self.rt.delete(id).unwrap();
        assert!(!self.rt.state_dir(id).exists(), "state dir left");
        assert!(!self.rt.oci_root().join(id).exists(), "runtime state left");
        let layout = CgroupLayout::host().unwrap();
        let cg = format!("{}/{id}", self.rt.cgroup_parent());
        assert!(
            layout.existing_dirs(&cg).is_empty(),
            "cgroup left: {:?}",
            layout.existing_dirs(&cg)
        );
        if let Some(pid) = pid {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists() || is_zombie_or_other(pid),
                "process {pid} left"
            );
        }
        assert!(matches!(self.rt.status(id), Err(RuntimeError::NotFound(_))));
    }
}

fn is_zombie_or_other(pid: i32) -> bool {
    // A reused pid would be some other process; ours would show our rootfs's busybox.
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map_or(true, |p| !p.to_string_lossy().contains("rootfs"))
}

impl Drop for Env {
    fn drop(&mut self) {
        if !is_root() {
            return;
        }
        for id in self.rt.list().unwrap_or_default() {
            let _ = self.rt.delete(&id);
        }
        let layout = CgroupLayout::host().unwrap();
        let parent = self.rt.cgroup_parent();
        let _ = layout.remove(&parent);
        let left = layout.existing_dirs(&parent);
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.rt.options().root.display().to_string();
        let leaked_mounts = mounts.lines().filter(|l| l.contains(&root)).count();
        if !std::thread::panicking() {
            assert!(left.is_empty(), "instance cgroups left: {left:?}");
            assert_eq!(leaked_mounts, 0, "mounts left under {root}");
            let _ = &self.instance;
        }
    }
}

both_backends!(
    echo_hello_logs_cri_line_and_exit_0 => root_echo_hello_logs_cri_line_and_exit_0,
    root_runc_echo_hello_logs_cri_line_and_exit_0
);

fn echo_hello_logs_cri_line_and_exit_0(backend: Backend) {
    let e = env_with(backend);
    let st = e.run("echo", e.config("echo", &["echo", "hello"]));
    assert_eq!(st.code, Some(0));
    assert_eq!(st.exit_code(), 0);
    assert!(!st.oom_killed);
    let text = e.log_text("echo");
    let line = text.lines().next().unwrap();
    let parts: Vec<&str> = line.splitn(4, ' ').collect();
    assert_eq!(&parts[1..], &["stdout", "F", "hello"], "{text}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(parts[0]).is_ok(),
        "{}",
        parts[0]
    );
    assert_eq!(parts[0].len(), "2026-01-02T15:04:05.999999999Z".len());
    // With runc, runc itself ran it (its state under the instance's oci root).
    if let Some(st) = e.runc_status("echo") {
        assert_eq!(st, "stopped");
    }
    e.delete_clean("echo", None);
    assert!(e.log("echo").exists(), "the log file is kept for the agent");
}

both_backends!(
    exit_code_stderr_and_partial_line => root_exit_code_stderr_and_partial_line,
    root_runc_exit_code_stderr_and_partial_line
);

fn exit_code_stderr_and_partial_line(backend: Backend) {
    let e = env_with(backend);
    let st = e.run(
        "ex3",
        e.config("ex3", &["sh", "-c", "echo oops >&2; printf tail; exit 3"]),
    );
    assert_eq!(st.code, Some(3));
    assert_eq!(st.signal, None);
    let text = e.log_text("ex3");
    assert!(
        text.lines().any(|l| l.ends_with(" stderr F oops")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.ends_with(" stdout F tail")),
        "{text}"
    );
    e.delete_clean("ex3", None);
}

both_backends!(
    start_failure_is_reported_and_cleaned => root_start_failure_is_reported_and_cleaned,
    root_runc_start_failure_is_reported_and_cleaned
);

fn start_failure_is_reported_and_cleaned(backend: Backend) {
    let e = env_with(backend);
    let err =
        e.rt.start(&ContainerRequest {
            id: "bad".into(),
            config: e.config("bad", &["/bin/does-not-exist"]),
            log_path: e.log("bad"),
        })
        .unwrap_err();
    let msg = err.to_string();
    eprintln!("start error: {msg}");
    assert!(
        msg.contains("bad") && msg.contains("/bin/does-not-exist"),
        "{msg}"
    );
    assert!(!e.rt.state_dir("bad").exists());
    assert!(!e.rt.oci_root().join("bad").exists(), "runtime state left");
}

both_backends!(
    signals => root_sigterm_to_pid1_is_ignored_sigkill_is_not_and_hostpid_sigterm_kills,
    root_runc_sigterm_to_pid1_is_ignored_sigkill_is_not_and_hostpid_sigterm_kills
);

fn signals(backend: Backend) {
    let e = env_with(backend);
    let info = e.start("sl", e.config("sl", &["sleep", "1000"]));
    assert!(matches!(e.rt.status("sl").unwrap(), Status::Running { pid, .. } if pid == info.pid));
    if let Some(st) = e.runc_status("sl") {
        assert_eq!(st, "running");
    }
    // pid 1 of a pid namespace has no default signal actions: SIGTERM does nothing.
    assert!(e.rt.kill("sl", libc::SIGTERM).unwrap());
    assert_eq!(
        e.rt.wait("sl", Some(Duration::from_millis(300))).unwrap(),
        None
    );
    assert!(e.rt.kill("sl", libc::SIGKILL).unwrap());
    let st =
        e.rt.wait("sl", Some(Duration::from_secs(10)))
            .unwrap()
            .unwrap();
    assert_eq!((st.code, st.signal), (None, Some(libc::SIGKILL)));
    assert_eq!(st.exit_code(), 137);
    assert!(
        !e.rt.kill("sl", libc::SIGKILL).unwrap(),
        "kill after exit reports not running"
    );
    e.delete_clean("sl", Some(info.pid));

    let mut cfg = e.config("slh", &["sleep", "1000"]);
    cfg.namespaces.pid = NamespaceMode::Host;
    let info = e.start("slh", cfg);
    assert!(e.rt.kill("slh", libc::SIGTERM).unwrap());
    let st =
        e.rt.wait("slh", Some(Duration::from_secs(10)))
            .unwrap()
            .unwrap();
    assert_eq!(st.signal, Some(libc::SIGTERM));
    assert_eq!(st.exit_code(), 143);
    e.delete_clean("slh", Some(info.pid));
}

both_backends!(
    delete_kills_a_running_container => root_delete_kills_a_running_container,
    root_runc_delete_kills_a_running_container
);

fn delete_kills_a_running_container(backend: Backend) {
    let e = env_with(backend);
    let info = e.start("run", e.config("run", &["sleep", "1000"]));
    e.delete_clean("run", Some(info.pid));
}

fn ns_inode(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

both_backends!(
    sandbox_shares_hostname_and_localhost => root_sandbox_shares_hostname_and_localhost_but_isolates_other_pods,
    root_runc_sandbox_shares_hostname_and_localhost
);

fn sandbox_shares_hostname_and_localhost(backend: Backend) {
    let e = env_with(backend);
    let a =
        e.rt.create_sandbox(&SandboxConfig {
            pod_uid: "pod-a".into(),
            hostname: "web-a".into(),
            host_network: false,
            host_ipc: false,
            share_pid: false,
            cgroup: None,
        })
        .unwrap();
    let b =
        e.rt.create_sandbox(&SandboxConfig {
            pod_uid: "pod-b".into(),
            hostname: "web-b".into(),
            host_network: false,
            host_ipc: false,
            share_pid: false,
            cgroup: None,
        })
        .unwrap();
    let with_ns = |sb: &Sandbox, id: &str, args: &[&str]| {
        let mut c = e.config(id, args);
        c.namespaces = sb.namespaces(NamespaceMode::New);
        c.hostname = Some(sb.config.hostname.clone());
        c
    };
    let srv = e.start(
        "srv",
        with_ns(
            &a,
            "srv",
            &["sh", "-c", "hostname; echo pong | nc -l -p 8080"],
        ),
    );
    // The server joined the pinned namespaces.
    assert_eq!(
        ns_inode(&format!("/proc/{}/ns/net", srv.pid)),
        ns_inode(a.net.as_ref().unwrap().to_str().unwrap())
    );
    assert_eq!(
        ns_inode(&format!("/proc/{}/ns/uts", srv.pid)),
        ns_inode(a.uts.as_ref().unwrap().to_str().unwrap())
    );
    assert_ne!(
        ns_inode(&format!("/proc/{}/ns/net", srv.pid)),
        ns_inode("/proc/self/ns/net")
    );

    // Another pod cannot reach it on 127.0.0.1.
    let other = e.run(
        "other",
        with_ns(
            &b,
            "other",
            &[
                "sh",
                "-c",
                "hostname; sleep 0.3; nc 127.0.0.1 8080 </dev/null",
            ],
        ),
    );
    assert_ne!(other.exit_code(), 0, "{:?}", e.log_lines("other"));
    assert_eq!(e.log_lines("other")[0], "web-b");

    let script = "hostname; for i in $(seq 100); do nc 127.0.0.1 8080 </dev/null && exit 0; sleep 0.05; done; exit 1";
    let cli = e.run("cli", with_ns(&a, "cli", &["sh", "-c", script]));
    assert_eq!(cli.exit_code(), 0, "{:?}", e.log_lines("cli"));
    let lines = e.log_lines("cli");
    assert_eq!(lines[0], "web-a");
    assert!(lines.contains(&"pong".to_string()), "{lines:?}");
    let s =
        e.rt.wait("srv", Some(Duration::from_secs(10)))
            .unwrap()
            .unwrap();
    assert_eq!(s.exit_code(), 0);
    assert_eq!(e.log_lines("srv")[0], "web-a");

    for id in ["srv", "cli", "other"] {
        e.delete_clean(id, None);
    }
    e.rt.remove_sandbox("pod-a").unwrap();
    e.rt.remove_sandbox("pod-b").unwrap();
    assert!(!a.dir.exists() && !b.dir.exists());
    e.rt.remove_sandbox("pod-a").unwrap();
}

#[test]
fn root_shared_pid_namespace_has_a_pause_init_and_shows_every_container() {
    require_root!();
    let e = env();
    let sb =
        e.rt.create_sandbox(&SandboxConfig {
            pod_uid: "pod-shared-pid".into(),
            hostname: "shared".into(),
            host_network: false,
            host_ipc: false,
            share_pid: true,
            cgroup: None,
        })
        .unwrap();
    let pause = sb.pause.expect("a pause process");
    assert!(pause.is_alive());
    let pid_ns = sb.pid.clone().expect("a pinned pid namespace");
    let in_pod = |id: &str, args: &[&str]| {
        let mut c = e.config(id, args);
        c.namespaces = sb.namespaces(NamespaceMode::Path(pid_ns.clone()));
        c
    };
    let sleeper = e.start("sleeper", in_pod("sleeper", &["sleep", "300"]));
    assert_eq!(
        ns_inode(&format!("/proc/{}/ns/pid", sleeper.pid)),
        ns_inode(&format!("/proc/{}/ns/pid", pause.pid))
    );
    // The second container sees PID 1 (pause) and the first container's sleep.
    let script =
        "cat /proc/1/comm; for p in /proc/[0-9]*; do cat $p/cmdline | tr '\\0' ' '; echo; done";
    let viewer = e.run("viewer", in_pod("viewer", &["sh", "-c", script]));
    assert_eq!(viewer.exit_code(), 0, "{:?}", e.log_lines("viewer"));
    let lines = e.log_lines("viewer");
    assert_eq!(lines[0], "pause", "{lines:?}");
    assert!(lines.iter().any(|l| l.trim() == "sleep 300"), "{lines:?}");
    for id in ["sleeper", "viewer"] {
        e.delete_clean(id, None);
    }
    e.rt.remove_sandbox("pod-shared-pid").unwrap();
    assert!(!sb.dir.exists());
    for _ in 0..100 {
        if !pause.is_alive() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !pause.is_alive(),
        "the pause process is killed with its sandbox"
    );
}

fn cap_mask(names: &[&str]) -> u64 {
    const ORDER: &[&str] = &[
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
    ];
    names
        .iter()
        .map(|n| 1u64 << ORDER.iter().position(|o| o == n).unwrap())
        .fold(0, |a, b| a | b)
}

fn cap_eff(e: &Env, id: &str, add: &[&str], drop: &[&str]) -> u64 {
    let mut c = e.config(id, &["cat", "/proc/1/status"]);
    c.cap_add = add.iter().map(|s| s.to_string()).collect();
    c.cap_drop = drop.iter().map(|s| s.to_string()).collect();
    assert_eq!(e.run(id, c).exit_code(), 0);
    let lines = e.log_lines(id);
    let hex = lines
        .iter()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_string();
    e.delete_clean(id, None);
    u64::from_str_radix(&hex, 16).unwrap()
}

both_backends!(
    capabilities_default_add_and_drop => root_capabilities_default_add_and_drop,
    root_runc_capabilities_default_add_and_drop
);

fn capabilities_default_add_and_drop(backend: Backend) {
    let e = env_with(backend);
    let defaults = podium_runtime::spec::DEFAULT_CAPABILITIES;
    assert_eq!(cap_eff(&e, "caps-default", &[], &[]), cap_mask(defaults));
    let mut expected: Vec<&str> = defaults.iter().copied().filter(|c| *c != "KILL").collect();
    expected.push("NET_ADMIN");
    assert_eq!(
        cap_eff(&e, "caps-hello", &["NET_ADMIN"], &["CAP_KILL"]),
        cap_mask(&expected)
    );
}

both_backends!(
    readonly_rootfs_and_user => root_readonly_rootfs_refuses_writes_and_user_is_applied,
    root_runc_readonly_rootfs_and_user
);

fn readonly_rootfs_and_user(backend: Backend) {
    let e = env_with(backend);
    let mut c = e.config("ro", &["sh", "-c", "touch /x && echo wrote; id -u; id -G"]);
    c.readonly_rootfs = true;
    c.user = UserSpec {
        uid: 1000,
        gid: 2000,
        additional_gids: vec![3000],
    };
    c.mounts.push(MountSpec::Tmpfs {
        destination: "/scratch".into(),
        size_bytes: Some(1 << 20),
        readonly: false,
    });
    let st = e.run("ro", c);
    assert_eq!(st.exit_code(), 0);
    let lines = e.log_lines("ro");
    assert!(!lines.contains(&"wrote".to_string()), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("Read-only file system")),
        "{lines:?}"
    );
    assert!(lines.contains(&"1000".to_string()), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.split(' ').collect::<Vec<_>>() == ["2000", "3000"]),
        "{lines:?}"
    );
    e.delete_clean("ro", None);
    assert!(!e.rootfs.join("x").exists());
}

both_backends!(
    cgroup_limits => root_memory_limit_and_pids_are_applied_to_the_cgroup,
    root_runc_memory_limit_and_pids_are_applied_to_the_cgroup
);

fn cgroup_limits(backend: Backend) {
    let e = env_with(backend);
    let mut c = e.config("res", &["sleep", "1000"]);
    c.resources = Resources {
        cpu_shares: Some(256),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        memory_limit: Some(64 << 20),
        pids_limit: Some(50),
    };
    let info = e.start("res", c);
    let layout = CgroupLayout::host().unwrap();
    let cg = format!("{}/res", e.rt.cgroup_parent());
    if let CgroupLayout::V1 { hierarchies, .. } = &layout {
        let read = |ctl: &str, f: &str| {
            let h = hierarchies
                .iter()
                .find(|h| h.file_name().unwrap() == ctl)
                .unwrap();
            std::fs::read_to_string(h.join(cg.trim_start_matches('/')).join(f))
                .unwrap()
                .trim()
                .to_string()
        };
        assert_eq!(
            read("memory", "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(read("pids", "pids.max"), "50");
        assert_eq!(read("cpu", "cpu.shares"), "256");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
        let procs = read("memory", "cgroup.procs");
        assert!(procs.lines().any(|p| p == info.pid.to_string()), "{procs}");
    }
    e.delete_clean("res", Some(info.pid));
}

both_backends!(
    log_rotation => root_log_rotation_keeps_max_files_of_whole_records,
    root_runc_log_rotation_keeps_max_files_of_whole_records
);

fn log_rotation(backend: Backend) {
    let mut e = env_with(backend);
    let rot = podium_runtime::log::Rotation {
        max_size: 2048,
        max_files: 3,
    };
    let mut opts = e.rt.options().clone();
    opts.log_rotation = Some(rot);
    e.rt = LinuxRuntime::new(opts);
    let st = e.run(
        "rot",
        e.config("rot", &["sh", "-c", "seq 1 2000; sleep 0.3; echo last >&2"]),
    );
    assert_eq!(st.exit_code(), 0);
    let log = e.log("rot");
    let rotated = podium_runtime::log::rotated_files(&log).unwrap();
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    let files = std::fs::read_dir(&e.logs).unwrap().count();
    assert_eq!(files, 3, "current + 2 rotated");
    let mut numbers = Vec::new();
    let mut stderr = Vec::new();
    for p in rotated.iter().chain([&log]) {
        let text = std::fs::read_to_string(p).unwrap();
        assert!(text.len() <= 2048, "{p:?} has {} bytes", text.len());
        for line in text.lines() {
            let parts: Vec<&str> = line.splitn(4, ' ').collect();
            assert_eq!(parts.len(), 4, "a whole record: {line:?}");
            if parts[1] == "stdout" {
                numbers.push(parts[3].parse::<u32>().unwrap());
            } else {
                stderr.push(parts[3].to_string());
            }
        }
    }
    // The newest lines, in order, none missing.
    assert_eq!(*numbers.last().unwrap(), 2000);
    let first = numbers[0];
    assert_eq!(numbers, (first..=2000).collect::<Vec<_>>());
    assert_eq!(stderr, ["last"]);
    e.delete_clean("rot", None);
    assert!(log.exists(), "logs are the agent's to remove");
}

/// Helper run in a child process by `root_shim_survives_its_spawner`: starts a
/// container through the shim and exits at once. Does nothing in a normal test run.
#[test]
fn spawner_helper() {
    let Ok(spec) = std::env::var("PODIUM_RT_SPAWN") else {
        return;
    };
    let v: Vec<String> = spec.split('\n').map(str::to_string).collect();
    let opts = StartOptions {
        shim: ShimCommand {
            exe: PathBuf::from(env!("CARGO_BIN_EXE_podium-runtime-shim")),
            leading_args: vec![],
        },
        backend: Backend::parse(&v[5]),
        runtime_root: PathBuf::from(&v[0]),
        state_dir: PathBuf::from(&v[1]),
        bundle: PathBuf::from(&v[2]),
        id: v[3].clone(),
        log_path: PathBuf::from(&v[4]),
        log_rotation: None,
        start_timeout: Duration::from_secs(20),
    };
    let h = start_container(&opts).unwrap();
    println!("SPAWNED {}", h.pid());
}

both_backends!(
    shim_survives_spawner_and_is_readopted => root_shim_survives_its_spawner_and_is_readopted,
    root_runc_shim_survives_its_spawner_and_is_readopted
);

fn shim_survives_spawner_and_is_readopted(backend: Backend) {
    let e = env_with(backend);
    let id = "orphan";
    let state_dir = e.rt.state_dir(id);
    let bundle = state_dir.join("bundle");
    let spec =
        podium_runtime::spec::generate(&e.config(id, &["sh", "-c", "sleep 1; echo done; exit 7"]))
            .unwrap();
    write_bundle(&bundle, &spec).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "spawner_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "PODIUM_RT_SPAWN",
            [
                e.rt.oci_root(),
                state_dir.clone(),
                bundle,
                PathBuf::from(id),
                e.log(id),
                PathBuf::from(e.rt.options().backend.as_arg()),
            ]
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("SPAWNED"), "{stdout}");
    // The spawner is gone; a fresh handle from the state dir alone sees the container run
    // and then its exit status.
    let backend = e.rt.options().backend.clone();
    let h = ShimHandle::adopt(id, &state_dir, &e.rt.oci_root(), backend).unwrap();
    assert!(matches!(h.state().unwrap(), ContainerState::Running(_)));
    if let Some(st) = e.runc_status(id) {
        assert_eq!(st, "running");
    }
    let st = h.wait(Some(Duration::from_secs(20))).unwrap().unwrap();
    assert_eq!(st.code, Some(7));
    assert!(e.log_lines(id).contains(&"done".to_string()));
    if let Some(st) = e.runc_status(id) {
        assert_eq!(st, "stopped");
    }
    // And through the runtime interface, as a restarted agent would.
    assert_eq!(e.rt.list().unwrap(), vec![id.to_string()]);
    assert!(
        matches!(e.rt.status(id).unwrap(), Status::Exited { exit, .. } if exit.code == Some(7))
    );
    // An agent configured with the other runtime deletes it with the one that made it
    // (recorded by the shim): runc's state goes too.
    let other = match e.rt.options().backend {
        Backend::Builtin => runc(),
        Backend::External(_) => Some(Backend::Builtin),
    };
    if let Some(other) = other {
        let mut opts = e.rt.options().clone();
        opts.backend = other;
        LinuxRuntime::new(opts).delete(id).unwrap();
        assert!(!e.rt.oci_root().join(id).exists(), "runtime state left");
    }
    e.delete_clean(id, Some(h.pid()));
}

both_backends!(
    bench_true => root_bench_true_create_start_wait_delete,
    root_runc_bench_true_create_start_wait_delete
);

fn bench_true(backend: Backend) {
    let e = env_with(backend);
    let mut times = Vec::new();
    for i in 0..20 {
        let id = format!("true-{i}");
        let cfg = e.config(&id, &["true"]);
        let t = Instant::now();
        e.start(&id, cfg);
        let st =
            e.rt.wait(&id, Some(Duration::from_secs(10)))
                .unwrap()
                .unwrap();
        e.rt.delete(&id).unwrap();
        times.push(t.elapsed());
        assert_eq!(st.exit_code(), 0);
    }
    times.sort();
    let median = times[times.len() / 2];
    eprintln!(
        "shim+{} create+start+wait+delete of /bin/true: median {median:?}, min {:?}, max {:?}",
        e.rt.options().backend.as_arg(),
        times[0],
        times[times.len() - 1]
    );
    assert!(median < Duration::from_secs(2));
}

/// libcontainer alone, in this process (no shim), for comparison with DESIGN.md's figure.
/// Ignored by default: libcontainer changes this process's cwd. Run alone:
/// `cargo test --release -p podium-runtime --test linux -- --ignored --nocapture`.
#[test]
#[ignore]
fn root_bench_inprocess_libcontainer_true() {
    require_root!();
    use libcontainer::container::builder::ContainerBuilder;
    use libcontainer::syscall::syscall::SyscallType;
    let e = env();
    let root = e.rt.oci_root();
    std::fs::create_dir_all(&root).unwrap();
    let mut times = Vec::new();
    for i in 0..20 {
        let id = format!("ip-{i}");
        let bundle = e.rt.state_dir(&id).join("bundle");
        let spec = podium_runtime::spec::generate(&e.config(&id, &["true"])).unwrap();
        write_bundle(&bundle, &spec).unwrap();
        let null = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .unwrap()
        };
        let t = Instant::now();
        let mut c = ContainerBuilder::new(id.clone(), SyscallType::Linux)
            .with_root_path(&root)
            .unwrap()
            .with_stdin(null())
            .with_stdout(null())
            .with_stderr(null())
            .as_init(&bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .unwrap();
        c.start().unwrap();
        let pid = c.pid().unwrap();
        let st = nix::sys::wait::waitpid(pid, None).unwrap();
        c.delete(true).unwrap();
        times.push(t.elapsed());
        assert_eq!(st, nix::sys::wait::WaitStatus::Exited(pid, 0));
        std::fs::remove_dir_all(e.rt.state_dir(&id)).unwrap();
    }
    times.sort();
    eprintln!(
        "in-process libcontainer create+start+wait+delete of /bin/true: median {:?}",
        times[10]
    );
}
