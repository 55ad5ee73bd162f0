//! Container and pod lifecycles as data: a container is Waiting, Running or Terminated;
//! what happens after it exits depends only on the pod's restartPolicy, its exit code and
//! its history (kubelet's back-off: 10 s doubling to 300 s, reset after 10 minutes of
//! running). The pod phase is a pure function of its containers' states. The pod worker
//! feeds observations in and carries out the decisions that come out.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// `spec.restartPolicy` (and a sidecar's container-level `Always`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// Parses the API value; the API server has validated it already.
    pub fn from_api(s: &str) -> RestartPolicy {
        match s {
            "OnFailure" => RestartPolicy::OnFailure,
            "Never" => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }

    /// Whether a container that exited with `exit_code` is started again.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// Why a container ended, as the API reports it in `terminated.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminationReason {
    Completed,
    Error,
    OomKilled,
    /// The container could not be started at all.
    ContainerCannotRun,
}

impl TerminationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            TerminationReason::Completed => "Completed",
            TerminationReason::Error => "Error",
            TerminationReason::OomKilled => "OOMKilled",
            TerminationReason::ContainerCannotRun => "ContainerCannotRun",
        }
    }

    /// The reason for an exit: OOM wins, then 0 is Completed, anything else Error.
    pub fn for_exit(exit_code: i32, oom_killed: bool) -> TerminationReason {
        if oom_killed {
            TerminationReason::OomKilled
        } else if exit_code == 0 {
            TerminationReason::Completed
        } else {
            TerminationReason::Error
        }
    }
}

/// A finished run of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: TerminationReason,
    pub message: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// Why a container is waiting, as the API reports it in `waiting.reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitingReason {
    ContainerCreating,
    PodInitializing,
    /// Restarting after a crash, not before `until`.
    CrashLoopBackOff {
        until: DateTime<Utc>,
    },
    ErrImagePull,
    ImagePullBackOff {
        until: DateTime<Utc>,
    },
    ErrImageNeverPull,
    InvalidImageName,
    CreateContainerConfigError,
    CreateContainerError,
}

impl WaitingReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            WaitingReason::ContainerCreating => "ContainerCreating",
            WaitingReason::PodInitializing => "PodInitializing",
            WaitingReason::CrashLoopBackOff { .. } => "CrashLoopBackOff",
            WaitingReason::ErrImagePull => "ErrImagePull",
            WaitingReason::ImagePullBackOff { .. } => "ImagePullBackOff",
            WaitingReason::ErrImageNeverPull => "ErrImageNeverPull",
            WaitingReason::InvalidImageName => "InvalidImageName",
            WaitingReason::CreateContainerConfigError => "CreateContainerConfigError",
            WaitingReason::CreateContainerError => "CreateContainerError",
        }
    }
}

/// A container's current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Waiting {
        reason: WaitingReason,
        message: Option<String>,
    },
    Running {
        started_at: DateTime<Utc>,
    },
    Terminated(Termination),
}

/// kubelet's crash back-off.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting starts again with the initial back-off.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// The back-off state of one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backoff {
    /// The delay before the next restart; zero before the first crash.
    pub current: Duration,
}

impl Backoff {
    /// The delay to wait after a run of `ran_for` ended, and the new state. As kubelet:
    /// the first restart is immediate, then 10 s doubling to 300 s; a run of ten minutes
    /// or more starts the sequence over.
    pub fn after_exit(self, ran_for: Duration) -> (Duration, Backoff) {
        if self.current.is_zero() || ran_for >= BACKOFF_RESET_AFTER {
            return (
                Duration::ZERO,
                Backoff {
                    current: BACKOFF_INITIAL,
                },
            );
        }
        let delay = self.current;
        let next = (self.current * 2).min(BACKOFF_MAX);
        (delay, Backoff { current: next })
    }
}

/// What the worker should do for a container after an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Leave it as it is.
    Keep,
    /// Start it again at `at` (immediately when `at` is now or past).
    RestartAt { at: DateTime<Utc> },
    /// It is done for good.
    Done,
}

/// The lifecycle of one container: its state, restart count, last termination and back-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerLifecycle {
    pub state: ContainerState,
    pub restart_count: u32,
    pub last_termination: Option<Termination>,
    pub backoff: Backoff,
}

impl Default for ContainerLifecycle {
    fn default() -> Self {
        ContainerLifecycle {
            state: ContainerState::Waiting {
                reason: WaitingReason::ContainerCreating,
                message: None,
            },
            restart_count: 0,
            last_termination: None,
            backoff: Backoff::default(),
        }
    }
}

