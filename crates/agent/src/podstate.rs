//! The pod worker's state as data, with pure transitions: the worker's own lifecycle
//! ([`WorkerState`]: Admitting → Active → Finished → Terminating → CleanedUp → Gone), the
//! per-container bookkeeping ([`Ctr`]) around [`crate::lifecycle::ContainerLifecycle`],
//! which containers to start next ([`plan`]: init containers in order, each to
//! completion; sidecars started in order and kept running; then the app containers), and
//! the pod phase and initialisation derived from them. No I/O: the worker carries out
//! what these functions decide.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::facts::{arr_at, str_at};
use crate::lifecycle::{
    pod_phase, ContainerLifecycle, ContainerState, PodPhase, RestartPolicy, WaitingReason,
};

/// The pod worker's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerState {
    /// Not yet admitted to the node.
    Admitting,
    /// Admitted: the sandbox and containers are being run.
    Active,
    /// The pod reached a terminal phase (or was rejected): nothing is started any more;
    /// exited containers are kept for their logs until the pod is deleted.
    Finished,
    /// Deletion asked for: containers were sent their stop signal and get SIGKILL at
    /// `kill_at`.
    Terminating {
        kill_at: DateTime<Utc>,
        killed: bool,
    },
    /// Containers, mounts, volumes, sandbox and cgroups are gone; the API object still
    /// needs its final delete (unless it is gone already).
    CleanedUp { object_gone: bool },
    /// Done; the worker exits.
    Gone,
}

/// What happened, as far as the worker's lifecycle cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEvent {
    Admitted,
    Rejected,
    /// The pod phase became Succeeded or Failed (incl. activeDeadlineSeconds).
    Terminal,
    /// deletionTimestamp set, with this grace period.
    DeletionRequested {
        grace_secs: i64,
    },
    /// The API object vanished (forced deletion).
    ObjectGone,
    /// The grace period ran out and SIGKILL was sent.
    Killed,
    /// Host resources were removed.
    CleanedUp,
    /// The API object was deleted (or found gone).
    Finalized,
}

impl WorkerState {
    /// The pure transition function.
    pub fn next(&self, ev: &WorkerEvent, now: DateTime<Utc>) -> WorkerState {
        use WorkerEvent as E;
        use WorkerState as S;
        let kill_at = |g: i64| now + chrono::Duration::seconds(g.max(0));
        match (self, ev) {
            (S::Admitting, E::Admitted) => S::Active,
            (S::Admitting, E::Rejected) => S::Finished,
            (S::Active, E::Terminal) => S::Finished,
            (S::Admitting | S::Active | S::Finished, E::DeletionRequested { grace_secs }) => {
                S::Terminating {
                    kill_at: kill_at(*grace_secs),
                    killed: *grace_secs <= 0,
                }
            }
            // A forced deletion: kill at once; nothing to finalize afterwards.
            (S::Admitting | S::Active | S::Finished, E::ObjectGone) => S::Terminating {
                kill_at: now,
                killed: true,
            },
            // A shorter grace period may bring the deadline forward, never back.
            (
                S::Terminating {
                    kill_at: at,
                    killed,
                },
                E::DeletionRequested { grace_secs },
            ) => S::Terminating {
                kill_at: (*at).min(kill_at(*grace_secs)),
                killed: *killed,
            },
            (S::Terminating { .. }, E::ObjectGone) => S::Terminating {
                kill_at: now,
                killed: true,
            },
            (S::Terminating { kill_at, .. }, E::Killed) => S::Terminating {
                kill_at: *kill_at,
                killed: true,
            },
            (S::Terminating { .. }, E::CleanedUp) => S::CleanedUp { object_gone: false },
            (S::CleanedUp { .. }, E::ObjectGone) => S::CleanedUp { object_gone: true },
            (S::CleanedUp { .. }, E::Finalized) => S::Gone,
            (s, _) => s.clone(),
        }
    }

    /// Containers may be started.
    pub fn starts_containers(&self) -> bool {
        matches!(self, WorkerState::Active)
    }
}

/// The role of a container in its pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Init,
    /// An init container with restartPolicy Always.
    Sidecar,
    App,
}

impl Kind {
    /// The restart policy that applies to a container of this kind under the pod's.
    pub fn policy(self, pod: RestartPolicy) -> RestartPolicy {
        match (self, pod) {
            (Kind::Sidecar, _) => RestartPolicy::Always,
            (Kind::Init, RestartPolicy::Never) => RestartPolicy::Never,
            (Kind::Init, _) => RestartPolicy::OnFailure,
            (Kind::App, p) => p,
        }
    }
}

