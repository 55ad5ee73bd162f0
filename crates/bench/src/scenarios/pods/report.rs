//! The pod benchmark's report: start-up and teardown latencies per engine (every sample,
//! p50, p99), bursts, density, the agent's per-phase timings, footprint, ratios against
//! podman from the same run, and each target of issue 5 with hit or miss. Printed as a
//! table or as JSON. Memory is in MB (10^6 bytes), as the targets are.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::agentlog::PhaseSummary;
use super::procs::Overhead;
use crate::report::Machine;
use crate::stats::percentile;

/// Latency samples of one operation of one engine.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub engine: String,
    pub command: String,
    pub samples_ms: Vec<f64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn new(engine: &str, command: &str) -> Latency {
        Latency {
            engine: engine.into(),
            command: command.into(),
            ..Default::default()
        }
    }

    pub fn push(&mut self, d: Duration) {
        self.samples_ms.push(d.as_secs_f64() * 1000.0);
    }

    pub fn fail(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    /// Fills p50/p99/min/max (nearest rank) from the samples.
    pub fn summarise(&mut self) {
        let mut d: Vec<Duration> = self
            .samples_ms
            .iter()
            .map(|m| Duration::from_secs_f64(m.max(0.0) / 1000.0))
            .collect();
        d.sort_unstable();
        let ms = |x: Option<Duration>| x.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0);
        self.p50_ms = ms(percentile(&d, 50.0));
        self.p99_ms = ms(percentile(&d, 99.0));
        self.min_ms = ms(d.first().copied());
        self.max_ms = ms(d.last().copied());
    }
}

/// One burst: N pods created at once until all run, then deleted at once until gone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BurstRun {
    pub total_ms: f64,
    pub pods_per_s: f64,
    pub delete_all_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Burst {
    pub engine: String,
    pub how: String,
    pub pods: usize,
    pub runs: Vec<BurstRun>,
    pub median_total_ms: f64,
    pub median_pods_per_s: f64,
    pub median_delete_all_ms: f64,
    /// Helper processes while all pods of the last run were running.
    pub overhead: Option<Overhead>,
}

impl Burst {
    pub fn summarise(&mut self) {
        let med = |f: fn(&BurstRun) -> f64| {
            crate::stats::median(&self.runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
        };
        self.median_total_ms = med(|r| r.total_ms);
        self.median_pods_per_s = med(|r| r.pods_per_s);
        self.median_delete_all_ms = med(|r| r.delete_all_ms);
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Density {
    pub pods: usize,
    pub create_all_ms: f64,
    pub delete_all_ms: f64,
    pub server_rss_bytes: u64,
    pub server_rss_after_delete_bytes: Option<u64>,
    pub overhead: Overhead,
}

/// The phases of one scenario's pods.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScenarioPhases {
    pub scenario: String,
    /// Pods with a `pod started` line.
    pub pods: usize,
    pub phases: Vec<PhaseSummary>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Footprint {
    pub binary_bytes: Option<u64>,
    pub ready_ms: f64,
    pub rss_idle_bytes: Option<u64>,
    pub rss_after: Vec<(String, u64)>,
    pub rss_peak_bytes: Option<u64>,
}

/// One target of issue 5.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub what: String,
    pub measured: String,
    /// `None`: not measured (why is in `measured`).
    pub hit: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PodsReport {
    pub date: String,
    pub machine: Machine,
    pub settings: BTreeMap<String, String>,
    pub startup: Vec<Latency>,
    pub teardown: Vec<Latency>,
    pub bursts: Vec<Burst>,
    pub density: Option<Density>,
    /// Per scenario (start-up, burst, density): the phases of its Podium pods.
    pub phases: Vec<ScenarioPhases>,
    pub footprint: Footprint,
    /// Server CPU per pod start+delete, per burst pod, … (ms).
    pub server_cpu_ms: BTreeMap<String, f64>,
    /// podman's median over Podium's median, same run (above 1: Podium is faster).
    pub ratios: BTreeMap<String, f64>,
    pub targets: Vec<Target>,
    pub notes: Vec<String>,
}

pub fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

fn find<'a>(v: &'a [Latency], engine: &str) -> Option<&'a Latency> {
    v.iter()
        .find(|l| l.engine == engine && !l.samples_ms.is_empty())
}

impl PodsReport {
    /// podman p50 / podium p50 for start-up, teardown and burst.
    pub fn compute_ratios(&mut self) {
        let mut m = BTreeMap::new();
        for (name, v) in [("startup", &self.startup), ("teardown", &self.teardown)] {
            if let (Some(p), Some(q)) = (find(v, "podium"), find(v, "podman")) {
                if p.p50_ms > 0.0 {
                    m.insert(format!("{name} p50: podman / podium"), q.p50_ms / p.p50_ms);
                }
                if p.p99_ms > 0.0 {
                    m.insert(format!("{name} p99: podman / podium"), q.p99_ms / p.p99_ms);
                }
            }
        }
        let b = |e: &str| {
            self.bursts
                .iter()
                .find(|b| b.engine == e && !b.runs.is_empty())
        };
        if let (Some(p), Some(q)) = (b("podium"), b("podman")) {
            if p.median_total_ms > 0.0 {
                m.insert(
                    "burst total: podman / podium".into(),
                    q.median_total_ms / p.median_total_ms,
                );
            }
            if let (Some(po), Some(qo)) = (&p.overhead, &q.overhead) {
                if po.per_pod_bytes() > 0.0 {
                    m.insert(
                        "per-pod helper PSS: podman / podium".into(),
                        qo.per_pod_bytes() / po.per_pod_bytes(),
                    );
                }
            }
        }
        self.ratios = m;
    }

