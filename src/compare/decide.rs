//! Which candidate to pick: each candidate against the best one on the
//! same rows, and the cheapest one shown to be as good.
//!
//! The best candidate has the highest pass rate (ties: the cheaper, then
//! the first listed). Every other candidate is paired with it row by row
//! and tested with the gate's non-inferiority test
//! ([`crate::stats::noninferiority`], per-row pass fractions when there
//! are repeats): H0 "the candidate's pass rate is lower than the best's by
//! `margin` or more" against H1 "by less than `margin`". The p-values are
//! Holm-adjusted across the candidates, so the chance that any candidate
//! worse by the margin or more is called "as good" stays below
//! `1 - confidence`. The mirror test (H1: worse by more than the margin),
//! also Holm-adjusted, says which candidates are shown to be worse.
//!
//! The recommendation is the cheapest of the best and the candidates shown
//! non-inferior to it: the best itself when no cheaper candidate is shown
//! to be as good (the report then says so).

use serde::Serialize;

use super::metrics::{CandidateFigures, RowOutcomes};
use crate::stats::fdr::holm;
use crate::stats::noninferiority::{self, Alternative, DropTest};

/// One candidate against the best.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VersusBest {
    /// H1: worse than the best by less than the margin.
    pub non_inferiority: DropTest,
    /// Holm-adjusted p-value of `non_inferiority`.
    pub p_holm: f64,
    /// Shown within the margin of the best after the correction.
    pub non_inferior: bool,
    /// Holm-adjusted p-value of "worse by more than the margin".
    pub p_worse_holm: f64,
    /// Shown worse than the best by more than the margin.
    pub worse: bool,
}

/// The verdict over all candidates.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Decision {
    /// Index of the best candidate.
    pub best: usize,
    /// Per candidate (None for the best itself, or when a test could not
    /// run, see `errors`).
    pub versus_best: Vec<Option<VersusBest>>,
    /// Why a candidate's test could not run, per candidate.
    pub errors: Vec<Option<String>>,
    /// Index of the recommended candidate.
    pub recommended: usize,
}

/// The best candidate's index; None without candidates.
pub fn best(figures: &[CandidateFigures]) -> Option<usize> {
    (0..figures.len()).reduce(|b, i| {
        let (fb, fi) = (&figures[b], &figures[i]);
        if fi.pass_rate > fb.pass_rate
            || (fi.pass_rate == fb.pass_rate && fi.cost_per_1k < fb.cost_per_1k)
        {
            i
        } else {
            b
        }
    })
}

/// Tests every candidate against the best and picks the recommendation.
/// `rows[i]` are candidate i's per-row pass fractions; all candidates ran
/// on the same rows, paired by key.
pub fn decide(
    figures: &[CandidateFigures],
    rows: &[RowOutcomes],
    margin: f64,
    confidence: f64,
) -> Option<Decision> {
    let best = best(figures)?;
    let n = figures.len();
    let mut tests: Vec<Option<(DropTest, DropTest)>> = vec![None; n];
    let mut errors: Vec<Option<String>> = vec![None; n];
    for i in (0..n).filter(|&i| i != best) {
        let (b, c) = paired(&rows[best], &rows[i]);
        let run = |alt| noninferiority::test(&b, &c, margin, confidence, alt);
        match (run(Alternative::DropBelow), run(Alternative::DropAbove)) {
            (Ok(ni), Ok(worse)) => tests[i] = Some((ni, worse)),
            (Err(e), _) | (_, Err(e)) => errors[i] = Some(e.to_string()),
        }
    }
    let tested: Vec<usize> = (0..n).filter(|&i| tests[i].is_some()).collect();
    let p_ni: Vec<f64> = tested
        .iter()
        .filter_map(|&i| tests[i].as_ref().map(|t| t.0.p_value))
        .collect();
    let p_worse: Vec<f64> = tested
        .iter()
        .filter_map(|&i| tests[i].as_ref().map(|t| t.1.p_value))
        .collect();
    let (adj_ni, adj_worse) = (holm(&p_ni), holm(&p_worse));
    let alpha = 1.0 - confidence;
    let mut versus_best: Vec<Option<VersusBest>> = vec![None; n];
    for (k, &i) in tested.iter().enumerate() {
        if let Some((ni, _)) = tests[i].take() {
            versus_best[i] = Some(VersusBest {
                non_inferiority: ni,
                p_holm: adj_ni[k],
                non_inferior: adj_ni[k] < alpha,
                p_worse_holm: adj_worse[k],
                worse: adj_worse[k] < alpha,
            });
        }
    }
    let recommended = (0..n)
        .filter(|&i| i == best || versus_best[i].as_ref().is_some_and(|v| v.non_inferior))
        .min_by(|&a, &b| {
            figures[a]
                .cost_per_1k
                .total_cmp(&figures[b].cost_per_1k)
                .then(figures[b].pass_rate.total_cmp(&figures[a].pass_rate))
                .then(a.cmp(&b))
        });
    Some(Decision {
        best,
        versus_best,
        errors,
        recommended: recommended.unwrap_or(best),
    })
}

