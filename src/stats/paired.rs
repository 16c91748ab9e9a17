//! Paired comparison of two variants evaluated on the same cases (the PR
//! gate: base vs head).
//!
//! Input: for each case, the fraction of passing repeats on each side
//! (0 or 1 without repeats). Output: the pass-rate delta with a paired
//! bootstrap confidence interval, and a one-sided p-value for "head is worse
//! than base":
//! - without repeats (every value 0 or 1), the exact McNemar test: under the
//!   null the discordant pairs split 50/50, so the p-value is a binomial tail;
//! - with repeats, a paired sign-flip permutation test on the per-case
//!   differences (Monte Carlo, seeded, so a re-run gives the same answer).
//!
//! Assumptions: cases are independent; repeats of a case are exchangeable.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use statrs::distribution::{Binomial, DiscreteCDF};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedComparison {
    pub cases: usize,
    pub base_rate: f64,
    pub head_rate: f64,
    /// head - base.
    pub delta: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub confidence: f64,
    /// One-sided p-value of "head is worse than base".
    pub p_worse: f64,
    /// Cases whose pass fraction went down / up.
    pub broke: usize,
    pub fixed: usize,
    pub method: &'static str,
}

const BOOTSTRAP_SAMPLES: usize = 4000;
const PERMUTATIONS: usize = 20_000;

/// Compares paired per-case pass fractions. `base` and `head` must have the
/// same length (the same cases in the same order).
pub fn compare(base: &[f64], head: &[f64], confidence: f64, seed: u64) -> PairedComparison {
    let n = base.len().min(head.len());
    let diffs: Vec<f64> = (0..n).map(|i| head[i] - base[i]).collect();
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let base_rate = mean(&base[..n]);
    let head_rate = mean(&head[..n]);
    let delta = mean(&diffs);
    let broke = diffs.iter().filter(|d| **d < 0.0).count();
    let fixed = diffs.iter().filter(|d| **d > 0.0).count();
    let mut rng = StdRng::seed_from_u64(seed);
    let (ci_low, ci_high) = bootstrap_ci(&diffs, confidence, &mut rng);
    let binary = base[..n]
        .iter()
        .chain(&head[..n])
        .all(|v| *v == 0.0 || *v == 1.0);
    let (p_worse, method) = if binary {
        (
            mcnemar_worse(broke as u64, fixed as u64),
            "exact McNemar (one-sided)",
        )
    } else {
        (
            sign_flip_worse(&diffs, &mut rng),
            "paired sign-flip permutation (one-sided)",
        )
    };
    PairedComparison {
        cases: n,
        base_rate,
        head_rate,
        delta,
        ci_low,
        ci_high,
        confidence,
        p_worse,
        broke,
        fixed,
        method,
    }
}

/// P(at least `broke` of the `broke + fixed` discordant pairs go against
/// head | each direction has probability 1/2).
pub fn mcnemar_worse(broke: u64, fixed: u64) -> f64 {
    let n = broke + fixed;
    if n == 0 || broke == 0 {
        return 1.0;
    }
    match Binomial::new(0.5, n) {
        // P(X >= broke) = 1 - P(X <= broke - 1)
        Ok(b) => (1.0 - b.cdf(broke - 1)).clamp(0.0, 1.0),
        Err(_) => 1.0,
    }
}

/// One-sided p-value of "head is worse" by random sign flips of the
/// per-case differences `head - base` (`PERMUTATIONS` of them).
pub fn sign_flip_worse(diffs: &[f64], rng: &mut StdRng) -> f64 {
    let nonzero: Vec<f64> = diffs.iter().copied().filter(|d| *d != 0.0).collect();
    if nonzero.is_empty() {
        return 1.0;
    }
    let observed: f64 = nonzero.iter().sum();
    let mut as_extreme = 0usize;
    for _ in 0..PERMUTATIONS {
        let s: f64 = nonzero
            .iter()
            .map(|d| if rng.random_bool(0.5) { *d } else { -*d })
            .sum();
        if s <= observed + 1e-12 {
            as_extreme += 1;
        }
    }
    (as_extreme + 1) as f64 / (PERMUTATIONS + 1) as f64
}

