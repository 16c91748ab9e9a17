//! `promptgate canary status|analyze` on real git repositories with real
//! Parquet request logs written by `RequestLogger`: rollback by revert (and
//! by removal when the revert conflicts), promotion in both modes, step
//! advance, alert mode, and a rollback pushed to a bare remote shared by two
//! replicas.

use std::path::{Path, PathBuf};

use chrono::{Duration, Utc};
use git2::{Repository, Signature, Time};
use promptgate::logstore::{RequestLogRow, RequestStatus, Variant};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::support::logs::write_rows;
use crate::support::{Scaffold, one_shot_server, run_in, stderr, stdout};

const CANARY_REF: &str = "refs/heads/prompt/capital-v2";

/// Commits the working tree on HEAD with a commit time `age_s` seconds ago,
/// so log rows can be placed after it and before any commit made now.
fn commit_aged(root: &Path, message: &str, age_s: i64) -> String {
    let repo = Repository::open(root).unwrap();
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let when = Time::new(Utc::now().timestamp() - age_s, 0);
    let sig = Signature::new("Test", "test@example.com", &when).unwrap();
    let parent = repo.head().unwrap().peel_to_commit().unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &[&parent])
        .unwrap()
        .to_string()
}

/// A canary branch one commit ahead of HEAD (a changed prompt), made
/// without touching the working tree.
fn make_canary_branch(root: &Path, name: &str) -> String {
    let repo = Repository::open(root).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    let text = std::fs::read_to_string(root.join("prompts/capital.yaml")).unwrap();
    let text = text.replace(
        "Answer with the city name only.",
        "Reply with the city only.",
    );
    let blob = repo.blob(text.as_bytes()).unwrap();
    let mut b = git2::build::TreeUpdateBuilder::new();
    b.upsert("prompts/capital.yaml", blob, git2::FileMode::Blob);
    let tree = repo
        .find_tree(b.create_updated(&repo, &head.tree().unwrap()).unwrap())
        .unwrap();
    let when = Time::new(Utc::now().timestamp() - 7200, 0);
    let sig = Signature::new("Test", "test@example.com", &when).unwrap();
    repo.commit(Some(name), &sig, &sig, "capital v2", &tree, &[&head])
        .unwrap()
        .to_string()
}

struct Traffic {
    rows: usize,
    canary_weight: f64,
    stable_pass: f64,
    canary_pass: f64,
    seed: u64,
}

/// Synthetic proxy rows of prompt `capital`: a known pass rate per variant,
/// spread over the half hour before now.
fn synthetic_rows(t: &Traffic) -> Vec<RequestLogRow> {
    let mut rng = StdRng::seed_from_u64(t.seed);
    let start = Utc::now() - Duration::minutes(30);
    (0..t.rows)
        .map(|i| {
            let mut r = RequestLogRow::new(
                format!("req-{}-{i:06}", t.seed),
                start + Duration::milliseconds(i as i64 * 100),
            );
            let canary = rng.random_bool(t.canary_weight);
            r.prompt_id = Some("capital".into());
            r.variant = if canary {
                Variant::Canary
            } else {
                Variant::Stable
            };
            r.commit = if canary {
                "c".repeat(40)
            } else {
                "a".repeat(40)
            };
            r.model = "small".into();
            r.upstream_model = "mock".into();
            r.status = RequestStatus::Ok;
            r.http_status = 200;
            r.latency_ms = 100.0 + rng.random::<f64>() * 50.0;
            let p = if canary { t.canary_pass } else { t.stable_pass };
            r.online_pass = Some(rng.random_bool(p));
            r
        })
        .collect()
}

fn rollout_with_canary(extra_canary: &str, analysis: &str) -> String {
    format!(
        "stable: refs/heads/main\ncanary:\n  ref: {CANARY_REF}\n  weight: 10 # percent\n  prompts: [capital]\n{extra_canary}\n# the rules\nanalysis:\n  min_requests: 100\n  checks:\n    - metric: online_pass_rate\n      max_drop: 0.03\n{analysis}"
    )
}

/// A scaffold with a canary branch and a commit (an hour ago) putting it in
/// rollout.yaml; returns the introducing commit.
fn with_canary(s: &Scaffold, extra_canary: &str, analysis: &str) -> String {
    make_canary_branch(&s.root(), CANARY_REF);
    s.write("rollout.yaml", &rollout_with_canary(extra_canary, analysis));
    commit_aged(&s.root(), "canary: capital v2 at 10%", 3600)
}

/// `canary analyze --logs LOGS --apply EXTRA...` in the scaffold.
fn analyze_apply(s: &Scaffold, logs: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "canary",
        "analyze",
        "--logs",
        logs.to_str().unwrap(),
        "--apply",
    ];
    args.extend_from_slice(extra);
    s.run(&args)
}

