//! Simulation benchmark of canary analysis: thousands of simulated canaries,
//! each a stream of requests split 90/10 between stable and canary, whose
//! pass/fail outcome is drawn exactly as `promptgate mock-llm --quality Q`
//! decides whether to keep a rule answer (the mock's seeded hash draws, no
//! server and no wall-clock waits). On the same streams it compares
//!
//! * the always-valid mixture SPRT of `promptgate::stats::sequential` (the
//!   test `canary analyze` and the proxy use), looking after every request,
//! * a naive fixed-threshold rule of the kind most canary tools use:
//!   "roll back if the canary pass rate is below stable's by more than 5
//!   points, after at least 50 canary requests, checked every 10".
//!
//! Run: `cargo bench --bench canary_sim` (optional args: canaries per
//! scenario, canary requests per canary). Figures go to benches/README.md.

#![allow(clippy::print_stdout)]

use promptgate::mock_llm::{Draws, QUALITY_SALT};
use promptgate::stats::quantile;
use promptgate::stats::sequential::{Arm, Kind, Moments, SequentialTest, TestConfig};

/// Share of traffic on the canary.
const CANARY_WEIGHT: f64 = 0.10;
const STABLE_QUALITY: f64 = 0.90;
const ALPHA: f64 = 0.05;
/// rollout.yaml's `max_drop` in the scaffold.
const MAX_DROP: f64 = 0.03;

/// One simulated request: (is canary, passed), drawn like mock-llm would
/// answer "What is the capital of country <j>?" for model `variant`.
fn request(canary_seed: u64, j: u64, canary_quality: f64) -> (bool, bool) {
    let mut route = Draws::new(canary_seed);
    route.feed(b"route");
    route.feed(&j.to_le_bytes());
    let canary = route.unit(0) < CANARY_WEIGHT;
    let (model, quality) = if canary {
        ("capital-canary", canary_quality)
    } else {
        ("capital-stable", STABLE_QUALITY)
    };
    // Same feeding order as the mock: seed, model, then (role, text) pairs.
    let mut d = Draws::new(canary_seed);
    d.feed(model.as_bytes());
    d.feed(b"user");
    d.feed(format!("What is the capital of country {j}?").as_bytes());
    (canary, d.unit(QUALITY_SALT) < quality)
}

/// A detector sees the stream and says at which canary request count it
/// rolls back (None: never within the horizon).
trait Detector {
    fn name(&self) -> String;
    /// Called after each request with the arms so far (1 = fail).
    fn observe(&mut self, stable: &Moments, canary: &Moments, canary_new: bool) -> bool;
}

struct Sequential {
    test: SequentialTest,
    label: String,
}

impl Sequential {
    fn new(min_n: u64, scale: f64) -> Sequential {
        Sequential {
            test: SequentialTest::new(TestConfig {
                alpha: ALPHA,
                margin: MAX_DROP,
                scale,
                min_n,
                kind: Kind::Proportion,
            }),
            label: format!("mSPRT (min_requests {min_n}, mixture_scale {scale})"),
        }
    }
}

impl Detector for Sequential {
    fn name(&self) -> String {
        self.label.clone()
    }
    fn observe(&mut self, stable: &Moments, canary: &Moments, _: bool) -> bool {
        self.test.look(&Arm::Sample(*stable), &Arm::Sample(*canary));
        self.test.worse()
    }
}

struct Naive;

impl Detector for Naive {
    fn name(&self) -> String {
        "naive: drop > 5 pts after >= 50 canary requests, every 10".into()
    }
    fn observe(&mut self, stable: &Moments, canary: &Moments, canary_new: bool) -> bool {
        canary_new
            && canary.n >= 50
            && canary.n.is_multiple_of(10)
            && stable.n > 0
            // Means are failure rates: canary pass < stable pass - 5 pts.
            && canary.mean > stable.mean + 0.05
    }
}

fn detectors() -> Vec<Box<dyn Detector>> {
    vec![
        Box::new(Sequential::new(100, 0.2)),
        Box::new(Sequential::new(200, 0.2)),
        Box::new(Sequential::new(100, 0.1)),
        Box::new(Sequential::new(100, 0.4)),
        Box::new(Naive),
    ]
}

/// Runs every detector over one canary's stream; returns for each the
/// canary request count at rollback.
fn simulate(seed: u64, canary_quality: f64, horizon: u64) -> Vec<Option<u64>> {
    let mut ds = detectors();
    let mut out = vec![None; ds.len()];
    let (mut stable, mut canary) = (Moments::default(), Moments::default());
    let mut j = 0u64;
    while canary.n < horizon {
        let (is_canary, pass) = request(seed, j, canary_quality);
        j += 1;
        let fail = if pass { 0.0 } else { 1.0 };
        if is_canary {
            canary.push(fail);
        } else {
            stable.push(fail);
        }
        for (k, d) in ds.iter_mut().enumerate() {
            if out[k].is_none() && d.observe(&stable, &canary, is_canary) {
                out[k] = Some(canary.n);
            }
        }
        if out.iter().all(Option::is_some) {
            break;
        }
    }
    out
}

struct Scenario {
    label: &'static str,
    canary_quality: f64,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let canaries: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let horizon: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3000);
    let names: Vec<String> = detectors().iter().map(|d| d.name()).collect();
    println!(
        "canary_sim: {canaries} canaries per scenario, horizon {horizon} canary requests, \
         canary weight {CANARY_WEIGHT}, stable quality {STABLE_QUALITY}, alpha {ALPHA}, max_drop {MAX_DROP}"
    );
    let started = std::time::Instant::now();
    for sc in [
        Scenario {
            label: "regressing (quality 0.90 -> 0.80)",
            canary_quality: 0.80,
        },
        Scenario {
            label: "healthy (quality 0.90 -> 0.90)",
            canary_quality: 0.90,
        },
        Scenario {
            label: "small drop within max_drop (0.90 -> 0.88)",
            canary_quality: 0.88,
        },
    ] {
        let results: Vec<Vec<Option<u64>>> = (0..canaries)
            .map(|i| simulate(0x00C4_A11A ^ (i * 0x9E37_79B9), sc.canary_quality, horizon))
            .collect();
        println!("\n## {}", sc.label);
        println!("| detector | rolled back | median canary req. | p95 canary req. |");
        println!("|---|---|---|---|");
        for (k, name) in names.iter().enumerate() {
            let hits: Vec<f64> = results
                .iter()
                .filter_map(|r| r[k])
                .map(|n| n as f64)
                .collect();
            let rate = hits.len() as f64 / canaries as f64;
            let fmt = |q: f64| quantile(&hits, q).map_or("-".to_string(), |v| format!("{v:.0}"));
            println!(
                "| {name} | {:.2}% ({}/{canaries}) | {} | {} |",
                rate * 100.0,
                hits.len(),
                fmt(0.5),
                fmt(0.95)
            );
        }
    }
    println!("\nelapsed {:.1} s", started.elapsed().as_secs_f64());
}
