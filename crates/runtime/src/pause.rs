//! The pause process of a pod whose containers share one pid namespace
//! (`shareProcessNamespace`). A pid namespace cannot be pinned like the others: once its
//! first process (its init) exits, nothing can be started in it any more. So, as
//! Kubernetes does with its pause container, a small process is PID 1 of the pod's pid
//! namespace for the pod's whole life: it reaps the orphans that containers leave (an
//! init's duty) and exits on SIGTERM or SIGINT.
//!
//! It is the shim binary in `pause` mode (`<shim> pause`, see [`spawn`]): that process
//! detaches with setsid, unshares the pid namespace and forks; the child is PID 1 of the
//! new namespace and runs [`pause_loop`], while the parent prints the child's host pid
//! on stdout and exits. The child is thereby reparented away from the agent and survives
//! agent restarts, like a shim.

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::client::ShimCommand;
use crate::state::ProcessId;

/// The argument that selects pause mode of the shim binary.
pub const PAUSE_ARG: &str = "pause";

/// Entry point of `<shim> pause` (no further arguments). Runs before any thread exists.
pub fn pause_main() -> i32 {
    match detach_and_fork() {
        Ok(Some(child)) => {
            let mut out = std::io::stdout();
            if writeln!(out, "{child}").and_then(|()| out.flush()).is_err() {
                return 1;
            }
            0
        }
        // The child: PID 1 of the new pid namespace; never returns.
        Ok(None) => pause_loop(),
        Err(e) => {
            eprintln!("podium pause: {e}");
            1
        }
    }
}

/// setsid, a new pid namespace for the children, one fork. `Some(pid)` in the parent.
fn detach_and_fork() -> nix::Result<Option<i32>> {
    nix::unistd::setsid()?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID)?;
    // SAFETY: the shim binary is single-threaded when it runs in pause mode (the mode is
    // chosen before any thread is started), so the child may run arbitrary code.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(Some(child.as_raw())),
        ForkResult::Child => Ok(None),
    }
}

/// PID 1 of the pod's pid namespace: reap children, exit on SIGTERM/SIGINT. An init
/// process gets no default signal actions, so signals are taken synchronously.
fn pause_loop() -> ! {
    let _ = nix::unistd::chdir("/");
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
    // SAFETY: prctl(PR_SET_NAME) with a NUL-terminated constant.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"pause".as_ptr(), 0, 0, 0);
    }
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    let _ = set.thread_block();
    loop {
        match set.wait() {
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => std::process::exit(0),
            Ok(Signal::SIGCHLD) => reap_all(),
            _ => {}
        }
    }
}

fn reap_all() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Errors of starting a pause process.
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("starting {exe}: {source}")]
    Spawn { exe: String, source: std::io::Error },
    #[error("pause process failed: {0}")]
    Failed(String),
}

/// Starts a pause process with the shim binary; returns PID 1 of its new pid namespace
/// (as a host pid) once it runs.
pub fn spawn(shim: &ShimCommand) -> Result<ProcessId, PauseError> {
    let exe = shim.exe.display().to_string();
    let mut child = Command::new(&shim.exe)
        .args(&shim.leading_args)
        .arg(PAUSE_ARG)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| PauseError::Spawn {
            exe: exe.clone(),
            source,
        })?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    let output = child
        .wait_with_output()
        .map_err(|source| PauseError::Spawn { exe, source })?;
    if !output.status.success() {
        return Err(PauseError::Failed(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let pid: i32 = line
        .trim()
        .parse()
        .map_err(|_| PauseError::Failed(format!("unexpected output {line:?}")))?;
    ProcessId::of(pid).ok_or_else(|| PauseError::Failed(format!("pid {pid} exited at once")))
}

/// Kills a pause process if it is still the same process and waits (up to 2 s) until it
/// has exited, so that its cgroup can be removed next; true if it was signalled.
pub fn kill(p: &ProcessId) -> bool {
    if !(p.is_alive() && nix::sys::signal::kill(Pid::from_raw(p.pid), Signal::SIGKILL).is_ok()) {
        return false;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while p.is_alive() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    true
}
