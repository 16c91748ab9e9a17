//! The whole loop through the real `promptgate serve` binary in front of
//! `mock-llm` (a MOCK: it echoes the rendered user message): online
//! assertions score every answer, the analyzer task rolls back a canary
//! that fails them (a revert commit with the evidence) or promotes a
//! healthy one, the proxy reloads the commit by itself, and two replicas
//! cloned from one bare remote follow a rollback pushed by `canary analyze`.
//!
//! The scaffold's `capitals` suite marks `max_length: 60` and
//! `not_contains: "I'm sorry"` as online. The echo of the stable prompt
//! ("What is the capital of France?") passes; the regressing canary's
//! longer question fails `max_length`.

use std::path::Path;
use std::time::{Duration, Instant};

use git2::Repository;
use promptgate::logstore::Variant;
use promptgate::mock_llm::{MockConfig, MockServer};
use serde_json::{Value, json};

use crate::support::serve::{
    Proxy, commit_main, commit_on, header, log_rows, metrics, proxy_scaffold, status, wait_status,
};
use crate::support::{Scaffold, http, run_in, stderr, stdout};

const CANARY_BRANCH: &str = "prompt/capital-v2";
const COUNTRIES: &[&str] = &["France", "Japan", "Peru", "Kenya", "Norway", "Chile"];
/// Generous upper bound for the loop to act; the tests never assert speed.
const DEADLINE: Duration = Duration::from_secs(90);

/// The scaffold's capital prompt with another user message.
fn capital_prompt(root: &Path, user: &str) -> String {
    let base = std::fs::read_to_string(root.join("prompts/capital.yaml")).unwrap();
    base.replace("What is the capital of {{ country }}?", user)
}

fn rollout(on_success: &str, max_drop: f64) -> String {
    format!(
        "stable: refs/heads/main
canary:
  ref: refs/heads/{CANARY_BRANCH}
  weight: 50
  prompts: [capital]
analysis:
  min_requests: 20
  checks:
    - metric: online_pass_rate
      max_drop: {max_drop}
  on_regression: rollback
  on_success: {on_success}
"
    )
}

/// A scaffold served through `mock`, a canary branch whose capital prompt
/// asks `canary_user`, and a commit on main putting it live at 50%.
/// Returns the scaffold and the commit introducing the canary.
fn with_live_canary(
    mock: &MockServer,
    canary_user: &str,
    on_success: &str,
    max_drop: f64,
) -> (Scaffold, String) {
    let s = proxy_scaffold("openai", &mock.url(), "");
    commit_on(
        &s.root(),
        CANARY_BRANCH,
        "main",
        &[(
            "prompts/capital.yaml",
            &capital_prompt(&s.root(), canary_user),
        )],
        "capital v2",
    );
    let intro = commit_main(
        &s,
        &[("rollout.yaml", &rollout(on_success, max_drop))],
        "canary: capital v2 at 50%",
    );
    (s, intro)
}

/// Sends `n` capital requests (distinct users) and returns the variants
/// that served them.
async fn traffic(p: &Proxy, from: usize, n: usize) -> Vec<String> {
    let url = format!("{}/v1/chat/completions", p.url);
    let client = http();
    let calls = (from..from + n).map(|i| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client
                .post(&url)
                .json(&json!({
                    "model": "prompt:capital",
                    "variables": {"country": COUNTRIES[i % COUNTRIES.len()]},
                    "user": format!("user-{i}"),
                }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            header(r.headers(), "x-promptgate-variant")
        }
    });
    futures_util::future::join_all(calls).await
}