impl ContainerLifecycle {
    /// The container started. A start after a termination is a restart: kubelet counts a
    /// restart when it happens, not when it is decided.
    pub fn started(&self, at: DateTime<Utc>) -> ContainerLifecycle {
        let mut next = self.clone();
        if self.last_termination.is_some() {
            next.restart_count = self.restart_count.saturating_add(1);
        }
        next.state = ContainerState::Running { started_at: at };
        next
    }

    /// The index of the run the next start will be (0 for the first): the restart count
    /// that start will show.
    pub fn next_run_index(&self) -> u32 {
        if self.last_termination.is_some() {
            self.restart_count.saturating_add(1)
        } else {
            0
        }
    }

    /// The container could not be started (or pulled); it stays Waiting with `reason`.
    pub fn waiting(&self, reason: WaitingReason, message: Option<String>) -> ContainerLifecycle {
        let mut next = self.clone();
        next.state = ContainerState::Waiting { reason, message };
        next
    }

    /// The container exited: decide about a restart under `policy`. A restart waits out
    /// the back-off and shows as CrashLoopBackOff once it has crashed before.
    pub fn exited(
        &self,
        t: Termination,
        policy: RestartPolicy,
        now: DateTime<Utc>,
    ) -> (ContainerLifecycle, Decision) {
        let mut next = self.clone();
        if !policy.restarts(t.exit_code) {
            next.state = ContainerState::Terminated(t);
            return (next, Decision::Done);
        }
        let ran_for = (t.finished_at - t.started_at).to_std().unwrap_or_default();
        let (delay, backoff) = self.backoff.after_exit(ran_for);
        let at = now + chrono::Duration::from_std(delay).unwrap_or_default();
        next.backoff = backoff;
        next.last_termination = Some(t.clone());
        // While it waits out a back-off it shows as CrashLoopBackOff.
        next.state = if delay.is_zero() {
            ContainerState::Waiting {
                reason: WaitingReason::ContainerCreating,
                message: None,
            }
        } else {
            ContainerState::Waiting {
                reason: WaitingReason::CrashLoopBackOff { until: at },
                message: Some(format!(
                    "back-off {}s restarting failed container",
                    delay.as_secs()
                )),
            }
        };
        (next, Decision::RestartAt { at })
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, ContainerState::Running { .. })
    }
}

/// `status.phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl PodPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            PodPhase::Pending => "Pending",
            PodPhase::Running => "Running",
            PodPhase::Succeeded => "Succeeded",
            PodPhase::Failed => "Failed",
            PodPhase::Unknown => "Unknown",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, PodPhase::Succeeded | PodPhase::Failed)
    }
}

