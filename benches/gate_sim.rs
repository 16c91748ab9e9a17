//! Simulation benchmark of the PR gate's regression test: how often does
//! `regression: {max_drop, confidence}` block a pull request whose true drop
//! is known?
//!
//! Data: paired rows from a latent-difficulty model. Each row has a
//! difficulty z ~ N(0,1) shared by base, head and every repeat; one call
//! passes when z + σε < t (ε ~ N(0,1) per call), so a side's pass rate over
//! rows is Φ(t / sqrt(1 + σ²)) and the true drop is exactly the difference
//! of the two thresholds' rates. Hard rows stay hard on both sides (base and
//! head outcomes of a row are correlated, 1/(1+σ²) on the latent scale), and
//! repeats of a row are correlated through z.
//!
//! On the same draws it compares
//! * the new gate: `promptgate::stats::noninferiority` (H0: drop <= max_drop),
//!   blocking when it rejects at `confidence`;
//! * the old gate: observed drop > max_drop and the one-sided test of
//!   "head is worse" (drop > 0) significant: exact McNemar without repeats
//!   (`paired::mcnemar_worse`, as the gate used), the paired sign-flip test
//!   with repeats (the gate's own 20,000-flip test up to 100 rows wherever
//!   its normal approximation is not clearly far from 0.05; on 1,000 rows
//!   the normal approximation, which is close there and keeps the run
//!   short). The old gate's p-value is
//!   only computed when the observed drop exceeds `max_drop`: it cannot
//!   block otherwise.
//!
//! Run: `cargo bench --bench gate_sim [REPLICATIONS] [main|main0|sensitivity]`
//! (default 2,000 replications, both parts; `main0`: the max_drop 0 rows
//! only; every cell has its own seed, so a part run alone gives the same
//! figures as in a whole run).
//! Figures go to benches/README.md.

#![allow(clippy::print_stdout)]

use promptgate::stats::noninferiority::{self, Alternative};
use promptgate::stats::paired;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use statrs::distribution::{ContinuousCDF, Normal};

const BASE_RATE: f64 = 0.85;
const CONFIDENCE: f64 = 0.95;
/// Latent noise per call: base/head latent correlation 1/(1+σ²) = 0.67.
const SIGMA: f64 = 0.7;

struct Latent {
    t_base: f64,
    t_head: f64,
    sigma: f64,
}

impl Latent {
    fn new(base_rate: f64, drop: f64, sigma: f64) -> Latent {
        let normal = Normal::standard();
        let scale = (1.0 + sigma * sigma).sqrt();
        Latent {
            t_base: scale * normal.inverse_cdf(base_rate),
            t_head: scale * normal.inverse_cdf(base_rate - drop),
            sigma,
        }
    }

    /// Per-row pass fractions (base, head) of one dataset.
    fn draw(&self, rng: &mut StdRng, rows: usize, repeats: usize) -> (Vec<f64>, Vec<f64>) {
        let (mut base, mut head) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        for _ in 0..rows {
            let z = gauss(rng);
            let mut side = |t: f64| {
                (0..repeats)
                    .filter(|_| z + self.sigma * gauss(rng) < t)
                    .count() as f64
                    / repeats as f64
            };
            base.push(side(self.t_base));
            head.push(side(self.t_head));
        }
        (base, head)
    }
}

