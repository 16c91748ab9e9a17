use chrono::Duration;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;
use crate::logstore::RequestStatus;
use crate::spec::rollout::{Analysis, Canary};

fn rollout(checks: Vec<MetricCheck>) -> Rollout {
    Rollout {
        stable: "refs/heads/main".into(),
        canary: Some(Canary {
            git_ref: "refs/heads/c".into(),
            weight: 10.0,
            prompts: vec!["p".into()],
            sticky: Default::default(),
            sticky_header: None,
            steps: Vec::new(),
        }),
        analysis: Analysis {
            min_requests: 100,
            checks,
            ..Analysis::default()
        },
    }
}

fn check(metric: Metric, drop: Option<f64>, inc: Option<f64>, pct: Option<f64>) -> MetricCheck {
    MetricCheck {
        metric,
        max_drop: drop,
        max_increase: inc,
        max_increase_pct: pct,
    }
}

fn pass_rate(drop: f64) -> MetricCheck {
    check(Metric::OnlinePassRate, Some(drop), None, None)
}

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

/// `n` rows of prompt `p` after t0, `weight` of them canary; `f` fills in
/// the measured fields given (is canary, rng).
fn rows(
    n: usize,
    weight: f64,
    seed: u64,
    f: impl Fn(&mut RequestLogRow, bool, &mut StdRng),
) -> Vec<RequestLogRow> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut r = RequestLogRow::new(format!("r{i}"), t0() + Duration::seconds(i as i64 + 1));
            r.prompt_id = Some("p".into());
            let canary = rng.random_bool(weight);
            r.variant = if canary {
                Variant::Canary
            } else {
                Variant::Stable
            };
            r.status = RequestStatus::Ok;
            r.latency_ms = 100.0;
            f(&mut r, canary, &mut rng);
            r
        })
        .collect()
}

fn passing(ps: f64, pc: f64) -> impl Fn(&mut RequestLogRow, bool, &mut StdRng) {
    move |r, canary, rng| r.online_pass = Some(rng.random_bool(if canary { pc } else { ps }))
}

#[test]
fn a_pass_rate_drop_is_a_rollback_with_its_evidence() {
    let ro = rollout(vec![pass_rate(0.03)]);
    let rs = rows(6000, 0.1, 1, passing(0.9, 0.7));
    let rep = analyze(&ro, t0(), &rs, &[]).unwrap();
    assert_eq!(rep.decision, Decision::Rollback);
    assert_eq!(rep.action, Action::Rollback);
    let p = &rep.prompts[0];
    assert_eq!(p.stable_requests + p.canary_requests, 6000);
    let c = &p.checks[0];
    assert_eq!(c.status, CheckStatus::Worse);
    assert!(c.p_worse <= 0.05 && c.statistic >= c.threshold, "{c:?}");
    assert!(c.stable.value.unwrap() > 0.85 && c.canary.value.unwrap() < 0.75);
    // The interval for the failure-rate difference is around +0.2.
    assert!(
        c.ci_low.unwrap() > 0.03 && c.ci_high.unwrap() > 0.15,
        "{c:?}"
    );
    let json = serde_json::to_value(&rep).unwrap();
    assert_eq!(json["decision"], "rollback");
    assert_eq!(json["prompts"][0]["checks"][0]["status"], "worse");
    let text = rep.render();
    assert!(
        text.contains("online_pass_rate")
            && text.contains("WORSE")
            && text.contains("decision: rollback"),
        "{text}"
    );
}

#[test]
fn below_min_requests_nothing_is_decided() {
    let ro = rollout(vec![pass_rate(0.03)]);
    // About 50 canary rows: below min_requests 100 however bad they are.
    let rs = rows(500, 0.1, 2, passing(0.9, 0.0));
    let rep = analyze(&ro, t0(), &rs, &[]).unwrap();
    assert_eq!(rep.decision, Decision::Continue);
    assert_eq!(rep.prompts[0].checks[0].status, CheckStatus::NotEnoughData);
    assert_eq!(rep.prompts[0].checks[0].looks, 0);
}

#[test]
fn a_healthy_canary_is_promoted_or_advanced_or_held() {
    let mut ro = rollout(vec![pass_rate(0.03)]);
    let rs = rows(12_000, 0.5, 3, passing(0.9, 0.91));
    assert_eq!(analyze(&ro, t0(), &rs, &[]).unwrap().action, Action::Hold);
    ro.analysis.on_success = OnSuccess::Promote;
    let rep = analyze(&ro, t0(), &rs, &[]).unwrap();
    assert_eq!(rep.decision, Decision::Promote);
    assert_eq!(rep.action, Action::Promote);
    if let Some(c) = &mut ro.canary {
        c.steps = vec![5.0, 10.0, 25.0, 50.0];
    }
    assert_eq!(
        analyze(&ro, t0(), &rs, &[]).unwrap().action,
        Action::AdvanceStep {
            from: 10.0,
            to: 25.0
        }
    );
}

#[test]
fn alert_mode_plans_no_rollback() {
    let mut ro = rollout(vec![pass_rate(0.03)]);
    ro.analysis.on_regression = OnRegression::Alert;
    let rs = rows(6000, 0.1, 4, passing(0.9, 0.6));
    let rep = analyze(&ro, t0(), &rs, &[]).unwrap();
    assert_eq!(
        (rep.decision, rep.action),
        (Decision::Rollback, Action::Alert)
    );
}

