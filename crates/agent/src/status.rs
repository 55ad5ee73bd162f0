//! Pod status: [`pod_status`] renders the worker's state as the API's `status` (phase,
//! conditions, container statuses, IPs, start time, QoS class) — a pure function — and
//! [`StatusWriter`] is the agent's single writer of pod status: workers hand it the latest
//! status per pod, and one task writes them through the `status` subresource, coalescing
//! updates that arrive while a write is in flight and retrying failed writes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use tokio::sync::{watch, Notify};

use podium_api::ApiError;

use crate::api::NodeApi;
use crate::lifecycle::{ContainerState, PodPhase, Termination};
use crate::podstate::{incomplete_init, initialized, waiting_before_init, Ctr, Kind};

pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// What the status is made from.
#[derive(Debug, Clone)]
pub struct PodView<'a> {
    pub ctrs: &'a [Ctr],
    pub phase: PodPhase,
    /// `status.reason` and `status.message` (e.g. DeadlineExceeded, OutOfcpu).
    pub reason: Option<(&'a str, &'a str)>,
    pub host_ip: &'a str,
    pub pod_ips: &'a [String],
    pub start_time: Option<DateTime<Utc>>,
    pub sandbox_ready: bool,
    pub qos_class: &'a str,
}

fn terminated(t: &Termination, id: Option<&str>) -> Value {
    let mut v = json!({
        "exitCode": t.exit_code,
        "reason": t.reason.as_str(),
        "startedAt": ts(t.started_at),
        "finishedAt": ts(t.finished_at),
    });
    if let Some(s) = t.signal {
        v["signal"] = json!(s);
    }
    if let Some(m) = t.message.as_deref().filter(|m| !m.is_empty()) {
        v["message"] = json!(m);
    }
    if let Some(id) = id {
        v["containerID"] = json!(format!("podium://{id}"));
    }
    json!({ "terminated": v })
}

/// A container is ready: app containers and sidecars while running (no probes yet), init
/// containers once they completed.
pub fn ready(c: &Ctr) -> bool {
    match c.kind {
        Kind::Init => c.succeeded(),
        Kind::Sidecar | Kind::App => c.running(),
    }
}

/// One entry of containerStatuses / initContainerStatuses.
pub fn container_status(c: &Ctr, init_done: bool) -> Value {
    let state = match &c.life.state {
        ContainerState::Waiting { reason, message } => {
            let reason = waiting_before_init(c, init_done).unwrap_or_else(|| reason.clone());
            let mut w = json!({"reason": reason.as_str()});
            if let Some(m) = message {
                w["message"] = json!(m);
            }
            json!({ "waiting": w })
        }
        ContainerState::Running { started_at } => {
            json!({"running": {"startedAt": ts(*started_at)}})
        }
        ContainerState::Terminated(t) => terminated(t, c.id.as_deref()),
    };
    let last = c
        .life
        .last_termination
        .as_ref()
        .map_or_else(|| json!({}), |t| terminated(t, None));
    let mut v = json!({
        "name": c.name,
        "state": state,
        "lastState": last,
        "ready": ready(c),
        "restartCount": c.life.restart_count,
        "image": c.image,
        "imageID": c.image_ref,
        "started": c.running(),
    });
    if let Some(id) = &c.id {
        v["containerID"] = json!(format!("podium://{id}"));
    }
    v
}

fn condition(
    ty: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: &str,
) -> Value {
    let mut c = json!({
        "type": ty,
        "status": if ok { "True" } else { "False" },
        "lastProbeTime": null,
        "lastTransitionTime": now,
    });
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

/// The pod's `status`.
pub fn pod_status(v: &PodView, now: DateTime<Utc>) -> Value {
    let now_s = ts(now);
    let init_done = initialized(v.ctrs);
    let terminal = v.phase.is_terminal();
    let incomplete = incomplete_init(v.ctrs);
    let unready: Vec<&str> = v
        .ctrs
        .iter()
        .filter(|c| c.kind == Kind::App && !ready(c))
        .map(|c| c.name.as_str())
        .collect();
    let all_ready = unready.is_empty();
    let (ready_reason, ready_msg) = if terminal {
        (Some("PodCompleted"), None)
    } else if all_ready {
        (None, None)
    } else {
        (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let ok = all_ready && !terminal;
    let init_cond = if init_done {
        condition("Initialized", true, None, None, &now_s)
    } else {
        condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            )),
            &now_s,
        )
    };
    let conditions = vec![
        condition(
            "PodReadyToStartContainers",
            v.sandbox_ready,
            None,
            None,
            &now_s,
        ),
        init_cond,
        condition("Ready", ok, ready_reason, ready_msg.clone(), &now_s),
        condition("ContainersReady", ok, ready_reason, ready_msg, &now_s),
        condition("PodScheduled", true, None, None, &now_s),
    ];
    let mut s = Map::new();
    s.insert("phase".into(), json!(v.phase.as_str()));
    s.insert("conditions".into(), Value::Array(conditions));
    if let Some((reason, message)) = v.reason {
        s.insert("reason".into(), json!(reason));
        s.insert("message".into(), json!(message));
    }
    if !v.host_ip.is_empty() {
        s.insert("hostIP".into(), json!(v.host_ip));
        s.insert("hostIPs".into(), json!([{"ip": v.host_ip}]));
    }
    if let Some(first) = v.pod_ips.first() {
        s.insert("podIP".into(), json!(first));
        let ips: Vec<Value> = v.pod_ips.iter().map(|ip| json!({"ip": ip})).collect();
        s.insert("podIPs".into(), Value::Array(ips));
    }
    if let Some(t) = v.start_time {
        s.insert("startTime".into(), json!(ts(t)));
    }
    let inits: Vec<Value> = v
        .ctrs
        .iter()
        .filter(|c| c.kind != Kind::App)
        .map(|c| container_status(c, init_done))
        .collect();
    if !inits.is_empty() {
        s.insert("initContainerStatuses".into(), Value::Array(inits));
    }
    let apps: Vec<Value> = v
        .ctrs
        .iter()
        .filter(|c| c.kind == Kind::App)
        .map(|c| container_status(c, init_done))
        .collect();
    s.insert("containerStatuses".into(), Value::Array(apps));
    s.insert("qosClass".into(), json!(v.qos_class));
    Value::Object(s)
}

