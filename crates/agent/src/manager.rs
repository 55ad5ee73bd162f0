//! The node agent's top level ([`Agent`]): lists and watches pods, starts one
//! [`PodWorker`] per pod bound to this node and feeds it the pod's latest state, binds
//! unscheduled pods that fit this node ([`crate::scheduler`]) or marks them
//! Unschedulable, runs the single [`StatusWriter`], and at startup removes what pods
//! deleted while the agent was down left on the host. At shutdown the workers stop and the
//! containers keep running, to be adopted by the next agent.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{PodEvent, Severity};
use crate::facts::{namespace_of, str_at};
use crate::index::PodIndex;
use crate::paths::valid_uid;
use crate::scheduler::{self, SELECTOR_MISMATCH};
use crate::worker::{cleanup_host, Deps, PodWorker};

/// How often unschedulable pods are looked at again (node labels may change).
const RESCHEDULE_EVERY: Duration = Duration::from_secs(5);

struct WorkerHandle {
    tx: watch::Sender<Option<Value>>,
    task: JoinHandle<()>,
}

/// See the module documentation.
pub struct Agent {
    deps: Arc<Deps>,
    workers: HashMap<String, WorkerHandle>,
    /// Unbound pods by uid, and those already reported unschedulable.
    unbound: BTreeMap<String, Value>,
    reported: BTreeSet<String>,
}

impl Agent {
    pub fn new(deps: Arc<Deps>) -> Agent {
        Agent {
            deps,
            workers: HashMap::new(),
            unbound: BTreeMap::new(),
            reported: BTreeSet::new(),
        }
    }

