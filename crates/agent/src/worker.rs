//! The pod worker: one tokio task per pod that owns the pod's state and drives it through
//! [`WorkerState`](crate::podstate::WorkerState) — admission, the sandbox and the managed
//! /etc files, image pulls with back-off, root filesystems, container starts in
//! [`plan`](crate::podstate::plan) order, exits and restarts with back-off, the
//! activeDeadlineSeconds limit, graceful termination (stop signal, grace period, SIGKILL),
//! cleanup of every host resource and the final API delete. Its inputs are the latest pod
//! object (a `watch` channel from the manager; `None` once the object is gone) and exit
//! notifications from one blocking waiter per running container. It publishes status
//! through the [`StatusWriter`] and persists what a restarted agent needs in the pod's
//! [`PodIndex`]. Runtime calls block, so they run on `spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{mpsc, watch, Mutex};

use podium_image::{lookup_all, Keyring, PullPolicy, Reference};
use podium_runtime::{ContainerRequest, ContainerRuntime, ExitStatus, Sandbox, SandboxConfig};

use crate::api::{NodeApi, ObjectKind, Severity};
use crate::container_config::{self, stop_signal};
use crate::etc_files;
use crate::facts::{
    arr_at, at, bool_at, find_container, i64_at, str_at, NodeFacts, PodPaths, Resolved,
};
use crate::images::{read_rootfs_file, Images, ReadyImage};
use crate::index::{ContainerEntry, PodIndex, TermRecord};
use crate::lifecycle::{
    Backoff, ContainerState, Decision, RestartPolicy, Termination, TerminationReason, WaitingReason,
};
use crate::logs::termination_tail;
use crate::paths::Layout;
use crate::podstate::{self, containers_of, Ctr, Kind, WorkerEvent, WorkerState};
use crate::qos;
use crate::status::{pod_status, rejected_status, PodView, StatusWriter};
use crate::volumes::VolumeManager;

/// How long a retry of a failed sandbox or cleanup step waits.
const RETRY: Duration = Duration::from_secs(2);
/// The most bytes of a termination message file read (kubelet's limit).
const MAX_TERMINATION_MESSAGE: usize = 4096;

/// What every worker shares.
pub struct Deps {
    pub api: Arc<dyn NodeApi>,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub images: Arc<dyn Images>,
    pub status: StatusWriter,
    pub layout: Layout,
    /// Node facts; `pod_ips` is filled per pod.
    pub facts: NodeFacts,
    /// Pods admitted and not yet finished, by uid (the admission ledger).
    pub admitted: Mutex<BTreeMap<String, Value>>,
    pub volumes: VolumeManager,
    /// How often the contents of configMap, secret, downwardAPI and projected volumes are
    /// brought up to date (kubelet's `--sync-frequency`).
    pub sync_frequency: Duration,
    /// pids.max of every pod cgroup (kubelet's `--pod-max-pids`); `None` = unlimited.
    pub pod_pids_limit: Option<i64>,
}

/// A container's wait ended.
#[derive(Debug)]
pub struct Exit {
    pub name: String,
    pub id: String,
    /// The exit status, or why it is unknown.
    pub result: Result<ExitStatus, String>,
}

/// `Some(grace)` once the pod is marked for deletion.
pub fn deletion_grace(pod: &Value) -> Option<i64> {
    pod.pointer("/metadata/deletionTimestamp")?;
    Some(i64_at(pod, &["metadata", "deletionGracePeriodSeconds"]).unwrap_or(30))
}

/// Whether the pod has a volume whose content the agent writes and keeps current.
fn has_content_volumes(pod: &Value) -> bool {
    arr_at(pod, &["spec", "volumes"]).iter().any(|v| {
        ["configMap", "secret", "downwardAPI", "projected"]
            .iter()
            .any(|k| v.get(*k).is_some())
    })
}

/// What of the pod's own object a downwardAPI volume may show and can change.
fn volume_metadata(pod: &Value) -> Value {
    serde_json::json!({
        "labels": at(pod, &["metadata", "labels"]),
        "annotations": at(pod, &["metadata", "annotations"]),
    })
}

/// The ConfigMaps and Secrets a pod's containers and volumes refer to.
pub fn referenced_objects(pod: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut cms, mut secrets) = (BTreeSet::new(), BTreeSet::new());
    let add = |set: &mut BTreeSet<String>, v: Option<&Value>| {
        if let Some(n) = v.and_then(Value::as_str).filter(|n| !n.is_empty()) {
            set.insert(n.to_string());
        }
    };
    let containers = arr_at(pod, &["spec", "containers"])
        .iter()
        .chain(arr_at(pod, &["spec", "initContainers"]));
    for c in containers {
        for e in arr_at(c, &["env"]) {
            add(&mut cms, e.pointer("/valueFrom/configMapKeyRef/name"));
            add(&mut secrets, e.pointer("/valueFrom/secretKeyRef/name"));
        }
        for e in arr_at(c, &["envFrom"]) {
            add(&mut cms, e.pointer("/configMapRef/name"));
            add(&mut secrets, e.pointer("/secretRef/name"));
        }
    }
    for v in arr_at(pod, &["spec", "volumes"]) {
        add(&mut cms, v.pointer("/configMap/name"));
        add(&mut secrets, v.pointer("/secret/secretName"));
        for s in arr_at(v, &["projected", "sources"]) {
            add(&mut cms, s.pointer("/configMap/name"));
            add(&mut secrets, s.pointer("/secret/name"));
        }
    }
    (cms, secrets)
}

