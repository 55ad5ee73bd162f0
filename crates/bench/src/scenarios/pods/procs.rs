//! The host processes that pods cost besides their own: Podium's `podium shim` per
//! container (found by its `shim` argument and a path under the server's data dir), and
//! podman's `conmon` per container plus the pod's infra (pause) process (found by a path
//! under the run's podman root). Summed as PSS from /proc/<pid>/smaps_rollup, so the pages
//! the processes share (the binary's text) count once in total, not once per process.

use std::path::Path;

use serde::Serialize;

use crate::server::pss_bytes;

/// A process: pid, parent pid, command line.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub args: Vec<String>,
}

fn read_proc(pid: u32) -> Option<Proc> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(Proc {
        pid,
        ppid: parse_ppid(&stat)?,
        args,
    })
}

/// The parent pid from /proc/<pid>/stat (field 4; the name may hold spaces and ')').
fn parse_ppid(stat: &str) -> Option<u32> {
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Every process now (those that exit while being read are skipped).
pub fn all() -> Vec<Proc> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_proc)
        .collect()
}

/// `podium shim …` processes of the server whose data dir is `data_dir` (their log path
/// lies under it).
pub fn is_shim_of(p: &Proc, data_dir: &str) -> bool {
    p.args.get(1).map(String::as_str) == Some("shim")
        && p.args.iter().any(|a| a.starts_with(data_dir))
}

/// `conmon` processes of the podman store at `root`.
pub fn is_conmon_of(p: &Proc, root: &str) -> bool {
    p.args
        .first()
        .is_some_and(|a| a == "conmon" || a.ends_with("/conmon"))
        && p.args.iter().any(|a| a.contains(root))
}

/// Pids of the shims of the server on `data_dir`.
pub fn shims(data_dir: &Path) -> Vec<u32> {
    let d = data_dir.display().to_string();
    all()
        .into_iter()
        .filter(|p| is_shim_of(p, &d))
        .map(|p| p.pid)
        .collect()
}

/// Per-pod host overhead of one engine at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overhead {
    pub pods: usize,
    /// The per-container helper processes (shims, conmons) and their PSS sum.
    pub helpers: usize,
    pub helpers_pss_bytes: u64,
    /// Infra (pause) processes, podman only.
    pub infra: usize,
    pub infra_pss_bytes: u64,
    /// The containers' own processes (children of the helpers), for scale.
    pub workload_pss_bytes: u64,
}

impl Overhead {
    /// Helper plus infra PSS per pod.
    pub fn per_pod_bytes(&self) -> f64 {
        (self.helpers_pss_bytes + self.infra_pss_bytes) as f64 / self.pods.max(1) as f64
    }
}

fn pss_sum(pids: impl Iterator<Item = u32>) -> u64 {
    pids.filter_map(pss_bytes).sum()
}

/// The overhead of `pods` pods whose helpers `is_helper` picks. Children of helpers whose
/// command line `is_infra` picks are infra; other children (and their descendants) are
/// the workload.
pub fn overhead(
    pods: usize,
    is_helper: impl Fn(&Proc) -> bool,
    is_infra: impl Fn(&Proc) -> bool,
) -> Overhead {
    let procs = all();
    let helpers: Vec<u32> = procs
        .iter()
        .filter(|p| is_helper(p))
        .map(|p| p.pid)
        .collect();
    let mut infra = Vec::new();
    let mut workload = Vec::new();
    // Walk down from the helpers (a container's processes are their descendants).
    let mut frontier: Vec<(u32, bool)> = helpers.iter().map(|p| (*p, false)).collect();
    while let Some((parent, under_infra)) = frontier.pop() {
        for c in procs.iter().filter(|p| p.ppid == parent) {
            let top_infra = helpers.contains(&parent) && is_infra(c);
            if top_infra {
                infra.push(c.pid);
            } else if !under_infra {
                workload.push(c.pid);
            }
            frontier.push((c.pid, under_infra || top_infra));
        }
    }
    Overhead {
        pods,
        helpers: helpers.len(),
        helpers_pss_bytes: pss_sum(helpers.into_iter()),
        infra: infra.len(),
        infra_pss_bytes: pss_sum(infra.into_iter()),
        workload_pss_bytes: pss_sum(workload.into_iter()),
    }
}

/// Podium: shims of the server on `data_dir`; there is no infra process.
pub fn podium_overhead(pods: usize, data_dir: &Path) -> Overhead {
    let d = data_dir.display().to_string();
    overhead(pods, |p| is_shim_of(p, &d), |_| false)
}

/// podman: conmons of the store at `root`; the infra container runs catatonit.
pub fn podman_overhead(pods: usize, root: &Path) -> Overhead {
    let r = root.display().to_string();
    overhead(
        pods,
        |p| is_conmon_of(p, &r),
        |p| p.args.first().is_some_and(|a| a.contains("catatonit")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(args: &[&str]) -> Proc {
        Proc {
            pid: 1,
            ppid: 0,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn recognises_shims_and_conmons() {
        let shim = proc(&[
            "/proc/self/exe",
            "shim",
            "--id",
            "podium-ab-uid-main-1",
            "--log",
            "/tmp/podium-bench-x/data/pods/ns_p_uid/main/0.log",
        ]);
        assert!(is_shim_of(&shim, "/tmp/podium-bench-x/data"));
        assert!(!is_shim_of(&shim, "/tmp/podium-bench-y/data"));
        assert!(!is_shim_of(
            &proc(&["podium", "server", "--data-dir", "/tmp/podium-bench-x/data"]),
            "/tmp/podium-bench-x/data"
        ));
        let conmon = proc(&[
            "/usr/bin/conmon",
            "--api-version",
            "1",
            "-b",
            "/tmp/pm/root/overlay-containers/abc/userdata",
        ]);
        assert!(is_conmon_of(&conmon, "/tmp/pm/root"));
        assert!(!is_conmon_of(&conmon, "/tmp/other"));
    }

    #[test]
    fn parses_ppid_with_odd_names() {
        assert_eq!(parse_ppid("42 (a b) c) S 7 42 42 0"), Some(7));
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn own_process_is_found() {
        let me = std::process::id();
        let all = all();
        let p = all.iter().find(|p| p.pid == me).unwrap();
        assert!(!p.args.is_empty());
    }
}
