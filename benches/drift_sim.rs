//! Simulation benchmark of `promptgate drift`'s statistics, on realistic
//! generated calls (benches/drift_support: mixed languages, lengths, JSON
//! answers, refusals, history, streams, errors, feedback), through the same
//! pure path the command uses (`drift::analyze_rows`, default settings:
//! fdr 0.05, default thresholds, min 200 calls).
//!
//! (a) No drift: reference and current from one generator, N replications;
//!     the share of runs flagging any drift with promptgate's rule (BH q <
//!     fdr and effect >= threshold), with BH alone, with per-feature
//!     uncorrected p < 0.05 (Evidently's rule below 1,000 rows), and with
//!     the effect thresholds alone (Evidently's rule above 1,000 rows).
//! (b) Injected drifts, 2,000 calls per window: the share of runs whose
//!     report flags the drifted feature (power).
//!
//! Run: `cargo bench --bench drift_sim` (optional args: null replications,
//! power replications; default 1000 and 200). Figures go to benches/README.md.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[path = "drift_support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use promptgate::drift::{self, DriftReport, Extractor, OutputSpec, Verdict};
use promptgate::logstore::{FeedbackRecord, RequestLogRow};
use promptgate::spec::drift::DriftConfig;
use support::{Generator, PROMPT, SCHEMA, Shape};

const CALLS: usize = 2000;
/// Share of calls made 2.5 times slower: raises p95 by about half (the
/// bench prints the measured change).
const SLOW_SHARE: f64 = 0.16;

struct Scenario {
    name: &'static str,
    shape: Shape,
    /// Any of these features flagged counts as detected.
    targets: &'static [&'static str],
}

fn scenarios() -> Vec<Scenario> {
    let d = Shape::default();
    vec![
        Scenario {
            name: "input length +30%",
            shape: Shape {
                question_length: 1.3,
                ..d
            },
            targets: &[
                "input.question.chars",
                "input.question.words",
                "input.prompt_tokens",
            ],
        },
        Scenario {
            name: "20% of inputs switch language",
            shape: Shape {
                new_language: 0.2,
                ..d
            },
            targets: &["input.question.language"],
        },
        Scenario {
            name: "topic shift, lengths unchanged (20% of calls)",
            shape: Shape {
                new_topic: 0.2,
                ..d
            },
            targets: &["input.question.content", "output.content"],
        },
        Scenario {
            name: "refusals 2% -> 8%",
            shape: Shape {
                refusal_rate: 0.08,
                ..d
            },
            targets: &["output.refusal"],
        },
        Scenario {
            name: "JSON-invalid outputs 1% -> 5%",
            shape: Shape {
                invalid_json_rate: 0.05,
                ..d
            },
            targets: &[
                "output.json_valid",
                "output.schema_valid",
                "output.assertion.json",
            ],
        },
        Scenario {
            name: "mean feedback score -0.1",
            shape: Shape {
                thumbs_up: 0.65,
                ..d
            },
            targets: &["feedback.score"],
        },
        Scenario {
            name: "latency p95 +50%",
            shape: Shape {
                slow_share: 0.13,
                ..d
            },
            targets: &["ops.latency_tail", "ops.latency_ms"],
        },
    ]
}

fn window(
    seed: u64,
    shape: Shape,
    prefix: &str,
    start: &str,
) -> (Vec<RequestLogRow>, Vec<FeedbackRecord>) {
    let start: DateTime<Utc> = DateTime::parse_from_rfc3339(start)
        .unwrap()
        .with_timezone(&Utc);
    let mut g = Generator::new(seed, shape, prefix, start);
    let mut rows = Vec::with_capacity(CALLS);
    let mut fb = Vec::new();
    for _ in 0..CALLS {
        let c = g.call();
        rows.push(c.row);
        fb.extend(c.feedback);
    }
    (rows, fb)
}

struct Ctx {
    settings: DriftConfig,
    extractor: Extractor,
    outputs: BTreeMap<String, OutputSpec>,
}

fn run(ctx: &Ctx, seed: u64, current: Shape) -> DriftReport {
    let (r, mut fr) = window(
        seed * 2 + 1,
        Shape::default(),
        &format!("r{seed}"),
        "2026-11-01T00:00:00Z",
    );
    let (c, fc) = window(
        seed * 2 + 2,
        current,
        &format!("c{seed}"),
        "2026-11-02T00:00:00Z",
    );
    fr.extend(fc);
    drift::analyze_rows(&ctx.settings, &ctx.extractor, &ctx.outputs, &r, &c, &fr)
}

/// Runs `f` on seeds `0..n` over two threads, in seed order.
fn parallel<T: Send>(n: u64, f: impl Fn(u64) -> T + Sync) -> Vec<T> {
    let f = &f;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..2u64)
            .map(|w| s.spawn(move || (w..n).step_by(2).map(|i| (i, f(i))).collect::<Vec<_>>()))
            .collect();
        let mut all: Vec<(u64, T)> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, t)| t).collect()
    })
}

#[derive(Default, Clone, Copy)]
struct NullFlags {
    promptgate: bool,
    bh_only: bool,
    uncorrected: bool,
    effect_only: bool,
    tested: usize,
}

