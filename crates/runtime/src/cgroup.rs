//! cgroup paths on the host, v1 and v2: which directories a cgroup path names in each
//! mounted hierarchy, reading the OOM-kill counter, configuring a pod-level cgroup (the
//! OCI runtime creates and configures the containers' own cgroups below it), and
//! removing a cgroup subtree. Works on any root directory so the path logic is tested
//! against a fake tree.

use std::path::{Path, PathBuf};

use crate::spec::Resources;

/// The controllers a pod-level cgroup limits.
const POD_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// runc/crun's cgroup v2 conversion of cpu shares to `cpu.weight`:
/// 1 + ((shares-2)×9999)/262142; 0 stays 0 (unset).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

/// The files and values that express `r` in a cgroup of the given version, per
/// controller, in the order they must be written (the CFS period before the quota).
fn limit_files(v2: bool, r: &Resources) -> Vec<(&'static str, &'static str, String)> {
    let mut out = Vec::new();
    if v2 {
        if let Some(s) = r.cpu_shares {
            out.push(("cpu", "cpu.weight", shares_to_weight(s).to_string()));
        }
        if r.cpu_quota.is_some() || r.cpu_period.is_some() {
            let quota = r
                .cpu_quota
                .filter(|q| *q > 0)
                .map_or_else(|| "max".to_string(), |q| q.to_string());
            let period = r.cpu_period.unwrap_or(100_000);
            out.push(("cpu", "cpu.max", format!("{quota} {period}")));
        }
        if let Some(m) = r.memory_limit {
            out.push(("memory", "memory.max", m.to_string()));
        }
        if let Some(p) = r.pids_limit {
            out.push(("pids", "pids.max", p.to_string()));
        }
    } else {
        if let Some(s) = r.cpu_shares {
            out.push(("cpu", "cpu.shares", s.to_string()));
        }
        if let Some(p) = r.cpu_period {
            out.push(("cpu", "cpu.cfs_period_us", p.to_string()));
        }
        if let Some(q) = r.cpu_quota {
            out.push(("cpu", "cpu.cfs_quota_us", q.to_string()));
        }
        if let Some(m) = r.memory_limit {
            out.push(("memory", "memory.limit_in_bytes", m.to_string()));
        }
        if let Some(p) = r.pids_limit {
            out.push(("pids", "pids.max", p.to_string()));
        }
    }
    out
}

/// The cgroup hierarchies mounted under a root (normally `/sys/fs/cgroup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Pure v2: one unified hierarchy at the root.
    V2 { root: PathBuf },
    /// v1 (possibly hybrid): one directory per hierarchy; `unified` is the v2 mount of a
    /// hybrid host, where only some controllers (here: none useful) live.
    V1 {
        hierarchies: Vec<PathBuf>,
        unified: Option<PathBuf>,
    },
}

impl CgroupLayout {
    /// Detects the layout under `root`.
    pub fn detect(root: &Path) -> std::io::Result<CgroupLayout> {
        if root.join("cgroup.controllers").exists() {
            return Ok(CgroupLayout::V2 {
                root: root.to_path_buf(),
            });
        }
        let mut hierarchies = Vec::new();
        let mut unified = None;
        for entry in std::fs::read_dir(root)? {
            let entry = entry?;
            // Symlinks such as cpu -> cpu,cpuacct name a hierarchy already listed.
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let path = entry.path();
            if entry.file_name() == "unified" {
                unified = Some(path);
            } else {
                hierarchies.push(path);
            }
        }
        hierarchies.sort();
        Ok(CgroupLayout::V1 {
            hierarchies,
            unified,
        })
    }

    /// The host's layout.
    pub fn host() -> std::io::Result<CgroupLayout> {
        Self::detect(Path::new("/sys/fs/cgroup"))
    }

    /// The directories a cgroup path (e.g. `/podium-a/pod1/c1`) names, in every hierarchy.
    pub fn dirs(&self, cgroup_path: &str) -> Vec<PathBuf> {
        let rel = cgroup_path.trim_start_matches('/');
        match self {
            CgroupLayout::V2 { root } => vec![root.join(rel)],
            CgroupLayout::V1 {
                hierarchies,
                unified,
            } => hierarchies
                .iter()
                .chain(unified.iter())
                .map(|h| h.join(rel))
                .collect(),
        }
    }

    /// The directories of `cgroup_path` that exist.
    pub fn existing_dirs(&self, cgroup_path: &str) -> Vec<PathBuf> {
        self.dirs(cgroup_path)
            .into_iter()
            .filter(|d| d.is_dir())
            .collect()
    }