/// A status for a pod rejected at admission (kubelet: phase Failed, reason and message).
pub fn rejected_status(reason: &str, message: &str, host_ip: &str, now: DateTime<Utc>) -> Value {
    let mut s = json!({
        "phase": "Failed",
        "reason": reason,
        "message": message,
        "startTime": ts(now),
        "conditions": [],
    });
    if !host_ip.is_empty() {
        s["hostIP"] = json!(host_ip);
        s["hostIPs"] = json!([{"ip": host_ip}]);
    }
    s
}

/// The status without transition times, for "did anything change".
fn comparable(status: &Value) -> Value {
    let mut s = status.clone();
    if let Some(conds) = s.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in conds {
            if let Some(m) = c.as_object_mut() {
                m.remove("lastTransitionTime");
            }
        }
    }
    s
}

#[derive(Debug, Clone)]
struct Pending {
    ns: String,
    name: String,
    status: Value,
    attempts: u32,
}

#[derive(Default)]
struct WriterState {
    /// By pod uid: the latest status not yet written.
    pending: BTreeMap<String, Pending>,
    /// By pod uid: the last status written (comparable form).
    written: HashMap<String, Value>,
}

/// The single writer of pod status. Cheap to clone; [`StatusWriter::run`] is the task.
#[derive(Clone, Default)]
pub struct StatusWriter {
    state: Arc<Mutex<WriterState>>,
    notify: Arc<Notify>,
}

