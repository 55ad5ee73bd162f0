//! The agent's narrow view of the Kubernetes API ([`NodeApi`]): list and watch pods, read
//! the objects a pod refers to (secrets, config maps, service accounts, services, its
//! node), write pod status, bind, finalize a deletion, record events. [`RegistryApi`]
//! implements it in-process over the registry (every write gets the API server's checks);
//! [`FakeApi`] records calls for the worker's unit tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::{json, Value};

use podium_api::{meta, resources, ApiError, ResourceInfo};
use podium_apiserver::events::{EventRecorder, EventType};
use podium_apiserver::registry::{set_condition, DeleteOptions, ListParams, Registry};
use podium_store::{Filter, Preconditions, WatchEvent};

/// A change to a pod seen by the pod watch.
#[derive(Debug, Clone, PartialEq)]
pub enum PodEvent {
    /// Created or changed: the pod as it is now.
    Upsert(Value),
    /// Gone from the API.
    Deleted(Value),
    /// The watch lost history: re-list.
    Resync,
}

pub type PodEvents = BoxStream<'static, PodEvent>;

/// The referenced object kinds the agent reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectKind {
    Secret,
    ConfigMap,
    ServiceAccount,
}

impl ObjectKind {
    fn resource(self) -> Option<&'static ResourceInfo> {
        let plural = match self {
            ObjectKind::Secret => "secrets",
            ObjectKind::ConfigMap => "configmaps",
            ObjectKind::ServiceAccount => "serviceaccounts",
        };
        resources::find("", "v1", plural)
    }
}

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// What the agent needs from the API. Errors are the API's; NotFound means the object
/// does not exist.
#[async_trait]
pub trait NodeApi: Send + Sync {
    /// Every pod, and the revision to watch from.
    async fn list_pods(&self) -> Result<(Vec<Value>, i64), ApiError>;
    /// Pod changes after `revision`.
    async fn watch_pods(&self, revision: i64) -> Result<PodEvents, ApiError>;
    /// This node's object.
    async fn get_node(&self) -> Result<Value, ApiError>;
    /// A namespaced object; `Ok(None)` when it does not exist.
    async fn get(&self, kind: ObjectKind, ns: &str, name: &str) -> Result<Option<Value>, ApiError>;
    /// The services of `ns`.
    async fn list_services(&self, ns: &str) -> Result<Vec<Value>, ApiError>;
    /// Replaces the status of the pod `ns/name` if its uid is still `uid`.
    async fn write_status(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        status: &Value,
    ) -> Result<(), ApiError>;
    /// Removes the pod object for good (grace 0, uid precondition).
    async fn finalize_delete(&self, ns: &str, name: &str, uid: &str) -> Result<(), ApiError>;
    /// Binds a pod to this node.
    async fn bind(&self, ns: &str, name: &str) -> Result<(), ApiError>;
    /// Marks a pod unschedulable (PodScheduled=False).
    async fn set_unschedulable(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        message: &str,
    ) -> Result<(), ApiError>;
    /// Records an event about `pod` from `component` (kubelet or default-scheduler).
    async fn event(&self, pod: &Value, component: &str, sev: Severity, reason: &str, msg: &str);
}

fn pods() -> Result<&'static ResourceInfo, ApiError> {
    resources::find("", "v1", "pods").ok_or(ApiError::UnknownPath)
}

/// Keeps a condition's lastTransitionTime while its status is unchanged.
pub fn keep_transition_times(new_status: &mut Value, old_status: Option<&Value>) {
    let Some(old) = old_status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
    else {
        return;
    };
    if let Some(conds) = new_status
        .get_mut("conditions")
        .and_then(Value::as_array_mut)
    {
        for c in conds.iter_mut() {
            if let Some(o) = old
                .iter()
                .find(|o| o["type"] == c["type"] && o["status"] == c["status"])
            {
                if let Some(t) = o.get("lastTransitionTime") {
                    c["lastTransitionTime"] = t.clone();
                }
            }
        }
    }
}

/// [`NodeApi`] over the in-process registry.
pub struct RegistryApi {
    registry: Arc<Registry>,
    node_name: String,
    kubelet: EventRecorder,
    scheduler: EventRecorder,
}

impl RegistryApi {
    pub fn new(registry: Arc<Registry>, node_name: &str) -> RegistryApi {
        RegistryApi {
            kubelet: EventRecorder::new(registry.clone(), "kubelet", node_name),
            scheduler: EventRecorder::new(registry.clone(), "default-scheduler", ""),
            registry,
            node_name: node_name.to_string(),
        }
    }

