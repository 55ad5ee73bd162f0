//! The agent's side of a shim: spawning it detached ([`start_container`]) and operating
//! on a running or finished container through its state directory ([`ShimHandle`]), which
//! works as well from a new agent process after a restart ([`ShimHandle::adopt`]).

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cgroup::CgroupLayout;
use crate::log::Rotation;
use crate::shim::{backend_delete, cgroup_path_of, Backend, ShimArgs};
use crate::state::{self, ContainerRecord, ExitStatus, ShimRecord};

/// Errors of shim operations. `StartFailed` carries the runtime's message (not retryable
/// without a change); `Io` errors may be retried.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("container {id}: spawning the shim: {source}")]
    Spawn { id: String, source: std::io::Error },
    #[error("container {id} failed to start: {message}")]
    StartFailed { id: String, message: String },
    #[error("container {id}: no container record in {dir}")]
    NotFound { id: String, dir: PathBuf },
    #[error("container {id}: the shim died without recording an exit status")]
    ShimGone { id: String },
    #[error("container {id}: {op}: {message}")]
    Runtime {
        id: String,
        op: &'static str,
        message: String,
    },
    #[error("container {id}: {op}: {source}")]
    Io {
        id: String,
        op: &'static str,
        source: std::io::Error,
    },
}

/// How to run a shim: the executable and the arguments before the shim's own
/// (`podium shim` → `exe = /proc/self/exe`, `leading_args = ["shim"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimCommand {
    pub exe: PathBuf,
    pub leading_args: Vec<String>,
}

impl ShimCommand {
    /// The running executable in `shim` mode (the `podium` binary).
    pub fn current_exe() -> std::io::Result<ShimCommand> {
        Ok(ShimCommand {
            exe: std::env::current_exe()?,
            leading_args: vec!["shim".to_string()],
        })
    }
}

/// What [`start_container`] needs.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub shim: ShimCommand,
    pub backend: Backend,
    /// The OCI runtime's state root (libcontainer's `--root`), per instance.
    pub runtime_root: PathBuf,
    /// This container's state directory (created if missing).
    pub state_dir: PathBuf,
    /// OCI bundle directory holding config.json.
    pub bundle: PathBuf,
    pub id: String,
    /// The CRI-format log file the shim writes.
    pub log_path: PathBuf,
    /// Rotate the log by size (`None`: one growing file).
    pub log_rotation: Option<Rotation>,
    /// How long to wait for the shim to report the container started.
    pub start_timeout: Duration,
}

/// What is known about a container from its state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Running(ContainerRecord),
    Exited(ContainerRecord, ExitStatus),
    /// The shim is gone and no exit status was recorded (shim killed, host crash).
    Lost(ContainerRecord),
}

/// A started container, through its shim's state directory.
#[derive(Debug, Clone)]
pub struct ShimHandle {
    id: String,
    state_dir: PathBuf,
    runtime_root: PathBuf,
    backend: Backend,
    record: ContainerRecord,
}

fn io(id: &str, op: &'static str) -> impl FnOnce(std::io::Error) -> ShimError {
    let id = id.to_string();
    move |source| ShimError::Io { id, op, source }
}

