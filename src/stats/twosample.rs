//! Two-sample comparisons of numeric distributions (drift between a
//! reference and a current window): the Kolmogorov-Smirnov test, and the
//! effect sizes that say how far apart the samples are, whatever their size:
//! the Wasserstein-1 distance (normalised by the reference spread) and the
//! population stability index.
//!
//! The samples are independent draws; NaN values are dropped. Ties are
//! handled exactly in the statistics (the empirical CDFs are compared after
//! every copy of a value); the KS p-value uses the continuous Kolmogorov
//! distribution, which is conservative (p too large) when there are ties.

use serde::Serialize;

/// One KS comparison with its effect sizes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KsResult {
    /// Largest gap between the two empirical CDFs, in `0..=1`.
    pub statistic: f64,
    /// Two-sided p-value of "both samples come from one distribution".
    pub p_value: f64,
    /// Wasserstein-1 distance, in the data's units.
    pub wasserstein: f64,
    /// Wasserstein-1 divided by the reference standard deviation (the pooled
    /// one when the reference is constant); 0 when both are constant and equal.
    pub wasserstein_norm: f64,
}

/// Sorted copy of `values` without NaN.
pub fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_unstable_by(f64::total_cmp);
    v
}

/// The `q`-quantile (0..=1) of a sample sorted ascending, by linear
/// interpolation between closest ranks (as [`super::quantile`], without
/// copying and sorting again). None when empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

/// Distinct values of two sorted samples together, counted up to `cap + 1`.
pub fn distinct_sorted(a: &[f64], b: &[f64], cap: usize) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while (i < a.len() || j < b.len()) && out.len() <= cap {
        let x = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        if out.last() != Some(&x) {
            out.push(x);
        }
        while i < a.len() && a[i] == x {
            i += 1;
        }
        while j < b.len() && b[j] == x {
            j += 1;
        }
    }
    out
}

/// Population standard deviation; 0 for fewer than two values.
pub fn std_dev(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 2 {
        return 0.0;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64).sqrt()
}