    /// Changes the status of the pod `ns/name` if it is still the pod with `uid`.
    async fn modify_status(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        change: impl Fn(&Value, &mut Value) + Send,
    ) -> Result<(), ApiError> {
        self.registry
            .modify(pods()?, Some(ns), name, Some("status"), |old| {
                if meta::uid(old) != uid {
                    return Err(uid_conflict(name));
                }
                let mut new = old.clone();
                change(old, &mut new);
                Ok(Some(new))
            })
            .await
            .map(|_| ())
    }
}

fn uid_conflict(name: &str) -> ApiError {
    ApiError::Conflict {
        target: podium_api::error::Target::new("", "pods", name),
        message: "the pod was replaced (uid changed)".into(),
    }
}

#[async_trait]
impl NodeApi for RegistryApi {
    async fn list_pods(&self) -> Result<(Vec<Value>, i64), ApiError> {
        let listed = self
            .registry
            .list(pods()?, None, &ListParams::default())
            .await?;
        Ok((listed.items, listed.revision))
    }

    async fn watch_pods(&self, revision: i64) -> Result<PodEvents, ApiError> {
        let stream = self
            .registry
            .store()
            .watch("/registry/pods/", revision, Filter::default())
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(stream
            .map(|ev| match ev {
                Ok(WatchEvent::Added(o)) | Ok(WatchEvent::Modified(o)) => PodEvent::Upsert(o),
                Ok(WatchEvent::Deleted(o)) => PodEvent::Deleted(o),
                Ok(WatchEvent::Bookmark(_)) => PodEvent::Upsert(Value::Null),
                Err(_) => PodEvent::Resync,
            })
            .filter(|e| futures::future::ready(e != &PodEvent::Upsert(Value::Null)))
            .boxed())
    }

    async fn get_node(&self) -> Result<Value, ApiError> {
        let nodes = resources::find("", "v1", "nodes").ok_or(ApiError::UnknownPath)?;
        self.registry.get(nodes, None, &self.node_name).await
    }

    async fn get(&self, kind: ObjectKind, ns: &str, name: &str) -> Result<Option<Value>, ApiError> {
        let r = kind.resource().ok_or(ApiError::UnknownPath)?;
        match self.registry.get(r, Some(ns), name).await {
            Ok(v) => Ok(Some(v)),
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list_services(&self, ns: &str) -> Result<Vec<Value>, ApiError> {
        let r = resources::find("", "v1", "services").ok_or(ApiError::UnknownPath)?;
        Ok(self
            .registry
            .list(r, Some(ns), &ListParams::default())
            .await?
            .items)
    }

    async fn write_status(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        status: &Value,
    ) -> Result<(), ApiError> {
        self.modify_status(ns, name, uid, |old, new| {
            let mut status = status.clone();
            keep_transition_times(&mut status, old.get("status"));
            new["status"] = status;
        })
        .await
    }

    async fn finalize_delete(&self, ns: &str, name: &str, uid: &str) -> Result<(), ApiError> {
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            preconditions: Preconditions {
                resource_version: None,
                uid: Some(uid.to_string()),
            },
            ..Default::default()
        };
        match self.registry.delete(pods()?, Some(ns), name, &opts).await {
            Ok(_) | Err(ApiError::NotFound(_)) => Ok(()),
            // The name now belongs to a new pod: ours is gone already.
            Err(ApiError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn bind(&self, ns: &str, name: &str) -> Result<(), ApiError> {
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        });
        self.registry.bind(ns, name, &binding).await.map(|_| ())
    }

    async fn set_unschedulable(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        self.modify_status(ns, name, uid, |_, new| {
            set_condition(
                new,
                "PodScheduled",
                "False",
                Some("Unschedulable"),
                Some(message),
            );
        })
        .await
    }

    async fn event(&self, pod: &Value, component: &str, sev: Severity, reason: &str, msg: &str) {
        let rec = if component == "default-scheduler" {
            &self.scheduler
        } else {
            &self.kubelet
        };
        let mut involved = pod.clone();
        involved["kind"] = json!("Pod");
        involved["apiVersion"] = json!("v1");
        let ty = match sev {
            Severity::Normal => EventType::Normal,
            Severity::Warning => EventType::Warning,
        };
        if let Err(e) = rec.record(&involved, ty, reason, msg).await {
            tracing::debug!("recording event {reason}: {e}");
        }
    }
}

/// One call recorded by [`FakeApi`].
#[derive(Debug, Clone, PartialEq)]
pub enum ApiCall {
    Status {
        name: String,
        status: Value,
    },
    Finalize {
        name: String,
        uid: String,
    },
    Bind {
        name: String,
    },
    Unschedulable {
        name: String,
        message: String,
    },
    Event {
        name: String,
        reason: String,
        message: String,
    },
}

/// A recording [`NodeApi`] with objects a test puts in.
#[derive(Debug, Default)]
pub struct FakeApi {
    pub objects: Mutex<BTreeMap<(ObjectKind, String, String), Value>>,
    pub services: Mutex<Vec<Value>>,
    pub node: Mutex<Value>,
    calls: Mutex<Vec<ApiCall>>,
    /// Status writes fail while this is > 0 (decremented per failure).
    pub fail_status: Mutex<u32>,
}

impl FakeApi {
    pub fn new() -> FakeApi {
        FakeApi::default()
    }

    pub fn put(&self, kind: ObjectKind, ns: &str, name: &str, obj: Value) {
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((kind, ns.to_string(), name.to_string()), obj);
    }

    pub fn remove(&self, kind: ObjectKind, ns: &str, name: &str) {
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(kind, ns.to_string(), name.to_string()));
    }

    pub fn calls(&self) -> Vec<ApiCall> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, c: ApiCall) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(c);
    }

    /// The last status written for pod `name`.
    pub fn last_status(&self, name: &str) -> Option<Value> {
        self.calls().into_iter().rev().find_map(|c| match c {
            ApiCall::Status { name: n, status } if n == name => Some(status),
            _ => None,
        })
    }

    /// Reasons of the events recorded, in order.
    pub fn event_reasons(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                ApiCall::Event { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }
}

