//! The shim process: one per container, started detached by [`crate::client`]. It is the
//! parent and subreaper of the container, owns the container's stdio pipes and writes
//! them to the log file in the CRI format, and records the exit status in the state
//! directory when the container ends, so the container outlives the agent that started
//! it. One container per shim process also contains libcontainer's habits of changing
//! the process cwd and expecting its caller to reap children.
//!
//! Argument format (after the `shim` subcommand word):
//! `--id ID --bundle DIR --state-dir DIR --log FILE --root DIR [--runtime builtin|PATH] [--sync-fd N]`

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use nix::sys::wait::{waitpid, WaitStatus};

use crate::cgroup::CgroupLayout;
use crate::log::{write_records, LineSplitter, Stream};
use crate::state::{self, ContainerRecord, ExitStatus, ProcessId, ShimRecord};

/// Which OCI runtime creates the container inside the shim.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Backend {
    /// youki's libcontainer, in the shim process.
    #[default]
    Builtin,
    /// An external OCI runtime binary with runc's command line (runc, crun).
    External(PathBuf),
}

impl Backend {
    /// `builtin`, or the path of a runtime binary.
    pub fn parse(s: &str) -> Backend {
        if s == "builtin" {
            Backend::Builtin
        } else {
            Backend::External(PathBuf::from(s))
        }
    }

    pub fn as_arg(&self) -> String {
        match self {
            Backend::Builtin => "builtin".to_string(),
            Backend::External(p) => p.display().to_string(),
        }
    }

    /// Creates and starts the container with the given stdio; returns its pid.
    fn create_and_start(
        &self,
        a: &ShimArgs,
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<i32, String> {
        match self {
            Backend::Builtin => {
                use libcontainer::container::builder::ContainerBuilder;
                use libcontainer::syscall::syscall::SyscallType;
                let mut c = ContainerBuilder::new(a.id.clone(), SyscallType::Linux)
                    .with_root_path(&a.root)
                    .map_err(|e| e.to_string())?
                    .with_stdin(stdin)
                    .with_stdout(stdout)
                    .with_stderr(stderr)
                    .validate_id()
                    .map_err(|e| e.to_string())?
                    .as_init(&a.bundle)
                    .with_systemd(false)
                    .with_detach(true)
                    .build()
                    .map_err(|e| format!("create: {e}"))?;
                c.start().map_err(|e| format!("start: {e}"))?;
                c.pid()
                    .map(|p| p.as_raw())
                    .ok_or_else(|| "started container has no pid".to_string())
            }
            Backend::External(bin) => {
                let pid_file = a.state_dir.join("runtime.pid");
                let out = Command::new(bin)
                    .args(external_global_args(&a.root, &a.state_dir))
                    .arg("create")
                    .arg("--bundle")
                    .arg(&a.bundle)
                    .arg("--pid-file")
                    .arg(&pid_file)
                    .arg(&a.id)
                    .stdin(Stdio::from(stdin))
                    .stdout(Stdio::from(stdout))
                    .stderr(Stdio::from(stderr))
                    .status()
                    .map_err(|e| format!("running {}: {e}", bin.display()))?;
                if !out.success() {
                    return Err(format!(
                        "{} create failed ({out}); see {}",
                        bin.display(),
                        a.state_dir.join("runtime.log").display()
                    ));
                }
                run_external(bin, &a.root, &a.state_dir, &["start", &a.id])?;
                std::fs::read_to_string(&pid_file)
                    .map_err(|e| e.to_string())?
                    .trim()
                    .parse()
                    .map_err(|e| format!("bad pid file: {e}"))
            }
        }
    }
}

fn external_global_args(root: &Path, state_dir: &Path) -> Vec<String> {
    vec![
        "--root".into(),
        root.display().to_string(),
        "--log".into(),
        state_dir.join("runtime.log").display().to_string(),
    ]
}

fn run_external(bin: &Path, root: &Path, state_dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new(bin)
        .args(external_global_args(root, state_dir))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", bin.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {}: {}",
            bin.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Removes the runtime's record of a container (and its cgroup), killing it if needed.
/// Runs in the caller's process (the agent); a container the runtime never recorded is
/// not an error.
pub(crate) fn backend_delete(
    backend: &Backend,
    root: &Path,
    state_dir: &Path,
    id: &str,
) -> Result<(), String> {
    match backend {
        Backend::Builtin => {
            let dir = root.join(id);
            if !dir.exists() {
                return Ok(());
            }
            let mut c = libcontainer::container::Container::load(dir).map_err(|e| e.to_string())?;
            c.delete(true).map_err(|e| e.to_string())
        }
        Backend::External(bin) => run_external(bin, root, state_dir, &["delete", "--force", id]),
    }
}

/// Parsed shim arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimArgs {
    pub id: String,
    pub bundle: PathBuf,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    pub root: PathBuf,
    pub backend: Backend,
    pub sync_fd: Option<i32>,
}

impl ShimArgs {
    pub fn parse(args: &[String]) -> Result<ShimArgs, String> {
        let (mut id, mut bundle, mut state_dir, mut log, mut root) = (None, None, None, None, None);
        let mut backend = Backend::Builtin;
        let mut sync_fd = None;
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut val = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--id" => id = Some(val()?),
                "--bundle" => bundle = Some(PathBuf::from(val()?)),
                "--state-dir" => state_dir = Some(PathBuf::from(val()?)),
                "--log" => log = Some(PathBuf::from(val()?)),
                "--root" => root = Some(PathBuf::from(val()?)),
                "--runtime" => backend = Backend::parse(&val()?),
                "--sync-fd" => {
                    sync_fd = Some(val()?.parse().map_err(|e| format!("--sync-fd: {e}"))?)
                }
                other => return Err(format!("unknown shim argument {other:?}")),
            }
        }
        Ok(ShimArgs {
            id: id.ok_or("--id is required")?,
            bundle: bundle.ok_or("--bundle is required")?,
            state_dir: state_dir.ok_or("--state-dir is required")?,
            log: log.ok_or("--log is required")?,
            root: root.ok_or("--root is required")?,
            backend,
            sync_fd,
        })
    }

    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            "--id".to_string(),
            self.id.clone(),
            "--bundle".into(),
            self.bundle.display().to_string(),
            "--state-dir".into(),
            self.state_dir.display().to_string(),
            "--log".into(),
            self.log.display().to_string(),
            "--root".into(),
            self.root.display().to_string(),
            "--runtime".into(),
            self.backend.as_arg(),
        ];
        if let Some(fd) = self.sync_fd {
            v.push("--sync-fd".into());
            v.push(fd.to_string());
        }
        v
    }
}

