//! Simulation benchmark of `promptgate compare`'s recommendation: how often
//! does it call a candidate "not worse than the best by more than the
//! margin" when it is exactly the margin worse, and how often does it find
//! a cheaper candidate that is truly as good?
//!
//! Data: one latent-difficulty model for all candidates (as
//! `benches/gate_sim.rs`). Each row has a difficulty z ~ N(0,1) shared by
//! every candidate and every repeat; a call of candidate c passes when
//! z + σε < t_c (ε ~ N(0,1) per call), so c's pass rate over rows is
//! Φ(t_c / sqrt(1 + σ²)) and its true drop below the best is known exactly.
//! Candidates' outcomes on a row are correlated, 1/(1+σ²) on the latent
//! scale.
//!
//! Every replication goes through the real code path,
//! `promptgate::compare::decide::decide_against` on per-row pass fractions:
//! the best is picked from the same rows the tests then use (the selection
//! effect), and the p-values are Holm-adjusted across candidates. Both
//! reference rules run on the same draws: every other candidate (what
//! `compare` uses) and the best on the rows only (the first method).
//! "Without Holm" reads the same tests' unadjusted p-values.
//!
//! Run: `cargo bench --bench compare_sim [REPLICATIONS]` (default 1,000;
//! every cell has its own seed, so the figures do not depend on the build).
//! Figures go to benches/README.md.

#![allow(clippy::print_stdout)]

use promptgate::compare::decide::{self, Decision, Reference};
use promptgate::compare::metrics::{CandidateFigures, RowOutcomes};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use statrs::distribution::{ContinuousCDF, Normal};

const BEST_RATE: f64 = 0.85;
const CONFIDENCE: f64 = 0.95;
const MARGIN: f64 = 0.05;

