//! Latency quantiles from an HDR histogram: constant memory per series and
//! no sort, whatever the number of calls (a candidate's thousands of eval
//! cases, a production group's millions of logged calls).
//!
//! Values are recorded in whole microseconds with 3 significant digits, so
//! a quantile is within 0.1% (and 1 µs) of the exact one. The quantile is
//! the nearest rank: the smallest recorded value that at least `q` of the
//! values are at or below (reported as the top of its histogram bucket), as
//! the proxy's and Prometheus's histograms report, not an interpolation
//! between ranks.

use hdrhistogram::Histogram;

/// Significant decimal digits kept.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Recorded latencies of one series.
#[derive(Debug, Clone, Default)]
pub struct LatencyQuantiles {
    /// Created on the first value. `Histogram::new` fails only for more
    /// than 5 significant digits, so with 3 it is always `Some` once a
    /// value was recorded.
    hist: Option<Histogram<u64>>,
}

impl LatencyQuantiles {
    pub fn new() -> LatencyQuantiles {
        LatencyQuantiles::default()
    }

    /// Records one latency in milliseconds (negative and NaN count as 0;
    /// the histogram grows to any finite value).
    pub fn record(&mut self, ms: f64) {
        if self.hist.is_none() {
            self.hist = Histogram::new(SIGNIFICANT_DIGITS).ok();
        }
        if let Some(h) = self.hist.as_mut() {
            let micros = (ms * 1000.0).round();
            let micros = if micros > 0.0 { micros as u64 } else { 0 };
            // `record` grows the histogram (`saturating_record` would not);
            // it fails only past what 64-bit buckets can grow to.
            if h.record(micros).is_err() {
                h.saturating_record(micros);
            }
        }
    }

    /// Values recorded.
    pub fn len(&self) -> u64 {
        self.hist.as_ref().map_or(0, Histogram::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `q`-quantile (0..=1) in milliseconds; None without values.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let h = self.hist.as_ref().filter(|h| !h.is_empty())?;
        Some(h.value_at_quantile(q.clamp(0.0, 1.0)) as f64 / 1000.0)
    }
}

impl FromIterator<f64> for LatencyQuantiles {
    fn from_iter<I: IntoIterator<Item = f64>>(values: I) -> Self {
        let mut l = LatencyQuantiles::new();
        for v in values {
            l.record(v);
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The nearest-rank quantile of a sort.
    fn by_sort(values: &[f64], q: f64) -> f64 {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }

    #[test]
    fn empty_has_no_quantile_and_small_sets_are_exact_to_the_microsecond() {
        let l = LatencyQuantiles::new();
        assert_eq!((l.quantile(0.5), l.len()), (None, 0));
        let l: LatencyQuantiles = [12.0, 3.5, 7.25, 0.0, -1.0].into_iter().collect();
        assert_eq!(l.len(), 5);
        // Below 2,048 µs every microsecond is its own bucket; above, the
        // top of a 3-digit bucket.
        assert_eq!(l.quantile(0.0), Some(0.0));
        assert_eq!(l.quantile(0.4), Some(0.0));
        assert_eq!(l.quantile(0.5), Some(3.501));
        assert_eq!(l.quantile(1.0), Some(12.007));
        let l: LatencyQuantiles = [1.0, 2.0, 1.5, 0.5].into_iter().collect();
        assert_eq!(l.quantile(0.5), Some(1.0));
        assert_eq!(l.quantile(0.95), Some(2.0));
    }

    proptest! {
        // Latencies from 1 ms to 10 minutes, microsecond resolution.
        #[test]
        fn quantiles_match_a_sort_within_the_histogram_precision(
            values in proptest::collection::vec(1_000u64..600_000_000, 1..400),
            q in 0.0f64..=1.0,
        ) {
            let ms: Vec<f64> = values.iter().map(|v| *v as f64 / 1000.0).collect();
            let l: LatencyQuantiles = ms.iter().copied().collect();
            let got = l.quantile(q).unwrap();
            let want = by_sort(&ms, q);
            // q = 0 reports the bottom of the bucket, other q its top.
            prop_assert!((got - want).abs() <= want * 1e-3 + 1e-3, "{got} vs {want}");
            for p in [0.5, 0.95] {
                let (a, b) = (l.quantile(p).unwrap(), by_sort(&ms, p));
                prop_assert!(a >= b - 1e-9 && a - b <= b * 1e-3 + 1e-3, "p{p}: {a} vs {b}");
            }
        }
    }
}
