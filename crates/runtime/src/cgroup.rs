//! cgroup paths on the host, v1 and v2: which directories a cgroup path names in each
//! mounted hierarchy, reading the OOM-kill counter, and removing a cgroup subtree (the
//! runtime creates and configures cgroups; this module only finds and removes them).
//! Works on any root directory so the path logic is tested against a fake tree.

use std::path::{Path, PathBuf};

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
}
