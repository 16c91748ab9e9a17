//! Which candidate to pick: each candidate against the best one on the
//! same rows, and the cheapest one shown to be as good.
//!
//! The best candidate has the highest pass rate (ties: the cheaper, then
//! the first listed). The claim the report makes, "`small` is not worse
//! than the best by more than `margin`", is about the candidate that is
//! *truly* best, which the data only estimates: the best on the rows may be
//! a candidate that is truly a little worse (and got lucky on these rows),
//! and a candidate tested against it alone would be measured against a
//! lowered bar. So by default ([`Reference::EveryOther`]) a candidate is
//! paired row by row with *every* other candidate and tested with the
//! gate's non-inferiority test ([`crate::stats::noninferiority`], per-row
//! pass fractions when there are repeats): H0 "its pass rate is lower than
//! the other's by `margin` or more" against H1 "by less than `margin`".
//! It is shown non-inferior only when every one of these tests rejects
//! (an intersection-union test: its p-value is the largest of them).
//! Whichever candidate is truly best, the claim was tested against that one
//! fixed candidate, so picking the best on the same rows cannot inflate the
//! error; the cost is power when two candidates are close to the top
//! (`benches/compare_sim.rs` measures both). These p-values are
//! Holm-adjusted across the candidates, so the chance that any candidate
//! worse than the best by the margin or more is called "as good" stays
//! below `1 - confidence`.
//!
//! The mirror test (H1: worse by more than the margin) says which
//! candidates are shown to be worse: a candidate is worse than the best as
//! soon as it is shown worse than any one candidate, so its p-values
//! against every other candidate are Holm-adjusted together, over all
//! pairs.
//!
//! [`Reference::ObservedBest`] tests against the best on the rows only (the
//! first method; kept so that the simulation can show what it costs).
//!
//! The recommendation is the cheapest of the best and the candidates shown
//! non-inferior: the best itself when no cheaper candidate is shown to be
//! as good (the report then says so).

use serde::Serialize;

use super::metrics::{CandidateFigures, RowOutcomes};
use crate::stats::fdr::holm;
use crate::stats::noninferiority::{self, Alternative, DropTest};

/// Which candidates each candidate's claims are tested against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reference {
    /// Every other candidate (see the module doc): valid whichever one is
    /// truly best.
    EveryOther,
    /// The best on the rows only: the best picked on the same rows may be
    /// truly worse than another candidate.
    ObservedBest,
}

/// One candidate against the best.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VersusBest {
    /// Against the best on the rows; H1: worse than it by less than the
    /// margin.
    pub non_inferiority: DropTest,
    /// The candidate's non-inferiority p-value before the correction: the
    /// largest over the candidates it was tested against.
    pub p_value: f64,
    /// The candidate that gave `p_value` (the hardest one to match).
    pub limited_by: String,
    /// Holm-adjusted `p_value`.
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
    pub reference: Reference,
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

/// Tests every candidate against every other one and picks the
/// recommendation ([`Reference::EveryOther`]). `rows[i]` are candidate i's
/// per-row pass fractions; all candidates ran on the same rows, paired by
/// key.
pub fn decide(
    figures: &[CandidateFigures],
    rows: &[RowOutcomes],
    margin: f64,
    confidence: f64,
) -> Option<Decision> {
    decide_against(figures, rows, margin, confidence, Reference::EveryOther)
}

/// One candidate's tests against one other candidate.
struct PairTests {
    against: usize,
    non_inferiority: DropTest,
    worse: DropTest,
}

