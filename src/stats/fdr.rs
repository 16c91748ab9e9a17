//! Multiple testing: Benjamini-Hochberg q-values (false discovery rate)
//! and Holm's adjusted p-values (family-wise error).
//!
//! Rejecting every hypothesis whose q-value is below `fdr` keeps the
//! expected share of false discoveries among the rejections at most `fdr`
//! when the tests are independent or positively dependent (PRDS, Benjamini
//! and Yekutieli 2001), and, when every null hypothesis is true, the chance
//! of any rejection at most `fdr`.

/// Benjamini-Hochberg adjusted p-values (q-values), in the order of
/// `p_values`: `q_(i) = min_{j >= i} m p_(j) / j` over the ascending order,
/// capped at 1. NaN p-values are treated as 1.
pub fn benjamini_hochberg(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let clean = |p: f64| if p.is_nan() { 1.0 } else { p.clamp(0.0, 1.0) };
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| clean(p_values[a]).total_cmp(&clean(p_values[b])));
    let mut q = vec![1.0; m];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        let adjusted = clean(p_values[i]) * m as f64 / (rank + 1) as f64;
        running = running.min(adjusted);
        q[i] = running.min(1.0);
    }
    q
}

/// Holm's step-down adjusted p-values, in the order of `p_values`:
/// `p̃_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))` over the ascending
/// order. Rejecting every hypothesis whose adjusted p-value is below `α`
/// keeps the chance of any false rejection at most `α` under any
/// dependence (Holm 1979). NaN p-values are treated as 1.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let clean = |p: f64| if p.is_nan() { 1.0 } else { p.clamp(0.0, 1.0) };
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| clean(p_values[a]).total_cmp(&clean(p_values[b])));
    let mut adjusted = vec![1.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max((clean(p_values[i]) * (m - rank) as f64).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn holm_known_values() {
        // R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") = 0.03 0.06 0.06 0.02
        let q = holm(&[0.01, 0.04, 0.03, 0.005]);
        let want = [0.03, 0.06, 0.06, 0.02];
        for (a, b) in q.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
        assert!(holm(&[]).is_empty());
        assert_eq!(holm(&[f64::NAN, 0.2]), vec![1.0, 0.4]);
    }

    #[test]
    fn known_values() {
        // R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "BH") = 0.02 0.04 0.04 0.02
        let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.005]);
        let want = [0.02, 0.04, 0.04, 0.02];
        for (a, b) in q.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
        assert!(benjamini_hochberg(&[]).is_empty());
        assert_eq!(benjamini_hochberg(&[f64::NAN]), vec![1.0]);
    }

    proptest! {
        #[test]
        fn holm_sits_between_raw_p_and_bonferroni(p in proptest::collection::vec(0.0f64..=1.0, 1..40)) {
            let h = holm(&p);
            let q = benjamini_hochberg(&p);
            for i in 0..p.len() {
                prop_assert!(h[i] >= p[i] - 1e-15);
                prop_assert!(h[i] <= (p[i] * p.len() as f64).min(1.0) + 1e-12);
                // Holm controls the family-wise error, so it is never looser than BH.
                prop_assert!(h[i] >= q[i] - 1e-12);
                for j in 0..p.len() {
                    if p[i] < p[j] {
                        prop_assert!(h[i] <= h[j] + 1e-15);
                    }
                }
            }
        }

        #[test]
        fn q_values_dominate_p_and_keep_their_order(p in proptest::collection::vec(0.0f64..=1.0, 1..40)) {
            let q = benjamini_hochberg(&p);
            for i in 0..p.len() {
                prop_assert!(q[i] >= p[i] - 1e-15);
                prop_assert!(q[i] <= 1.0);
                // Bonferroni is the loosest bound.
                prop_assert!(q[i] <= (p[i] * p.len() as f64).min(1.0) + 1e-12);
                for j in 0..p.len() {
                    if p[i] < p[j] {
                        prop_assert!(q[i] <= q[j] + 1e-15);
                    }
                }
            }
        }
    }
}