impl StatusWriter {
    pub fn new() -> StatusWriter {
        StatusWriter::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WriterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `status` for pod `ns/name` (uid `uid`), replacing any queued one. A status
    /// equal to the last one written is dropped.
    pub fn set(&self, ns: &str, name: &str, uid: &str, status: Value) {
        let mut g = self.lock();
        if g.written.get(uid) == Some(&comparable(&status)) && !g.pending.contains_key(uid) {
            return;
        }
        g.pending.insert(
            uid.to_string(),
            Pending {
                ns: ns.to_string(),
                name: name.to_string(),
                status,
                attempts: 0,
            },
        );
        drop(g);
        self.notify.notify_one();
    }

    /// Forgets a pod (it is gone).
    pub fn forget(&self, uid: &str) {
        let mut g = self.lock();
        g.pending.remove(uid);
        g.written.remove(uid);
    }

    /// Nothing left to write.
    pub fn idle(&self) -> bool {
        self.lock().pending.is_empty()
    }

    /// Writes queued statuses until shutdown.
    pub async fn run(self, api: Arc<dyn NodeApi>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let batch: Vec<(String, Pending)> = std::mem::take(&mut self.lock().pending)
                .into_iter()
                .collect();
            let mut retry = false;
            for (uid, p) in batch {
                match api.write_status(&p.ns, &p.name, &uid, &p.status).await {
                    Ok(()) => {
                        self.lock().written.insert(uid, comparable(&p.status));
                    }
                    // The pod is gone or replaced: nothing to write any more.
                    Err(ApiError::NotFound(_)) | Err(ApiError::Conflict { .. }) => {}
                    Err(e) => {
                        tracing::warn!("writing status of pod {}/{}: {e}", p.ns, p.name);
                        let mut g = self.lock();
                        // A newer status queued meanwhile wins.
                        if !g.pending.contains_key(&uid) && p.attempts < 20 {
                            g.pending.insert(
                                uid,
                                Pending {
                                    attempts: p.attempts + 1,
                                    ..p
                                },
                            );
                        }
                        retry = true;
                    }
                }
            }
            if retry {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            if !self.idle() {
                continue;
            }
            tokio::select! {
                _ = self.notify.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ApiCall, FakeApi};
    use crate::lifecycle::{RestartPolicy, TerminationReason};
    use crate::podstate::{containers_of, phase};

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::seconds(s)
    }

    fn view<'a>(ctrs: &'a [Ctr], ips: &'a [String]) -> PodView<'a> {
        PodView {
            ctrs,
            phase: phase(RestartPolicy::Always, ctrs),
            reason: None,
            host_ip: "192.168.1.10",
            pod_ips: ips,
            start_time: Some(t(0)),
            sandbox_ready: true,
            qos_class: "BestEffort",
        }
    }

    #[test]
    fn running_pod_status() {
        let pod = json!({"spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}});
        let mut cs = containers_of(&pod);
        cs[0].id = Some("inst-u-main-1".into());
        cs[0].image_ref = "docker.io/library/busybox@sha256:ab".into();
        cs[0].life = cs[0].life.started(t(1));
        let s = pod_status(&view(&cs, &[]), t(2));
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["hostIP"], "192.168.1.10");
        assert_eq!(s["startTime"], "2026-01-01T00:00:00Z");
        assert_eq!(s["qosClass"], "BestEffort");
        assert!(s.get("podIP").is_none());
        let c = &s["containerStatuses"][0];
        assert_eq!(c["state"]["running"]["startedAt"], "2026-01-01T00:00:01Z");
        assert_eq!(c["ready"], true);
        assert_eq!(c["started"], true);
        assert_eq!(c["containerID"], "podium://inst-u-main-1");
        assert_eq!(c["imageID"], "docker.io/library/busybox@sha256:ab");
        assert_eq!(c["lastState"], json!({}));
        let conds: Vec<(String, String)> = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["type"].as_str().unwrap().to_string(),
                    c["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for (ty, st) in [
            ("PodReadyToStartContainers", "True"),
            ("Initialized", "True"),
            ("Ready", "True"),
            ("ContainersReady", "True"),
            ("PodScheduled", "True"),
        ] {
            assert!(conds.contains(&(ty.into(), st.into())), "{ty}: {conds:?}");
        }
        assert!(s.get("initContainerStatuses").is_none());
    }

    #[test]
    fn crash_looping_and_initializing_pods() {
        let pod = json!({"spec": {"initContainers": [{"name": "init", "image": "b"}],
                                  "containers": [{"name": "main", "image": "b"}]}});
        let mut cs = containers_of(&pod);
        cs[0].life = cs[0].life.started(t(0));
        let s = pod_status(&view(&cs, &[]), t(1));
        assert_eq!(s["phase"], "Pending");
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "PodInitializing"
        );
        let init = &s["conditions"][1];
        assert_eq!(init["status"], "False");
        assert_eq!(init["reason"], "ContainersNotInitialized");
        assert_eq!(init["message"], "containers with incomplete status: [init]");
        assert_eq!(
            s["initContainerStatuses"][0]["state"]["running"]["startedAt"],
            "2026-01-01T00:00:00Z"
        );

        let term = |code| Termination {
            exit_code: code,
            signal: None,
            reason: TerminationReason::for_exit(code, false),
            message: Some("bye".into()),
            started_at: t(1),
            finished_at: t(2),
        };
        cs[0].life = cs[0].life.exited(term(0), RestartPolicy::OnFailure, t(1)).0;
        cs[1].life = cs[1].life.started(t(1));
        cs[1].life = cs[1].life.exited(term(1), RestartPolicy::Always, t(2)).0;
        cs[1].life = cs[1].life.started(t(2));
        cs[1].life = cs[1].life.exited(term(1), RestartPolicy::Always, t(3)).0;
        let s = pod_status(&view(&cs, &[]), t(3));
        assert_eq!(s["phase"], "Running");
        let c = &s["containerStatuses"][0];
        assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff");
        // One restart happened; the next one is still waiting out its back-off.
        assert_eq!(c["restartCount"], 1);
        assert_eq!(c["ready"], false);
        let last = &c["lastState"]["terminated"];
        assert_eq!(last["exitCode"], 1);
        assert_eq!(last["reason"], "Error");
        assert_eq!(last["message"], "bye");
        assert_eq!(last["finishedAt"], "2026-01-01T00:00:02Z");
        assert_eq!(s["conditions"][2]["reason"], "ContainersNotReady");
        assert_eq!(s["initContainerStatuses"][0]["ready"], true);
        assert_eq!(
            s["initContainerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
    }

    #[tokio::test]
    async fn writer_coalesces_and_retries() {
        let api = Arc::new(FakeApi::new());
        *api.fail_status.lock().unwrap() = 1;
        let w = StatusWriter::new();
        let (tx, rx) = watch::channel(false);
        w.set("ns", "p", "u1", json!({"phase": "Pending"}));
        w.set("ns", "p", "u1", json!({"phase": "Running"}));
        let task = tokio::spawn(w.clone().run(api.clone(), rx));
        for _ in 0..100 {
            if w.idle() && api.last_status("p").is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The first write failed, the retry wrote only the latest status.
        let writes: Vec<Value> = api
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                ApiCall::Status { status, .. } => Some(status),
                _ => None,
            })
            .collect();
        assert_eq!(writes, vec![json!({"phase": "Running"})]);
        // An unchanged status is not written again.
        w.set("ns", "p", "u1", json!({"phase": "Running"}));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(api.calls().len(), 1);
        let _ = tx.send(true);
        task.await.unwrap();
    }
}
