//! Issue 12, section 3: settings resolved once, the same way, by every
//! command. `serve` and the log readers (`logs query`, `logs compact`,
//! `canary status`) read the control ref's committed promptgate.yaml, so an
//! uncommitted edit cannot split them; a committed change of a reloadable
//! setting reaches the running proxy, one that needs a restart is shown as
//! pending at `/status`. The upstream is `mock-llm`: a mock, not a model.

use std::time::Duration;

use promptgate::mock_llm::{MockConfig, MockServer};
use serde_json::{Value, json};

use crate::support::serve::{
    Proxy, commit_main, header, log_dir, log_rows, post, proxy_scaffold, status, wait_status,
};
use crate::support::{Scaffold, stderr, stdout};

async fn mock() -> MockServer {
    MockServer::start(MockConfig::default()).await.unwrap()
}

/// One request to the `chat` prompt; returns its request id.
async fn ask(p: &Proxy, question: &str) -> String {
    let (code, h, body) = post(
        &format!("{}/v1/chat/completions", p.url),
        &json!({"model": "prompt:chat", "messages": [{"role": "user", "content": question}]}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    header(&h, "x-request-id")
}

/// `logs query --json` in the repository (extra args appended).
fn query(s: &Scaffold, env: &[(&str, &str)]) -> Vec<Value> {
    let mut cmd = std::process::Command::new(crate::support::bin());
    cmd.args(["logs", "query", "--json"]).current_dir(s.root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&o)))
        .as_array()
        .unwrap()
        .clone()
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect()
}

