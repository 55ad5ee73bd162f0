//! `kubectl logs` served from this node's log files: the apiserver's [`PodLogs`] hook.
//! The file is chosen from the pod's status (restartCount; `--previous` is the one before),
//! [`crate::logs`] applies tail/since/timestamps/limit-bytes, and `-f` keeps reading the
//! growing file until the container is no longer running. One log per container run
//! (`<restart>.log`), rotated by size by its shim (`<restart>.log.<time>`): like kubelet,
//! `kubectl logs` (and `--previous`) shows the current file of the run, and `-f` goes on
//! into each new file after a rotation ([`LogFollower`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use serde_json::Value;

use podium_api::ApiError;
use podium_apiserver::handlers::{LogRequest, LogStream, PodLogs};
use podium_runtime::{ContainerRuntime, Status};

use crate::facts::{namespace_of, str_at};
use crate::logs::{lines, select, LogFollower, LogOptions};
use crate::paths::Layout;

/// How often a followed log is checked for more output.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub struct NodeLogs {
    pub layout: Layout,
    pub runtime: Arc<dyn ContainerRuntime>,
}

/// The container's status entry (regular or init).
fn container_status<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|k| pod.get("status")?.get(*k)?.as_array())
        .flatten()
        .find(|c| str_at(c, &["name"]) == name)
}

fn bad(msg: String) -> ApiError {
    ApiError::BadRequest(msg)
}

#[async_trait]
impl PodLogs for NodeLogs {
    async fn logs(&self, pod: &Value, req: &LogRequest) -> Result<LogStream, ApiError> {
        let (ns, name, uid) = (
            namespace_of(pod),
            str_at(pod, &["metadata", "name"]),
            str_at(pod, &["metadata", "uid"]),
        );
        let c = &req.container;
        let waiting = |st: Option<&Value>| {
            let reason = st
                .and_then(|s| s.pointer("/state/waiting/reason"))
                .and_then(Value::as_str)
                .unwrap_or("ContainerCreating")
                .to_string();
            bad(format!(
                "container {c:?} in pod {name:?} is waiting to start: {reason}"
            ))
        };
        let st = container_status(pod, c);
        let restarts = st
            .and_then(|s| s.get("restartCount"))
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok());
        let Some(restarts) = restarts else {
            return Err(waiting(st));
        };
        // kubelet: --previous is lastState's container; a container waiting to restart
        // shows its last run (restartCount counts restarts that happened, so the run that
        // just ended has index restartCount).
        let waiting_now = st.and_then(|s| s.pointer("/state/waiting")).is_some();
        let has_last = st
            .and_then(|s| s.pointer("/lastState/terminated"))
            .is_some();
        let run = match (req.previous, waiting_now, restarts) {
            (_, true, n) if has_last => n,
            (false, true, _) => return Err(waiting(st)),
            (true, _, 0) => {
                return Err(bad(format!(
                    "previous terminated container {c:?} in pod {name:?} not found"
                )))
            }
            (true, _, n) => n - 1,
            (false, false, n) => n,
        };
        let path = self.layout.log_path(ns, name, uid, c, run);
        // Opened once: a follow goes on from exactly what was read here, even if the
        // file is rotated in between.
        let (follower, data) = tokio::task::spawn_blocking(move || LogFollower::open(&path))
            .await
            .ok()
            .and_then(Result::ok)
            .map_or((None, Vec::new()), |(f, d)| (Some(f), d));
        let opts = LogOptions {
            tail_lines: req.tail_lines,
            timestamps: req.timestamps,
            since: req
                .since_seconds
                .map(|s| Utc::now() - chrono::Duration::seconds(s.max(0))),
            limit_bytes: req.limit_bytes,
        };
        let first = select(&data, &opts);
        let running_id = st
            .filter(|s| s.pointer("/state/running").is_some())
            .and_then(|s| s.get("containerID"))
            .and_then(Value::as_str)
            .and_then(|id| id.strip_prefix("podium://"))
            .map(str::to_string);
        let follow_id = match (req.follow && !req.previous, running_id) {
            (true, Some(id)) => id,
            _ => return Ok(futures::stream::once(async move { Ok(Bytes::from(first)) }).boxed()),
        };
        // Follow: what is there now, then whatever is appended, until the container ends.
        // The follower holds the file open: the pod's cleanup may remove it right after
        // the container ends, and the lines written last must still reach the client.
        let Some(follower) = follower else {
            return Ok(futures::stream::once(async move { Ok(Bytes::from(first)) }).boxed());
        };
        let (_, rest) = lines(&data, &opts);
        let budget = opts.limit_bytes.map(|l| {
            usize::try_from(l)
                .unwrap_or(usize::MAX)
                .saturating_sub(first.len())
        });
        let state = Follow {
            follower: Some(follower),
            // An incomplete line (or partial record) at the end waits for the rest.
            pending: data[data.len() - rest..].to_vec(),
            opts: LogOptions {
                tail_lines: None,
                since: None,
                ..opts
            },
            budget,
            runtime: self.runtime.clone(),
            id: follow_id,
            ended: false,
        };
        let head = futures::stream::once(async move { Ok(Bytes::from(first)) });
        let tail = futures::stream::unfold(state, |mut f| async move {
            let chunk = f.next_chunk().await?;
            Some((Ok(chunk), f))
        });
        Ok(head.chain(tail).boxed())
    }
}

struct Follow {
    /// `None` only while a read is in flight (or after a failed one).
    follower: Option<LogFollower>,
    /// Bytes read but not yet a whole line.
    pending: Vec<u8>,
    opts: LogOptions,
    budget: Option<usize>,
    runtime: Arc<dyn ContainerRuntime>,
    id: String,
    ended: bool,
}

impl Follow {
    /// The next non-empty chunk, or `None` once the container ended and all is sent.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.ended || self.budget == Some(0) {
                return None;
            }
            let rt = self.runtime.clone();
            let id = self.id.clone();
            let mut follower = self.follower.take()?;
            // The status first: once it says the container ended, the read after it
            // gets everything the container wrote.
            let read = tokio::task::spawn_blocking(move || {
                let running = matches!(rt.status(&id), Ok(Status::Running { .. }));
                let appended = follower.read_new();
                (running, appended, follower)
            })
            .await;
            let Ok((running, appended, follower)) = read else {
                return None;
            };
            self.follower = Some(follower);
            match appended {
                Ok(bytes) => self.pending.extend_from_slice(&bytes),
                Err(e) => tracing::debug!("following the log of {}: {e}", self.id),
            }
            let (ls, rest) = lines(&self.pending, &self.opts);
            let mut out: Vec<u8> = ls.concat();
            let consumed = self.pending.len() - rest;
            self.pending.drain(..consumed);
            if let Some(b) = self.budget.as_mut() {
                out.truncate(*b);
                *b -= out.len();
            }
            if !running {
                self.ended = true;
            }
            if !out.is_empty() {
                return Some(Bytes::from(out));
            }
            if self.ended {
                return None;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }
}
