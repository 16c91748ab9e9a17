//! The dashboard in headless Chromium (Debian's `chromium`, driven by npm
//! `playwright-core`; both installed by scripts/setup-browser.sh) against
//! `serve` with real traffic through `mock-llm` (a MOCK): the analyzer
//! rolls a failing canary back while the rollout page watches, then every
//! page is loaded and its figures compared with pyarrow's reading of the
//! Parquet logs and with `/metrics`. Screenshots of each page are kept in
//! target/ui-artifacts.

use std::path::{Path, PathBuf};
use std::process::Command;

use promptgate::mock_llm::{MockConfig, MockServer};
use serde_json::{Value, json};

use super::{HOSTILE, TOKEN, metric_sum, scaffold, start, traffic, wait_rows};
use crate::support::external::{external_tool, python_with_pyarrow};
use crate::support::serve::{commit_main, commit_on, log_dir, metrics, post};

const CANARY_BRANCH: &str = "prompt/capital-v2";

fn node_modules() -> Option<PathBuf> {
    let dir = std::env::var_os("PROMPTGATE_BROWSER_MODULES")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/promptgate-ci/browser/node_modules"))
        })?;
    let ok = Path::new("/usr/bin/chromium").exists()
        && dir.join("playwright-core/package.json").exists()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    external_tool(
        ok,
        "headless Chromium tests need /usr/bin/chromium, node and playwright-core: run scripts/setup-browser.sh",
    )
    .then_some(dir)
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs tests/it/ui/browser.js for `phase`; panics with its report.
fn run_browser(modules: &Path, url: &str, phase: &str, extra: Value) {
    let profile = tempfile::tempdir().unwrap();
    let mut cfg = json!({
        "phase": phase,
        "url": url,
        "token": TOKEN,
        "modules": modules,
        "artifacts": artifacts(),
        "profile": profile.path(),
    });
    if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/ui/browser.js");
    let o = Command::new("node")
        .arg(script)
        .env("PG_UI_TEST", cfg.to_string())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "browser phase {phase} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium_shows_the_logged_figures_and_the_rollback() {
    let Some(modules) = node_modules() else {
        return;
    };
    let Some(python) = python_with_pyarrow() else {
        return;
    };
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let s = scaffold(&m);
    // A canary whose longer question fails the online `max_length`.
    let base = std::fs::read_to_string(s.root().join("prompts/capital.yaml")).unwrap();
    let canary = base.replace(
        "What is the capital of {{ country }}?",
        "What is the capital of {{ country }}? Tell me about its history, culture and food.",
    );
    commit_on(
        &s.root(),
        CANARY_BRANCH,
        "main",
        &[("prompts/capital.yaml", &canary)],
        "capital v2",
    );
    commit_main(
        &s,
        &[(
            "rollout.yaml",
            &format!(
                "stable: refs/heads/main\ncanary:\n  ref: refs/heads/{CANARY_BRANCH}\n  weight: 50\n  prompts: [capital]\nanalysis:\n  min_requests: 20\n  checks:\n    - metric: online_pass_rate\n      max_drop: 0.05\n  on_regression: rollback\n  on_success: hold\n"
            ),
        )],
        "canary: capital v2 at 50%",
    );
    let mut p = start(&s, &["--analysis-interval-ms", "200"]);

    run_browser(&modules, &p.url, "rollback", json!({}));

    // After the rollback: the hostile call, and feedback on three calls.
    let ids = traffic(&p, &[HOSTILE.to_string()], 100_000).await;
    let text = metrics(&p).await;
    let total = metric_sum(&text, "promptgate_requests_total{") as usize;
    let rows = wait_rows(&s.root(), total);
    for (row, score) in rows.iter().zip([1.0, 0.0, 0.5]) {
        let (code, _, body) = post(
            &format!("{}/v1/feedback", p.url),
            &json!({"request_id": row.request_id, "score": score}),
        )
        .await;
        assert_eq!(code, 200, "{body}");
    }

    // Expected figures: the logs through pyarrow, the live ones from /metrics.
    let o = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/ui/expected_figures.py"))
        .arg(log_dir(&s.root()))
        .arg("0")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let groups: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        groups.as_array().unwrap().len(),
        2,
        "stable and canary: {groups}"
    );
    let text = metrics(&p).await;
    let live: Vec<Value> = ["stable", "canary"]
        .iter()
        .map(|v| {
            let labels = format!("{{prompt=\"capital\",variant=\"{v}\"");
            json!({
                "prompt": "capital",
                "variant": v,
                "requests": format!("{}", metric_sum(&text, &format!("promptgate_requests_total{labels}"))),
                "input_tokens": format!("{}", metric_sum(&text, &format!("promptgate_input_tokens_total{labels}}}"))),
                "output_tokens": format!("{}", metric_sum(&text, &format!("promptgate_output_tokens_total{labels}}}"))),
            })
        })
        .collect();

    run_browser(
        &modules,
        &p.url,
        "pages",
        json!({"expected": {"groups": groups, "live": live}, "hostileId": ids[0]}),
    );
    // The review form's label is in the queue's journal.
    let queue = promptgate::review::ReviewQueue::for_log_root(&log_dir(&s.root())).unwrap();
    let decided = queue.get(&ids[0]).unwrap().decision.unwrap();
    assert_eq!(
        decided.verdict,
        promptgate::review::Verdict::Label {
            label: "hostile".into()
        }
    );
    assert_eq!(p.terminate(), Some(0));
}