// Before: `logs` read logging.dir from the working tree, serve from the
// control ref, so an unsaved edit sent `logs query` to an empty folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncommitted_logging_dir_edit_does_not_split_serve_and_the_readers() {
    let m = mock().await;
    let s = proxy_scaffold("ollama", &m.url(), "");
    s.edit(
        "promptgate.yaml",
        "dir: .promptgate/logs",
        "dir: uncommitted-logs",
    );
    let mut p = Proxy::start(&s.root());
    let id = ask(&p, "where do you log?").await;
    assert_eq!(p.terminate(), Some(0), "{}", p.stderr());

    assert!(!s.path("uncommitted-logs").exists());
    assert_eq!(ids(&query(&s, &[])), vec![id.clone()]);
    let o = s.run(&["logs", "compact", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        report["recovery"].is_object(),
        "compact ran on serve's folder: {report:#}"
    );
    let o = s.run(&["canary", "status", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The working tree's promptgate.yaml is what `render --worktree` and
    // `validate` read: it is still the edited one.
    assert!(s.read("promptgate.yaml").contains("uncommitted-logs"));
    assert_eq!(log_rows(&s.root()).len(), 1);

    // The environment overrides the file for every command alike.
    let env = [("PROMPTGATE_LOG_DIR", "env-logs")];
    let mut p = Proxy::start_with(&s.root(), &[], &env);
    let id2 = ask(&p, "and now?").await;
    assert_eq!(p.terminate(), Some(0), "{}", p.stderr());
    assert!(s.path("env-logs/requests").is_dir());
    assert_eq!(ids(&query(&s, &env)), vec![id2]);
    assert_eq!(ids(&query(&s, &[])), vec![id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_settings_reload_into_the_running_proxy_or_wait_for_a_restart() {
    let m = mock().await;
    let s = proxy_scaffold("ollama", &m.url(), "");
    // An hour between flushes, nothing in the way of the request body.
    let config = s
        .read("promptgate.yaml")
        .replace("flush_interval_ms: 200", "flush_interval_ms: 3600000");
    commit_main(&s, &[("promptgate.yaml", &config)], "Flush once an hour");
    // No analyzer: its rounds flush the log.
    let mut p = Proxy::start_with(&s.root(), &["--no-analyzer"], &[]);
    let st = status(&p).await;
    assert_eq!(st["settings"]["logging"]["flush_interval_ms"], 3_600_000);
    assert_eq!(st["settings"]["pending_restart"], json!([]));
    let generation = st["generation"].as_u64().unwrap();

    ask(&p, "buffered?").await;
    let (st, ok) = wait_status(&p, Duration::from_secs(30), |s| {
        s["log"]["buffered_rows"] == 1
    })
    .await;
    assert!(ok, "{st:#}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status(&p).await["log"]["rows_written"], 0);

    // A committed flush interval reaches the running writer: the buffered
    // row is written without waiting out the hour. A body limit and a log
    // folder change in the same commit: the limit applies at once, the
    // folder waits for a restart (and says so), the listen address is
    // pinned by --listen and so is not pending.
    let config = config
        .replace("flush_interval_ms: 3600000", "flush_interval_ms: 100")
        .replace("dir: .promptgate/logs", "dir: moved-logs")
        .replace(
            "  listen: 127.0.0.1:8787\n",
            "  listen: 127.0.0.1:9\n  max_body_bytes: 300\n",
        );
    let commit = commit_main(
        &s,
        &[("promptgate.yaml", &config)],
        "Flush often, move logs",
    );
    let (st, ok) = wait_status(&p, Duration::from_secs(30), |s| {
        s["generation"].as_u64() > Some(generation) && s["log"]["rows_written"] == 1
    })
    .await;
    assert!(ok, "{st:#}\n{}", p.stderr());
    let settings = &st["settings"];
    assert_eq!(settings["commit"], commit);
    assert_eq!(settings["logging"]["flush_interval_ms"], 100);
    assert_eq!(settings["server"]["max_body_bytes"], 300);
    let pending = settings["pending_restart"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{settings:#}");
    assert_eq!(pending[0]["setting"], "logging.dir");
    assert!(
        pending[0]["committed"]
            .as_str()
            .unwrap()
            .ends_with("moved-logs"),
        "{settings:#}"
    );
    assert_eq!(log_rows(&s.root()).len(), 1);

    let (code, _, body) = post(
        &format!("{}/v1/chat/completions", p.url),
        &json!({"model": "prompt:chat", "messages": [{"role": "user", "content": "x".repeat(400)}]}),
    )
    .await;
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("max_body_bytes (300 bytes)"), "{body}");

    // Until the restart, rows still go where serve started writing.
    ask(&p, "still here?").await;
    assert_eq!(p.terminate(), Some(0), "{}", p.stderr());
    assert_eq!(log_rows(&s.root()).len(), 2);
    assert!(log_dir(&s.root()).is_dir());
    assert!(!s.path("moved-logs").exists());
}

#[test]
fn work_in_progress_commands_read_the_working_tree_and_the_others_a_commit() {
    let s = Scaffold::new();
    s.edit(
        "prompts/capital.yaml",
        "What is the capital of {{ country }}?",
        "Name the capital of {{ country }}.",
    );
    let content = |args: &[&str]| -> Value {
        let mut all = vec!["render", "capital", "--var", "country=Chile", "--json"];
        all.extend_from_slice(args);
        let o = s.run(&all);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["messages"][1]["content"].clone()
    };
    assert_eq!(content(&[]), "What is the capital of Chile?");
    assert_eq!(content(&["--worktree"]), "Name the capital of Chile.");
    assert_eq!(content(&["--ref", "HEAD"]), "What is the capital of Chile?");

    // An invalid working-tree promptgate.yaml: validate (the working tree)
    // reports it, validate --ref HEAD and the production readers do not see it.
    s.edit("promptgate.yaml", "version: 1", "version: 1\nbogus: true");
    let o = s.run(&["validate"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("bogus"), "{}", stderr(&o));
    let o = s.run(&["validate", "--ref", "HEAD"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = s.run(&["logs", "query"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = s.run(&["render", "capital", "--var", "country=Chile", "--worktree"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("working tree"), "{}", stderr(&o));
}
