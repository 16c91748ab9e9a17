//! Always-valid sequential comparison of two streams (canary vs stable):
//! the Gaussian-mixture sequential probability ratio test (mSPRT) of Johari,
//! Pekelis, Koomen and Walsh, "Always valid inference: continuous monitoring
//! of A/B tests" (Operations Research, 2022), for the difference of two
//! means. Proportions are means of 0/1 outcomes with the plug-in Bernoulli
//! variance.
//!
//! # Method
//!
//! Let `d` be the true difference `mean(b) - mean(a)` (b = canary, a =
//! stable), `d̂` its estimate after some observations and
//! `V = var_a/n_a + var_b/n_b` the variance of `d̂`. For a hypothesised value
//! `θ0` the likelihood ratio of `d = θ0 + δ` against `d = θ0` for a normal
//! `d̂` is `exp(δ s / V - δ²/(2V))` with `s = d̂ - θ0`. Mixing `δ` over a prior
//! gives a test martingale under `H0: d = θ0`, so by Ville's inequality the
//! probability that it *ever* exceeds `1/α` is at most `α`, however often one
//! looks. Two mixtures are used:
//!
//! * two-sided, `δ ~ N(0, τ²)`:
//!   `Λ = sqrt(V/(V+τ²)) · exp(s² τ² / (2 V (V+τ²)))`; inverting it gives
//!   the confidence sequence `d̂ ± sqrt(2 V (V+τ²)/τ² · (ln(1/α) + ½ ln((V+τ²)/V)))`;
//! * one-sided, `δ` half-normal on the side of the alternative (`δ > 0`):
//!   `Λ⁺ = 2 sqrt(V/(V+τ²)) · exp(s² τ² / (2 V (V+τ²))) · Φ(s τ / sqrt(V (V+τ²)))`
//!   (and `Λ⁻` with `Φ(-…)`). Each is a mixture of likelihood ratios that are
//!   non-decreasing (resp. non-increasing) in `d`, so it also controls the
//!   composite nulls `d ≤ θ0` (resp. `d ≥ θ0`).
//!
//! The always-valid p-value is the running minimum of `min(1, 1/Λ)` over the
//! looks; a hypothesis is rejected once it reaches `α`.
//!
//! `τ` is the tuning parameter: the test is most sensitive to effects of
//! about `τ`. It is given in units of the per-observation standard deviation
//! (`τ = scale · σ̂`), so one setting works for rates, milliseconds and
//! dollars alike.
//!
//! # Assumptions
//!
//! Observations are independent, and identically distributed within each
//! arm over the monitored window (stationarity); `d̂` is close to normal and
//! the plug-in variance close to the true one, which is why no look is taken
//! before each arm has `min_n` observations. Under those assumptions the
//! error rates hold for any number of looks at any times.

use serde::Serialize;

/// Running count, mean and sum of squared deviations (Welford), so a look
/// after every observation costs O(1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Moments {
    pub n: u64,
    pub mean: f64,
    m2: f64,
}

impl Moments {
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    pub fn from_values(values: impl IntoIterator<Item = f64>) -> Moments {
        let mut m = Moments::default();
        for v in values {
            m.push(v);
        }
        m
    }

    /// Sample variance (n - 1 denominator); 0 with fewer than two values.
    pub fn sample_variance(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            self.m2 / (self.n - 1) as f64
        }
    }

    /// The per-observation variance used by the test. For 0/1 outcomes the
    /// Bernoulli variance of a shrunk rate `(k + ½)/(n + 1)`, so an arm that
    /// has only seen passes still has a positive variance.
    pub fn plug_in_variance(&self, kind: Kind) -> f64 {
        let v = match kind {
            Kind::Proportion => {
                let p = (self.mean * self.n as f64 + 0.5) / (self.n as f64 + 1.0);
                p * (1.0 - p)
            }
            Kind::Mean => self.sample_variance(),
        };
        // A constant stream (e.g. a fixed cost) has variance 0, which would
        // make every difference infinitely significant; a floor relative to
        // the magnitude keeps the statistic finite.
        v.max(1e-12 * (1.0 + self.mean * self.mean))
    }
}

/// How the per-observation variance is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// 0/1 outcomes: Bernoulli plug-in variance.
    Proportion,
    /// Real values: sample variance.
    Mean,
}

/// One side of the comparison: a sample, or a known constant (a one-sample
/// test against a fixed rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arm {
    Sample(Moments),
    Known(f64),
}

