//! The pod benchmark (issue 5): pods really started and stopped by a Podium server with
//! its node agent, side by side with `podman kube play` in the same run.
//!
//! Set-up (untimed): a one-layer busybox image (`docker save` archive from the host's
//! static busybox, see [`testimage`](super::testimage)) imported into a fresh server's
//! data dir with `podium image import` and into a fresh podman store with `podman load`;
//! the server starts with its agent and `--max-pods` above the density count; one warm-up
//! start and delete per engine. Every pod is the same Pod YAML for both engines: one
//! busybox container, `imagePullPolicy: Never`, running `sh -c 'trap "exit 0" TERM; while
//! true; do sleep 3600 & wait; done'` (it exits on SIGTERM at once: `wait` is
//! interrupted by the signal, where a foreground `sleep` would delay the trap).
//!
//! Scenarios, in this order:
//! 1. start-up and teardown, pair by pair: for each of `--startup-pods` pods, each engine
//!    (the order alternates) starts a pod — Podium: POST → the watch shows it Running
//!    with every container running; podman: `kube play --network none` returns — and
//!    then deletes it — Podium: DELETE → the watch shows it deleted; podman: `kube down`.
//! 2. burst: `--burst-pods` pods created at once (Podium: all POSTs in flight together;
//!    podman: one `kube play` of a multi-document YAML), until all run; then deleted at
//!    once. The helper processes' PSS is read while all run.
//! 3. density (Podium only): `--density-pods` pods at once, then server RSS and shim PSS,
//!    then all deleted.
//!
//! Then the agent's `pod started` log lines of the start-up pods give the per-phase
//! timings ([`agentlog`]). Every Podium pod is deleted and every shim gone before the
//! server stops; every podman pod is removed; temporary directories go, also on error.

pub mod agentlog;
pub mod podman;
pub mod procs;
pub mod report;
pub mod tracker;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use serde_json::{json, Value};

use super::peer::{sync_disks, which};
use super::{run_workers, Ctx};
use crate::client::{Client, Target};
use crate::report::Machine;
use crate::server::{self, SpawnOptions, Spawned};
use agentlog::{parse_log, phases_of, Observed};
use podman::Podman;
use report::{Burst, BurstRun, Density, Footprint, Latency, PodsReport, ScenarioPhases};
use tracker::{Stamp, Tracker, Want};

/// The image both engines run (a name no registry serves: it must come from the cache).
pub const IMAGE: &str = "podium.bench/busybox:1";
/// The container's command: exits at once on SIGTERM.
pub const SCRIPT: &str = "trap 'exit 0' TERM; while true; do sleep 3600 & wait; done";

/// Command-line settings of the pod benchmark (flattened into `podium-bench`'s own).
#[derive(clap::Args, Debug, Clone)]
pub struct PodBenchArgs {
    /// Pods started (and deleted) one after another per engine.
    #[arg(long, default_value_t = 50)]
    pub startup_pods: usize,
    /// Pods created at once in the burst scenario.
    #[arg(long, default_value_t = 100)]
    pub burst_pods: usize,
    /// Bursts per engine.
    #[arg(long, default_value_t = 3)]
    pub burst_repeats: usize,
    /// Pods on the node in the density scenario (0: skip it).
    #[arg(long, default_value_t = 250)]
    pub density_pods: usize,
    /// Peers beside Podium (`podman`, or `none`).
    #[arg(long, value_delimiter = ',', default_value = "podman")]
    pub pod_peers: Vec<String>,
    /// Longest wait for a pod (or a whole burst) to run or go.
    #[arg(long, default_value_t = 300)]
    pub pod_timeout_secs: u64,
    /// Copy the server's log here at the end (it holds the agent's `pod started` lines).
    #[arg(long)]
    pub keep_server_log: Option<std::path::PathBuf>,
}

/// The Pod both engines get.
pub fn pod_doc(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "podium-bench"}},
        "spec": {
            "terminationGracePeriodSeconds": 30,
            "containers": [{
                "name": "main",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", SCRIPT],
            }],
        },
    })
}

/// The same pods as one multi-document YAML (what `podman kube play` takes).
pub fn pods_yaml(names: &[String]) -> anyhow::Result<String> {
    let mut out = String::new();
    for n in names {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&pod_doc(n))?);
    }
    Ok(out)
}