fn gauss(rng: &mut StdRng) -> f64 {
    // Box-Muller.
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The old gate's p-value of "head is worse", and whether it took the
/// full permutation test.
fn old_p_worse(base: &[f64], head: &[f64], rng: &mut StdRng) -> (f64, bool) {
    let binary = base.iter().chain(head).all(|v| *v == 0.0 || *v == 1.0);
    if binary {
        let broke = base.iter().zip(head).filter(|(b, h)| b > h).count() as u64;
        let fixed = base.iter().zip(head).filter(|(b, h)| b < h).count() as u64;
        return (paired::mcnemar_worse(broke, fixed), false);
    }
    // Sign flips of head - base: under the null S = Σ ±d_i has mean 0 and
    // variance Σ d_i². On 1,000 rows, and far from 0.05, the normal
    // approximation decides the verdict; otherwise the gate's own
    // 20,000-flip test does.
    let diffs: Vec<f64> = head.iter().zip(base).map(|(h, b)| h - b).collect();
    let sum: f64 = diffs.iter().sum();
    let sq: f64 = diffs.iter().map(|d| d * d).sum();
    if sq == 0.0 {
        return (1.0, false);
    }
    let approx = Normal::standard().cdf(sum / sq.sqrt());
    if diffs.len() <= 100 && (0.005..0.25).contains(&approx) {
        (paired::sign_flip_worse(&diffs, rng), true)
    } else {
        (approx, false)
    }
}

struct Rates {
    new: f64,
    old: f64,
    /// Draws where the old gate needed its full permutation test.
    permuted: usize,
    /// Mean share of rows that broke / got fixed (pass fraction down / up).
    broke: f64,
    fixed: f64,
}

fn scenario(
    seed: u64,
    reps: usize,
    rows: usize,
    repeats: usize,
    max_drop: f64,
    true_drop: f64,
    sigma: f64,
) -> Rates {
    let latent = Latent::new(BASE_RATE, true_drop, sigma);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut new, mut old) = (0usize, 0usize);
    let (mut broke, mut fixed) = (0usize, 0usize);
    let mut flips = StdRng::seed_from_u64(seed ^ 0xf11b);
    let mut permuted = 0usize;
    for _ in 0..reps {
        let (base, head) = latent.draw(&mut rng, rows, repeats);
        let t = match noninferiority::test(
            &base,
            &head,
            max_drop,
            CONFIDENCE,
            Alternative::DropAbove,
        ) {
            Ok(t) => t,
            Err(e) => panic!("simulated data refused: {e}"),
        };
        new += usize::from(t.rejected);
        // The old gate: observed drop over the allowance and "worse" significant.
        if t.estimate > max_drop + 1e-9 {
            let (p, full) = old_p_worse(&base, &head, &mut flips);
            permuted += usize::from(full);
            old += usize::from(p < 1.0 - CONFIDENCE);
        }
        broke += base.iter().zip(&head).filter(|(b, h)| b > h).count();
        fixed += base.iter().zip(&head).filter(|(b, h)| b < h).count();
    }
    let per = |k: usize| k as f64 / reps as f64;
    Rates {
        new: per(new),
        old: per(old),
        permuted,
        broke: broke as f64 / (reps * rows) as f64,
        fixed: fixed as f64 / (reps * rows) as f64,
    }
}

/// What the tables found: cells at or inside the allowance that blocked
/// too often, and how many draws ran the old gate's full permutation test.
#[derive(Default)]
struct Findings {
    liberal: Vec<String>,
    permuted: usize,
}