/// Entry point of `podium shim ...`; `args` are the arguments after `shim`. Must be
/// called before any other thread (e.g. a tokio runtime) is started: libcontainer forks.
pub fn shim_main(args: &[String]) -> i32 {
    let a = match ShimArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("podium shim: {e}");
            return 2;
        }
    };
    let mut sync = a.sync_fd.map(|fd| {
        // SAFETY: the spawner passed us this inherited fd for our exclusive use.
        unsafe { File::from_raw_fd(fd) }
    });
    match run(&a, &mut sync) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("podium shim {}: {e}", a.id);
            if let Some(f) = sync.as_mut() {
                let _ = writeln!(f, "err {}", e.replace('\n', " "));
            }
            1
        }
    }
}

fn redirect_std(state_dir: &Path) -> std::io::Result<()> {
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join(state::SHIM_LOG_FILE))?;
    // SAFETY: dup2 on valid fds onto the standard descriptors.
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(null.as_raw_fd(), 1);
        libc::dup2(log.as_raw_fd(), 2);
    }
    Ok(())
}

fn run(a: &ShimArgs, sync: &mut Option<File>) -> Result<(), String> {
    std::fs::create_dir_all(&a.state_dir).map_err(|e| format!("state dir: {e}"))?;
    redirect_std(&a.state_dir).map_err(|e| format!("redirecting stdio: {e}"))?;
    // SAFETY: plain syscalls with constant arguments.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            return Err(format!(
                "PR_SET_CHILD_SUBREAPER: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    let me = ProcessId::of(std::process::id() as i32).ok_or("cannot read own /proc entry")?;
    state::write_json(&a.state_dir, state::SHIM_FILE, &ShimRecord { shim: me })
        .map_err(|e| format!("writing shim record: {e}"))?;

    if let Some(parent) = a.log.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("log dir: {e}"))?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.log)
        .map_err(|e| format!("opening log {}: {e}", a.log.display()))?;
    let log = std::sync::Arc::new(std::sync::Mutex::new(log));
    let (out_r, out_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let stdin: OwnedFd = File::open("/dev/null").map_err(|e| e.to_string())?.into();

    let pid = match a.backend.create_and_start(a, stdin, out_w, err_w) {
        Ok(pid) => pid,
        Err(e) => {
            let _ = state::write_atomic(&a.state_dir, state::START_ERROR_FILE, e.as_bytes());
            // Reap whatever the runtime left and remove its half-made container.
            let _ = backend_delete(&a.backend, &a.root, &a.state_dir, &a.id);
            return Err(e);
        }
    };
    let started_at = Utc::now();
    let process = ProcessId::of(pid).unwrap_or(ProcessId {
        pid,
        start_ticks: 0,
    });
    let record = ContainerRecord {
        id: a.id.clone(),
        process,
        started_at,
        log_path: a.log.clone(),
    };
    state::write_json(&a.state_dir, state::CONTAINER_FILE, &record)
        .map_err(|e| format!("writing container record: {e}"))?;
    if let Some(mut f) = sync.take() {
        let _ = writeln!(f, "ok {pid}");
    }

    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for (fd, stream) in [(out_r, Stream::Stdout), (err_r, Stream::Stderr)] {
        let log = log.clone();
        let done = done_tx.clone();
        std::thread::spawn(move || {
            pump(File::from(fd), stream, &log);
            let _ = done.send(());
        });
    }
    drop(done_tx);

    let (code, signal) = wait_for(pid, process);
    // The pipes close when the last holder exits; with a private pid namespace that is at
    // once, but processes left in a shared one may hold them: do not wait for those long.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let oom_killed = cgroup_path_of(&a.bundle)
        .and_then(|p| CgroupLayout::host().ok()?.oom_kills(&p))
        .is_some_and(|n| n > 0);
    let status = ExitStatus {
        code,
        signal,
        finished_at: Utc::now(),
        oom_killed,
    };
    state::write_json(&a.state_dir, state::EXIT_FILE, &status)
        .map_err(|e| format!("writing exit status: {e}"))?;
    Ok(())
}

