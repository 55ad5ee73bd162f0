//! Latency statistics: nearest-rank percentiles over per-request latencies, the summary
//! every scenario reports (count, wall time, throughput, p50/p90/p99/max), and the median
//! across repeats that the report shows (single runs on this VM are too noisy to quote).

use std::time::Duration;

use serde::Serialize;

/// The `p`-th percentile (0 < p ≤ 100) of `sorted` by the nearest-rank method: the
/// smallest value such that at least p% of the values are ≤ it. `None` when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    // Rank 0 only happens for p == 0: take the minimum.
    let idx = rank.saturating_sub(1).min(sorted.len() - 1);
    sorted.get(idx).copied()
}

/// The median of a list of numbers (mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// One run of one scenario, in milliseconds (latencies) and operations per second.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RunStats {
    /// Successful operations measured.
    pub count: u64,
    /// Failed operations (non-2xx answers, transport errors).
    pub errors: u64,
    pub wall_ms: f64,
    /// Successful operations per second of wall time.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn ms(d: Option<Duration>) -> f64 {
    d.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

impl RunStats {
    /// Summarises per-operation latencies measured over `wall`.
    pub fn from_latencies(mut latencies: Vec<Duration>, errors: u64, wall: Duration) -> Self {
        latencies.sort_unstable();
        let count = latencies.len() as u64;
        let wall_s = wall.as_secs_f64();
        RunStats {
            count,
            errors,
            wall_ms: wall_s * 1000.0,
            throughput: if wall_s > 0.0 {
                count as f64 / wall_s
            } else {
                0.0
            },
            p50_ms: ms(percentile(&latencies, 50.0)),
            p90_ms: ms(percentile(&latencies, 90.0)),
            p99_ms: ms(percentile(&latencies, 99.0)),
            max_ms: ms(latencies.last().copied()),
        }
    }

    /// Field by field median of several runs (errors are summed, not medianed).
    pub fn median_of(runs: &[RunStats]) -> RunStats {
        let m = |f: fn(&RunStats) -> f64| {
            median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
        };
        RunStats {
            count: m(|r| r.count as f64).round() as u64,
            errors: runs.iter().map(|r| r.errors).sum(),
            wall_ms: m(|r| r.wall_ms),
            throughput: m(|r| r.throughput),
            p50_ms: m(|r| r.p50_ms),
            p90_ms: m(|r| r.p90_ms),
            p99_ms: m(|r| r.p99_ms),
            max_ms: m(|r| r.max_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_vec(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        // 1..=100 ms: the p-th percentile is p ms exactly.
        let v = ms_vec(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&v, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&v, 90.0), Some(Duration::from_millis(90)));
        assert_eq!(percentile(&v, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&v, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&v, 0.0), Some(Duration::from_millis(1)));
    }

    #[test]
    fn percentiles_of_small_and_empty_sets() {
        assert_eq!(percentile(&[], 50.0), None);
        let one = ms_vec(&[7]);
        assert_eq!(percentile(&one, 1.0), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&one, 99.0), Some(Duration::from_millis(7)));
        // Ten values: p50 is the 5th, p90 the 9th, p99 rounds up to the 10th.
        let ten = ms_vec(&[10, 20, 30, 40, 50, 60, 70, 80, 90, 1000]);
        assert_eq!(percentile(&ten, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&ten, 90.0), Some(Duration::from_millis(90)));
        assert_eq!(percentile(&ten, 99.0), Some(Duration::from_millis(1000)));
    }

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn run_stats_from_unsorted_latencies() {
        let lat = ms_vec(&[30, 10, 20, 40]);
        let s = RunStats::from_latencies(lat, 1, Duration::from_secs(2));
        assert_eq!(s.count, 4);
        assert_eq!(s.errors, 1);
        assert!((s.throughput - 2.0).abs() < 1e-9);
        assert!((s.p50_ms - 20.0).abs() < 1e-9);
        assert!((s.p90_ms - 40.0).abs() < 1e-9);
        assert!((s.max_ms - 40.0).abs() < 1e-9);
        assert!((s.wall_ms - 2000.0).abs() < 1e-9);
    }

    #[test]
    fn median_of_runs_is_per_field() {
        let a = RunStats {
            count: 10,
            errors: 1,
            throughput: 100.0,
            p50_ms: 5.0,
            ..Default::default()
        };
        let b = RunStats {
            count: 10,
            errors: 0,
            throughput: 300.0,
            p50_ms: 1.0,
            ..Default::default()
        };
        let c = RunStats {
            count: 10,
            errors: 2,
            throughput: 200.0,
            p50_ms: 9.0,
            ..Default::default()
        };
        let m = RunStats::median_of(&[a, b, c]);
        assert_eq!(m.count, 10);
        assert_eq!(m.errors, 3);
        assert!((m.throughput - 200.0).abs() < 1e-9);
        assert!((m.p50_ms - 5.0).abs() < 1e-9);
    }
}
