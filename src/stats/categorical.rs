//! Two-sample comparisons of categorical distributions and proportions:
//! the chi-square test of homogeneity with the Jensen-Shannon distance as
//! its effect size, and the two-proportion z-test with Cohen's h.
//!
//! Counts are of independent observations. The chi-square approximation
//! needs expected counts of about 5 or more: categories whose pooled count
//! is too small are merged into one before testing (the effect size is
//! computed on the unmerged shares).

use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::twosample::normal_sf;

/// Smallest expected count per cell the chi-square test accepts; rarer
/// categories are pooled.
pub const MIN_EXPECTED: f64 = 5.0;

/// A chi-square test of two count vectors over the same categories.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChiSquareResult {
    pub statistic: f64,
    /// Degrees of freedom after pooling rare categories.
    pub df: usize,
    pub p_value: f64,
    /// Jensen-Shannon distance (base 2, square root of the divergence) of
    /// the two share vectors, in `0..=1`.
    pub jensen_shannon: f64,
}

/// Chi-square test of homogeneity of `reference` vs `current` counts
/// (same length, one entry per category). None when either total is 0.
pub fn chi_square(reference: &[u64], current: &[u64]) -> Option<ChiSquareResult> {
    let k = reference.len().min(current.len());
    let (rt, ct) = (
        reference[..k].iter().sum::<u64>() as f64,
        current[..k].iter().sum::<u64>() as f64,
    );
    if rt == 0.0 || ct == 0.0 {
        return None;
    }
    let jensen_shannon = jensen_shannon(&reference[..k], &current[..k]);
    let total = rt + ct;
    // Smaller side's expected count of a category is pooled * min(rt, ct) / total.
    let scale = rt.min(ct) / total;
    let mut cells: Vec<(f64, f64)> = Vec::new();
    let mut pooled = (0.0, 0.0);
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by_key(|&i| reference[i] + current[i]);
    for &i in &order {
        let (r, c) = (reference[i] as f64, current[i] as f64);
        if r + c == 0.0 {
            continue;
        }
        if (r + c) * scale < MIN_EXPECTED {
            pooled.0 += r;
            pooled.1 += c;
        } else {
            cells.push((r, c));
        }
    }
    if pooled.0 + pooled.1 > 0.0 {
        if (pooled.0 + pooled.1) * scale < MIN_EXPECTED
            && let Some(smallest) = cells.first_mut()
        {
            // Still too rare on its own: fold it into the smallest cell.
            smallest.0 += pooled.0;
            smallest.1 += pooled.1;
        } else {
            cells.push(pooled);
        }
    }
    if cells.len() < 2 {
        return Some(ChiSquareResult {
            statistic: 0.0,
            df: 0,
            p_value: 1.0,
            jensen_shannon,
        });
    }
    let mut statistic = 0.0;
    for (r, c) in &cells {
        let pooled = r + c;
        let er = pooled * rt / total;
        let ec = pooled * ct / total;
        statistic += (r - er).powi(2) / er + (c - ec).powi(2) / ec;
    }
    let df = cells.len() - 1;
    let p_value = ChiSquared::new(df as f64)
        .map(|d| d.sf(statistic))
        .unwrap_or(1.0);
    Some(ChiSquareResult {
        statistic,
        df,
        p_value,
        jensen_shannon,
    })
}

/// Jensen-Shannon distance, base 2, of the share vectors of two count
/// vectors: 0 for equal shares, 1 for disjoint support.
pub fn jensen_shannon(a: &[u64], b: &[u64]) -> f64 {
    let (at, bt) = (a.iter().sum::<u64>() as f64, b.iter().sum::<u64>() as f64);
    if at == 0.0 || bt == 0.0 {
        return 0.0;
    }
    let mut div = 0.0;
    for (x, y) in a.iter().zip(b) {
        let p = *x as f64 / at;
        let q = *y as f64 / bt;
        let m = (p + q) / 2.0;
        if p > 0.0 {
            div += 0.5 * p * (p / m).log2();
        }
        if q > 0.0 {
            div += 0.5 * q * (q / m).log2();
        }
    }
    div.clamp(0.0, 1.0).sqrt()
}

/// A two-proportion comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProportionResult {
    pub reference_rate: f64,
    pub current_rate: f64,
    /// Pooled z statistic, current minus reference.
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Cohen's h: `2 asin(sqrt(p_cur)) - 2 asin(sqrt(p_ref))`, a difference
    /// of proportions on a scale where rare events count fairly.
    pub cohen_h: f64,
}

