//! The narrow interface the node agent drives ([`ContainerRuntime`]) and its Linux
//! implementation ([`LinuxRuntime`]): sandboxes, plus containers each run by a shim.
//! Everything lives under one per-instance root directory:
//! `<root>/pods/<pod-uid>/` (sandboxes), `<root>/containers/<id>/` (state dir with
//! `bundle/config.json`), `<root>/oci/` (the OCI runtime's own state).
//! The calls block; an async agent calls them from `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::client::{self, ContainerState, ShimCommand, ShimError, ShimHandle, StartOptions};
use crate::log::Rotation;
use crate::sandbox::{self, Sandbox, SandboxConfig, SandboxError};
use crate::shim::Backend;
use crate::spec::{self, ContainerConfig, Resources, SpecError};
use crate::state::ExitStatus;

/// Errors of runtime operations.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid container id {0:?}")]
    InvalidId(String),
    #[error("container {0} not found")]
    NotFound(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Shim(#[from] ShimError),
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        source: std::io::Error,
    },
}

/// One container to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRequest {
    /// Unique per instance: letters, digits, `-`, `_`, `.`.
    pub id: String,
    pub config: ContainerConfig,
    /// The CRI-format log file.
    pub log_path: PathBuf,
}

/// A started container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub pid: i32,
    pub started_at: DateTime<Utc>,
}

/// A container's state as the runtime knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Running {
        pid: i32,
        started_at: DateTime<Utc>,
    },
    Exited {
        started_at: DateTime<Utc>,
        exit: ExitStatus,
    },
    /// Its shim vanished without recording an exit (report as Unknown / exit code -1).
    Lost {
        started_at: DateTime<Utc>,
    },
}

/// What the node agent needs from a container runtime. Implemented by [`LinuxRuntime`]
/// and by [`crate::fake::RecordingRuntime`] for agent unit tests.
pub trait ContainerRuntime: Send + Sync {
    fn create_sandbox(&self, cfg: &SandboxConfig) -> Result<Sandbox, RuntimeError>;
    /// Idempotent.
    fn remove_sandbox(&self, pod_uid: &str) -> Result<(), RuntimeError>;
    /// Creates the pod-level cgroup (e.g. `/<instance>/kubepods/burstable/pod<uid>`) with
    /// the pod's limits, above its containers' cgroups. Idempotent.
    fn configure_pod_cgroup(&self, cgroup_path: &str, r: &Resources) -> Result<(), RuntimeError>;
    /// Creates and starts a container; returns once it runs (or with why it did not).
    fn start(&self, req: &ContainerRequest) -> Result<ContainerInfo, RuntimeError>;
    fn status(&self, id: &str) -> Result<Status, RuntimeError>;
    /// Signals the container's init process; false if it had already exited.
    fn kill(&self, id: &str, signal: i32) -> Result<bool, RuntimeError>;
    /// The exit status, waiting up to `timeout` (`None`: forever); `Ok(None)` on timeout.
    fn wait(&self, id: &str, timeout: Option<Duration>)
        -> Result<Option<ExitStatus>, RuntimeError>;
    /// Kills if needed and removes all state and the cgroup; the log file stays. Idempotent.
    fn delete(&self, id: &str) -> Result<(), RuntimeError>;
    /// Ids of all containers with state (for re-adoption after a restart).
    fn list(&self) -> Result<Vec<String>, RuntimeError>;
}

/// Configuration of [`LinuxRuntime`].
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Instance name: prefixes host-wide resources (the cgroup parent).
    pub instance: String,
    /// Per-instance root directory, e.g. `/run/podium/<instance>`.
    pub root: PathBuf,
    pub shim: ShimCommand,
    pub backend: Backend,
    pub start_timeout: Duration,
    /// Rotation of container logs by size (`None`: one growing file per container run).
    pub log_rotation: Option<Rotation>,
}

/// Sandboxes and shim-run containers on this host.
#[derive(Debug, Clone)]
pub struct LinuxRuntime {
    opts: RuntimeOptions,
}

pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

impl LinuxRuntime {
    pub fn new(opts: RuntimeOptions) -> LinuxRuntime {
        LinuxRuntime { opts }
    }

    pub fn options(&self) -> &RuntimeOptions {
        &self.opts
    }

    /// Where sandboxes are pinned.
    pub fn pods_dir(&self) -> PathBuf {
        self.opts.root.join("pods")
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.opts.root.join("containers")
    }

    pub fn oci_root(&self) -> PathBuf {
        self.opts.root.join("oci")
    }

    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    /// The cgroup parent of this instance (`/<instance>`); put container cgroups below it.
    pub fn cgroup_parent(&self) -> String {
        format!("/{}", self.opts.instance)
    }

