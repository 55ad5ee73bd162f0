//! This machine's Node: registration with capacity, addresses, system info, labels and
//! conditions, then a heartbeat — the Lease in kube-node-lease every 10 s and the Node's
//! conditions every minute. Labels users add (`kubectl label nodes`) are kept.
//!
//! The node reports Ready=True (kubelet's KubeletReady) when the pod agent runs beside it,
//! Ready=False saying why otherwise.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};
use tokio::sync::watch;

use podium_api::{resources, ApiError};
use podium_apiserver::events::{EventRecorder, EventType};
use podium_apiserver::registry::{Registry, WriteOptions};

use crate::hostinfo;

const LEASE_EVERY: Duration = Duration::from_secs(10);
const STATUS_EVERY: Duration = Duration::from_secs(60);
/// kubelet's default eviction thresholds, used for the pressure conditions.
const MEMORY_AVAILABLE_MIN_KIB: u64 = 100 * 1024;
const DISK_AVAILABLE_MIN_PERCENT: u64 = 10;

pub struct NodeAgent {
    pub registry: Arc<Registry>,
    pub node_name: String,
    pub data_dir: PathBuf,
    pub internal_ip: String,
    /// The pod agent runs (Ready=True).
    pub runs_pods: bool,
    /// The node's `pods` capacity (`--max-pods`).
    pub max_pods: u32,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The node's capacity (also its allocatable: nothing is reserved yet).
fn capacity(cpus: usize, mem_kib: u64, disk_bytes: u64, max_pods: u32) -> Value {
    json!({
        "cpu": cpus.to_string(),
        "memory": format!("{mem_kib}Ki"),
        "ephemeral-storage": format!("{}Ki", disk_bytes / 1024),
        "pods": max_pods.to_string(),
    })
}

fn condition(ty: &str, status: bool, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": ty,
        "status": if status { "True" } else { "False" },
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    })
}

impl NodeAgent {
    fn labels(&self) -> Value {
        let arch = podium_apiserver::discovery::go_arch();
        json!({
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": arch,
            "node-role.kubernetes.io/control-plane": "true",
        })
    }