/// The two-sample KS test and the Wasserstein distance of two samples that
/// are already sorted ascending without NaN ([`sorted`]). None when either
/// is empty.
pub fn ks_sorted(reference: &[f64], current: &[f64]) -> Option<KsResult> {
    let (n, m) = (reference.len(), current.len());
    if n == 0 || m == 0 {
        return None;
    }
    let (nf, mf) = (n as f64, m as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut d: f64 = 0.0;
    let mut area = 0.0;
    let mut prev: Option<f64> = None;
    while i < n || j < m {
        // The next distinct value of the merged samples.
        let x = match (reference.get(i), current.get(j)) {
            (Some(&a), Some(&b)) => a.min(b),
            (Some(&a), None) => a,
            (None, Some(&b)) => b,
            (None, None) => break,
        };
        let gap = (i as f64 / nf - j as f64 / mf).abs();
        if let Some(p) = prev {
            area += gap * (x - p);
        }
        while i < n && reference[i] == x {
            i += 1;
        }
        while j < m && current[j] == x {
            j += 1;
        }
        d = d.max((i as f64 / nf - j as f64 / mf).abs());
        prev = Some(x);
    }
    let ne = nf * mf / (nf + mf);
    let sqrt_ne = ne.sqrt();
    // Stephens' (1970) small-sample correction of the asymptotic argument.
    let lambda = (sqrt_ne + 0.12 + 0.11 / sqrt_ne) * d;
    let spread = match std_dev(reference) {
        s if s > 0.0 => s,
        _ => {
            let pooled: Vec<f64> = reference.iter().chain(current).copied().collect();
            std_dev(&pooled)
        }
    };
    let wasserstein_norm = if area == 0.0 {
        0.0
    } else if spread > 0.0 {
        area / spread
    } else {
        f64::INFINITY
    };
    Some(KsResult {
        statistic: d,
        p_value: kolmogorov_sf(lambda),
        wasserstein: area,
        wasserstein_norm,
    })
}

/// [`ks_sorted`] on unsorted samples.
pub fn ks_test(reference: &[f64], current: &[f64]) -> Option<KsResult> {
    ks_sorted(&sorted(reference), &sorted(current))
}

/// Survival function of the Kolmogorov distribution, `P(K > x)`, the limit
/// law of `sqrt(n) * D`. Two series, each used where it converges fast:
/// Jacobi's theta form below 1.18, the alternating series above.
pub fn kolmogorov_sf(x: f64) -> f64 {
    if x.is_nan() {
        return 1.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x < 1.18 {
        // P(K <= x) = sqrt(2 pi) / x * sum_{k>=1} exp(-(2k-1)^2 pi^2 / (8 x^2))
        let w = std::f64::consts::PI * std::f64::consts::PI / (8.0 * x * x);
        let mut sum = 0.0;
        for k in 1..=20u32 {
            let odd = f64::from(2 * k - 1);
            let term = (-odd * odd * w).exp();
            sum += term;
            if term < 1e-17 * sum {
                break;
            }
        }
        let cdf = (2.0 * std::f64::consts::PI).sqrt() / x * sum;
        (1.0 - cdf).clamp(0.0, 1.0)
    } else {
        // P(K > x) = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 x^2)
        let mut sum = 0.0;
        let mut sign = 1.0;
        for k in 1..=100u32 {
            let kf = f64::from(k);
            let term = (-2.0 * kf * kf * x * x).exp();
            sum += sign * term;
            if term < 1e-17 {
                break;
            }
            sign = -sign;
        }
        (2.0 * sum).clamp(0.0, 1.0)
    }
}

/// Population stability index of `current` against `reference` over `bins`
/// bins at the reference's quantiles: `sum (c - r) ln(c / r)` over bin
/// shares, each share floored at 1e-4 so an empty bin does not make it
/// infinite. None when either sample is empty.
pub fn psi(reference: &[f64], current: &[f64], bins: usize) -> Option<f64> {
    psi_sorted(&sorted(reference), &sorted(current), bins)
}

/// [`psi`] of samples already sorted ascending without NaN.
pub fn psi_sorted(r: &[f64], c: &[f64], bins: usize) -> Option<f64> {
    if r.is_empty() || c.is_empty() || bins == 0 {
        return None;
    }
    // Interior cut points at the reference quantiles, duplicates removed so
    // a heavy value does not make empty bins.
    let mut cuts: Vec<f64> = (1..bins)
        .map(|k| r[(k * r.len() / bins).min(r.len() - 1)])
        .collect();
    cuts.dedup();
    let shares = |s: &[f64]| -> Vec<f64> {
        let mut counts = vec![0usize; cuts.len() + 1];
        let mut start = 0;
        for (b, cut) in cuts.iter().enumerate() {
            let end = s.partition_point(|v| v < cut);
            counts[b] = end - start;
            start = end;
        }
        counts[cuts.len()] = s.len() - start;
        counts
            .into_iter()
            .map(|k| (k as f64 / s.len() as f64).max(1e-4))
            .collect()
    };
    let (rs, cs) = (shares(r), shares(c));
    Some(
        rs.iter()
            .zip(&cs)
            .map(|(r, c)| (c - r) * (c / r).ln())
            .sum(),
    )
}

/// The Mann-Whitney U test that `current` tends to be larger than
/// `reference`, reported as the AUC `P(current > reference) + P(tie) / 2`
/// with a one-sided p-value (normal approximation with the tie correction).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MannWhitney {
    pub auc: f64,
    pub p_value: f64,
}

/// See [`MannWhitney`]. None when either sample is empty.
pub fn mann_whitney_greater(reference: &[f64], current: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (reference.len(), current.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = reference
        .iter()
        .map(|v| (*v, false))
        .chain(current.iter().map(|v| (*v, true)))
        .collect();
    all.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let total = all.len();
    let mut rank_sum_current = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < total {
        let mut j = i;
        while j < total && all[j].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j share their average.
        let avg = (i + 1 + j) as f64 / 2.0;
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        rank_sum_current += avg * all[i..j].iter().filter(|(_, c)| *c).count() as f64;
        i = j;
    }
    let (f1, f2) = (n1 as f64, n2 as f64);
    let u = rank_sum_current - f2 * (f2 + 1.0) / 2.0;
    let auc = u / (f1 * f2);
    let nf = total as f64;
    let var = f1 * f2 / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)).max(1.0));
    let p_value = if var <= 0.0 {
        1.0
    } else {
        let z = (u - f1 * f2 / 2.0) / var.sqrt();
        normal_sf(z)
    };
    Some(MannWhitney { auc, p_value })
}

