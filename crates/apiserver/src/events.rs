//! The event recorder server components use to write core/v1 Events: involvedObject,
//! reason, message, type, source, and — for repeats of the same event — a count with first
//! and last timestamps, as kubelet's recorder aggregates them.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde_json::{json, Value};

use podium_api::{meta, resources, ApiError};

use crate::registry::{now_rfc3339, Registry, WriteOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Clone)]
pub struct EventRecorder {
    registry: Arc<Registry>,
    /// `source.component`, e.g. `kubelet` or `default-scheduler`.
    component: String,
    /// `source.host`, the node name for node components.
    host: String,
}

impl EventRecorder {
    pub fn new(registry: Arc<Registry>, component: &str, host: &str) -> Self {
        EventRecorder {
            registry,
            component: component.to_string(),
            host: host.to_string(),
        }
    }

    /// Records an event about `involved` (any object with kind, apiVersion and metadata).
    pub async fn record(
        &self,
        involved: &Value,
        ty: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        let events = resources::find("", "v1", "events").ok_or(ApiError::UnknownPath)?;
        let ns = match meta::namespace(involved) {
            "" => "default",
            n => n,
        };
        let mut h = DefaultHasher::new();
        (meta::uid(involved), reason, message, ty.as_str()).hash(&mut h);
        let name = format!("{}.{:016x}", meta::name(involved), h.finish());
        let now = now_rfc3339();
        let bumped = self
            .registry
            .modify(events, Some(ns), &name, None, |old| {
                let mut e = old.clone();
                let count = old.get("count").and_then(Value::as_i64).unwrap_or(1);
                e["count"] = json!(count + 1);
                e["lastTimestamp"] = json!(now);
                Ok(Some(e))
            })
            .await;
        match bumped {
            Ok(_) => return Ok(()),
            Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {
                "kind": involved.get("kind").cloned().unwrap_or(Value::Null),
                "apiVersion": involved.get("apiVersion").cloned().unwrap_or(Value::Null),
                "namespace": meta::namespace(involved),
                "name": meta::name(involved),
                "uid": meta::uid(involved),
                "resourceVersion": meta::resource_version(involved),
            },
            "reason": reason,
            "message": message,
            "type": ty.as_str(),
            "source": {"component": self.component, "host": self.host},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        });
        match self
            .registry
            .create(events, Some(ns), event, &WriteOptions::default())
            .await
        {
            Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
