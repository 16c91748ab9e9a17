//! Statistics used by evals, gates, canary analysis and drift.
//!
//! Everything here is a pure function over numbers; callers decide what the
//! numbers mean.

pub mod categorical;
pub mod domain;
pub mod fdr;
pub mod latency;
pub mod noninferiority;
pub mod paired;
pub mod sequential;
pub mod twosample;

/// The `q`-quantile (0..=1) of `values` by linear interpolation between
/// closest ranks (type 7, as numpy's default). None when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let q = q.clamp(0.0, 1.0);
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

/// Arithmetic mean; None when empty.
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        None
    } else {
        Some(values.iter().sum::<f64>() / values.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quantiles_match_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), Some(2.5));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&v, 1.0), Some(4.0));
        assert!((quantile(&v, 0.95).unwrap() - 3.85).abs() < 1e-12);
        assert_eq!(quantile(&[], 0.5), None);
    }

    proptest! {
        #[test]
        fn quantile_is_within_range_and_monotone(mut v in proptest::collection::vec(-1e6f64..1e6, 1..50), a in 0.0f64..1.0, b in 0.0f64..1.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let qa = quantile(&v, lo).unwrap();
            let qb = quantile(&v, hi).unwrap();
            v.sort_by(f64::total_cmp);
            prop_assert!(qa <= qb + 1e-9);
            prop_assert!(qa >= v[0] - 1e-9 && qb <= v[v.len() - 1] + 1e-9);
        }
    }
}
