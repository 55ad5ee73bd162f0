//! The `podman kube play` peer of the pod benchmark: one podman store for the whole run
//! (`--root`, `--runroot` and `--tmpdir` in the run's temporary directory, configured by
//! [`PodmanConf`]), the benchmark image loaded with `podman load` from the same `docker
//! save` archive Podium imports, and timed `kube play --network none` / `kube down` of the
//! same Pod YAML Podium gets. `--network none` because Podium pods have only loopback yet;
//! podman's default would add a CNI/netavark bridge to every pod.
//!
//! [`Podman::cleanup`] removes every pod and container of the store (`pod rm -af`,
//! `rm -af`) and unmounts anything left under the run's directory, on success and error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::peer::{show, timed, PodmanConf, Ran};

pub struct Podman {
    conf: PodmanConf,
    pub root: PathBuf,
    run: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
    /// `podman --version`.
    pub version: String,
}

impl Podman {
    /// Prepares the store under `dir` and loads `archive` into it (untimed).
    pub async fn setup(dir: &Path, driver: &str, archive: &Path) -> anyhow::Result<Podman> {
        let conf = PodmanConf::write(&dir.join("conf"), dir, driver)?;
        for d in ["root", "run", "libpod", "yaml"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        let p = Podman {
            conf,
            root: dir.join("root"),
            run: dir.join("run"),
            tmp: dir.join("libpod"),
            dir: dir.to_path_buf(),
            version: super::super::peer::version(&["podman", "--version"]),
        };
        p.run_cmd(&["load", "--quiet", "--input", &archive.display().to_string()])
            .await?;
        Ok(p)
    }

    fn cmd(&self, args: &[&str]) -> Vec<String> {
        let mut c = self.conf.global_args(&self.root, &self.run);
        c.push("--tmpdir".into());
        c.push(self.tmp.display().to_string());
        c.extend(args.iter().map(|s| s.to_string()));
        c
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.conf.env();
        env.push(("TMPDIR", self.tmp.display().to_string()));
        env
    }

    async fn run_cmd(&self, args: &[&str]) -> anyhow::Result<Ran> {
        timed(&self.cmd(args), &self.env()).await
    }

    /// Writes `yaml` to the run's YAML dir as `name.yaml`.
    pub fn write_yaml(&self, name: &str, yaml: &str) -> anyhow::Result<PathBuf> {
        let p = self.dir.join("yaml").join(format!("{name}.yaml"));
        std::fs::write(&p, yaml)?;
        Ok(p)
    }

    /// The command line of `kube play` (for the report).
    pub fn play_cmd(&self, yaml: &Path) -> String {
        show(&self.cmd(&[
            "kube",
            "play",
            "--network",
            "none",
            &yaml.display().to_string(),
        ]))
    }

    pub fn down_cmd(&self, yaml: &Path) -> String {
        show(&self.cmd(&["kube", "down", &yaml.display().to_string()]))
    }

    /// `podman kube play --network none FILE`: returns once every pod of the file runs.
    pub async fn play(&self, yaml: &Path) -> anyhow::Result<Duration> {
        let y = yaml.display().to_string();
        Ok(self
            .run_cmd(&["kube", "play", "--network", "none", &y])
            .await?
            .wall)
    }

    /// `podman kube down FILE`: stops and removes the file's pods.
    pub async fn down(&self, yaml: &Path) -> anyhow::Result<Duration> {
        let y = yaml.display().to_string();
        Ok(self.run_cmd(&["kube", "down", &y]).await?.wall)
    }

    /// The number of pods podman knows.
    pub async fn pod_count(&self) -> anyhow::Result<usize> {
        let r = self.run_cmd(&["pod", "ps", "--quiet"]).await?;
        Ok(r.stdout.lines().filter(|l| !l.trim().is_empty()).count())
    }

    /// Removes every pod and container, then anything still mounted under the run's dir.
    pub async fn cleanup(&self) {
        for args in [
            &["pod", "rm", "--all", "--force"][..],
            &["rm", "--all", "--force"],
        ] {
            if let Err(e) = self.run_cmd(args).await {
                eprintln!("podman cleanup: {e:#}");
            }
        }
        unmount_under(&self.dir);
    }
}

/// Lazily unmounts every mount point under `dir` (deepest first).
pub fn unmount_under(dir: &Path) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let Ok(c) = std::ffi::CString::new(p.clone()) else {
            continue;
        };
        // SAFETY: umount2 with a valid NUL-terminated path; no memory is shared.
        let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            eprintln!("umount {p}: {}", std::io::Error::last_os_error());
        }
    }
}
