//! A recording, scriptable [`ContainerRuntime`] for unit tests of the node agent: it
//! records every call, "runs" containers in memory, and lets a test decide how and when
//! each one exits or fails to start.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;

use crate::client::ShimError;
use crate::runtime::{ContainerInfo, ContainerRequest, ContainerRuntime, RuntimeError, Status};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::spec::Resources;
use crate::state::ExitStatus;

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    CreateSandbox(SandboxConfig),
    RemoveSandbox(String),
    ConfigurePodCgroup(String, Resources),
    Start(Box<ContainerRequest>),
    Status(String),
    Kill(String, i32),
    Wait(String),
    Delete(String),
    List,
}

#[derive(Debug, Default)]
struct Inner {
    calls: Vec<Call>,
    containers: BTreeMap<String, Status>,
    start_failures: BTreeMap<String, String>,
    next_pid: i32,
}

/// See the module documentation. Killing a running container makes it exit with that
/// signal, like a process without handlers.
#[derive(Debug, Default)]
pub struct RecordingRuntime {
    inner: Mutex<Inner>,
}

impl RecordingRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// All calls so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Makes the next start of `id` fail with `message`.
    pub fn fail_start(&self, id: &str, message: &str) {
        self.lock()
            .start_failures
            .insert(id.to_string(), message.to_string());
    }

    /// Makes a running container exit with `code`.
    pub fn exit(&self, id: &str, code: i32) {
        let mut g = self.lock();
        if let Some(Status::Running { started_at, .. }) = g.containers.get(id).cloned() {
            let exit = ExitStatus {
                code: Some(code),
                signal: None,
                finished_at: Utc::now(),
                oom_killed: false,
            };
            g.containers
                .insert(id.to_string(), Status::Exited { started_at, exit });
        }
    }

    /// Sets a container's state directly (e.g. OOM-killed, or Lost).
    pub fn set_status(&self, id: &str, status: Status) {
        self.lock().containers.insert(id.to_string(), status);
    }
}

impl ContainerRuntime for RecordingRuntime {
    fn create_sandbox(&self, cfg: &SandboxConfig) -> Result<Sandbox, RuntimeError> {
        self.lock().calls.push(Call::CreateSandbox(cfg.clone()));
        let dir = std::path::PathBuf::from("/fake/pods").join(&cfg.pod_uid);
        Ok(Sandbox {
            config: cfg.clone(),
            net: (!cfg.host_network).then(|| dir.join("ns/net")),
            ipc: (!cfg.host_ipc).then(|| dir.join("ns/ipc")),
            uts: (!cfg.host_network).then(|| dir.join("ns/uts")),
            pid: cfg.share_pid.then(|| dir.join("ns/pid")),
            pause: None,
            dir,
        })
    }

    fn remove_sandbox(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        self.lock()
            .calls
            .push(Call::RemoveSandbox(pod_uid.to_string()));
        Ok(())
    }

    fn configure_pod_cgroup(&self, cgroup_path: &str, r: &Resources) -> Result<(), RuntimeError> {
        self.lock()
            .calls
            .push(Call::ConfigurePodCgroup(cgroup_path.to_string(), r.clone()));
        Ok(())
    }

    fn start(&self, req: &ContainerRequest) -> Result<ContainerInfo, RuntimeError> {
        let mut g = self.lock();
        g.calls.push(Call::Start(Box::new(req.clone())));
        if g.containers.contains_key(&req.id) {
            return Err(RuntimeError::Exists(req.id.clone()));
        }
        if let Some(message) = g.start_failures.remove(&req.id) {
            return Err(ShimError::StartFailed {
                id: req.id.clone(),
                message,
            }
            .into());
        }
        g.next_pid += 1;
        let pid = 1000 + g.next_pid;
        let started_at = Utc::now();
        g.containers
            .insert(req.id.clone(), Status::Running { pid, started_at });
        Ok(ContainerInfo {
            id: req.id.clone(),
            pid,
            started_at,
        })
    }

    fn status(&self, id: &str) -> Result<Status, RuntimeError> {
        let mut g = self.lock();
        g.calls.push(Call::Status(id.to_string()));
        g.containers
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))
    }

    fn kill(&self, id: &str, signal: i32) -> Result<bool, RuntimeError> {
        let mut g = self.lock();
        g.calls.push(Call::Kill(id.to_string(), signal));
        match g.containers.get(id).cloned() {
            None => Err(RuntimeError::NotFound(id.to_string())),
            Some(Status::Running { started_at, .. }) => {
                let exit = ExitStatus {
                    code: None,
                    signal: Some(signal),
                    finished_at: Utc::now(),
                    oom_killed: false,
                };
                g.containers
                    .insert(id.to_string(), Status::Exited { started_at, exit });
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    fn wait(
        &self,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<ExitStatus>, RuntimeError> {
        self.lock().calls.push(Call::Wait(id.to_string()));
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            match self.lock().containers.get(id).cloned() {
                None => return Err(RuntimeError::NotFound(id.to_string())),
                Some(Status::Exited { exit, .. }) => return Ok(Some(exit)),
                Some(Status::Lost { .. }) => {
                    return Err(ShimError::ShimGone { id: id.to_string() }.into())
                }
                Some(Status::Running { .. }) => {}
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        let mut g = self.lock();
        g.calls.push(Call::Delete(id.to_string()));
        g.containers.remove(id);
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>, RuntimeError> {
        let mut g = self.lock();
        g.calls.push(Call::List);
        Ok(g.containers.keys().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ContainerConfig;

    #[test]
    fn records_and_scripts() {
        let rt = RecordingRuntime::new();
        let req = ContainerRequest {
            id: "c1".into(),
            config: ContainerConfig::new("/r", vec!["sh".into()]),
            log_path: "/l".into(),
        };
        let info = rt.start(&req).unwrap();
        assert!(matches!(rt.status("c1").unwrap(), Status::Running { pid, .. } if pid == info.pid));
        assert_eq!(rt.wait("c1", Some(Duration::from_millis(5))).unwrap(), None);
        rt.exit("c1", 3);
        assert_eq!(rt.wait("c1", None).unwrap().unwrap().exit_code(), 3);
        assert!(!rt.kill("c1", 15).unwrap());
        rt.fail_start("c2", "no such file");
        let mut r2 = req.clone();
        r2.id = "c2".into();
        assert!(rt
            .start(&r2)
            .unwrap_err()
            .to_string()
            .contains("no such file"));
        rt.delete("c1").unwrap();
        assert!(matches!(rt.status("c1"), Err(RuntimeError::NotFound(_))));
        assert_eq!(rt.calls()[0], Call::Start(Box::new(req)));
        assert_eq!(rt.calls().last(), Some(&Call::Status("c1".into())));
    }
}