pub fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The Podium side: a connected client on a server with its agent.
struct Podium<'a> {
    ctx: Ctx,
    server: &'a Spawned,
    timeout: Duration,
}

impl Podium<'_> {
    fn pods_path(ns: &str) -> String {
        format!("/api/v1/namespaces/{ns}/pods")
    }

    async fn create(&self, ns: &str, name: &str) -> anyhow::Result<()> {
        let body = Bytes::from(pod_doc(name).to_string());
        let a = self.ctx.client.post(&Self::pods_path(ns), body).await?;
        anyhow::ensure!(
            a.status == http::StatusCode::CREATED,
            "create {name}: {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
        Ok(())
    }

    async fn delete(&self, ns: &str, name: &str) -> anyhow::Result<()> {
        let a = self
            .ctx
            .client
            .delete(&format!("{}/{name}", Self::pods_path(ns)))
            .await?;
        anyhow::ensure!(
            a.status.is_success(),
            "delete {name}: {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
        Ok(())
    }

    /// Start (create → Running) and stop (delete → gone) of one pod, timed separately.
    async fn start_stop(
        &self,
        tr: &Tracker,
        ns: &str,
        name: &str,
    ) -> anyhow::Result<(Duration, Duration, Stamp, Stamp)> {
        sync_disks();
        let t0 = Stamp::now();
        self.create(ns, name).await?;
        let running = tr.wait(name, Want::Running, self.timeout).await?;
        sync_disks();
        let t1 = Instant::now();
        self.delete(ns, name).await?;
        let gone = tr.wait(name, Want::Gone, self.timeout).await?;
        Ok((
            running.at.duration_since(t0.at),
            gone.at.duration_since(t1),
            t0,
            running,
        ))
    }

    /// All of `names` created at once → all Running; also each pod as observed.
    async fn burst(&self, ns: &str, names: &[String]) -> anyhow::Result<(BurstRun, Vec<Observed>)> {
        let tr = Tracker::start(&self.ctx, ns).await?;
        sync_disks();
        let t0 = Stamp::now();
        let start = t0.at;
        let out = self.all_at_once(ns, names, true).await;
        if let Some(e) = out {
            anyhow::bail!("creating pods: {e}");
        }
        let stamps = tr.wait_all(names, Want::Running, self.timeout).await?;
        let total = stamps
            .iter()
            .map(|s| s.at.duration_since(start))
            .max()
            .unwrap_or_default();
        let observed = names
            .iter()
            .zip(&stamps)
            .map(|(n, s)| Observed {
                pod: format!("{ns}/{n}"),
                sent: t0.wall,
                running: s.wall,
            })
            .collect();
        Ok((
            BurstRun {
                total_ms: ms(total),
                pods_per_s: names.len() as f64 / total.as_secs_f64().max(1e-9),
                delete_all_ms: 0.0,
            },
            observed,
        ))
    }

    async fn delete_all(&self, ns: &str, names: &[String]) -> anyhow::Result<Duration> {
        let tr = Tracker::start(&self.ctx, ns).await?;
        sync_disks();
        let start = Instant::now();
        if let Some(e) = self.all_at_once(ns, names, false).await {
            anyhow::bail!("deleting pods: {e}");
        }
        let stamps = tr.wait_all(names, Want::Gone, self.timeout).await?;
        Ok(stamps
            .iter()
            .map(|s| s.at.duration_since(start))
            .max()
            .unwrap_or_default())
    }

    /// Sends a create (or delete) of every pod, all in flight together; the first error.
    async fn all_at_once(&self, ns: &str, names: &[String], create: bool) -> Option<String> {
        let names = Arc::new(names.to_vec());
        let client = self.ctx.client.clone();
        let path = Arc::new(Self::pods_path(ns));
        let n = names.len();
        let out = run_workers(n, Some(n), None, move |i| {
            let (client, path, names) = (client.clone(), path.clone(), names.clone());
            async move {
                let name = &names[i];
                let a = if create {
                    client
                        .post(&path, Bytes::from(pod_doc(name).to_string()))
                        .await
                } else {
                    client.delete(&format!("{path}/{name}")).await
                }
                .map_err(|e| e.to_string())?;
                if a.status.is_success() {
                    Ok(a.latency)
                } else {
                    Err(format!(
                        "{name}: {}: {}",
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    ))
                }
            }
        })
        .await;
        out.first_error
    }

    fn rss(&self) -> Option<u64> {
        server::rss_bytes(self.server.pid())
    }
}

/// Runs the whole pod benchmark.
pub async fn run(
    podium_bin: &Path,
    a: &PodBenchArgs,
    podman_driver: &str,
) -> anyhow::Result<PodsReport> {
    anyhow::ensure!(
        podium_bin.is_file(),
        "podium binary {} not found",
        podium_bin.display()
    );
    // SAFETY: geteuid has no side effects.
    anyhow::ensure!(
        unsafe { libc::geteuid() } == 0,
        "the pod benchmark runs pods: it needs root (namespaces, mounts, cgroups)"
    );
    let mut notes = Vec::new();
    let mut with_podman = false;
    for p in &a.pod_peers {
        match p.as_str() {
            "none" => {}
            "podman" if which("podman").is_some() => with_podman = true,
            "podman" => notes.push("podman skipped: not installed (apt-get install podman)".into()),
            other => anyhow::bail!("unknown pod peer {other:?} (podman, none)"),
        }
    }
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    notes.push(format!("load average at start: {}", load().trim()));

    let tmp = tempfile::Builder::new()
        .prefix("podium-bench-pods-")
        .tempdir()?;
    let archive = tmp.path().join("busybox.tar");
    std::fs::write(&archive, super::testimage::busybox_archive(IMAGE)?)?;

    let max_pods = a.density_pods.max(a.burst_pods).max(110) + 10;
    let opts = SpawnOptions {
        agent: true,
        max_pods: Some(max_pods),
        log_filter: "warn,podium_agent::worker=info".into(),
        import: Some(archive.clone()),
    };
    eprintln!("pods: starting {} with its agent", podium_bin.display());
    let mut srv = server::spawn(podium_bin, &opts, Duration::from_secs(60)).await?;
    eprintln!(
        "pods: server pid {} ready after {:.0} ms (log {})",
        srv.pid(),
        ms(srv.ready_after),
        srv.log.display()
    );

    let mut podman = None;
    let mut result = async {
        if with_podman {
            match Podman::setup(&tmp.path().join("podman"), podman_driver, &archive).await {
                Ok(p) => {
                    notes.push(format!(
                        "{}; runtime runc, cgroupfs, storage driver {podman_driver}, --network none",
                        p.version
                    ));
                    podman = Some(p);
                }
                Err(e) => notes.push(format!("podman dropped at set-up: {e:#}")),
            }
        }
        body(&srv, podium_bin, a, podman.as_ref(), &mut notes).await
    }
    .await;

    // Clean-up, whatever happened: Podium's pods (and so its shims) before the server
    // stops, since containers outlive a stopped server by design.
    if let Err(e) = cleanup_podium(&srv).await {
        notes.push(format!("clean-up: {e:#}"));
        eprintln!("pods: clean-up: {e:#}");
    }
    let peak = server::peak_rss_bytes(srv.pid());
    if let Some(to) = &a.keep_server_log {
        if let Err(e) = std::fs::copy(&srv.log, to) {
            notes.push(format!("copying the server log to {}: {e}", to.display()));
        }
    }
    srv.stop();
    if let Some(p) = &podman {
        p.cleanup().await;
    }
    podman::unmount_under(tmp.path());
    if let Ok(r) = result.as_mut() {
        r.footprint.rss_peak_bytes = peak;
        notes.push(format!("load average at end: {}", load().trim()));
        r.notes.splice(0..0, notes);
        r.compute_ratios();
        r.compute_targets(a.startup_pods, a.burst_pods);
    }
    result
}

/// Deletes every pod of the server and waits until its shims are gone; kills leftovers.
async fn cleanup_podium(srv: &Spawned) -> anyhow::Result<()> {
    let target = Target::load(&srv.kubeconfig)?;
    let client = Client::connect(&target, 1, Duration::from_secs(60)).await?;
    let list = client
        .get("/api/v1/pods", crate::client::ACCEPT_JSON)
        .await?;
    let v: Value = serde_json::from_slice(&list.body).unwrap_or_default();
    for p in v["items"].as_array().into_iter().flatten() {
        let (ns, name) = (
            p["metadata"]["namespace"].as_str().unwrap_or_default(),
            p["metadata"]["name"].as_str().unwrap_or_default(),
        );
        if p["metadata"]["deletionTimestamp"].is_null() {
            let _ = client
                .delete(&format!("/api/v1/namespaces/{ns}/pods/{name}"))
                .await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = procs::shims(&srv.data_dir);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            // Our server's shims (and, once they are gone, their containers) by pid.
            for pid in &left {
                // SAFETY: kill(2) on a pid we found as this server's shim.
                unsafe {
                    libc::kill(*pid as libc::pid_t, libc::SIGKILL);
                }
            }
            anyhow::bail!("{} shims still running after 120 s; killed", left.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn body(
    srv: &Spawned,
    podium_bin: &Path,
    a: &PodBenchArgs,
    podman: Option<&Podman>,
    notes: &mut Vec<String>,
) -> anyhow::Result<PodsReport> {
    let target = Target::load(&srv.kubeconfig)?;
    let client = Client::connect(&target, 1, Duration::from_secs(60)).await?;
    let ctx = Ctx {
        client,
        target,
        server_pid: Some(srv.pid()),
        run_id: crate::run_id(),
        namespaces: Arc::new(Mutex::new(Vec::new())),
    };
    let p = Podium {
        ctx,
        server: srv,
        timeout: Duration::from_secs(a.pod_timeout_secs.max(10)),
    };
    let mut r = PodsReport {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine: Machine::detect(),
        settings: settings(a),
        ..Default::default()
    };
    // Idle: start-up work (node registration, controllers' first passes) settled.
    tokio::time::sleep(Duration::from_secs(2)).await;
    r.footprint = Footprint {
        binary_bytes: std::fs::metadata(podium_bin).ok().map(|m| m.len()),
        ready_ms: ms(srv.ready_after),
        rss_idle_bytes: p.rss(),
        ..Default::default()
    };
    let mut podman = podman;

    // Warm-up (untimed): the first start of each engine (podman builds its pause image).
    let ns_s = p.ctx.create_namespace("s").await?;
    let tr = Tracker::start(&p.ctx, &ns_s).await?;
    p.start_stop(&tr, &ns_s, "warm-0")
        .await
        .context("Podium warm-up pod")?;
    if let Some(pm) = podman {
        let y = pm.write_yaml("warm-0", &pods_yaml(&["warm-0".into()])?)?;
        let warm = async {
            pm.play(&y).await?;
            pm.down(&y).await
        };
        if let Err(e) = warm.await {
            notes.push(format!("podman dropped at warm-up: {e:#}"));
            podman = None;
        }
    }

    // 1. Start-up and teardown, pair by pair.
    let n = a.startup_pods;
    let mut start = vec![Latency::new(
        "podium",
        "POST /api/v1/namespaces/NS/pods -> watch: Running",
    )];
    let mut stop = vec![Latency::new(
        "podium",
        "DELETE /api/v1/namespaces/NS/pods/NAME -> watch: DELETED",
    )];
    if let Some(pm) = podman {
        let y = pm.write_yaml("example", &pods_yaml(&["s-00000".into()])?)?;
        start.push(Latency::new("podman", &pm.play_cmd(&y)));
        stop.push(Latency::new("podman", &pm.down_cmd(&y)));
    }
    let mut observed: Vec<(&str, Vec<Observed>)> = vec![("start-up", Vec::new())];
    let mut cpu = Duration::ZERO;
    eprintln!("pods: start-up + teardown, {n} pods per engine, pair by pair");
    for (i, name) in names("s", n).iter().enumerate() {
        let podium_first = i % 2 == 0;
        for turn in 0..2 {
            let is_podium = (turn == 0) == podium_first;
            if is_podium {
                let c0 = p.ctx.server_cpu();
                match p.start_stop(&tr, &ns_s, name).await {
                    Ok((up, down, sent, running)) => {
                        start[0].push(up);
                        stop[0].push(down);
                        observed[0].1.push(Observed {
                            pod: format!("{ns_s}/{name}"),
                            sent: sent.wall,
                            running: running.wall,
                        });
                    }
                    Err(e) => {
                        start[0].fail(format!("{e:#}"));
                        if start[0].samples_ms.is_empty() && start[0].errors >= 3 {
                            return Err(e.context("Podium pods do not start"));
                        }
                    }
                }
                cpu += p.ctx.server_cpu().saturating_sub(c0);
            } else if let (Some(pm), Some(l)) = (podman, start.get_mut(1)) {
                let y = pm.write_yaml(name, &pods_yaml(std::slice::from_ref(name))?)?;
                match pm.play(&y).await {
                    Ok(d) => {
                        l.push(d);
                        match pm.down(&y).await {
                            Ok(d) => stop[1].push(d),
                            Err(e) => stop[1].fail(format!("{e:#}")),
                        }
                    }
                    Err(e) => {
                        l.fail(format!("{e:#}"));
                        let _ = pm.down(&y).await;
                        if l.samples_ms.is_empty() && l.errors >= 3 {
                            notes.push(format!("podman dropped: 3 failed starts; first: {e:#}"));
                            podman = None;
                        }
                    }
                }
            }
        }
        if (i + 1) % 10 == 0 {
            eprintln!("  {}/{n} pairs", i + 1);
        }
    }
    r.server_cpu_ms.insert(
        "per pod start+delete (sequential)".into(),
        ms(cpu) / n.max(1) as f64,
    );
    for l in start.iter_mut().chain(stop.iter_mut()) {
        l.summarise();
    }
    drop(tr);
    if let Some(b) = p.rss() {
        r.footprint.rss_after.push(("start-up".into(), b));
    }

    r.startup = start;
    r.teardown = stop;

    // 2. Burst.
    let bn = a.burst_pods;
    if bn > 0 {
        let mut pb = Burst {
            engine: "podium".into(),
            how: format!(
                "{bn} POSTs in flight at once on one HTTP/2 connection; then {bn} DELETEs at once"
            ),
            pods: bn,
            ..Default::default()
        };
        let mut qb = podman.map(|_| Burst {
            engine: "podman".into(),
            how: format!("one `podman kube play --network none` of a {bn}-document YAML; then `podman kube down` of it"),
            pods: bn,
            ..Default::default()
        });
        let mut burst_cpu = Duration::ZERO;
        for rep in 1..=a.burst_repeats.max(1) {
            let order: [bool; 2] = if rep % 2 == 1 {
                [true, false]
            } else {
                [false, true]
            };
            for is_podium in order {
                if is_podium {
                    eprintln!("pods: burst {rep}: podium, {bn} pods");
                    let ns = p.ctx.create_namespace(&format!("b{rep}")).await?;
                    let names = names("b", bn);
                    let c0 = p.ctx.server_cpu();
                    let (mut run, seen) = p.burst(&ns, &names).await.context("Podium burst")?;
                    if observed.len() < 2 {
                        observed.push(("burst", Vec::new()));
                    }
                    observed[1].1.extend(seen);
                    burst_cpu += p.ctx.server_cpu().saturating_sub(c0);
                    // All running: the helpers' footprint, once settled.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    pb.overhead = Some(procs::podium_overhead(bn, &srv.data_dir));
                    if rep == 1 {
                        if let Some(b) = p.rss() {
                            r.footprint
                                .rss_after
                                .push((format!("{bn} pods running"), b));
                        }
                    }
                    run.delete_all_ms = ms(p
                        .delete_all(&ns, &names)
                        .await
                        .context("Podium burst delete")?);
                    eprintln!(
                        "  podium: all running after {:.0} ms, all gone {:.0} ms after the deletes",
                        run.total_ms, run.delete_all_ms
                    );
                    pb.runs.push(run);
                } else if let (Some(pm), Some(qb)) = (podman, qb.as_mut()) {
                    eprintln!("pods: burst {rep}: podman, {bn} pods");
                    let names = names(&format!("b{rep}"), bn);
                    let y = pm.write_yaml(&format!("burst-{rep}"), &pods_yaml(&names)?)?;
                    match pm.play(&y).await {
                        Ok(total) => {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            qb.overhead = Some(procs::podman_overhead(bn, &pm.root));
                            let mut run = BurstRun {
                                total_ms: ms(total),
                                pods_per_s: bn as f64 / total.as_secs_f64().max(1e-9),
                                delete_all_ms: 0.0,
                            };
                            match pm.down(&y).await {
                                Ok(d) => run.delete_all_ms = ms(d),
                                Err(e) => {
                                    notes.push(format!("podman burst {rep} kube down: {e:#}"))
                                }
                            }
                            eprintln!(
                                "  podman: kube play took {:.0} ms, kube down {:.0} ms",
                                run.total_ms, run.delete_all_ms
                            );
                            qb.runs.push(run);
                        }
                        Err(e) => {
                            notes.push(format!("podman burst {rep}: {e:#}"));
                            let _ = pm.down(&y).await;
                        }
                    }
                    if pm.pod_count().await.unwrap_or(0) > 0 {
                        pm.cleanup().await;
                    }
                }
            }
        }
        r.server_cpu_ms.insert(
            "per burst pod (create -> Running)".into(),
            ms(burst_cpu) / (bn * pb.runs.len()).max(1) as f64,
        );
        pb.summarise();
        r.bursts.push(pb);
        if let Some(mut qb) = qb {
            qb.summarise();
            r.bursts.push(qb);
        }
    }

    // 3. Density (Podium only).
    let dn = a.density_pods;
    if dn > 0 {
        eprintln!("pods: density: {dn} pods");
        let ns = p.ctx.create_namespace("d").await?;
        let names = names("d", dn);
        let (run, seen) = p.burst(&ns, &names).await.context("Podium density")?;
        observed.push(("density", seen));
        // Let the status writes and the workers settle before reading memory.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let overhead = procs::podium_overhead(dn, &srv.data_dir);
        let rss = p.rss().unwrap_or(0);
        r.footprint
            .rss_after
            .push((format!("{dn} pods running"), rss));
        let deleted = p
            .delete_all(&ns, &names)
            .await
            .context("Podium density delete")?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = p.rss();
        if let Some(b) = after {
            r.footprint
                .rss_after
                .push((format!("deleting the {dn} pods"), b));
        }
        eprintln!(
            "  all running after {:.1} s, RSS {:.1} MB, shims {:.1} MB PSS, all gone {:.1} s after the deletes",
            run.total_ms / 1000.0,
            report::mb(rss),
            report::mb(overhead.helpers_pss_bytes),
            deleted.as_secs_f64()
        );
        r.density = Some(Density {
            pods: dn,
            create_all_ms: run.total_ms,
            delete_all_ms: ms(deleted),
            server_rss_bytes: rss,
            server_rss_after_delete_bytes: after,
            overhead,
        });
    }

    // Where the time went, per scenario, from the agent's `pod started` lines.
    let log = std::fs::read_to_string(&srv.log).unwrap_or_default();
    let lines = parse_log(&log);
    if lines.is_empty() {
        notes.push(format!(
            "no `pod started` lines in the server log {} (an agent without the phase log line?)",
            srv.log.display()
        ));
    }
    let startup_p50 = r.startup.first().map(|l| l.p50_ms);
    for (scenario, pods) in &observed {
        let share = (*scenario == "start-up").then_some(startup_p50).flatten();
        let (phases, n) = phases_of(&lines, pods, share);
        if n > 0 {
            r.phases.push(ScenarioPhases {
                scenario: scenario.to_string(),
                pods: n,
                phases,
            });
        }
    }
    Ok(r)
}

fn settings(a: &PodBenchArgs) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("startup_pods".into(), a.startup_pods.to_string()),
        ("burst_pods".into(), a.burst_pods.to_string()),
        ("burst_repeats".into(), a.burst_repeats.to_string()),
        ("density_pods".into(), a.density_pods.to_string()),
        ("pod_peers".into(), a.pod_peers.join(",")),
        ("image".into(), IMAGE.into()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_doc_runs_the_cached_image_and_exits_on_term() {
        let v = pod_doc("s-00001");
        assert_eq!(v["metadata"]["name"], "s-00001");
        let c = &v["spec"]["containers"][0];
        assert_eq!(c["image"], IMAGE);
        assert_eq!(c["imagePullPolicy"], "Never");
        assert_eq!(c["command"][0], "sh");
        let script = c["command"][2].as_str().unwrap();
        assert!(script.starts_with("trap 'exit 0' TERM"), "{script}");
        // A foreground sleep would hold the trap back: it must be waited for.
        assert!(script.contains("sleep 3600 & wait"), "{script}");
    }

    #[test]
    fn yaml_has_one_document_per_pod() {
        let names = names("b", 3);
        assert_eq!(names, ["b-00000", "b-00001", "b-00002"]);
        let y = pods_yaml(&names).unwrap();
        assert_eq!(y.matches("---\n").count(), 3);
        let docs: Vec<Value> = y
            .split("---\n")
            .filter(|d| !d.trim().is_empty())
            .map(|d| serde_norway::from_str(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[2], pod_doc("b-00002"));
    }
}