fn decode_secret_data(secret: &Value) -> BTreeMap<String, Vec<u8>> {
    use base64::Engine;
    let mut out = BTreeMap::new();
    if let Some(m) = secret.get("data").and_then(Value::as_object) {
        for (k, v) in m {
            if let Some(bytes) = v
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            {
                out.insert(k.clone(), bytes);
            }
        }
    }
    out
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// One pod's worker. Build with [`PodWorker::new`], then `tokio::spawn(worker.run())`.
pub struct PodWorker {
    deps: Arc<Deps>,
    pod: Value,
    uid: String,
    ns: String,
    name: String,
    state: WorkerState,
    ctrs: Vec<Ctr>,
    sandbox: Option<Sandbox>,
    start_time: Option<DateTime<Utc>>,
    /// status.reason/message of a pod failed by the agent (rejection, deadline).
    failure: Option<(String, String)>,
    /// Services of the namespace when the pod started (service links).
    services: Option<Vec<Value>>,
    stop_signals: BTreeMap<String, i32>,
    /// The pod's volumes on the host, once set up.
    volume_hosts: Option<BTreeMap<String, crate::facts::VolumeHost>>,
    /// When the content volumes are next refreshed, and the pod metadata they last saw
    /// (a downwardAPI volume shows labels and annotations).
    next_volume_refresh: Option<DateTime<Utc>>,
    volume_metadata: Option<Value>,
    pod_rx: watch::Receiver<Option<Value>>,
    exits_tx: mpsc::UnboundedSender<Exit>,
    exits_rx: mpsc::UnboundedReceiver<Exit>,
    wake_at: Option<DateTime<Utc>>,
    /// Phase durations of the first start, for the `pod started` log line.
    times: StartTimes,
}

impl PodWorker {
    pub fn new(deps: Arc<Deps>, pod: Value, pod_rx: watch::Receiver<Option<Value>>) -> PodWorker {
        let (exits_tx, exits_rx) = mpsc::unbounded_channel();
        PodWorker {
            uid: str_at(&pod, &["metadata", "uid"]).to_string(),
            ns: crate::facts::namespace_of(&pod).to_string(),
            name: str_at(&pod, &["metadata", "name"]).to_string(),
            ctrs: containers_of(&pod),
            deps,
            pod,
            state: WorkerState::Admitting,
            sandbox: None,
            start_time: None,
            failure: None,
            services: None,
            stop_signals: BTreeMap::new(),
            volume_hosts: None,
            next_volume_refresh: None,
            volume_metadata: None,
            pod_rx,
            exits_tx,
            exits_rx,
            wake_at: None,
            times: StartTimes::default(),
        }
    }

    fn pod_dir(&self) -> PathBuf {
        self.deps.layout.pod_dir(&self.uid)
    }

    fn policy(&self) -> RestartPolicy {
        RestartPolicy::from_api(str_at(&self.pod, &["spec", "restartPolicy"]))
    }

    /// A boolean field of the pod spec, false when absent.
    fn spec_flag(&self, field: &str) -> bool {
        bool_at(&self.pod, &["spec", field]) == Some(true)
    }

    fn host_network(&self) -> bool {
        self.spec_flag("hostNetwork")
    }

    /// Node facts for this pod: hostNetwork pods have the host's IPs; other pods have no
    /// IP until pod networking exists.
    fn facts(&self) -> NodeFacts {
        let mut f = self.deps.facts.clone();
        f.pod_ips = if self.host_network() {
            f.host_ips.clone()
        } else {
            Vec::new()
        };
        f
    }

    async fn event(&self, sev: Severity, reason: &str, msg: &str) {
        self.deps
            .api
            .event(&self.pod, "kubelet", sev, reason, msg)
            .await;
    }

    fn transition(&mut self, ev: WorkerEvent) {
        let next = self.state.next(&ev, Utc::now());
        if next != self.state {
            tracing::debug!(
                "pod {}/{}: {:?} --{ev:?}--> {next:?}",
                self.ns,
                self.name,
                self.state
            );
            self.state = next;
        }
    }

    /// Runs the worker until the pod is gone (or the agent shuts down, leaving the pod's
    /// containers running for the next agent to adopt).
    pub async fn run(mut self) {
        self.adopt().await;
        loop {
            self.step().await;
            if self.state == WorkerState::Gone {
                break;
            }
            self.publish();
            let wait = self
                .wake_at
                .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                changed = self.pod_rx.changed() => {
                    if changed.is_err() {
                        // The manager stopped: agent shutdown. Containers keep running.
                        return;
                    }
                    let latest = self.pod_rx.borrow_and_update().clone();
                    match latest {
                        Some(p) => {
                            if str_at(&p, &["metadata", "uid"]) == self.uid {
                                self.pod = p;
                            }
                        }
                        None => self.transition(WorkerEvent::ObjectGone),
                    }
                }
                Some(exit) = self.exits_rx.recv() => self.on_exit(exit).await,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.deps.status.forget(&self.uid);
    }

    /// Carries out what the current state asks, until it settles.
    async fn step(&mut self) {
        for _ in 0..8 {
            let before = self.state.clone();
            self.wake_at = None;
            if let Some(grace) = deletion_grace(&self.pod) {
                if !matches!(
                    self.state,
                    WorkerState::CleanedUp { .. } | WorkerState::Gone
                ) {
                    let was_terminating = matches!(self.state, WorkerState::Terminating { .. });
                    self.transition(WorkerEvent::DeletionRequested { grace_secs: grace });
                    if !was_terminating {
                        self.begin_termination().await;
                    }
                }
            }
            match self.state.clone() {
                WorkerState::Admitting => self.admit().await,
                WorkerState::Active => self.sync_active().await,
                WorkerState::Finished => {}
                WorkerState::Terminating { kill_at, killed } => {
                    self.sync_terminating(kill_at, killed).await
                }
                WorkerState::CleanedUp { object_gone } => self.finalize(object_gone).await,
                WorkerState::Gone => return,
            }
            if self.state == before {
                return;
            }
        }
    }

    // ---------------------------------------------------------------- admission

    async fn admit(&mut self) {
        let mut ledger = self.deps.admitted.lock().await;
        let existing: Vec<Value> = ledger
            .iter()
            .filter(|(uid, _)| **uid != self.uid)
            .map(|(_, p)| p.clone())
            .collect();
        match qos::admit(&self.pod, &self.deps.facts.allocatable, &existing) {
            qos::Admission::Admit => {
                ledger.insert(self.uid.clone(), self.pod.clone());
                drop(ledger);
                self.start_time.get_or_insert_with(Utc::now);
                self.times.start();
                self.transition(WorkerEvent::Admitted);
                self.save_index();
            }
            qos::Admission::Reject { reason, message } => {
                drop(ledger);
                self.event(Severity::Warning, &reason, &message).await;
                self.failure = Some((reason, message));
                self.transition(WorkerEvent::Rejected);
            }
        }
    }

    // ---------------------------------------------------------------- running

    async fn sync_active(&mut self) {
        let now = Utc::now();
        if let (Some(ads), Some(start)) = (
            i64_at(&self.pod, &["spec", "activeDeadlineSeconds"]),
            self.start_time,
        ) {
            let deadline = start + chrono::Duration::seconds(ads);
            if now >= deadline {
                let msg =
                    "Pod was active on the node longer than the specified deadline".to_string();
                self.event(Severity::Normal, "DeadlineExceeded", &msg).await;
                self.failure = Some(("DeadlineExceeded".into(), msg));
                self.kill_running(9).await;
                self.transition(WorkerEvent::Terminal);
                return;
            }
            self.wake_at = Some(deadline);
        }
        if self.sandbox.is_none() {
            if let Err(e) = self.create_sandbox().await {
                tracing::warn!("pod {}/{}: sandbox: {e}", self.ns, self.name);
                self.event(
                    Severity::Warning,
                    "FailedCreatePodSandBox",
                    &format!("Failed to create pod sandbox: {e}"),
                )
                .await;
                self.set_wake(now + chrono::Duration::from_std(RETRY).unwrap_or_default());
                return;
            }
        }
        if self.volume_hosts.is_none() {
            self.times.sandbox += self.times.mark();
            let resolved = self.resolved().await;
            let (vm, pod, facts) = (self.deps.volumes.clone(), self.pod.clone(), self.facts());
            match blocking(move || vm.setup(&pod, &resolved, &facts)).await {
                Some(Ok(hosts)) => {
                    self.volume_hosts = Some(hosts);
                    self.times.volumes += self.times.mark();
                    self.volume_metadata = Some(volume_metadata(&self.pod));
                    self.next_volume_refresh = Some(now + self.sync_frequency());
                }
                Some(Err(e)) => {
                    self.event(Severity::Warning, e.reason(), &e.to_string())
                        .await;
                    self.set_wake(now + chrono::Duration::from_std(RETRY).unwrap_or_default());
                    return;
                }
                None => return,
            }
        }
        self.refresh_volumes(now).await;
        let plan = podstate::plan(&self.ctrs, now);
        if let Some(t) = plan.wake_at {
            self.set_wake(t);
        }
        for i in plan.start {
            self.start_container(i).await;
            // Init containers and sidecars go one at a time (the next plan decides more).
            if self.ctrs[i].kind != Kind::App {
                break;
            }
        }
        self.times.log_started(&self.ns, &self.name, &self.ctrs);
        // Anything more to start now (e.g. the next init container is due)?
        if !podstate::plan(&self.ctrs, Utc::now()).start.is_empty()
            && self.ctrs.iter().any(|c| c.running() || c.done)
        {
            self.set_wake(Utc::now());
        }
        if self.failure.is_none() && podstate::phase(self.policy(), &self.ctrs).is_terminal() {
            // Sidecars stop once the app containers are done for good.
            self.stop_running(None).await;
            self.transition(WorkerEvent::Terminal);
        }
    }

    fn set_wake(&mut self, t: DateTime<Utc>) {
        self.wake_at = Some(self.wake_at.map_or(t, |w| w.min(t)));
    }

    /// Creates the sandbox and writes the pod's managed /etc files.
    async fn create_sandbox(&mut self) -> Result<(), String> {
        let facts = self.facts();
        let hostname =
            etc_files::uts_hostname(&self.pod, &facts.cluster_domain).map_err(|e| e.to_string())?;
        // kubelet's pod-level cgroup: the pod's summed limits above its containers'.
        let pod_cgroup = qos::pod_cgroup(
            &self.deps.layout.cgroup_root(),
            qos::qos_class(&self.pod),
            &self.uid,
        );
        let pod_limits = qos::pod_resources(&self.pod, self.deps.pod_pids_limit);
        let cfg = SandboxConfig {
            pod_uid: self.uid.clone(),
            hostname,
            host_network: self.host_network(),
            host_ipc: self.spec_flag("hostIPC"),
            share_pid: self.spec_flag("shareProcessNamespace") && !self.spec_flag("hostPID"),
            cgroup: Some(pod_cgroup.clone()),
        };
        let dir = self.pod_dir();
        let pod = self.pod.clone();
        let (resolv, warnings) = etc_files::resolv_conf(&pod, &facts);
        for w in warnings {
            self.event(Severity::Warning, &w.reason, &w.message).await;
        }
        // Without pod networking a pod has no IP yet; it still gets kubelet's managed
        // file (localhost entries, its hostname needs an IP so is left out, hostAliases).
        let hosts = match etc_files::etc_hosts(&pod, &facts).map_err(|e| e.to_string())? {
            Some(h) => Some(h),
            None => {
                let host = etc_files::pod_hostname(&pod, &facts.cluster_domain)
                    .map_err(|e| e.to_string())?;
                Some(etc_files::managed_hosts_file(
                    &[],
                    &host,
                    &etc_files::host_aliases(&pod),
                ))
            }
        };
        let etc_hostname = etc_files::etc_hostname(&pod, &facts).map_err(|e| e.to_string())?;
        let rt = self.deps.runtime.clone();
        let sandbox = blocking(move || -> Result<Sandbox, String> {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            std::fs::write(dir.join("resolv.conf"), resolv).map_err(|e| e.to_string())?;
            std::fs::write(dir.join("etc-hostname"), etc_hostname).map_err(|e| e.to_string())?;
            if let Some(h) = hosts {
                std::fs::write(dir.join("etc-hosts"), h).map_err(|e| e.to_string())?;
            }
            rt.configure_pod_cgroup(&pod_cgroup, &pod_limits)
                .map_err(|e| e.to_string())?;
            match rt.create_sandbox(&cfg) {
                Ok(s) => Ok(s),
                Err(podium_runtime::RuntimeError::Sandbox(
                    podium_runtime::SandboxError::Exists(_),
                )) => {
                    // Left by an attempt whose index was not written: start over.
                    rt.remove_sandbox(&cfg.pod_uid).map_err(|e| e.to_string())?;
                    rt.create_sandbox(&cfg).map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .unwrap_or_else(|| Err("sandbox task panicked".into()))?;
        self.sandbox = Some(sandbox);
        self.save_index();
        Ok(())
    }

    async fn keyrings(&self) -> Vec<Keyring> {
        let mut names: Vec<String> = arr_at(&self.pod, &["spec", "imagePullSecrets"])
            .iter()
            .map(|s| str_at(s, &["name"]).to_string())
            .collect();
        let sa = match str_at(&self.pod, &["spec", "serviceAccountName"]) {
            "" => "default",
            s => s,
        };
        if let Ok(Some(sa)) = self
            .deps
            .api
            .get(ObjectKind::ServiceAccount, &self.ns, sa)
            .await
        {
            for s in arr_at(&sa, &["imagePullSecrets"]) {
                names.push(str_at(s, &["name"]).to_string());
            }
        }
        let mut out = Vec::new();
        for n in names.iter().filter(|n| !n.is_empty()) {
            match self.deps.api.get(ObjectKind::Secret, &self.ns, n).await {
                Ok(Some(secret)) => {
                    let ty = str_at(&secret, &["type"]);
                    match Keyring::from_secret(n, ty, &decode_secret_data(&secret)) {
                        Ok(k) => out.push(k),
                        Err(e) => tracing::warn!("pull secret {}/{n}: {e}", self.ns),
                    }
                }
                Ok(None) => {
                    self.event(
                        Severity::Warning,
                        "FailedToRetrieveImagePullSecret",
                        &format!(
                            "Unable to retrieve some image pull secrets ({n}); attempting to pull the image may not succeed."
                        ),
                    )
                    .await
                }
                Err(e) => tracing::warn!("pull secret {}/{n}: {e}", self.ns),
            }
        }
        out
    }

    /// Pulls the image of container `i` per its policy; on failure the container waits
    /// with ErrImagePull / ImagePullBackOff and a back-off.
    async fn pull(&mut self, i: usize) -> Option<ReadyImage> {
        let spec = find_container(&self.pod, &self.ctrs[i].name).cloned()?;
        let image = self.ctrs[i].image.clone();
        // Admission always sets imagePullPolicy; the same rule covers an object that
        // somehow lacks it.
        let policy = PullPolicy::from_api(str_at(&spec, &["imagePullPolicy"]))
            .or_else(|| {
                PullPolicy::from_api(podium_api::admission::pod::default_pull_policy(&image))
            })
            .unwrap_or(PullPolicy::IfNotPresent);
        let present_before = policy != PullPolicy::Always;
        let keyrings = self.keyrings().await;
        let name = Reference::parse(&image)
            .map(|r| r.name())
            .unwrap_or_else(|_| image.clone());
        let creds = lookup_all(&keyrings, &name);
        if policy == PullPolicy::Always {
            self.event(
                Severity::Normal,
                "Pulling",
                &format!("Pulling image {image:?}"),
            )
            .await;
        }
        let started = std::time::Instant::now();
        match self.deps.images.ensure(&image, policy, &creds).await {
            Ok(ready) => {
                self.ctrs[i].pull_backoff = Backoff::default();
                match ready.pulled {
                    Some(_) if present_before => {
                        // IfNotPresent that had to pull: kubelet says Pulling first.
                        self.event(
                            Severity::Normal,
                            "Pulling",
                            &format!("Pulling image {image:?}"),
                        )
                        .await;
                        self.pulled_event(&image, &ready, started.elapsed()).await;
                    }
                    Some(_) => self.pulled_event(&image, &ready, started.elapsed()).await,
                    None => {
                        self.event(
                            Severity::Normal,
                            "Pulled",
                            &format!("Container image {image:?} already present on machine"),
                        )
                        .await
                    }
                }
                Some(ready)
            }
            Err(f) => {
                let now = Utc::now();
                let c = &mut self.ctrs[i];
                let (delay, next) = c.pull_backoff.after_exit(Duration::ZERO);
                c.pull_backoff = next;
                // After the first failure kubelet reports the back-off.
                let first = delay.is_zero();
                let retry = now
                    + chrono::Duration::from_std(delay.max(crate::lifecycle::BACKOFF_INITIAL))
                        .unwrap_or_default();
                let reason = match (f.reason, first) {
                    ("ErrImagePull", false) => WaitingReason::ImagePullBackOff { until: retry },
                    ("ErrImagePull", true) => WaitingReason::ErrImagePull,
                    ("ErrImageNeverPull", _) => WaitingReason::ErrImageNeverPull,
                    _ => WaitingReason::InvalidImageName,
                };
                let shown = if matches!(reason, WaitingReason::ImagePullBackOff { .. }) {
                    format!("Back-off pulling image {image:?}: {}", f.message)
                } else {
                    f.message.clone()
                };
                c.life = c.life.waiting(reason.clone(), Some(shown));
                c.retry_at = f.retryable.then_some(retry);
                if !f.retryable {
                    c.retry_at = Some(now + chrono::Duration::seconds(300));
                }
                if first {
                    self.event(
                        Severity::Warning,
                        "Failed",
                        &format!("Failed to pull image {image:?}: {}", f.message),
                    )
                    .await;
                    self.event(
                        Severity::Warning,
                        "Failed",
                        &format!("Error: {}", reason.as_str()),
                    )
                    .await;
                } else {
                    self.event(
                        Severity::Normal,
                        "BackOff",
                        &format!("Back-off pulling image {image:?}"),
                    )
                    .await;
                    self.event(
                        Severity::Warning,
                        "Failed",
                        &format!("Error: {}", reason.as_str()),
                    )
                    .await;
                }
                None
            }
        }
    }

    async fn pulled_event(&self, image: &str, ready: &ReadyImage, took: Duration) {
        let secs = took.as_secs_f64();
        self.event(
            Severity::Normal,
            "Pulled",
            &format!(
                "Successfully pulled image {image:?} in {secs:.3}s ({secs:.3}s including waiting). Image size: {} bytes.",
                ready.size
            ),
        )
        .await;
    }

    async fn resolved(&mut self) -> Resolved {
        let (cms, secrets) = referenced_objects(&self.pod);
        let mut r = Resolved::default();
        for n in cms {
            if let Ok(Some(o)) = self.deps.api.get(ObjectKind::ConfigMap, &self.ns, &n).await {
                r.configmaps.insert(n, o);
            }
        }
        for n in secrets {
            if let Ok(Some(o)) = self.deps.api.get(ObjectKind::Secret, &self.ns, &n).await {
                r.secrets.insert(n, o);
            }
        }
        if self.services.is_none() {
            let mut svcs = self
                .deps
                .api
                .list_services(&self.ns)
                .await
                .unwrap_or_default();
            if self.ns != "default" {
                svcs.extend(
                    self.deps
                        .api
                        .list_services("default")
                        .await
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|s| str_at(s, &["metadata", "name"]) == "kubernetes"),
                );
            }
            self.services = Some(svcs);
        }
        r.services = self.services.clone().unwrap_or_default();
        r
    }

    fn sync_frequency(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.deps.sync_frequency)
            .unwrap_or_else(|_| chrono::Duration::seconds(60))
    }

    /// Keeps configMap, secret, downwardAPI and projected volume contents current, as
    /// kubelet does: every sync period, and at once when the pod's labels or annotations
    /// change. A source that fails (e.g. deleted) keeps its last content.
    async fn refresh_volumes(&mut self, now: DateTime<Utc>) {
        if self.volume_hosts.is_none() || !has_content_volumes(&self.pod) {
            return;
        }
        let metadata = volume_metadata(&self.pod);
        let due = self.next_volume_refresh.is_none_or(|t| now >= t)
            || self.volume_metadata.as_ref() != Some(&metadata);
        if due {
            let resolved = self.resolved().await;
            let (vm, pod, facts) = (self.deps.volumes.clone(), self.pod.clone(), self.facts());
            if let Some(Err(e)) = blocking(move || vm.refresh(&pod, &resolved, &facts)).await {
                tracing::debug!("pod {}/{}: refreshing volumes: {e}", self.ns, self.name);
            }
            self.volume_metadata = Some(metadata);
            self.next_volume_refresh = Some(now + self.sync_frequency());
        }
        if let Some(t) = self.next_volume_refresh {
            self.set_wake(t);
        }
    }

    /// Starts container `i`: image, root filesystem, configuration, runtime start.
    async fn start_container(&mut self, i: usize) {
        let name = self.ctrs[i].name.clone();
        // A restart replaces the previous container of this name.
        if let Some(old) = self.ctrs[i].id.take() {
            self.remove_container(&old).await;
        }
        let Some(image) = self.pull(i).await else {
            return;
        };
        self.times.image += self.times.mark();
        self.ctrs[i].image_ref = image.image_ref.clone();
        self.ctrs[i].attempt += 1;
        let attempt = self.ctrs[i].attempt;
        let id = self.deps.layout.container_id(&self.uid, &name, attempt);
        let restart = self.ctrs[i].life.next_run_index();
        let log_path = self
            .deps
            .layout
            .log_path(&self.ns, &self.name, &self.uid, &name, restart);
        let cdir = self.deps.layout.container_dir(&self.uid, &id);
        let rootfs = self.deps.layout.rootfs(&id);
        let term_log = cdir.join("termination-log");

        // Root filesystem and host files.
        let images = self.deps.images.clone();
        let (img2, cdir2, rootfs2, term2, log2) = (
            image.clone(),
            cdir.clone(),
            rootfs.clone(),
            term_log.clone(),
            log_path.clone(),
        );
        let mounted = blocking(
            move || -> Result<(Option<String>, Option<String>), String> {
                std::fs::create_dir_all(&cdir2).map_err(|e| e.to_string())?;
                std::fs::write(&term2, b"").map_err(|e| e.to_string())?;
                if let Some(p) = log2.parent() {
                    std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
                    // Keep this run's and the previous run's logs only (kubelet's GC).
                    if let Err(e) = crate::logs::remove_logs_before(p, restart.saturating_sub(1)) {
                        tracing::debug!("removing old logs in {}: {e}", p.display());
                    }
                }
                images.mount_rootfs(&img2, &cdir2, &rootfs2)?;
                Ok((
                    read_rootfs_file(&rootfs2, "etc/passwd"),
                    read_rootfs_file(&rootfs2, "etc/group"),
                ))
            },
        )
        .await
        .unwrap_or_else(|| Err("rootfs task panicked".into()));
        let (passwd, group) = match mounted {
            Ok(pg) => pg,
            Err(e) => {
                self.start_failed(i, &id, "CreateContainerError", &e).await;
                return;
            }
        };
        self.ctrs[i].id = Some(id.clone());
        self.times.rootfs += self.times.mark();
        let mut facts_img = image.facts.clone();
        facts_img.passwd = passwd;
        facts_img.group = group;
        self.stop_signals
            .insert(name.clone(), stop_signal(&facts_img));

        let facts = self.facts();
        let resolved = self.resolved().await;
        let sandbox = self.sandbox.clone();
        let dir = self.pod_dir();
        let paths = PodPaths {
            rootfs: rootfs.clone(),
            container_id: id.clone(),
            etc_hosts: dir
                .join("etc-hosts")
                .exists()
                .then(|| dir.join("etc-hosts")),
            etc_hostname: Some(dir.join("etc-hostname")),
            resolv_conf: Some(dir.join("resolv.conf")),
            termination_log: Some(term_log),
            shm: None,
            volumes: self.volume_hosts.clone().unwrap_or_default(),
            subpaths: BTreeMap::new(),
            net_ns: sandbox.as_ref().and_then(|s| s.net.clone()),
            ipc_ns: sandbox.as_ref().and_then(|s| s.ipc.clone()),
            uts_ns: sandbox.as_ref().and_then(|s| s.uts.clone()),
            pid_ns: sandbox.as_ref().and_then(|s| s.pid.clone()),
        };
        let mut paths = paths;
        if let Err((reason, msg)) = self.subpaths(&name, &facts, &resolved, &mut paths).await {
            self.config_failed(i, &id, reason, &msg).await;
            return;
        }
        let cfg = match container_config::build(
            &self.pod, &name, &facts, &facts_img, &resolved, &paths,
        ) {
            Ok(b) => {
                for w in &b.warnings {
                    self.event(Severity::Warning, &w.reason, &w.message).await;
                }
                b.config
            }
            Err(e) => {
                let reason = e.reason();
                self.config_failed(i, &id, reason, &e.to_string()).await;
                return;
            }
        };
        let req = ContainerRequest {
            id: id.clone(),
            config: cfg,
            log_path,
        };
        self.save_index();
        self.times.config += self.times.mark();
        let rt = self.deps.runtime.clone();
        let started = blocking(move || rt.start(&req).map_err(|e| e.to_string()))
            .await
            .unwrap_or_else(|| Err("start task panicked".into()));
        self.times.create_start += self.times.mark();
        match started {
            Ok(info) => {
                self.event(
                    Severity::Normal,
                    "Created",
                    &format!("Created container: {name}"),
                )
                .await;
                self.event(
                    Severity::Normal,
                    "Started",
                    &format!("Started container {name}"),
                )
                .await;
                let c = &mut self.ctrs[i];
                c.life = c.life.started(info.started_at);
                c.retry_at = None;
                self.spawn_waiter(&name, &id);
                self.save_index();
            }
            Err(e) => self.start_failed(i, &id, "StartError", &e).await,
        }
    }

    /// Resolves the container's subPath mounts safely (bind-mounted staging paths).
    async fn subpaths(
        &self,
        name: &str,
        facts: &NodeFacts,
        resolved: &Resolved,
        paths: &mut PodPaths,
    ) -> Result<(), (&'static str, String)> {
        let Some(container) = find_container(&self.pod, name) else {
            return Ok(());
        };
        let env = crate::env::container_env(&self.pod, container, facts, resolved)
            .map_err(|e| ("CreateContainerConfigError", e.to_string()))?
            .env;
        let requests = container_config::subpath_requests(container, &env)
            .map_err(|e| (e.reason(), e.to_string()))?;
        for r in requests {
            let Some(host) = paths.volumes.get(&r.volume).cloned() else {
                continue;
            };
            let (vm, uid, cname) = (
                self.deps.volumes.clone(),
                self.uid.clone(),
                name.to_string(),
            );
            let res = blocking(move || vm.subpath(&uid, &cname, r.index, &host, &r.sub_path)).await;
            match res {
                Some(Ok(p)) => {
                    paths.subpaths.insert(r.index, p);
                }
                Some(Err(e)) => return Err(("CreateContainerConfigError", e.to_string())),
                None => return Err(("CreateContainerConfigError", "subPath task panicked".into())),
            }
        }
        Ok(())
    }

    /// A configuration error: the container waits (kubelet retries on its next sync).
    async fn config_failed(&mut self, i: usize, id: &str, reason: &str, msg: &str) {
        self.event(Severity::Warning, "Failed", &format!("Error: {msg}"))
            .await;
        let w = if reason == "CreateContainerError" {
            WaitingReason::CreateContainerError
        } else {
            WaitingReason::CreateContainerConfigError
        };
        let c = &mut self.ctrs[i];
        c.life = c.life.waiting(w, Some(msg.to_string()));
        c.retry_at = Some(Utc::now() + chrono::Duration::seconds(10));
        c.id = Some(id.to_string());
        let old = id.to_string();
        self.remove_container(&old).await;
        self.ctrs[i].id = None;
    }

    /// The runtime could not start the container: it counts as a run that ended with
    /// exit code 128 (ContainerCannotRun), restarted per policy with back-off.
    async fn start_failed(&mut self, i: usize, id: &str, _reason: &str, msg: &str) {
        self.event(Severity::Warning, "Failed", &format!("Error: {msg}"))
            .await;
        let now = Utc::now();
        let t = Termination {
            exit_code: 128,
            signal: None,
            reason: TerminationReason::ContainerCannotRun,
            message: Some(msg.to_string()),
            started_at: now,
            finished_at: now,
        };
        self.ctrs[i].id = Some(id.to_string());
        self.apply_exit(i, t).await;
    }

    fn spawn_waiter(&self, name: &str, id: &str) {
        let rt = self.deps.runtime.clone();
        let tx = self.exits_tx.clone();
        let (name, id) = (name.to_string(), id.to_string());
        tokio::task::spawn_blocking(move || loop {
            // Bounded waits, so the thread ends soon after the worker does.
            match rt.wait(&id, Some(Duration::from_secs(1))) {
                Ok(None) if !tx.is_closed() => continue,
                Ok(None) => return,
                Ok(Some(exit)) => {
                    let _ = tx.send(Exit {
                        name,
                        id,
                        result: Ok(exit),
                    });
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Exit {
                        name,
                        id,
                        result: Err(e.to_string()),
                    });
                    return;
                }
            }
        });
    }

    /// The termination message: the file at terminationMessagePath, or with
    /// FallbackToLogsOnError and a failure, the log's tail.
    fn termination_message(
        &self,
        name: &str,
        id: &str,
        exit_code: i32,
        restart: u32,
    ) -> Option<String> {
        let path = self
            .deps
            .layout
            .container_dir(&self.uid, id)
            .join("termination-log");
        let mut msg = std::fs::read(&path).ok().map(|mut b| {
            b.truncate(MAX_TERMINATION_MESSAGE);
            String::from_utf8_lossy(&b).into_owned()
        });
        let fallback = find_container(&self.pod, name)
            .map(|c| str_at(c, &["terminationMessagePolicy"]) == "FallbackToLogsOnError")
            .unwrap_or(false);
        if msg.as_deref().is_none_or(str::is_empty) && fallback && exit_code != 0 {
            msg = termination_tail(
                &self
                    .deps
                    .layout
                    .log_path(&self.ns, &self.name, &self.uid, name, restart),
            );
        }
        msg.filter(|m| !m.is_empty())
    }

    async fn on_exit(&mut self, exit: Exit) {
        let Some(i) = self
            .ctrs
            .iter()
            .position(|c| c.name == exit.name && c.id.as_deref() == Some(exit.id.as_str()))
        else {
            return;
        };
        let started_at = match &self.ctrs[i].life.state {
            ContainerState::Running { started_at } => *started_at,
            _ => return,
        };
        let restart = self.ctrs[i].life.restart_count;
        let t = match exit.result {
            Ok(st) => {
                let code = st.exit_code();
                Termination {
                    exit_code: code,
                    signal: st.signal,
                    reason: TerminationReason::for_exit(code, st.oom_killed),
                    message: self.termination_message(&exit.name, &exit.id, code, restart),
                    started_at,
                    finished_at: st.finished_at,
                }
            }
            Err(e) => Termination {
                exit_code: 137,
                signal: None,
                reason: TerminationReason::Error,
                message: Some(format!("container state lost: {e}")),
                started_at,
                finished_at: Utc::now(),
            },
        };
        self.apply_exit(i, t).await;
    }

    /// Feeds an exit into the container's lifecycle and carries out the decision.
    async fn apply_exit(&mut self, i: usize, t: Termination) {
        let now = Utc::now();
        let policy = if self.state.starts_containers() {
            self.ctrs[i].kind.policy(self.policy())
        } else {
            // Terminating or finished: nothing restarts.
            RestartPolicy::Never
        };
        let (life, decision) = self.ctrs[i].life.exited(t, policy, now);
        let c = &mut self.ctrs[i];
        c.life = life;
        match decision {
            Decision::Done => {
                c.done = true;
                c.retry_at = None;
            }
            Decision::RestartAt { at } => {
                c.retry_at = Some(at);
                if at > now {
                    let msg = format!(
                        "Back-off restarting failed container {} in pod {}_{}({})",
                        c.name, self.name, self.ns, self.uid
                    );
                    self.event(Severity::Warning, "BackOff", &msg).await;
                }
            }
            Decision::Keep => {}
        }
        self.save_index();
    }

    /// Signals every running container: `signal`, or each container's stop signal.
    async fn stop_running(&mut self, signal: Option<i32>) {
        for c in self.ctrs.clone() {
            let (true, Some(id)) = (c.running(), c.id.clone()) else {
                continue;
            };
            let sig = signal.unwrap_or_else(|| *self.stop_signals.get(&c.name).unwrap_or(&15));
            let rt = self.deps.runtime.clone();
            let res = blocking(move || rt.kill(&id, sig)).await;
            if let Some(Err(e)) = res {
                tracing::debug!("signalling container {}: {e}", c.name);
            }
        }
    }

    async fn kill_running(&mut self, signal: i32) {
        self.stop_running(Some(signal)).await;
    }

    // ---------------------------------------------------------------- termination

    /// Deletion began: Killing events and each container's stop signal.
    async fn begin_termination(&mut self) {
        for c in self.ctrs.clone() {
            if c.running() {
                self.event(
                    Severity::Normal,
                    "Killing",
                    &format!("Stopping container {}", c.name),
                )
                .await;
            }
        }
        if let WorkerState::Terminating { killed: true, .. } = self.state {
            self.kill_running(9).await;
        } else {
            self.stop_running(None).await;
        }
        // Containers waiting for a restart will not get one.
        for c in &mut self.ctrs {
            if !c.running() {
                c.retry_at = None;
            }
        }
    }

    async fn sync_terminating(&mut self, kill_at: DateTime<Utc>, killed: bool) {
        let now = Utc::now();
        let any_running = self.ctrs.iter().any(|c| c.running());
        if any_running {
            if !killed && now >= kill_at {
                self.kill_running(9).await;
                self.transition(WorkerEvent::Killed);
            } else if killed {
                // A forced deletion: make sure SIGKILL went out (once per second at most).
                self.kill_running(9).await;
            }
            self.set_wake(if killed || now >= kill_at {
                now + chrono::Duration::seconds(1)
            } else {
                kill_at
            });
            return;
        }
        match self.cleanup().await {
            Ok(()) => self.transition(WorkerEvent::CleanedUp),
            Err(e) => {
                tracing::warn!("pod {}/{}: cleanup: {e}", self.ns, self.name);
                self.set_wake(now + chrono::Duration::from_std(RETRY).unwrap_or_default());
            }
        }
    }

    async fn remove_container(&self, id: &str) {
        let rt = self.deps.runtime.clone();
        let images = self.deps.images.clone();
        let rootfs = self.deps.layout.rootfs(id);
        let cdir = self.deps.layout.container_dir(&self.uid, id);
        let id = id.to_string();
        let _ = blocking(move || {
            if let Err(e) = rt.delete(&id) {
                tracing::warn!("deleting container {id}: {e}");
            }
            if let Err(e) = images.unmount_rootfs(&rootfs) {
                tracing::warn!("unmounting {}: {e}", rootfs.display());
            }
            let _ = std::fs::remove_dir_all(&cdir);
        })
        .await;
    }

    /// Removes everything of the pod on the host: containers, root filesystems, sandbox,
    /// cgroups, the pod and log dirs.
    async fn cleanup(&mut self) -> Result<(), String> {
        let ids: Vec<String> = self.ctrs.iter().filter_map(|c| c.id.clone()).collect();
        for id in &ids {
            self.remove_container(id).await;
        }
        let vm = self.deps.volumes.clone();
        let uid = self.uid.clone();
        blocking(move || vm.teardown(&uid).map_err(|e| e.to_string()))
            .await
            .unwrap_or_else(|| Err("volume teardown panicked".into()))?;
        self.volume_hosts = None;
        let rt = self.deps.runtime.clone();
        let layout = self.deps.layout.clone();
        let (uid, ns, name) = (self.uid.clone(), self.ns.clone(), self.name.clone());
        let cgroup = qos::pod_cgroup(&layout.cgroup_root(), qos::qos_class(&self.pod), &uid);
        blocking(move || cleanup_host(&*rt, &layout, &uid, &ns, &name, Some(&cgroup)))
            .await
            .unwrap_or_else(|| Err("cleanup task panicked".into()))?;
        self.deps.admitted.lock().await.remove(&self.uid);
        for c in &mut self.ctrs {
            c.id = None;
        }
        self.sandbox = None;
        Ok(())
    }

    async fn finalize(&mut self, object_gone: bool) {
        if object_gone {
            self.transition(WorkerEvent::Finalized);
            return;
        }
        match self
            .deps
            .api
            .finalize_delete(&self.ns, &self.name, &self.uid)
            .await
        {
            Ok(()) => self.transition(WorkerEvent::Finalized),
            Err(e) => {
                tracing::warn!("deleting pod {}/{}: {e}", self.ns, self.name);
                self.set_wake(Utc::now() + chrono::Duration::from_std(RETRY).unwrap_or_default());
            }
        }
    }

    // ---------------------------------------------------------------- status, index

    fn publish(&self) {
        if matches!(
            self.state,
            WorkerState::CleanedUp { .. } | WorkerState::Gone
        ) {
            return;
        }
        let now = Utc::now();
        let host_ip = self
            .deps
            .facts
            .host_ips
            .first()
            .cloned()
            .unwrap_or_default();
        if self.state == WorkerState::Finished && self.sandbox.is_none() {
            if let Some((reason, message)) = &self.failure {
                // Rejected at admission: nothing ever ran.
                let s = rejected_status(reason, message, &host_ip, self.start_time.unwrap_or(now));
                self.deps.status.set(&self.ns, &self.name, &self.uid, s);
                return;
            }
        }
        let phase = if self.failure.is_some() {
            crate::lifecycle::PodPhase::Failed
        } else {
            podstate::phase(self.policy(), &self.ctrs)
        };
        let pod_ips = self.facts().pod_ips;
        let qos_class = qos::qos_class(&self.pod);
        let view = PodView {
            ctrs: &self.ctrs,
            phase,
            reason: self.failure.as_ref().map(|(r, m)| (r.as_str(), m.as_str())),
            host_ip: &host_ip,
            pod_ips: &pod_ips,
            start_time: self.start_time,
            sandbox_ready: self.sandbox.is_some(),
            qos_class: qos_class.as_str(),
        };
        let status = pod_status(&view, now);
        self.deps
            .status
            .set(&self.ns, &self.name, &self.uid, status);
    }

    fn save_index(&self) {
        let mut idx = PodIndex {
            namespace: self.ns.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            cgroup: Some(qos::pod_cgroup(
                &self.deps.layout.cgroup_root(),
                qos::qos_class(&self.pod),
                &self.uid,
            )),
            sandbox: self.sandbox.clone(),
            start_time: self.start_time,
            containers: BTreeMap::new(),
        };
        for c in &self.ctrs {
            let final_t = match (&c.life.state, c.done) {
                (ContainerState::Terminated(t), true) => Some(TermRecord::from(t)),
                _ => None,
            };
            idx.containers.insert(
                c.name.clone(),
                ContainerEntry {
                    attempt: c.attempt,
                    id: c.id.clone(),
                    image_ref: c.image_ref.clone(),
                    exit_handled: !c.running(),
                    restart_count: c.life.restart_count,
                    backoff_secs: c.life.backoff.current.as_secs(),
                    last_termination: c.life.last_termination.as_ref().map(TermRecord::from),
                    final_termination: final_t,
                    restart_at: c.retry_at,
                },
            );
        }
        if let Err(e) = idx.save(&self.pod_dir()) {
            tracing::warn!("writing index of pod {}/{}: {e}", self.ns, self.name);
        }
    }

    /// Picks up where a previous agent left off: the sandbox, and each container running,
    /// exited (its exit is handled now) or waiting for a restart.
    async fn adopt(&mut self) {
        let Some(idx) = PodIndex::load(&self.pod_dir()) else {
            return;
        };
        if idx.uid != self.uid {
            return;
        }
        self.sandbox = idx.sandbox.clone();
        self.start_time = idx.start_time;
        for c in &mut self.ctrs {
            let Some(e) = idx.containers.get(&c.name) else {
                continue;
            };
            c.attempt = e.attempt;
            c.id = e.id.clone();
            c.image_ref = e.image_ref.clone();
            c.life.restart_count = e.restart_count;
            c.life.backoff = Backoff {
                current: Duration::from_secs(e.backoff_secs),
            };
            c.life.last_termination = e.last_termination.as_ref().map(TermRecord::to_termination);
            if let Some(t) = &e.final_termination {
                c.life.state = ContainerState::Terminated(t.to_termination());
                c.done = true;
            } else if let Some(at) = e.restart_at {
                c.retry_at = Some(at);
                if c.life.last_termination.is_some() {
                    c.life.state = ContainerState::Waiting {
                        reason: WaitingReason::CrashLoopBackOff { until: at },
                        message: None,
                    };
                }
            }
        }
        // Containers whose exit was not handled: ask the runtime.
        for i in 0..self.ctrs.len() {
            let (Some(id), false) = (self.ctrs[i].id.clone(), self.ctrs[i].done) else {
                continue;
            };
            let handled = idx
                .containers
                .get(&self.ctrs[i].name)
                .is_some_and(|e| e.exit_handled);
            if handled {
                continue;
            }
            let rt = self.deps.runtime.clone();
            let id2 = id.clone();
            let status = blocking(move || rt.status(&id2)).await;
            let started_at = match status {
                Some(Ok(podium_runtime::Status::Running { started_at, .. }))
                | Some(Ok(podium_runtime::Status::Exited { started_at, .. }))
                | Some(Ok(podium_runtime::Status::Lost { started_at })) => started_at,
                _ => Utc::now(),
            };
            let c = &mut self.ctrs[i];
            c.life = c.life.started(started_at);
            let name = c.name.clone();
            // A finished container's wait answers at once; a lost one's with an error.
            self.spawn_waiter(&name, &id);
        }
        if let Ok(mut ledger) = self.deps.admitted.try_lock() {
            ledger.insert(self.uid.clone(), self.pod.clone());
        }
        self.state = WorkerState::Active;
        tracing::info!("pod {}/{}: adopted", self.ns, self.name);
    }
}

/// Removes a pod's host resources that outlive its containers: the sandbox, the pod
/// cgroup, the pod dir and its log dir. Idempotent; used by workers and by the startup
/// sweep of pods deleted while the agent was down.
pub fn cleanup_host(
    rt: &dyn ContainerRuntime,
    layout: &Layout,
    uid: &str,
    ns: &str,
    name: &str,
    cgroup: Option<&str>,
) -> Result<(), String> {
    // Any rootfs of this pod still mounted (a container the index lost track of).
    let mounts = crate::images::mounts_under(&layout.run_root.join("rootfs"));
    for m in mounts {
        if m.file_name()
            .and_then(|f| f.to_str())
            .is_some_and(|f| f.contains(uid))
        {
            let _ = podium_image::snapshot::unmount(&m);
            let _ = std::fs::remove_dir(&m);
        }
    }
    rt.remove_sandbox(uid).map_err(|e| e.to_string())?;
    if let Some(cg) = cgroup {
        if let Ok(layout) = podium_runtime::cgroup::CgroupLayout::host() {
            if let Err(e) = layout.remove(cg) {
                tracing::debug!("removing cgroup {cg}: {e}");
            }
        }
    }
    for dir in [layout.pod_dir(uid), layout.pod_log_dir(ns, name, uid)] {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", dir.display())),
        }
    }
    Ok(())
}

/// Milliseconds spent in each phase of a pod's first start, from admission until every
/// container (init containers aside) runs. Logged once per pod as `pod started pod=ns/name
/// sandbox_ms=… volumes_ms=… image_ms=… rootfs_ms=… config_ms=… create_start_ms=…
/// events_ms=… total_ms=…`, which `podium-bench pods` parses (`events_ms`: the Created and
/// Started events and the index write after the runtime start). Pods adopted after an
/// agent restart were not started here and log nothing.
#[derive(Debug, Default)]
struct StartTimes {
    /// The previous mark; `None` until admission.
    at: Option<std::time::Instant>,
    began: Option<std::time::Instant>,
    sandbox: f64,
    volumes: f64,
    image: f64,
    rootfs: f64,
    config: f64,
    create_start: f64,
    logged: bool,
}

impl StartTimes {
    /// Admission: the first mark.
    fn start(&mut self) {
        let now = std::time::Instant::now();
        self.began = Some(now);
        self.at = Some(now);
    }

    /// Milliseconds since the previous mark (0 for the first).
    fn mark(&mut self) -> f64 {
        let now = std::time::Instant::now();
        let since = self.at.map_or(0.0, |t| (now - t).as_secs_f64() * 1000.0);
        self.at = Some(now);
        since
    }

    fn log_started(&mut self, ns: &str, name: &str, ctrs: &[Ctr]) {
        let apps = || ctrs.iter().filter(|c| c.kind != Kind::Init);
        if self.logged || self.began.is_none() || !apps().all(Ctr::running) {
            return;
        }
        self.logged = true;
        let events = self.mark();
        let total = self
            .began
            .map_or(0.0, |b| b.elapsed().as_secs_f64() * 1000.0);
        tracing::info!(
            "pod started pod={ns}/{name} sandbox_ms={:.2} volumes_ms={:.2} image_ms={:.2} rootfs_ms={:.2} config_ms={:.2} create_start_ms={:.2} events_ms={:.2} total_ms={:.2}",
            self.sandbox, self.volumes, self.image, self.rootfs, self.config, self.create_start, events, total
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ApiCall, FakeApi};
    use crate::facts::ImageFacts;
    use crate::images::FakeImages;
    use podium_runtime::fake::{Call, RecordingRuntime};
    use serde_json::json;

    struct Rig {
        api: Arc<FakeApi>,
        rt: Arc<RecordingRuntime>,
        images: Arc<FakeImages>,
        deps: Arc<Deps>,
        _dir: tempfile::TempDir,
        _stop: watch::Sender<bool>,
    }

    fn rig() -> Rig {
        rig_syncing_every(Duration::from_secs(60))
    }

    fn rig_syncing_every(sync_frequency: Duration) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let api = Arc::new(FakeApi::new());
        let rt = Arc::new(RecordingRuntime::new());
        let images = Arc::new(FakeImages::new());
        images.add(
            "busybox:1.36",
            ImageFacts {
                cmd: vec!["sh".into()],
                stop_signal: Some("SIGQUIT".into()),
                ..Default::default()
            },
        );
        let layout = Layout::new("podium-test0000", dir.path(), &dir.path().join("run"));
        let facts = NodeFacts {
            node_name: "n1".into(),
            hostname: "n1".into(),
            host_ips: vec!["192.0.2.1".into()],
            cluster_dns: vec!["10.43.0.10".into()],
            cluster_domain: "cluster.local".into(),
            allocatable: crate::facts::NodeAllocatable {
                cpu: podium_api::quantity::Quantity::parse("2").unwrap(),
                memory: podium_api::quantity::Quantity::parse("4Gi").unwrap(),
                ephemeral_storage: podium_api::quantity::Quantity::parse("10Gi").unwrap(),
                pods: 110,
            },
            resolv_conf: Some("nameserver 1.1.1.1\n".into()),
            cgroup_root: layout.cgroup_root(),
            ..Default::default()
        };
        let deps = Arc::new(Deps {
            api: api.clone(),
            runtime: rt.clone(),
            images: images.clone(),
            status: StatusWriter::new(),
            volumes: VolumeManager::new(layout.pods_root.clone(), &layout.instance),
            layout,
            facts,
            admitted: Default::default(),
            sync_frequency,
            pod_pids_limit: Some(4096),
        });
        let (stop, rx) = watch::channel(false);
        tokio::spawn(deps.status.clone().run(api.clone(), rx));
        Rig {
            api,
            rt,
            images,
            deps,
            _dir: dir,
            _stop: stop,
        }
    }

    fn pod(name: &str, spec: Value) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": spec});
        let s = &mut p["spec"];
        for (k, v) in [
            ("nodeName", json!("n1")),
            ("restartPolicy", json!("Always")),
            ("dnsPolicy", json!("ClusterFirst")),
            ("terminationGracePeriodSeconds", json!(30)),
        ] {
            if s.get(k).is_none() {
                s[k] = v;
            }
        }
        p
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn started_ids(rt: &RecordingRuntime) -> Vec<String> {
        rt.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Start(r) => Some(r.id),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_restarts_and_terminates_a_pod() {
        let r = rig();
        let p = pod(
            "web",
            json!({"containers": [{"name": "main", "image": "busybox:1.36",
                                   "imagePullPolicy": "IfNotPresent"}]}),
        );
        let (tx, rx) = watch::channel(Some(p.clone()));
        let task = tokio::spawn(PodWorker::new(r.deps.clone(), p.clone(), rx).run());

        let api = r.api.clone();
        until("Running", || {
            api.last_status("web")
                .is_some_and(|s| s["phase"] == "Running")
        })
        .await;
        let s = r.api.last_status("web").unwrap();
        let cs = &s["containerStatuses"][0];
        let id = "podium-test0000-uid-web-main-1";
        assert_eq!(cs["containerID"], format!("podium://{id}"));
        assert_eq!(cs["ready"], true);
        assert_eq!(s["hostIP"], "192.0.2.1");
        assert_eq!(s["qosClass"], "BestEffort");
        assert!(r.rt.calls().iter().any(|c| matches!(c,
            Call::CreateSandbox(cfg) if cfg.pod_uid == "uid-web" && !cfg.host_network)));
        // The BestEffort pod's own cgroup gets the minimum cpu shares, as kubelet's.
        assert!(r.rt.calls().iter().any(|c| matches!(c,
            Call::ConfigurePodCgroup(path, res)
                if path.ends_with("/kubepods/besteffort/poduid-web")
                    && res.cpu_shares == Some(2) && res.memory_limit.is_none()
                    && res.pids_limit == Some(4096))));
        let start =
            r.rt.calls()
                .into_iter()
                .find_map(|c| match c {
                    Call::Start(req) => Some(req),
                    _ => None,
                })
                .unwrap();
        assert_eq!(start.config.args, vec!["sh".to_string()]);
        assert!(start.log_path.ends_with("default_web_uid-web/main/0.log"));
        assert_eq!(
            start.config.cgroup_path.as_deref(),
            Some(format!("/podium-test0000/kubepods/besteffort/poduid-web/{id}").as_str())
        );
        assert_eq!(r.images.pulls()[0].1, PullPolicy::IfNotPresent);
        let reasons = r.api.event_reasons();
        assert_eq!(reasons, vec!["Pulling", "Pulled", "Created", "Started"]);
        assert!(r.api.calls().iter().any(|c| matches!(c,
            ApiCall::Event { reason, message, .. } if reason == "Pulled"
                && message.starts_with("Successfully pulled image \"busybox:1.36\" in "))));

        // A crash: restarted at once (first restart), restartCount 1, lastState kept.
        r.rt.exit(id, 2);
        let rt = r.rt.clone();
        until("restart", || started_ids(&rt).len() == 2).await;
        assert_eq!(started_ids(&r.rt)[1], "podium-test0000-uid-web-main-2");
        let api = r.api.clone();
        until("restartCount 1", || {
            api.last_status("web").is_some_and(|s| {
                s["containerStatuses"][0]["restartCount"] == 1
                    && s["containerStatuses"][0]["state"]["running"].is_object()
            })
        })
        .await;
        let s = r.api.last_status("web").unwrap();
        assert_eq!(
            s["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
            2
        );
        assert!(r.rt.calls().contains(&Call::Delete(id.into())));
        // The log of the second run is 1.log.
        let second =
            r.rt.calls()
                .into_iter()
                .filter_map(|c| match c {
                    Call::Start(req) => Some(req),
                    _ => None,
                })
                .nth(1)
                .unwrap();
        assert!(second.log_path.ends_with("main/1.log"));

        // Deletion: the image's STOPSIGNAL (SIGQUIT), cleanup, then the final delete.
        let mut deleting = p.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        deleting["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        tx.send(Some(deleting)).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        let calls = r.rt.calls();
        assert!(calls.contains(&Call::Kill("podium-test0000-uid-web-main-2".into(), 3)));
        assert!(calls.contains(&Call::Delete("podium-test0000-uid-web-main-2".into())));
        assert!(calls.contains(&Call::RemoveSandbox("uid-web".into())));
        assert!(r.api.calls().contains(&ApiCall::Finalize {
            name: "web".into(),
            uid: "uid-web".into()
        }));
        assert!(r.api.event_reasons().contains(&"Killing".to_string()));
        assert!(!r.deps.layout.pod_dir("uid-web").exists());
        assert!(!r
            .deps
            .layout
            .pod_log_dir("default", "web", "uid-web")
            .exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn image_pull_failure_backs_off_and_never_policy_completes() {
        let r = rig();
        let p = pod(
            "bad",
            json!({"containers": [{"name": "main", "image": "nope:1", "imagePullPolicy": "IfNotPresent"}]}),
        );
        let (_tx, rx) = watch::channel(Some(p.clone()));
        tokio::spawn(PodWorker::new(r.deps.clone(), p, rx).run());
        let api = r.api.clone();
        until("ErrImagePull", || {
            api.last_status("bad").is_some_and(|s| {
                s["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"
            })
        })
        .await;
        assert_eq!(r.api.last_status("bad").unwrap()["phase"], "Pending");
        assert!(r.api.calls().iter().any(|c| matches!(c,
            ApiCall::Event { reason, message, .. } if reason == "Failed" && message.starts_with("Failed to pull image \"nope:1\""))));
        assert!(started_ids(&r.rt).is_empty());

        // restartPolicy Never, exit 0: Succeeded, no restart.
        let p = pod(
            "job",
            json!({"restartPolicy": "Never",
                   "containers": [{"name": "main", "image": "busybox:1.36"}]}),
        );
        let (_tx2, rx) = watch::channel(Some(p.clone()));
        tokio::spawn(PodWorker::new(r.deps.clone(), p, rx).run());
        let rt = r.rt.clone();
        until("started", || !started_ids(&rt).is_empty()).await;
        r.rt.exit("podium-test0000-uid-job-main-1", 0);
        let api = r.api.clone();
        until("Succeeded", || {
            api.last_status("job")
                .is_some_and(|s| s["phase"] == "Succeeded")
        })
        .await;
        let s = r.api.last_status("job").unwrap();
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
        assert_eq!(s["conditions"][2]["reason"], "PodCompleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(started_ids(&r.rt).len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn adopts_running_containers_after_an_agent_restart() {
        let r = rig();
        let p = pod(
            "keep",
            json!({"containers": [{"name": "main", "image": "busybox:1.36"}]}),
        );
        let (tx, rx) = watch::channel(Some(p.clone()));
        let task = tokio::spawn(PodWorker::new(r.deps.clone(), p.clone(), rx).run());
        let rt = r.rt.clone();
        until("started", || !started_ids(&rt).is_empty()).await;
        let api = r.api.clone();
        until("Running", || {
            api.last_status("keep")
                .is_some_and(|s| s["phase"] == "Running")
        })
        .await;
        // Agent shutdown: the worker ends, the container keeps running.
        drop(tx);
        task.await.unwrap();
        assert!(!r
            .rt
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Kill(..) | Call::Delete(_))));

        // A new worker adopts it: no new start, same id; its exit is then handled.
        let (_tx, rx) = watch::channel(Some(p.clone()));
        tokio::spawn(PodWorker::new(r.deps.clone(), p, rx).run());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(started_ids(&r.rt).len(), 1);
        r.rt.exit("podium-test0000-uid-keep-main-1", 1);
        let rt = r.rt.clone();
        until("restart after adoption", || started_ids(&rt).len() == 2).await;
        assert_eq!(started_ids(&r.rt)[1], "podium-test0000-uid-keep-main-2");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn configmap_and_downward_api_volumes_follow_their_sources() {
        let r = rig_syncing_every(Duration::from_millis(100));
        let cm =
            |v: &str| json!({"metadata": {"name": "cm", "namespace": "default"}, "data": {"k": v}});
        r.api.put(ObjectKind::ConfigMap, "default", "cm", cm("one"));
        let mut p = pod(
            "vols",
            json!({"containers": [{"name": "main", "image": "busybox:1.36"}],
                   "volumes": [{"name": "conf", "configMap": {"name": "cm"}},
                               {"name": "info", "downwardAPI": {"items": [
                                   {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]}),
        );
        p["metadata"]["labels"] = json!({"tier": "a"});
        let (tx, rx) = watch::channel(Some(p.clone()));
        tokio::spawn(PodWorker::new(r.deps.clone(), p.clone(), rx).run());
        let vols = r.deps.layout.pods_root.join("uid-vols/volumes");
        let conf = vols.join("kubernetes.io~configmap/conf/k");
        let labels = vols.join("kubernetes.io~downward-api/info/labels");
        let read = |f: &std::path::Path| std::fs::read_to_string(f).unwrap_or_default();
        // Volumes are written one after the other: wait for both.
        until("volumes written", || {
            read(&conf) == "one" && !read(&labels).is_empty()
        })
        .await;
        assert_eq!(read(&labels), "tier=\"a\"");
        // A changed ConfigMap reaches the file within a sync period.
        r.api.put(ObjectKind::ConfigMap, "default", "cm", cm("two"));
        until("configmap refreshed", || read(&conf) == "two").await;
        // New labels reach the downwardAPI file when the pod changes.
        p["metadata"]["labels"] = json!({"tier": "b"});
        tx.send(Some(p)).unwrap();
        until("labels refreshed", || read(&labels) == "tier=\"b\"").await;
        // A deleted source keeps the last content.
        r.api.remove(ObjectKind::ConfigMap, "default", "cm");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(read(&conf), "two");
    }

    #[test]
    fn references_and_grace() {
        let p = json!({"metadata": {"deletionTimestamp": "x", "deletionGracePeriodSeconds": 7},
            "spec": {"containers": [{"env": [{"valueFrom": {"configMapKeyRef": {"name": "cm"}}},
                                              {"valueFrom": {"secretKeyRef": {"name": "s1"}}}],
                                     "envFrom": [{"secretRef": {"name": "s2"}}]}],
                     "volumes": [{"configMap": {"name": "cm2"}},
                                 {"projected": {"sources": [{"secret": {"name": "s3"}}]}}]}});
        let (cms, secrets) = referenced_objects(&p);
        assert_eq!(cms.into_iter().collect::<Vec<_>>(), vec!["cm", "cm2"]);
        assert_eq!(
            secrets.into_iter().collect::<Vec<_>>(),
            vec!["s1", "s2", "s3"]
        );
        assert_eq!(deletion_grace(&p), Some(7));
        assert_eq!(deletion_grace(&json!({"metadata": {}})), None);
    }
}