/// One container as the worker tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctr {
    pub name: String,
    pub kind: Kind,
    /// `spec.containers[].image`.
    pub image: String,
    pub life: ContainerLifecycle,
    /// The runtime container of the current attempt.
    pub id: Option<String>,
    pub attempt: u32,
    /// Status `imageID`, once pulled.
    pub image_ref: String,
    /// Finished for good (no restart).
    pub done: bool,
    /// Not to be (re)started before this.
    pub retry_at: Option<DateTime<Utc>>,
    /// Image pull back-off.
    pub pull_backoff: crate::lifecycle::Backoff,
}

impl Ctr {
    pub fn new(name: &str, kind: Kind, image: &str) -> Ctr {
        Ctr {
            name: name.to_string(),
            kind,
            image: image.to_string(),
            life: ContainerLifecycle::default(),
            id: None,
            attempt: 0,
            image_ref: String::new(),
            done: false,
            retry_at: None,
            pull_backoff: Default::default(),
        }
    }

    pub fn running(&self) -> bool {
        self.life.is_running()
    }

    /// Completed successfully (an init container's goal).
    pub fn succeeded(&self) -> bool {
        matches!(&self.life.state, ContainerState::Terminated(t) if t.exit_code == 0)
    }

    /// Waiting for a (re)start that is allowed at `now`.
    fn due(&self, now: DateTime<Utc>) -> bool {
        matches!(self.life.state, ContainerState::Waiting { .. })
            && !self.done
            && self.retry_at.is_none_or(|t| t <= now)
    }

    fn waiting_until(&self) -> Option<DateTime<Utc>> {
        match self.life.state {
            ContainerState::Waiting { .. } if !self.done => self.retry_at,
            _ => None,
        }
    }

    /// Has started at least once (a sidecar counts as started from then on).
    pub fn ever_started(&self) -> bool {
        self.running() || self.life.restart_count > 0 || self.life.last_termination.is_some()
    }
}

/// The containers of a pod spec, init containers (and sidecars) first, in order.
pub fn containers_of(pod: &Value) -> Vec<Ctr> {
    let mut out = Vec::new();
    for c in arr_at(pod, &["spec", "initContainers"]) {
        let kind = if str_at(c, &["restartPolicy"]) == "Always" {
            Kind::Sidecar
        } else {
            Kind::Init
        };
        out.push(Ctr::new(str_at(c, &["name"]), kind, str_at(c, &["image"])));
    }
    for c in arr_at(pod, &["spec", "containers"]) {
        out.push(Ctr::new(
            str_at(c, &["name"]),
            Kind::App,
            str_at(c, &["image"]),
        ));
    }
    out
}

/// What to start now, and when to look again.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Indexes into the container list, in start order.
    pub start: Vec<usize>,
    /// The earliest back-off expiry among waiting containers.
    pub wake_at: Option<DateTime<Utc>>,
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Which containers to start: init containers one at a time in order, each to
/// completion; sidecars in order, each once started; then every app container (and any
/// sidecar that needs a restart) whose back-off has passed.
pub fn plan(ctrs: &[Ctr], now: DateTime<Utc>) -> Plan {
    let mut p = Plan::default();
    for (i, c) in ctrs.iter().enumerate() {
        match c.kind {
            Kind::App => continue,
            Kind::Init if c.succeeded() => continue,
            Kind::Sidecar if c.ever_started() => continue,
            Kind::Init | Kind::Sidecar => {
                if c.due(now) {
                    p.start.push(i);
                } else {
                    p.wake_at = earliest(p.wake_at, c.waiting_until());
                }
                return p;
            }
        }
    }
    for (i, c) in ctrs.iter().enumerate() {
        if matches!(c.kind, Kind::App | Kind::Sidecar) {
            if c.due(now) {
                p.start.push(i);
            } else {
                p.wake_at = earliest(p.wake_at, c.waiting_until());
            }
        }
    }
    p
}

/// Every init container completed and every sidecar started.
pub fn initialized(ctrs: &[Ctr]) -> bool {
    ctrs.iter().all(|c| match c.kind {
        Kind::Init => c.succeeded(),
        Kind::Sidecar => c.ever_started(),
        Kind::App => true,
    })
}

/// An init container failed and will not be retried.
pub fn init_failed_for_good(ctrs: &[Ctr]) -> bool {
    ctrs.iter()
        .any(|c| c.kind == Kind::Init && c.done && !c.succeeded())
}

