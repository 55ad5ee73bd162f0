//! Benchmark scenarios. Each one runs against a [`Ctx`] (a connected client plus, when
//! known, the server's pid for CPU and memory readings) and returns [`Scenario`] results.
//!
//! - [`api`]: API-only scenarios that need no node agent (issue 2): create/s, GET/s,
//!   LIST of 1000 pods (JSON and Table), watch fan-out.
//! - [`images`]: image pull + unpack from a local registry, side by side with podman and
//!   skopeo+umoci (issue 3); needs no server.
//! - [`pods`]: pods really run by a server with its agent — start-up, teardown, burst,
//!   density, per-phase timings — side by side with `podman kube play` (issue 5).
//!
//! Shared by the last two: [`peer`] (peer tools as timed processes, podman's isolated
//! configuration) and [`testimage`] (busybox layers and `docker save` archives).

pub mod api;
pub mod images;
pub mod peer;
pub mod pods;
pub mod testimage;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

use crate::client::Client;
use crate::report::Scenario;
use crate::server;
use crate::stats::RunStats;

/// Everything a scenario needs.
#[derive(Clone)]
pub struct Ctx {
    pub client: Client,
    pub target: crate::client::Target,
    /// The server process, when it runs on this machine and is known.
    pub server_pid: Option<u32>,
    /// A short unique tag so that namespaces of two runs never collide.
    pub run_id: String,
    /// Namespaces this run created (deleted at the end on a server we did not start).
    pub namespaces: Arc<Mutex<Vec<String>>>,
}

impl Ctx {
    /// Server CPU time so far (zero when the pid is unknown).
    pub fn server_cpu(&self) -> Duration {
        self.server_pid
            .and_then(server::cpu_time)
            .unwrap_or_default()
    }

    /// Creates a namespace for this run and remembers it for cleanup.
    pub async fn create_namespace(&self, suffix: &str) -> anyhow::Result<String> {
        let name = format!("bench-{}-{suffix}", self.run_id);
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        let a = self
            .client
            .post("/api/v1/namespaces", Bytes::from(body.to_string()))
            .await?;
        if !a.status.is_success() {
            anyhow::bail!(
                "creating namespace {name}: {}: {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            );
        }
        if let Ok(mut v) = self.namespaces.lock() {
            v.push(name.clone());
        }
        Ok(name)
    }
}

/// The small valid pod every scenario creates: one busybox container that sleeps.
pub fn pod_manifest(name: &str) -> Bytes {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "podium-bench"}},
        "spec": {
            "containers": [{
                "name": "main",
                "image": "busybox:1.36",
                "command": ["sleep", "3600"],
            }],
            "terminationGracePeriodSeconds": 1,
        },
    });
    Bytes::from(pod.to_string())
}

/// What one batch of workers measured.
pub struct WorkerOutcome {
    pub latencies: Vec<Duration>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub wall: Duration,
}

impl WorkerOutcome {
    pub fn stats(&self) -> RunStats {
        RunStats::from_latencies(self.latencies.clone(), self.errors, self.wall)
    }
}

/// Runs `op(i)` for i = 0, 1, 2, … on `concurrency` tasks until `count` operations were
/// started (when given) or `until` has passed (when given), whichever comes first. `op`
/// returns the latency of a successful operation or an error text.
pub async fn run_workers<F, Fut>(
    concurrency: usize,
    count: Option<usize>,
    until: Option<Duration>,
    op: F,
) -> WorkerOutcome
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Duration, String>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let start = Instant::now();
    let deadline = until.map(|d| start + d);
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (op, next, errors, first_error) = (
            op.clone(),
            next.clone(),
            errors.clone(),
            first_error.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if count.is_some_and(|n| i >= n) {
                    break;
                }
                match op(i).await {
                    Ok(d) => lat.push(d),
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut f) = first_error.lock() {
                            f.get_or_insert(e);
                        }
                    }
                }
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            latencies.extend(l);
        }
    }
    let wall = start.elapsed();
    let first_error = first_error.lock().ok().and_then(|f| f.clone());
    WorkerOutcome {
        latencies,
        errors: errors.load(Ordering::Relaxed),
        first_error,
        wall,
    }
}

/// Server CPU milliseconds per operation, and cores kept busy on average, in one run.
pub fn cpu_notes(cpu: Duration, run: &RunStats) -> (f64, f64) {
    let cpu_ms = cpu.as_secs_f64() * 1000.0;
    let per_op = if run.count > 0 {
        cpu_ms / run.count as f64
    } else {
        0.0
    };
    let cores = if run.wall_ms > 0.0 {
        cpu_ms / run.wall_ms
    } else {
        0.0
    };
    (per_op, cores)
}

/// Builds a [`Scenario`] from its runs and per-run server CPU readings.
pub fn scenario(
    name: &str,
    what: &str,
    runs: Vec<RunStats>,
    cpu: &[Duration],
    have_pid: bool,
) -> Scenario {
    let median = RunStats::median_of(&runs);
    let mut s = Scenario::new(name, what, runs, median);
    if have_pid {
        let pairs: Vec<(f64, f64)> = s
            .runs
            .iter()
            .zip(cpu)
            .map(|(r, c)| cpu_notes(*c, r))
            .collect();
        let per_op: Vec<f64> = pairs.iter().map(|p| p.0).collect();
        let cores: Vec<f64> = pairs.iter().map(|p| p.1).collect();
        s.note(
            "server_cpu_ms_per_op",
            crate::stats::median(&per_op).unwrap_or(0.0),
        );
        s.note(
            "server_cores_busy",
            crate::stats::median(&cores).unwrap_or(0.0),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn workers_run_exactly_count_ops_and_count_errors() {
        let out = run_workers(4, Some(10), None, |i| async move {
            if i % 5 == 0 {
                Err(format!("op {i} failed"))
            } else {
                Ok(Duration::from_millis(i as u64))
            }
        })
        .await;
        assert_eq!(out.latencies.len(), 8);
        assert_eq!(out.errors, 2);
        assert!(out.first_error.unwrap().starts_with("op "));
    }

    #[tokio::test]
    async fn workers_stop_at_the_deadline() {
        let out = run_workers(2, None, Some(Duration::from_millis(100)), |_| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(Duration::from_millis(10))
        })
        .await;
        // Two workers, ~10 ms per op, 100 ms: about 20 ops; never unbounded.
        assert!(
            out.latencies.len() >= 4 && out.latencies.len() <= 30,
            "{}",
            out.latencies.len()
        );
        assert!(out.wall >= Duration::from_millis(100));
    }

    #[test]
    fn manifest_is_a_pod() {
        let v: serde_json::Value = serde_json::from_slice(&pod_manifest("p-1")).unwrap();
        assert_eq!(v["kind"], "Pod");
        assert_eq!(v["metadata"]["name"], "p-1");
        assert_eq!(v["spec"]["containers"][0]["image"], "busybox:1.36");
    }
}