    /// The targets of issue 5, with hit or miss.
    pub fn compute_targets(&mut self, startup_pods: usize, burst_pods: usize) {
        let mut t = Vec::new();
        let podium_start = find(&self.startup, "podium");
        t.push(match podium_start {
            Some(l) => Target {
                what: format!("start-up p50 <= 100 ms ({startup_pods} sequential pods)"),
                measured: format!("{:.1} ms (p99 {:.1} ms)", l.p50_ms, l.p99_ms),
                hit: Some(l.p50_ms <= 100.0),
            },
            None => not_measured("start-up p50 <= 100 ms", "no successful start"),
        });
        let what = "start-up >= 4x faster than podman kube play (p50, same run)";
        t.push(match (podium_start, find(&self.startup, "podman")) {
            (Some(p), Some(q)) if p.p50_ms > 0.0 => {
                let r = q.p50_ms / p.p50_ms;
                Target {
                    what: what.into(),
                    measured: format!("{r:.2}x ({:.1} vs {:.1} ms)", q.p50_ms, p.p50_ms),
                    hit: Some(r >= 4.0),
                }
            }
            _ => not_measured(what, "podman was not measured in this run"),
        });
        t.push(not_measured(
            "create -> Ready (readiness)",
            "probes not implemented",
        ));
        t.push(match find(&self.teardown, "podium") {
            Some(l) => Target {
                what: "teardown p50 <= 150 ms (delete -> object gone)".into(),
                measured: format!("{:.1} ms (p99 {:.1} ms)", l.p50_ms, l.p99_ms),
                hit: Some(l.p50_ms <= 150.0),
            },
            None => not_measured("teardown p50 <= 150 ms", "no successful teardown"),
        });
        let what = format!("burst of {burst_pods} pods <= 5 s (all Running)");
        t.push(
            match self
                .bursts
                .iter()
                .find(|b| b.engine == "podium" && !b.runs.is_empty())
            {
                Some(b) => Target {
                    what,
                    measured: format!(
                        "{:.2} s median ({:.1} pods/s)",
                        b.median_total_ms / 1000.0,
                        b.median_pods_per_s
                    ),
                    hit: Some(b.median_total_ms <= 5000.0),
                },
                None => not_measured(&what, "not run"),
            },
        );
        match &self.density {
            Some(d) => {
                t.push(Target {
                    what: format!("{} pods: server RSS <= 100 MB", d.pods),
                    measured: format!("{:.1} MB", mb(d.server_rss_bytes)),
                    hit: Some(d.server_rss_bytes <= 100_000_000),
                });
                let per = d.overhead.per_pod_bytes();
                t.push(Target {
                    what: format!("{} pods: per-pod overhead <= 1 MB PSS (shims)", d.pods),
                    measured: format!(
                        "{:.3} MB ({} shims, {:.1} MB in all)",
                        per / 1e6,
                        d.overhead.helpers,
                        mb(d.overhead.helpers_pss_bytes)
                    ),
                    hit: Some(per <= 1e6),
                });
            }
            None => t.push(not_measured("density", "not run")),
        }
        t.push(match self.footprint.rss_idle_bytes {
            Some(b) => Target {
                what: "idle server RSS <= 40 MB (agent enabled)".into(),
                measured: format!("{:.1} MB", mb(b)),
                hit: Some(b <= 40_000_000),
            },
            None => not_measured("idle server RSS <= 40 MB", "no reading"),
        });
        self.targets = t;
    }

