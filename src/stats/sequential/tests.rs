use super::*;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Simulates one monitored comparison: `steps` observations, each to the
/// canary with probability `weight`, 0/1 outcomes with rates `pa` (stable) and
/// `pb` (canary); a look every `every` observations. Returns whether the
/// "worse" and "not worse" tests rejected at some look.
fn run_bernoulli(
    rng: &mut StdRng,
    cfg: TestConfig,
    pa: f64,
    pb: f64,
    weight: f64,
    steps: usize,
    every: usize,
) -> (bool, bool) {
    let mut test = SequentialTest::new(cfg);
    let (mut a, mut b) = (Moments::default(), Moments::default());
    for i in 0..steps {
        if rng.random_bool(weight) {
            b.push(f64::from(u8::from(rng.random_bool(pb))));
        } else {
            a.push(f64::from(u8::from(rng.random_bool(pa))));
        }
        if (i + 1) % every == 0 {
            test.look(&Arm::Sample(a), &Arm::Sample(b));
        }
    }
    (test.worse(), test.not_worse())
}

/// Monte-Carlo allowance: three standard errors of a rate alpha estimated
/// from `sims` runs.
fn slack(alpha: f64, sims: usize) -> f64 {
    3.0 * (alpha * (1.0 - alpha) / sims as f64).sqrt()
}

fn cfg(alpha: f64, margin: f64, kind: Kind) -> TestConfig {
    TestConfig {
        alpha,
        margin,
        scale: 0.2,
        min_n: 50,
        kind,
    }
}

#[test]
fn null_false_positive_rate_with_a_look_after_every_observation() {
    // The rollback test's null boundary: canary exactly `margin` worse (as a
    // failure rate, larger is worse).
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let sims = 400;
    let alpha = 0.05;
    let margin = 0.03;
    let mut worse = 0;
    let mut not_worse = 0;
    // At the boundary: the canary exactly `margin` worse.
    let boundary = |rng: &mut StdRng| {
        run_bernoulli(
            rng,
            cfg(alpha, margin, Kind::Proportion),
            0.10,
            0.13,
            0.1,
            2500,
            1,
        )
    };
    for _ in 0..sims {
        worse += usize::from(boundary(&mut rng).0);
        // Non-inferiority null: the same boundary, seen from the other side.
        not_worse += usize::from(boundary(&mut rng).1);
    }
    let limit = alpha + slack(alpha, sims);
    let fw = worse as f64 / sims as f64;
    let fn_ = not_worse as f64 / sims as f64;
    assert!(fw <= limit, "rollback false-positive rate {fw} > {limit}");
    assert!(fn_ <= limit, "promote false-positive rate {fn_} > {limit}");
}

#[test]
fn null_false_positive_rate_for_gaussian_means_looking_every_10() {
    let mut rng = StdRng::seed_from_u64(42);
    let sims = 300;
    let alpha = 0.1;
    let mut rejected = 0;
    for _ in 0..sims {
        let mut test = SequentialTest::new(cfg(alpha, 5.0, Kind::Mean));
        let (mut a, mut b) = (Moments::default(), Moments::default());
        for i in 0..2000 {
            // Box-Muller: latency-like values, canary exactly 5 ms slower.
            let z = (-2.0 * rng.random::<f64>().max(1e-300).ln()).sqrt()
                * (2.0 * std::f64::consts::PI * rng.random::<f64>()).cos();
            if i % 4 == 0 {
                b.push(105.0 + 20.0 * z);
            } else {
                a.push(100.0 + 20.0 * z);
            }
            if i % 10 == 9 {
                test.look(&Arm::Sample(a), &Arm::Sample(b));
            }
        }
        rejected += usize::from(test.worse() || test.not_worse());
    }
    let rate = rejected as f64 / sims as f64;
    // Either one-sided test may reject: at most 2 alpha together.
    let limit = 2.0 * alpha + slack(2.0 * alpha, sims);
    assert!(rate <= limit, "false-positive rate {rate} > {limit}");
}

/// Share of `sims` runs in which the "worse" and the "not worse" tests
/// rejected.
fn rejection_rates(
    seed: u64,
    sims: usize,
    pa: f64,
    pb: f64,
    weight: f64,
    steps: usize,
    every: usize,
) -> (f64, f64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut worse, mut not_worse) = (0, 0);
    for _ in 0..sims {
        let (w, nw) = run_bernoulli(
            &mut rng,
            cfg(0.05, 0.03, Kind::Proportion),
            pa,
            pb,
            weight,
            steps,
            every,
        );
        worse += usize::from(w);
        not_worse += usize::from(nw);
    }
    (worse as f64 / sims as f64, not_worse as f64 / sims as f64)
}

#[test]
fn a_ten_point_drop_is_detected() {
    // Pass rate 90% -> 80% is failure rate 10% -> 20%, margin 3 points.
    let (detected, promoted) = rejection_rates(7, 100, 0.10, 0.20, 0.1, 8000, 1);
    assert!(detected >= 0.95, "power {detected}");
    assert_eq!(promoted, 0.0);
}

