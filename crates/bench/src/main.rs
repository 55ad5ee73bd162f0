//! `podium-bench`: benchmarks a Podium server on this machine. It starts its own
//! `podium server` (temporary data dir, loopback port, agent disabled) unless given a
//! kubeconfig, runs the scenarios of [`scenarios`], and prints a table or JSON. `--only
//! images` and `--only pods` are benchmarks of their own with their own servers and peers.
//! This is a benchmark, not a test: it asserts nothing about speed (the pod benchmark
//! prints its targets with hit or miss). See docs/benchmarks.md.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod client;
mod report;
mod scenarios;
mod server;
mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;

use client::{Client, Target};
use report::{Footprint, Machine, Report};
use scenarios::api::{self, ApiSettings};
use scenarios::Ctx;

#[derive(Parser, Debug)]
#[command(name = "podium-bench", version, about = "Benchmarks a Podium server")]
struct Args {
    /// Benchmark an existing server through this kubeconfig instead of starting one.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The existing server's pid, for RSS and CPU readings (with --kubeconfig).
    #[arg(long, requires = "kubeconfig")]
    server_pid: Option<u32>,
    /// The podium binary to start (default: `podium` beside this binary).
    #[arg(long)]
    podium_bin: Option<PathBuf>,
    /// Pods created per create run; the LIST scenario lists this many.
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// Requests in flight for create and GET.
    #[arg(long, short = 'c', default_value_t = 32)]
    concurrency: usize,
    /// Seconds of GETs per run.
    #[arg(long, default_value_t = 5.0)]
    get_seconds: f64,
    /// Lists per run and per format (JSON, Table).
    #[arg(long, default_value_t = 20)]
    lists: usize,
    #[arg(long, default_value_t = 1)]
    list_concurrency: usize,
    /// Watchers in the fan-out scenario.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Connections the watchers spread over (default: one per watcher, like separate
    /// clients).
    #[arg(long)]
    watch_connections: Option<usize>,
    /// Pods created while the watchers watch.
    #[arg(long, default_value_t = 100)]
    watch_events: usize,
    /// Creates in flight during the watch scenario (1: one after another, so the latency
    /// is commit + fan-out, not queueing behind other creates).
    #[arg(long, default_value_t = 1)]
    watch_create_concurrency: usize,
    /// Runs of each scenario; the report shows their median.
    #[arg(long, short = 'r', default_value_t = 3)]
    repeats: usize,
    /// HTTP/2 connections for the request scenarios (client-go uses one).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Threads of the bench's own runtime (the server and the bench share 2 cores here).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Only these scenarios (comma-separated: create,get,list,watch; `images` is the
    /// image pull benchmark, which needs no server, and `pods` the pod benchmark, which
    /// starts its own server with its agent; neither is in the default set).
    #[arg(long, value_delimiter = ',', default_value = "create,get,list,watch")]
    only: Vec<String>,
    #[command(flatten)]
    images: scenarios::images::ImageBenchArgs,
    #[command(flatten)]
    pods_args: scenarios::pods::PodBenchArgs,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Keep the namespaces created on an existing server (default: delete them).
    #[arg(long)]
    keep: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}", (nanos as u64) & 0xff_ffff)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let wants = |s: &str| args.only.iter().any(|o| o == s);
    anyhow::ensure!(
        !(wants("get") || wants("list")) || wants("create"),
        "get and list read the pods of the create scenario: include create"
    );
    let podium_bin = args
        .podium_bin
        .clone()
        .unwrap_or_else(server::default_podium_bin);
    if wants("images") {
        let only_images = args.only.iter().all(|o| o == "images");
        anyhow::ensure!(
            only_images || !args.json,
            "with --json, run --only images on its own"
        );
        let r = scenarios::images::run(&podium_bin, &args.images).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            print!("{}", r.table());
        }
        if only_images {
            return Ok(());
        }
    }
    if wants("pods") {
        let only_pods = args.only.iter().all(|o| o == "pods");
        anyhow::ensure!(
            only_pods || !args.json,
            "with --json, run --only pods on its own"
        );
        let r = scenarios::pods::run(
            &podium_bin,
            &args.pods_args,
            &args.images.podman_storage_driver,
        )
        .await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            print!("{}", r.table());
        }
        if only_pods {
            return Ok(());
        }
    }
    if args.only.iter().all(|o| o == "images" || o == "pods") {
        return Ok(());
    }
    let mut footprint = Footprint {
        binary_bytes: std::fs::metadata(&podium_bin).ok().map(|m| m.len()),
        ..Default::default()
    };
    let (mut spawned, target, pid) = match &args.kubeconfig {
        Some(kc) => (None, Target::load(kc)?, args.server_pid),
        None => {
            eprintln!("starting {}", podium_bin.display());
            let s = server::spawn(
                &podium_bin,
                &server::SpawnOptions::api(),
                Duration::from_secs(30),
            )
            .await?;
            footprint.ready_ms = Some(s.ready_after.as_secs_f64() * 1000.0);
            let t = Target::load(&s.kubeconfig)?;
            let pid = s.pid();
            eprintln!(
                "server pid {pid} ready after {:.0} ms (log {})",
                s.ready_after.as_secs_f64() * 1000.0,
                s.log.display()
            );
            (Some(s), t, Some(pid))
        }
    };
    let client = Client::connect(&target, args.connections, Duration::from_secs(60))
        .await
        .context("connecting to the server")?;
    let ctx = Ctx {
        client,
        target,
        server_pid: pid,
        run_id: run_id(),
        namespaces: Arc::new(Mutex::new(Vec::new())),
    };
    // Let start-up work (controllers' first passes) settle before the idle reading.
    tokio::time::sleep(Duration::from_secs(1)).await;
    footprint.rss_idle_bytes = pid.and_then(server::rss_bytes);

    let settings = ApiSettings {
        pods: args.pods,
        concurrency: args.concurrency,
        get_duration: Duration::from_secs_f64(args.get_seconds.max(0.1)),
        lists: args.lists,
        list_concurrency: args.list_concurrency,
        watchers: args.watchers,
        watch_connections: args.watch_connections.unwrap_or(args.watchers),
        watch_events: args.watch_events,
        watch_create_concurrency: args.watch_create_concurrency,
        repeats: args.repeats.max(1),
    };
    let result = scenarios_run(&ctx, &settings, &wants, &mut footprint).await;
    footprint.rss_peak_bytes = pid.and_then(server::peak_rss_bytes);
    if spawned.is_none() && !args.keep {
        cleanup(&ctx).await;
    }
    if let Some(s) = spawned.as_mut() {
        s.stop();
    }
    let scenarios = result?;

    let mut report = Report {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine: Machine::detect(),
        settings: settings_map(&args),
        footprint,
        scenarios,
        ratios: BTreeMap::new(),
    };
    report.ratios = ratios(&report);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