    /// The human-readable rendering.
    pub fn table(&self) -> String {
        let mut o = crate::report::table_header(
            "podium-bench pods",
            &self.date,
            &self.machine,
            Some(&self.settings),
        );
        let _ = writeln!(
            o,
            "{:<26} {:>5} {:>6} {:>9} {:>9} {:>9} {:>9}",
            "latency", "pods", "errors", "p50 ms", "p99 ms", "min ms", "max ms"
        );
        for (what, v) in [("start-up", &self.startup), ("teardown", &self.teardown)] {
            for l in v.iter() {
                let _ = writeln!(
                    o,
                    "{:<26} {:>5} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                    format!("{what} {}", l.engine),
                    l.samples_ms.len(),
                    l.errors,
                    l.p50_ms,
                    l.p99_ms,
                    l.min_ms,
                    l.max_ms
                );
            }
        }
        let _ = writeln!(
            o,
            "(start-up: create sent -> Running with every container running; teardown: delete sent -> object gone; nearest rank)"
        );
        for l in self.startup.iter().chain(&self.teardown) {
            if let Some(e) = &l.first_error {
                let _ = writeln!(o, "  {} errors: {} (first: {e})", l.engine, l.errors);
            }
        }
        if !self.bursts.is_empty() {
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "{:<26} {:>5} {:>5} {:>10} {:>9} {:>14}",
                "burst", "pods", "runs", "total ms", "pods/s", "delete all ms"
            );
            for b in &self.bursts {
                let _ = writeln!(
                    o,
                    "{:<26} {:>5} {:>5} {:>10.0} {:>9.1} {:>14.0}",
                    format!("burst {}", b.engine),
                    b.pods,
                    b.runs.len(),
                    b.median_total_ms,
                    b.median_pods_per_s,
                    b.median_delete_all_ms
                );
            }
            for b in &self.bursts {
                let runs: Vec<String> = b
                    .runs
                    .iter()
                    .map(|r| format!("{:.0}", r.total_ms))
                    .collect();
                let _ = writeln!(
                    o,
                    "  {}: total ms per run [{}]; {}",
                    b.engine,
                    runs.join(", "),
                    b.how
                );
                if let Some(ov) = &b.overhead {
                    let _ = writeln!(o, "    {}", overhead_line(ov));
                }
            }
        }
        if let Some(d) = &self.density {
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "density podium: {} pods, create all -> Running {:.1} s, delete all -> gone {:.1} s",
                d.pods,
                d.create_all_ms / 1000.0,
                d.delete_all_ms / 1000.0
            );
            let _ = writeln!(
                o,
                "  server RSS with {} pods: {:.1} MB{}",
                d.pods,
                mb(d.server_rss_bytes),
                d.server_rss_after_delete_bytes
                    .map(|b| format!(" (after deleting them: {:.1} MB)", mb(b)))
                    .unwrap_or_default()
            );
            let _ = writeln!(o, "  {}", overhead_line(&d.overhead));
        }
        if !self.phases.is_empty() {
            let _ = writeln!(o);
            let mut head = format!("{:<18}", "phase (podium)");
            for sp in &self.phases {
                let _ = write!(
                    head,
                    " | {:>23}",
                    format!("{} ({} pods)", sp.scenario, sp.pods)
                );
            }
            let _ = writeln!(o, "{head}");
            let mut sub = format!("{:<18}", "ms");
            for _ in &self.phases {
                let _ = write!(sub, " | {:>7} {:>7} {:>7}", "p50", "p99", "share");
            }
            let _ = writeln!(o, "{sub}");
            let mut order: Vec<&str> = Vec::new();
            for sp in &self.phases {
                for p in &sp.phases {
                    if !order.contains(&p.phase.as_str()) {
                        order.push(&p.phase);
                    }
                }
            }
            for ph in order {
                let mut line = format!("{ph:<18}");
                for sp in &self.phases {
                    match sp.phases.iter().find(|p| p.phase == ph) {
                        Some(p) => {
                            let _ = write!(
                                line,
                                " | {:>7.2} {:>7.2} {:>7}",
                                p.p50_ms,
                                p.p99_ms,
                                p.share_of_startup
                                    .map(|s| format!("{:.0}%", s * 100.0))
                                    .unwrap_or_default()
                            );
                        }
                        None => {
                            let _ = write!(line, " | {:>23}", "");
                        }
                    }
                }
                let _ = writeln!(o, "{line}");
            }
            let _ = writeln!(
                o,
                "(agent phases from its `pod started` log lines; before_worker and status_and_watch from the line's timestamp and the bench's clock; share = p50 / start-up p50)"
            );
        }
        let f = &self.footprint;
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "footprint: binary {}  ready after {:.0} ms  idle RSS (agent enabled) {}",
            f.binary_bytes
                .map(|b| format!("{:.1} MB", mb(b)))
                .unwrap_or_else(|| "n/a".into()),
            f.ready_ms,
            f.rss_idle_bytes
                .map(|b| format!("{:.1} MB", mb(b)))
                .unwrap_or_else(|| "n/a".into())
        );
        for (k, b) in &f.rss_after {
            let _ = writeln!(o, "  server RSS after {k}: {:.1} MB", mb(*b));
        }
        if let Some(b) = f.rss_peak_bytes {
            let _ = writeln!(o, "  server peak RSS: {:.1} MB", mb(b));
        }
        for (k, v) in &self.server_cpu_ms {
            let _ = writeln!(o, "  server CPU {k}: {v:.1} ms");
        }
        if !self.ratios.is_empty() {
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "ratios (same run; above 1: Podium is faster or smaller):"
            );
            for (k, v) in &self.ratios {
                let _ = writeln!(o, "  {k}: {v:.2}");
            }
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "targets (issue 5):");
        for t in &self.targets {
            let mark = match t.hit {
                Some(true) => "hit ",
                Some(false) => "MISS",
                None => "n/a ",
            };
            let _ = writeln!(o, "  [{mark}] {}: {}", t.what, t.measured);
        }
        for n in &self.notes {
            let _ = writeln!(o, "note: {n}");
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "commands:");
        for l in self.startup.iter().chain(&self.teardown) {
            let _ = writeln!(o, "  {}: {}", l.engine, l.command);
        }
        o
    }
}

