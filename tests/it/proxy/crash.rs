//! `promptgate serve` under failure: `kill -9` at random moments while it
//! logs under load, and a stalled log writer under `on_full: drop` and
//! `block`. Drives the real binary over 127.0.0.1 with the built-in mock-llm
//! (a MOCK, not a real model) upstream; every Parquet file is read back by
//! pyarrow, an independent reader.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use promptgate::mock_llm::{MockConfig, MockServer};
use serde_json::{Value, json};

use crate::support::serve::{Proxy, proxy_scaffold};
use crate::support::{Scaffold, http, python_with_pyarrow};

const SCAFFOLD_LOGGING: &str = "  flush_interval_ms: 200\n  on_full: block\n";

/// A runtime, the mock on it, and a scaffold served from the mock (OpenAI
/// dialect) whose `logging` lines are `logging` instead of the scaffold's
/// `flush_interval_ms: 200` and `on_full: block`.
fn mock_repo(logging: &str) -> (tokio::runtime::Runtime, MockServer, Scaffold) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt
        .block_on(MockServer::start(MockConfig::default()))
        .unwrap();
    let s = proxy_scaffold("openai", &mock.url(), "");
    if logging != SCAFFOLD_LOGGING {
        s.edit("promptgate.yaml", SCAFFOLD_LOGGING, logging);
        s.commit("logging settings of the test");
    }
    (rt, mock, s)
}

fn chat_body(i: usize) -> Value {
    json!({"model": "prompt:capital", "variables": {"country": format!("Country {i}")}})
}

/// Reads every Parquet file under a log root with pyarrow (hidden
/// temporaries and quarantine/ excluded: readers never see them) plus the
/// feedback journals; returns the JSON report of the Python script below.
fn pyarrow_report(py: &str, log_root: &Path) -> Value {
    const SCRIPT: &str = r#"
import json, os, sys
import pyarrow.parquet as pq
root = sys.argv[1]
out = {"unreadable": [], "files": 0, "request_ids": [], "feedback_ids": [], "journal_ids": [], "hidden": []}
for folder, dirs, names in os.walk(root):
    dirs[:] = [d for d in dirs if d != "quarantine"]
    for name in names:
        path = os.path.join(folder, name)
        rel = os.path.relpath(path, root)
        if name.startswith(".") and (name.endswith(".parquet") or ".tmp" in name):
            out["hidden"].append(rel)
            continue
        if name.endswith(".parquet"):
            try:
                t = pq.read_table(path)
            except Exception as e:
                out["unreadable"].append(f"{rel}: {e}")
                continue
            out["files"] += 1
            if rel.startswith("requests"):
                out["request_ids"] += t.column("request_id").to_pylist()
            elif rel.startswith("feedback"):
                out["feedback_ids"] += t.column("feedback_id").to_pylist()
        elif name.endswith(".jsonl") and rel.startswith("feedback"):
            with open(path, "rb") as f:
                for line in f:
                    try:
                        out["journal_ids"].append(json.loads(line)["feedback_id"])
                    except Exception:
                        pass  # a torn last line of a killed writer
print(json.dumps(out))
"#;
    let o = Command::new(py)
        .args(["-c", SCRIPT])
        .arg(log_root)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "pyarrow reader failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// What the clients saw acknowledged, with the time of the acknowledgement.
#[derive(Default)]
struct Acks {
    requests: Vec<(String, Instant)>,
    feedback: Vec<(String, Instant)>,
}

/// Sends requests (and feedback on every third answer) from `workers`
/// concurrent clients until `stop`; connection errors (the server was
/// killed) end a worker.
async fn load(url: String, workers: usize, stop: Arc<AtomicBool>) -> Acks {
    let client = http();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut acks = Acks::default();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let Ok(r) = client
                    .post(format!("{url}/v1/chat/completions"))
                    .json(&chat_body(w * 1_000_000 + i))
                    .send()
                    .await
                else {
                    break;
                };
                let id = r
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let ok = r.status().is_success();
                // The answer is acknowledged once its body is fully read.
                if r.bytes().await.is_err() {
                    break;
                }
                let at = Instant::now();
                let id = id.expect("x-request-id header");
                assert!(ok, "request {id} failed");
                acks.requests.push((id.clone(), at));
                if i.is_multiple_of(3) {
                    let Ok(r) = client
                        .post(format!("{url}/v1/feedback"))
                        .json(&json!({"request_id": id, "score": 1.0, "comment": format!("w{w} i{i}")}))
                        .send()
                        .await
                    else {
                        break;
                    };
                    let ok = r.status().is_success();
                    let Ok(body) = r.json::<Value>().await else {
                        break;
                    };
                    assert!(ok, "feedback refused: {body}");
                    let fid = body["feedback_id"].as_str().unwrap().to_string();
                    acks.feedback.push((fid, Instant::now()));
                }
            }
            acks
        }));
    }
    let mut all = Acks::default();
    for t in tasks {
        let a = t.await.unwrap();
        all.requests.extend(a.requests);
        all.feedback.extend(a.feedback);
    }
    all
}

