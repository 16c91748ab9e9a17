use super::*;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// 0/1 rows with `both` rows passing on both sides, `broke` passing on base
/// only, `fixed` on head only and `neither` failing on both.
fn binary(both: usize, broke: usize, fixed: usize, neither: usize) -> (Vec<f64>, Vec<f64>) {
    let mut base = Vec::new();
    let mut head = Vec::new();
    for (count, b, h) in [
        (both, 1.0, 1.0),
        (broke, 1.0, 0.0),
        (fixed, 0.0, 1.0),
        (neither, 0.0, 0.0),
    ] {
        base.extend(std::iter::repeat_n(b, count));
        head.extend(std::iter::repeat_n(h, count));
    }
    (base, head)
}

fn gate(base: &[f64], head: &[f64], margin: f64) -> DropTest {
    test(base, head, margin, 0.95, Alternative::DropAbove).unwrap()
}

/// Tango's statistic from first principles: the restricted MLE found by a
/// fine grid search over P(fixed) of the trinomial log-likelihood with
/// P(broke) = P(fixed) + Δ, then (b - c - nΔ - 1/2) / sqrt(n (2q + Δ(1 - Δ))).
fn tango_by_grid(n: usize, b: usize, c: usize, delta: f64) -> f64 {
    let (nf, bf, cf) = (n as f64, b as f64, c as f64);
    let loglik = |q: f64| {
        let q10 = q + delta;
        let rest = 1.0 - q10 - q;
        let term = |k: f64, p: f64| if k == 0.0 { 0.0 } else { k * p.ln() };
        if q10 <= 0.0 || rest <= 0.0 || q < 0.0 {
            f64::NEG_INFINITY
        } else {
            term(bf, q10) + term(cf, q) + term(nf - bf - cf, rest)
        }
    };
    let upper = (1.0 - delta) / 2.0;
    let steps = 200_000;
    let (mut best_q, mut best) = (0.0, f64::NEG_INFINITY);
    for i in 0..=steps {
        let q = upper * i as f64 / steps as f64;
        let l = loglik(q);
        if l > best {
            (best_q, best) = (q, l);
        }
    }
    (bf - cf - nf * delta - 0.5) / (nf * (2.0 * best_q + delta * (1.0 - delta))).sqrt()
}

#[test]
fn tango_statistic_matches_the_restricted_mle_found_by_search() {
    for (both, broke, fixed, neither, delta) in [
        (70, 15, 5, 10, 0.05),
        (40, 6, 0, 4, 0.05),
        (85, 2, 0, 13, 0.05),
        (10, 12, 1, 2, 0.10),
        (50, 3, 9, 38, 0.02),
    ] {
        let (base, head) = binary(both, broke, fixed, neither);
        let n = base.len();
        let t = gate(&base, &head, delta);
        assert_eq!(t.method, Method::TangoScore);
        let expected = tango_by_grid(n, broke, fixed, delta);
        assert!(
            (t.statistic - expected).abs() < 1e-3,
            "{both}/{broke}/{fixed}/{neither} at {delta}: {} vs {expected}",
            t.statistic
        );
        assert!((t.p_value - upper_tail(expected)).abs() < 1e-3);
    }
}

#[test]
fn a_zero_margin_is_the_mcnemar_statistic() {
    // b = 9 broke, c = 3 fixed: (b - c - 1/2) / sqrt(b + c) = 5.5 / sqrt(12).
    let (base, head) = binary(80, 9, 3, 8);
    let t = gate(&base, &head, 0.0);
    assert!((t.statistic - 5.5 / 12f64.sqrt()).abs() < 1e-12, "{t:?}");
    assert!((t.estimate - 0.06).abs() < 1e-12);
    assert_eq!(t.hypothesis, "drop larger than 0.0 points");
}

#[test]
fn the_p_value_and_the_interval_give_the_same_verdict() {
    // 1,000 rows, an observed 9-point drop against a 5-point allowance.
    let (base, head) = binary(700, 130, 40, 130);
    let t = gate(&base, &head, 0.05);
    assert!((t.estimate - 0.09).abs() < 1e-12);
    assert!(t.rejected, "{t:?}");
    assert!(t.interval.low > 0.05 && t.interval.low < 0.09, "{t:?}");
    assert!(t.interval.high > 0.09, "{t:?}");
    assert!((t.interval.level - 0.90).abs() < 1e-12);
    // The lower bound is where the test stops rejecting.
    let at_bound = gate(&base, &head, t.interval.low);
    assert!((at_bound.p_value - 0.05).abs() < 1e-6, "{at_bound:?}");
    // The same data with a 10-point allowance: not shown.
    let t = gate(&base, &head, 0.10);
    assert!(!t.rejected && t.p_value > 0.5, "{t:?}");
}

#[test]
fn an_observed_drop_within_the_allowance_never_blocks() {
    // 100 rows, a 4-point observed drop against a 5-point allowance.
    let (base, head) = binary(80, 7, 3, 10);
    let t = gate(&base, &head, 0.05);
    assert!(t.p_value > 0.5, "{t:?}");
    assert!(!t.rejected);
}

