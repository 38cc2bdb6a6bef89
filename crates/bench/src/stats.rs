//! Numbers from measurements: latency percentiles over an HDR histogram,
//! rates, ratios. Pure, so the report's arithmetic is tested apart from any
//! process.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies recorded in microseconds, from 1 µs to 5 minutes, with three
/// significant digits (an error below 0.1 %).
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

const MAX_MICROS: u64 = 300_000_000;

impl Default for Latencies {
    fn default() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, MAX_MICROS, 3)
                .expect("constant, valid histogram bounds"),
        }
    }
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // Below 1 µs counts as 1 µs; beyond the top as the top: both far from
        // anything measured here, and saturating beats dropping a sample.
        self.histogram
            .saturating_record(micros.clamp(1, MAX_MICROS));
    }

    pub fn record_millis(&mut self, millis: f64) {
        self.record(Duration::from_secs_f64(millis.max(0.0) / 1000.0));
    }

    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The value at quantile `q` (0..=1), in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn summary(&self) -> Summary {
        Summary {
            count: self.count(),
            p50_ms: self.quantile_ms(0.50),
            p95_ms: self.quantile_ms(0.95),
            p99_ms: self.quantile_ms(0.99),
            max_ms: self.histogram.max() as f64 / 1000.0,
            mean_ms: self.histogram.mean() / 1000.0,
        }
    }

    /// Points of the cumulative distribution, (latency ms, fraction ≤ it),
    /// at most `points` of them, for plotting.
    pub fn cdf(&self, points: usize) -> Vec<(f64, f64)> {
        (0..=points)
            .map(|i| {
                let q = i as f64 / points.max(1) as f64;
                (self.quantile_ms(q), q)
            })
            .collect()
    }
}

/// The percentiles a report shows. Zero everywhere when nothing was recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Things per second; 0 for an empty interval rather than infinity.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        0.0
    } else {
        count as f64 / seconds
    }
}

/// How many times faster `ours` is than `theirs` (both durations of the same
/// thing); `None` when ours is zero or either is missing.
pub fn speedup(theirs_ms: f64, ours_ms: f64) -> Option<f64> {
    (ours_ms > 0.0 && theirs_ms > 0.0).then(|| theirs_ms / ours_ms)
}

/// The median of some values (the mean of the middle two for an even count);
/// `None` for none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 0.002 + 1e-9
    }

    #[test]
    fn percentiles_of_a_known_spread() {
        let mut latencies = Latencies::default();
        for ms in 1..=100 {
            latencies.record(Duration::from_millis(ms));
        }
        let summary = latencies.summary();
        assert_eq!(summary.count, 100);
        assert!(close(summary.p50_ms, 50.0), "{summary:?}");
        assert!(close(summary.p95_ms, 95.0), "{summary:?}");
        assert!(close(summary.p99_ms, 99.0), "{summary:?}");
        assert!(close(summary.max_ms, 100.0), "{summary:?}");
        assert!(close(summary.mean_ms, 50.5), "{summary:?}");
    }

    #[test]
    fn sub_microsecond_and_empty() {
        let empty = Latencies::default().summary();
        assert_eq!(empty.count, 0);
        assert_eq!(empty.p95_ms, 0.0);
        let mut tiny = Latencies::default();
        tiny.record(Duration::from_nanos(10));
        tiny.record_millis(0.25);
        assert_eq!(tiny.count(), 2);
        assert!(close(tiny.quantile_ms(0.0), 0.001));
        assert!(close(tiny.quantile_ms(1.0), 0.25));
    }

    #[test]
    fn merging_adds_samples() {
        let mut a = Latencies::default();
        let mut b = Latencies::default();
        a.record(Duration::from_millis(1));
        b.record(Duration::from_millis(3));
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert!(close(a.summary().max_ms, 3.0));
    }

    #[test]
    fn cdf_is_monotone_and_ends_at_one() {
        let mut latencies = Latencies::default();
        for us in [5, 10, 20, 40, 80] {
            latencies.record(Duration::from_micros(us));
        }
        let cdf = latencies.cdf(10);
        assert_eq!(cdf.len(), 11);
        assert!(cdf.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1));
        assert_eq!(cdf.last().map(|p| p.1), Some(1.0));
    }

    #[test]
    fn rates_ratios_and_medians() {
        assert_eq!(per_second(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
        assert_eq!(speedup(100.0, 0.1), Some(1000.0));
        assert_eq!(speedup(100.0, 0.0), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
