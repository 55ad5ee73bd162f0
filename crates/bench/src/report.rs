//! The benchmark report: machine facts, settings, footprint, per-scenario results (every
//! run and their median) and ratios; printed as a readable table or as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::RunStats;

#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub what: String,
    /// Median of the runs, field by field.
    pub median: RunStats,
    pub runs: Vec<RunStats>,
    /// Scenario-specific figures (response bytes, server CPU per op, …).
    pub notes: BTreeMap<String, f64>,
}

impl Scenario {
    pub fn new(name: &str, what: &str, runs: Vec<RunStats>, median: RunStats) -> Self {
        Scenario {
            name: name.to_string(),
            what: what.to_string(),
            median,
            runs,
            notes: BTreeMap::new(),
        }
    }

    pub fn note(&mut self, key: &str, value: f64) {
        self.notes.insert(key.to_string(), value);
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub os: String,
    pub kernel: String,
    pub memory_bytes: u64,
    pub virtualised: bool,
}

impl Machine {
    pub fn detect() -> Machine {
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
            })
            .map(|kb| kb * 1024)
            .unwrap_or(0);
        // The "hypervisor" CPU flag is set inside virtual machines.
        let virtualised = std::fs::read_to_string("/proc/cpuinfo")
            .map(|t| t.contains(" hypervisor"))
            .unwrap_or(false);
        Machine {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            os,
            kernel,
            memory_bytes,
            virtualised,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Footprint {
    pub binary_bytes: Option<u64>,
    /// Spawn to ready, when the bench started the server.
    pub ready_ms: Option<f64>,
    pub rss_idle_bytes: Option<u64>,
    /// After each scenario, in order.
    pub rss_after: Vec<(String, u64)>,
    pub rss_peak_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub date: String,
    pub machine: Machine,
    pub settings: BTreeMap<String, String>,
    pub footprint: Footprint,
    pub scenarios: Vec<Scenario>,
    pub ratios: BTreeMap<String, f64>,
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// The first lines of every report's table: what ran, when, on which machine, and the
/// settings (if any) as `key=value`.
pub fn table_header(
    what: &str,
    date: &str,
    m: &Machine,
    settings: Option<&BTreeMap<String, String>>,
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{what} {date}  |  {} cores, {}, kernel {}, {:.1} GiB RAM{}",
        m.cores,
        m.os,
        m.kernel,
        m.memory_bytes as f64 / (1u64 << 30) as f64,
        if m.virtualised { ", VM" } else { "" }
    );
    if let Some(settings) = settings {
        let kv: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(o, "settings: {}", kv.join(" "));
        let _ = writeln!(o);
    }
    o
}

impl Report {
    pub fn scenario(&self, name: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|s| s.name == name)
    }

    /// The human-readable rendering.
    pub fn table(&self) -> String {
        let mut o = table_header(
            "podium-bench",
            &self.date,
            &self.machine,
            Some(&self.settings),
        );
        let _ = writeln!(
            o,
            "{:<16} {:>4} {:>7} {:>6} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8}",
            "scenario",
            "runs",
            "count",
            "errors",
            "wall ms",
            "ops/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms"
        );
        for s in &self.scenarios {
            let r = &s.median;
            let _ = writeln!(
                o,
                "{:<16} {:>4} {:>7} {:>6} {:>9.0} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                s.name,
                s.runs.len(),
                r.count,
                r.errors,
                r.wall_ms,
                r.throughput,
                r.p50_ms,
                r.p90_ms,
                r.p99_ms,
                r.max_ms
            );
        }
        let _ = writeln!(o, "(each row: the median of the runs, field by field)");
        let _ = writeln!(o);
        for s in &self.scenarios {
            let tps: Vec<String> = s
                .runs
                .iter()
                .map(|r| format!("{:.1}", r.throughput))
                .collect();
            let mut line = format!("{:<16} ops/s per run [{}]", s.name, tps.join(", "));
            for (k, v) in &s.notes {
                let _ = write!(line, "  {k}={v:.3}");
            }
            let _ = writeln!(o, "{line}");
        }
        let _ = writeln!(o);
        let f = &self.footprint;
        let opt = |b: Option<u64>| b.map(mib).unwrap_or_else(|| "n/a".into());
        let _ = writeln!(o, "footprint: binary {}", opt(f.binary_bytes));
        if let Some(ms) = f.ready_ms {
            let _ = writeln!(o, "  server ready after start: {ms:.0} ms");
        }
        let _ = writeln!(o, "  server RSS idle: {}", opt(f.rss_idle_bytes));
        for (name, b) in &f.rss_after {
            let _ = writeln!(o, "  server RSS after {name}: {}", mib(*b));
        }
        let _ = writeln!(o, "  server peak RSS: {}", opt(f.rss_peak_bytes));
        if !self.ratios.is_empty() {
            let _ = writeln!(o);
            let _ = writeln!(o, "ratios (same run):");
            for (k, v) in &self.ratios {
                let _ = writeln!(o, "  {k}: {v:.2}");
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_every_scenario_and_footprint() {
        let run = RunStats {
            count: 1000,
            throughput: 512.5,
            p50_ms: 1.25,
            ..Default::default()
        };
        let mut s = Scenario::new("create", "creates", vec![run.clone()], run);
        s.note("server_cpu_ms_per_op", 0.5);
        let r = Report {
            date: "2025-01-01".into(),
            machine: Machine {
                cores: 2,
                ..Default::default()
            },
            settings: BTreeMap::new(),
            footprint: Footprint {
                binary_bytes: Some(10 * 1024 * 1024),
                rss_idle_bytes: Some(20 * 1024 * 1024),
                ..Default::default()
            },
            scenarios: vec![s],
            ratios: BTreeMap::from([("get_per_create".to_string(), 3.0)]),
        };
        let t = r.table();
        assert!(t.contains("create"), "{t}");
        assert!(t.contains("512.5"), "{t}");
        assert!(t.contains("server_cpu_ms_per_op=0.500"), "{t}");
        assert!(t.contains("binary 10.0 MiB"), "{t}");
        assert!(t.contains("RSS idle: 20.0 MiB"), "{t}");
        assert!(t.contains("get_per_create: 3.00"), "{t}");
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["scenarios"][0]["median"]["count"], 1000);
    }
}