async fn scenarios_run(
    ctx: &Ctx,
    s: &ApiSettings,
    wants: &dyn Fn(&str) -> bool,
    footprint: &mut Footprint,
) -> anyhow::Result<Vec<report::Scenario>> {
    let mut out = Vec::new();
    let rss = |name: &str, fp: &mut Footprint| {
        if let Some(b) = ctx.server_pid.and_then(server::rss_bytes) {
            fp.rss_after.push((name.to_string(), b));
        }
    };
    if wants("create") {
        eprintln!("create: {} pods x {} runs", s.pods, s.repeats);
        let (sc, ns) = api::create(ctx, s).await?;
        out.push(sc);
        rss("create", footprint);
        if wants("get") {
            eprintln!("get: {:?} x {} runs", s.get_duration, s.repeats);
            out.push(api::get(ctx, s, &ns).await?);
            rss("get", footprint);
        }
        if wants("list") {
            eprintln!(
                "list: {} lists x {} runs, JSON then Table",
                s.lists, s.repeats
            );
            out.push(api::list(ctx, s, &ns, false).await?);
            out.push(api::list(ctx, s, &ns, true).await?);
            rss("list", footprint);
        }
    }
    if wants("watch") {
        eprintln!(
            "watch: {} watchers x {} creates x {} runs",
            s.watchers, s.watch_events, s.repeats
        );
        out.push(api::watch_fanout(ctx, s).await?);
        rss("watch", footprint);
    }
    Ok(out)
}

/// Deletes the namespaces this run made on a server we did not start.
async fn cleanup(ctx: &Ctx) {
    let names = ctx.namespaces.lock().map(|v| v.clone()).unwrap_or_default();
    for ns in names {
        match ctx.client.delete(&format!("/api/v1/namespaces/{ns}")).await {
            Ok(a) if a.status.is_success() => {}
            Ok(a) => eprintln!("deleting namespace {ns}: {}", a.status),
            Err(e) => eprintln!("deleting namespace {ns}: {e}"),
        }
    }
}

fn settings_map(a: &Args) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    put("pods", a.pods.to_string());
    put("concurrency", a.concurrency.to_string());
    put("get_seconds", a.get_seconds.to_string());
    put("lists", a.lists.to_string());
    put("list_concurrency", a.list_concurrency.to_string());
    put("watchers", a.watchers.to_string());
    put(
        "watch_connections",
        a.watch_connections.unwrap_or(a.watchers).to_string(),
    );
    put("watch_events", a.watch_events.to_string());
    put(
        "watch_create_concurrency",
        a.watch_create_concurrency.to_string(),
    );
    put("repeats", a.repeats.to_string());
    put("connections", a.connections.to_string());
    put("client_threads", a.client_threads.to_string());
    put(
        "server",
        if a.kubeconfig.is_some() {
            "existing".into()
        } else {
            "spawned".into()
        },
    );
    m
}

/// Ratios of medians from the same run (more stable across runs than absolutes).
fn ratios(r: &Report) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let get = |n: &str| r.scenario(n).map(|s| s.median.clone());
    if let (Some(g), Some(c)) = (get("get"), get("create")) {
        if c.throughput > 0.0 {
            m.insert(
                "get_per_s / create_per_s".into(),
                g.throughput / c.throughput,
            );
        }
    }
    if let (Some(t), Some(j)) = (get("list-table"), get("list-json")) {
        if j.p50_ms > 0.0 {
            m.insert("list_table_p50 / list_json_p50".into(), t.p50_ms / j.p50_ms);
        }
    }
    if let (Some(j), Some(g)) = (get("list-json"), get("get")) {
        if g.p50_ms > 0.0 {
            m.insert("list_json_p50 / get_p50".into(), j.p50_ms / g.p50_ms);
        }
    }
    if let (Some(after), Some(idle)) = (
        r.footprint.rss_after.last().map(|x| x.1),
        r.footprint.rss_idle_bytes,
    ) {
        if idle > 0 {
            m.insert("rss_after / rss_idle".into(), after as f64 / idle as f64);
        }
    }
    m
}