/// The best's and the candidate's fractions on the rows both have.
fn paired(best: &RowOutcomes, other: &RowOutcomes) -> (Vec<f64>, Vec<f64>) {
    let index: std::collections::HashMap<&str, f64> = other
        .keys
        .iter()
        .map(String::as_str)
        .zip(other.pass.iter().copied())
        .collect();
    best.keys
        .iter()
        .zip(&best.pass)
        .filter_map(|(k, b)| index.get(k.as_str()).map(|c| (*b, *c)))
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::metrics::pass_rate_interval;

    fn cand(label: &str, cost: f64, pass: &[f64]) -> (CandidateFigures, RowOutcomes) {
        let rows = RowOutcomes {
            keys: (0..pass.len()).map(|i| format!("r{i}")).collect(),
            pass: pass.to_vec(),
        };
        let rate = pass.iter().sum::<f64>() / pass.len() as f64;
        let f = CandidateFigures {
            label: label.into(),
            model: label.into(),
            prompt: "suite".into(),
            prompt_version: String::new(),
            params: serde_json::Map::new(),
            rows: pass.len(),
            cases: pass.len(),
            pass_rate: rate,
            pass_rate_interval: pass_rate_interval(pass, 0.95),
            mean_score: rate,
            cost_per_1k: cost,
            latency_p50_ms: None,
            latency_p95_ms: None,
            input_tokens: 0.0,
            output_tokens: 0.0,
            error_rate: 0.0,
            cache_hits: 0,
            results_file: None,
        };
        (f, rows)
    }

    fn run(c: &[(CandidateFigures, RowOutcomes)], margin: f64) -> Decision {
        let (f, r): (Vec<_>, Vec<_>) = c.iter().cloned().unzip();
        decide(&f, &r, margin, 0.95).unwrap()
    }

    /// `n` rows, the first `fail` of them failing.
    fn rows(n: usize, fail: usize) -> Vec<f64> {
        (0..n).map(|i| if i < fail { 0.0 } else { 1.0 }).collect()
    }

    #[test]
    fn the_cheapest_candidate_shown_as_good_is_recommended() {
        let c = [
            cand("large", 10.0, &rows(400, 0)),
            cand("small", 1.0, &rows(400, 2)),
            cand("tiny", 0.1, &rows(400, 120)),
        ];
        let d = run(&c, 0.03);
        assert_eq!(d.best, 0);
        let small = d.versus_best[1].as_ref().unwrap();
        assert!(small.non_inferior && !small.worse, "{small:?}");
        let tiny = d.versus_best[2].as_ref().unwrap();
        assert!(!tiny.non_inferior && tiny.worse, "{tiny:?}");
        assert_eq!(d.recommended, 1);
    }

    #[test]
    fn the_best_is_kept_when_no_cheaper_one_is_shown_as_good() {
        let c = [
            cand("tiny", 0.1, &rows(100, 40)),
            cand("large", 10.0, &rows(100, 0)),
            // As good, but dearer than the best: never the pick.
            cand("huge", 20.0, &rows(100, 0)),
        ];
        let d = run(&c, 0.03);
        assert_eq!((d.best, d.recommended), (1, 1));
    }

    #[test]
    fn the_best_is_recommended_when_nothing_is_cheaper() {
        let c = [cand("a", 1.0, &rows(50, 0)), cand("b", 2.0, &rows(50, 0))];
        let d = run(&c, 0.03);
        assert_eq!((d.best, d.recommended), (0, 0));
    }
}