#[test]
fn rows_before_the_window_other_prompts_and_pass_through_are_ignored() {
    let ro = rollout(vec![pass_rate(0.03)]);
    let mut rs = rows(6000, 0.1, 5, passing(0.9, 0.9));
    // Terrible canary rows, but before the window, of another prompt, or
    // not part of the rollout.
    let bad = rows(3000, 0.5, 6, passing(0.9, 0.0));
    for (i, mut r) in bad.into_iter().enumerate() {
        match i % 3 {
            0 => r.ts = t0() - Duration::seconds(10),
            1 => r.prompt_id = Some("other".into()),
            _ => r.variant = Variant::None,
        }
        r.request_id = format!("bad{i}");
        rs.push(r);
    }
    let rep = analyze(&ro, t0(), &rs, &[]).unwrap();
    assert_ne!(rep.decision, Decision::Rollback);
    assert_eq!(rep.prompts.len(), 1);
    let p = &rep.prompts[0];
    assert_eq!(p.stable_requests + p.canary_requests, 6000);
}

#[test]
fn error_rate_latency_cost_and_feedback_are_compared() {
    let ro = rollout(vec![
        check(Metric::ErrorRate, None, Some(0.01), None),
        check(Metric::LatencyP95Ms, None, None, Some(20.0)),
        check(Metric::CostPerCall, None, Some(0.001), None),
        check(Metric::FeedbackScore, Some(0.05), None, None),
    ]);
    let rs = rows(8000, 0.2, 7, |r, canary, rng| {
        let err = rng.random_bool(if canary { 0.10 } else { 0.01 });
        r.status = if err {
            RequestStatus::Error
        } else {
            RequestStatus::Ok
        };
        r.latency_ms = if canary {
            200.0 + rng.random::<f64>() * 100.0
        } else {
            100.0 + rng.random::<f64>() * 50.0
        };
        r.cost = if canary { 0.003 } else { 0.001 } + rng.random::<f64>() * 1e-4;
    });
    let mut rng = StdRng::seed_from_u64(8);
    let mut feedback: Vec<FeedbackRecord> = Vec::new();
    for r in rs
        .iter()
        .filter(|r| r.request_id.len() % 2 == 0 || r.variant == Variant::Canary)
    {
        let good = if r.variant == Variant::Canary {
            0.5
        } else {
            0.9
        };
        let mut f = FeedbackRecord::new(
            r.request_id.clone(),
            if rng.random_bool(good) { 1.0 } else { 0.0 },
        );
        f.ts = r.ts;
        feedback.push(f);
    }
    let rep = analyze(&ro, t0(), &rs, &feedback).unwrap();
    let status: Vec<(Metric, CheckStatus)> = rep.prompts[0]
        .checks
        .iter()
        .map(|c| (c.metric, c.status))
        .collect();
    assert_eq!(
        status,
        vec![
            (Metric::ErrorRate, CheckStatus::Worse),
            (Metric::LatencyP95Ms, CheckStatus::Worse),
            (Metric::CostPerCall, CheckStatus::Worse),
            (Metric::FeedbackScore, CheckStatus::Worse),
        ]
    );
    let lat = &rep.prompts[0].checks[1];
    assert!(
        lat.stable.value.unwrap() < 151.0 && lat.canary.value.unwrap() > 280.0,
        "{lat:?}"
    );
    // Bonferroni over four checks.
    assert!((lat.alpha - 0.05 / 4.0).abs() < 1e-12);
}

#[test]
fn equal_latency_and_cost_are_not_worse() {
    let ro = rollout(vec![
        check(Metric::LatencyP95Ms, None, None, Some(20.0)),
        check(Metric::CostPerCall, None, None, Some(10.0)),
    ]);
    let rs = rows(8000, 0.3, 9, |r, _, rng| {
        r.latency_ms = 100.0 + rng.random::<f64>() * 50.0;
        r.cost = 0.001 + rng.random::<f64>() * 1e-4;
    });
    let rep = analyze(&ro, t0(), &rs, &[]).unwrap();
    for c in &rep.prompts[0].checks {
        assert_eq!(c.status, CheckStatus::NotWorse, "{c:?}");
    }
}

#[test]
fn a_limit_that_does_not_fit_the_metric_is_an_error() {
    let ro = rollout(vec![
        pass_rate(0.03),
        check(Metric::LatencyP95Ms, Some(0.1), None, None),
    ]);
    let err = analyze(&ro, t0(), &[], &[]).unwrap_err().to_string();
    assert!(
        err.contains("analysis.checks[1]: latency_p95_ms takes exactly one limit"),
        "{err}"
    );
}

#[test]
fn no_canary_and_no_traffic() {
    let mut ro = rollout(vec![pass_rate(0.03)]);
    let rep = analyze(&ro, t0(), &[], &[]).unwrap();
    assert_eq!(rep.decision, Decision::Continue);
    ro.canary = None;
    let rep = analyze(&ro, t0(), &[], &[]).unwrap();
    assert_eq!(
        (rep.decision, rep.action),
        (Decision::NoCanary, Action::None)
    );
}
