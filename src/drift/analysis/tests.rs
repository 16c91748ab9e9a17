use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;
use crate::stats::domain::Docs;

fn settings() -> DriftConfig {
    DriftConfig {
        min_rows: 50,
        ..DriftConfig::default()
    }
}

fn normal(rng: &mut StdRng, mean: f64, sd: f64) -> f64 {
    // Box-Muller.
    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
    mean + sd * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn window(features: Vec<(&str, FeatureData)>, calls: u64) -> GroupWindow {
    GroupWindow {
        kind: GroupKind::Prompt,
        output_json: None,
        features: WindowFeatures {
            calls,
            sampled: calls,
            features: features
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ..WindowFeatures::default()
        },
    }
}

fn set(name: &str, g: GroupWindow) -> WindowSet {
    WindowSet {
        spec: name.into(),
        inputs_only: false,
        groups: [("p".to_string(), g)].into_iter().collect(),
    }
}

fn numeric(rng: &mut StdRng, n: usize, mean: f64) -> FeatureData {
    FeatureData::Numeric((0..n).map(|_| normal(rng, mean, 10.0)).collect())
}

#[test]
fn a_shifted_feature_drifts_and_unchanged_ones_do_not() {
    let mut rng = StdRng::seed_from_u64(1);
    let r = window(
        vec![
            ("input.q.chars", numeric(&mut rng, 2000, 100.0)),
            ("ops.latency_ms", numeric(&mut rng, 2000, 500.0)),
            ("output.refusal", FeatureData::Binary { yes: 40, n: 2000 }),
        ],
        2000,
    );
    let c = window(
        vec![
            ("input.q.chars", numeric(&mut rng, 2000, 105.0)),
            ("ops.latency_ms", numeric(&mut rng, 2000, 500.0)),
            ("output.refusal", FeatureData::Binary { yes: 160, n: 2000 }),
        ],
        2000,
    );
    let report = analyze(&settings(), &set("ref", r), &set("cur", c));
    assert_eq!(report.status, Status::Drift);
    let g = &report.groups[0];
    let by = |n: &str| g.features.iter().find(|f| f.name == n).unwrap();
    assert_eq!(
        by("input.q.chars").verdict,
        Verdict::Drift,
        "{:?}",
        by("input.q.chars")
    );
    assert_eq!(by("input.q.chars").test, TestKind::Ks);
    assert_eq!(by("output.refusal").verdict, Verdict::Drift);
    assert_eq!(by("output.refusal").test, TestKind::TwoProportion);
    assert_eq!(by("ops.latency_ms").verdict, Verdict::Ok);
    assert!(g.features.iter().any(|f| f.name == "ops.latency_tail"));
    assert_eq!(g.drifted, vec!["input.q.chars", "output.refusal"]);
    // q-values are BH over the tested features.
    let tested: Vec<f64> = g.features.iter().filter_map(|f| f.p_value).collect();
    let q = crate::stats::fdr::benjamini_hochberg(&tested);
    let got: Vec<f64> = g.features.iter().filter_map(|f| f.q_value).collect();
    assert_eq!(q, got);
}

#[test]
fn a_significant_but_tiny_shift_is_small_not_drift() {
    // 200k calls per window: a shift of 0.05 sd is significant, below W = 0.1.
    let mut rng = StdRng::seed_from_u64(2);
    let r = window(
        vec![("ops.cost_per_call", numeric(&mut rng, 200_000, 100.0))],
        200_000,
    );
    let c = window(
        vec![("ops.cost_per_call", numeric(&mut rng, 200_000, 100.5))],
        200_000,
    );
    let report = analyze(&settings(), &set("ref", r), &set("cur", c));
    let f = &report.groups[0].features[0];
    assert!(f.q_value.unwrap() < 1e-6, "{f:?}");
    assert_eq!(f.verdict, Verdict::Small);
    assert_eq!(report.status, Status::NoDrift);
}

#[test]
fn too_few_calls_is_not_enough_data_never_a_pass() {
    let mut rng = StdRng::seed_from_u64(3);
    let r = window(vec![("input.q.chars", numeric(&mut rng, 30, 100.0))], 30);
    let c = window(vec![("input.q.chars", numeric(&mut rng, 30, 300.0))], 30);
    let report = analyze(&settings(), &set("ref", r), &set("cur", c));
    assert_eq!(report.status, Status::NotEnoughData);
    assert!(report.groups[0].features.is_empty());
    // Enough calls, but a feature observed on too few of them.
    let r = window(vec![("feedback.score", numeric(&mut rng, 10, 1.0))], 500);
    let c = window(vec![("feedback.score", numeric(&mut rng, 10, 0.0))], 500);
    let report = analyze(&settings(), &set("ref", r), &set("cur", c));
    assert_eq!(report.status, Status::NoDrift);
    assert_eq!(report.groups[0].features[0].verdict, Verdict::NotEnoughData);
    assert_eq!(report.groups[0].features[0].p_value, None);
}

#[test]
fn features_pick_their_test_from_their_data() {
    let s = settings();
    let thumbs = |n: usize, up: usize| {
        FeatureData::Numeric((0..n).map(|i| if i < up { 1.0 } else { 0.0 }).collect())
    };
    let f = compare_feature(&s, "feedback.score", &thumbs(1000, 750), &thumbs(1000, 650)).unwrap();
    assert_eq!(f.test, TestKind::TwoProportion);
    assert!(f.effect.unwrap() < -0.2);
    let turns = |n: usize, k: usize| FeatureData::Numeric((0..n).map(|i| (i % k) as f64).collect());
    let f = compare_feature(&s, "input.history_turns", &turns(1000, 4), &turns(1000, 6)).unwrap();
    assert_eq!(f.test, TestKind::ChiSquare);
    let constant = FeatureData::Binary { yes: 0, n: 1000 };
    let f = compare_feature(&s, "output.truncated", &constant, &constant).unwrap();
    assert_eq!(f.verdict, Verdict::Constant);
    assert_eq!(f.p_value, None);
    // A free-text variable's values are not a categorical feature.
    let many = |k: usize| FeatureData::Categorical {
        counts: (0..k).map(|i| (format!("v{i}"), 10)).collect(),
        overflow: false,
    };
    assert!(compare_feature(&s, "input.q.value", &many(30), &many(30)).is_none());
    assert!(compare_feature(&s, "input.q.value", &many(5), &many(5)).is_some());
}

#[test]
fn text_content_compares_by_the_domain_classifier() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut a = Docs::new();
    let mut b = Docs::new();
    for i in 0..600u64 {
        let words: Vec<u32> = (0..10).map(|_| rng.random_range(0..200)).collect();
        a.push(i, words);
        let shift = i % 3 == 0;
        let words: Vec<u32> = (0..10)
            .map(|_| rng.random_range(0..200) + if shift { 1000 } else { 0 })
            .collect();
        b.push(10_000 + i, words);
    }
    let f = compare_feature(
        &settings(),
        "input.q.content",
        &FeatureData::Text(a),
        &FeatureData::Text(b),
    )
    .unwrap();
    assert_eq!(f.test, TestKind::DomainClassifier);
    assert!(f.effect.unwrap() > 0.6, "{f:?}");
    assert!(f.p_value.unwrap() < 1e-6);
    assert!(matches!(f.chart, Chart::Histogram { .. }));
}

#[test]
fn a_group_missing_from_a_window_is_not_enough_data() {
    let mut rng = StdRng::seed_from_u64(5);
    let r = set(
        "ref",
        window(vec![("input.q.chars", numeric(&mut rng, 100, 1.0))], 100),
    );
    let c = WindowSet {
        spec: "cur".into(),
        ..WindowSet::default()
    };
    let report = analyze(&settings(), &r, &c);
    assert_eq!(report.groups[0].status, Status::NotEnoughData);
    assert_eq!(report.groups[0].current_calls, 0);
}
