//! `promptgate report --logs ... --window ...`: the cost-quality plane from
//! request logs written by `RequestLogger` (two replicas) and feedback from
//! the journal: a stable version and a canary that is cheaper and as good.

use chrono::{DateTime, Duration, Utc};
use promptgate::logstore::{FeedbackJournal, FeedbackRecord, RequestLogRow, Variant};

use crate::support::logs::write_rows;
use crate::support::{Scaffold, stderr, stdout};

#[test]
fn report_puts_a_canary_and_stable_on_one_plane() {
    let s = Scaffold::new();
    let (a, b) = (
        s.dir.path().join("replica-a"),
        s.dir.path().join("replica-b"),
    );
    let start = DateTime::parse_from_rfc3339("2026-11-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for i in 0..400 {
        let canary = i % 4 == 0;
        let mut r = RequestLogRow::new(format!("req-{i}"), start + Duration::seconds(i));
        r.prompt_id = Some("capital".into());
        r.prompt_version = Some(if canary { "bbbbbbbb22" } else { "aaaaaaaa11" }.into());
        r.variant = if canary {
            Variant::Canary
        } else {
            Variant::Stable
        };
        r.model = "small".into();
        r.commit = "c0ffee".into();
        r.cost = if canary { 0.0006 } else { 0.001 };
        r.latency_ms = 100.0;
        // Online failures: stable 40 of 300 (i % 10 == 1), canary 10 of 100 (i % 40 == 0).
        r.online_pass = Some(if canary { i % 40 != 0 } else { i % 10 != 1 });
        if i % 2 == 0 { ra.push(r) } else { rb.push(r) }
    }
    // A call on another day, outside the window.
    let mut old = RequestLogRow::new("old", start - Duration::days(3));
    old.prompt_id = Some("capital".into());
    old.model = "small".into();
    old.cost = 5.0;
    ra.push(old);
    write_rows(&a, ra);
    write_rows(&b, rb);
    let (journal, _) = FeedbackJournal::open(&a).unwrap();
    for i in (0..400).step_by(5) {
        journal
            .append(&FeedbackRecord::new(format!("req-{i}"), 1.0))
            .unwrap();
    }
    let html = s.dir.path().join("plane.html");
    let o = s.run(&[
        "report",
        "--logs",
        a.to_str().unwrap(),
        "--logs",
        b.to_str().unwrap(),
        "--window",
        "2026-11-01..2026-11-02",
        "--json",
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["calls"], 400, "{v:#}");
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "{v:#}");
    let point = |variant: &str| points.iter().find(|p| p["variant"] == variant).unwrap();
    let (stable, canary) = (point("stable"), point("canary"));
    assert_eq!(stable["calls"], 300);
    assert_eq!(canary["calls"], 100);
    assert!((stable["cost_per_1k"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert!((canary["cost_per_1k"].as_f64().unwrap() - 0.6).abs() < 1e-9);
    assert_eq!(stable["online_pass_rate"].as_f64().unwrap(), 260.0 / 300.0);
    assert_eq!(canary["online_pass_rate"].as_f64().unwrap(), 0.9);
    // Feedback went to every 5th call; all of it 1.0.
    assert_eq!(
        stable["feedback_count"].as_u64().unwrap() + canary["feedback_count"].as_u64().unwrap(),
        80
    );
    assert_eq!(canary["mean_feedback"], 1.0);
    assert_eq!(canary["on_frontier"], true);
    assert_eq!(stable["on_frontier"], false);
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(
        page.matches("<circle").count(),
        4,
        "two points on each chart"
    );
    assert!(page.contains("capital canary @bbbbbbb (small)"));

    // A bad window names the flag.
    let o = s.run(&[
        "report",
        "--logs",
        a.to_str().unwrap(),
        "--window",
        "last:7x",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--window"), "{}", stderr(&o));
}