    fn check(&self, id: &str) -> Result<(), RuntimeError> {
        if valid_id(id) {
            Ok(())
        } else {
            Err(RuntimeError::InvalidId(id.to_string()))
        }
    }

    fn handle(&self, id: &str) -> Result<ShimHandle, RuntimeError> {
        self.check(id)?;
        let dir = self.state_dir(id);
        match ShimHandle::adopt(id, &dir, &self.oci_root(), self.opts.backend.clone()) {
            Ok(h) => Ok(h),
            Err(ShimError::NotFound { .. }) => Err(RuntimeError::NotFound(id.to_string())),
            Err(e) => Err(e.into()),
        }
    }
}

/// Writes `spec` as `<bundle>/config.json`.
pub fn write_bundle(bundle: &Path, spec: &oci_spec::runtime::Spec) -> std::io::Result<()> {
    std::fs::create_dir_all(bundle)?;
    let bytes = serde_json::to_vec_pretty(spec).map_err(std::io::Error::other)?;
    crate::state::write_atomic(bundle, "config.json", &bytes)
}

impl ContainerRuntime for LinuxRuntime {
    fn create_sandbox(&self, cfg: &SandboxConfig) -> Result<Sandbox, RuntimeError> {
        Ok(sandbox::create_sandbox(
            &self.pods_dir(),
            cfg,
            &self.opts.shim,
        )?)
    }

    fn remove_sandbox(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        Ok(sandbox::remove_sandbox(&self.pods_dir(), pod_uid)?)
    }

    fn configure_pod_cgroup(&self, cgroup_path: &str, r: &Resources) -> Result<(), RuntimeError> {
        let io = |source| RuntimeError::Io {
            op: "configuring the pod cgroup",
            source,
        };
        crate::cgroup::CgroupLayout::host()
            .map_err(io)?
            .configure(cgroup_path, r)
            .map_err(io)
    }

    fn start(&self, req: &ContainerRequest) -> Result<ContainerInfo, RuntimeError> {
        self.check(&req.id)?;
        let dir = self.state_dir(&req.id);
        if dir.exists() {
            return Err(RuntimeError::Exists(req.id.clone()));
        }
        let spec = spec::generate(&req.config)?;
        let bundle = dir.join("bundle");
        write_bundle(&bundle, &spec).map_err(|source| RuntimeError::Io {
            op: "writing bundle",
            source,
        })?;
        let opts = StartOptions {
            shim: self.opts.shim.clone(),
            backend: self.opts.backend.clone(),
            runtime_root: self.oci_root(),
            state_dir: dir.clone(),
            bundle,
            id: req.id.clone(),
            log_path: req.log_path.clone(),
            log_rotation: self.opts.log_rotation,
            start_timeout: self.opts.start_timeout,
        };
        match client::start_container(&opts) {
            Ok(h) => Ok(ContainerInfo {
                id: req.id.clone(),
                pid: h.pid(),
                started_at: h.record().started_at,
            }),
            Err(e) => {
                // Leave nothing behind for a container that never ran.
                let _ = client::delete_container(
                    &req.id,
                    &dir,
                    &self.oci_root(),
                    &self.opts.backend,
                    None,
                );
                Err(e.into())
            }
        }
    }

    fn status(&self, id: &str) -> Result<Status, RuntimeError> {
        Ok(match self.handle(id)?.state()? {
            ContainerState::Running(r) => Status::Running {
                pid: r.process.pid,
                started_at: r.started_at,
            },
            ContainerState::Exited(r, exit) => Status::Exited {
                started_at: r.started_at,
                exit,
            },
            ContainerState::Lost(r) => Status::Lost {
                started_at: r.started_at,
            },
        })
    }

    fn kill(&self, id: &str, signal: i32) -> Result<bool, RuntimeError> {
        Ok(self.handle(id)?.kill(signal)?)
    }

    fn wait(
        &self,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<ExitStatus>, RuntimeError> {
        Ok(self.handle(id)?.wait(timeout)?)
    }

    fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        self.check(id)?;
        let dir = self.state_dir(id);
        if !dir.exists() {
            return Ok(());
        }
        Ok(client::delete_container(
            id,
            &dir,
            &self.oci_root(),
            &self.opts.backend,
            None,
        )?)
    }

    fn list(&self) -> Result<Vec<String>, RuntimeError> {
        let mut ids = Vec::new();
        let entries = match std::fs::read_dir(self.containers_dir()) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(source) => {
                return Err(RuntimeError::Io {
                    op: "listing containers",
                    source,
                })
            }
        };
        for e in entries.flatten() {
            if let Some(name) = e.file_name().to_str() {
                if valid_id(name) {
                    ids.push(name.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }
}