/// Block rates at true drops 0, max_drop - 1, max_drop, +5 and +10 points.
/// `margins` picks which max_drop values run (seeds stay those of a whole run).
fn main_table(reps: usize, bound: f64, margins: &[f64], found: &mut Findings) {
    println!(
        "| max_drop | rows | repeats | true drop | new gate blocks | old gate blocks | rows broke / fixed |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut seed = 1u64;
    for max_drop in [0.05, 0.0] {
        for rows in [100, 1000] {
            for repeats in [1, 3] {
                for offset in [None, Some(-0.01), Some(0.0), Some(0.05), Some(0.10)] {
                    let true_drop = offset.map_or(0.0, |o| max_drop + o);
                    if max_drop == 0.0 && offset == Some(0.0) {
                        continue; // the same cell as true drop 0
                    }
                    seed += 1;
                    if !margins.contains(&max_drop) {
                        continue;
                    }
                    let r = scenario(seed, reps, rows, repeats, max_drop, true_drop, SIGMA);
                    found.permuted += r.permuted;
                    let null = true_drop <= max_drop + 1e-12;
                    let flag = if null && r.new > bound {
                        found.liberal.push(format!(
                            "max_drop {max_drop}, {rows} rows x {repeats}, drop {true_drop:.2}"
                        ));
                        " LIBERAL"
                    } else {
                        ""
                    };
                    println!(
                        "| {:.2} | {rows} | {repeats} | {:.2} | {:.4}{flag} | {:.4} | {:.3} / {:.3} |",
                        max_drop, true_drop, r.new, r.old, r.broke, r.fixed
                    );
                }
            }
        }
    }
}

/// The boundary at other correlations and sizes, and the end-to-end
/// scenario's model.
fn sensitivity(reps: usize, bound: f64, found: &mut Findings) {
    println!(
        "\nSensitivity at the boundary (true drop = max_drop = 0.05), other correlations and sizes:\n"
    );
    println!(
        "| latent σ (base/head latent corr) | rows | repeats | new gate blocks | old gate blocks | rows broke / fixed |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut seed = 100u64;
    for sigma in [0.3, 0.7, 3.0] {
        for rows in [30, 100, 1000] {
            for repeats in [1, 3] {
                seed += 1;
                let r = scenario(seed, reps, rows, repeats, 0.05, 0.05, sigma);
                found.permuted += r.permuted;
                let flag = if r.new > bound {
                    found.liberal.push(format!(
                        "σ {sigma}, {rows} rows x {repeats}, at the boundary"
                    ));
                    " LIBERAL"
                } else {
                    ""
                };
                println!(
                    "| {sigma} ({:.2}) | {rows} | {repeats} | {:.4}{flag} | {:.4} | {:.3} / {:.3} |",
                    1.0 / (1.0 + sigma * sigma),
                    r.new,
                    r.old,
                    r.broke,
                    r.fixed
                );
            }
        }
    }
    // mock-llm draws each answer independently (no per-row difficulty): a
    // latent σ so large that base and head outcomes are independent.
    let r = scenario(200, reps, 1000, 1, 0.05, 0.04, 1000.0);
    println!(
        "\nThe end-to-end scenario (benches/gate_e2e.sh: mock-llm quality 0.85 vs 0.81, independent outcomes, 1,000 rows, max_drop 0.05): new gate blocks {:.4}, old gate {:.4} (rows broke / fixed {:.3} / {:.3})",
        r.new, r.old, r.broke, r.fixed
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let reps: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(2000);
    let only = |name: &str| args.iter().any(|a| a == name);
    let all = !only("main") && !only("main0") && !only("sensitivity");
    let alpha = 1.0 - CONFIDENCE;
    let bound = alpha + 2.0 * (alpha * (1.0 - alpha) / reps as f64).sqrt();
    println!(
        "gate_sim: {reps} replications per cell, base pass rate {BASE_RATE}, confidence {CONFIDENCE}, latent σ {SIGMA}"
    );
    println!(
        "a cell at or inside the allowance must block at most {bound:.4} (= {alpha:.2} + 2 Monte-Carlo SE)\n"
    );
    let mut found = Findings::default();
    if all || only("main") {
        main_table(reps, bound, &[0.05, 0.0], &mut found);
    } else if only("main0") {
        main_table(reps, bound, &[0.0], &mut found);
    }
    if all || only("sensitivity") {
        sensitivity(reps, bound, &mut found);
    }
    println!(
        "\nold gate with repeats: the full 20,000-flip permutation test ran on {} draws (the others: 1,000 rows, or a normal approximation of p < 0.005 or >= 0.25)",
        found.permuted
    );
    if found.liberal.is_empty() {
        println!("no cell at or inside the allowance blocks more than {bound:.4}");
    } else {
        println!("LIBERAL cells: {}", found.liberal.join("; "));
    }
}