#[test]
fn non_inferiority_is_the_mirror_test() {
    // 1,000 rows, an observed 1-point drop: shown to be under 5 points.
    let (base, head) = binary(800, 40, 30, 130);
    let t = test(&base, &head, 0.05, 0.95, Alternative::DropBelow).unwrap();
    assert!(t.rejected, "{t:?}");
    assert!(t.interval.high < 0.05);
    assert_eq!(t.hypothesis, "drop smaller than 5.0 points");
    // Without the continuity correction the two p-values would add up to
    // 1; each correction takes half a step from its own alternative.
    let above = gate(&base, &head, 0.05);
    assert!(t.p_value + above.p_value > 1.0, "{t:?} {above:?}");
    assert!(t.p_value + above.p_value < 1.05, "{t:?} {above:?}");
}

#[test]
fn rows_with_repeats_use_the_row_score_test() {
    let base = [1.0, 2.0 / 3.0, 1.0, 1.0 / 3.0, 1.0, 1.0];
    let head = [2.0 / 3.0, 2.0 / 3.0, 1.0, 0.0, 1.0, 1.0 / 3.0];
    let t = gate(&base, &head, 0.0);
    assert_eq!(t.method, Method::RowScore);
    assert!((t.estimate - (1.0 / 3.0 + 1.0 / 3.0 + 2.0 / 3.0) / 6.0).abs() < 1e-12);
    // Every difference is >= 0 and the margin is 0: the restricted MLE must
    // put mass on -1 to reach mean 0, so the variance includes it.
    assert!(t.statistic.is_finite() && t.statistic > 0.0, "{t:?}");
}

#[test]
fn no_discordant_row_gives_no_evidence_either_way() {
    let (base, head) = binary(90, 0, 0, 10);
    let t = gate(&base, &head, 0.0);
    assert_eq!(t.p_value, 1.0);
    assert_eq!(t.statistic, -MAX_Z);
    assert!(!t.rejected);
    // 100 identical rows do show the drop is under 5 points.
    let t = gate(&base, &head, 0.05);
    assert!(t.p_value > 0.95, "{t:?}");
    assert!(t.interval.high < 0.05 && t.interval.low < 0.0, "{t:?}");
}

#[test]
fn the_continuity_correction_is_half_the_lattice_step() {
    let d = |v: &[f64]| Differences::new(v.iter().copied()).step;
    assert_eq!(d(&[1.0, 0.0, -1.0]), 1.0);
    assert!((d(&[2.0 / 3.0, -1.0 / 3.0, 0.0]) - 1.0 / 3.0).abs() < 1e-12);
    assert!((d(&[0.5, 1.0 / 3.0]) - 1.0 / 6.0).abs() < 1e-12);
    assert_eq!(d(&[0.123_456_7]), 0.0);
}

#[test]
fn a_full_margin_never_blocks() {
    let (base, head) = binary(0, 10, 0, 0);
    let t = gate(&base, &head, 1.0);
    assert_eq!(t.p_value, 1.0);
    assert!(!t.rejected);
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    let e = |base: &[f64], head: &[f64], margin: f64, confidence: f64| {
        test(base, head, margin, confidence, Alternative::DropAbove)
            .unwrap_err()
            .to_string()
    };
    assert!(e(&[1.0], &[1.0, 0.0], 0.05, 0.95).contains("paired"));
    assert_eq!(e(&[], &[], 0.05, 0.95), "no rows to compare");
    assert_eq!(
        e(&[1.0, 1.5], &[1.0, 1.0], 0.05, 0.95),
        "base row 1: pass fraction 1.5 is not within 0..=1"
    );
    assert!(e(&[1.0], &[1.0], -0.1, 0.95).contains("margin"));
    assert!(e(&[1.0], &[1.0], 0.05, 0.5).contains("confidence"));
    assert!(e(&[1.0], &[f64::NAN], 0.05, 0.95).contains("head row 0"));
}