fn head_message(root: &Path) -> String {
    let repo = Repository::open(root).unwrap();
    let c = repo.head().unwrap().peel_to_commit().unwrap();
    c.message().unwrap().to_string()
}

fn file_at_head(root: &Path, path: &str) -> String {
    let repo = Repository::open(root).unwrap();
    let tree = repo.head().unwrap().peel_to_tree().unwrap();
    let entry = tree.get_path(Path::new(path)).unwrap();
    let blob = repo.find_blob(entry.id()).unwrap();
    String::from_utf8(blob.content().to_vec()).unwrap()
}

/// The user's checkout shows rollout.yaml unchanged against HEAD (working
/// tree and index).
fn assert_rollout_clean(root: &Path) {
    let repo = Repository::open(root).unwrap();
    let st = repo.status_file(Path::new("rollout.yaml")).unwrap();
    assert_eq!(st, git2::Status::CURRENT, "rollout.yaml status {st:?}");
    assert_eq!(
        std::fs::read_to_string(root.join("rollout.yaml")).unwrap(),
        file_at_head(root, "rollout.yaml")
    );
}

fn logs_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("logs");
    (d, p)
}

fn regressing() -> Traffic {
    Traffic {
        rows: 8000,
        canary_weight: 0.1,
        stable_pass: 0.9,
        canary_pass: 0.7,
        seed: 1,
    }
}

fn healthy(seed: u64) -> Traffic {
    Traffic {
        rows: 12_000,
        canary_weight: 0.5,
        stable_pass: 0.9,
        canary_pass: 0.91,
        seed,
    }
}

