//! Where a pod start's time goes, from the node agent's own account: parses the `pod
//! started` lines the agent's pod worker logs once per pod (crates/agent/src/worker.rs,
//! `StartTimes`) out of the server log, and summarises each phase (median and p99 over the
//! pods of a scenario).
//!
//! The line looks like (tracing's default format, colours off):
//!
//! ```text
//! 2026-11-29T14:00:00.123456Z  INFO podium_agent::worker: pod started pod=ns/p-00001 sandbox_ms=3.10 volumes_ms=0.20 … total_ms=25.00
//! ```
//!
//! Every `key=value` after `pod=` whose key ends in `_ms` is a phase, in the order the
//! agent logs them, so phases the agent adds later show up without a change here. The
//! timestamp (the wall clock when the worker saw the last container start) lets the bench
//! split the rest of the start-up latency, which the worker cannot see, in two: before the
//! worker (API create, scheduling, binding, the agent's watch) and after it (the status
//! write and the watch event back to the client).

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One `pod started` line.
#[derive(Debug, Clone, PartialEq)]
pub struct StartLine {
    pub at: DateTime<Utc>,
    /// `namespace/name`.
    pub pod: String,
    /// `(phase, ms)` in logged order, `_ms` suffix removed.
    pub phases: Vec<(String, f64)>,
}

impl StartLine {
    pub fn phase(&self, key: &str) -> Option<f64> {
        self.phases.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    pub fn wall(&self) -> SystemTime {
        SystemTime::from(self.at)
    }
}

/// Removes ANSI escape sequences (`ESC [ … letter`), in case colours were on.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses one log line; `None` for any other line.
pub fn parse_line(line: &str) -> Option<StartLine> {
    let line = strip_ansi(line);
    let (head, rest) = line.split_once("pod started ")?;
    let at = head.split_whitespace().next()?;
    let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
    let mut pod = None;
    let mut phases = Vec::new();
    for kv in rest.split_whitespace() {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        if k == "pod" {
            pod = Some(v.to_string());
        } else if let Some(name) = k.strip_suffix("_ms") {
            phases.push((name.to_string(), v.parse().ok()?));
        }
    }
    Some(StartLine {
        at,
        pod: pod?,
        phases,
    })
}

/// Every `pod started` line of a log text.
pub fn parse_log(text: &str) -> Vec<StartLine> {
    text.lines().filter_map(parse_line).collect()
}

/// One phase over many pods.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhaseSummary {
    pub phase: String,
    pub pods: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// This phase's median over the median start-up latency.
    pub share_of_startup: Option<f64>,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let d: Vec<Duration> = sorted
        .iter()
        .map(|v| Duration::from_secs_f64(v.max(0.0) / 1000.0))
        .collect();
    crate::stats::percentile(&d, p)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Median and p99 of each phase, in the order of the first line's phases, followed by
/// the `extra` phases the bench measured itself (name → one value per pod).
pub fn summarise(
    lines: &[StartLine],
    extra: &[(String, Vec<f64>)],
    startup_p50_ms: Option<f64>,
) -> Vec<PhaseSummary> {
    let mut order: Vec<String> = Vec::new();
    for l in lines {
        for (k, _) in &l.phases {
            if !order.contains(k) {
                order.push(k.clone());
            }
        }
    }
    let mut columns: Vec<(String, Vec<f64>)> = order
        .into_iter()
        .map(|k| {
            let v = lines.iter().filter_map(|l| l.phase(&k)).collect();
            (k, v)
        })
        .collect();
    columns.extend(extra.iter().cloned());
    columns
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(phase, mut v)| {
            v.sort_by(|a, b| a.total_cmp(b));
            let p50 = pct(&v, 50.0);
            PhaseSummary {
                phase,
                pods: v.len(),
                p50_ms: p50,
                p99_ms: pct(&v, 99.0),
                share_of_startup: startup_p50_ms.filter(|t| *t > 0.0).map(|t| p50 / t),
            }
        })
        .collect()
}

/// One pod as the bench saw it: `namespace/name`, when its create was sent and when the
/// watch showed it Running (wall clock).
#[derive(Debug, Clone)]
pub struct Observed {
    pub pod: String,
    pub sent: SystemTime,
    pub running: SystemTime,
}