/// The pod phase from its containers.
pub fn phase(policy: RestartPolicy, ctrs: &[Ctr]) -> PodPhase {
    let app: Vec<&ContainerLifecycle> = ctrs
        .iter()
        .filter(|c| c.kind == Kind::App)
        .map(|c| &c.life)
        .collect();
    pod_phase(policy, initialized(ctrs), init_failed_for_good(ctrs), &app)
}

/// Names of the init containers not yet complete (the Initialized condition's message).
pub fn incomplete_init(ctrs: &[Ctr]) -> Vec<&str> {
    ctrs.iter()
        .filter(|c| match c.kind {
            Kind::Init => !c.succeeded(),
            Kind::Sidecar => !c.running(),
            Kind::App => false,
        })
        .map(|c| c.name.as_str())
        .collect()
}

/// The waiting reason of an app container before its turn: PodInitializing while init
/// containers run.
pub fn waiting_before_init(c: &Ctr, init_done: bool) -> Option<WaitingReason> {
    match (&c.life.state, c.kind, init_done) {
        (ContainerState::Waiting { reason, .. }, Kind::App, false)
            if *reason == WaitingReason::ContainerCreating =>
        {
            Some(WaitingReason::PodInitializing)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Termination, TerminationReason};
    use serde_json::json;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::seconds(s)
    }

    fn exited(c: &mut Ctr, code: i32, policy: RestartPolicy, now: DateTime<Utc>) {
        let term = Termination {
            exit_code: code,
            signal: None,
            reason: TerminationReason::for_exit(code, false),
            message: None,
            started_at: now,
            finished_at: now,
        };
        let (life, d) = c.life.exited(term, c.kind.policy(policy), now);
        c.life = life;
        match d {
            crate::lifecycle::Decision::RestartAt { at } => c.retry_at = Some(at),
            crate::lifecycle::Decision::Done => c.done = true,
            crate::lifecycle::Decision::Keep => {}
        }
    }

    fn pod() -> Value {
        json!({"spec": {
            "initContainers": [
                {"name": "init-a", "image": "busybox"},
                {"name": "side", "image": "busybox", "restartPolicy": "Always"},
                {"name": "init-b", "image": "busybox"}],
            "containers": [{"name": "app", "image": "nginx"}, {"name": "app2", "image": "nginx"}]}})
    }

    #[test]
    fn worker_lifecycle_transitions() {
        use WorkerEvent as E;
        use WorkerState as S;
        let now = t(0);
        assert_eq!(S::Admitting.next(&E::Admitted, now), S::Active);
        assert_eq!(S::Admitting.next(&E::Rejected, now), S::Finished);
        assert_eq!(S::Active.next(&E::Terminal, now), S::Finished);
        let term = S::Active.next(&E::DeletionRequested { grace_secs: 30 }, now);
        assert_eq!(
            term,
            S::Terminating {
                kill_at: t(30),
                killed: false
            }
        );
        // A shorter grace period brings the deadline forward; a longer one does not.
        let shorter = term.next(&E::DeletionRequested { grace_secs: 5 }, now);
        assert_eq!(
            shorter,
            S::Terminating {
                kill_at: t(5),
                killed: false
            }
        );
        assert_eq!(
            shorter.next(&E::DeletionRequested { grace_secs: 60 }, now),
            shorter
        );
        assert_eq!(
            shorter.next(&E::Killed, t(5)),
            S::Terminating {
                kill_at: t(5),
                killed: true
            }
        );
        assert_eq!(
            S::Finished.next(&E::ObjectGone, now),
            S::Terminating {
                kill_at: now,
                killed: true
            }
        );
        assert_eq!(
            shorter.next(&E::CleanedUp, now),
            S::CleanedUp { object_gone: false }
        );
        assert_eq!(
            S::CleanedUp { object_gone: false }.next(&E::ObjectGone, now),
            S::CleanedUp { object_gone: true }
        );
        assert_eq!(
            S::CleanedUp { object_gone: false }.next(&E::Finalized, now),
            S::Gone
        );
        // Events that do not apply leave the state alone.
        assert_eq!(S::Gone.next(&E::Admitted, now), S::Gone);
        assert_eq!(S::Finished.next(&E::Terminal, now), S::Finished);
        assert!(S::Active.starts_containers() && !S::Finished.starts_containers());
    }

    #[test]
    fn kinds_and_policies() {
        let cs = containers_of(&pod());
        let kinds: Vec<Kind> = cs.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            vec![Kind::Init, Kind::Sidecar, Kind::Init, Kind::App, Kind::App]
        );
        assert_eq!(
            Kind::Init.policy(RestartPolicy::Always),
            RestartPolicy::OnFailure
        );
        assert_eq!(
            Kind::Init.policy(RestartPolicy::Never),
            RestartPolicy::Never
        );
        assert_eq!(
            Kind::Sidecar.policy(RestartPolicy::Never),
            RestartPolicy::Always
        );
    }

    #[test]
    fn init_containers_run_in_order_then_apps_together() {
        let mut cs = containers_of(&pod());
        let now = t(0);
        assert_eq!(plan(&cs, now).start, vec![0]);
        cs[0].life = cs[0].life.started(now);
        assert_eq!(plan(&cs, now).start, Vec::<usize>::new());
        assert!(!initialized(&cs));
        assert_eq!(incomplete_init(&cs), vec!["init-a", "side", "init-b"]);
        exited(&mut cs[0], 0, RestartPolicy::Always, now);
        assert!(cs[0].done && cs[0].succeeded());
        // The sidecar starts next and keeps running while init-b runs.
        assert_eq!(plan(&cs, now).start, vec![1]);
        cs[1].life = cs[1].life.started(now);
        assert_eq!(plan(&cs, now).start, vec![2]);
        cs[2].life = cs[2].life.started(now);
        assert_eq!(plan(&cs, now).start, Vec::<usize>::new());
        assert_eq!(
            waiting_before_init(&cs[3], initialized(&cs)),
            Some(WaitingReason::PodInitializing)
        );
        exited(&mut cs[2], 0, RestartPolicy::Always, now);
        assert!(initialized(&cs));
        assert_eq!(plan(&cs, now).start, vec![3, 4]);
        assert_eq!(phase(RestartPolicy::Always, &cs), PodPhase::Pending);
        cs[3].life = cs[3].life.started(now);
        cs[4].life = cs[4].life.started(now);
        assert_eq!(phase(RestartPolicy::Always, &cs), PodPhase::Running);
    }

    #[test]
    fn failing_init_container_retries_with_backoff_or_fails_the_pod() {
        // OnFailure semantics under Always: retried after the back-off.
        let mut cs = containers_of(&pod());
        cs[0].life = cs[0].life.started(t(0));
        exited(&mut cs[0], 1, RestartPolicy::Always, t(1));
        assert_eq!(plan(&cs, t(1)).start, vec![0]); // first restart is immediate
        cs[0].life = cs[0].life.started(t(1));
        exited(&mut cs[0], 1, RestartPolicy::Always, t(2));
        let p = plan(&cs, t(2));
        assert!(p.start.is_empty());
        assert_eq!(p.wake_at, Some(t(12)));
        assert_eq!(plan(&cs, t(12)).start, vec![0]);
        assert_eq!(phase(RestartPolicy::Always, &cs), PodPhase::Pending);

        // Under Never the pod fails.
        let mut cs = containers_of(&pod());
        cs[0].life = cs[0].life.started(t(0));
        exited(&mut cs[0], 1, RestartPolicy::Never, t(1));
        assert!(init_failed_for_good(&cs));
        assert!(plan(&cs, t(100)).start.is_empty());
        assert_eq!(phase(RestartPolicy::Never, &cs), PodPhase::Failed);
    }

    #[test]
    fn crashed_app_container_waits_out_its_backoff() {
        let p = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}});
        let mut cs = containers_of(&p);
        assert_eq!(plan(&cs, t(0)).start, vec![0]);
        cs[0].life = cs[0].life.started(t(0));
        exited(&mut cs[0], 1, RestartPolicy::Always, t(1));
        cs[0].life = cs[0].life.started(t(1));
        exited(&mut cs[0], 1, RestartPolicy::Always, t(2));
        assert_eq!(plan(&cs, t(5)).start, Vec::<usize>::new());
        assert_eq!(plan(&cs, t(5)).wake_at, Some(t(12)));
        assert_eq!(plan(&cs, t(12)).start, vec![0]);
        assert_eq!(phase(RestartPolicy::Always, &cs), PodPhase::Running);
        // Never + exit 0: done, Succeeded, nothing to start.
        let mut cs = containers_of(&p);
        cs[0].life = cs[0].life.started(t(0));
        exited(&mut cs[0], 0, RestartPolicy::Never, t(1));
        assert!(plan(&cs, t(100)).start.is_empty());
        assert_eq!(phase(RestartPolicy::Never, &cs), PodPhase::Succeeded);
    }
}