/// Reaps children until the container's process ends; returns (exit code, signal).
fn wait_for(pid: i32, process: ProcessId) -> (Option<i32>, Option<i32>) {
    let target = nix::unistd::Pid::from_raw(pid);
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, c)) if p == target => return (Some(c), None),
            Ok(WaitStatus::Signaled(p, s, _)) if p == target => return (None, Some(s as i32)),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => {
                // Not our child (should not happen as subreaper): poll until it is gone.
                while process.is_alive() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return (None, None);
            }
        }
    }
}

fn pump(mut src: File, stream: Stream, log: &std::sync::Mutex<File>) {
    let mut splitter = LineSplitter::new(stream);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Err(e) = write_records(log, &splitter.push(&buf[..n], Utc::now())) {
                    eprintln!("writing container log: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = write_records(log, &splitter.finish(Utc::now()));
}

/// The cgroup path of a bundle's config.json, if it names one.
pub(crate) fn cgroup_path_of(bundle: &Path) -> Option<String> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).ok()?).ok()?;
    v.get("linux")?
        .get("cgroupsPath")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let a = ShimArgs {
            id: "c1".into(),
            bundle: "/b".into(),
            state_dir: "/s".into(),
            log: "/l/0.log".into(),
            root: "/r".into(),
            backend: Backend::External("/usr/sbin/runc".into()),
            sync_fd: Some(5),
        };
        assert_eq!(ShimArgs::parse(&a.to_args()).unwrap(), a);
        let mut b = a.clone();
        b.backend = Backend::Builtin;
        b.sync_fd = None;
        assert_eq!(ShimArgs::parse(&b.to_args()).unwrap(), b);
    }

    #[test]
    fn args_errors() {
        assert!(ShimArgs::parse(&["--id".into()])
            .unwrap_err()
            .contains("needs a value"));
        assert!(ShimArgs::parse(&["--bogus".into(), "x".into()])
            .unwrap_err()
            .contains("unknown"));
        assert!(ShimArgs::parse(&[])
            .unwrap_err()
            .contains("--id is required"));
    }
}