/// [`decide`] with the reference rule chosen.
pub fn decide_against(
    figures: &[CandidateFigures],
    rows: &[RowOutcomes],
    margin: f64,
    confidence: f64,
    reference: Reference,
) -> Option<Decision> {
    let best = best(figures)?;
    let n = figures.len();
    let mut tests: Vec<Vec<PairTests>> = (0..n).map(|_| Vec::new()).collect();
    let mut errors: Vec<Option<String>> = vec![None; n];
    for i in (0..n).filter(|&i| i != best) {
        // The best first: its test is the one the report shows.
        let others = std::iter::once(best)
            .chain((0..n).filter(|&j| reference == Reference::EveryOther && j != i && j != best));
        for j in others {
            let (b, c) = paired(&rows[j], &rows[i]);
            let run = |alt| noninferiority::test(&b, &c, margin, confidence, alt);
            match (run(Alternative::DropBelow), run(Alternative::DropAbove)) {
                (Ok(non_inferiority), Ok(worse)) => tests[i].push(PairTests {
                    against: j,
                    non_inferiority,
                    worse,
                }),
                (Err(e), _) | (_, Err(e)) => {
                    errors[i] = Some(if j == best {
                        e.to_string()
                    } else {
                        format!("against `{}`: {e}", figures[j].label)
                    });
                    tests[i].clear();
                    break;
                }
            }
        }
    }
    let tested: Vec<usize> = (0..n).filter(|&i| !tests[i].is_empty()).collect();
    // Intersection-union: a candidate's p-value is the largest of its
    // tests', and the candidate that gave it limits it.
    let limits: Vec<(f64, usize)> = tested
        .iter()
        .map(|&i| {
            tests[i]
                .iter()
                .map(|t| (t.non_inferiority.p_value, t.against))
                .fold((0.0, best), |m, t| if t.0 > m.0 { t } else { m })
        })
        .collect();
    let adj_ni = holm(&limits.iter().map(|l| l.0).collect::<Vec<_>>());
    // "Worse": Holm over every pair; a candidate is worse when any of its
    // pairs is.
    let p_worse: Vec<f64> = tested
        .iter()
        .flat_map(|&i| tests[i].iter().map(|t| t.worse.p_value))
        .collect();
    let adj_worse = holm(&p_worse);
    let alpha = 1.0 - confidence;
    let mut versus_best: Vec<Option<VersusBest>> = vec![None; n];
    let mut at = 0;
    for (k, &i) in tested.iter().enumerate() {
        let pairs = tests[i].len();
        let p_worse_holm = adj_worse[at..at + pairs]
            .iter()
            .copied()
            .fold(1.0, f64::min);
        at += pairs;
        // The first pair is the one against the best.
        let against_best = tests[i].swap_remove(0);
        versus_best[i] = Some(VersusBest {
            non_inferiority: against_best.non_inferiority,
            p_value: limits[k].0,
            limited_by: figures[limits[k].1].label.clone(),
            p_holm: adj_ni[k],
            non_inferior: adj_ni[k] < alpha,
            p_worse_holm,
            worse: p_worse_holm < alpha,
        });
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
        reference,
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

    fn cand(label: &str, cost: f64, pass: &[f64]) -> (CandidateFigures, RowOutcomes) {
        let rows = RowOutcomes {
            keys: (0..pass.len()).map(|i| format!("r{i}")).collect(),
            pass: pass.to_vec(),
        };
        let f = CandidateFigures::from_pass(label, cost, pass, 0.95);
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

    /// Rows `from..to` pass, the others fail.
    fn passing(n: usize, from: usize, to: usize) -> Vec<f64> {
        (0..n)
            .map(|i| f64::from(u8::from((from..to).contains(&i))))
            .collect()
    }

    #[test]
    fn a_candidate_is_only_as_good_as_its_hardest_comparison() {
        // `close` fails the rows `top` fails and 6 more (drop 2 points on
        // 6 discordant rows: shown within 5 points of `top`); `other` is
        // nearly as good as `top` on different rows, so against it `close`
        // differs on 69 rows and is not shown within 5 points.
        let c = [
            cand("top", 10.0, &passing(300, 0, 270)),
            cand("other", 8.0, &passing(300, 33, 300)),
            cand("close", 1.0, &passing(300, 0, 264)),
        ];
        let (f, r): (Vec<_>, Vec<_>) = c.iter().cloned().unzip();
        let every = decide(&f, &r, 0.05, 0.95).unwrap();
        let observed = decide_against(&f, &r, 0.05, 0.95, Reference::ObservedBest).unwrap();
        assert_eq!((every.best, observed.best), (0, 0));
        let (e, o) = (
            every.versus_best[2].as_ref().unwrap(),
            observed.versus_best[2].as_ref().unwrap(),
        );
        // The test against the best is the same under both rules.
        assert_eq!(e.non_inferiority, o.non_inferiority);
        assert!(o.non_inferior && o.non_inferiority.p_value < 0.025, "{o:?}");
        assert!(!e.non_inferior && e.p_value > 0.05, "{e:?}");
        assert_eq!(e.limited_by, "other");
        assert_eq!(o.limited_by, "top");
        // `other` is not shown within 5 points of `top` either.
        assert_eq!((every.recommended, observed.recommended), (0, 2));
    }

    #[test]
    fn shown_worse_than_any_candidate_is_worse_than_the_best() {
        let c = [
            cand("a", 10.0, &rows(200, 0)),
            cand("b", 5.0, &rows(200, 1)),
            cand("c", 1.0, &rows(200, 60)),
        ];
        let d = run(&c, 0.05);
        let v = d.versus_best[2].as_ref().unwrap();
        assert!(v.worse && !v.non_inferior, "{v:?}");
        assert!(v.p_worse_holm < 1e-6, "{v:?}");
        assert!(
            d.versus_best[1]
                .as_ref()
                .is_some_and(|v| v.non_inferior && !v.worse)
        );
        assert_eq!(d.recommended, 1);
    }

    #[test]
    fn the_best_is_recommended_when_nothing_is_cheaper() {
        let c = [cand("a", 1.0, &rows(50, 0)), cand("b", 2.0, &rows(50, 0))];
        let d = run(&c, 0.03);
        assert_eq!((d.best, d.recommended), (0, 0));
    }
}