#[test]
fn a_healthy_canary_is_found_non_inferior() {
    let (worse, ok) = rejection_rates(11, 60, 0.10, 0.10, 0.2, 20_000, 5);
    // Equal rates are 3 points inside the margin: far rarer than alpha.
    assert!(worse <= 0.05, "judged worse in {worse}");
    assert!(ok >= 0.9, "non-inferiority found in {ok}");
}

#[test]
fn no_look_before_min_n() {
    let mut t = SequentialTest::new(cfg(0.05, 0.0, Kind::Proportion));
    let a = Moments::from_values([0.0; 49]);
    let b = Moments::from_values([1.0; 60]);
    assert!(!t.look(&Arm::Sample(a), &Arm::Sample(b)));
    assert_eq!(t.state().looks, 0);
    assert_eq!(t.state().p_worse, 1.0);
}

#[test]
fn ln_phi_is_continuous_across_the_tail_switch() {
    let left = ln_phi(-30.0 - 1e-9);
    let right = ln_phi(-30.0 + 1e-9);
    assert!((left - right).abs() < 1e-3, "{left} vs {right}");
    assert!((ln_phi(0.0) - 0.5f64.ln()).abs() < 1e-12);
}

fn arms() -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
    (
        proptest::collection::vec(-100.0f64..100.0, 2..60),
        proptest::collection::vec(-100.0f64..100.0, 2..60),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Under the null (equal rates, margin 0) the false-positive rate of the
    /// rollback test across looks after every observation stays at or below
    /// alpha, for random base rates, canary weights and alphas.
    #[test]
    fn null_fpr_below_alpha_for_any_rate_and_weight(
        p in 0.5f64..0.97,
        weight in 0.05f64..0.5,
        alpha in prop_oneof![Just(0.05), Just(0.1)],
        seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let sims = 150;
        let mut c = cfg(alpha, 0.0, Kind::Proportion);
        c.min_n = 100;
        let mut rejected = 0;
        for _ in 0..sims {
            let (w, _) = run_bernoulli(&mut rng, c, 1.0 - p, 1.0 - p, weight, 2000, 1);
            rejected += usize::from(w);
        }
        let rate = rejected as f64 / sims as f64;
        prop_assert!(rate <= alpha + slack(alpha, sims), "rate {} alpha {}", rate, alpha);
    }
}

proptest! {
    #[test]
    fn p_values_never_increase_and_interval_contains_nothing_impossible((xa, xb) in arms(), margin in 0.0f64..10.0) {
        let mut t = SequentialTest::new(TestConfig { alpha: 0.05, margin, scale: 0.3, min_n: 2, kind: Kind::Mean });
        let (mut a, mut b) = (Moments::default(), Moments::default());
        let mut last = (1.0, 1.0);
        for (i, (x, y)) in xa.iter().zip(xb.iter()).enumerate() {
            a.push(*x);
            b.push(y * 0.5 + i as f64);
            t.look(&Arm::Sample(a), &Arm::Sample(b));
            let s = t.state();
            prop_assert!(s.p_worse <= last.0 && s.p_not_worse <= last.1);
            prop_assert!((0.0..=1.0).contains(&s.p_worse) && (0.0..=1.0).contains(&s.p_not_worse));
            last = (s.p_worse, s.p_not_worse);
        }
    }

    #[test]
    fn one_sided_statistic_grows_with_the_estimate(est in -1.0f64..1.0, step in 0.001f64..0.5, v in 1e-5f64..0.1, t2 in 1e-5f64..0.1) {
        let lo = Difference { estimate: est, variance: v, tau2: t2 };
        let hi = Difference { estimate: est + step, variance: v, tau2: t2 };
        prop_assert!(log_lr_greater(&hi, 0.0) >= log_lr_greater(&lo, 0.0) - 1e-9);
        prop_assert!(log_lr_less(&hi, 0.0) <= log_lr_less(&lo, 0.0) + 1e-9);
        // The half-normal mixture is at most twice the full one.
        prop_assert!(log_lr_greater(&lo, 0.0) <= std::f64::consts::LN_2 + log_lr_two_sided(&lo, 0.0) + 1e-9);
    }

    #[test]
    fn confidence_sequence_is_where_the_two_sided_test_does_not_reject(est in -1.0f64..1.0, v in 1e-5f64..0.1, t2 in 1e-5f64..0.1) {
        let d = Difference { estimate: est, variance: v, tau2: t2 };
        let r = cs_radius(&d, 0.05);
        let at_edge = log_lr_two_sided(&d, est + r);
        prop_assert!((at_edge - (1.0f64 / 0.05).ln()).abs() < 1e-6, "{}", at_edge);
    }

    #[test]
    fn moments_match_two_pass_formulas(xs in proptest::collection::vec(-1e3f64..1e3, 2..100)) {
        let m = Moments::from_values(xs.iter().copied());
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
        prop_assert!((m.mean - mean).abs() < 1e-7 && (m.sample_variance() - var).abs() < 1e-5 * (1.0 + var));
    }
}