/// Spawns the shim for `opts.id` (setsid + double fork, so it is reparented away from
/// the caller) and waits until the container runs or failed to start.
pub fn start_container(opts: &StartOptions) -> Result<ShimHandle, ShimError> {
    let id = opts.id.as_str();
    std::fs::create_dir_all(&opts.state_dir).map_err(io(id, "creating state dir"))?;
    std::fs::create_dir_all(&opts.runtime_root).map_err(io(id, "creating runtime root"))?;
    let (sync_r, sync_w): (OwnedFd, OwnedFd) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ShimError::Io {
            id: id.to_string(),
            op: "pipe",
            source: e.into(),
        })?;
    let wfd = sync_w.as_raw_fd();
    let args = ShimArgs {
        id: opts.id.clone(),
        bundle: opts.bundle.clone(),
        state_dir: opts.state_dir.clone(),
        log: opts.log_path.clone(),
        root: opts.runtime_root.clone(),
        backend: opts.backend.clone(),
        rotation: opts.log_rotation,
        sync_fd: Some(wfd),
    };
    let mut cmd = Command::new(&opts.shim.exe);
    cmd.args(&opts.shim.leading_args)
        .args(args.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/");
    // SAFETY: only async-signal-safe calls (setsid, fork, _exit, fcntl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            match libc::fork() {
                -1 => return Err(std::io::Error::last_os_error()),
                0 => {}
                _ => libc::_exit(0),
            }
            // The grandchild goes on to exec the shim, keeping the sync pipe open.
            let flags = libc::fcntl(wfd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(wfd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| ShimError::Spawn {
        id: id.to_string(),
        source,
    })?;
    // Reap the intermediate process; the shim itself is now nobody's child of ours.
    let _ = child.wait();
    drop(sync_w);

    let reply = read_reply(sync_r, opts.start_timeout).map_err(io(id, "waiting for the shim"))?;
    let reply = reply.trim();
    if let Some(msg) = reply.strip_prefix("err ") {
        return Err(ShimError::StartFailed {
            id: id.to_string(),
            message: msg.to_string(),
        });
    }
    if !reply.starts_with("ok ") {
        let log =
            std::fs::read_to_string(opts.state_dir.join(state::SHIM_LOG_FILE)).unwrap_or_default();
        return Err(ShimError::StartFailed {
            id: id.to_string(),
            message: format!("shim exited without a report: {}", log.trim()),
        });
    }
    ShimHandle::adopt(
        id,
        &opts.state_dir,
        &opts.runtime_root,
        opts.backend.clone(),
    )
}

fn read_reply(fd: OwnedFd, timeout: Duration) -> std::io::Result<String> {
    let mut f = std::fs::File::from(fd);
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "shim did not report in time",
            ));
        }
        let mut pfd = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            continue;
        }
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        out.extend_from_slice(&buf[..n]);
        if out.contains(&b'\n') {
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
    }
}