/// The pod phase from its containers, as kubelet computes it: Pending until initialised
/// and every app container has started once; Running while one runs or will be restarted;
/// Succeeded when all ended with 0 for good; Failed when all ended for good and one failed.
pub fn pod_phase(
    policy: RestartPolicy,
    init_done: bool,
    init_failed_for_good: bool,
    app: &[&ContainerLifecycle],
) -> PodPhase {
    if init_failed_for_good {
        return PodPhase::Failed;
    }
    if !init_done {
        return PodPhase::Pending;
    }
    let mut running = 0;
    let mut waiting_first_start = 0;
    let mut restarting = 0;
    let mut failed = 0;
    for c in app {
        match &c.state {
            ContainerState::Running { .. } => running += 1,
            ContainerState::Waiting { .. }
                if c.restart_count == 0 && c.last_termination.is_none() =>
            {
                waiting_first_start += 1
            }
            ContainerState::Waiting { .. } => restarting += 1,
            ContainerState::Terminated(t) if t.exit_code == 0 => {}
            ContainerState::Terminated(_) => failed += 1,
        }
    }
    if waiting_first_start > 0 {
        return PodPhase::Pending;
    }
    if running > 0 || restarting > 0 {
        return PodPhase::Running;
    }
    if app.is_empty() {
        return PodPhase::Pending;
    }
    match (failed, policy) {
        (0, _) => PodPhase::Succeeded,
        (_, RestartPolicy::Never) => PodPhase::Failed,
        // OnFailure/Always restart failures, so an all-terminated pod with a failure under
        // them can only be a pod whose restarts are over (deleted): report Failed.
        _ => PodPhase::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn term(code: i32, ran_secs: i64) -> Termination {
        Termination {
            exit_code: code,
            signal: None,
            reason: TerminationReason::for_exit(code, false),
            message: None,
            started_at: t0(),
            finished_at: t0() + chrono::Duration::seconds(ran_secs),
        }
    }

    #[test]
    fn restart_policy_matrix() {
        use RestartPolicy::*;
        for (policy, code, restarts) in [
            (Always, 0, true),
            (Always, 1, true),
            (OnFailure, 0, false),
            (OnFailure, 1, true),
            (Never, 0, false),
            (Never, 1, false),
        ] {
            assert_eq!(policy.restarts(code), restarts, "{policy:?} exit {code}");
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_ten_minutes() {
        let mut b = Backoff::default();
        let mut seen = Vec::new();
        for _ in 0..7 {
            let (d, nb) = b.after_exit(Duration::from_secs(1));
            seen.push(d.as_secs());
            b = nb;
        }
        assert_eq!(seen, vec![0, 10, 20, 40, 80, 160, 300]);
        let (d, b) = b.after_exit(Duration::from_secs(1));
        assert_eq!(d, BACKOFF_MAX);
        let (d, b) = b.after_exit(BACKOFF_RESET_AFTER);
        assert_eq!(d, Duration::ZERO);
        assert_eq!(b.after_exit(Duration::from_secs(1)).0, BACKOFF_INITIAL);
    }

    #[test]
    fn exit_under_never_is_final() {
        let c = ContainerLifecycle::default().started(t0());
        let (next, decision) = c.exited(term(1, 5), RestartPolicy::Never, t0());
        assert_eq!(decision, Decision::Done);
        assert_eq!(next.restart_count, 0);
        assert!(
            matches!(next.state, ContainerState::Terminated(ref t) if t.reason == TerminationReason::Error)
        );
    }

    #[test]
    fn crash_under_always_backs_off_and_counts() {
        let now = t0() + chrono::Duration::seconds(5);
        let c = ContainerLifecycle::default().started(t0());
        let (next, decision) = c.exited(term(1, 5), RestartPolicy::Always, now);
        assert_eq!(decision, Decision::RestartAt { at: now });
        // Counted when the restart happens, not when it is decided.
        assert_eq!(next.restart_count, 0);
        assert_eq!(next.next_run_index(), 1);
        assert_eq!(next.last_termination.as_ref().unwrap().exit_code, 1);
        let restarted = next.started(now);
        assert_eq!(restarted.restart_count, 1);
        let (again, d2) = restarted.exited(term(1, 5), RestartPolicy::Always, now);
        assert_eq!(
            d2,
            Decision::RestartAt {
                at: now + chrono::Duration::seconds(10)
            }
        );
        assert_eq!(again.restart_count, 1);
        assert_eq!(again.started(now).restart_count, 2);
        assert!(matches!(
            again.state,
            ContainerState::Waiting {
                reason: WaitingReason::CrashLoopBackOff { .. },
                ..
            }
        ));
    }

    #[test]
    fn oom_wins_over_exit_code() {
        assert_eq!(
            TerminationReason::for_exit(137, true),
            TerminationReason::OomKilled
        );
        assert_eq!(TerminationReason::for_exit(0, false).as_str(), "Completed");
        assert_eq!(TerminationReason::for_exit(2, false).as_str(), "Error");
    }

    #[test]
    fn phases() {
        use RestartPolicy::*;
        let waiting = ContainerLifecycle::default();
        let running = waiting.started(t0());
        let (done_ok, _) = running.exited(term(0, 1), Never, t0());
        let (done_err, _) = running.exited(term(1, 1), Never, t0());
        let (crashing, _) = running.exited(term(1, 1), Always, t0());
        assert_eq!(
            pod_phase(Always, false, false, &[&running]),
            PodPhase::Pending
        );
        assert_eq!(
            pod_phase(Always, true, false, &[&waiting]),
            PodPhase::Pending
        );
        assert_eq!(
            pod_phase(Always, true, false, &[&running, &waiting]),
            PodPhase::Pending
        );
        assert_eq!(
            pod_phase(Always, true, false, &[&running]),
            PodPhase::Running
        );
        assert_eq!(
            pod_phase(Always, true, false, &[&crashing]),
            PodPhase::Running
        );
        assert_eq!(
            pod_phase(Never, true, false, &[&done_ok]),
            PodPhase::Succeeded
        );
        assert_eq!(
            pod_phase(Never, true, false, &[&done_ok, &done_err]),
            PodPhase::Failed
        );
        assert_eq!(
            pod_phase(Never, true, false, &[&done_ok, &running]),
            PodPhase::Running
        );
        assert_eq!(
            pod_phase(OnFailure, true, false, &[&done_ok]),
            PodPhase::Succeeded
        );
        assert_eq!(pod_phase(Never, true, true, &[&waiting]), PodPhase::Failed);
    }
}
