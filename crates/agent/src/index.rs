//! The per-pod index file (`<pod dir>/index.json`): what a restarted agent needs to adopt a
//! pod's containers without restarting them and without losing an exit status — the
//! pod's identity, its sandbox, and per container the current runtime id, attempt
//! counter, restart count, back-off and terminations. Written atomically after every
//! change; also how leftovers of pods deleted while the agent was down are found.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use podium_runtime::Sandbox;

use crate::lifecycle::{Termination, TerminationReason};

pub const INDEX_FILE: &str = "index.json";

/// A [`Termination`] as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermRecord {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

impl From<&Termination> for TermRecord {
    fn from(t: &Termination) -> Self {
        TermRecord {
            exit_code: t.exit_code,
            signal: t.signal,
            reason: t.reason.as_str().to_string(),
            message: t.message.clone(),
            started_at: t.started_at,
            finished_at: t.finished_at,
        }
    }
}

impl TermRecord {
    pub fn to_termination(&self) -> Termination {
        let reason = match self.reason.as_str() {
            "Completed" => TerminationReason::Completed,
            "OOMKilled" => TerminationReason::OomKilled,
            "ContainerCannotRun" => TerminationReason::ContainerCannotRun,
            _ => TerminationReason::Error,
        };
        Termination {
            exit_code: self.exit_code,
            signal: self.signal,
            reason,
            message: self.message.clone(),
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }
}

/// One container of the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerEntry {
    /// Attempts made so far (the next id uses `attempt + 1`).
    pub attempt: u32,
    /// The runtime container of the latest attempt, while it exists.
    pub id: Option<String>,
    pub image_ref: String,
    /// The latest attempt's exit has been handled (restart decided or final).
    pub exit_handled: bool,
    pub restart_count: u32,
    pub backoff_secs: u64,
    pub last_termination: Option<TermRecord>,
    /// Set when the container is done for good.
    pub final_termination: Option<TermRecord>,
    /// Not to be started again before this.
    pub restart_at: Option<DateTime<Utc>>,
}

/// The index of one pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodIndex {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The pod cgroup (removed at cleanup).
    pub cgroup: Option<String>,
    pub sandbox: Option<Sandbox>,
    pub start_time: Option<DateTime<Utc>>,
    pub containers: BTreeMap<String, ContainerEntry>,
}

impl PodIndex {
    /// Reads `<dir>/index.json`; `None` when absent or unreadable.
    pub fn load(dir: &Path) -> Option<PodIndex> {
        serde_json::from_slice(&std::fs::read(dir.join(INDEX_FILE)).ok()?).ok()
    }

    /// Writes `<dir>/index.json` atomically (temp file + rename).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        podium_runtime::state::write_atomic(dir, INDEX_FILE, &bytes)
    }

    /// Every runtime container id the index knows.
    pub fn container_ids(&self) -> Vec<String> {
        self.containers
            .values()
            .filter_map(|c| c.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_file() {
        let d = tempfile::tempdir().unwrap();
        assert!(PodIndex::load(d.path()).is_none());
        let t = Termination {
            exit_code: 137,
            signal: Some(9),
            reason: TerminationReason::OomKilled,
            message: Some("oom".into()),
            started_at: Utc::now(),
            finished_at: Utc::now(),
        };
        let mut idx = PodIndex {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u".into(),
            ..Default::default()
        };
        idx.containers.insert(
            "main".into(),
            ContainerEntry {
                attempt: 2,
                id: Some("x-2".into()),
                last_termination: Some((&t).into()),
                ..Default::default()
            },
        );
        idx.save(d.path()).unwrap();
        let back = PodIndex::load(d.path()).unwrap();
        assert_eq!(back, idx);
        assert_eq!(
            back.containers["main"]
                .last_termination
                .as_ref()
                .unwrap()
                .to_termination(),
            t
        );
        assert_eq!(back.container_ids(), vec!["x-2".to_string()]);
    }
}