    /// The status this node reports now.
    fn status(&self) -> Value {
        let now = now();
        let cpus = hostinfo::cpu_count();
        let mem_kib = hostinfo::memory_total_kib();
        let (disk_total, disk_avail) = hostinfo::disk_bytes(&self.data_dir);
        let capacity = capacity(cpus, mem_kib, disk_total, self.max_pods);
        let mem_avail = hostinfo::memory_available_kib();
        let mem_pressure = mem_avail < MEMORY_AVAILABLE_MIN_KIB;
        let disk_pressure =
            disk_total > 0 && disk_avail * 100 / disk_total < DISK_AVAILABLE_MIN_PERCENT;
        let (tasks, pid_max) = hostinfo::pid_usage();
        let pid_pressure = pid_max > 0 && tasks * 100 / pid_max > 90;
        json!({
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                condition("MemoryPressure", mem_pressure,
                    if mem_pressure { "KubeletHasInsufficientMemory" } else { "KubeletHasSufficientMemory" },
                    &format!("{mem_avail}Ki of memory available"), &now),
                condition("DiskPressure", disk_pressure,
                    if disk_pressure { "KubeletHasDiskPressure" } else { "KubeletHasNoDiskPressure" },
                    &format!("{}Ki available on the data directory's filesystem", disk_avail / 1024), &now),
                condition("PIDPressure", pid_pressure,
                    if pid_pressure { "KubeletHasInsufficientPID" } else { "KubeletHasSufficientPID" },
                    &format!("{tasks} of {pid_max} process IDs in use"), &now),
                if self.runs_pods {
                    condition("Ready", true, "KubeletReady", "kubelet is posting ready status", &now)
                } else {
                    condition("Ready", false, "KubeletNotReady",
                        "podium's node agent does not run pods", &now)
                },
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.internal_ip},
                {"type": "Hostname", "address": hostinfo::hostname()},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": hostinfo::machine_id(),
                "systemUUID": hostinfo::system_uuid(),
                "bootID": hostinfo::boot_id(),
                "kernelVersion": hostinfo::kernel_release(),
                "osImage": hostinfo::os_image(),
                "containerRuntimeVersion": concat!("podium://", env!("CARGO_PKG_VERSION")),
                "kubeletVersion": concat!("v1.32.0-podium.", env!("CARGO_PKG_VERSION")),
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": podium_apiserver::discovery::go_arch(),
            },
        })
    }

    /// Creates the Node, or brings an existing one up to date (keeping users' labels).
    pub async fn register(&self) -> Result<(), ApiError> {
        let nodes = resources::find("", "v1", "nodes").ok_or(ApiError::UnknownPath)?;
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "labels": self.labels(),
                         "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {},
        });
        match self
            .registry
            .create(nodes, None, node, &WriteOptions::default())
            .await
        {
            Ok(_) | Err(ApiError::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
        let labels = self.labels();
        self.registry
            .modify(nodes, None, &self.node_name, None, |old| {
                let mut new = old.clone();
                if let (Some(have), Some(want)) = (
                    new["metadata"]["labels"].as_object_mut(),
                    labels.as_object(),
                ) {
                    for (k, v) in want {
                        have.entry(k.clone()).or_insert(v.clone());
                    }
                } else {
                    new["metadata"]["labels"] = labels.clone();
                }
                Ok(Some(new))
            })
            .await?;
        self.update_status().await
    }

    async fn update_status(&self) -> Result<(), ApiError> {
        let nodes = resources::find("", "v1", "nodes").ok_or(ApiError::UnknownPath)?;
        let status = self.status();
        self.registry
            .modify(nodes, None, &self.node_name, Some("status"), |old| {
                let mut new = old.clone();
                let mut status = status.clone();
                // Keep lastTransitionTime while a condition's status is unchanged.
                if let (Some(conds), Some(old_conds)) = (
                    status["conditions"].as_array_mut(),
                    old.pointer("/status/conditions").and_then(Value::as_array),
                ) {
                    for c in conds.iter_mut() {
                        if let Some(o) = old_conds
                            .iter()
                            .find(|o| o["type"] == c["type"] && o["status"] == c["status"])
                        {
                            c["lastTransitionTime"] = o["lastTransitionTime"].clone();
                        }
                    }
                }
                new["status"] = status;
                Ok(Some(new))
            })
            .await?;
        Ok(())
    }

    async fn renew_lease(&self) -> Result<(), ApiError> {
        let leases =
            resources::find("coordination.k8s.io", "v1", "leases").ok_or(ApiError::UnknownPath)?;
        let renew = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let ns = Some("kube-node-lease");
        let updated = self
            .registry
            .modify(leases, ns, &self.node_name, None, |old| {
                let mut new = old.clone();
                new["spec"]["renewTime"] = json!(renew);
                Ok(Some(new))
            })
            .await;
        match updated {
            Ok(_) => Ok(()),
            Err(ApiError::NotFound(_)) => {
                let lease = json!({
                    "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
                    "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": 40,
                             "renewTime": renew},
                });
                match self
                    .registry
                    .create(leases, ns, lease, &WriteOptions::default())
                    .await
                {
                    Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Records an event about this Node. As kubelet does, the involved object's uid is the
    /// node name: that is what `kubectl describe node` selects events by.
    async fn node_event(&self, reason: &str, message: &str) {
        let involved = json!({
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {"name": self.node_name, "uid": self.node_name},
        });
        let recorder = EventRecorder::new(self.registry.clone(), "kubelet", &self.node_name);
        if let Err(e) = recorder
            .record(&involved, EventType::Normal, reason, message)
            .await
        {
            tracing::warn!("recording node event {reason}: {e}");
        }
    }

    /// Registers, then heartbeats until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        self.node_event("Starting", "Starting podium node agent.")
            .await;
        while let Err(e) = self.register().await {
            tracing::warn!("registering node {}: {e}", self.node_name);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
        self.node_event(
            "RegisteredNode",
            &format!(
                "Node {} event: Registered Node {} in Controller",
                self.node_name, self.node_name
            ),
        )
        .await;
        let mut lease = tokio::time::interval(LEASE_EVERY);
        let mut status = tokio::time::interval(STATUS_EVERY);
        status.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = lease.tick() => {
                    if let Err(e) = self.renew_lease().await {
                        tracing::warn!("renewing node lease: {e}");
                    }
                }
                _ = status.tick() => {
                    if let Err(e) = self.update_status().await {
                        tracing::warn!("updating node status: {e}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_reports_max_pods() {
        let c = capacity(2, 2048, 10 << 20, 250);
        assert_eq!(c["pods"], "250");
        assert_eq!(c["cpu"], "2");
        assert_eq!(c["memory"], "2048Ki");
        assert_eq!(c["ephemeral-storage"], "10240Ki");
    }
}
