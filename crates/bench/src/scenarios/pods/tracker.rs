//! Watches the pods of one namespace and remembers, per pod name, when the bench first saw
//! it Running with every container running, when it saw it deleted, and the last reason a
//! container is stuck (an image error, a failed start), so that a broken run fails fast
//! with the agent's own message instead of a timeout. One watch stream on its own
//! connection, resumed from the last resourceVersion if the server ends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::watch;

use crate::client::{Client, ACCEPT_JSON};
use crate::scenarios::Ctx;

/// When something was seen: a monotonic instant for latencies and the wall clock for
/// lining it up with the server's log timestamps.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub at: Instant,
    pub wall: SystemTime,
}

impl Stamp {
    pub fn now() -> Stamp {
        Stamp {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// What the watch said about one pod.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub running: Option<Stamp>,
    pub gone: Option<Stamp>,
    /// A waiting reason that will not clear by itself, with its message.
    pub problem: Option<String>,
}

/// What one pod object says.
#[derive(Debug, Clone, PartialEq)]
pub enum PodState {
    /// Phase Running and every container of the spec running.
    Running,
    /// Stuck or failed, with why.
    Problem(String),
    Other,
}

/// Waiting reasons that mean the pod will not start without outside help.
const STUCK: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerError",
    "CreateContainerConfigError",
    "RunContainerError",
    "StartError",
    "CrashLoopBackOff",
];

/// Classifies a pod object.
pub fn pod_state(pod: &Value) -> PodState {
    let status = &pod["status"];
    let want = pod["spec"]["containers"]
        .as_array()
        .map(|a| a.len())
        .unwrap_or(0);
    let statuses = status["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for c in &statuses {
        if let Some(w) = c["state"]["waiting"].as_object() {
            let reason = w.get("reason").and_then(Value::as_str).unwrap_or("");
            if STUCK.contains(&reason) {
                let msg = w.get("message").and_then(Value::as_str).unwrap_or("");
                return PodState::Problem(format!("{}: {reason}: {msg}", c["name"]));
            }
        }
    }
    match status["phase"].as_str() {
        Some("Failed") => {
            return PodState::Problem(format!(
                "phase Failed: {} {}",
                status["reason"].as_str().unwrap_or(""),
                status["message"].as_str().unwrap_or("")
            ))
        }
        Some("Running") => {}
        _ => return PodState::Other,
    }
    let running = statuses
        .iter()
        .filter(|c| c["state"]["running"].is_object())
        .count();
    if want > 0 && running == want {
        PodState::Running
    } else {
        PodState::Other
    }
}

/// What the tracker waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Running,
    Gone,
}