/// Sends traffic in batches until `/status` shows no canary; returns the
/// last status.
async fn traffic_until_no_canary(p: &Proxy) -> Value {
    let start = Instant::now();
    let mut sent = 0;
    loop {
        let st = status(p).await;
        if st["canary"].is_null() {
            return st;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the canary is still live after {sent} requests: {st:#}\n{}",
            p.stderr()
        );
        traffic(p, sent, 16).await;
        sent += 16;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn head_commit(root: &Path) -> git2::Oid {
    Repository::open(root)
        .unwrap()
        .revparse_single("refs/heads/main")
        .unwrap()
        .id()
}

fn message_of(root: &Path, oid: git2::Oid) -> String {
    let repo = Repository::open(root).unwrap();
    repo.find_commit(oid)
        .unwrap()
        .message()
        .unwrap()
        .to_string()
}

fn rollout_at_main(root: &Path) -> String {
    let repo = Repository::open(root).unwrap();
    let tree = repo
        .revparse_single("refs/heads/main")
        .unwrap()
        .peel_to_tree()
        .unwrap();
    let blob = repo
        .find_blob(tree.get_name("rollout.yaml").unwrap().id())
        .unwrap();
    String::from_utf8(blob.content().to_vec()).unwrap()
}

/// Whether rollout.yaml text has a (non-commented) canary block.
fn has_canary(rollout: &str) -> bool {
    rollout.lines().any(|l| l.starts_with("canary:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_reverts_a_canary_that_fails_online_assertions_by_itself() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let (s, intro) = with_live_canary(
        &m,
        "What is the capital of {{ country }}? Tell me about its history, culture and food.",
        "hold",
        0.05,
    );
    let mut p = Proxy::start_with(&s.root(), &["--analysis-interval-ms", "200"], &[]);
    let st = status(&p).await;
    assert_eq!(st["canary"]["weight"], 50.0, "{st}");
    assert_eq!(
        st["online"]["assertions"]["canary"]["capital"],
        json!(["max_length", "not_contains"]),
        "{st}"
    );

    let st = traffic_until_no_canary(&p).await;

    // The revert of the introducing commit, with the evidence, on main.
    let head = head_commit(&s.root());
    let msg = message_of(&s.root(), head);
    assert!(
        msg.starts_with("Revert \"canary: capital v2 at 50%\""),
        "{msg}"
    );
    assert!(msg.contains(&intro), "names the reverted commit: {msg}");
    assert!(msg.contains("online_pass_rate"), "{msg}");
    assert!(msg.contains("rollback"), "{msg}");
    assert!(!has_canary(&rollout_at_main(&s.root())));
    let last = &st["analysis"]["last_applied"];
    assert_eq!(last["applied"]["commit"], head.to_string(), "{st:#}");
    assert_eq!(last["report"]["decision"], "rollback", "{st:#}");
    assert_eq!(st["control_commit"], head.to_string());

    // Afterwards every request is served by stable.
    let variants = traffic(&p, 10_000, 40).await;
    assert!(variants.iter().all(|v| v == "stable"), "{variants:?}");

    // The verdicts are in the log and the aggregates: canary answers failed
    // max_length, stable ones passed.
    let text = metrics(&p).await;
    assert!(
        text.contains(
            "promptgate_canary_decisions_total{prompt=\"capital\",decision=\"rollback\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains(
        "promptgate_online_pass_total{prompt=\"capital\",variant=\"canary\",result=\"fail\"}"
    ));
    let counts = status(&p).await["online"]["counts"].clone();
    let rate = |variant: &str| {
        counts
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["prompt"] == "capital" && c["variant"] == variant)
            .map(|c| c["pass_rate"].as_f64().unwrap())
    };
    assert_eq!(rate("stable"), Some(1.0), "{counts}");
    assert_eq!(rate("canary"), Some(0.0), "{counts}");
    assert_eq!(p.terminate(), Some(0));
    let rows = log_rows(&s.root());
    let canary: Vec<_> = rows
        .iter()
        .filter(|r| r.variant == Variant::Canary)
        .collect();
    assert!(canary.len() >= 20, "{}", canary.len());
    for r in &canary {
        assert_eq!(r.online_pass, Some(false), "{}", r.output);
        let scores: Value = serde_json::from_str(&r.online_scores).unwrap();
        assert_eq!(scores, json!({"max_length": 0.0, "not_contains": 1.0}));
    }
    for r in rows.iter().filter(|r| r.variant == Variant::Stable) {
        assert_eq!(r.online_pass, Some(true), "{}", r.output);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_promotes_a_healthy_canary_by_itself() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let (s, _) = with_live_canary(&m, "Capital city of {{ country }}?", "promote", 0.2);
    let canary_commit = Repository::open(s.root())
        .unwrap()
        .revparse_single(&format!("refs/heads/{CANARY_BRANCH}"))
        .unwrap()
        .id()
        .to_string();
    let p = Proxy::start_with(&s.root(), &["--analysis-interval-ms", "200"], &[]);
    let st = traffic_until_no_canary(&p).await;

    let head = head_commit(&s.root());
    let msg = message_of(&s.root(), head);
    assert!(msg.contains("promote"), "{msg}");
    let rollout = rollout_at_main(&s.root());
    assert!(!has_canary(&rollout), "{rollout}");
    assert!(rollout.contains(&canary_commit), "stable moves: {rollout}");
    assert_eq!(st["stable"]["commit"], canary_commit, "{st:#}");
    assert_eq!(
        st["analysis"]["last_applied"]["report"]["decision"],
        "promote"
    );

    // Every request now gets the promoted prompt's answer.
    let (code, h, body) = crate::support::serve::post(
        &format!("{}/v1/chat/completions", p.url),
        &json!({"model": "prompt:capital", "variables": {"country": "Peru"}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(header(&h, "x-promptgate-variant"), "stable");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Capital city of Peru?"
    );
}

/// A bare remote with main and the canary branch of `s`, and two clones
/// with the canary branch as a local branch (as a deployment would).
fn replicas(s: &Scaffold, dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let bare = dir.join("remote.git");
    Repository::init_bare(&bare).unwrap();
    let git = promptgate::repo::GitRepo::open(&s.root()).unwrap();
    let canary = format!("refs/heads/{CANARY_BRANCH}");
    git.push(
        bare.to_str().unwrap(),
        &[
            "refs/heads/main:refs/heads/main".to_string(),
            format!("{canary}:{canary}"),
        ],
    )
    .unwrap();
    Repository::open_bare(&bare)
        .unwrap()
        .set_head("refs/heads/main")
        .unwrap();
    let clone = |name: &str| {
        let path = dir.join(name);
        let repo = Repository::clone(bare.to_str().unwrap(), &path).unwrap();
        let id = repo
            .revparse_single(&format!("refs/remotes/origin/{CANARY_BRANCH}"))
            .unwrap()
            .id();
        repo.reference(&canary, id, false, "test: local canary branch")
            .unwrap();
        path
    };
    (clone("replica-a"), clone("replica-b"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_follow_a_rollback_pushed_by_canary_analyze() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let (s, _) = with_live_canary(
        &m,
        "What is the capital of {{ country }}? Tell me about its history, culture and food.",
        "hold",
        0.05,
    );
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = replicas(&s, tmp.path());
    let args = [
        "--fetch",
        "origin",
        "--fetch-interval-ms",
        "200",
        "--no-analyzer",
    ];
    let pa = Proxy::start_with(&a, &args, &[]);
    let pb = Proxy::start_with(&b, &args, &[]);
    for p in [&pa, &pb] {
        assert_eq!(status(p).await["canary"]["weight"], 50.0);
    }
    let (la, lb) = (a.join(".promptgate/logs"), b.join(".promptgate/logs"));

    // Traffic on both replicas until the scheduled job's analysis over both
    // logs rolls back (exit 1 = rollback decided and applied).
    let start = Instant::now();
    let mut sent = 0;
    let mut rows_a;
    let out = loop {
        traffic(&pa, sent, 16).await;
        traffic(&pb, sent + 16, 16).await;
        sent += 32;
        // Both writers flush every 200 ms.
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Rows only grow: the analysis sees at least these of A.
        rows_a = log_rows(&a).len() as u64;
        let o = run_in(
            &a,
            &[
                "canary",
                "analyze",
                "--logs",
                la.to_str().unwrap(),
                lb.to_str().unwrap(),
                "--apply",
                "--push",
                "--json",
            ],
        );
        match o.status.code() {
            Some(1) => break o,
            Some(0) => {}
            c => panic!("canary analyze exited {c:?}: {}{}", stdout(&o), stderr(&o)),
        }
        assert!(start.elapsed() < DEADLINE, "no rollback after {sent}");
    };
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let revert = json["applied"]["commit"].as_str().unwrap().to_string();
    let p = &json["report"]["prompts"][0];
    assert!(
        p["stable_requests"].as_u64().unwrap() + p["canary_requests"].as_u64().unwrap() > rows_a,
        "both replicas' rows are analysed: {p}"
    );
    assert_eq!(
        json["pushed"][0],
        "refs/heads/main:refs/heads/main to origin"
    );

    // Both replicas reload it: A from its own commit, B by fetching.
    for (p, root) in [(&pa, &a), (&pb, &b)] {
        let (st, ok) = wait_status(p, DEADLINE, |st| st["canary"].is_null()).await;
        assert!(ok, "{st:#}\n{}", p.stderr());
        assert_eq!(st["control_commit"], revert.as_str());
        assert_eq!(head_commit(root).to_string(), revert);
        let variants = traffic(p, 50_000, 20).await;
        assert!(variants.iter().all(|v| v == "stable"), "{variants:?}");
    }
    // B's checkout moved with its branch (fast-forward, not a forced reset).
    assert!(!has_canary(
        &std::fs::read_to_string(b.join("rollout.yaml")).unwrap()
    ));
    let (st, _) = wait_status(&pb, DEADLINE, |st| !st["fetch"]["last"].is_null()).await;
    assert!(st["fetch"]["last"]["error"].is_null(), "{st:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_evidence_survives_a_restart_of_serve() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let (s, _) = with_live_canary(
        &m,
        "What is the capital of {{ country }}? Tell me about its history, culture and food.",
        "hold",
        0.05,
    );
    // First run: traffic only, no analysis.
    let mut p = Proxy::start_with(&s.root(), &["--no-analyzer"], &[]);
    let variants = traffic(&p, 0, 160).await;
    let canary = variants.iter().filter(|v| *v == "canary").count();
    assert!(canary >= 40, "{canary} canary requests");
    assert_eq!(p.terminate(), Some(0));
    let before = head_commit(&s.root());

    // Second run: no new traffic; the analyzer reads the first run's rows
    // back from Parquet and rolls back.
    let p = Proxy::start_with(&s.root(), &["--analysis-interval-ms", "200"], &[]);
    let (st, ok) = wait_status(&p, DEADLINE, |st| st["canary"].is_null()).await;
    assert!(ok, "{st:#}\n{}", p.stderr());
    let last = &st["analysis"]["last_applied"];
    assert_eq!(last["report"]["decision"], "rollback", "{st:#}");
    assert_eq!(last["rows"], 160, "{st:#}");
    let head = head_commit(&s.root());
    assert_ne!(head, before);
    assert!(message_of(&s.root(), head).starts_with("Revert \""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_judges_run_on_a_sample_and_row_assertions_are_skipped() {
    // The MOCK answers judge prompts with a passing score and echoes the rest.
    let m = MockServer::start(MockConfig {
        rules: promptgate::mock_llm::parse_rules(
            "- pattern: '^## Rubric'\n  answer: '{\"score\": 1, \"reason\": \"names a city\"}'\n",
        )
        .unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let s = proxy_scaffold("openai", &m.url(), "");
    let suite = s.read("evals/capitals.yaml").replace(
        "gates:",
        "  - type: llm_judge
    name: judged
    rubric: The answer is about a capital city.
    judge: small
    online: true
    sample_rate: 0.5
  - type: icontains
    name: expected_online
    value: \"{{ row.expected }}\"
    online: true
gates:",
    );
    commit_main(&s, &[("evals/capitals.yaml", &suite)], "online judge");
    let p = Proxy::start_with(&s.root(), &["--no-analyzer"], &[]);
    let st = status(&p).await;
    assert_eq!(
        st["online"]["assertions"]["stable"]["capital"],
        json!(["max_length", "not_contains", "judged"]),
        "{st}"
    );
    assert!(
        p.stderr()
            .contains("online assertion `expected_online` skipped"),
        "{}",
        p.stderr()
    );

    let url = format!("{}/v1/chat/completions", p.url);
    let mut sampled = 0;
    for i in 0..60 {
        let (code, h, body) = crate::support::serve::post(
            &url,
            &json!({"model": "prompt:capital", "variables": {"country": COUNTRIES[i % 6]}}),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let id = header(&h, "x-request-id");
        if promptgate::proxy::sampled(&id, "judged", 0.5) {
            sampled += 1;
        }
    }
    assert!((10..50).contains(&sampled), "{sampled}");
    // Every sampled answer is judged (pass) or, with every slot busy,
    // skipped; none is judged twice and none outside the sample.
    let count = |text: &str, result: &str| -> u64 {
        let key = format!(
            "promptgate_online_judge_total{{prompt=\"capital\",variant=\"stable\",assertion=\"judged\",result=\"{result}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .map_or(0, |v| v.parse().unwrap())
    };
    let start = Instant::now();
    let text = loop {
        let text = metrics(&p).await;
        if count(&text, "pass") + count(&text, "skipped") >= sampled || start.elapsed() > DEADLINE {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        count(&text, "pass") + count(&text, "skipped"),
        sampled,
        "{text}"
    );
    assert!(count(&text, "pass") > 0, "{text}");
    assert_eq!(count(&text, "fail") + count(&text, "error"), 0, "{text}");
}