/// Two-sided pooled z-test of `x1 / n1` vs `x2 / n2` (equivalent to the
/// 2x2 chi-square test). None when either `n` is 0.
pub fn two_proportion(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<ProportionResult> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (x1, x2) = (x1.min(n1), x2.min(n2));
    let p1 = x1 as f64 / n1 as f64;
    let p2 = x2 as f64 / n2 as f64;
    let pooled = (x1 + x2) as f64 / (n1 + n2) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    let (z, p_value) = if se > 0.0 {
        let z = (p2 - p1) / se;
        (z, (2.0 * normal_sf(z.abs())).min(1.0))
    } else {
        (0.0, 1.0)
    };
    Some(ProportionResult {
        reference_rate: p1,
        current_rate: p2,
        z,
        p_value,
        cohen_h: cohen_h(p1, p2),
    })
}

/// Cohen's h from `p1` to `p2`.
pub fn cohen_h(p1: f64, p2: f64) -> f64 {
    2.0 * p2.clamp(0.0, 1.0).sqrt().asin() - 2.0 * p1.clamp(0.0, 1.0).sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chi_square_known_table() {
        // scipy.stats.chi2_contingency([[30, 20, 50], [45, 25, 30]],
        // correction=False): chi2 = 8.5556, df = 2, p = 0.01388
        let r = chi_square(&[30, 20, 50], &[45, 25, 30]).unwrap();
        assert_eq!(r.df, 2);
        assert!((r.statistic - 8.555_556).abs() < 1e-5, "{}", r.statistic);
        assert!((r.p_value - (-r.statistic / 2.0).exp()).abs() < 1e-12);
    }

    #[test]
    fn rare_categories_are_pooled() {
        // Two categories with 1 observation each cannot stand alone.
        let r = chi_square(&[100, 1, 0], &[100, 0, 1]).unwrap();
        assert_eq!(r.df, 0);
        assert_eq!(r.p_value, 1.0);
        let r = chi_square(&[100, 3, 3, 50], &[100, 2, 4, 50]).unwrap();
        assert_eq!(r.df, 2);
    }

    #[test]
    fn jensen_shannon_bounds() {
        assert_eq!(jensen_shannon(&[5, 5], &[10, 10]), 0.0);
        assert!((jensen_shannon(&[5, 0], &[0, 5]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn two_proportion_known_value() {
        // 2% vs 8% of 2000: pooled 5%, se = sqrt(.05*.95*2/2000) = 0.006892.
        let r = two_proportion(40, 2000, 160, 2000).unwrap();
        assert!((r.z - 0.06 / 0.006_892_024).abs() < 1e-3, "{}", r.z);
        assert!(r.p_value < 1e-15);
        assert!((r.cohen_h - 0.289_9).abs() < 1e-3, "{}", r.cohen_h);
        let none = two_proportion(0, 10, 0, 10).unwrap();
        assert_eq!(none.p_value, 1.0);
        assert!(two_proportion(0, 0, 1, 1).is_none());
    }

    proptest! {
        #[test]
        fn chi_square_p_is_a_probability_and_symmetric(
            a in proptest::collection::vec(0u64..200, 1..8),
            b in proptest::collection::vec(0u64..200, 1..8),
        ) {
            let k = a.len().min(b.len());
            let (a, b) = (&a[..k], &b[..k]);
            if let Some(r) = chi_square(a, b) {
                prop_assert!((0.0..=1.0).contains(&r.p_value));
                prop_assert!((0.0..=1.0).contains(&r.jensen_shannon));
                let s = chi_square(b, a).unwrap();
                prop_assert!((r.statistic - s.statistic).abs() < 1e-6 * (1.0 + r.statistic));
            }
            if let Some(r) = chi_square(a, a) {
                prop_assert!(r.statistic.abs() < 1e-9);
                prop_assert_eq!(r.jensen_shannon, 0.0);
            }
        }

        #[test]
        fn two_proportion_matches_the_2x2_chi_square(
            x1 in 0u64..500, n1 in 500u64..1000, x2 in 0u64..500, n2 in 500u64..1000,
        ) {
            let p = two_proportion(x1, n1, x2, n2).unwrap();
            prop_assert!((0.0..=1.0).contains(&p.p_value));
            let c = chi_square(&[x1, n1 - x1], &[x2, n2 - x2]).unwrap();
            if c.df == 1 {
                prop_assert!((p.z * p.z - c.statistic).abs() < 1e-6 * (1.0 + c.statistic));
            }
        }
    }
}