pub struct Tracker {
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    changed: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tracker {
    /// Starts watching namespace `ns` from its current resourceVersion.
    pub async fn start(ctx: &Ctx, ns: &str) -> anyhow::Result<Tracker> {
        let path = format!("/api/v1/namespaces/{ns}/pods");
        let listed = ctx.client.get(&path, ACCEPT_JSON).await?;
        anyhow::ensure!(
            listed.status.is_success(),
            "listing pods of {ns}: {}",
            listed.status
        );
        let v: Value = serde_json::from_slice(&listed.body)?;
        let rv = v["metadata"]["resourceVersion"]
            .as_str()
            .context("pod list without resourceVersion")?
            .to_string();
        // Its own connection: the watch stream never queues behind the creates.
        let client = Client::connect(&ctx.target, 1, Duration::from_secs(30)).await?;
        let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
        let (tx, changed) = watch::channel(0u64);
        let task = tokio::spawn(run(client, path, rv, seen.clone(), tx));
        Ok(Tracker {
            seen,
            changed,
            task,
        })
    }

    /// Waits until every pod of `names` is Running (or gone); returns the stamps in the
    /// order of `names`. Fails at the first stuck pod or at the timeout.
    pub async fn wait_all(
        &self,
        names: &[String],
        want: Want,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Stamp>> {
        let deadline = Instant::now() + timeout;
        let mut changed = self.changed.clone();
        loop {
            let mut stamps = Vec::with_capacity(names.len());
            let mut missing = Vec::new();
            if let Ok(m) = self.seen.lock() {
                for n in names {
                    let s = m.get(n);
                    let stamp = s.and_then(|s| match want {
                        Want::Running => s.running,
                        Want::Gone => s.gone,
                    });
                    match stamp {
                        Some(st) => stamps.push(st),
                        None => {
                            if want == Want::Running {
                                if let Some(p) = s.and_then(|s| s.problem.as_ref()) {
                                    anyhow::bail!("pod {n} will not run: {p}");
                                }
                            }
                            missing.push(n.as_str());
                        }
                    }
                }
            }
            if missing.is_empty() {
                return Ok(stamps);
            }
            let now = Instant::now();
            if now >= deadline || self.task.is_finished() {
                anyhow::bail!(
                    "{} of {} pods not {:?} after {timeout:?} (first: {})",
                    missing.len(),
                    names.len(),
                    want,
                    missing[0]
                );
            }
            let _ = tokio::time::timeout(deadline - now, changed.changed()).await;
        }
    }

    pub async fn wait(&self, name: &str, want: Want, timeout: Duration) -> anyhow::Result<Stamp> {
        let v = self.wait_all(&[name.to_string()], want, timeout).await?;
        v.into_iter().next().context("no stamp")
    }
}

/// Applies one watch event line; returns whether anything changed.
fn apply(line: &[u8], seen: &Mutex<HashMap<String, Seen>>, rv: &mut String) -> bool {
    let Ok(ev) = serde_json::from_slice::<Value>(line) else {
        return false;
    };
    let obj = &ev["object"];
    if let Some(v) = obj["metadata"]["resourceVersion"].as_str() {
        *rv = v.to_string();
    }
    let Some(name) = obj["metadata"]["name"].as_str() else {
        return false;
    };
    let now = Stamp::now();
    let Ok(mut m) = seen.lock() else {
        return false;
    };
    let s = m.entry(name.to_string()).or_default();
    match ev["type"].as_str() {
        Some("DELETED") => {
            s.gone.get_or_insert(now);
            true
        }
        Some("ADDED") | Some("MODIFIED") => match pod_state(obj) {
            PodState::Running if s.running.is_none() => {
                s.running = Some(now);
                true
            }
            PodState::Problem(p) => {
                s.problem = Some(p);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

async fn run(
    client: Client,
    path: String,
    mut rv: String,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    tx: watch::Sender<u64>,
) {
    let mut version = 0u64;
    loop {
        let url = format!("{path}?watch=true&resourceVersion={rv}&timeoutSeconds=3600");
        let Ok(mut body) = client.stream(&url).await else {
            return;
        };
        let mut buf: Vec<u8> = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            let mut any = false;
            while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                any |= apply(&line, &seen, &mut rv);
            }
            if any {
                version += 1;
                let _ = tx.send(version);
            }
        }
        // The server ended the watch: resume from the last resourceVersion seen.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(phase: &str, states: &[Value]) -> Value {
        let cs: Vec<Value> = states
            .iter()
            .enumerate()
            .map(|(i, s)| json!({"name": format!("c{i}"), "state": s}))
            .collect();
        let containers: Vec<Value> = (0..states.len())
            .map(|i| json!({"name": format!("c{i}")}))
            .collect();
        json!({"spec": {"containers": containers}, "status": {"phase": phase, "containerStatuses": cs}})
    }

    #[test]
    fn running_needs_every_container_running() {
        let run = json!({"running": {"startedAt": "x"}});
        let wait = json!({"waiting": {"reason": "ContainerCreating"}});
        assert_eq!(
            pod_state(&pod("Running", std::slice::from_ref(&run))),
            PodState::Running
        );
        assert_eq!(
            pod_state(&pod("Running", &[run.clone(), wait.clone()])),
            PodState::Other
        );
        assert_eq!(pod_state(&pod("Pending", &[wait])), PodState::Other);
        assert_eq!(pod_state(&json!({"spec": {}})), PodState::Other);
    }

    #[test]
    fn stuck_containers_are_problems() {
        let never = json!({"waiting": {"reason": "ErrImageNeverPull", "message": "not present"}});
        match pod_state(&pod("Pending", &[never])) {
            PodState::Problem(p) => assert!(p.contains("ErrImageNeverPull: not present"), "{p}"),
            other => panic!("{other:?}"),
        }
        let failed = json!({"spec": {"containers": [{}]}, "status": {"phase": "Failed", "reason": "OutOfpods"}});
        assert!(matches!(pod_state(&failed), PodState::Problem(_)));
    }

    #[test]
    fn events_record_running_and_gone_once() {
        let seen = Mutex::new(HashMap::new());
        let mut rv = String::new();
        let mut p = pod("Running", &[json!({"running": {}})]);
        p["metadata"] = json!({"name": "a", "resourceVersion": "7"});
        let ev = |ty: &str, o: &Value| json!({"type": ty, "object": o}).to_string();
        assert!(apply(ev("MODIFIED", &p).as_bytes(), &seen, &mut rv));
        assert_eq!(rv, "7");
        let first = seen.lock().unwrap()["a"].running.unwrap().at;
        assert!(!apply(ev("MODIFIED", &p).as_bytes(), &seen, &mut rv));
        assert_eq!(seen.lock().unwrap()["a"].running.unwrap().at, first);
        assert!(apply(ev("DELETED", &p).as_bytes(), &seen, &mut rv));
        assert!(seen.lock().unwrap()["a"].gone.is_some());
        assert!(!apply(b"not json\n", &seen, &mut rv));
    }
}