#[test]
fn regressing_canary_is_rolled_back_by_a_revert_commit_with_the_evidence() {
    let s = Scaffold::new();
    let intro = with_canary(
        &s,
        "",
        "  author:\n    name: Canary Bot\n    email: bot@example.com\n",
    );
    let (_t, logs) = logs_dir();
    write_rows(&logs, synthetic_rows(&regressing()));
    let logs_s = logs.to_str().unwrap();

    let status = s.run(&["canary", "status", "--logs", logs_s]);
    assert_eq!(status.status.code(), Some(1), "{}", stderr(&status));
    let table = stdout(&status);
    assert!(
        table.contains("online_pass_rate") && table.contains("WORSE"),
        "{table}"
    );
    assert!(table.contains("decision: rollback"), "{table}");

    let o = analyze_apply(&s, &logs, &[]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let msg = head_message(&s.root());
    assert!(
        msg.starts_with("Revert \"canary: capital v2 at 10%\""),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("This reverts commit {intro}.")),
        "{msg}"
    );
    assert!(
        msg.contains("online_pass_rate") && msg.contains("p worse"),
        "{msg}"
    );
    let repo = Repository::open(s.root()).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    assert_eq!(head.author().name().ok(), Some("Canary Bot"));
    assert_eq!(head.author().email().ok(), Some("bot@example.com"));
    // The revert restores the scaffold's rollout.yaml: no canary.
    let after = file_at_head(&s.root(), "rollout.yaml");
    assert!(!after.lines().any(|l| l.starts_with("canary:")), "{after}");
    assert_rollout_clean(&s.root());

    // `git log` (the real git, when installed) shows the revert.
    if let Ok(log) = std::process::Command::new("git")
        .args(["log", "-1", "--format=%s"])
        .current_dir(s.root())
        .output()
    {
        assert!(String::from_utf8_lossy(&log.stdout).starts_with("Revert"));
    }

    // Nothing left to do.
    let again = analyze_apply(&s, &logs, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(stdout(&again).contains("no canary"), "{}", stdout(&again));
}

#[test]
fn conflicting_history_falls_back_to_a_commit_removing_the_canary() {
    let s = Scaffold::new();
    with_canary(&s, "", "");
    // A later edit of the same lines: the revert of the introduction conflicts.
    s.edit(
        "rollout.yaml",
        "weight: 10 # percent",
        "weight: 20 # percent",
    );
    commit_aged(&s.root(), "canary: 20%", 3500);
    let (_t, logs) = logs_dir();
    write_rows(&logs, synthetic_rows(&regressing()));

    let o = analyze_apply(&s, &logs, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["report"]["decision"], "rollback");
    assert!(
        json["applied"]["method"]
            .as_str()
            .unwrap()
            .contains("does not apply cleanly"),
        "{json}"
    );
    let msg = head_message(&s.root());
    assert!(
        msg.starts_with("promptgate: roll back canary refs/heads/prompt/capital-v2 (remove it"),
        "{msg}"
    );
    assert!(msg.contains("WORSE"), "{msg}");
    let after = file_at_head(&s.root(), "rollout.yaml");
    assert_eq!(
        after,
        "stable: refs/heads/main\n\n# the rules\nanalysis:\n  min_requests: 100\n  checks:\n    - metric: online_pass_rate\n      max_drop: 0.03\n"
    );
    assert_rollout_clean(&s.root());
}

#[test]
fn healthy_canary_is_promoted_by_a_rollout_edit() {
    let s = Scaffold::new();
    with_canary(&s, "", "  on_success: promote\n");
    let canary_commit = Repository::open(s.root())
        .unwrap()
        .revparse_single(CANARY_REF)
        .unwrap()
        .id()
        .to_string();
    let (_t, logs) = logs_dir();
    write_rows(&logs, synthetic_rows(&healthy(2)));
    let o = analyze_apply(&s, &logs, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("decision: promote"), "{}", stdout(&o));
    let msg = head_message(&s.root());
    assert!(
        msg.starts_with("promptgate: promote canary refs/heads/prompt/capital-v2"),
        "{msg}"
    );
    let after = file_at_head(&s.root(), "rollout.yaml");
    assert!(
        after.starts_with(&format!("stable: \"{canary_commit}\"\n")),
        "{after}"
    );
    assert!(!after.contains("canary:"), "{after}");
    assert!(after.contains("# the rules\n"), "comments kept: {after}");
    assert_rollout_clean(&s.root());
}

#[test]
fn healthy_canary_is_promoted_by_fast_forwarding_the_stable_branch() {
    let s = Scaffold::new();
    let repo = Repository::open(s.root()).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    repo.branch("stable", &head, false).unwrap();
    let text = rollout_with_canary("", "  on_success: promote\n  promote_mode: fast_forward\n")
        .replace("stable: refs/heads/main", "stable: refs/heads/stable");
    make_canary_branch(&s.root(), CANARY_REF);
    s.write("rollout.yaml", &text);
    commit_aged(&s.root(), "canary on stable branch", 3600);
    let canary_commit = repo.revparse_single(CANARY_REF).unwrap().id();
    let (_t, logs) = logs_dir();
    write_rows(&logs, synthetic_rows(&healthy(3)));

    let o = analyze_apply(&s, &logs, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        repo.revparse_single("refs/heads/stable").unwrap().id(),
        canary_commit
    );
    let after = file_at_head(&s.root(), "rollout.yaml");
    assert!(after.starts_with("stable: refs/heads/stable\n"), "{after}");
    assert!(!after.contains("canary:"), "{after}");
    assert!(head_message(&s.root()).contains("refs/heads/stable fast-forwarded to"));
    assert_rollout_clean(&s.root());
}

#[test]
fn healthy_step_advances_the_weight_and_restarts_the_window() {
    let s = Scaffold::new();
    with_canary(&s, "  steps: [10, 25, 50]\n", "  on_success: promote\n");
    let (_t, logs) = logs_dir();
    write_rows(&logs, synthetic_rows(&healthy(4)));
    let o = analyze_apply(&s, &logs, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("advance weight 10% -> 25%"),
        "{}",
        stdout(&o)
    );
    let after = file_at_head(&s.root(), "rollout.yaml");
    assert!(after.contains("  weight: 25 # percent\n"), "{after}");
    assert!(
        head_message(&s.root())
            .starts_with("promptgate: canary refs/heads/prompt/capital-v2 step 10% -> 25%")
    );
    assert_rollout_clean(&s.root());

    // The 25% step is judged on rows served since it was committed: none yet.
    let o = analyze_apply(&s, &logs, &["--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["report"]["decision"], "continue", "{json}");
    assert!(json.get("applied").is_none());
}

#[test]
fn alert_mode_makes_no_commit_and_posts_the_webhook() {
    let s = Scaffold::new();
    let (url, server) = one_shot_server();
    let intro = with_canary(
        &s,
        "",
        &format!("  on_regression: alert\n  webhook: {url}\n"),
    );
    let (_t, logs) = logs_dir();
    write_rows(&logs, synthetic_rows(&regressing()));
    let o = analyze_apply(&s, &logs, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("ALERT: canary regression"), "{out}");
    assert!(out.contains(&format!("webhook {url} notified")), "{out}");
    assert_eq!(s.head_commit(), intro, "alert mode must not commit");
    let request = server.join().unwrap();
    assert!(request.starts_with("POST /hook"), "{request}");
    assert!(request.contains("\"decision\":\"rollback\""), "{request}");
}

#[test]
fn rollback_over_two_replicas_logs_is_pushed_to_the_bare_remote() {
    let s = Scaffold::new();
    with_canary(&s, "", "");
    let tmp = tempfile::tempdir().unwrap();
    let bare = tmp.path().join("remote.git");
    Repository::init_bare(&bare).unwrap();
    let git = promptgate::repo::GitRepo::open(&s.root()).unwrap();
    git.push(
        bare.to_str().unwrap(),
        &["refs/heads/main:refs/heads/main".to_string()],
    )
    .unwrap();
    // Point the bare repo's HEAD at main so clones check it out.
    Repository::open_bare(&bare)
        .unwrap()
        .set_head("refs/heads/main")
        .unwrap();
    let a = tmp.path().join("replica-a");
    let b = tmp.path().join("replica-b");
    Repository::clone(bare.to_str().unwrap(), &a).unwrap();
    Repository::clone(bare.to_str().unwrap(), &b).unwrap();
    let before = Repository::open(&b)
        .unwrap()
        .head()
        .unwrap()
        .peel_to_commit()
        .unwrap()
        .id();

    // Each replica logged half of the traffic.
    let rows = synthetic_rows(&regressing());
    let (ra, rb): (Vec<_>, Vec<_>) = rows.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let (la, lb) = (tmp.path().join("logs-a"), tmp.path().join("logs-b"));
    write_rows(&la, ra.into_iter().map(|(_, r)| r).collect());
    write_rows(&lb, rb.into_iter().map(|(_, r)| r).collect());

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
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let p = &json["report"]["prompts"][0];
    assert_eq!(
        p["stable_requests"].as_u64().unwrap() + p["canary_requests"].as_u64().unwrap(),
        8000,
        "both replicas' rows are analysed"
    );
    let revert = json["applied"]["commit"].as_str().unwrap().to_string();
    assert_eq!(
        json["pushed"][0],
        "refs/heads/main:refs/heads/main to origin"
    );

    let remote_main = Repository::open_bare(&bare)
        .unwrap()
        .revparse_single("refs/heads/main")
        .unwrap()
        .id()
        .to_string();
    assert_eq!(remote_main, revert);

    // The other replica fetches it (reloading it is the proxy's job).
    let rb_repo = Repository::open(&b).unwrap();
    rb_repo
        .find_remote("origin")
        .unwrap()
        .fetch(&["refs/heads/main:refs/remotes/origin/main"], None, None)
        .unwrap();
    let fetched = rb_repo.revparse_single("refs/remotes/origin/main").unwrap();
    assert_eq!(fetched.id().to_string(), revert);
    let c = fetched.peel_to_commit().unwrap();
    assert_eq!(c.parent_id(0).unwrap(), before);
    assert!(c.message().unwrap().starts_with("Revert \""));
    assert!(c.message().unwrap().contains("online_pass_rate"));
}

#[test]
fn unreadable_logs_exit_2() {
    let s = Scaffold::new();
    with_canary(&s, "", "");
    let o = s.run(&[
        "canary",
        "analyze",
        "--logs",
        "/nonexistent/promptgate-logs",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no such log folder"), "{}", stderr(&o));
}

#[test]
fn a_check_with_the_wrong_limit_is_named() {
    let s = Scaffold::new();
    with_canary(&s, "", "    - metric: error_rate\n      max_drop: 0.1\n");
    let (_t, logs) = logs_dir();
    write_rows(&logs, synthetic_rows(&regressing()));
    let o = s.run(&["canary", "status", "--logs", logs.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("analysis.checks[1]: error_rate takes exactly one limit: max_increase"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn local_edits_to_rollout_yaml_survive_a_rollback() {
    let s = Scaffold::new();
    with_canary(&s, "", "");
    // Uncommitted work in the checkout: the proxy never serves it, and the
    // rollback commit must not overwrite it.
    s.edit("rollout.yaml", "min_requests: 100", "min_requests: 150");
    let (_t, logs) = logs_dir();
    write_rows(&logs, synthetic_rows(&regressing()));
    let o = analyze_apply(&s, &logs, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("note: working tree not updated"),
        "{}",
        stdout(&o)
    );
    assert!(head_message(&s.root()).starts_with("Revert \""));
    assert!(s.read("rollout.yaml").contains("min_requests: 150"));
    assert!(!file_at_head(&s.root(), "rollout.yaml").contains("min_requests: 150"));
}

#[test]
fn status_without_a_canary_or_logs_has_nothing_to_do() {
    let s = Scaffold::new();
    let o = s.run(&["canary", "status"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("decision: no canary — rollout.yaml has no canary"),
        "{}",
        stdout(&o)
    );
}
