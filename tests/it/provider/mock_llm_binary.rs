//! The real binary: `promptgate mock-llm --listen 127.0.0.1:0` prints its
//! address in the banner and answers.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;

#[tokio::test]
async fn mock_llm_binary_prints_banner_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, "- pattern: 'ping'\n  answer: pong\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["mock-llm", "--listen", "127.0.0.1:0", "--rules"])
        .arg(&rules)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let result = async move {
        assert!(
            line.starts_with("mock-llm (MOCK, not a real model) listening on http://"),
            "{line}"
        );
        let url = line.trim().rsplit(' ').next().unwrap().to_string();
        let v = crate::support::post_json(
            &format!("{url}/v1/chat/completions"),
            &json!({"model": "demo", "messages": [{"role": "user", "content": "ping?"}]}),
        )
        .await;
        assert_eq!(v["choices"][0]["message"]["content"], "pong");
        assert_eq!(v["model"], "mock:demo");
    };
    // Kill the child whether or not the assertions hold.
    let outcome = tokio::spawn(result).await;
    child.kill().unwrap();
    child.wait().unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[test]
fn mock_llm_binary_rejects_bad_quality() {
    let out = Command::new(env!("CARGO_BIN_EXE_promptgate"))
        .args(["mock-llm", "--listen", "127.0.0.1:0", "--quality", "1.5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--quality"), "{err}");
}
