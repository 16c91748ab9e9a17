//! A test of the paired pass-rate drop against a margin: "did head's pass
//! rate drop by more than `margin` below base's?" (the PR gate), or its
//! mirror "is head worse than base by less than `margin`?" (non-inferiority
//! proper, for comparing candidates).
//!
//! Input: per row, the pass fraction on each side over the repeats present
//! on both (0 or 1 without repeats). The drop is `mean(base - head)`; the
//! null hypothesis of the gate is `drop <= margin`, so a drop inside the
//! allowance is never "shown", however many rows there are.
//!
//! The statistic (one family for both cases):
//! `Z(Δ) = (n·d̄ - n·Δ ∓ h) / sqrt(n·V₀(Δ))`, where `d̄` is the observed
//! drop, `V₀(Δ)` the variance of one row's difference under the
//! distribution that is most likely given the data *among those whose mean
//! drop is exactly Δ* (the restricted maximum-likelihood estimate), and `h`
//! a continuity correction of half the lattice step of the summed
//! differences (1/2 without repeats, 1/(2m) with m repeats), taken against
//! the alternative. Estimating the variance under the null, not at the
//! observed drop, is what makes score tests hold their level near the
//! boundary where Wald tests do not; the correction is what keeps it on
//! 100 rows when few rows change (without it the simulated false-block rate
//! at the boundary reached 0.06 when base and head outcomes are highly
//! correlated, see benches/README.md).
//! - Without repeats (every value 0 or 1): Tango's score test for the
//!   difference of paired proportions (Tango 1998, Stat Med 17:891), whose
//!   restricted MLE of the discordant cells has a closed form. With Δ = 0 it
//!   is McNemar's statistic `(b - c - 1/2) / sqrt(b + c)`.
//! - With repeats: the same construction with a multinomial over the row
//!   differences' possible values (the observed ones plus the extremes -1
//!   and +1), solved by one-dimensional root finding; on 0/1 data it is
//!   Tango's statistic again (a test checks this).
//!
//! `Z` is referred to the standard normal. The interval is the set of Δ the
//! test does not reject in either direction, found by bisection: its lower
//! end is a one-sided `confidence` lower bound of the drop, so the gate
//! rejects exactly when that bound is above the margin (a two-sided
//! interval at `2·confidence - 1`, the usual non-inferiority convention).
//!
//! Assumptions: rows are independent draws from the population of inputs
//! the dataset stands for; a row's repeats may be correlated with each other
//! and with the other side (rows, not calls, are the units); `n` is large
//! enough for the normal approximation, which `benches/gate_sim.rs` checks
//! by simulation at 100 and 1,000 rows and a property test at 100-400.
//! Everything here is a pure function of its inputs (no resampling).

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

/// Which side of the margin the test looks for evidence of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Alternative {
    /// H1: drop > margin (H0: drop <= margin). The PR gate: block only when
    /// the drop is shown to exceed the allowance.
    DropAbove,
    /// H1: drop < margin (H0: drop >= margin). Non-inferiority: head is
    /// shown to be worse than base by less than the margin.
    DropBelow,
}

/// The test used, chosen by the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Every row 0 or 1 on both sides.
    TangoScore,
    /// Per-row pass fractions (repeats).
    RowScore,
}

impl Method {
    pub fn describe(self) -> &'static str {
        match self {
            Method::TangoScore => "Tango's score test for paired proportions",
            Method::RowScore => "paired score test on per-row pass fractions",
        }
    }
}