    /// How many times the OOM killer acted in the cgroup, if the memory controller says.
    pub fn oom_kills(&self, cgroup_path: &str) -> Option<u64> {
        let rel = cgroup_path.trim_start_matches('/');
        let (file, key) = match self {
            CgroupLayout::V2 { root } => (root.join(rel).join("memory.events"), "oom_kill"),
            CgroupLayout::V1 { hierarchies, .. } => {
                let mem = hierarchies
                    .iter()
                    .find(|h| h.file_name().is_some_and(|n| n == "memory"))?;
                (mem.join(rel).join("memory.oom_control"), "oom_kill")
            }
        };
        let text = std::fs::read_to_string(file).ok()?;
        text.lines().find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(key))
                .then(|| it.next())
                .flatten()
                .and_then(|v| v.parse().ok())
        })
    }

    /// Creates `cgroup_path` for the cpu, memory and pids controllers and writes `r`'s
    /// limits there: the pod-level cgroup kubelet configures above its containers'. On v2
    /// the controllers are enabled in every ancestor's `cgroup.subtree_control` first.
    pub fn configure(&self, cgroup_path: &str, r: &Resources) -> std::io::Result<()> {
        let rel = cgroup_path.trim_start_matches('/');
        match self {
            CgroupLayout::V2 { root } => {
                let mut dir = root.clone();
                for part in Path::new(rel).components() {
                    let ctl = dir.join("cgroup.subtree_control");
                    for c in POD_CONTROLLERS {
                        // A controller the kernel does not offer here is left alone.
                        let _ = std::fs::write(&ctl, format!("+{c}"));
                    }
                    dir.push(part);
                    ensure_dir(&dir)?;
                }
                for (_, file, value) in limit_files(true, r) {
                    std::fs::write(dir.join(file), value)?;
                }
            }
            CgroupLayout::V1 { hierarchies, .. } => {
                let dir_of = |controller: &str| {
                    hierarchies
                        .iter()
                        .find(|h| {
                            h.file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(|n| n.split(',').any(|c| c == controller))
                        })
                        .map(|h| h.join(rel))
                };
                // The pod cgroup exists for every pod controller (its processes are
                // accounted there), limited or not.
                for controller in POD_CONTROLLERS {
                    if let Some(dir) = dir_of(controller) {
                        ensure_dir(&dir)?;
                    }
                }
                for (controller, file, value) in limit_files(false, r) {
                    if let Some(dir) = dir_of(controller) {
                        std::fs::write(dir.join(file), value)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Moves process `pid` into `cgroup_path` in every hierarchy where that cgroup exists
    /// (e.g. a pod's pause process into the pod cgroup [`configure`](Self::configure)
    /// made). Returns how many hierarchies took it.
    pub fn add_process(&self, cgroup_path: &str, pid: i32) -> std::io::Result<usize> {
        let mut moved = 0;
        for dir in self.existing_dirs(cgroup_path) {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
            moved += 1;
        }
        Ok(moved)
    }

    /// Removes `cgroup_path` and every cgroup below it in all hierarchies (rmdir only:
    /// cgroupfs directories are removed, never their files). Missing ones are fine.
    pub fn remove(&self, cgroup_path: &str) -> std::io::Result<()> {
        let mut first_err = None;
        for dir in self.dirs(cgroup_path) {
            if let Err(e) = rmdir_tree(&dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::create_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

fn rmdir_tree(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            rmdir_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_paths_and_oom_counter() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        let l = CgroupLayout::detect(d.path()).unwrap();
        assert_eq!(
            l,
            CgroupLayout::V2 {
                root: d.path().to_path_buf()
            }
        );
        assert_eq!(
            l.dirs("/podium-x/pod1/c1"),
            vec![d.path().join("podium-x/pod1/c1")]
        );
        let c = d.path().join("podium-x/pod1/c1");
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(
            c.join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(l.oom_kills("/podium-x/pod1/c1"), Some(2));
        assert_eq!(l.oom_kills("/podium-x/none"), None);
        assert_eq!(l.existing_dirs("/podium-x/pod1/c1").len(), 1);
    }

    #[test]
    fn v1_hybrid_paths_skip_symlinks() {
        let d = tempfile::tempdir().unwrap();
        for h in ["cpu,cpuacct", "memory", "pids", "unified"] {
            std::fs::create_dir(d.path().join(h)).unwrap();
        }
        std::os::unix::fs::symlink("cpu,cpuacct", d.path().join("cpu")).unwrap();
        let l = CgroupLayout::detect(d.path()).unwrap();
        let dirs = l.dirs("/a/b");
        assert_eq!(
            dirs,
            vec![
                d.path().join("cpu,cpuacct/a/b"),
                d.path().join("memory/a/b"),
                d.path().join("pids/a/b"),
                d.path().join("unified/a/b"),
            ]
        );
        let m = d.path().join("memory/a/b");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(
            m.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(l.oom_kills("/a/b"), Some(1));
    }

    #[test]
    fn remove_takes_subtrees_in_every_hierarchy() {
        let d = tempfile::tempdir().unwrap();
        for h in ["memory", "pids"] {
            std::fs::create_dir_all(d.path().join(h).join("inst/pod/c1")).unwrap();
            std::fs::create_dir_all(d.path().join(h).join("inst/pod/c2")).unwrap();
        }
        let l = CgroupLayout::detect(d.path()).unwrap();
        l.remove("/inst").unwrap();
        assert!(l.existing_dirs("/inst").is_empty());
        assert!(d.path().join("memory").is_dir());
        // Removing again is fine.
        l.remove("/inst").unwrap();
    }

    fn pod_limits() -> Resources {
        Resources {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(64 << 20),
            pids_limit: Some(100),
        }
    }

    fn read(p: PathBuf) -> String {
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn configure_v1_writes_each_controller_in_its_hierarchy() {
        let d = tempfile::tempdir().unwrap();
        for h in ["cpu,cpuacct", "memory", "pids", "blkio", "unified"] {
            std::fs::create_dir(d.path().join(h)).unwrap();
        }
        std::os::unix::fs::symlink("cpu,cpuacct", d.path().join("cpu")).unwrap();
        let l = CgroupLayout::detect(d.path()).unwrap();
        l.configure("/inst/kubepods/burstable/podX", &pod_limits())
            .unwrap();
        let at = |h: &str, f: &str| {
            read(
                d.path()
                    .join(h)
                    .join("inst/kubepods/burstable/podX")
                    .join(f),
            )
        };
        assert_eq!(at("cpu,cpuacct", "cpu.shares"), "512");
        assert_eq!(at("cpu,cpuacct", "cpu.cfs_period_us"), "100000");
        assert_eq!(at("cpu,cpuacct", "cpu.cfs_quota_us"), "50000");
        assert_eq!(
            at("memory", "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(at("pids", "pids.max"), "100");
        // Hierarchies without a limit to set are not touched.
        assert!(!d.path().join("blkio/inst").exists());
        assert!(!d.path().join("unified/inst").exists());
        // Configuring again (agent restart) is fine; unset values are not written.
        let shares_only = Resources {
            cpu_shares: Some(2),
            ..Resources::default()
        };
        l.configure("/inst/kubepods/besteffort/podY", &shares_only)
            .unwrap();
        assert_eq!(
            read(
                d.path()
                    .join("cpu,cpuacct/inst/kubepods/besteffort/podY/cpu.shares")
            ),
            "2"
        );
        // The unlimited controllers still get the pod cgroup, with nothing written.
        let mem = d.path().join("memory/inst/kubepods/besteffort/podY");
        assert!(mem.is_dir() && !mem.join("memory.limit_in_bytes").exists());
    }

    #[test]
    fn configure_v2_enables_controllers_and_writes_v2_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        let l = CgroupLayout::detect(d.path()).unwrap();
        l.configure("/inst/kubepods/podX", &pod_limits()).unwrap();
        let pod = d.path().join("inst/kubepods/podX");
        assert_eq!(
            read(pod.join("cpu.weight")),
            shares_to_weight(512).to_string()
        );
        assert_eq!(read(pod.join("cpu.max")), "50000 100000");
        assert_eq!(read(pod.join("memory.max")), (64u64 << 20).to_string());
        assert_eq!(read(pod.join("pids.max")), "100");
        // Every ancestor delegates (the fake file keeps the last write).
        for dir in ["", "inst", "inst/kubepods"] {
            assert!(
                d.path().join(dir).join("cgroup.subtree_control").exists(),
                "{dir}"
            );
        }
        assert!(!pod.join("cgroup.subtree_control").exists());
        let no_quota = Resources {
            cpu_period: Some(100_000),
            ..Resources::default()
        };
        l.configure("/inst/kubepods/podY", &no_quota).unwrap();
        assert_eq!(
            read(d.path().join("inst/kubepods/podY/cpu.max")),
            "max 100000"
        );
    }

    #[test]
    fn weight_conversion_matches_runc() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn add_process_writes_cgroup_procs_where_the_cgroup_exists() {
        let d = tempfile::tempdir().unwrap();
        for h in ["cpu,cpuacct", "memory", "pids", "blkio"] {
            std::fs::create_dir(d.path().join(h)).unwrap();
        }
        let l = CgroupLayout::detect(d.path()).unwrap();
        l.configure("/inst/podX", &pod_limits()).unwrap();
        assert_eq!(l.add_process("/inst/podX", 4242).unwrap(), 3);
        assert_eq!(read(d.path().join("memory/inst/podX/cgroup.procs")), "4242");
        assert!(!d.path().join("blkio/inst/podX").exists());
        assert_eq!(l.add_process("/inst/none", 1).unwrap(), 0);
    }
}
