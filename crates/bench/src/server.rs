//! The server under test: either a `podium server` this bench starts in a temporary data
//! dir (on a free loopback port; agent disabled for the API scenarios, enabled with an
//! imported image for the pod scenarios) and stops at the end, or an existing one reached
//! through a kubeconfig. Also reads the process footprint from /proc (RSS, PSS, CPU).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{Client, Target, ACCEPT_JSON};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("podium binary {path}: {detail}")]
    Binary { path: String, detail: String },
    #[error("starting the server: {0}")]
    Spawn(String),
    #[error("server not ready after {waited:?}: {detail} (log: {log})")]
    NotReady {
        waited: Duration,
        detail: String,
        log: String,
    },
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// Run the node agent (pods really run); `false` passes `--disable-agent`.
    pub agent: bool,
    /// `--max-pods N` (the node's pod capacity), when given.
    pub max_pods: Option<usize>,
    /// The server's `RUST_LOG`.
    pub log_filter: String,
    /// An image archive (`docker save` format) loaded with `podium image import` into the
    /// data dir before the server starts, so pods find it cached.
    pub import: Option<PathBuf>,
}

impl SpawnOptions {
    /// API-only: no agent, warnings only (the API scenarios).
    pub fn api() -> SpawnOptions {
        SpawnOptions {
            agent: false,
            max_pods: None,
            log_filter: "warn".into(),
            import: None,
        }
    }
}

/// A server the bench started; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Spawned {
    child: Child,
    pub kubeconfig: PathBuf,
    pub log: PathBuf,
    pub data_dir: PathBuf,
    /// Spawn to first 200 from /readyz (includes TLS and polling granularity of 10 ms).
    pub ready_after: Duration,
    _dir: tempfile::TempDir,
}

impl Spawned {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the server to stop and waits up to 10 s for it.
    pub fn stop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// The `podium` binary beside this executable (both land in the same target dir).
pub fn default_podium_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("podium")))
        .unwrap_or_else(|| PathBuf::from("podium"))
}