impl Arm {
    fn mean(&self) -> f64 {
        match self {
            Arm::Sample(m) => m.mean,
            Arm::Known(v) => *v,
        }
    }
    /// (variance of the mean, per-observation variance).
    fn variances(&self, kind: Kind) -> (f64, f64) {
        match self {
            Arm::Sample(m) if m.n > 0 => {
                let v = m.plug_in_variance(kind);
                (v / m.n as f64, v)
            }
            Arm::Sample(_) => (f64::INFINITY, 0.0),
            Arm::Known(_) => (0.0, 0.0),
        }
    }
    pub fn n(&self) -> Option<u64> {
        match self {
            Arm::Sample(m) => Some(m.n),
            Arm::Known(_) => None,
        }
    }
}

/// The estimate of `d = mean(b) - mean(a)` and its variance at one look.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Difference {
    pub estimate: f64,
    /// Variance of the estimate, `V`.
    pub variance: f64,
    /// Mixture variance `τ²` (from the per-observation variance).
    pub tau2: f64,
}

impl Difference {
    /// `b - a` with `τ = scale · σ̂`, σ̂² the larger per-observation variance
    /// of the two arms (the pooled scale of the metric).
    pub fn between(a: &Arm, b: &Arm, kind: Kind, scale: f64) -> Difference {
        let (va, ua) = a.variances(kind);
        let (vb, ub) = b.variances(kind);
        let unit = ua.max(ub);
        Difference {
            estimate: b.mean() - a.mean(),
            variance: va + vb,
            tau2: scale * scale * unit,
        }
    }
}

/// The variance of `d̂` when `d = theta0` exactly, for 0/1 outcomes: the
/// rates are re-estimated under that constraint (pooled shift, as in the
/// Farrington-Manning score test). The plain plug-in variance understates
/// `V` exactly when an arm happens to show few failures, which inflates the
/// one-sided error of the test that rejects on small `d̂`; under the null
/// constraint it does not depend on the side the estimate fell on.
fn null_variance(a: &Arm, b: &Arm, theta0: f64) -> Option<f64> {
    let shrunk = |m: &Moments| (m.mean * m.n as f64 + 0.5) / (m.n as f64 + 1.0);
    let clamp = |p: f64| p.clamp(1e-6, 1.0 - 1e-6);
    let bern = |p: f64| clamp(p) * (1.0 - clamp(p));
    match (a, b) {
        (Arm::Sample(ma), Arm::Sample(mb)) if ma.n > 0 && mb.n > 0 => {
            let (na, nb) = (ma.n as f64, mb.n as f64);
            let pa = clamp((na * shrunk(ma) + nb * (shrunk(mb) - theta0)) / (na + nb));
            let pb = pa + theta0;
            Some(bern(pa) / na + bern(pb) / nb)
        }
        (Arm::Known(pa), Arm::Sample(mb)) if mb.n > 0 => Some(bern(pa + theta0) / mb.n as f64),
        _ => None,
    }
}

/// `ln Λ` of the two-sided mixture for `H0: d = theta0` (tests bound the
/// one-sided statistic by it).
#[cfg(test)]
pub fn log_lr_two_sided(d: &Difference, theta0: f64) -> f64 {
    let (v, t2) = (d.variance, d.tau2);
    if !(v > 0.0 && t2 > 0.0 && v.is_finite()) {
        return 0.0;
    }
    let s = d.estimate - theta0;
    0.5 * (v / (v + t2)).ln() + s * s * t2 / (2.0 * v * (v + t2))
}

/// `ln Λ⁺` of the one-sided mixture for `H0: d ≤ theta0` against `d > theta0`.
pub fn log_lr_greater(d: &Difference, theta0: f64) -> f64 {
    one_sided(d, d.estimate - theta0)
}

/// `ln Λ⁻` of the one-sided mixture for `H0: d ≥ theta0` against `d < theta0`.
pub fn log_lr_less(d: &Difference, theta0: f64) -> f64 {
    one_sided(d, theta0 - d.estimate)
}

fn one_sided(d: &Difference, s: f64) -> f64 {
    let (v, t2) = (d.variance, d.tau2);
    if !(v > 0.0 && t2 > 0.0 && v.is_finite()) {
        return f64::NEG_INFINITY;
    }
    let k = (t2 / (v * (v + t2))).sqrt();
    std::f64::consts::LN_2
        + 0.5 * (v / (v + t2)).ln()
        + s * s * t2 / (2.0 * v * (v + t2))
        + ln_phi(k * s)
}

/// `ln Φ(x)`, accurate in the far left tail where `Φ` underflows.
fn ln_phi(x: f64) -> f64 {
    if x > -30.0 {
        (0.5 * statrs::function::erf::erfc(-x / std::f64::consts::SQRT_2)).ln()
    } else {
        // Mills ratio: Φ(x) ≈ φ(x)/|x| (1 - 1/x²) for large |x|.
        -0.5 * x * x - (-x).ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
            + (1.0 - 1.0 / (x * x)).ln()
    }
}