/// Percentile bootstrap interval of the mean of `diffs`.
fn bootstrap_ci(diffs: &[f64], confidence: f64, rng: &mut StdRng) -> (f64, f64) {
    let n = diffs.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mut means: Vec<f64> = (0..BOOTSTRAP_SAMPLES)
        .map(|_| (0..n).map(|_| diffs[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let alpha = (1.0 - confidence).clamp(0.0, 1.0);
    let lo = super::quantile(&means, alpha / 2.0).unwrap_or(0.0);
    let hi = super::quantile(&means, 1.0 - alpha / 2.0).unwrap_or(0.0);
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mcnemar_matches_hand_computed_tails() {
        // 2 broke, 0 fixed: P(X >= 2 | n=2) = 1/4.
        assert!((mcnemar_worse(2, 0) - 0.25).abs() < 1e-12);
        // 5 broke, 0 fixed: 1/32.
        assert!((mcnemar_worse(5, 0) - 1.0 / 32.0).abs() < 1e-12);
        // 3 broke, 1 fixed: P(X >= 3 | n=4) = 5/16.
        assert!((mcnemar_worse(3, 1) - 5.0 / 16.0).abs() < 1e-12);
        assert_eq!(mcnemar_worse(0, 4), 1.0);
    }

    #[test]
    fn two_of_twenty_broken_is_not_significant() {
        let base = vec![1.0; 20];
        let mut head = base.clone();
        head[3] = 0.0;
        head[7] = 0.0;
        let c = compare(&base, &head, 0.95, 1);
        assert!((c.delta + 0.10).abs() < 1e-12);
        assert_eq!((c.broke, c.fixed), (2, 0));
        assert!(c.p_worse > 0.05, "{c:?}");
    }

    #[test]
    fn eight_of_twenty_broken_is_significant() {
        let base = vec![1.0; 20];
        let mut head = base.clone();
        for h in head.iter_mut().take(8) {
            *h = 0.0;
        }
        let c = compare(&base, &head, 0.95, 1);
        assert!(c.p_worse < 0.01, "{c:?}");
        assert!(c.ci_high < 0.0, "{c:?}");
    }

    #[test]
    fn repeats_use_the_permutation_test() {
        let base = vec![0.9; 30];
        let head = vec![0.4; 30];
        let c = compare(&base, &head, 0.95, 7);
        assert!(c.method.contains("permutation"));
        assert!(c.p_worse < 0.001, "{c:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The delta lies in its interval's neighbourhood and everything is a
        /// valid probability.
        #[test]
        fn outputs_are_well_formed(pairs in proptest::collection::vec((0u8..=4, 0u8..=4), 1..40), seed in any::<u64>()) {
            let base: Vec<f64> = pairs.iter().map(|p| p.0 as f64 / 4.0).collect();
            let head: Vec<f64> = pairs.iter().map(|p| p.1 as f64 / 4.0).collect();
            let c = compare(&base, &head, 0.9, seed);
            prop_assert!((0.0..=1.0).contains(&c.p_worse));
            prop_assert!(c.ci_low <= c.ci_high);
            prop_assert!(c.ci_low >= -1.0 && c.ci_high <= 1.0);
            prop_assert!(c.broke + c.fixed <= c.cases);
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// Under the null (both sides draw from the same distribution) the
        /// test rejects at 5% no more often than about 5%.
        #[test]
        fn false_positive_rate_under_the_null_is_at_most_alpha(seed in any::<u64>(), rate in 0.5f64..0.95) {
            let mut rng = StdRng::seed_from_u64(seed);
            let trials = 2000;
            let mut rejections = 0;
            for _ in 0..trials {
                let (mut broke, mut fixed) = (0, 0);
                for _ in 0..30 {
                    match (rng.random_bool(rate), rng.random_bool(rate)) {
                        (true, false) => broke += 1,
                        (false, true) => fixed += 1,
                        _ => {}
                    }
                }
                if mcnemar_worse(broke, fixed) < 0.05 {
                    rejections += 1;
                }
            }
            // Exact McNemar is conservative; allow binomial noise around 5%.
            let bound = 0.05 + 3.0 * (0.05f64 * 0.95 / trials as f64).sqrt();
            prop_assert!(rejections as f64 / trials as f64 <= bound, "{rejections}/{trials}");
        }
    }
}
