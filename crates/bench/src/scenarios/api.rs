//! API scenarios (no node agent needed): pod create/s, GET/s, LIST of N pods as JSON and
//! as a Table, and watch fan-out (W watchers, M creates, delivery latency per event and
//! watcher). Each repeats `repeats` times; the report shows every run and their median.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::future::join_all;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::Value;

use super::{pod_manifest, run_workers, scenario, Ctx};
use crate::client::{Client, ACCEPT_JSON, ACCEPT_TABLE};
use crate::report::Scenario;
use crate::stats::RunStats;

#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Pods per create run (and so the size of the listed namespace).
    pub pods: usize,
    pub concurrency: usize,
    pub get_duration: Duration,
    /// Lists per run, per format.
    pub lists: usize,
    pub list_concurrency: usize,
    pub watchers: usize,
    /// Connections the watchers share (each watcher its own when equal to `watchers`).
    pub watch_connections: usize,
    pub watch_events: usize,
    pub watch_create_concurrency: usize,
    pub repeats: usize,
}

fn pods_path(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/pods")
}

fn answer_error(what: &str, status: http::StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    format!(
        "{what}: {status}: {}",
        text.chars().take(300).collect::<String>()
    )
}

/// Creates `n` pods named `{prefix}-{i:05}` in `ns` with `concurrency` in flight.
pub async fn create_pods(
    client: &Client,
    ns: &str,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> super::WorkerOutcome {
    let path = Arc::new(pods_path(ns));
    let prefix = Arc::new(prefix.to_string());
    let client = client.clone();
    run_workers(concurrency, Some(n), None, move |i| {
        let (client, path, prefix) = (client.clone(), path.clone(), prefix.clone());
        async move {
            let a = client
                .post(&path, pod_manifest(&format!("{prefix}-{i:05}")))
                .await
                .map_err(|e| e.to_string())?;
            if a.status == http::StatusCode::CREATED {
                Ok(a.latency)
            } else {
                Err(answer_error("create", a.status, &a.body))
            }
        }
    })
    .await
}

fn warn_errors(what: &str, out: &super::WorkerOutcome) {
    if let Some(e) = &out.first_error {
        eprintln!("  {what}: {} errors; first: {e}", out.errors);
    }
}

/// Scenario 1: create/s. Each run creates `pods` pods in a fresh namespace; returns the
/// scenario and the namespace of the last run (which the GET and LIST scenarios read).
pub async fn create(ctx: &Ctx, s: &ApiSettings) -> anyhow::Result<(Scenario, String)> {
    let mut runs = Vec::new();
    let mut cpu = Vec::new();
    let mut last_ns = String::new();
    for r in 1..=s.repeats {
        let ns = ctx.create_namespace(&format!("c{r}")).await?;
        let cpu0 = ctx.server_cpu();
        let out = create_pods(&ctx.client, &ns, "pod", s.pods, s.concurrency).await;
        cpu.push(ctx.server_cpu().saturating_sub(cpu0));
        warn_errors("create", &out);
        let st = out.stats();
        eprintln!(
            "  create run {r}: {} pods in {:.0} ms ({:.1}/s, p99 {:.1} ms)",
            st.count, st.wall_ms, st.throughput, st.p99_ms
        );
        runs.push(st);
        last_ns = ns;
    }
    let what = format!(
        "POST {} pods (one busybox container) per run, {} in flight, fresh namespace per run",
        s.pods, s.concurrency
    );
    Ok((
        scenario("create", &what, runs, &cpu, ctx.server_pid.is_some()),
        last_ns,
    ))
}

/// Scenario 2: GET/s of existing pods, round-robin over the namespace's pods.
pub async fn get(ctx: &Ctx, s: &ApiSettings, ns: &str) -> anyhow::Result<Scenario> {
    let names: Arc<Vec<String>> = Arc::new(
        (0..s.pods)
            .map(|i| format!("{}/pod-{i:05}", pods_path(ns)))
            .collect(),
    );
    let mut runs = Vec::new();
    let mut cpu = Vec::new();
    for r in 1..=s.repeats {
        let client = ctx.client.clone();
        let names = names.clone();
        let cpu0 = ctx.server_cpu();
        let out = run_workers(s.concurrency, None, Some(s.get_duration), move |i| {
            let (client, names) = (client.clone(), names.clone());
            async move {
                let path = &names[i % names.len()];
                let a = client
                    .get(path, ACCEPT_JSON)
                    .await
                    .map_err(|e| e.to_string())?;
                if a.status.is_success() {
                    Ok(a.latency)
                } else {
                    Err(answer_error("get", a.status, &a.body))
                }
            }
        })
        .await;
        cpu.push(ctx.server_cpu().saturating_sub(cpu0));
        warn_errors("get", &out);
        let st = out.stats();
        eprintln!(
            "  get run {r}: {} GETs in {:.0} ms ({:.1}/s, p99 {:.2} ms)",
            st.count, st.wall_ms, st.throughput, st.p99_ms
        );
        runs.push(st);
    }
    let what = format!(
        "GET one pod by name, round-robin over {} pods, {} in flight, {:?} per run",
        s.pods, s.concurrency, s.get_duration
    );
    Ok(scenario("get", &what, runs, &cpu, ctx.server_pid.is_some()))
}

/// How many objects a list answer holds (items of a list, rows of a Table).
fn listed_count(body: &[u8]) -> Option<usize> {
    let v: Value = serde_json::from_slice(body).ok()?;
    if v["kind"] == "Table" {
        v["rows"].as_array().map(|a| a.len())
    } else {
        v["items"].as_array().map(|a| a.len())
    }
}

/// Scenario 3: LIST of all pods of the namespace, as JSON (`table == false`) or as the
/// Table kubectl asks for.
pub async fn list(ctx: &Ctx, s: &ApiSettings, ns: &str, table: bool) -> anyhow::Result<Scenario> {
    let accept = if table { ACCEPT_TABLE } else { ACCEPT_JSON };
    let path = Arc::new(pods_path(ns));
    // One untimed list checks the answer really holds every pod.
    let first = ctx.client.get(&path, accept).await?;
    anyhow::ensure!(
        first.status.is_success(),
        answer_error("list", first.status, &first.body)
    );
    let n = listed_count(&first.body).context("list answer is not a list or Table")?;
    anyhow::ensure!(
        n == s.pods,
        "list returned {n} objects, expected {}",
        s.pods
    );
    let bytes = first.body.len() as f64;
    let mut runs = Vec::new();
    let mut cpu = Vec::new();
    let name = if table { "list-table" } else { "list-json" };
    for r in 1..=s.repeats {
        let client = ctx.client.clone();
        let path = path.clone();
        let cpu0 = ctx.server_cpu();
        let out = run_workers(s.list_concurrency, Some(s.lists), None, move |_| {
            let (client, path) = (client.clone(), path.clone());
            async move {
                let a = client.get(&path, accept).await.map_err(|e| e.to_string())?;
                if a.status.is_success() {
                    Ok(a.latency)
                } else {
                    Err(answer_error("list", a.status, &a.body))
                }
            }
        })
        .await;
        cpu.push(ctx.server_cpu().saturating_sub(cpu0));
        warn_errors(name, &out);
        let st = out.stats();
        eprintln!(
            "  {name} run {r}: {} lists in {:.0} ms (p50 {:.1} ms, p99 {:.1} ms)",
            st.count, st.wall_ms, st.p50_ms, st.p99_ms
        );
        runs.push(st);
    }
    let what = format!(
        "GET the list of {} pods ({}), {} lists per run, {} in flight",
        s.pods,
        if table { "Accept: as=Table" } else { "JSON" },
        s.lists,
        s.list_concurrency
    );
    let mut sc = scenario(name, &what, runs, &cpu, ctx.server_pid.is_some());
    sc.note("response_bytes", bytes);
    sc.note("response_bytes_per_pod", bytes / s.pods.max(1) as f64);
    Ok(sc)
}

#[derive(Deserialize)]
struct EventLine {
    #[serde(rename = "type")]
    kind: String,
    object: EventObject,
}
#[derive(Deserialize)]
struct EventObject {
    #[serde(default)]
    metadata: EventMeta,
}
#[derive(Deserialize, Default)]
struct EventMeta {
    #[serde(default)]
    name: String,
}

/// The pod index in a name `{prefix}-{i:05}`.
fn index_of(name: &str, prefix: &str) -> Option<usize> {
    name.strip_prefix(prefix)?.strip_prefix('-')?.parse().ok()
}

/// Reads a watch body until it has seen ADDED for pods 0..m, or `deadline`; returns when
/// each was seen.
async fn watcher(
    mut body: hyper::body::Incoming,
    prefix: String,
    m: usize,
    deadline: Instant,
) -> Vec<Option<Instant>> {
    let mut seen: Vec<Option<Instant>> = vec![None; m];
    let mut left = m;
    let mut buf: Vec<u8> = Vec::new();
    while left > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let frame = match tokio::time::timeout(deadline - now, body.frame()).await {
            Ok(Some(Ok(f))) => f,
            _ => break,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let at = Instant::now();
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let Ok(ev) = serde_json::from_slice::<EventLine>(&line) else {
                continue;
            };
            if ev.kind != "ADDED" {
                continue;
            }
            if let Some(i) = index_of(&ev.object.metadata.name, &prefix) {
                if let Some(slot @ None) = seen.get_mut(i) {
                    *slot = Some(at);
                    left -= 1;
                }
            }
        }
    }
    seen
}