/// The phases of the `observed` pods: the agent's own, then `before_worker` (create sent
/// → the worker's admission: API create, scheduling and binding, the agent's watch, the
/// worker's spawn) and `status_and_watch` (the last container started → the bench saw
/// Running: the status write and the watch event back), from the line's timestamp and
/// `total_ms`.
pub fn phases_of(
    lines: &[StartLine],
    observed: &[Observed],
    startup_p50_ms: Option<f64>,
) -> (Vec<PhaseSummary>, usize) {
    let by_pod: std::collections::HashMap<&str, &Observed> =
        observed.iter().map(|o| (o.pod.as_str(), o)).collect();
    let mine: Vec<StartLine> = lines
        .iter()
        .filter(|l| by_pod.contains_key(l.pod.as_str()))
        .cloned()
        .collect();
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for l in &mine {
        if let Some(o) = by_pod.get(l.pod.as_str()) {
            before.push(wall_ms(o.sent, l.wall()) - l.phase("total").unwrap_or(0.0));
            after.push(wall_ms(l.wall(), o.running));
        }
    }
    let extra = [
        ("before_worker".to_string(), before),
        ("status_and_watch".to_string(), after),
    ];
    (summarise(&mine, &extra, startup_p50_ms), mine.len())
}

/// Milliseconds from `a` to `b` on the wall clock (negative when `b` is earlier).
pub fn wall_ms(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -(e.duration().as_secs_f64() * 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "2026-11-29T14:00:00.123456Z  INFO podium_agent::worker: pod started pod=bench-1-s/s-00003 sandbox_ms=3.10 volumes_ms=0.25 image_ms=1.00 rootfs_ms=4.50 config_ms=0.75 create_start_ms=12.00 events_ms=2.00 total_ms=24.00";

    #[test]
    fn parses_the_agent_line() {
        let l = parse_line(LINE).unwrap();
        assert_eq!(l.pod, "bench-1-s/s-00003");
        assert_eq!(l.phases.len(), 8);
        assert_eq!(l.phases[0], ("sandbox".to_string(), 3.10));
        assert_eq!(l.phase("create_start"), Some(12.0));
        assert_eq!(l.phase("total"), Some(24.0));
        assert_eq!(
            l.at,
            DateTime::parse_from_rfc3339("2026-11-29T14:00:00.123456Z").unwrap()
        );
    }

    #[test]
    fn parses_coloured_lines_and_skips_others() {
        let coloured = "\u{1b}[2m2026-11-29T14:00:00.5Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[2mpodium_agent::worker\u{1b}[0m\u{1b}[2m:\u{1b}[0m pod started pod=a/b sandbox_ms=1 total_ms=2";
        let l = parse_line(coloured).unwrap();
        assert_eq!(l.pod, "a/b");
        assert_eq!(
            l.phases,
            vec![("sandbox".into(), 1.0), ("total".into(), 2.0)]
        );
        assert!(parse_line("2026-11-29T14:00:00Z  WARN x: pod a/b: sandbox: boom").is_none());
        assert!(parse_line("pod started pod=a/b sandbox_ms=1").is_none());
        let text = format!("noise\n{LINE}\nmore noise\n");
        assert_eq!(parse_log(&text).len(), 1);
    }

    #[test]
    fn summary_keeps_order_and_adds_bench_phases() {
        let mut lines = Vec::new();
        for i in 1..=4 {
            let mut l = parse_line(LINE).unwrap();
            l.phases = vec![
                ("sandbox".into(), i as f64),
                ("total".into(), 10.0 * i as f64),
            ];
            lines.push(l);
        }
        let extra = vec![("status_and_watch".to_string(), vec![5.0, 6.0, 7.0, 8.0])];
        let s = summarise(&lines, &extra, Some(40.0));
        let names: Vec<&str> = s.iter().map(|p| p.phase.as_str()).collect();
        assert_eq!(names, ["sandbox", "total", "status_and_watch"]);
        assert_eq!(s[0].p50_ms, 2.0);
        assert_eq!(s[0].p99_ms, 4.0);
        assert_eq!(s[1].share_of_startup, Some(0.5));
        assert_eq!(s[2].pods, 4);
    }

    #[test]
    fn bench_side_phases_come_from_the_line_timestamp() {
        let l = parse_line(LINE).unwrap(); // total_ms=24, at 14:00:00.123456
        let at = l.wall();
        let o = Observed {
            pod: l.pod.clone(),
            sent: at - Duration::from_millis(30),
            running: at + Duration::from_millis(2),
        };
        let other = Observed {
            pod: "x/y".into(),
            ..o.clone()
        };
        let (s, n) = phases_of(&[l], &[o, other], None);
        assert_eq!(n, 1);
        let get = |k: &str| s.iter().find(|p| p.phase == k).unwrap().p50_ms;
        assert!((get("before_worker") - 6.0).abs() < 0.01, "{s:?}");
        assert!((get("status_and_watch") - 2.0).abs() < 0.01, "{s:?}");
        assert!((get("create_start") - 12.0).abs() < 0.01);
    }

    #[test]
    fn wall_ms_is_signed() {
        let a = SystemTime::UNIX_EPOCH + Duration::from_millis(1000);
        let b = SystemTime::UNIX_EPOCH + Duration::from_millis(1250);
        assert!((wall_ms(a, b) - 250.0).abs() < 1e-9);
        assert!((wall_ms(b, a) + 250.0).abs() < 1e-9);
    }
}
