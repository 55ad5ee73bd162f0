//! The shim process: one per container, started detached by [`crate::client`]. It is the
//! parent and subreaper of the container, owns the container's stdio pipes and writes
//! them to the log file in the CRI format, and records the exit status in the state
//! directory when the container ends, so the container outlives the agent that started
//! it. One container per shim process also contains libcontainer's habits of changing
//! the process cwd and expecting its caller to reap children.
//!
//! Argument format (after the `shim` subcommand word):
//! `--id ID --bundle DIR --state-dir DIR --log FILE --root DIR [--runtime builtin|PATH]
//! [--log-max-size BYTES [--log-max-files N]] [--sync-fd N]`. With `--log-max-size` the
//! log is rotated by size ([`crate::log::Rotation`]; `--log-max-files` defaults to 5).
//!
//! With an external runtime (runc), the shim runs `<runtime> --root DIR --log
//! <state-dir>/runtime.log --log-format json create --bundle .. --pid-file ..` with the
//! container's stdio as its own (no terminal: runc passes them to the container), then
//! `start`; `runc init` is reparented to the shim (a subreaper), which reaps it like
//! libcontainer's child. `delete --force` runs from the agent.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use nix::sys::wait::{waitpid, WaitStatus};

use crate::cgroup::CgroupLayout;
use crate::log::{write_records, LineSplitter, LogFile, Rotation, Stream};
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

    /// Creates and starts the container with the given stdio; returns its pid. Never
    /// inlined: libcontainer's large stack frames then lie below the caller's and are
    /// released by [`release_startup_memory`].
    #[inline(never)]
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
                    .current_dir(&a.bundle)
                    .status()
                    .map_err(|e| format!("running {}: {e}", bin.display()))?;
                if !out.success() {
                    return Err(format!(
                        "{} create: {}",
                        bin.display(),
                        runtime_error(&a.state_dir).unwrap_or_else(|| format!(
                            "{out}; see {}",
                            a.state_dir.join(RUNTIME_LOG).display()
                        ))
                    ));
                }
                run_external(bin, &a.root, &a.state_dir, &["start", &a.id])?;
                std::fs::read_to_string(&pid_file)
                    .map_err(|e| format!("reading {}: {e}", pid_file.display()))?
                    .trim()
                    .parse()
                    .map_err(|e| format!("bad pid file: {e}"))
            }
        }
    }
}

/// The external runtime's log (JSON lines) in the container's state directory.
const RUNTIME_LOG: &str = "runtime.log";

fn external_global_args(root: &Path, state_dir: &Path) -> Vec<String> {
    vec![
        "--root".into(),
        root.display().to_string(),
        "--log".into(),
        state_dir.join(RUNTIME_LOG).display().to_string(),
        "--log-format".into(),
        "json".into(),
    ]
}

/// The last error the external runtime logged (`{"level":"error","msg":...}` lines).
fn runtime_error(state_dir: &Path) -> Option<String> {
    last_error_in(&std::fs::read_to_string(state_dir.join(RUNTIME_LOG)).ok()?)
}

fn last_error_in(log: &str) -> Option<String> {
    log.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        let level = v.get("level")?.as_str()?;
        matches!(level, "error" | "fatal")
            .then(|| v.get("msg")?.as_str().map(str::to_string))
            .flatten()
    })
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
        let stderr = String::from_utf8_lossy(&out.stderr);
        let msg = last_error_in(&stderr).unwrap_or_else(|| stderr.trim().to_string());
        Err(format!("{} {}: {msg}", bin.display(), args.join(" ")))
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
        Backend::External(bin) => {
            // runc keeps `<root>/<id>/state.json`; without it runc never recorded the
            // container (or it is deleted already).
            if !root.join(id).exists() {
                return Ok(());
            }
            run_external(bin, root, state_dir, &["delete", "--force", id])
        }
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
    /// Rotate the log by size; `None`: one growing file.
    pub rotation: Option<Rotation>,
    pub sync_fd: Option<i32>,
}

