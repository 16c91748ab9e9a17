//! Per-candidate figures on the (cost, quality) plane.
//!
//! Quality is the pass rate over rows: each row counts once, with its pass
//! fraction over the repeats (the unit of the paired tests too, since a
//! row's repeats share its difficulty). Its interval is Wilson's score
//! interval without repeats and, with them, a normal interval on the row
//! fractions' mean (clipped to 0..1). Cost per 1k calls is the mean cost of
//! a call times 1000, from the model's token prices and, for self-hosted
//! models, its per-second price on the measured latency.

use std::collections::BTreeMap;

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

use crate::eval::results::Summary;
use crate::eval::runner::CaseResult;

/// Per-row pass fractions, in dataset order.
#[derive(Debug, Clone, PartialEq)]
pub struct RowOutcomes {
    pub keys: Vec<String>,
    pub pass: Vec<f64>,
}

/// Groups cases by row key (first-seen order) into pass fractions.
pub fn row_outcomes(cases: &[CaseResult]) -> RowOutcomes {
    let mut order: Vec<&str> = Vec::new();
    let mut counts: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for c in cases {
        let e = counts.entry(c.row_key.as_str()).or_insert_with(|| {
            order.push(c.row_key.as_str());
            (0, 0)
        });
        e.0 += u32::from(c.pass);
        e.1 += 1;
    }
    let pass = order
        .iter()
        .map(|k| {
            let (p, n) = counts.get(k).copied().unwrap_or((0, 1));
            f64::from(p) / f64::from(n.max(1))
        })
        .collect();
    RowOutcomes {
        keys: order.into_iter().map(str::to_string).collect(),
        pass,
    }
}

/// A two-sided interval of the pass rate at `level`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateInterval {
    pub low: f64,
    pub high: f64,
    pub level: f64,
}

/// The interval of the mean of `fractions` (see the module doc).
pub fn pass_rate_interval(fractions: &[f64], level: f64) -> RateInterval {
    let n = fractions.len() as f64;
    if fractions.is_empty() {
        return RateInterval {
            low: 0.0,
            high: 1.0,
            level,
        };
    }
    let z = Normal::standard().inverse_cdf(0.5 + level / 2.0);
    let p = fractions.iter().sum::<f64>() / n;
    let binary = fractions.iter().all(|v| *v == 0.0 || *v == 1.0);
    let (low, high) = if binary {
        let z2 = z * z;
        let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
        let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
        (centre - half, centre + half)
    } else {
        let var = fractions.iter().map(|v| (v - p) * (v - p)).sum::<f64>() / (n - 1.0).max(1.0);
        let half = z * (var / n).sqrt();
        (p - half, p + half)
    };
    RateInterval {
        low: low.clamp(0.0, 1.0),
        high: high.clamp(0.0, 1.0),
        level,
    }
}

/// Everything the report shows about one candidate.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateFigures {
    pub label: String,
    /// Key under `models`.
    pub model: String,
    /// Where the prompt came from (`suite`, a ref or a file).
    pub prompt: String,
    /// Git blob id of the prompt file.
    pub prompt_version: String,
    /// The params sent (model defaults, prompt params, overrides).
    pub params: serde_json::Map<String, serde_json::Value>,
    pub rows: usize,
    /// Calls: rows times repeats.
    pub cases: usize,
    pub pass_rate: f64,
    pub pass_rate_interval: RateInterval,
    pub mean_score: f64,
    pub cost_per_1k: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    /// Mean tokens per call.
    pub input_tokens: f64,
    pub output_tokens: f64,
    /// Share of calls that errored.
    pub error_rate: f64,
    pub cache_hits: usize,
    pub results_file: Option<String>,
}

impl CandidateFigures {
    /// A candidate known only by its cost and per-row pass fractions (no
    /// latency, tokens or errors; mean score = pass rate): for tests and
    /// simulations of the decision.
    pub fn from_pass(label: &str, cost_per_1k: f64, pass: &[f64], level: f64) -> CandidateFigures {
        let rate = crate::stats::mean(pass).unwrap_or(0.0);
        CandidateFigures {
            label: label.into(),
            model: label.into(),
            prompt: "suite".into(),
            prompt_version: String::new(),
            params: serde_json::Map::new(),
            rows: pass.len(),
            cases: pass.len(),
            pass_rate: rate,
            pass_rate_interval: pass_rate_interval(pass, level),
            mean_score: rate,
            cost_per_1k,
            latency_p50_ms: None,
            latency_p95_ms: None,
            input_tokens: 0.0,
            output_tokens: 0.0,
            error_rate: 0.0,
            cache_hits: 0,
            results_file: None,
        }
    }
}

/// A candidate's figures from its run's summary and cases.
pub fn figures(
    label: &str,
    prompt: &str,
    params: &serde_json::Map<String, serde_json::Value>,
    summary: &Summary,
    rows: &RowOutcomes,
    level: f64,
) -> CandidateFigures {
    let calls = summary.cases.max(1) as f64;
    let pass_rate = crate::stats::mean(&rows.pass).unwrap_or(0.0);
    CandidateFigures {
        label: label.to_string(),
        model: summary.model.clone(),
        prompt: prompt.to_string(),
        prompt_version: summary.prompt_version.clone(),
        params: params.clone(),
        rows: rows.pass.len(),
        cases: summary.cases,
        pass_rate,
        pass_rate_interval: pass_rate_interval(&rows.pass, level),
        mean_score: summary.mean_score,
        cost_per_1k: summary.cost_per_1k,
        latency_p50_ms: summary.latency_p50_ms,
        latency_p95_ms: summary.latency_p95_ms,
        input_tokens: summary.input_tokens as f64 / calls,
        output_tokens: summary.output_tokens as f64 / calls,
        error_rate: summary.errors as f64 / calls,
        cache_hits: summary.cache_hits,
        results_file: summary.results_file.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wilson_matches_a_known_value() {
        // 8 of 10 at 95%: Wilson 0.4902 … 0.9433.
        let v: Vec<f64> = (0..10).map(|i| if i < 8 { 1.0 } else { 0.0 }).collect();
        let i = pass_rate_interval(&v, 0.95);
        assert!((i.low - 0.4902).abs() < 1e-3, "{i:?}");
        assert!((i.high - 0.9433).abs() < 1e-3, "{i:?}");
    }

    proptest! {
        #[test]
        fn the_interval_holds_the_rate_and_stays_in_range(
            v in proptest::collection::vec(prop_oneof![Just(0.0), Just(0.5), Just(1.0)], 1..60)
        ) {
            let p = v.iter().sum::<f64>() / v.len() as f64;
            let i = pass_rate_interval(&v, 0.95);
            prop_assert!(0.0 <= i.low && i.low <= p + 1e-12);
            prop_assert!(p - 1e-12 <= i.high && i.high <= 1.0);
        }
    }
}