fn null_flags(r: &DriftReport) -> NullFlags {
    let g = &r.groups[0];
    let reaches = |f: &drift::FeatureReport| match (f.effect_name, f.effect) {
        ("cohen_h", Some(e)) => e.abs() >= f.threshold,
        (_, Some(e)) => e >= f.threshold,
        _ => false,
    };
    let tested: Vec<&drift::FeatureReport> =
        g.features.iter().filter(|f| f.p_value.is_some()).collect();
    NullFlags {
        promptgate: g.features.iter().any(|f| f.verdict == Verdict::Drift),
        bh_only: tested.iter().any(|f| f.q_value.unwrap_or(1.0) < r.fdr),
        uncorrected: tested.iter().any(|f| f.p_value.unwrap_or(1.0) < 0.05),
        effect_only: tested.iter().any(|f| reaches(f)),
        tested: tested.len(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let null_reps: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let power_reps: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    // Optional: only the injected drifts whose name contains this.
    let only = args.get(2).cloned().unwrap_or_default();
    let settings = DriftConfig::default();
    let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
    let ctx = Ctx {
        extractor: Extractor::new(&settings).unwrap(),
        outputs: [(
            PROMPT.to_string(),
            OutputSpec {
                json: Some(true),
                schema: Some(Arc::new(jsonschema::validator_for(&schema).unwrap())),
            },
        )]
        .into_iter()
        .collect(),
        settings,
    };
    let started = std::time::Instant::now();

    // (a) No drift.
    if null_reps > 0 {
        let flags = parallel(null_reps, |seed| {
            null_flags(&run(&ctx, 1_000_000 + seed, Shape::default()))
        });
        let share = |f: fn(&NullFlags) -> bool| {
            flags.iter().filter(|x| f(x)).count() as f64 / flags.len() as f64
        };
        let tested = flags.iter().map(|f| f.tested).sum::<usize>() as f64 / flags.len() as f64;
        println!(
            "## (a) no drift: {null_reps} replications, {CALLS} calls per window, {tested:.1} features tested per run\n"
        );
        println!("| rule | runs flagging any drift |");
        println!("|---|---|");
        println!(
            "| promptgate: BH q < 0.05 and effect >= threshold | {:.1}% |",
            100.0 * share(|f| f.promptgate)
        );
        println!(
            "| BH q < 0.05 alone | {:.1}% |",
            100.0 * share(|f| f.bh_only)
        );
        println!(
            "| per-feature p < 0.05, no correction (Evidently below 1,000 rows) | {:.1}% |",
            100.0 * share(|f| f.uncorrected)
        );
        println!(
            "| effect >= threshold alone (Evidently above 1,000 rows) | {:.1}% |",
            100.0 * share(|f| f.effect_only)
        );
    }

    // (b) Injected drifts.
    println!(
        "\n## (b) injected drifts: {power_reps} replications each, {CALLS} calls per window\n"
    );
    println!("| drift | detected (power) | also flagged (share of runs) |");
    println!("|---|---|---|");
    for sc in scenarios()
        .into_iter()
        .filter(|s| s.name.contains(only.as_str()))
    {
        let reports = parallel(power_reps, |seed| {
            let r = run(&ctx, 2_000_000 + seed, sc.shape);
            let g = &r.groups[0];
            let hit = sc.targets.iter().any(|t| g.drifted.iter().any(|d| d == t));
            let others: Vec<String> = g
                .drifted
                .iter()
                .filter(|d| !sc.targets.contains(&d.as_str()))
                .cloned()
                .collect();
            (hit, others)
        });
        let power = reports.iter().filter(|(h, _)| *h).count() as f64 / reports.len() as f64;
        let mut other_counts: BTreeMap<String, usize> = BTreeMap::new();
        for (_, o) in &reports {
            for f in o {
                *other_counts.entry(f.clone()).or_insert(0) += 1;
            }
        }
        let also: Vec<String> = other_counts
            .iter()
            .filter(|(_, n)| **n * 20 >= reports.len())
            .map(|(f, n)| format!("{f} {:.0}%", 100.0 * *n as f64 / reports.len() as f64))
            .collect();
        println!(
            "| {} | {:.1}% | {} |",
            sc.name,
            100.0 * power,
            if also.is_empty() {
                "-".to_string()
            } else {
                also.join(", ")
            }
        );
    }
    // The latency injection's effect on p95, on 10 draws of a window each.
    let p95 = |shape: Shape, seed: u64| {
        let mut ok = Vec::new();
        for k in 0..10 {
            let (rows, _) = window(seed + k, shape, "p", "2026-11-01T00:00:00Z");
            ok.extend(
                rows.iter()
                    .filter(|r| r.status.as_str() == "ok")
                    .map(|r| r.latency_ms),
            );
        }
        promptgate::stats::quantile(&ok, 0.95).unwrap()
    };
    let (before, after) = (
        p95(Shape::default(), 100),
        p95(
            Shape {
                slow_share: SLOW_SHARE,
                ..Shape::default()
            },
            200,
        ),
    );
    println!(
        "\nlatency injection: p95 {before:.0} ms -> {after:.0} ms ({:+.0}%) over 10 windows of {CALLS}",
        100.0 * (after / before - 1.0)
    );
    println!("\nwall time {:.0} s", started.elapsed().as_secs_f64());
}
