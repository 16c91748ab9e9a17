//! `promptgate drift` through the real binary: over logs written by a real
//! `promptgate serve` in front of `mock-llm` (a MOCK: it echoes the rendered
//! user message), over two replicas' logs written by `RequestLogger`, and
//! every bad input (missing log root, empty window, a prompt without
//! traffic, a malformed `drift:` section) as a clear error with exit 2.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use promptgate::logstore::{FeedbackJournal, FeedbackRecord, RequestLogRow};
use promptgate::mock_llm::{MockConfig, MockServer};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use crate::support::http;
use crate::support::logs::write_rows;
use crate::support::serve::{Proxy, proxy_scaffold};
use crate::support::{Scaffold, stderr, stdout};

const COUNTRIES: &[&str] = &[
    "France", "Japan", "Peru", "Kenya", "Norway", "Chile", "Egypt", "Canada", "India", "Spain",
];
const DISHES: &[&str] = &[
    "Kartoffelsuppe",
    "Apfelstrudel",
    "Sauerbraten",
    "Spätzle",
    "Rouladen",
    "Brezeln",
];

fn drift_section(s: &Scaffold, section: &str) {
    let text = s.read("promptgate.yaml");
    s.write("promptgate.yaml", &format!("{text}{section}"));
}

async fn ask(p: &Proxy, question: &str) {
    let body = json!({
        "model": "prompt:chat",
        "messages": [{"role": "user", "content": question}],
    });
    let r = http()
        .post(format!("{}/v1/chat/completions", p.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

/// The drifted features of a group of a drift report (`promptgate drift
/// --json` or `/status`), checked to hold every feature of `flagged` and
/// none of `unchanged`.
fn assert_drifted(group: &Value, flagged: &[&str], unchanged: &[&str], who: &str) -> Vec<String> {
    let drifted: Vec<String> = group["drifted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for f in flagged {
        assert!(
            drifted.iter().any(|d| d == f),
            "{who}: {f} not in {drifted:?}"
        );
    }
    for f in unchanged {
        assert!(!drifted.iter().any(|d| d == f), "{who}: {f} in {drifted:?}");
    }
    drifted
}

/// `n` English capital questions, then `n` German cooking questions of
/// about the same length.
async fn capitals_then_cooking(p: &Proxy, n: usize) {
    for i in 0..n {
        let c = COUNTRIES[i % COUNTRIES.len()];
        ask(
            p,
            &format!("What is the capital city of {c}, and what is the city best known for today?"),
        )
        .await;
    }
    for i in 0..n {
        let d = DISHES[i % DISHES.len()];
        ask(
            p,
            &format!("Wie kocht man {d} richtig, und welche Zutaten braucht man dafür zu Hause?"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_flags_a_new_language_and_topic_in_served_traffic_and_not_the_rest() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let s = proxy_scaffold("openai", &m.url(), "");
    drift_section(
        &s,
        "drift:\n  reference: first:150\n  current: last:150\n  min_rows: 100\n",
    );
    s.commit("drift settings");
    let mut p = Proxy::start(&s.root());
    capitals_then_cooking(&p, 150).await;
    assert_eq!(p.terminate(), Some(0), "{}", p.stderr());

    let html = s.root().join("drift.html");
    let o = s.run(&["drift", "--json", "--html", html.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["status"], "drift");
    let chat = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "chat")
        .unwrap();
    assert_eq!(chat["reference_calls"], 150);
    assert_eq!(chat["current_calls"], 150);
    let drifted = assert_drifted(
        chat,
        &[
            "input.input.language",
            "input.input.content",
            "output.language",
            "output.content",
        ],
        &["ops.error_rate", "ops.upstream_model", "ops.timeout_rate"],
        "cli",
    );
    let lang = chat["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "input.input.language")
        .unwrap();
    assert!(lang["q_value"].as_f64().unwrap() < 0.05, "{lang}");
    assert!(lang["current"].as_str().unwrap().contains("deu"), "{lang}");

    // The table: a line per feature, the drifted ones marked.
    let o = s.run(&["drift"]);
    assert_eq!(o.status.code(), Some(1));
    let table = stdout(&o);
    eprintln!("{table}");
    let line = table
        .lines()
        .find(|l| l.trim_start().starts_with("input.input.language"))
        .unwrap();
    assert!(line.ends_with("DRIFT"), "{table}");

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!doctype html>"));
    // Two charts (reference, current) per drifted feature, nothing fetched.
    assert!(page.matches("<svg").count() >= 2 * drifted.len(), "{page}");
    assert!(page.contains("input.input.language"));
    assert!(!page.contains("<script"));
    assert!(!page.contains("src=\"http"));
}

/// A call of the `faq` prompt at `ts`.
fn row(rng: &mut StdRng, i: usize, ts: DateTime<Utc>, words: usize, latency: f64) -> RequestLogRow {
    let mut r = RequestLogRow::new(format!("req-{i}"), ts);
    r.prompt_id = Some("faq".into());
    r.prompt_version = Some("v1blob".into());
    r.commit = "0123456789abcdef0123456789abcdef01234567".into();
    r.model = "small".into();
    r.upstream_model = "llama".into();
    let question: Vec<&str> = (0..words)
        .map(|_| {
            [
                "how", "do", "i", "reset", "my", "password", "account", "email", "login", "help",
            ][rng.random_range(0..10)]
        })
        .collect();
    let question = question.join(" ");
    r.variables = json!({ "question": question }).to_string();
    r.messages = json!([{"role": "user", "content": question}]).to_string();
    r.output = format!("You can reset it in the settings page. {question}");
    r.latency_ms = latency * (0.5 + rng.random::<f64>());
    r.input_tokens = words as u64 + 10;
    r.output_tokens = words as u64 + 8;
    r
}

/// Two replicas: each holds half of a reference day and half of a current
/// day; in the current day questions are twice as long and slower.
fn two_replicas(
    s: &Scaffold,
    current_words: usize,
    current_latency: f64,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let a = s.dir.path().join("replica-a");
    let b = s.dir.path().join("replica-b");
    let mut rng = StdRng::seed_from_u64(9);
    let day1 = DateTime::parse_from_rfc3339("2026-11-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let day2 = DateTime::parse_from_rfc3339("2026-11-02T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for i in 0..600 {
        let (ts, words, lat) = if i < 300 {
            (day1 + Duration::seconds(i as i64), 8, 500.0)
        } else {
            (
                day2 + Duration::seconds(i as i64),
                current_words,
                current_latency,
            )
        };
        let r = row(&mut rng, i, ts, words, lat);
        if i % 2 == 0 { ra.push(r) } else { rb.push(r) }
    }
    write_rows(&a, ra);
    write_rows(&b, rb);
    // Feedback on some calls, in replica a's journal.
    let (journal, _) = FeedbackJournal::open(&a).unwrap();
    for i in (0..600).step_by(3) {
        let mut f = FeedbackRecord::new(format!("req-{i}"), if i % 2 == 0 { 1.0 } else { 0.0 });
        f.label = Some("helpful".into());
        journal.append(&f).unwrap();
    }
    (a, b)
}

fn drift_over(s: &Scaffold, logs: &[&Path], extra: &[&str]) -> std::process::Output {
    let mut args = vec!["drift", "--logs"];
    let owned: Vec<String> = logs.iter().map(|p| p.display().to_string()).collect();
    args.extend(owned.iter().map(String::as_str));
    args.extend([
        "--reference",
        "2026-11-01..2026-11-02",
        "--current",
        "2026-11-02..",
    ]);
    args.extend(extra);
    s.run(&args)
}

#[test]
fn drift_reads_several_replicas_and_reports_length_and_latency() {
    let s = Scaffold::new();
    drift_section(&s, "drift:\n  min_rows: 100\n");
    s.commit("drift settings");
    let (a, b) = two_replicas(&s, 16, 900.0);
    let o = drift_over(&s, &[&a, &b], &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let g = &report["groups"][0];
    assert_eq!(g["group"], "faq");
    assert_eq!(g["reference_calls"], 300, "both replicas are read");
    assert_eq!(g["current_calls"], 300);
    let drifted: Vec<&str> = g["drifted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for f in [
        "input.question.words",
        "input.question.chars",
        "ops.latency_ms",
        "input.prompt_tokens",
    ] {
        assert!(drifted.contains(&f), "{f} not in {drifted:?}");
    }
    // Feedback was joined from the journal: a third of the calls.
    let share = g["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "feedback.share")
        .unwrap();
    assert_eq!(share["reference"], "33.3%", "{share}");
    assert_eq!(share["verdict"], "ok");

    // The table names every column and the verdict.
    let o = drift_over(&s, &[&a, &b], &[]);
    let table = stdout(&o);
    for col in [
        "feature",
        "reference",
        "current",
        "effect",
        "p",
        "q",
        "verdict",
        "DRIFT",
    ] {
        assert!(table.contains(col), "{col}: {table}");
    }
}

#[test]
fn unchanged_traffic_is_no_drift_and_too_little_is_not_a_pass() {
    let s = Scaffold::new();
    drift_section(&s, "drift:\n  min_rows: 100\n");
    s.commit("drift settings");
    let (a, b) = two_replicas(&s, 8, 500.0);
    let o = drift_over(&s, &[&a, &b], &[]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("no drift"), "{}", stdout(&o));
    // One replica's half of a 40-call window is below min_rows: exit 2.
    let o = s.run(&[
        "drift",
        "--logs",
        a.to_str().unwrap(),
        "--reference",
        "first:40",
        "--current",
        "last:40",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("not enough data"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("fewer than 100 calls"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_input_is_a_clear_error_naming_what_and_where() {
    let s = Scaffold::new();
    let (a, _) = two_replicas(&s, 8, 500.0);
    let missing = s.dir.path().join("no-such-logs");
    let o = s.run(&["drift", "--logs", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no-such-logs: no such log folder"),
        "{}",
        stderr(&o)
    );

    let o = s.run(&[
        "drift",
        "--logs",
        a.to_str().unwrap(),
        "--reference",
        "2025-01-01..2025-02-01",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("reference window `2025-01-01..2025-02-01` holds no calls"),
        "{e}"
    );
    assert!(
        e.contains("replica-a") && e.contains("from 2026-11-01"),
        "{e}"
    );

    let o = s.run(&[
        "drift",
        "--logs",
        a.to_str().unwrap(),
        "--prompt",
        "summarize",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("`summarize` has no calls") && e.contains("faq"),
        "{e}"
    );

    let o = s.run(&[
        "drift",
        "--logs",
        a.to_str().unwrap(),
        "--current",
        "last:5w",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown unit"), "{}", stderr(&o));

    // An empty folder has no logs at all.
    let empty = s.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = s.run(&["drift", "--logs", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no request log files under"),
        "{}",
        stderr(&o)
    );

    // A malformed drift: section, committed, is named by file, line and field.
    drift_section(&s, "drift:\n  fdr: 0.05\n  current: last:tomorrow\n");
    s.commit("bad drift settings");
    let o = s.run(&["drift", "--logs", a.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("promptgate.yaml:") && e.contains("drift.current"),
        "{e}"
    );
    assert!(e.contains("last:tomorrow"), "{e}");
}

/// Serve's drift task, in front of `mock-llm` (a MOCK that echoes): on its
/// schedule it reads the replica's log, and `/status`, `/metrics`, the log
/// and the webhook report the new language and topic; `on_drift: review`
/// puts calls of the drifted window into `promptgate review list`; a malformed
/// `drift:` committed later is refused at reload with its line, the old
/// section keeps running, and a valid change takes effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reports_drift_on_its_schedule_and_takes_reloaded_settings() {
    use crate::support::one_shot_server;
    use crate::support::serve::{commit_main, metrics, status, wait_status};
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let s = proxy_scaffold("openai", &m.url(), "");
    let (hook, hook_request) = one_shot_server();
    let section = format!(
        "drift:\n  reference: first:80\n  current: last:80\n  min_rows: 60\n  on_drift: review\n  webhook: {hook}\n"
    );
    // No `drift:` yet: the task waits for a reload to bring one.
    let mut p = Proxy::start_with(&s.root(), &["--drift-interval-ms", "300"], &[]);
    capitals_then_cooking(&p, 80).await;
    let limit = std::time::Duration::from_secs(30);
    assert_eq!(status(&p).await["drift"]["runs"], 0);
    drift_section(&s, &section);
    s.commit("drift settings");
    let full = |s: &Value| {
        s["drift"]["last"]["result"]["groups"]
            .as_array()
            .is_some_and(|g| {
                g.iter()
                    .any(|g| g["group"] == "chat" && g["current_calls"] == 80)
            })
    };
    let (st, ok) = wait_status(&p, limit, full).await;
    assert!(ok, "no drift round over full windows: {:#}", st["drift"]);
    let run = &st["drift"]["last"];
    assert_eq!(run["result"]["status"], "drift", "{run:#}");
    assert_eq!(run["reference"], "first:80");
    let chat = run["result"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "chat")
        .unwrap();
    assert_eq!(
        (
            chat["reference_calls"].as_u64(),
            chat["current_calls"].as_u64()
        ),
        (Some(80), Some(80))
    );
    assert_drifted(
        chat,
        &[
            "input.input.language",
            "input.input.content",
            "output.language",
        ],
        &["ops.error_rate", "ops.upstream_model"],
        "serve",
    );
    // The first round that found drift alerted; later ones with the same
    // drift do not repeat it.
    let first = &st["drift"]["last_alert"];
    let notes: Vec<&str> = first["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("ALERT: drift in `chat`: ")),
        "{notes:?}"
    );
    assert!(
        notes.contains(&format!("webhook {hook} notified").as_str()),
        "{notes:?}"
    );
    // `on_drift: review`: calls of the drifted (German cooking) window are
    // in the review queue `promptgate review` reads, with the drift as reason.
    let queued = first["queued_for_review"].as_u64();
    assert!(queued.is_some_and(|n| n > 0), "{first:#}");
    let out = s.run(&["review", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let items: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let items = items.as_array().unwrap();
    assert_eq!(Some(items.len() as u64), queued, "{items:#?}");
    for v in items {
        let item = &v["item"];
        assert_eq!(v["status"], "pending", "{v:#}");
        let reason = item["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("drift: ") && reason.contains("input.input.language"),
            "{reason}"
        );
        assert_eq!(item["prompt_id"], "chat", "{item:#}");
        let output = item["output"].as_str().unwrap();
        assert!(output.contains("Wie kocht man"), "{output}");
    }
    let request = hook_request.join().unwrap();
    assert!(request.starts_with("POST /hook"), "{request}");
    assert!(request.contains("\"kind\":\"drift\""), "{request}");
    assert!(request.contains("input.input.language"), "{request}");
    assert!(p.stderr().contains("drift in `chat`"), "{}", p.stderr());
    // The same drift in the next rounds is not alerted again (the sink
    // took one request; a second POST would be a failed-webhook note).
    let (st, ok) = wait_status(&p, limit, |s| {
        s["drift"]["last"]["notes"].as_array().is_some_and(|n| {
            n.iter()
                .any(|n| n.as_str().unwrap().contains("not alerted again"))
        })
    })
    .await;
    assert!(ok, "{:#}", st["drift"]);
    assert_eq!(st["drift"]["last"]["alerted"], false);
    assert_eq!(st["drift"]["last_alert"]["at"], first["at"]);

    let text = metrics(&p).await;
    assert!(
        text.contains("promptgate_drift{prompt=\"chat\"} 1\n"),
        "{text}"
    );
    let effect = text
        .lines()
        .find(|l| {
            l.starts_with("promptgate_drift_effect{")
                && l.contains("feature=\"input.input.language\"")
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(effect.contains("prompt=\"chat\""), "{effect}");
    let value: f64 = effect.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value > 0.1, "{effect}");

    // A malformed section is refused at reload, named by file, line, field;
    // the running section keeps running.
    let before = st["drift"]["runs"].as_u64().unwrap();
    let bad = format!(
        "{}{}",
        s.read("promptgate.yaml")
            .replace("min_rows: 60", "min_rows: 60\n  fdr: 1.5"),
        ""
    );
    commit_main(&s, &[("promptgate.yaml", &bad)], "bad drift settings");
    let (st, ok) = wait_status(&p, limit, |s| s["last_reload"]["ok"] == false).await;
    assert!(ok, "{:#}", st["last_reload"]);
    let error = st["last_reload"]["error"].as_str().unwrap();
    assert!(
        error.contains("promptgate.yaml:") && error.contains("drift.fdr"),
        "{error}"
    );
    let (st, ok) = wait_status(&p, limit, |s| {
        s["drift"]["runs"].as_u64().unwrap() > before + 1
            && s["drift"]["last"]["result"]["status"] == "drift"
    })
    .await;
    assert!(ok, "{:#}", st["drift"]);

    // So is a blank refusal phrase (the schema's minLength lets it through).
    let before = st["drift"]["runs"].as_u64().unwrap();
    let blank = bad.replace("  fdr: 1.5\n", "").replace(
        "min_rows: 60",
        "min_rows: 60\n  refusal_phrases: [\"I'm sorry\", \"  \"]",
    );
    commit_main(&s, &[("promptgate.yaml", &blank)], "blank refusal phrase");
    let (st, ok) = wait_status(&p, limit, |s| {
        s["last_reload"]["ok"] == false
            && s["last_reload"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("drift.refusal_phrases"))
    })
    .await;
    assert!(ok, "{:#}", st["last_reload"]);
    let error = st["last_reload"]["error"].as_str().unwrap();
    assert!(
        error.contains("promptgate.yaml:") && error.contains("phrase 2 is blank"),
        "{error}"
    );
    let (st, ok) = wait_status(&p, limit, |s| {
        s["drift"]["runs"].as_u64().unwrap() > before + 1
            && s["drift"]["last"]["result"]["status"] == "drift"
    })
    .await;
    assert!(ok, "{:#}", st["drift"]);

    // A valid change takes effect: with more calls needed than logged,
    // the prompt has not enough data (never a pass).
    let more = bad
        .replace("  fdr: 1.5\n", "")
        .replace("min_rows: 60", "min_rows: 500");
    commit_main(&s, &[("promptgate.yaml", &more)], "need more calls");
    let (st, ok) = wait_status(&p, limit, |s| {
        s["drift"]["last"]["result"]["status"] == "not_enough_data"
    })
    .await;
    assert!(ok, "{:#}", st["drift"]);
    // The last alert is kept for whoever looks later.
    assert_eq!(st["drift"]["last_alert"]["current"], "last:80");
    let text = metrics(&p).await;
    assert!(
        text.contains("promptgate_drift{prompt=\"chat\"} -1\n"),
        "{text}"
    );
    assert_eq!(p.terminate(), Some(0), "{}", p.stderr());
}

/// With the real model (SmolLM2 behind llama.cpp, started by
/// scripts/test.sh): English capital questions, then German cooking
/// questions, through serve. Serve's drift task and `promptgate drift`
/// both flag input and output language and content and not the
/// operational features that did not change; the HTML report's charts
/// parse as SVG (XML) with an independent parser. 30 + 30 calls of at
/// most 16 tokens: the model is slow on 2 cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_model_drifts_in_language_and_content_in_serve_and_the_cli() {
    use crate::support::python_with;
    use crate::support::serve::{CHAT_PROMPT, wait_status};
    use crate::support::test_llm_url;
    let (Some(url), Some(py)) = (test_llm_url(), python_with("xml.etree.ElementTree")) else {
        return;
    };
    let s = proxy_scaffold("openai", &url, "");
    s.write(
        "prompts/chat.yaml",
        &CHAT_PROMPT.replace(
            "model: small\n",
            "model: small\nparams:\n  temperature: 0\n  max_tokens: 16\n",
        ),
    );
    drift_section(
        &s,
        "drift:\n  reference: first:30\n  current: last:30\n  min_rows: 25\n",
    );
    s.commit("short answers, drift settings");
    let mut p = Proxy::start_with(&s.root(), &["--drift-interval-ms", "500"], &[]);
    for i in 0..30 {
        let c = COUNTRIES[i % COUNTRIES.len()];
        let ask_as = [
            "What is the capital of",
            "Which city is the capital of",
            "Name the capital city of",
        ];
        ask(&p, &format!("{} {c}?", ask_as[i / COUNTRIES.len()])).await;
    }
    for i in 0..30 {
        let d = DISHES[i % DISHES.len()];
        let ask_as = [
            "Wie kocht man",
            "Welche Zutaten braucht man für",
            "Wie lange backt man",
            "Was trinkt man zu",
            "Wer hat erfunden:",
        ];
        ask(&p, &format!("{} {d}?", ask_as[i / DISHES.len()])).await;
    }
    let must = [
        "input.input.language",
        "input.input.content",
        "output.language",
        "output.content",
    ];
    let unchanged = ["ops.error_rate", "ops.timeout_rate", "ops.upstream_model"];
    let chat_of = |result: &Value| -> Option<Value> {
        result["groups"]
            .as_array()?
            .iter()
            .find(|g| g["group"] == "chat" && g["current_calls"] == 30)
            .cloned()
    };
    let (st, ok) = wait_status(&p, std::time::Duration::from_secs(60), |s| {
        chat_of(&s["drift"]["last"]["result"]).is_some()
    })
    .await;
    assert!(ok, "{:#}", st["drift"]);
    let chat = chat_of(&st["drift"]["last"]["result"]).unwrap();
    assert_drifted(&chat, &must, &unchanged, "serve");
    assert_eq!(p.terminate(), Some(0), "{}", p.stderr());

    let html = s.root().join("drift.html");
    let o = s.run(&["drift", "--json", "--html", html.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let chat = chat_of(&report).unwrap();
    let cli_drifted = assert_drifted(&chat, &must, &unchanged, "cli");

    // Every chart is well-formed SVG holding drawn marks; the drifted
    // features each have their reference and current charts.
    let check = r#"
import re, sys, xml.etree.ElementTree as ET
page = open(sys.argv[1], encoding="utf-8").read()
svgs = re.findall(r"<svg\b.*?</svg>", page, re.S)
ns = "{http://www.w3.org/2000/svg}"
marks = 0
for s in svgs:
    root = ET.fromstring(s)
    assert root.tag in ("svg", ns + "svg"), root.tag
    marks += sum(1 for e in root.iter() if e.tag.replace(ns, "") in ("rect", "path", "line", "polyline"))
print(len(svgs), marks)
"#;
    let out = std::process::Command::new(&py)
        .args(["-c", check, html.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = counts
        .split_whitespace()
        .map(|n| n.parse::<usize>().unwrap());
    let (svgs, marks) = (it.next().unwrap(), it.next().unwrap());
    assert!(
        svgs >= 2 * cli_drifted.len(),
        "{svgs} charts for {cli_drifted:?}"
    );
    assert!(marks > svgs, "{marks} marks in {svgs} charts");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("input.input.language") && page.contains("output.content"));
}

/// Rewrites every request log file under `dir` (a requests folder or a
/// partition) without the write-time
/// length columns, as promptgate wrote them before those columns existed
/// (same rows, same file names, same key-value metadata).
fn strip_length_columns(dir: &Path) {
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::properties::WriterProperties;
    let derived = [
        promptgate::logstore::HISTORY_TURNS,
        promptgate::logstore::OUTPUT_CHARS,
        promptgate::logstore::OUTPUT_WORDS,
    ];
    let mut stripped = 0;
    for entry in walk(dir) {
        if entry.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&entry).unwrap()).unwrap();
        let kv = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned();
        let schema = builder.schema().clone();
        let keep: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !derived.contains(&schema.field(*i).name().as_str()))
            .collect();
        assert_eq!(keep.len() + 3, schema.fields().len(), "{}", entry.display());
        let batches: Vec<_> = builder
            .build()
            .unwrap()
            .map(|b| b.unwrap().project(&keep).unwrap())
            .collect();
        let tmp = entry.with_extension("tmp");
        let props = WriterProperties::builder()
            .set_key_value_metadata(kv)
            .build();
        let mut w = ArrowWriter::try_new(
            std::fs::File::create(&tmp).unwrap(),
            std::sync::Arc::new(schema.project(&keep).unwrap()),
            Some(props),
        )
        .unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
        std::fs::rename(&tmp, &entry).unwrap();
        stripped += 1;
    }
    assert!(stripped > 0, "no request files under {}", dir.display());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    for f in walk(from) {
        let target = to.join(f.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&f, &target).unwrap();
    }
}

/// Each feature of a `drift --json` report: what the table shows.
fn feature_lines(o: &std::process::Output) -> Vec<String> {
    let report: Value = serde_json::from_str(&stdout(o)).unwrap();
    report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["features"].as_array().unwrap().clone())
        .map(|f| {
            format!(
                "{} {} {} {} {} {} {}",
                f["name"],
                f["reference"],
                f["current"],
                f["effect"],
                f["p_value"],
                f["q_value"],
                f["verdict"]
            )
        })
        .collect()
}

/// Log roots written before the length columns existed, after, and mixed
/// (an old reference day, a new current day): drift reads the lengths from
/// the columns where they are and from the text where not, and the reports
/// are the same. DataFusion and pyarrow read both kinds of file.
#[test]
fn old_new_and_mixed_log_files_give_the_same_drift_report() {
    let s = Scaffold::new();
    drift_section(&s, "drift:\n  min_rows: 100\n");
    s.commit("drift settings");
    let new = s.dir.path().join("new");
    let mut rng = StdRng::seed_from_u64(14);
    let day1 = DateTime::parse_from_rfc3339("2026-11-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let day2 = day1 + Duration::days(1);
    let mut rows = Vec::new();
    let mut turns_of = std::collections::BTreeMap::new();
    for i in 0..600 {
        let current = i >= 300;
        let ts = if current { day2 } else { day1 } + Duration::seconds(i as i64);
        let mut r = row(&mut rng, i, ts, if current { 14 } else { 8 }, 500.0);
        // Longer conversations in the current day.
        let turns = rng.random_range(0..3) + usize::from(current) * 2;
        let mut messages = vec![json!({"role": "system", "content": "Answer briefly."})];
        for t in 0..turns {
            messages.push(json!({"role": "user", "content": format!("earlier question {t}")}));
            messages.push(json!({"role": "assistant", "content": format!("earlier answer {t}")}));
        }
        messages.push(json!({"role": "user", "content": "and now?"}));
        r.messages = Value::Array(messages).to_string();
        if i % 7 == 0 {
            r.output = "Entschuldigung, 日本 Tokyo — ça va?".into();
        }
        turns_of.insert(r.request_id.clone(), turns);
        rows.push(r);
    }
    write_rows(&new, rows);
    let old = s.dir.path().join("old");
    copy_dir(&new, &old);
    strip_length_columns(&old.join("requests"));
    let mixed = s.dir.path().join("mixed");
    copy_dir(&new, &mixed);
    strip_length_columns(&mixed.join("requests/date=2026-11-01"));

    let reports: Vec<Vec<String>> = [&new, &old, &mixed]
        .iter()
        .map(|root| {
            let o = drift_over(&s, &[root], &["--json"]);
            assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
            feature_lines(&o)
        })
        .collect();
    let turns_line = reports[0]
        .iter()
        .find(|l| l.starts_with("\"input.history_turns\""))
        .unwrap_or_else(|| panic!("{:?}", reports[0]));
    assert!(turns_line.ends_with("\"drift\""), "{turns_line}");
    assert!(reports[0].iter().any(|l| l.starts_with("\"output.words\"")));
    assert_eq!(reports[0], reports[1], "new files vs old files");
    assert_eq!(reports[0], reports[2], "new files vs a mixed root");

    // DataFusion over the mixed root: the old day's lengths are null.
    let o = s.run(&[
        "logs",
        "query",
        "SELECT date, count(*) AS calls, count(history_turns) AS with_turns, sum(history_turns) AS turns, min(output_words) AS min_words FROM requests GROUP BY date ORDER BY date",
        "--logs",
        mixed.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let by_day: Vec<Value> = serde_json::from_str(&stdout(&o)).unwrap();
    let expected_turns: usize = turns_of
        .iter()
        .filter(|(id, _)| id[4..].parse::<usize>().unwrap() >= 300)
        .map(|(_, t)| t)
        .sum();
    assert_eq!(by_day.len(), 2, "{by_day:?}");
    assert_eq!(
        (
            &by_day[0]["calls"],
            &by_day[0]["with_turns"],
            &by_day[0]["turns"]
        ),
        (&json!(300), &json!(0), &Value::Null),
        "{by_day:?}"
    );
    assert_eq!(
        (
            &by_day[1]["calls"],
            &by_day[1]["with_turns"],
            &by_day[1]["turns"]
        ),
        (&json!(300), &json!(300), &json!(expected_turns)),
        "{by_day:?}"
    );
    assert_eq!(by_day[1]["min_words"], json!(6), "{by_day:?}");

    // The independent reader, over the mixed root with the files' schemas
    // unified: the new columns with the same values, null in old files.
    if let Some(py) = crate::support::python_with_pyarrow() {
        let script = r#"
import glob, json, os, sys
import pyarrow as pa, pyarrow.dataset as ds, pyarrow.parquet as pq
files = sorted(glob.glob(os.path.join(sys.argv[1], "*", "*.parquet")))
schema = pa.unify_schemas([pq.read_schema(f) for f in files])
t = ds.dataset(files, schema=schema, format="parquet").to_table(
    columns=["request_id", "history_turns", "output_chars", "output_words", "output"])
print(json.dumps({"types": [str(t.schema.field(c).type) for c in ["history_turns", "output_chars", "output_words"]],
                  "rows": t.to_pylist()}))
"#;
        let o = std::process::Command::new(py)
            .args(["-c", script])
            .arg(mixed.join("requests"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["types"], json!(["uint32", "uint32", "uint32"]));
        let rows = v["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 600);
        for r in rows {
            let id = r["request_id"].as_str().unwrap();
            if id[4..].parse::<usize>().unwrap() < 300 {
                // The old day's file has no such columns.
                assert_eq!(
                    (&r["history_turns"], &r["output_chars"], &r["output_words"]),
                    (&Value::Null, &Value::Null, &Value::Null),
                    "{r}"
                );
                continue;
            }
            assert_eq!(r["history_turns"], json!(turns_of[id]), "{r}");
            let output = r["output"].as_str().unwrap();
            assert_eq!(r["output_chars"], json!(output.chars().count()), "{r}");
            let words = if output.starts_with("Entschuldigung") {
                // Entschuldigung, 日, 本, tokyo, ça, va
                6
            } else {
                output.split_whitespace().count()
            };
            assert_eq!(r["output_words"], json!(words), "{r}");
        }
    }
}
