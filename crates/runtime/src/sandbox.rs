//! Pod sandboxes: the network, IPC and UTS namespaces shared by a pod's containers,
//! created once per pod on a short-lived thread (unshare(2) is per thread for these
//! three kinds, so no fork of a multi-threaded agent) and pinned by bind-mounting the
//! thread's namespace files onto `<run_root>/<pod-uid>/ns/{net,ipc,uts}`. The hostname is
//! set in the new UTS namespace and loopback brought up in the new network namespace
//! with an ioctl (no `ip` binary). hostNetwork (which implies the host's UTS namespace,
//! as in Kubernetes) and hostIPC use the host's namespaces: nothing is created for them.
//!
//! A shared pid namespace (shareProcessNamespace) needs a process to live: a pause
//! process ([`crate::pause`]) is its PID 1, pinned like the others at `ns/pid` and
//! killed when the sandbox is removed.
//!
//! `run_root` must be private to the server instance (e.g. `/run/podium/<instance>/pods`),
//! so two servers on one host never collide.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use serde::{Deserialize, Serialize};

use crate::client::ShimCommand;
use crate::pause::{self, PauseError};
use crate::spec::{NamespaceMode, Namespaces};
use crate::state::ProcessId;

/// Sandbox errors; `Exists` and `InvalidPodUid` are caller errors, the rest are host
/// failures worth reporting (and retrying after teardown).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid pod uid {0:?}")]
    InvalidPodUid(String),
    #[error("sandbox for pod {0} already exists")]
    Exists(String),
    #[error("sandbox for pod {pod}: {op}: {source}")]
    Sys {
        pod: String,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("sandbox for pod {pod}: {source}")]
    Pause { pod: String, source: PauseError },
}

/// What a pod asks of its sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxConfig {
    pub pod_uid: String,
    /// Set in the pod's UTS namespace (ignored with host_network).
    pub hostname: String,
    pub host_network: bool,
    pub host_ipc: bool,
    /// One pid namespace for all containers (shareProcessNamespace without hostPID).
    #[serde(default)]
    pub share_pid: bool,
    /// The pod cgroup the pause process joins (if it exists), as kubelet's sandbox does.
    #[serde(default)]
    pub cgroup: Option<String>,
}

/// A created sandbox: where its namespaces are pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    pub config: SandboxConfig,
    pub dir: PathBuf,
    /// Pinned namespace files; `None` = the host's.
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// The shared pid namespace, if the pod shares one.
    #[serde(default)]
    pub pid: Option<PathBuf>,
    /// PID 1 of the shared pid namespace.
    #[serde(default)]
    pub pause: Option<ProcessId>,
}

const RECORD: &str = "sandbox.json";

fn mode(p: &Option<PathBuf>) -> NamespaceMode {
    p.as_ref()
        .map_or(NamespaceMode::Host, |p| NamespaceMode::Path(p.clone()))
}

impl Sandbox {
    /// The namespaces for a container of this pod, with the given pid namespace mode.
    pub fn namespaces(&self, pid: NamespaceMode) -> Namespaces {
        Namespaces {
            net: mode(&self.net),
            ipc: mode(&self.ipc),
            uts: mode(&self.uts),
            pid,
        }
    }

    /// Reads back a sandbox created earlier (agent restart); `None` if there is none.
    pub fn load(run_root: &Path, pod_uid: &str) -> Option<Sandbox> {
        let dir = run_root.join(pod_uid);
        serde_json::from_slice(&std::fs::read(dir.join(RECORD)).ok()?).ok()
    }
}

fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid != "."
        && uid != ".."
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Creates the sandbox of `cfg.pod_uid` under `run_root`; `shim` is the binary that runs
/// the pause process of a shared pid namespace.
pub fn create_sandbox(
    run_root: &Path,
    cfg: &SandboxConfig,
    shim: &ShimCommand,
) -> Result<Sandbox, SandboxError> {
    if !valid_uid(&cfg.pod_uid) {
        return Err(SandboxError::InvalidPodUid(cfg.pod_uid.clone()));
    }
    let pod = cfg.pod_uid.clone();
    let sys = |op: &'static str| {
        let pod = pod.clone();
        move |source: std::io::Error| SandboxError::Sys { pod, op, source }
    };
    let dir = run_root.join(&cfg.pod_uid);
    if dir.join(RECORD).exists() {
        return Err(SandboxError::Exists(pod.clone()));
    }
    let ns_dir = dir.join("ns");
    std::fs::create_dir_all(&ns_dir).map_err(sys("creating run dir"))?;

    let new_net = !cfg.host_network;
    let new_uts = !cfg.host_network;
    let new_ipc = !cfg.host_ipc;
    let mut kinds = Vec::new();
    if new_net {
        kinds.push("net");
    }
    if new_ipc {
        kinds.push("ipc");
    }
    if new_uts {
        kinds.push("uts");
    }
    let pin = |k: &str| ns_dir.join(k);
    let mut sandbox = Sandbox {
        config: cfg.clone(),
        dir: dir.clone(),
        net: new_net.then(|| pin("net")),
        ipc: new_ipc.then(|| pin("ipc")),
        uts: new_uts.then(|| pin("uts")),
        pid: None,
        pause: None,
    };

    if !kinds.is_empty() {
        let hostname = cfg.hostname.clone();
        let ns_dir2 = ns_dir.clone();
        let kinds2: Vec<String> = kinds.iter().map(|s| s.to_string()).collect();
        let res = std::thread::spawn(move || setup_thread(&ns_dir2, &kinds2, &hostname))
            .join()
            .unwrap_or_else(|_| Err(("thread", std::io::Error::other("sandbox thread panicked"))));
        if let Err((op, source)) = res {
            let _ = teardown_dir(&dir);
            return Err(SandboxError::Sys { pod, op, source });
        }
    }
    // Undoes a half-made sandbox: its pause process and its run directory.
    let undo = |sandbox: &Sandbox| {
        if let Some(p) = &sandbox.pause {
            pause::kill(p);
        }
        let _ = teardown_dir(&dir);
    };
    if cfg.share_pid {
        let p = match pause::spawn(shim) {
            Ok(p) => p,
            Err(source) => {
                undo(&sandbox);
                return Err(SandboxError::Pause { pod, source });
            }
        };
        sandbox.pause = Some(p);
        if let Some(cg) = &cfg.cgroup {
            let joined = crate::cgroup::CgroupLayout::host().and_then(|l| l.add_process(cg, p.pid));
            if let Err(e) = joined {
                undo(&sandbox);
                return Err(sys("moving the pause process into the pod cgroup")(e));
            }
        }
        let target = pin("pid");
        if let Err((op, e)) = pin_namespace(&format!("/proc/{}/ns/pid", p.pid), &target) {
            undo(&sandbox);
            return Err(sys(op)(e));
        }
        // The pin must name the pause process's namespace, not a later process's that
        // reused its pid in the meantime.
        if !p.is_alive() {
            undo(&sandbox);
            let gone = std::io::Error::other("pause process exited");
            return Err(sys("starting pause process")(gone));
        }
        sandbox.pid = Some(target);
    }
    let written = serde_json::to_vec_pretty(&sandbox)
        .map_err(std::io::Error::from)
        .and_then(|bytes| crate::state::write_atomic(&dir, RECORD, &bytes));
    if let Err(e) = written {
        undo(&sandbox);
        return Err(sys("writing record")(e));
    }
    Ok(sandbox)
}

/// Bind-mounts a namespace file (`/proc/.../ns/KIND`) onto a new file at `target`.
fn pin_namespace(src: &str, target: &Path) -> ThreadResult {
    std::fs::File::create(target).map_err(|e| ("creating pin file", e))?;
    mount(
        Some(src),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| ("bind-mounting namespace", e.into()))
}

