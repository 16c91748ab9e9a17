//! `review.auto_enqueue` through the real binary: `promptgate serve` in
//! front of `mock-llm` (a MOCK: it echoes the rendered user message); low
//! feedback puts the call in the review queue by itself, high feedback
//! does not; the rate and the hourly cap hold; a committed change of the
//! setting reloads; a malformed one is refused with its line.

use std::time::Duration;

use promptgate::mock_llm::{MockConfig, MockServer};
use serde_json::{Value, json};

use crate::review::ask;
use crate::support::serve::{
    Proxy, commit_main, log_rows, metrics, post, proxy_scaffold, wait_status,
};
use crate::support::{Scaffold, get_json};

async fn feedback(p: &Proxy, id: &str, score: f64) {
    let (st, _, body) = post(
        &format!("{}/v1/feedback", p.url),
        &json!({"request_id": id, "score": score, "comment": "wrong city"}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
}

async fn items(p: &Proxy) -> Vec<Value> {
    get_json(&format!("{}/v1/review/items", p.url))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["item"]["request_id"].as_str().unwrap().to_string())
        .collect()
}

/// Polls the queue until `n` items are in it (or 30 s pass).
async fn wait_items(p: &Proxy, n: usize) -> Vec<Value> {
    for _ in 0..300 {
        let v = items(p).await;
        if v.len() >= n {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    items(p).await
}

/// The value of `promptgate_review_auto_total{result="RESULT"}` (0 when absent).
fn auto_count(text: &str, result: &str) -> u64 {
    let prefix = format!("promptgate_review_auto_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Polls `/metrics` until `result` has been counted `n` times.
async fn wait_count(p: &Proxy, result: &str, n: u64) -> String {
    for _ in 0..300 {
        let m = metrics(p).await;
        if auto_count(&m, result) >= n {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    metrics(p).await
}

const AUTO: &str =
    "review:\n  auto_enqueue:\n    max_score: 0.2\n    rate: 1.0\n    max_per_hour: 2\n";

fn scaffold(m: &MockServer, review: &str) -> Scaffold {
    let s = proxy_scaffold("openai", &m.url(), "");
    let config = format!("{}{review}", s.read("promptgate.yaml"));
    commit_main(&s, &[("promptgate.yaml", &config)], "Review settings");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_feedback_queues_the_call_once_and_high_feedback_does_not() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let s = scaffold(&m, AUTO);
    let p = Proxy::start_with(&s.root(), &["--no-analyzer", "--no-drift"], &[]);
    let peru = ask(&p, "Peru").await;
    let kenya = ask(&p, "Kenya").await;
    let chile = ask(&p, "Chile").await;
    let norway = ask(&p, "Norway").await;

    feedback(&p, &kenya, 0.9).await;
    feedback(&p, &peru, 0.0).await;
    // The same call again: one item at most.
    feedback(&p, &peru, 0.1).await;
    feedback(&p, &chile, 0.2).await;
    // Over max_per_hour (2): counted, not queued.
    feedback(&p, &norway, 0.0).await;

    let m = wait_count(&p, "capped", 1).await;
    assert_eq!(auto_count(&m, "enqueued"), 2, "{m}");
    assert_eq!(auto_count(&m, "duplicate"), 1, "{m}");
    assert_eq!(auto_count(&m, "capped"), 1, "{m}");
    let got = items(&p).await;
    assert_eq!(ids(&got), [peru.clone(), chile.clone()], "{got:#?}");
    let first = &got[0]["item"];
    assert_eq!(got[0]["status"], "pending");
    assert!(
        first["reason"]
            .as_str()
            .unwrap()
            .starts_with("low_feedback: score 0, queued by serve"),
        "{first:#}"
    );
    assert_eq!(first["prompt_id"], "capital");
    assert_eq!(first["variables"], json!({"country": "Peru"}));
    assert!(
        first["output"].as_str().unwrap().contains("Peru"),
        "the mock echoes: {first:#}"
    );
    assert_eq!(first["feedback"][0]["score"], 0.0);
    assert_eq!(first["feedback"][0]["comment"], "wrong city");
    assert!(first["suite"].is_null());
    let stats = get_json(&format!("{}/v1/review/stats", p.url)).await;
    assert_eq!(stats["reasons"]["low_feedback"], 2, "{stats:#}");
    assert!(m.contains("promptgate_review_auto_pending 0"), "{m}");
    // Every call was queued from memory: nothing waits for the log.
    assert!(m.contains("promptgate_review_auto_recent_calls 4"), "{m}");

    // A restart keeps the hour's cap: the journal says two were queued.
    drop(p);
    let p = Proxy::start_with(&s.root(), &["--no-analyzer", "--no-drift"], &[]);
    let egypt = ask(&p, "Egypt").await;
    feedback(&p, &egypt, 0.0).await;
    let m = wait_count(&p, "capped", 1).await;
    assert_eq!(auto_count(&m, "enqueued"), 0, "{m}");
    assert_eq!(items(&p).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_change_of_auto_enqueue_reloads_and_a_bad_one_is_refused() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let s = scaffold(&m, "");
    let p = Proxy::start_with(&s.root(), &["--no-analyzer", "--no-drift"], &[]);
    let before = ask(&p, "Peru").await;
    feedback(&p, &before, 0.0).await;
    // Off: nothing is queued (the row is written, the queue stays empty).
    for _ in 0..100 {
        if log_rows(&s.root()).len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(items(&p).await.is_empty());
    assert_eq!(auto_count(&metrics(&p).await, "enqueued"), 0);

    let st = crate::support::serve::status(&p).await;
    assert_eq!(st["settings"]["review"]["auto_enqueue"], Value::Null);
    let generation = st["generation"].as_u64().unwrap();
    let on = format!("{}{AUTO}", s.read("promptgate.yaml"));
    commit_main(&s, &[("promptgate.yaml", &on)], "Queue low feedback");
    let (st, ok) = wait_status(&p, Duration::from_secs(30), |s| {
        s["generation"].as_u64() > Some(generation)
    })
    .await;
    assert!(ok, "{st:#}");
    assert_eq!(
        st["settings"]["review"]["auto_enqueue"],
        json!({"max_score": 0.2, "rate": 1.0, "max_per_hour": 2}),
        "{st:#}"
    );
    // A call served before the switch is not in memory: it is read back
    // from the request log.
    feedback(&p, &before, 0.0).await;
    let got = wait_items(&p, 1).await;
    assert_eq!(ids(&got), [before.as_str()], "{}", p.stderr());
    assert_eq!(got[0]["item"]["variables"], json!({"country": "Peru"}));
    // A call served after it is queued from memory.
    let after = ask(&p, "Chile").await;
    feedback(&p, &after, 0.0).await;
    let got = wait_items(&p, 2).await;
    assert_eq!(ids(&got), [before.clone(), after.clone()]);
    // Feedback on a call this replica never served waits, then gives up
    // (after ten minutes); meanwhile it is pending.
    feedback(&p, "0190b3c2-0000-7000-8000-000000000000", 0.0).await;
    let mut pending = false;
    for _ in 0..100 {
        if metrics(&p)
            .await
            .contains("promptgate_review_auto_pending 1")
        {
            pending = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(pending, "{}", metrics(&p).await);

    // Rate 0: low feedback is counted as sampled out, nothing queued.
    let generation = crate::support::serve::status(&p).await["generation"]
        .as_u64()
        .unwrap();
    let off = on.replace("rate: 1.0", "rate: 0.0");
    commit_main(&s, &[("promptgate.yaml", &off)], "Stop queueing");
    let (st, ok) = wait_status(&p, Duration::from_secs(30), |s| {
        s["generation"].as_u64() > Some(generation)
    })
    .await;
    assert!(ok, "{st:#}");
    let third = ask(&p, "Kenya").await;
    feedback(&p, &third, 0.0).await;
    let m = wait_count(&p, "sampled_out", 1).await;
    assert_eq!(auto_count(&m, "sampled_out"), 1, "{m}");
    assert_eq!(items(&p).await.len(), 2);

    // A malformed setting is refused at its line; the old state serves.
    let bad = off.replace("rate: 0.0", "rate: 2");
    let bad_commit = commit_main(&s, &[("promptgate.yaml", &bad)], "Too much");
    let (st, ok) = wait_status(&p, Duration::from_secs(30), |s| {
        s["last_reload"]["ok"] == false && s["last_reload"]["commit"] == bad_commit
    })
    .await;
    assert!(ok, "{st:#}");
    let error = st["last_reload"]["error"].as_str().unwrap();
    let line = bad.lines().position(|l| l.contains("rate: 2")).unwrap() + 1;
    assert!(
        error.contains(&format!("promptgate.yaml:{line}")),
        "{error}"
    );
    assert!(error.contains("review.auto_enqueue.rate"), "{error}");
    assert_eq!(ask(&p, "Peru").await.len(), 36, "still serving");
}
