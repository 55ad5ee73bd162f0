//! The on-disk state of one container, kept in its state directory so that any process
//! (the agent that started it, or a new agent after a restart) can find the shim and the
//! container and read how the container ended. All files are written atomically
//! (temporary file + rename), so a reader sees a whole file or none.
//!
//! Layout of `<state_dir>`: `shim.json` (shim pid), `container.json` (container pid,
//! start time), `exit.json` (exit status, written once when the container ends),
//! `start-error` (why it never started), `shim.log` (the shim's own diagnostics) and, with
//! an external runtime, `runtime.log` (its JSON log) and `runtime.pid` (its pid file).

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const SHIM_FILE: &str = "shim.json";
pub const CONTAINER_FILE: &str = "container.json";
pub const EXIT_FILE: &str = "exit.json";
pub const START_ERROR_FILE: &str = "start-error";
pub const SHIM_LOG_FILE: &str = "shim.log";

/// A process identified by pid and its start time (clock ticks since boot, field 22 of
/// /proc/<pid>/stat), which together survive pid reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    pub start_ticks: u64,
}

impl ProcessId {
    /// Identifies a live process; `None` if it does not exist.
    pub fn of(pid: i32) -> Option<ProcessId> {
        proc_start_ticks(pid).map(|start_ticks| ProcessId { pid, start_ticks })
    }

    /// True if this very process (not a later one with the same pid) is alive and not a zombie.
    pub fn is_alive(&self) -> bool {
        match proc_stat(self.pid) {
            Some((state, ticks)) => ticks == self.start_ticks && state != 'Z' && state != 'X',
            None => false,
        }
    }
}

fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22.
    let state = fields.first()?.chars().next()?;
    let ticks = fields.get(19)?.parse().ok()?;
    Some((state, ticks))
}

fn proc_start_ticks(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, t)| t)
}

/// Written by the shim as soon as it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimRecord {
    pub shim: ProcessId,
}

/// Written by the shim once the container process runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub process: ProcessId,
    pub started_at: DateTime<Utc>,
    pub log_path: PathBuf,
    /// The OCI runtime that created it (`builtin` or a binary's path; see
    /// `Backend::as_arg`), so that a later agent configured otherwise still deletes it
    /// with the right one. Absent in records of older shims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code if it exited.
    pub code: Option<i32>,
    /// The signal if it was killed by one.
    pub signal: Option<i32>,
    pub finished_at: DateTime<Utc>,
    /// The kernel's OOM killer killed a process of the container's cgroup.
    pub oom_killed: bool,
}

impl ExitStatus {
    /// The exit code as Kubernetes reports it: the code, or 128 + the signal number.
    pub fn exit_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => -1,
        }
    }
}

/// Writes `bytes` to `dir/name` atomically and durably enough for a crash of the agent.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}

pub fn write_json<T: Serialize>(dir: &Path, name: &str, v: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(v).map_err(std::io::Error::other)?;
    write_atomic(dir, name, &bytes)
}

/// Reads a JSON state file; `Ok(None)` if it does not exist.
pub fn read_json<T: for<'de> Deserialize<'de>>(
    dir: &Path,
    name: &str,
) -> std::io::Result<Option<T>> {
    match std::fs::read(dir.join(name)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_from_code_or_signal() {
        let t = Utc::now();
        let e = |code, signal| ExitStatus {
            code,
            signal,
            finished_at: t,
            oom_killed: false,
        };
        assert_eq!(e(Some(3), None).exit_code(), 3);
        assert_eq!(e(None, Some(15)).exit_code(), 143);
        assert_eq!(e(None, Some(9)).exit_code(), 137);
    }

    #[test]
    fn atomic_json_round_trip() {
        let d = tempfile::tempdir().unwrap();
        assert!(read_json::<ExitStatus>(d.path(), EXIT_FILE)
            .unwrap()
            .is_none());
        let st = ExitStatus {
            code: Some(0),
            signal: None,
            finished_at: Utc::now(),
            oom_killed: true,
        };
        write_json(d.path(), EXIT_FILE, &st).unwrap();
        assert_eq!(
            read_json::<ExitStatus>(d.path(), EXIT_FILE).unwrap(),
            Some(st)
        );
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn process_identity_detects_self_and_reuse() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        let other = ProcessId {
            pid: me.pid,
            start_ticks: me.start_ticks + 1,
        };
        assert!(!other.is_alive());
        assert!(ProcessId::of(i32::MAX).is_none());
    }
}