    fn node_name(&self) -> &str {
        &self.deps.facts.node_name
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let writer = tokio::spawn(
            self.deps
                .status
                .clone()
                .run(self.deps.api.clone(), shutdown.clone()),
        );
        let mut first = true;
        'relist: loop {
            let (pods, rev) = match self.deps.api.list_pods().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("node agent: listing pods: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.changed() => break,
                    }
                }
            };
            if first {
                self.sweep(&pods).await;
                first = false;
            }
            let present: BTreeSet<String> = pods
                .iter()
                .map(|p| str_at(p, &["metadata", "uid"]).to_string())
                .collect();
            for uid in self.workers.keys().cloned().collect::<Vec<_>>() {
                if !present.contains(&uid) {
                    self.gone(&uid);
                }
            }
            self.unbound.retain(|uid, _| present.contains(uid));
            for p in pods {
                self.upsert(p).await;
            }
            let mut events = match self.deps.api.watch_pods(rev).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("node agent: watching pods: {e}");
                    continue;
                }
            };
            let mut tick = tokio::time::interval(RESCHEDULE_EVERY);
            loop {
                tokio::select! {
                    ev = events.next() => match ev {
                        Some(PodEvent::Upsert(p)) => self.upsert(p).await,
                        Some(PodEvent::Deleted(p)) => {
                            let uid = str_at(&p, &["metadata", "uid"]).to_string();
                            self.unbound.remove(&uid);
                            self.reported.remove(&uid);
                            self.gone(&uid);
                        }
                        Some(PodEvent::Resync) | None => continue 'relist,
                    },
                    _ = tick.tick() => {
                        self.workers.retain(|_, w| !w.task.is_finished());
                        let pending: Vec<Value> = self.unbound.values().cloned().collect();
                        for p in pending {
                            self.schedule(&p).await;
                        }
                    }
                    _ = shutdown.changed() => break 'relist,
                }
            }
        }
        // Dropping the senders ends the workers; their containers keep running.
        let workers: Vec<WorkerHandle> = self.workers.drain().map(|(_, w)| w).collect();
        for w in workers {
            drop(w.tx);
            let _ = tokio::time::timeout(Duration::from_secs(3), w.task).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    }

    fn gone(&mut self, uid: &str) {
        if let Some(w) = self.workers.get(uid) {
            let _ = w.tx.send(None);
        }
    }

    async fn upsert(&mut self, pod: Value) {
        let uid = str_at(&pod, &["metadata", "uid"]).to_string();
        if !valid_uid(&uid) {
            return;
        }
        let node = str_at(&pod, &["spec", "nodeName"]);
        if node == self.node_name() {
            self.unbound.remove(&uid);
            self.reported.remove(&uid);
            if let Some(w) = self.workers.get(&uid) {
                if !w.task.is_finished() {
                    let _ = w.tx.send(Some(pod));
                    return;
                }
                // A finished worker: the pod was finalized; ignore late events.
                return;
            }
            let (tx, rx) = watch::channel(Some(pod.clone()));
            let worker = PodWorker::new(self.deps.clone(), pod, rx);
            let task = tokio::spawn(worker.run());
            self.workers.insert(uid, WorkerHandle { tx, task });
        } else if scheduler::wants(&pod) {
            self.unbound.insert(uid, pod.clone());
            self.schedule(&pod).await;
        }
    }

    /// Binds `pod` here if it fits; otherwise reports it Unschedulable (once).
    async fn schedule(&mut self, pod: &Value) {
        let uid = str_at(pod, &["metadata", "uid"]).to_string();
        let (ns, name) = (
            namespace_of(pod).to_string(),
            str_at(pod, &["metadata", "name"]).to_string(),
        );
        let node = self.deps.api.get_node().await.ok();
        let labels = node
            .as_ref()
            .and_then(|n| n.pointer("/metadata/labels"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_else(Map::new);
        if node.is_none() {
            // The Node is not registered yet; try again on the next tick.
            return;
        }
        if scheduler::fits(pod, self.node_name(), &labels) {
            // The event goes first so that it precedes the node's events about the pod.
            let msg = format!("Successfully assigned {ns}/{name} to {}", self.node_name());
            self.deps
                .api
                .event(
                    pod,
                    "default-scheduler",
                    Severity::Normal,
                    "Scheduled",
                    &msg,
                )
                .await;
            match self.deps.api.bind(&ns, &name).await {
                Ok(()) => {
                    self.unbound.remove(&uid);
                    self.reported.remove(&uid);
                }
                Err(e) => tracing::debug!("binding {ns}/{name}: {e}"),
            }
        } else if self.reported.insert(uid.clone()) {
            if let Err(e) = self
                .deps
                .api
                .set_unschedulable(&ns, &name, &uid, SELECTOR_MISMATCH)
                .await
            {
                tracing::debug!("marking {ns}/{name} unschedulable: {e}");
            }
            self.deps
                .api
                .event(
                    pod,
                    "default-scheduler",
                    Severity::Warning,
                    "FailedScheduling",
                    SELECTOR_MISMATCH,
                )
                .await;
        }
    }

    /// Removes what pods that no longer exist left on the host: their containers (from
    /// their index files and any container of this instance no index claims), mounts,
    /// sandboxes, cgroups and directories.
    async fn sweep(&self, pods: &[Value]) {
        let mine: BTreeSet<String> = pods
            .iter()
            .filter(|p| str_at(p, &["spec", "nodeName"]) == self.node_name())
            .map(|p| str_at(p, &["metadata", "uid"]).to_string())
            .collect();
        let deps = self.deps.clone();
        let res = tokio::task::spawn_blocking(move || {
            let layout = &deps.layout;
            let rt = &*deps.runtime;
            let mut claimed = BTreeSet::new();
            let entries = std::fs::read_dir(&layout.pods_root)
                .map(|rd| rd.flatten().collect::<Vec<_>>())
                .unwrap_or_default();
            for e in entries {
                let Some(idx) = PodIndex::load(&e.path()) else {
                    continue;
                };
                if mine.contains(&idx.uid) {
                    claimed.extend(idx.container_ids());
                    continue;
                }
                tracing::info!(
                    "removing leftovers of deleted pod {}/{} ({})",
                    idx.namespace,
                    idx.name,
                    idx.uid
                );
                for id in idx.container_ids() {
                    let _ = rt.delete(&id);
                    let _ = deps.images.unmount_rootfs(&layout.rootfs(&id));
                }
                if let Err(e) = deps.volumes.teardown(&idx.uid) {
                    tracing::warn!("removing volumes of pod {}: {e}", idx.uid);
                    continue;
                }
                if let Err(e) = cleanup_host(
                    rt,
                    layout,
                    &idx.uid,
                    &idx.namespace,
                    &idx.name,
                    idx.cgroup.as_deref(),
                ) {
                    tracing::warn!("removing leftovers of pod {}: {e}", idx.uid);
                }
            }
            // Containers of this instance that no live pod claims.
            for id in rt.list().unwrap_or_default() {
                if layout.owns_container(&id) && !claimed.contains(&id) {
                    tracing::info!("removing orphaned container {id}");
                    let _ = rt.delete(&id);
                    let _ = deps.images.unmount_rootfs(&layout.rootfs(&id));
                }
            }
        })
        .await;
        if res.is_err() {
            tracing::warn!("node agent: the startup sweep panicked");
        }
    }
}