type ThreadResult = Result<(), (&'static str, std::io::Error)>;

/// Runs on a dedicated thread that exits afterwards, taking its namespaces with it except
/// for the pins.
fn setup_thread(ns_dir: &Path, kinds: &[String], hostname: &str) -> ThreadResult {
    let mut flags = CloneFlags::empty();
    for k in kinds {
        flags |= match k.as_str() {
            "net" => CloneFlags::CLONE_NEWNET,
            "ipc" => CloneFlags::CLONE_NEWIPC,
            _ => CloneFlags::CLONE_NEWUTS,
        };
    }
    unshare(flags).map_err(|e| ("unshare", e.into()))?;
    if flags.contains(CloneFlags::CLONE_NEWUTS) {
        nix::unistd::sethostname(hostname).map_err(|e| ("sethostname", e.into()))?;
    }
    if flags.contains(CloneFlags::CLONE_NEWNET) {
        loopback_up().map_err(|e| ("bringing up lo", e))?;
    }
    for k in kinds {
        pin_namespace(&format!("/proc/thread-self/ns/{k}"), &ns_dir.join(k))?;
    }
    Ok(())
}

/// Sets IFF_UP on `lo` in the calling thread's network namespace.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        ifr.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass.
    unsafe {
        if libc::ioctl(raw, libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(raw, libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn teardown_dir(dir: &Path) -> std::io::Result<()> {
    let ns_dir = dir.join("ns");
    if let Ok(entries) = std::fs::read_dir(&ns_dir) {
        for e in entries.flatten() {
            let p = e.path();
            match umount2(&p, MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Kills the pause process, unmounts the pinned namespaces and removes the pod's run
/// directory. Idempotent.
pub fn remove_sandbox(run_root: &Path, pod_uid: &str) -> Result<(), SandboxError> {
    if !valid_uid(pod_uid) {
        return Err(SandboxError::InvalidPodUid(pod_uid.to_string()));
    }
    if let Some(p) = Sandbox::load(run_root, pod_uid).and_then(|s| s.pause) {
        pause::kill(&p);
    }
    teardown_dir(&run_root.join(pod_uid)).map_err(|source| SandboxError::Sys {
        pod: pod_uid.to_string(),
        op: "teardown",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_shim() -> ShimCommand {
        ShimCommand {
            exe: "/nonexistent".into(),
            leading_args: vec![],
        }
    }

    #[test]
    fn pod_uid_validation() {
        assert!(valid_uid("3f1c-aa_b.c"));
        assert!(!valid_uid(""));
        assert!(!valid_uid(".."));
        assert!(!valid_uid("a/b"));
        let d = tempfile::tempdir().unwrap();
        let cfg = SandboxConfig {
            pod_uid: "../x".into(),
            hostname: "h".into(),
            host_network: true,
            host_ipc: true,
            share_pid: false,
            cgroup: None,
        };
        assert!(matches!(
            create_sandbox(d.path(), &cfg, &no_shim()),
            Err(SandboxError::InvalidPodUid(_))
        ));
    }

    #[test]
    fn host_namespaces_create_nothing_but_the_record() {
        let d = tempfile::tempdir().unwrap();
        let cfg = SandboxConfig {
            pod_uid: "p1".into(),
            hostname: "h".into(),
            host_network: true,
            host_ipc: true,
            share_pid: false,
            cgroup: None,
        };
        let sb = create_sandbox(d.path(), &cfg, &no_shim()).unwrap();
        assert_eq!(sb.net, None);
        assert_eq!(sb.uts, None);
        let ns = sb.namespaces(NamespaceMode::New);
        assert_eq!(ns.net, NamespaceMode::Host);
        assert_eq!(ns.ipc, NamespaceMode::Host);
        assert_eq!(Sandbox::load(d.path(), "p1"), Some(sb));
        assert!(matches!(
            create_sandbox(d.path(), &cfg, &no_shim()),
            Err(SandboxError::Exists(_))
        ));
        remove_sandbox(d.path(), "p1").unwrap();
        assert!(!d.path().join("p1").exists());
        remove_sandbox(d.path(), "p1").unwrap();
    }
}