fn free_port() -> Result<u16, ServerError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| ServerError::Spawn(format!("finding a free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| ServerError::Spawn(e.to_string()))
}

/// Starts `podium server` in a fresh temporary data dir and waits until /readyz is 200.
pub async fn spawn(
    bin: &Path,
    opts: &SpawnOptions,
    timeout: Duration,
) -> Result<Spawned, ServerError> {
    if !bin.is_file() {
        return Err(ServerError::Binary {
            path: bin.display().to_string(),
            detail: "not found (build it with `cargo build --release -p podium`)".into(),
        });
    }
    let dir = tempfile::Builder::new()
        .prefix("podium-bench-")
        .tempdir()
        .map_err(|e| ServerError::Spawn(format!("temp dir: {e}")))?;
    let port = free_port()?;
    let data = dir.path().join("data");
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let log = dir.path().join("server.log");
    let log_file =
        std::fs::File::create(&log).map_err(|e| ServerError::Spawn(format!("log file: {e}")))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| ServerError::Spawn(e.to_string()))?;
    if let Some(archive) = &opts.import {
        import_image(bin, &data, archive)?;
    }
    let mut cmd = Command::new(bin);
    cmd.arg("server")
        .arg("--data-dir")
        .arg(&data)
        .arg("--https-listen-port")
        .arg(port.to_string())
        .args(["--bind-address", "127.0.0.1", "--node-name", "bench"])
        .arg("--write-kubeconfig")
        .arg(&kubeconfig);
    if !opts.agent {
        cmd.arg("--disable-agent");
    }
    if let Some(n) = opts.max_pods {
        cmd.arg("--max-pods").arg(n.to_string());
    }
    let started = Instant::now();
    let child = cmd
        .env("RUST_LOG", &opts.log_filter)
        // Plain log lines (no ANSI colours): the pod bench parses them.
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(log_err))
        .spawn()
        .map_err(|e| ServerError::Spawn(format!("{}: {e}", bin.display())))?;
    let mut spawned = Spawned {
        child,
        kubeconfig,
        log,
        data_dir: data,
        ready_after: Duration::ZERO,
        _dir: dir,
    };
    let mut last = String::from("no kubeconfig yet");
    while started.elapsed() < timeout {
        if let Ok(Some(status)) = spawned.child.try_wait() {
            return Err(ServerError::NotReady {
                waited: started.elapsed(),
                detail: format!("server exited: {status}"),
                log: read_log(&spawned.log),
            });
        }
        if spawned.kubeconfig.is_file() {
            match ready_once(&spawned.kubeconfig).await {
                Ok(()) => {
                    spawned.ready_after = started.elapsed();
                    return Ok(spawned);
                }
                Err(e) => last = e,
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(ServerError::NotReady {
        waited: started.elapsed(),
        detail: last,
        log: read_log(&spawned.log),
    })
}

/// `podium image --data-dir DATA import ARCHIVE`, before the server starts.
fn import_image(bin: &Path, data: &Path, archive: &Path) -> Result<(), ServerError> {
    let out = Command::new(bin)
        .arg("image")
        .arg("--data-dir")
        .arg(data)
        .arg("import")
        .arg(archive)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ServerError::Spawn(format!("podium image import: {e}")))?;
    if !out.status.success() {
        return Err(ServerError::Spawn(format!(
            "podium image import {}: {}: {}",
            archive.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The last 20 lines of the server's log.
pub fn read_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(20).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

async fn ready_once(kubeconfig: &Path) -> Result<(), String> {
    let target = Target::load(kubeconfig).map_err(|e| e.to_string())?;
    let client = Client::connect(&target, 1, Duration::from_secs(2))
        .await
        .map_err(|e| e.to_string())?;
    let a = client
        .get("/readyz", ACCEPT_JSON)
        .await
        .map_err(|e| e.to_string())?;
    if a.status.is_success() {
        Ok(())
    } else {
        Err(format!("/readyz: {}", a.status))
    }
}

/// Resident set size of a process in bytes (VmRSS), if readable.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS:").map(|kb| kb * 1024)
}

/// Peak resident set size (VmHWM) in bytes.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    status_kb(pid, "VmHWM:").map(|kb| kb * 1024)
}

/// Proportional set size in bytes (`Pss` of /proc/<pid>/smaps_rollup): shared pages
/// count once across the processes sharing them.
pub fn pss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    parse_status_kb(&text, "Pss:").map(|kb| kb * 1024)
}

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kb(&text, key)
}

fn parse_status_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// User + system CPU time a process has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    parse_stat_cpu(&text, if ticks > 0 { ticks as u64 } else { 100 })
}

fn parse_stat_cpu(text: &str, ticks_per_s: u64) -> Option<Duration> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 in proc(5) numbering, so utime (14) and stime (15) are
    // at indexes 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks_per_s as f64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vmrss() {
        let text = "Name:\tpodium\nVmHWM:\t   20480 kB\nVmRSS:\t   12345 kB\n";
        assert_eq!(parse_status_kb(text, "VmRSS:"), Some(12345));
        assert_eq!(parse_status_kb(text, "VmHWM:"), Some(20480));
        assert_eq!(parse_status_kb(text, "VmSwap:"), None);
    }

    #[test]
    fn parses_pss_of_smaps_rollup() {
        let text = "55d0c0a00000-7ffd3a5f2000 ---p 00000000 00:00 0 [rollup]\nRss:      2048 kB\nPss:      1234 kB\nPss_Anon:  800 kB\n";
        assert_eq!(parse_status_kb(text, "Pss:"), Some(1234));
    }

    #[test]
    fn parses_cpu_from_stat_with_odd_name() {
        let text = "42 (po dium) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000";
        assert_eq!(parse_stat_cpu(text, 100), Some(Duration::from_secs(3)));
    }

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(pss_bytes(pid).unwrap() > 0);
        assert!(cpu_time(pid).is_some());
    }
}