impl ShimArgs {
    pub fn parse(args: &[String]) -> Result<ShimArgs, String> {
        let (mut id, mut bundle, mut state_dir, mut log, mut root) = (None, None, None, None, None);
        let mut backend = Backend::Builtin;
        let mut sync_fd = None;
        let (mut max_size, mut max_files) = (None, None);
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
                "--log-max-size" => {
                    let n: u64 = val()?.parse().map_err(|e| format!("--log-max-size: {e}"))?;
                    if n == 0 {
                        return Err("--log-max-size must be positive".into());
                    }
                    max_size = Some(n);
                }
                "--log-max-files" => {
                    let n: u32 = val()?
                        .parse()
                        .map_err(|e| format!("--log-max-files: {e}"))?;
                    if n < 2 {
                        return Err("--log-max-files must be at least 2".into());
                    }
                    max_files = Some(n);
                }
                "--sync-fd" => {
                    sync_fd = Some(val()?.parse().map_err(|e| format!("--sync-fd: {e}"))?)
                }
                other => return Err(format!("unknown shim argument {other:?}")),
            }
        }
        let rotation = match (max_size, max_files) {
            (Some(max_size), files) => Some(Rotation {
                max_size,
                max_files: files.unwrap_or(crate::log::DEFAULT_MAX_FILES),
            }),
            (None, Some(_)) => return Err("--log-max-files needs --log-max-size".into()),
            (None, None) => None,
        };
        Ok(ShimArgs {
            id: id.ok_or("--id is required")?,
            bundle: bundle.ok_or("--bundle is required")?,
            state_dir: state_dir.ok_or("--state-dir is required")?,
            log: log.ok_or("--log is required")?,
            root: root.ok_or("--root is required")?,
            backend,
            rotation,
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
        if let Some(r) = self.rotation {
            v.push("--log-max-size".into());
            v.push(r.max_size.to_string());
            v.push("--log-max-files".into());
            v.push(r.max_files.to_string());
        }
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
    if args.first().map(String::as_str) == Some(crate::pause::PAUSE_ARG) {
        return crate::pause::pause_main();
    }
    // One malloc arena: the two log pumps would otherwise each get their own, and every
    // shim's private memory counts per pod on a dense node (docs/benchmarks.md).
    // SAFETY: mallopt only tunes the allocator; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
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
    let log = LogFile::open(&a.log, a.rotation)
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
        runtime: Some(a.backend.as_arg()),
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

    release_startup_memory();
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

/// Gives back the memory that only starting the container needed: free heap pages
/// (malloc_trim) and the main stack below the current frame, which libcontainer's deep
/// calls dirtied (up to ~80 KiB) and the shim never reaches again while it waits. A shim
/// lives as long as its container, one per container, so this is memory per pod.
fn release_startup_memory() {
    // SAFETY: malloc_trim only returns free memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    let marker = 0u8;
    let sp = std::ptr::addr_of!(marker) as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Some(start) = maps
        .lines()
        .find(|l| l.ends_with("[stack]"))
        .and_then(|l| l.split('-').next())
        .and_then(|a| usize::from_str_radix(a, 16).ok())
    else {
        return;
    };
    // Keep a margin below this frame (the red zone and the madvise call itself); calls
    // still to come get fresh zero pages where they go deeper.
    let end = sp.saturating_sub(8 * 1024) & !0xfff;
    if end > start && sp > start {
        // SAFETY: the range lies in this thread's stack mapping, below every live frame
        // (the stack grows down and nothing points into dead frames).
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
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

fn pump(mut src: File, stream: Stream, log: &std::sync::Mutex<LogFile>) {
    let mut splitter = LineSplitter::new(stream);
    // A pipe holds 64 KiB; 8 KiB reads keep up with a chatty container and keep the shim
    // small (it is per container).
    let mut buf = vec![0u8; 8 * 1024];
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
            rotation: Some(Rotation {
                max_size: 2048,
                max_files: 3,
            }),
            sync_fd: Some(5),
        };
        assert_eq!(ShimArgs::parse(&a.to_args()).unwrap(), a);
        let mut b = a.clone();
        b.backend = Backend::Builtin;
        b.rotation = None;
        b.sync_fd = None;
        assert_eq!(ShimArgs::parse(&b.to_args()).unwrap(), b);
        // --log-max-files defaults to kubelet's 5.
        let mut args = b.to_args();
        args.extend(["--log-max-size".to_string(), "100".to_string()]);
        assert_eq!(
            ShimArgs::parse(&args).unwrap().rotation,
            Some(Rotation {
                max_size: 100,
                max_files: 5
            })
        );
    }

    #[test]
    fn runtime_errors_come_from_its_json_log() {
        let log = r#"{"level":"info","msg":"starting","time":"t"}
{"level":"error","msg":"first failure","time":"t"}
{"level":"error","msg":"runc create failed: unable to start container process: exec: \"/x\": no such file","time":"t"}
{"level":"debug","msg":"bye","time":"t"}
not json
"#;
        assert_eq!(
            last_error_in(log).as_deref(),
            Some(
                "runc create failed: unable to start container process: exec: \"/x\": no such file"
            )
        );
        assert_eq!(last_error_in("plain text\n"), None);
        assert_eq!(last_error_in(r#"{"level":"info","msg":"ok"}"#), None);
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
        let with = |extra: &[&str]| {
            let v: Vec<String> = ["--id", "c", "--bundle", "/b", "--state-dir", "/s"]
                .iter()
                .chain(["--log", "/l", "--root", "/r"].iter())
                .chain(extra.iter())
                .map(|s| s.to_string())
                .collect();
            ShimArgs::parse(&v)
        };
        assert!(with(&["--log-max-size", "0"])
            .unwrap_err()
            .contains("positive"));
        assert!(with(&["--log-max-size", "10Mi"])
            .unwrap_err()
            .contains("--log-max-size"));
        assert!(with(&["--log-max-size", "10", "--log-max-files", "1"])
            .unwrap_err()
            .contains("at least 2"));
        assert!(with(&["--log-max-files", "3"])
            .unwrap_err()
            .contains("needs --log-max-size"));
        assert!(with(&[]).unwrap().rotation.is_none());
    }
}