impl ShimHandle {
    /// Re-adopts a container from its state directory (e.g. after an agent restart).
    /// The runtime recorded by its shim wins over `backend` (the caller's current one), so
    /// a container keeps being handled by the runtime that created it.
    pub fn adopt(
        id: &str,
        state_dir: &Path,
        runtime_root: &Path,
        backend: Backend,
    ) -> Result<ShimHandle, ShimError> {
        let record: ContainerRecord = state::read_json(state_dir, state::CONTAINER_FILE)
            .map_err(io(id, "reading container record"))?
            .ok_or_else(|| ShimError::NotFound {
                id: id.to_string(),
                dir: state_dir.to_path_buf(),
            })?;
        let backend = record.runtime.as_deref().map_or(backend, Backend::parse);
        Ok(ShimHandle {
            id: id.to_string(),
            state_dir: state_dir.to_path_buf(),
            runtime_root: runtime_root.to_path_buf(),
            backend,
            record,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's init process as seen from the host.
    pub fn pid(&self) -> i32 {
        self.record.process.pid
    }

    pub fn record(&self) -> &ContainerRecord {
        &self.record
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    fn exit_status(&self) -> Result<Option<ExitStatus>, ShimError> {
        state::read_json(&self.state_dir, state::EXIT_FILE)
            .map_err(io(&self.id, "reading exit status"))
    }

    fn shim_alive(&self) -> Result<bool, ShimError> {
        let shim: Option<ShimRecord> = state::read_json(&self.state_dir, state::SHIM_FILE)
            .map_err(io(&self.id, "reading shim record"))?;
        Ok(shim.is_some_and(|s| s.shim.is_alive()))
    }

    /// Running, exited (with status) or lost.
    pub fn state(&self) -> Result<ContainerState, ShimError> {
        if let Some(st) = self.exit_status()? {
            return Ok(ContainerState::Exited(self.record.clone(), st));
        }
        if self.shim_alive()? {
            return Ok(ContainerState::Running(self.record.clone()));
        }
        // The shim may have finished between the two reads.
        match self.exit_status()? {
            Some(st) => Ok(ContainerState::Exited(self.record.clone(), st)),
            None => Ok(ContainerState::Lost(self.record.clone())),
        }
    }

    /// Sends `signal` to the container's init process. Returns false if it had already
    /// exited. Uses a pidfd checked against the recorded start time, so a reused pid is
    /// never signalled.
    pub fn kill(&self, signal: i32) -> Result<bool, ShimError> {
        if self.exit_status()?.is_some() {
            return Ok(false);
        }
        let p = self.record.process;
        // SAFETY: pidfd_open with a pid and no flags.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, p.pid, 0) };
        if fd < 0 {
            return Ok(false);
        }
        // SAFETY: the kernel just gave us this fd.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        if !p.is_alive() {
            return Ok(false);
        }
        // SAFETY: pidfd_send_signal on our pidfd, no siginfo.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                signal,
                std::ptr::null::<u8>(),
                0,
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Ok(false);
            }
            return Err(io(&self.id, "signalling")(e));
        }
        Ok(true)
    }

    /// Waits for the exit status; `Ok(None)` on timeout. Works from any process.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Option<ExitStatus>, ShimError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut pause = Duration::from_micros(500);
        loop {
            match self.state()? {
                ContainerState::Exited(_, st) => return Ok(Some(st)),
                ContainerState::Lost(_) => {
                    return Err(ShimError::ShimGone {
                        id: self.id.clone(),
                    })
                }
                ContainerState::Running(_) => {}
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Kills the container if it still runs, removes the runtime's state and the
    /// container's cgroup, and removes the state directory. The log file is kept (the
    /// agent owns it: `kubectl logs --previous`).
    pub fn delete(&self) -> Result<(), ShimError> {
        delete_container(
            &self.id,
            &self.state_dir,
            &self.runtime_root,
            &self.backend,
            None,
        )
    }
}

/// Deletes a container by its state directory, whether or not it ever started. `bundle`
/// is where its config.json is (for the cgroup path); default `<state_dir>/bundle`.
pub fn delete_container(
    id: &str,
    state_dir: &Path,
    runtime_root: &Path,
    backend: &Backend,
    bundle: Option<&Path>,
) -> Result<(), ShimError> {
    let mut backend = backend.clone();
    if let Ok(h) = ShimHandle::adopt(id, state_dir, runtime_root, backend.clone()) {
        if matches!(h.state()?, ContainerState::Running(_)) {
            h.kill(libc::SIGKILL)?;
            // The shim records the exit; if it is gone meanwhile, go on.
            let _ = h.wait(Some(Duration::from_secs(10)));
        }
        backend = h.backend.clone();
    }
    backend_delete(&backend, runtime_root, state_dir, id).map_err(|message| {
        ShimError::Runtime {
            id: id.to_string(),
            op: "delete",
            message,
        }
    })?;
    let default_bundle = state_dir.join("bundle");
    let bundle = bundle.unwrap_or(&default_bundle);
    if let Some(cg) = cgroup_path_of(bundle) {
        if let Ok(layout) = CgroupLayout::host() {
            layout.remove(&cg).map_err(io(id, "removing cgroup"))?;
        }
    }
    match std::fs::remove_dir_all(state_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(id, "removing state dir")(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ProcessId;

    fn record(runtime: Option<&str>) -> ContainerRecord {
        ContainerRecord {
            id: "c1".into(),
            process: ProcessId {
                pid: 1,
                start_ticks: 0,
            },
            started_at: chrono::Utc::now(),
            log_path: "/l/0.log".into(),
            runtime: runtime.map(str::to_string),
        }
    }

    #[test]
    fn adopt_uses_the_runtime_recorded_by_the_shim() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("oci");
        state::write_json(
            d.path(),
            state::CONTAINER_FILE,
            &record(Some("/usr/sbin/runc")),
        )
        .unwrap();
        let h = ShimHandle::adopt("c1", d.path(), &root, Backend::Builtin).unwrap();
        assert_eq!(h.backend, Backend::External("/usr/sbin/runc".into()));
        state::write_json(d.path(), state::CONTAINER_FILE, &record(Some("builtin"))).unwrap();
        let h = ShimHandle::adopt("c1", d.path(), &root, Backend::External("/x".into())).unwrap();
        assert_eq!(h.backend, Backend::Builtin);
        // A record of an older shim names none: the caller's backend applies.
        let old = r#"{"id":"c1","process":{"pid":1,"start_ticks":0},"started_at":"2026-01-01T00:00:00Z","log_path":"/l"}"#;
        std::fs::write(d.path().join(state::CONTAINER_FILE), old).unwrap();
        let h = ShimHandle::adopt("c1", d.path(), &root, Backend::External("/x".into())).unwrap();
        assert_eq!(h.backend, Backend::External("/x".into()));
        assert!(matches!(
            ShimHandle::adopt("c1", &d.path().join("none"), &root, Backend::Builtin),
            Err(ShimError::NotFound { .. })
        ));
    }
}