fn not_measured(what: &str, why: &str) -> Target {
    Target {
        what: what.into(),
        measured: format!("not measured: {why}"),
        hit: None,
    }
}

fn overhead_line(ov: &Overhead) -> String {
    let mut s = format!(
        "per-pod overhead {:.3} MB PSS: {} helper processes {:.1} MB",
        ov.per_pod_bytes() / 1e6,
        ov.helpers,
        mb(ov.helpers_pss_bytes)
    );
    if ov.infra > 0 {
        let _ = write!(
            s,
            " + {} infra processes {:.1} MB",
            ov.infra,
            mb(ov.infra_pss_bytes)
        );
    }
    let _ = write!(
        s,
        " over {} pods (the containers' own processes: {:.1} MB)",
        ov.pods,
        mb(ov.workload_pss_bytes)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lat(engine: &str, samples: &[f64]) -> Latency {
        let mut l = Latency::new(engine, "cmd");
        l.samples_ms = samples.to_vec();
        l.summarise();
        l
    }

    #[test]
    fn latency_summary_is_nearest_rank() {
        let l = lat("podium", &[30.0, 10.0, 20.0, 40.0]);
        assert_eq!(l.p50_ms, 20.0);
        assert_eq!(l.p99_ms, 40.0);
        assert_eq!(l.min_ms, 10.0);
        assert_eq!(l.max_ms, 40.0);
    }

    #[test]
    fn ratios_and_targets() {
        let mut r = PodsReport {
            startup: vec![lat("podium", &[50.0]), lat("podman", &[400.0])],
            teardown: vec![lat("podium", &[200.0]), lat("podman", &[3000.0])],
            footprint: Footprint {
                rss_idle_bytes: Some(20_000_000),
                ..Default::default()
            },
            density: Some(Density {
                pods: 250,
                server_rss_bytes: 120_000_000,
                overhead: Overhead {
                    pods: 250,
                    helpers: 250,
                    helpers_pss_bytes: 200_000_000,
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        r.compute_ratios();
        assert_eq!(r.ratios["startup p50: podman / podium"], 8.0);
        assert_eq!(r.ratios["teardown p50: podman / podium"], 15.0);
        r.compute_targets(50, 100);
        let hit = |prefix: &str| {
            r.targets
                .iter()
                .find(|t| t.what.starts_with(prefix))
                .unwrap()
                .hit
        };
        assert_eq!(hit("start-up p50"), Some(true));
        assert_eq!(hit("start-up >= 4x"), Some(true));
        assert_eq!(hit("create -> Ready"), None);
        assert_eq!(hit("teardown"), Some(false));
        assert_eq!(hit("burst"), None);
        assert_eq!(hit("250 pods: server RSS"), Some(false));
        assert_eq!(hit("250 pods: per-pod"), Some(true));
        assert_eq!(hit("idle server RSS"), Some(true));
        let t = r.table();
        assert!(t.contains("[MISS] teardown"), "{t}");
        assert!(t.contains("not measured: probes not implemented"), "{t}");
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["startup"][0]["engine"], "podium");
    }
}