/// `P(Z > z)` of a standard normal.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * statrs::function::erf::erfc(z / std::f64::consts::SQRT_2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn kolmogorov_tail_matches_published_values() {
        // The tabulated critical values x(0.10) = 1.2238, x(0.05) = 1.3581,
        // x(0.01) = 1.6276, x(0.001) = 1.9495 (Smirnov 1948), with the tail
        // to 7 digits (scipy.special.kolmogorov agrees).
        for (x, p) in [
            (0.5, 0.963_945_2),
            (0.8, 0.544_142_4),
            (1.0, 0.269_999_7),
            (1.1, 0.177_718_2),
            (1.2238, 0.100_023_4),
            (1.3581, 0.049_999_63),
            (1.6276, 0.010_001_54),
            (1.9495, 0.000_999_802),
            (2.5, 7.453_306e-6),
        ] {
            let got = kolmogorov_sf(x);
            assert!(close(got, p, 1e-6 * p), "Q({x}) = {got}, want {p}");
        }
        assert_eq!(kolmogorov_sf(0.0), 1.0);
        assert!(kolmogorov_sf(10.0) < 1e-80);
    }

    #[test]
    fn kolmogorov_series_agree_where_they_meet() {
        // Both series are exact; at the switch point they must agree.
        let x: f64 = 1.18;
        let w = std::f64::consts::PI.powi(2) / (8.0 * x * x);
        let theta: f64 = (1..=20)
            .map(|k: i32| (-f64::from(2 * k - 1).powi(2) * w).exp())
            .sum();
        let low = 1.0 - (2.0 * std::f64::consts::PI).sqrt() / x * theta;
        assert!(close(low, kolmogorov_sf(x), 1e-12));
    }

    #[test]
    fn ks_known_example() {
        // scipy.stats.ks_2samp([1,2,3,4,5], [3,4,5,6,7,8]): D = 0.5.
        let r = ks_test(&[1.0, 2.0, 3.0, 4.0, 5.0], &[3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).unwrap();
        assert!(close(r.statistic, 0.5, 1e-12));
        // W1 of uniform{1..5} and uniform{3..8}: mean shift 2.5 dominates.
        // |F1 - F2| integrated: computed by hand = 2.5.
        assert!(close(r.wasserstein, 2.5, 1e-12), "{}", r.wasserstein);
        assert!(r.p_value > 0.2 && r.p_value < 0.6);
    }

    #[test]
    fn ks_handles_ties_and_constants() {
        let same = ks_test(&[1.0; 50], &[1.0; 70]).unwrap();
        assert_eq!(same.statistic, 0.0);
        assert_eq!(same.p_value, 1.0);
        assert_eq!(same.wasserstein_norm, 0.0);
        let apart = ks_test(&[1.0; 50], &[2.0; 70]).unwrap();
        assert_eq!(apart.statistic, 1.0);
        assert!(apart.p_value < 1e-10);
        assert_eq!(apart.wasserstein, 1.0);
        assert!(close(
            apart.wasserstein_norm,
            1.0 / std_dev(&[[1.0; 50].as_slice(), &[2.0; 70]].concat()),
            1e-12
        ));
        assert!(ks_test(&[], &[1.0]).is_none());
    }

    #[test]
    fn sorted_helpers_match_the_general_ones() {
        let a = sorted(&[3.0, 1.0, 2.0, 2.0, 9.0]);
        let b = sorted(&[2.0, 5.0]);
        for q in [0.0, 0.3, 0.5, 0.95, 1.0] {
            assert_eq!(quantile_sorted(&a, q), crate::stats::quantile(&a, q));
        }
        assert_eq!(distinct_sorted(&a, &b, 10), vec![1.0, 2.0, 3.0, 5.0, 9.0]);
        assert_eq!(distinct_sorted(&a, &b, 2).len(), 3);
    }

    #[test]
    fn psi_is_zero_for_identical_and_grows_with_shift() {
        let r: Vec<f64> = (0..1000).map(f64::from).collect();
        assert!(close(psi(&r, &r, 10).unwrap(), 0.0, 1e-12));
        let shifted: Vec<f64> = r.iter().map(|v| v + 100.0).collect();
        let far: Vec<f64> = r.iter().map(|v| v + 500.0).collect();
        let a = psi(&r, &shifted, 10).unwrap();
        let b = psi(&r, &far, 10).unwrap();
        assert!(a > 0.05 && b > a, "{a} {b}");
    }

    #[test]
    fn mann_whitney_known_example() {
        // scipy.stats.mannwhitneyu([1,2,3], [4,5,6], alternative='greater',
        // method='asymptotic', use_continuity=False) for x=current: U=9, z=1.964.
        let m = mann_whitney_greater(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!(m.auc, 1.0);
        assert!(close(m.p_value, 0.024_75, 1e-4), "{}", m.p_value);
        let rev = mann_whitney_greater(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(rev.auc, 0.0);
        assert!(rev.p_value > 0.97);
        let tied = mann_whitney_greater(&[1.0, 1.0], &[1.0, 1.0]).unwrap();
        assert_eq!(tied.auc, 0.5);
        assert_eq!(tied.p_value, 1.0);
    }

    proptest! {
        #[test]
        fn ks_is_symmetric_bounded_and_zero_on_itself(
            a in proptest::collection::vec(-1e3f64..1e3, 1..60),
            b in proptest::collection::vec(-1e3f64..1e3, 1..60),
        ) {
            let ab = ks_test(&a, &b).unwrap();
            let ba = ks_test(&b, &a).unwrap();
            prop_assert!((ab.statistic - ba.statistic).abs() < 1e-12);
            prop_assert!((ab.wasserstein - ba.wasserstein).abs() < 1e-6 * (1.0 + ab.wasserstein));
            prop_assert!((0.0..=1.0).contains(&ab.statistic));
            prop_assert!((0.0..=1.0).contains(&ab.p_value));
            let aa = ks_test(&a, &a).unwrap();
            prop_assert_eq!(aa.statistic, 0.0);
            prop_assert_eq!(aa.wasserstein, 0.0);
        }

        #[test]
        fn wasserstein_of_a_shift_is_the_shift(
            a in proptest::collection::vec(-1e3f64..1e3, 1..60),
            shift in -50.0f64..50.0,
        ) {
            let b: Vec<f64> = a.iter().map(|v| v + shift).collect();
            let r = ks_test(&a, &b).unwrap();
            prop_assert!((r.wasserstein - shift.abs()).abs() < 1e-6 * (1.0 + shift.abs()));
        }

        #[test]
        fn kolmogorov_sf_is_a_decreasing_tail(x in 0.01f64..4.0, dx in 0.0f64..1.0) {
            let (p, q) = (kolmogorov_sf(x), kolmogorov_sf(x + dx));
            prop_assert!((0.0..=1.0).contains(&p));
            prop_assert!(q <= p + 1e-12);
        }

        #[test]
        fn auc_is_a_probability_and_flips(
            a in proptest::collection::vec(-10i32..10, 1..40),
            b in proptest::collection::vec(-10i32..10, 1..40),
        ) {
            let a: Vec<f64> = a.into_iter().map(f64::from).collect();
            let b: Vec<f64> = b.into_iter().map(f64::from).collect();
            let ab = mann_whitney_greater(&a, &b).unwrap();
            let ba = mann_whitney_greater(&b, &a).unwrap();
            prop_assert!((0.0..=1.0).contains(&ab.auc));
            prop_assert!((ab.auc + ba.auc - 1.0).abs() < 1e-9);
            // Brute force: P(b > a) + P(b == a) / 2.
            let mut s = 0.0;
            for x in &a { for y in &b { s += if y > x { 1.0 } else if y == x { 0.5 } else { 0.0 }; } }
            prop_assert!((ab.auc - s / (a.len() * b.len()) as f64).abs() < 1e-9);
        }
    }
}