fn gauss(rng: &mut StdRng) -> f64 {
    // Box-Muller.
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Candidates by their true drop below the best (candidate 0, the
/// dearest); candidate i costs half of candidate i-1.
struct Scenario {
    thresholds: Vec<f64>,
    drops: Vec<f64>,
    sigma: f64,
    rows: usize,
    repeats: usize,
}

impl Scenario {
    fn new(drops: Vec<f64>, sigma: f64, rows: usize, repeats: usize) -> Scenario {
        let normal = Normal::standard();
        let scale = (1.0 + sigma * sigma).sqrt();
        Scenario {
            thresholds: drops
                .iter()
                .map(|d| scale * normal.inverse_cdf(BEST_RATE - d))
                .collect(),
            drops,
            sigma,
            rows,
            repeats,
        }
    }

    /// Per-candidate figures and per-row pass fractions of one dataset.
    fn draw(&self, rng: &mut StdRng) -> (Vec<CandidateFigures>, Vec<RowOutcomes>) {
        let k = self.thresholds.len();
        let mut pass = vec![Vec::with_capacity(self.rows); k];
        for _ in 0..self.rows {
            let z = gauss(rng);
            for (c, t) in self.thresholds.iter().enumerate() {
                let hits = (0..self.repeats)
                    .filter(|_| z + self.sigma * gauss(rng) < *t)
                    .count();
                pass[c].push(hits as f64 / self.repeats as f64);
            }
        }
        let keys: Vec<String> = (0..self.rows).map(|i| format!("r{i}")).collect();
        let figures = pass
            .iter()
            .enumerate()
            .map(|(c, p)| figures(c, p))
            .collect();
        let rows = pass
            .into_iter()
            .map(|pass| RowOutcomes {
                keys: keys.clone(),
                pass,
            })
            .collect();
        (figures, rows)
    }
}

fn figures(c: usize, pass: &[f64]) -> CandidateFigures {
    CandidateFigures::from_pass(
        &format!("c{c}"),
        10.0 / f64::from(1u32 << c),
        pass,
        CONFIDENCE,
    )
}

/// Counts over the replications of one scenario.
#[derive(Default)]
struct Tally {
    reps: usize,
    /// Replications where a candidate at or beyond the margin was called
    /// non-inferior: with Holm, without.
    false_ni: usize,
    false_ni_raw: usize,
    /// Replications where a candidate within the margin was called worse
    /// by more than the margin (Holm).
    false_worse: usize,
    /// Replications where the observed best was not the true best.
    wrong_best: usize,
    /// Replications where the cheapest candidate was recommended.
    cheapest: usize,
    /// Candidates (other than the true best) called non-inferior.
    shown_ni: usize,
    others: usize,
}

impl Tally {
    fn add(&mut self, s: &Scenario, d: &Decision) {
        let alpha = 1.0 - CONFIDENCE;
        let k = s.drops.len();
        self.reps += 1;
        let at_margin = |i: usize| s.drops[i] >= MARGIN - 1e-12;
        let versus = |i: usize| d.versus_best[i].as_ref();
        self.false_ni +=
            usize::from((0..k).any(|i| at_margin(i) && versus(i).is_some_and(|v| v.non_inferior)));
        self.false_ni_raw += usize::from(
            (0..k).any(|i| at_margin(i) && versus(i).is_some_and(|v| v.p_value < alpha)),
        );
        self.false_worse += usize::from(
            (0..k).any(|i| s.drops[i] <= MARGIN + 1e-12 && versus(i).is_some_and(|v| v.worse)),
        );
        self.wrong_best += usize::from(s.drops[d.best] > 0.0);
        self.cheapest += usize::from(d.recommended == k - 1);
        for i in 1..k {
            self.others += 1;
            self.shown_ni += usize::from(i == d.best || versus(i).is_some_and(|v| v.non_inferior));
        }
    }

    fn share(&self, count: usize) -> f64 {
        count as f64 / self.reps.max(1) as f64
    }

    /// "share ± MC SE".
    fn rate(&self, count: usize) -> String {
        let p = self.share(count);
        let se = (p * (1.0 - p) / self.reps.max(1) as f64).sqrt();
        format!("{p:.4} ± {se:.4}")
    }
}

/// Tallies of the two reference rules on the same draws.
struct Both {
    every_other: Tally,
    observed_best: Tally,
}

fn simulate(seed: u64, reps: usize, s: &Scenario) -> Both {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut every_other, mut observed_best) = (Tally::default(), Tally::default());
    for _ in 0..reps {
        let (figures, rows) = s.draw(&mut rng);
        for (reference, tally) in [
            (Reference::EveryOther, &mut every_other),
            (Reference::ObservedBest, &mut observed_best),
        ] {
            let Some(d) = decide::decide_against(&figures, &rows, MARGIN, CONFIDENCE, reference)
            else {
                panic!("no decision on {} candidates", figures.len());
            };
            if let Some(e) = d.errors.iter().flatten().next() {
                panic!("simulated data refused: {e}");
            }
            tally.add(s, &d);
        }
    }
    Both {
        every_other,
        observed_best,
    }
}

/// The configurations of part (a): the true best and candidates exactly at
/// the margin, with or without one candidate half the margin below the
/// best (it is often picked as "the best" on the data, and the others are
/// then compared with a reference below the true best).
fn family_wise(
    reps: usize,
    bound: f64,
    (sigmas, ks, first_seed): (&[f64], &[usize], u64),
    liberal: &mut Vec<String>,
) {
    println!(
        "| configuration | latent σ (corr) | candidates | rows | repeats | every other, Holm | every other, no Holm | observed best, Holm | observed best, no Holm | observed best not the true best | called worse: every other / observed best |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut seed = first_seed;
    for &sigma in sigmas {
        for near in [false, true] {
            for &k in ks {
                for rows in [100, 1000] {
                    for repeats in [1, 3] {
                        seed += 1;
                        if near && k == 2 {
                            continue;
                        }
                        let mut drops = vec![MARGIN; k];
                        drops[0] = 0.0;
                        if near {
                            drops[1] = MARGIN / 2.0;
                        }
                        let s = Scenario::new(drops, sigma, rows, repeats);
                        let t = simulate(seed, reps, &s);
                        let name = if near {
                            "best, one at margin/2, rest at margin"
                        } else {
                            "best, rest at margin"
                        };
                        let (e, o) = (&t.every_other, &t.observed_best);
                        let flag = |t: &Tally, rule: &str, liberal: &mut Vec<String>| {
                            if t.share(t.false_ni) > bound {
                                liberal.push(format!(
                                    "{rule}: {name}, σ {sigma}, {k} x {rows} rows x {repeats}"
                                ));
                                " LIBERAL"
                            } else {
                                ""
                            }
                        };
                        let (fe, fo) = (
                            flag(e, "every other", liberal),
                            flag(o, "observed best", liberal),
                        );
                        println!(
                            "| {name} | {sigma} ({:.2}) | {k} | {rows} | {repeats} | {}{fe} | {} | {}{fo} | {} | {:.3} | {:.4} / {:.4} |",
                            1.0 / (1.0 + sigma * sigma),
                            e.rate(e.false_ni),
                            e.rate(e.false_ni_raw),
                            o.rate(o.false_ni),
                            o.rate(o.false_ni_raw),
                            o.share(o.wrong_best),
                            e.share(e.false_worse),
                            o.share(o.false_worse),
                        );
                    }
                }
            }
        }
    }
}

/// Part (b): every candidate truly as good as the best, or 1 point worse.
fn power(reps: usize) {
    println!(
        "\nPower: the share of replications where the cheapest candidate is recommended (± MC SE) and the mean share of the other candidates called non-inferior, by rule.\n"
    );
    println!(
        "| others' true drop | candidates | rows | repeats | cheapest recommended: every other | observed best | others non-inferior: every other | observed best |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut seed = 1000u64;
    for drop in [0.0, 0.01] {
        for k in [2usize, 4, 6] {
            for rows in [100, 1000] {
                for repeats in [1, 3] {
                    seed += 1;
                    let mut drops = vec![drop; k];
                    drops[0] = 0.0;
                    let s = Scenario::new(drops, 0.7, rows, repeats);
                    let t = simulate(seed, reps, &s);
                    let (e, o) = (&t.every_other, &t.observed_best);
                    println!(
                        "| {drop:.2} | {k} | {rows} | {repeats} | {} | {} | {:.3} | {:.3} |",
                        e.rate(e.cheapest),
                        o.rate(o.cheapest),
                        e.shown_ni as f64 / e.others.max(1) as f64,
                        o.shown_ni as f64 / o.others.max(1) as f64,
                    );
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let reps: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(1000);
    let alpha = 1.0 - CONFIDENCE;
    let bound = alpha + 2.0 * (alpha * (1.0 - alpha) / reps as f64).sqrt();
    println!(
        "compare_sim: {reps} replications per cell, best pass rate {BEST_RATE}, margin {MARGIN}, confidence {CONFIDENCE}"
    );
    println!("a family-wise error above {bound:.4} (= {alpha:.2} + 2 Monte-Carlo SE) is flagged\n");
    let mut liberal = Vec::new();
    println!(
        "Share of replications where any candidate at the margin is called non-inferior (± Monte-Carlo SE), by rule: against every other candidate (the method) or against the best on the rows only (the first method); with Holm across candidates and without. Last columns: how often the best on the rows was not the true best, and the share where any candidate within the margin was called worse (Holm).\n"
    );
    family_wise(reps, bound, (&[0.7], &[2, 4, 6], 1), &mut liberal);
    println!("\nOther latent correlations, 6 candidates:\n");
    family_wise(reps, bound, (&[0.3, 3.0], &[6], 500), &mut liberal);
    power(reps);
    if liberal.is_empty() {
        println!("\nno configuration's family-wise error exceeds {bound:.4}");
    } else {
        println!("\nLIBERAL: {}", liberal.join("; "));
    }
}