/// splitmix64: a seeded, dependency-free source of kill moments.
fn next_rand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A batch is written `flush_interval_ms` after its first row reached the
/// writer, and writing it (Parquet encoding, fsync of the file, rename,
/// fsync of the folder) takes time on this shared disk; rows queued during
/// a write wait for it. So "acknowledged more than one flush interval
/// before the kill" gets this much room for the write itself.
const WRITE_ALLOWANCE_MS: u64 = 300;

#[test]
fn kill_9_under_load_loses_no_acknowledged_row_or_feedback() {
    let Some(py) = python_with_pyarrow() else {
        return;
    };
    let flush_ms = 200u64;
    let (rt, mock, s) = mock_repo(&format!(
        "  flush_interval_ms: {flush_ms}\n  on_full: block\n"
    ));
    let log_root = s.path(".promptgate/logs");
    let seed = 0x5EED_u64;
    let mut rng = seed;
    // Acknowledged more than one flush interval before the kill: must
    // survive. (id, round, how long before the kill it was acknowledged)
    let mut required_rows: Vec<(String, usize, Duration)> = Vec::new();
    let mut required_feedback: Vec<String> = Vec::new();
    let mut acked_rows = 0usize;
    let check_rows = |report: &Value, required: &[(String, usize, Duration)], when: &str| {
        let present: HashSet<String> = strings(&report["request_ids"]).into_iter().collect();
        let missing: Vec<_> = required
            .iter()
            .filter(|(id, _, _)| !present.contains(id))
            .collect();
        assert!(
            missing.is_empty(),
            "{when} (seed {seed:#x}): {} of {} rows acknowledged > {flush_ms} ms + {WRITE_ALLOWANCE_MS} ms before a kill are missing; (id, round, acked before kill): {:?}",
            missing.len(),
            required.len(),
            &missing[..missing.len().min(5)]
        );
    };
    for round in 0..20 {
        let mut serve = Proxy::start(&s.root());
        let stop = Arc::new(AtomicBool::new(false));
        let load_task = rt.spawn(load(serve.url.clone(), 4, stop.clone()));
        let wait = Duration::from_millis(150 + next_rand(&mut rng) % 1200);
        std::thread::sleep(wait);
        let killed_at = Instant::now();
        serve.child.kill().unwrap(); // SIGKILL
        serve.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        let acks = rt.block_on(load_task).unwrap();
        acked_rows += acks.requests.len();
        for (id, at) in &acks.requests {
            let age = killed_at.saturating_duration_since(*at);
            if age > Duration::from_millis(flush_ms + WRITE_ALLOWANCE_MS) {
                required_rows.push((id.clone(), round, age));
            }
        }
        // Feedback is durable before its acknowledgement: all of it counts.
        required_feedback.extend(acks.feedback.iter().map(|(id, _)| id.clone()));

        // Right after the kill, before any recovery: every file a reader
        // sees opens, and every acknowledged feedback is there.
        let report = pyarrow_report(&py, &log_root);
        assert_eq!(
            report["unreadable"],
            json!([]),
            "round {round} (seed {seed:#x}, kill after {wait:?}): unreadable files"
        );
        let fb: HashSet<String> = strings(&report["feedback_ids"])
            .into_iter()
            .chain(strings(&report["journal_ids"]))
            .collect();
        let lost: Vec<&String> = required_feedback
            .iter()
            .filter(|id| !fb.contains(*id))
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged feedback lost: {lost:?}"
        );
    }
    assert!(
        required_rows.len() > 100,
        "too little load to mean anything: {} required of {acked_rows} acknowledged rows",
        required_rows.len()
    );
    assert!(
        required_feedback.len() > 50,
        "{} feedback",
        required_feedback.len()
    );

    eprintln!(
        "20 kills: {acked_rows} rows acknowledged, {} of them > {flush_ms} ms + {WRITE_ALLOWANCE_MS} ms before a kill; {} feedback acknowledged",
        required_rows.len(),
        required_feedback.len()
    );
    // One clean start (recovery of the last kill's leftovers) and stop; a
    // row lost at any kill stays lost, so one check at the end covers all.
    let mut last = Proxy::start(&s.root());
    assert_eq!(last.terminate(), Some(0), "{}", last.stderr());
    let report = pyarrow_report(&py, &log_root);
    assert_eq!(report["unreadable"], json!([]));
    assert_eq!(
        report["hidden"],
        json!([]),
        "temporaries left after recovery"
    );
    let ids = strings(&report["request_ids"]);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a request was logged twice");
    check_rows(&report, &required_rows, "after the final recovery");
    let fb: HashSet<String> = strings(&report["feedback_ids"])
        .into_iter()
        .chain(strings(&report["journal_ids"]))
        .collect();
    for id in &required_feedback {
        assert!(fb.contains(id), "feedback {id} lost after recovery");
    }
    // The library's reader agrees with pyarrow on the feedback.
    let lib: HashSet<String> = promptgate::logstore::read_feedback(&[&log_root])
        .unwrap()
        .into_iter()
        .map(|r| r.feedback_id)
        .collect();
    for id in &required_feedback {
        assert!(lib.contains(id), "read_feedback misses {id}");
    }
    drop(mock);
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.split(['{', ' ']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

const STALL_ENV: (&str, &str) = ("PROMPTGATE_TEST_HOOKS", "1");

async fn set_stall(client: &reqwest::Client, url: &str, stalled: bool) {
    let r = client
        .post(format!("{url}/admin/test/stall-log-writer"))
        .json(&json!({"stalled": stalled}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "stall hook: {}", r.status());
}

/// A served scaffold with room for 8 rows in the log channel, a 100 ms
/// flush, `on_full` as given, and the stall test hook mounted.
fn stall_setup(on_full: &str) -> (tokio::runtime::Runtime, MockServer, Scaffold, Proxy) {
    let (rt, mock, s) = mock_repo(&format!(
        "  flush_interval_ms: 100\n  channel_capacity: 8\n  on_full: {on_full}\n"
    ));
    let serve = Proxy::start_with(&s.root(), &[], &[STALL_ENV]);
    (rt, mock, s, serve)
}

async fn scrape(client: &reqwest::Client, url: &str) -> String {
    let r = client.get(format!("{url}/metrics")).send().await.unwrap();
    assert!(r.status().is_success());
    r.text().await.unwrap()
}

/// Sequential requests; returns (latencies in ms, request ids).
async fn sequential(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    from: usize,
) -> (Vec<f64>, Vec<String>) {
    let mut lat = Vec::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let t0 = Instant::now();
        let r = client
            .post(format!("{url}/v1/chat/completions"))
            .json(&chat_body(from + i))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        ids.push(r.headers()["x-request-id"].to_str().unwrap().to_string());
        r.bytes().await.unwrap();
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    (lat, ids)
}

#[test]
fn stalled_writer_under_drop_keeps_latency_flat_and_counts_every_lost_row() {
    let Some(py) = python_with_pyarrow() else {
        return;
    };
    let (rt, mock, s, mut serve) = stall_setup("drop");
    let url = serve.url.clone();
    let (free, stalled, metrics_text, ids) = rt.block_on(async {
        let client = http();
        sequential(&client, &url, 30, 0).await; // warm-up
        // Alternate blocks so drift of the shared machine hits both sides.
        let (mut free, mut stalled, mut ids) = (Vec::new(), Vec::new(), Vec::new());
        for block in 0..4 {
            let (l, i) = sequential(&client, &url, 50, 1000 * (2 * block + 1)).await;
            free.extend(l);
            ids.extend(i);
            set_stall(&client, &url, true).await;
            let (l, i) = sequential(&client, &url, 50, 1000 * (2 * block + 2)).await;
            set_stall(&client, &url, false).await;
            stalled.extend(l);
            ids.extend(i);
        }
        // Let the writer drain what the channel held before reading counters.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let m = scrape(&client, &url).await;
        (free, stalled, m, ids)
    });
    assert_eq!(serve.terminate(), Some(0), "{}", serve.stderr());
    let (mut free, mut stalled) = (free, stalled);
    let (mf, ms) = (median(&mut free), median(&mut stalled));
    assert!(
        ms < 2.0 * mf,
        "median latency with a stalled writer {ms:.3} ms vs {mf:.3} ms free: not flat"
    );
    let dropped = metric(&metrics_text, "promptgate_log_rows_dropped");
    eprintln!("on_full: drop: median {mf:.3} ms free, {ms:.3} ms stalled; {dropped} rows dropped");
    // Four stalls of 50 requests each with room for 8 (+1 taken by the
    // writer) rows: most rows of a stall must have been dropped.
    assert!(dropped >= 4.0 * 30.0, "dropped only {dropped}");
    let report = pyarrow_report(&py, &s.path(".promptgate/logs"));
    assert_eq!(report["unreadable"], json!([]));
    let present: HashSet<String> = strings(&report["request_ids"]).into_iter().collect();
    let missing = ids.iter().filter(|id| !present.contains(*id)).count();
    assert_eq!(
        missing as f64, dropped,
        "rows missing from the log must equal the dropped counter"
    );
    assert_eq!(
        present.len(),
        ids.len() + 30 - missing,
        "unexpected extra rows"
    );
    drop(mock);
}

#[test]
fn stalled_writer_under_block_loses_nothing() {
    let Some(py) = python_with_pyarrow() else {
        return;
    };
    let (rt, mock, s, mut serve) = stall_setup("block");
    let url = serve.url.clone();
    let (ids, stalled_metrics) = rt.block_on(async {
        let client = http();
        set_stall(&client, &url, true).await;
        // 40 concurrent requests against room for 8 rows: the rest of the
        // rows must wait (rows are queued after the answer, so the clients
        // themselves finish).
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move { sequential(&client, &url, 1, i).await.1 })
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            ids.extend(t.await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let m = scrape(&client, &url).await;
        set_stall(&client, &url, false).await;
        (ids, m)
    });
    assert_eq!(serve.terminate(), Some(0), "{}", serve.stderr());
    // While stalled the queue was full and nothing had been dropped: the
    // block path was exercised, not bypassed.
    assert_eq!(metric(&stalled_metrics, "promptgate_log_queue_depth"), 8.0);
    assert_eq!(metric(&stalled_metrics, "promptgate_log_rows_dropped"), 0.0);
    let report = pyarrow_report(&py, &s.path(".promptgate/logs"));
    assert_eq!(report["unreadable"], json!([]));
    let present: HashSet<String> = strings(&report["request_ids"]).into_iter().collect();
    for id in &ids {
        assert!(present.contains(id), "row {id} lost under on_full: block");
    }
    assert_eq!(ids.len(), 40);
    drop(mock);
}

/// SIGTERM right after the `listening on` line is a graceful stop (exit 0,
/// rows flushed), not a kill: the handler is installed before the line is
/// printed. (Before the fix the handler was registered on first poll, and
/// this window killed the process about one start in three in debug builds.)
#[test]
fn sigterm_right_after_listening_is_a_graceful_stop() {
    let (_rt, mock, s) = mock_repo(SCAFFOLD_LOGGING);
    for _ in 0..10 {
        let mut p = Proxy::start(&s.root());
        assert_eq!(p.terminate(), Some(0), "{}", p.stderr());
    }
    drop(mock);
}