/// One simulated dataset from the latent-difficulty model (see
/// `benches/gate_sim.rs`): row difficulty z ~ N(0,1) shared by both sides
/// and every repeat; a call passes when z + σε < t, ε ~ N(0,1) per call.
/// Each side's pass rate over rows is Φ(t / sqrt(1 + σ²)), so the true
/// drop is exactly `base_rate - head_rate`.
fn latent_rows(
    rng: &mut StdRng,
    rows: usize,
    repeats: usize,
    base_rate: f64,
    drop: f64,
    sigma: f64,
) -> (Vec<f64>, Vec<f64>) {
    let normal = std_normal();
    let scale = (1.0 + sigma * sigma).sqrt();
    let t_base = scale * normal.inverse_cdf(base_rate);
    let t_head = scale * normal.inverse_cdf(base_rate - drop);
    let mut gauss = || {
        // Box-Muller.
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        let v: f64 = rng.random();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    let (mut base, mut head) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    for _ in 0..rows {
        let z = gauss();
        let mut side = |t: f64| {
            (0..repeats).filter(|_| z + sigma * gauss() < t).count() as f64 / repeats as f64
        };
        base.push(side(t_base));
        head.push(side(t_head));
    }
    (base, head)
}

#[test]
fn the_latent_model_has_the_drop_it_is_asked_for() {
    let mut rng = StdRng::seed_from_u64(5);
    let (base, head) = latent_rows(&mut rng, 200_000, 1, 0.85, 0.05, 0.7);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!((mean(&base) - 0.85).abs() < 0.004, "{}", mean(&base));
    assert!((mean(&base) - mean(&head) - 0.05).abs() < 0.004);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// On 0/1 rows the general score statistic is Tango's.
    #[test]
    fn the_row_score_statistic_reduces_to_tango_on_binary_rows(
        counts in (0usize..60, 0usize..30, 0usize..30, 0usize..60),
        delta in 0.0f64..0.5,
    ) {
        let (both, broke, fixed, neither) = counts;
        prop_assume!(both + broke + fixed + neither > 0);
        let (base, head) = binary(both, broke, fixed, neither);
        let d = Differences::new(base.iter().zip(&head).map(|(b, h)| b - h));
        let (tango, general) = (d.tango_z(delta, 0.5), d.score_z(delta, 0.5));
        if tango.is_finite() {
            prop_assert!((tango - general).abs() < 1e-6 * (1.0 + tango.abs()), "{tango} vs {general}");
        } else {
            prop_assert_eq!(tango, general);
        }
    }

    /// For any data: the verdict agrees with the interval (rejected exactly
    /// when the lower bound is above the margin), the p-value grows with the
    /// margin, and everything is a valid probability or drop.
    #[test]
    fn verdict_interval_and_p_value_agree(
        pairs in proptest::collection::vec((0u8..=3, 0u8..=3), 1..80),
        repeats in prop_oneof![Just(1u8), Just(3u8)],
        margin in 0.0f64..0.3,
    ) {
        let frac = |k: u8| f64::from(k.min(repeats)) / f64::from(repeats);
        let base: Vec<f64> = pairs.iter().map(|p| frac(p.0)).collect();
        let head: Vec<f64> = pairs.iter().map(|p| frac(p.1)).collect();
        let t = gate(&base, &head, margin);
        prop_assert!((0.0..=1.0).contains(&t.p_value));
        prop_assert!(t.interval.low <= t.estimate + 1e-9 && t.estimate <= t.interval.high + 1e-9, "{:?}", t);
        prop_assert!(t.interval.low >= -1.0 && t.interval.high <= 1.0);
        // Bisection tolerance aside, the bound and the test agree.
        if (t.interval.low - margin).abs() > 1e-9 {
            prop_assert_eq!(t.rejected, t.interval.low > margin, "{:?}", t);
        }
        // Where decisions are made (p < 1/2) a larger allowance never
        // strengthens the evidence. (Far above 1/2 the continuity
        // correction can bend it: with no changed row, Δ = 0 gives p = 1
        // and Δ = 0.05 slightly less.)
        let wider = gate(&base, &head, (margin + 0.05).min(1.0));
        if t.p_value < 0.5 {
            prop_assert!(wider.p_value >= t.p_value - 1e-12, "{:?} then {:?}", t, wider);
        }
        prop_assert!(t.statistic.is_finite());
    }
}

proptest! {
    // Each case simulates 400 datasets: keep the count small for `cargo test`.
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Under the boundary null (true drop exactly the margin) the p-value is
    /// uniform or conservative: P(p <= a) <= a + Monte-Carlo slack, for rows
    /// drawn from the latent-difficulty model with or without repeats.
    #[test]
    fn the_p_value_is_valid_at_the_boundary(
        seed in any::<u64>(),
        rows in 100usize..400,
        repeats in prop_oneof![Just(1usize), Just(3usize)],
        base_rate in 0.75f64..0.92,
        margin in prop_oneof![Just(0.0), 0.02f64..0.10],
        sigma in 0.3f64..2.0,
    ) {
        let sims = 400;
        let mut rng = StdRng::seed_from_u64(seed);
        let levels = [0.01, 0.05, 0.10];
        let mut below = [0usize; 3];
        for _ in 0..sims {
            let (base, head) = latent_rows(&mut rng, rows, repeats, base_rate, margin, sigma);
            let p = gate(&base, &head, margin).p_value;
            for (k, a) in levels.iter().enumerate() {
                below[k] += usize::from(p <= *a);
            }
        }
        for (k, a) in levels.iter().enumerate() {
            let rate = below[k] as f64 / sims as f64;
            let slack = 3.0 * (a * (1.0 - a) / sims as f64).sqrt() + 0.005;
            prop_assert!(rate <= a + slack, "P(p <= {}) = {} over {} datasets", a, rate, sims);
        }
    }
}