/// Half-width of the two-sided `1 - alpha` confidence sequence at this look.
pub fn cs_radius(d: &Difference, alpha: f64) -> f64 {
    let (v, t2) = (d.variance, d.tau2);
    if !(v > 0.0 && t2 > 0.0 && v.is_finite()) {
        return f64::INFINITY;
    }
    (2.0 * v * (v + t2) / t2 * ((1.0 / alpha).ln() + 0.5 * ((v + t2) / v).ln())).sqrt()
}

/// p-value from a log likelihood ratio: `min(1, 1/Λ)`.
pub fn p_from_log_lr(log_lr: f64) -> f64 {
    (-log_lr).exp().min(1.0)
}

/// Settings of a [`SequentialTest`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TestConfig {
    /// Error rate of each one-sided decision.
    pub alpha: f64,
    /// The allowed worsening: `d ≤ margin` is acceptable.
    pub margin: f64,
    /// Mixture scale: `τ = scale · σ̂`.
    pub scale: f64,
    /// No look before each sampled arm has this many observations.
    pub min_n: u64,
    pub kind: Kind,
}

/// What a [`SequentialTest`] knows after its latest look. `d` is "canary
/// minus stable" oriented so that larger is worse.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SequentialState {
    /// Looks taken (observations at which both arms had `min_n`).
    pub looks: u64,
    /// Latest estimate of `d` and its variance.
    pub estimate: f64,
    pub std_error: f64,
    /// Running intersection of the confidence sequence for `d`.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Always-valid p-value of `H0: d ≤ margin` (small = worse than allowed).
    pub p_worse: f64,
    /// Always-valid p-value of `H0: d ≥ margin` (small = non-inferior).
    pub p_not_worse: f64,
    /// Largest `ln Λ` of each one-sided test so far (the statistic), and the
    /// threshold `ln(1/alpha)` it is compared with.
    pub max_log_lr_worse: f64,
    pub max_log_lr_not_worse: f64,
    pub threshold: f64,
}

/// A one-sided pair of always-valid tests on a stream of looks: "worse than
/// the margin" (rollback) and "not worse than the margin" (non-inferiority,
/// promote). Feed it the arms after every observation, or every k.
#[derive(Debug, Clone, PartialEq)]
pub struct SequentialTest {
    pub config: TestConfig,
    state: SequentialState,
}

impl SequentialTest {
    pub fn new(config: TestConfig) -> SequentialTest {
        SequentialTest {
            config,
            state: SequentialState {
                looks: 0,
                estimate: f64::NAN,
                std_error: f64::NAN,
                ci_low: f64::NEG_INFINITY,
                ci_high: f64::INFINITY,
                p_worse: 1.0,
                p_not_worse: 1.0,
                max_log_lr_worse: f64::NEG_INFINITY,
                max_log_lr_not_worse: f64::NEG_INFINITY,
                threshold: (1.0 / config.alpha).ln(),
            },
        }
    }

    /// Takes a look with the arms as they are now (`a` stable, `b` canary).
    /// Returns false (and changes nothing) while an arm has fewer than
    /// `min_n` observations.
    pub fn look(&mut self, a: &Arm, b: &Arm) -> bool {
        let enough = |arm: &Arm| arm.n().is_none_or(|n| n >= self.config.min_n.max(1));
        if !enough(a) || !enough(b) {
            return false;
        }
        let c = &self.config;
        let d = Difference::between(a, b, c.kind, c.scale);
        let s = &mut self.state;
        s.looks += 1;
        s.estimate = d.estimate;
        s.std_error = d.variance.sqrt();
        let r = cs_radius(&d, c.alpha);
        s.ci_low = s.ci_low.max(d.estimate - r);
        s.ci_high = s.ci_high.min(d.estimate + r);
        // Both one-sided tests share the null boundary `d = margin`.
        let at_null = match c.kind {
            Kind::Proportion => {
                null_variance(a, b, c.margin).map_or(d, |variance| Difference { variance, ..d })
            }
            Kind::Mean => d,
        };
        let worse = log_lr_greater(&at_null, c.margin);
        let not_worse = log_lr_less(&at_null, c.margin);
        s.max_log_lr_worse = s.max_log_lr_worse.max(worse);
        s.max_log_lr_not_worse = s.max_log_lr_not_worse.max(not_worse);
        s.p_worse = s.p_worse.min(p_from_log_lr(worse));
        s.p_not_worse = s.p_not_worse.min(p_from_log_lr(not_worse));
        true
    }

    pub fn state(&self) -> &SequentialState {
        &self.state
    }

    /// The evidence says `d > margin` at level alpha.
    pub fn worse(&self) -> bool {
        self.state.p_worse <= self.config.alpha
    }

    /// The evidence says `d < margin` at level alpha.
    pub fn not_worse(&self) -> bool {
        self.state.p_not_worse <= self.config.alpha
    }
}

#[cfg(test)]
mod tests;