#[async_trait]
impl NodeApi for FakeApi {
    async fn list_pods(&self) -> Result<(Vec<Value>, i64), ApiError> {
        Ok((Vec::new(), 0))
    }
    async fn watch_pods(&self, _revision: i64) -> Result<PodEvents, ApiError> {
        Ok(futures::stream::pending().boxed())
    }
    async fn get_node(&self) -> Result<Value, ApiError> {
        Ok(self.node.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
    async fn get(&self, kind: ObjectKind, ns: &str, name: &str) -> Result<Option<Value>, ApiError> {
        Ok(self
            .objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(kind, ns.to_string(), name.to_string()))
            .cloned())
    }
    async fn list_services(&self, ns: &str) -> Result<Vec<Value>, ApiError> {
        Ok(self
            .services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| meta::namespace(s) == ns)
            .cloned()
            .collect())
    }
    async fn write_status(
        &self,
        _ns: &str,
        name: &str,
        _uid: &str,
        status: &Value,
    ) -> Result<(), ApiError> {
        {
            let mut f = self.fail_status.lock().unwrap_or_else(|p| p.into_inner());
            if *f > 0 {
                *f -= 1;
                return Err(ApiError::Internal("injected".into()));
            }
        }
        self.record(ApiCall::Status {
            name: name.to_string(),
            status: status.clone(),
        });
        Ok(())
    }
    async fn finalize_delete(&self, _ns: &str, name: &str, uid: &str) -> Result<(), ApiError> {
        self.record(ApiCall::Finalize {
            name: name.to_string(),
            uid: uid.to_string(),
        });
        Ok(())
    }
    async fn bind(&self, _ns: &str, name: &str) -> Result<(), ApiError> {
        self.record(ApiCall::Bind {
            name: name.to_string(),
        });
        Ok(())
    }
    async fn set_unschedulable(
        &self,
        _ns: &str,
        name: &str,
        _uid: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        self.record(ApiCall::Unschedulable {
            name: name.to_string(),
            message: message.to_string(),
        });
        Ok(())
    }
    async fn event(&self, pod: &Value, _component: &str, _sev: Severity, reason: &str, msg: &str) {
        self.record(ApiCall::Event {
            name: meta::name(pod).to_string(),
            reason: reason.to_string(),
            message: msg.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_times_survive_unchanged_conditions() {
        let old = json!({"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "t0"},
            {"type": "Initialized", "status": "False", "lastTransitionTime": "t0"}]});
        let mut new = json!({"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "t1"},
            {"type": "Initialized", "status": "True", "lastTransitionTime": "t1"}]});
        keep_transition_times(&mut new, Some(&old));
        assert_eq!(new["conditions"][0]["lastTransitionTime"], "t0");
        assert_eq!(new["conditions"][1]["lastTransitionTime"], "t1");
    }
}