/// Scenario 4: watch fan-out. Opens `watchers` watches on a fresh namespace (from its
/// current resourceVersion, so no initial events), then creates `watch_events` pods; the
/// delivery latency of each (event, watcher) pair is from the create being sent to the
/// watcher reading the event.
pub async fn watch_fanout(ctx: &Ctx, s: &ApiSettings) -> anyhow::Result<Scenario> {
    let mut runs = Vec::new();
    let mut cpu = Vec::new();
    let mut opened_ms = Vec::new();
    let m = s.watch_events;
    for r in 1..=s.repeats {
        let ns = ctx.create_namespace(&format!("w{r}")).await?;
        let listed = ctx.client.get(&pods_path(&ns), ACCEPT_JSON).await?;
        anyhow::ensure!(
            listed.status.is_success(),
            answer_error("list", listed.status, &listed.body)
        );
        let v: Value = serde_json::from_slice(&listed.body)?;
        let rv = v["metadata"]["resourceVersion"]
            .as_str()
            .context("list without resourceVersion")?
            .to_string();
        // Watchers get their own connections (many clients), created before timing.
        let conns = s.watch_connections.clamp(1, s.watchers.max(1));
        let mut clients = Vec::new();
        for _ in 0..conns {
            clients.push(Client::connect(&ctx.target, 1, Duration::from_secs(30)).await?);
        }
        let watch_path = format!(
            "{}?watch=true&resourceVersion={rv}&timeoutSeconds=300",
            pods_path(&ns)
        );
        let t_open = Instant::now();
        let bodies = join_all((0..s.watchers).map(|w| {
            let c = clients[w % clients.len()].clone();
            let p = watch_path.clone();
            async move { c.stream(&p).await }
        }))
        .await;
        opened_ms.push(t_open.elapsed().as_secs_f64() * 1000.0);
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut handles = Vec::new();
        for b in bodies {
            handles.push(tokio::spawn(watcher(b?, "w".into(), m, deadline)));
        }
        // The creates, timed per pod from send.
        let sent: Arc<std::sync::Mutex<HashMap<usize, Instant>>> = Arc::default();
        let cpu0 = ctx.server_cpu();
        let start = Instant::now();
        {
            let client = ctx.client.clone();
            let path = Arc::new(pods_path(&ns));
            let sent = sent.clone();
            let out = run_workers(s.watch_create_concurrency, Some(m), None, move |i| {
                let (client, path, sent) = (client.clone(), path.clone(), sent.clone());
                async move {
                    if let Ok(mut s) = sent.lock() {
                        s.insert(i, Instant::now());
                    }
                    let a = client
                        .post(&path, pod_manifest(&format!("w-{i:05}")))
                        .await
                        .map_err(|e| e.to_string())?;
                    if a.status == http::StatusCode::CREATED {
                        Ok(a.latency)
                    } else {
                        Err(answer_error("create", a.status, &a.body))
                    }
                }
            })
            .await;
            warn_errors("watch creates", &out);
        }
        let mut latencies = Vec::with_capacity(m * s.watchers);
        let mut missing = 0u64;
        let mut last_seen = start;
        let sent = sent.lock().map(|g| g.clone()).unwrap_or_default();
        for h in handles {
            let seen = h.await.unwrap_or_default();
            for i in 0..m {
                match (seen.get(i).copied().flatten(), sent.get(&i)) {
                    (Some(at), Some(t0)) => {
                        latencies.push(at.saturating_duration_since(*t0));
                        last_seen = last_seen.max(at);
                    }
                    _ => missing += 1,
                }
            }
        }
        let wall = last_seen.saturating_duration_since(start);
        cpu.push(ctx.server_cpu().saturating_sub(cpu0));
        let st = RunStats::from_latencies(latencies, missing, wall);
        eprintln!(
            "  watch run {r}: {} deliveries ({} watchers x {m} creates) in {:.0} ms, p50 {:.1} ms, p99 {:.1} ms, missing {missing}",
            st.count, s.watchers, st.wall_ms, st.p50_ms, st.p99_ms
        );
        runs.push(st);
    }
    let what = format!(
        "{} watchers on {} connections, then {} pod creates ({} in flight); latency = create sent -> event read by a watcher; wall = first create sent -> last event read",
        s.watchers,
        s.watch_connections.clamp(1, s.watchers.max(1)),
        m,
        s.watch_create_concurrency
    );
    let mut sc = scenario("watch-fanout", &what, runs, &cpu, ctx.server_pid.is_some());
    sc.note("watchers", s.watchers as f64);
    sc.note("events", m as f64);
    sc.note(
        "open_all_watches_ms",
        crate::stats::median(&opened_ms).unwrap_or(0.0),
    );
    Ok(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pod_index() {
        assert_eq!(index_of("w-00042", "w"), Some(42));
        assert_eq!(index_of("pod-00042", "w"), None);
        assert_eq!(index_of("w-x", "w"), None);
    }

    #[test]
    fn counts_list_and_table() {
        assert_eq!(
            listed_count(br#"{"kind":"PodList","items":[{},{}]}"#),
            Some(2)
        );
        assert_eq!(listed_count(br#"{"kind":"Table","rows":[{}]}"#), Some(1));
        assert_eq!(listed_count(b"nope"), None);
    }
}