/// Bounds of the drop: each end is a one-sided bound at the test's
/// `confidence`, so together a two-sided interval at `level`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
    /// `2·confidence - 1`.
    pub level: f64,
}

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DropTest {
    pub rows: usize,
    pub base_rate: f64,
    pub head_rate: f64,
    /// Observed drop, `base_rate - head_rate` (negative: head is better).
    pub estimate: f64,
    pub interval: Interval,
    pub margin: f64,
    pub confidence: f64,
    pub alternative: Alternative,
    /// The alternative in words, e.g. "drop larger than 5.0 points".
    pub hypothesis: String,
    /// `Z(margin)`, continuity-corrected against the alternative; kept
    /// within ±40 (where the p-value is 0 or 1 in double precision), so
    /// that no variance (every row's difference equal to the margin) gives
    /// a number too.
    pub statistic: f64,
    /// One-sided p-value of the alternative.
    pub p_value: f64,
    /// `p_value < 1 - confidence`.
    pub rejected: bool,
    pub method: Method,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DropTestError {
    #[error("base has {base} rows but head has {head}: the rows must be paired")]
    Unpaired { base: usize, head: usize },
    #[error("no rows to compare")]
    Empty,
    #[error("{side} row {index}: pass fraction {value} is not within 0..=1")]
    Fraction {
        side: &'static str,
        index: usize,
        value: f64,
    },
    #[error("margin {0} is not within 0..=1")]
    Margin(f64),
    #[error("confidence {0} is not strictly between 0.5 and 1")]
    Confidence(f64),
}

/// Tests the drop `mean(base - head)` against `margin` (both in pass-rate
/// units, 0.05 = 5 points) at `confidence`.
pub fn test(
    base: &[f64],
    head: &[f64],
    margin: f64,
    confidence: f64,
    alternative: Alternative,
) -> Result<DropTest, DropTestError> {
    if base.len() != head.len() {
        return Err(DropTestError::Unpaired {
            base: base.len(),
            head: head.len(),
        });
    }
    if base.is_empty() {
        return Err(DropTestError::Empty);
    }
    for (side, values) in [("base", base), ("head", head)] {
        if let Some((index, value)) = values
            .iter()
            .enumerate()
            .find(|(_, v)| !(0.0..=1.0).contains(*v))
        {
            return Err(DropTestError::Fraction {
                side,
                index,
                value: *value,
            });
        }
    }
    if !(0.0..=1.0).contains(&margin) {
        return Err(DropTestError::Margin(margin));
    }
    if !(confidence > 0.5 && confidence < 1.0) {
        return Err(DropTestError::Confidence(confidence));
    }
    let n = base.len();
    let binary = base.iter().chain(head).all(|v| *v == 0.0 || *v == 1.0);
    let diffs = Differences::new(base.iter().zip(head).map(|(b, h)| b - h));
    let method = if binary {
        Method::TangoScore
    } else {
        Method::RowScore
    };
    // Half the lattice step of Σd, signed against the alternative: evidence
    // for "drop above" must clear the margin by more than rounding.
    let half_step = 0.5 * diffs.step;
    let z = |delta: f64, correction: f64| match method {
        Method::TangoScore => diffs.tango_z(delta, correction),
        Method::RowScore => diffs.score_z(delta, correction),
    };
    let z_above = |delta: f64| z(delta, half_step);
    let z_below = |delta: f64| z(delta, -half_step);
    let alpha = 1.0 - confidence;
    let (statistic, p_value) = match alternative {
        Alternative::DropAbove => {
            let s = z_above(margin).clamp(-MAX_Z, MAX_Z);
            (s, if margin >= 1.0 { 1.0 } else { upper_tail(s) })
        }
        Alternative::DropBelow => {
            let s = z_below(margin).clamp(-MAX_Z, MAX_Z);
            // At margin 1 the null is "every row dropped by 1": a single
            // other row refutes it.
            let p = if margin < 1.0 {
                upper_tail(-s)
            } else if diffs.mean < 1.0 {
                0.0
            } else {
                1.0
            };
            (s, p)
        }
    };
    let critical = std_normal().inverse_cdf(confidence);
    let interval = Interval {
        low: invert(&z_above, critical),
        high: invert(&z_below, -critical),
        level: 2.0 * confidence - 1.0,
    };
    let rate = |v: &[f64]| v.iter().sum::<f64>() / n as f64;
    let points = margin * 100.0;
    Ok(DropTest {
        rows: n,
        base_rate: rate(base),
        head_rate: rate(head),
        estimate: diffs.mean,
        interval,
        margin,
        confidence,
        alternative,
        hypothesis: match alternative {
            Alternative::DropAbove => format!("drop larger than {points:.1} points"),
            Alternative::DropBelow => format!("drop smaller than {points:.1} points"),
        },
        statistic,
        p_value,
        rejected: p_value < alpha,
        method,
    })
}

/// Beyond this |Z| a normal tail is 0 or 1 in double precision.
const MAX_Z: f64 = 40.0;

fn std_normal() -> Normal {
    Normal::standard()
}

/// P(N(0,1) >= z), accurate in the far tail.
fn upper_tail(z: f64) -> f64 {
    (0.5 * statrs::function::erf::erfc(z / std::f64::consts::SQRT_2)).clamp(0.0, 1.0)
}

/// The Δ in [-1, 1] where the decreasing `z(Δ)` crosses `target`, by
/// bisection (`z` is only evaluated strictly inside the interval).
fn invert(z: &impl Fn(f64) -> f64, target: f64) -> f64 {
    let (mut lo, mut hi) = (-1.0f64, 1.0f64);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if z(mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The row differences `base - head` as counts of distinct values.
struct Differences {
    n: f64,
    mean: f64,
    /// (value, count), ascending by value.
    values: Vec<(f64, f64)>,
    /// Lattice step of the differences: 1/m when every pass fraction is a
    /// multiple of 1/m (m repeats), 0 when there is no such m up to 64.
    step: f64,
}

impl Differences {
    fn new(diffs: impl Iterator<Item = f64>) -> Differences {
        let mut all: Vec<f64> = diffs.collect();
        all.sort_by(f64::total_cmp);
        let n = all.len() as f64;
        let mean = all.iter().sum::<f64>() / n;
        let mut values: Vec<(f64, f64)> = Vec::new();
        for d in all {
            match values.last_mut() {
                // Pass fractions are k/m: equal ones are bit-equal, and
                // near-equal ones (different m) may stay apart.
                Some((v, c)) if (*v - d).abs() < 1e-12 => *c += 1.0,
                _ => values.push((d, 1.0)),
            }
        }
        let step = lattice_step(values.iter().map(|(v, _)| *v));
        Differences {
            n,
            mean,
            values,
            step,
        }
    }

    fn count(&self, value: f64) -> f64 {
        self.values
            .iter()
            .find(|(v, _)| *v == value)
            .map_or(0.0, |(_, c)| *c)
    }

    /// Tango's statistic for 0/1 rows: b rows broke (d = 1), c got fixed
    /// (d = -1); the restricted MLE of P(fixed) under drop = Δ is the
    /// positive root of `2n q² + B q + C = 0`.
    fn tango_z(&self, delta: f64, correction: f64) -> f64 {
        let (n, b, c) = (self.n, self.count(1.0), self.count(-1.0));
        let big_b = -b - c + (2.0 * n - b + c) * delta;
        let big_c = -c * delta * (1.0 - delta);
        let q01 = ((big_b * big_b - 8.0 * n * big_c).max(0.0).sqrt() - big_b) / (4.0 * n);
        let variance = 2.0 * q01 + delta * (1.0 - delta);
        ratio(b - c - n * delta - correction, (n * variance).sqrt())
    }

    /// The general statistic: `V₀(Δ)` from the multinomial over the
    /// observed values and the extremes ±1 that maximises the likelihood
    /// subject to mean Δ. Its weights are `π_v = p_v / (1 + λ (v - Δ))`
    /// (`p_v` the observed share) for the λ that makes the mean Δ; when
    /// that λ would leave the range where an unobserved extreme keeps a
    /// non-negative weight, the solution puts the missing mass on it.
    fn score_z(&self, delta: f64, correction: f64) -> f64 {
        let n = self.n;
        let shares: Vec<(f64, f64)> = self
            .values
            .iter()
            .map(|(v, c)| (*v - delta, c / n))
            .collect();
        // g(λ) = Σ p_v (v-Δ) / (1 + λ (v-Δ)): decreasing; its root is λ.
        let g = |lambda: f64| -> f64 {
            shares
                .iter()
                .map(|(x, p)| p * x / (1.0 + lambda * x))
                .sum::<f64>()
        };
        // λ keeps 1 + λ(v-Δ) > 0 for every v in [-1, 1]: the extremes bound it.
        let lambda_max = 1.0 / (1.0 + delta);
        let lambda_min = -1.0 / (1.0 - delta);
        let g0 = g(0.0);
        let lambda = if g0 == 0.0 {
            0.0
        } else if g0 > 0.0 {
            if self.count(-1.0) == 0.0 && g(lambda_max) >= 0.0 {
                lambda_max
            } else {
                root(&g, 0.0, lambda_max)
            }
        } else if self.count(1.0) == 0.0 && g(lambda_min) <= 0.0 {
            lambda_min
        } else {
            root(&g, lambda_min, 0.0)
        };
        // Σ π_v (v-Δ)², the unobserved extreme (if it carries mass) included.
        let weights: Vec<f64> = shares.iter().map(|(x, p)| p / (1.0 + lambda * x)).collect();
        let observed_mass: f64 = weights.iter().sum();
        let mut variance: f64 = shares
            .iter()
            .zip(&weights)
            .map(|((x, _), w)| w * x * x)
            .sum();
        let missing = (1.0 - observed_mass).max(0.0);
        if lambda == lambda_max {
            variance += missing * (1.0 + delta) * (1.0 + delta);
        } else if lambda == lambda_min {
            variance += missing * (1.0 - delta) * (1.0 - delta);
        }
        ratio((self.mean - delta) * n - correction, (n * variance).sqrt())
    }
}

/// The smallest 1/m (m <= 64) of which every value is a multiple; 0 when
/// none is (then no continuity correction applies).
fn lattice_step(values: impl Iterator<Item = f64> + Clone) -> f64 {
    (1..=64u32)
        .map(f64::from)
        .find(|m| {
            values
                .clone()
                .all(|v| ((v * m) - (v * m).round()).abs() < 1e-6)
        })
        .map_or(0.0, |m| 1.0 / m)
}

/// `num / den`, 0 when both vanish (no evidence either way).
fn ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 {
        num / den
    } else if num > 0.0 {
        f64::INFINITY
    } else if num < 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    }
}

/// Root of a decreasing `g` in the open interval (lo, hi), by bisection.
fn root(g: &impl Fn(f64) -> f64, mut lo: f64, mut hi: f64) -> f64 {
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if hi - lo < 1e-14 {
            break;
        }
        if g(mid) > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests;
