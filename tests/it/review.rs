//! The review loop through the real binary: `promptgate serve` in front of
//! `mock-llm` (a MOCK: it echoes the rendered user message), feedback,
//! `review sample`, decisions over HTTP and on the command line, and
//! `dataset grow` on a new branch; and the refusals (unknown item, second
//! decision, unknown column, hand-edited rows.jsonl, conflicting corrections).
//! Then the same loop in front of the real model (SmolLM2 through
//! llama.cpp), on to `eval` of the grown version.

use std::time::Duration;

use promptgate::mock_llm::{MockConfig, MockServer};
use serde_json::{Value, json};

use crate::support::external::{python_with_pyarrow, test_llm_url};
use crate::support::serve::{Proxy, log_dir, log_rows, proxy_scaffold};
use crate::support::{Scaffold, http, stderr, stdout};

const COUNTRIES: &[&str] = &["Peru", "Kenya", "Chile", "Norway", "Egypt", "India"];

/// Asks `prompt:capital` about `country`; the call's request id.
pub(crate) async fn ask(p: &Proxy, country: &str) -> String {
    let body = json!({
        "model": "prompt:capital",
        "messages": [],
        "variables": {"country": country},
    });
    let r = http()
        .post(format!("{}/v1/chat/completions", p.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-request-id"].to_str().unwrap().to_string()
}

async fn post(p: &Proxy, path: &str, body: Value) -> (u16, Value) {
    let r = http()
        .post(format!("{}{path}", p.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `review sample --suite capitals --json ARGS`, checked to succeed.
fn sample(s: &Scaffold, args: &[&str]) -> Value {
    let mut all = vec!["review", "sample", "--suite", "capitals", "--json"];
    all.extend_from_slice(args);
    let o = s.run(&all);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

/// Waits (up to 10 s) until the request log holds `n` rows; returns them.
async fn wait_rows(s: &Scaffold, n: usize) -> Vec<promptgate::logstore::RequestLogRow> {
    for _ in 0..100 {
        if log_rows(&s.root()).len() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = log_rows(&s.root());
    assert_eq!(rows.len(), n);
    rows
}

fn git_show(s: &Scaffold, spec: &str) -> String {
    let repo = git2::Repository::open(s.root()).unwrap();
    let obj = repo.revparse_single(spec).unwrap();
    String::from_utf8(obj.peel_to_blob().unwrap().content().to_vec()).unwrap()
}

/// Serves six calls, gives three low feedback, samples them, decides them.
async fn reviewed_scaffold() -> (MockServer, Scaffold, Proxy, Vec<String>) {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let s = proxy_scaffold("openai", &m.url(), "");
    let o = s.run(&["dataset", "snapshot", "capitals"]);
    assert!(o.status.success(), "{}", stderr(&o));
    s.commit("snapshot");
    let p = Proxy::start(&s.root());
    let mut ids = Vec::new();
    for c in COUNTRIES {
        ids.push(ask(&p, c).await);
    }
    for (i, id) in ids.iter().enumerate() {
        let score = if i < 3 { 0.0 } else { 1.0 };
        let (st, _) = post(
            &p,
            "/v1/feedback",
            json!({"request_id": id, "score": score}),
        )
        .await;
        assert_eq!(st, 200);
    }
    wait_rows(&s, ids.len()).await;
    (m, s, p, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviewed_calls_become_dataset_v2_on_a_branch() {
    let (_m, s, p, ids) = reviewed_scaffold().await;
    let out = sample(&s, &["--strategy", "low_feedback"]);
    let mut queued: Vec<String> = serde_json::from_value(out["enqueued"].clone()).unwrap();
    queued.sort();
    let mut low = ids[..3].to_vec();
    low.sort();
    assert_eq!(queued, low, "the three calls with low feedback");
    // Never the same call twice.
    let again = sample(&s, &[]);
    assert_eq!(again["enqueued"], json!([]));
    assert_eq!(again["already_queued"], 3);

    // Over HTTP: Ann leases one and accepts it; Bob cannot take it.
    let (st, item) = post(&p, "/v1/review/next", json!({"reviewer": "ann"})).await;
    assert_eq!(st, 200, "{item}");
    let a = item["item"]["request_id"].as_str().unwrap().to_string();
    let (st, err) = post(
        &p,
        &format!("/v1/review/items/{a}/decision"),
        json!({"reviewer": "bob", "kind": "accept"}),
    )
    .await;
    assert_eq!(st, 409, "{err}");
    let (st, err) = post(
        &p,
        &format!("/v1/review/items/{a}/decision"),
        json!({"reviewer": "ann", "kind": "correct", "columns": {"nope": "x"}, "extra": 1}),
    )
    .await;
    assert_eq!(st, 400, "unknown field: {err}");
    let (st, d) = post(
        &p,
        &format!("/v1/review/items/{a}/decision"),
        json!({"reviewer": "ann", "kind": "accept"}),
    )
    .await;
    assert_eq!(st, 200, "{d}");
    let (st, err) = post(
        &p,
        &format!("/v1/review/items/{a}/decision"),
        json!({"reviewer": "ann", "kind": "discard"}),
    )
    .await;
    assert_eq!(st, 409, "a decision is final: {err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already decided"),
        "{err}"
    );
    let (st, err) = post(
        &p,
        "/v1/review/items/no-such-call/decision",
        json!({"reviewer": "ann", "kind": "accept"}),
    )
    .await;
    assert_eq!(st, 404, "{err}");

    // On the command line: Bob corrects the next one; a column the dataset
    // does not have is refused and nothing is stored.
    let o = s.run(&[
        "review",
        "next",
        "--reviewer",
        "bob",
        "--column",
        "capital_city=Lima",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("no column `capital_city`"),
        "{}",
        stderr(&o)
    );
    let o = s.run(&[
        "review",
        "next",
        "--reviewer",
        "bob",
        "--expected",
        "The capital",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("decided: correct by bob"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("picked because: low_feedback"),
        "{}",
        stdout(&o)
    );
    let o = s.run(&["review", "next", "--reviewer", "cy", "--discard"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = s.run(&["review", "stats", "--json"]);
    let stats: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (
            stats["accepted"].as_u64(),
            stats["corrected"].as_u64(),
            stats["discarded"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{stats}"
    );

    let main_before = s.head_commit();
    let o = s.run(&["dataset", "grow", "capitals", "--from-reviews", "--json"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["to_version"], 2);
    assert_eq!(report["branch"], "dataset/capitals-v2");
    assert_eq!(report["added"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(s.head_commit(), main_before, "the base branch is untouched");
    assert!(git_show(&s, "main:evals/capitals.yaml").contains("capitals@v1"));
    assert!(git_show(&s, "dataset/capitals-v2:evals/capitals.yaml").contains("capitals@v2"));
    let old_rows = git_show(&s, "main:datasets/capitals/rows.jsonl");
    let new_rows = git_show(&s, "dataset/capitals-v2:datasets/capitals/rows.jsonl");
    assert!(
        new_rows.starts_with(&old_rows),
        "old rows kept as they were"
    );
    assert_eq!(new_rows.lines().count(), old_rows.lines().count() + 2);
    assert!(new_rows.contains("\"expected\":\"The capital\""));
    let repo = git2::Repository::open(s.root()).unwrap();
    let msg = repo
        .revparse_single("dataset/capitals-v2")
        .unwrap()
        .peel_to_commit()
        .unwrap()
        .message()
        .unwrap()
        .to_string();
    for added in report["added"].as_array().unwrap() {
        let id = added["request_id"].as_str().unwrap();
        assert!(msg.contains(id), "the message lists every source: {msg}");
    }
    // v1 unchanged on the branch, byte for byte.
    assert_eq!(
        repo.revparse_single("main:datasets/capitals/snapshots/v1.parquet")
            .unwrap()
            .id(),
        repo.revparse_single("dataset/capitals-v2:datasets/capitals/snapshots/v1.parquet")
            .unwrap()
            .id()
    );
    // A second grow from the same base: the branch exists.
    let o = s.run(&["dataset", "grow", "capitals", "--from-reviews"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("exists already"), "{}", stderr(&o));

    // The snapshot, read back by an independent reader.
    if let Some(py) = python_with_pyarrow() {
        let file = s.root().join("v2.parquet");
        let blob = repo
            .revparse_single("dataset/capitals-v2:datasets/capitals/snapshots/v2.parquet")
            .unwrap();
        std::fs::write(&file, blob.peel_to_blob().unwrap().content()).unwrap();
        let o = std::process::Command::new(py)
            .args(["-c", "import sys, json, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); print(json.dumps({'n': t.num_rows, 'cols': t.column_names, 'src': [s for s in t.column('source_request_id').to_pylist() if s], 'who': sorted(r for r in t.column('reviewer').to_pylist() if r)}))"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let t: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(
            t["n"].as_u64().unwrap() as usize,
            new_rows.lines().filter(|l| !l.trim().is_empty()).count()
        );
        let mut src: Vec<String> = serde_json::from_value(t["src"].clone()).unwrap();
        src.sort();
        assert_eq!(src.len(), 2);
        assert!(src.contains(&a));
        assert_eq!(t["who"], json!(["ann", "bob"]));
        for c in [
            "source_request_id",
            "source_prompt_version",
            "reviewer",
            "reviewed_at",
        ] {
            assert!(t["cols"].as_array().unwrap().contains(&json!(c)), "{t}");
        }
    }
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edited_dataset_and_conflicting_corrections_are_refused_without_writing() {
    let (_m, s, p, ids) = reviewed_scaffold().await;
    let o = s.run(&["review", "sample", "--suite", "capitals", "--n", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (st, item) = post(&p, "/v1/review/next", json!({"reviewer": "ann"})).await;
    assert_eq!(st, 200);
    let id = item["item"]["request_id"].as_str().unwrap().to_string();
    assert!(ids.contains(&id));
    let (st, _) = post(
        &p,
        &format!("/v1/review/items/{id}/decision"),
        json!({"reviewer": "ann", "kind": "correct", "expected": "A"}),
    )
    .await;
    assert_eq!(st, 200);
    // A second replica's queue where Bob corrected the same call differently.
    let other = s.root().join("replica2-review");
    std::fs::create_dir_all(&other).unwrap();
    let journal = std::fs::read_to_string(log_dir(&s.root()).join("review/journal.jsonl")).unwrap();
    let replaced = journal
        .replace("\"reviewer\":\"ann\"", "\"reviewer\":\"bob\"")
        .replace("\"expected\":\"A\"", "\"expected\":\"B\"");
    std::fs::write(other.join("journal.jsonl"), replaced).unwrap();
    let queue_a = log_dir(&s.root()).join("review");
    let o = s.run(&[
        "dataset",
        "grow",
        "capitals",
        "--from-reviews",
        "--queue",
        queue_a.to_str().unwrap(),
        "--queue",
        other.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("decided differently"), "{}", stderr(&o));
    let repo = git2::Repository::open(s.root()).unwrap();
    assert!(
        repo.find_branch("dataset/capitals-v2", git2::BranchType::Local)
            .is_err(),
        "nothing written"
    );

    // rows.jsonl edited by hand since the snapshot.
    let rows = s.read("datasets/capitals/rows.jsonl");
    s.write(
        "datasets/capitals/rows.jsonl",
        &format!("{rows}{{\"id\": \"pe\", \"country\": \"Peru\", \"expected\": \"Lima\"}}\n"),
    );
    let o = s.run(&["dataset", "grow", "capitals", "--from-reviews"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("edited since the last snapshot v1"),
        "{}",
        stderr(&o)
    );
    assert!(
        repo.find_branch("dataset/capitals-v2", git2::BranchType::Local)
            .is_err(),
        "nothing written"
    );
    drop(p);
}

/// `kill -9` of serve while four reviewers decide over HTTP, 20 times:
/// every decision answered 200 is in the journal afterwards with its
/// reviewer and verdict, no item is lost, and no two reviewers were ever
/// handed the same undecided item at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_reviewing_loses_no_acknowledged_decision() {
    use promptgate::review::{ReviewItem, ReviewQueue};
    let s = Scaffold::new();
    let queue_dir = log_dir(&s.root()).join("review");
    let queue = ReviewQueue::open(&queue_dir).unwrap();
    let items: Vec<ReviewItem> = (0..400)
        .map(|i| {
            let row = promptgate::logstore::RequestLogRow::new(
                format!("call-{i:04}"),
                chrono::Utc::now(),
            );
            ReviewItem::from_row(&row, &[], Some("capitals"), "random".into())
        })
        .collect();
    assert_eq!(queue.enqueue(items).unwrap(), 400);
    let mut acked: Vec<(String, String, String)> = Vec::new();
    let mut handed: Vec<(String, String)> = Vec::new();
    let ack_count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for round in 0..20 {
        let before = ack_count.load(std::sync::atomic::Ordering::SeqCst);
        let mut p = Proxy::start(&s.root());
        let url = p.url.clone();
        let mut tasks = Vec::new();
        for r in 0..4 {
            let url = url.clone();
            let reviewer = format!("r{round}-{r}");
            let counter = ack_count.clone();
            tasks.push(tokio::spawn(async move {
                let mut acks = Vec::new();
                let mut leases = Vec::new();
                let client = http();
                loop {
                    let Ok(resp) = client
                        .post(format!("{url}/v1/review/next"))
                        .json(&json!({"reviewer": reviewer}))
                        .send()
                        .await
                    else {
                        break;
                    };
                    if resp.status() != 200 {
                        break;
                    }
                    let Ok(v) = resp.json::<Value>().await else {
                        break;
                    };
                    let id = v["item"]["request_id"].as_str().unwrap().to_string();
                    leases.push((id.clone(), reviewer.clone()));
                    let kind = if id.ends_with('7') {
                        "discard"
                    } else {
                        "accept"
                    };
                    let Ok(resp) = client
                        .post(format!("{url}/v1/review/items/{id}/decision"))
                        .json(&json!({"reviewer": reviewer, "kind": kind}))
                        .send()
                        .await
                    else {
                        break;
                    };
                    if resp.status() == 200 {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        acks.push((id, reviewer.clone(), kind.to_string()));
                    } else {
                        break;
                    }
                }
                (acks, leases)
            }));
        }
        // Kill mid-load: after the round's first acknowledged decision (the
        // machine may be slow to start serve), plus a varying delay.
        for _ in 0..300 {
            if ack_count.load(std::sync::atomic::Ordering::SeqCst) > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(37 * (round % 5) as u64)).await;
        p.child.kill().unwrap();
        p.child.wait().unwrap();
        for t in tasks {
            let (a, l) = t.await.unwrap();
            acked.extend(a);
            handed.extend(l);
        }
        drop(p);
    }
    let reopened = ReviewQueue::open(&queue_dir).unwrap();
    let items = reopened.list().unwrap();
    assert_eq!(items.len(), 400, "no item lost");
    assert!(!acked.is_empty());
    for (id, reviewer, kind) in &acked {
        let v = items.iter().find(|v| &v.item.request_id == id).unwrap();
        let d = v
            .decision
            .as_ref()
            .unwrap_or_else(|| panic!("acknowledged decision on {id} lost"));
        assert_eq!((&d.reviewer, d.verdict.kind()), (reviewer, kind.as_str()));
    }
    // Leases last 15 minutes and a killed server does not end one: an item
    // handed to one reviewer is never handed to another during the test.
    let mut holders: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for (id, who) in &handed {
        if let Some(prev) = holders.insert(id, who) {
            assert_eq!(prev, who, "item {id} handed to {prev} and to {who}");
        }
    }
    eprintln!("{} decisions acknowledged over 20 kills", acked.len());
}

/// Runs `script` (Python with pyarrow) with `args`; its stdout as JSON.
fn pyarrow_json(py: &str, script: &str, args: &[&std::path::Path]) -> Value {
    let o = std::process::Command::new(py)
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

/// The whole loop on the real model (SmolLM2-135M behind llama.cpp's
/// OpenAI-compatible server, started by scripts/test.sh; a few calls, it
/// is slow on 2 cores): serve with `review.auto_enqueue`, traffic,
/// feedback (the worst call queued as its feedback arrives), `review
/// sample` for the rest, decisions over HTTP and with `review next`,
/// `dataset grow` on a branch, and `eval` on v2: its result Parquet holds
/// exactly the old rows' keys and the grown ones; the v2 snapshot carries
/// the provenance columns (both read back with pyarrow).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_on_the_real_model_grows_v2_and_eval_reads_old_and_reviewed_rows() {
    let Some(url) = test_llm_url() else {
        return;
    };
    let Some(py) = python_with_pyarrow() else {
        return;
    };
    let s = proxy_scaffold("openai", &url, "");
    s.edit("promptgate.yaml", "name: llama3.2:1b", "name: smollm2");
    let config = format!(
        "{}review:\n  auto_enqueue:\n    max_score: 0.0\n    rate: 1.0\n",
        s.read("promptgate.yaml")
    );
    s.write("promptgate.yaml", &config);
    // The model answers in a sentence.
    s.edit("evals/capitals.yaml", "    max: 60\n", "    max: 200\n");
    let o = s.run(&["dataset", "snapshot", "capitals"]);
    assert!(o.status.success(), "{}", stderr(&o));
    s.commit("The real model; queue the worst answers");
    let p = Proxy::start_with(&s.root(), &["--no-analyzer", "--no-drift"], &[]);
    let countries = ["Peru", "Kenya", "Chile", "Norway"];
    let mut ids = Vec::new();
    for c in countries {
        ids.push(ask(&p, c).await);
    }
    for (id, score) in ids.iter().zip([0.0, 0.3, 0.4, 1.0]) {
        let (st, body) = post(
            &p,
            "/v1/feedback",
            json!({"request_id": id, "score": score}),
        )
        .await;
        assert_eq!(st, 200, "{body}");
    }
    // Score 0 is at most auto_enqueue's max_score: queued by serve itself.
    let mut queued = Value::Null;
    for _ in 0..300 {
        queued = crate::support::get_json(&format!("{}/v1/review/items", p.url)).await;
        if queued.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(queued.as_array().map(Vec::len), Some(1), "{queued:#}");
    assert_eq!(queued[0]["item"]["request_id"], ids[0].as_str());
    assert!(
        queued[0]["item"]["reason"]
            .as_str()
            .unwrap()
            .contains("queued by serve"),
        "{queued:#}"
    );
    let rows = wait_rows(&s, ids.len()).await;
    let answer = |id: &str| {
        rows.iter()
            .find(|r| r.request_id == id)
            .unwrap()
            .output
            .clone()
    };
    assert!(!answer(&ids[1]).trim().is_empty(), "the model answered");
    let prompt_version = rows[0].prompt_version.clone().unwrap();

    // `review sample` takes the other low ones; the queued call is not
    // queued twice.
    let out = sample(&s, &["--strategy", "low_feedback", "--max-score", "0.5"]);
    assert_eq!(
        out["enqueued"],
        json!([ids[1], ids[2]]),
        "worst first: {out}"
    );
    assert_eq!(out["already_queued"], 1, "{out}");

    // Over HTTP: Ann takes the first and corrects it.
    let (st, item) = post(&p, "/v1/review/next", json!({"reviewer": "ann"})).await;
    assert_eq!(st, 200, "{item}");
    assert_eq!(item["item"]["request_id"], ids[0].as_str());
    assert_eq!(item["item"]["output"], answer(&ids[0]).as_str());
    assert!(
        item["item"]["messages"]
            .to_string()
            .contains("What is the capital of Peru?"),
        "{item}"
    );
    let (st, d) = post(
        &p,
        &format!("/v1/review/items/{}/decision", ids[0]),
        json!({"reviewer": "ann", "kind": "correct", "expected": "Lima"}),
    )
    .await;
    assert_eq!(st, 200, "{d}");
    // On the command line: Bob accepts the model's answer for Kenya, Cy
    // corrects Chile's.
    let o = s.run(&["review", "next", "--reviewer", "bob", "--accept"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&ids[1]), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("decided: accept by bob"),
        "{}",
        stdout(&o)
    );
    let o = s.run(&[
        "review",
        "next",
        "--reviewer",
        "cy",
        "--expected",
        "Santiago",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&ids[2]), "{}", stdout(&o));
    let o = s.run(&["review", "next", "--reviewer", "cy", "--accept"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("nothing pending"), "{}", stdout(&o));

    // dataset grow: v2 on a branch, main untouched.
    let main_before = s.head_commit();
    let o = s.run(&["dataset", "grow", "capitals", "--from-reviews", "--json"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(s.head_commit(), main_before);
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["to_version"], 2, "{report:#}");
    assert_eq!(report["branch"], "dataset/capitals-v2");
    let added = report["added"].as_array().unwrap();
    let mut grown: Vec<(String, String)> = added
        .iter()
        .map(|a| {
            (
                a["request_id"].as_str().unwrap().to_string(),
                a["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    grown.sort();
    let mut reviewed = ids[..3].to_vec();
    reviewed.sort();
    assert_eq!(
        grown.iter().map(|g| g.0.clone()).collect::<Vec<_>>(),
        reviewed
    );
    let v2_rows = git_show(&s, "dataset/capitals-v2:datasets/capitals/rows.jsonl");
    let expected_of = |country: &str| -> String {
        v2_rows
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|r| r["country"] == country)
            .unwrap()["expected"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(expected_of("Peru"), "Lima");
    assert_eq!(expected_of("Chile"), "Santiago");
    assert_eq!(
        expected_of("Kenya"),
        answer(&ids[1]),
        "accepted as answered"
    );

    // eval on v2 reads the twelve old rows and the three reviewed ones.
    let o = s.run(&[
        "eval",
        "capitals",
        "--ref",
        "dataset/capitals-v2",
        "--json",
        "--no-cache",
        "--concurrency",
        "1",
    ]);
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{}\n{summary:#}",
        stderr(&o)
    );
    assert_eq!(summary["dataset"], "capitals@v2", "{summary:#}");
    assert_eq!(summary["errors"], 0, "{summary:#}");
    let results = std::path::PathBuf::from(summary["results_file"].as_str().unwrap());
    let results = if results.is_absolute() {
        results
    } else {
        s.root().join(results)
    };
    let t = pyarrow_json(
        &py,
        "import sys, json, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); print(json.dumps({'keys': t.column('row_key').to_pylist(), 'dataset': sorted(set(t.column('dataset').to_pylist()))}))",
        &[&results],
    );
    let mut keys: Vec<String> = serde_json::from_value(t["keys"].clone()).unwrap();
    keys.sort();
    let mut want: Vec<String> = git_show(&s, "main:datasets/capitals/rows.jsonl")
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .chain(grown.iter().map(|g| g.1.clone()))
        .collect();
    want.sort();
    assert_eq!(want.len(), 15);
    assert_eq!(keys, want, "exactly the old rows and the reviewed ones");
    assert_eq!(t["dataset"], json!(["capitals@v2"]));

    // The v2 snapshot, read back by pyarrow: the provenance columns.
    let repo = git2::Repository::open(s.root()).unwrap();
    let file = s.root().join("v2.parquet");
    let blob = repo
        .revparse_single("dataset/capitals-v2:datasets/capitals/snapshots/v2.parquet")
        .unwrap();
    std::fs::write(&file, blob.peel_to_blob().unwrap().content()).unwrap();
    let t = pyarrow_json(
        &py,
        "import sys, json, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]).to_pylist(); print(json.dumps([r for r in t if r.get('source_request_id')]))",
        &[&file],
    );
    let prov = t.as_array().unwrap();
    assert_eq!(prov.len(), 3, "{t:#}");
    for r in prov {
        let i = ids
            .iter()
            .position(|id| r["source_request_id"] == id.as_str())
            .unwrap();
        assert_eq!(r["country"], countries[i]);
        assert_eq!(r["reviewer"], ["ann", "bob", "cy"][i], "{r}");
        assert_eq!(r["source_prompt_version"], prompt_version.as_str());
        let at = r["reviewed_at"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{r}");
    }
    drop(p);
}
