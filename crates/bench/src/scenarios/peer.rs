//! Running peer tools (podman, skopeo, umoci) and Podium's own CLI as separate processes,
//! the way a user runs them: timed commands (wall time and the CPU of the command and its
//! waited-for children, each started after a `sync(2)`), tool lookup and versions, and
//! podman's configuration for a run.
//!
//! [`PodmanConf`] writes the run's own `containers.conf`, `registries.conf`,
//! `storage.conf` and `policy.json` into a directory of the run, and hands them to podman
//! through `CONTAINERS_CONF` and friends, so no host configuration is read or written:
//! runc as the runtime (crun refuses this host's cgroups), cgroupfs, no events log, the
//! ulimits this host allows (its hard RLIMIT_NOFILE is 20000), and a network config
//! directory of the run's own. Every podman command also gets `--root` and `--runroot`
//! in temporary directories ([`PodmanConf::global_args`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
}

/// A program on `PATH`, if there is one.
pub fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(prog))
            .find(|f| f.is_file())
    })
}

/// The first line a version command prints (empty when it fails).
pub fn version(cmd: &[&str]) -> String {
    std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// Removes a scratch dir (podman's overlay dirs may hold read-only files).
pub fn remove_dir(dir: &Path) {
    if std::fs::remove_dir_all(dir).is_err() {
        let _ = std::process::Command::new("rm")
            .arg("-rf")
            .arg(dir)
            .status();
    }
}

/// CPU time of waited-for children so far (this process's children and their own
/// waited-for descendants).
pub fn children_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass; nothing else is touched.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Flushes dirty pages so one tool's write-back is not billed to the next.
pub fn sync_disks() {
    // SAFETY: sync(2) has no arguments and no failure mode.
    unsafe { libc::sync() }
}

/// What one command did.
#[derive(Debug)]
pub struct Ran {
    pub wall: Duration,
    pub cpu: Duration,
    pub stdout: String,
}

/// A command as one line.
pub fn show(cmd: &[String]) -> String {
    cmd.join(" ")
}

/// Runs `cmd` (after a sync) and times it; a non-zero exit is an error.
pub async fn timed(cmd: &[String], env: &[(&str, String)]) -> anyhow::Result<Ran> {
    let (prog, args) = cmd.split_first().context("empty command")?;
    sync_disks();
    let cpu0 = children_cpu();
    let start = Instant::now();
    let out = tokio::process::Command::new(prog)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {prog}"))?;
    let wall = start.elapsed();
    let cpu = children_cpu().saturating_sub(cpu0);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(PeerError::Command {
            command: show(cmd),
            status: out.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        }
        .into());
    }
    Ok(Ran {
        wall,
        cpu,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    })
}

/// The podman configuration of one benchmark run (see the module header).
#[derive(Debug, Clone)]
pub struct PodmanConf {
    /// Holds containers.conf, registries.conf, storage.conf and policy.json.
    pub dir: PathBuf,
    pub driver: String,
}

impl PodmanConf {
    /// Writes the configuration files into `dir` (created); `scratch` gets the unused
    /// storage roots podman insists on and the network config directory.
    pub fn write(dir: &Path, scratch: &Path, driver: &str) -> std::io::Result<PodmanConf> {
        std::fs::create_dir_all(dir)?;
        for (name, text) in [
            (
                "containers.conf",
                format!(
                    "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"none\"\n[network]\nnetwork_config_dir = \"{}\"\n",
                    scratch.join("networks").display()
                ),
            ),
            (
                "registries.conf",
                "unqualified-search-registries = []\n".to_string(),
            ),
            (
                "storage.conf",
                // podman insists on both roots here; every run overrides them with flags.
                format!(
                    "[storage]\ndriver = \"{driver}\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                    scratch.join("unused-runroot").display(),
                    scratch.join("unused-graphroot").display()
                ),
            ),
            (
                // Accepts unsigned images, as Debian's default policy does.
                "policy.json",
                "{\"default\": [{\"type\": \"insecureAcceptAnything\"}]}\n".to_string(),
            ),
        ] {
            std::fs::write(dir.join(name), text)?;
        }
        Ok(PodmanConf {
            dir: dir.to_path_buf(),
            driver: driver.to_string(),
        })
    }

    pub fn policy(&self) -> PathBuf {
        self.dir.join("policy.json")
    }

    /// `CONTAINERS_CONF`, `CONTAINERS_REGISTRIES_CONF` and `CONTAINERS_STORAGE_CONF`.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let c = |f: &str| self.dir.join(f).display().to_string();
        vec![
            ("CONTAINERS_CONF", c("containers.conf")),
            ("CONTAINERS_REGISTRIES_CONF", c("registries.conf")),
            ("CONTAINERS_STORAGE_CONF", c("storage.conf")),
        ]
    }

    /// `podman --root ROOT --runroot RUN --storage-driver D --cgroup-manager cgroupfs
    /// --events-backend none`: the start of every podman command of the run.
    pub fn global_args(&self, root: &Path, run: &Path) -> Vec<String> {
        vec![
            "podman".into(),
            "--root".into(),
            root.display().to_string(),
            "--runroot".into(),
            run.display().to_string(),
            "--storage-driver".into(),
            self.driver.clone(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "none".into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_conf_stays_in_its_dirs() {
        let d = tempfile::tempdir().unwrap();
        let conf = PodmanConf::write(&d.path().join("conf"), d.path(), "overlay").unwrap();
        let cc = std::fs::read_to_string(conf.dir.join("containers.conf")).unwrap();
        assert!(cc.contains("runtime = \"runc\""), "{cc}");
        assert!(cc.contains("nofile=20000:20000"), "{cc}");
        assert!(cc.contains(&d.path().join("networks").display().to_string()));
        let env = conf.env();
        assert_eq!(env.len(), 3);
        assert!(env
            .iter()
            .all(|(_, v)| v.starts_with(&*d.path().to_string_lossy())));
        let args = conf.global_args(Path::new("/r"), Path::new("/u"));
        assert_eq!(&args[..5], ["podman", "--root", "/r", "--runroot", "/u"]);
    }

    #[tokio::test]
    async fn timed_reports_failures_with_stderr() {
        let ok = timed(&["true".to_string()], &[]).await.unwrap();
        assert!(ok.wall > Duration::ZERO);
        let cmd: Vec<String> = ["sh", "-c", "echo nope >&2; exit 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let e = timed(&cmd, &[]).await.unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
