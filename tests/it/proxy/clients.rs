//! The official OpenAI and Ollama Python clients, unchanged,
//! against `promptgate serve` (streaming and not, tool calls, JSON mode,
//! options), with `mock-llm` (a MOCK) speaking each upstream dialect, and
//! one run against the real llama.cpp server.

use std::path::Path;
use std::process::Command;

use promptgate::logstore::RequestStatus;
use promptgate::mock_llm::{MockConfig, MockServer};
use serde_json::{Value, json};

use crate::support::serve::{Proxy, log_rows, post, proxy_scaffold};
use crate::support::{python_with, test_llm_url};

fn run_script(py: &str, script: &str, base: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/python")
        .join(script);
    let out = Command::new(py).arg(&path).arg(base).output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_clients_work_unchanged_through_serve() {
    let (Some(py), Some(_)) = (python_with("openai"), python_with("ollama")) else {
        return;
    };
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    // Each upstream dialect, so both pass-through and conversion are used.
    for kind in ["openai", "ollama"] {
        let s = proxy_scaffold(kind, &m.url(), "");
        let mut p = Proxy::start(&s.root());
        let o = run_script(&py, "openai_client.py", &p.url);
        assert_eq!(o["plain"], "Q: hello openai", "{kind}: {o:#}");
        assert!(o["usage"][0].as_u64().unwrap() > 0, "{o:#}");
        assert_eq!(o["headers"]["x-promptgate-variant"], "stable");
        assert!(
            o["headers"]["x-promptgate-version"]
                .as_str()
                .unwrap()
                .contains(':')
        );
        assert_eq!(o["capital"], "What is the capital of France?");
        assert_eq!(o["stream"], "Q: stream me please", "{kind}");
        assert_eq!(
            o["tool"],
            json!(["get_weather", {"city": "Paris"}]),
            "{kind}"
        );
        assert_eq!(
            o["stream_tool"],
            json!(["get_weather", {"city": "Rome"}]),
            "{kind}"
        );
        assert_eq!(o["json"], json!({"answer": "json please"}), "{kind}");
        assert_eq!(
            o["models"],
            json!(["prompt:capital", "prompt:chat", "small"])
        );

        let o = run_script(&py, "ollama_client.py", &p.url);
        assert_eq!(o["plain"], "Q: hello ollama", "{kind}: {o:#}");
        assert!(o["counts"][1].as_u64().unwrap() > 0, "{o:#}");
        assert_eq!(o["stream"], "Q: stream me please", "{kind}");
        assert_eq!(o["generate"], "generate this", "{kind}");
        assert_eq!(o["generate_stream"], "gen stream", "{kind}");
        assert_eq!(
            o["tool"],
            json!(["get_weather", {"city": "Paris"}]),
            "{kind}"
        );
        assert_eq!(
            o["stream_tool"],
            json!(["get_weather", {"city": "Rome"}]),
            "{kind}"
        );
        assert_eq!(o["json"], json!({"answer": "json please"}), "{kind}");
        assert_eq!(
            o["models"],
            json!(["prompt:capital", "prompt:chat", "small"])
        );

        assert_eq!(p.terminate(), Some(0), "{}", p.stderr());
        let rows = log_rows(&s.root());
        assert_eq!(rows.len(), 6 + 7, "{kind}");
        assert!(
            rows.iter().all(|r| r.status == RequestStatus::Ok),
            "{rows:?}"
        );
        assert!(
            rows.iter()
                .filter(|r| r.stream)
                .all(|r| r.ttft_ms.is_some())
        );
        assert_eq!(rows.iter().filter(|r| r.stream).count(), 5);
        assert!(rows.iter().all(|r| r.upstream_model.starts_with("mock:")));
    }
}

/// SmolLM2 behind llama.cpp's OpenAI-compatible server (xllamacpp, started
/// by scripts/test.sh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_llm_through_serve() {
    let Some(url) = test_llm_url() else {
        return;
    };
    let s = proxy_scaffold("openai", &url, "");
    let mut p = Proxy::start(&s.root());
    let (code, _, body) = post(
        &format!("{}/v1/chat/completions", p.url),
        &json!({"model": "prompt:capital", "variables": {"country": "France"}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let answer = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(answer.contains("Paris"), "{answer}");
    // Streaming to an OpenAI client, usage asked for.
    let r = crate::support::http()
        .post(format!("{}/v1/chat/completions", p.url))
        .json(&json!({
            "model": "prompt:capital",
            "variables": {"country": "Germany"},
            "stream": true,
            "stream_options": {"include_usage": true},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sse = r.text().await.unwrap();
    assert!(sse.ends_with("data: [DONE]\n\n"), "{sse}");
    let chunks: Vec<Value> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(streamed.contains("Berlin"), "{sse}");
    let usage = &chunks.last().unwrap()["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0, "{sse}");
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0, "{sse}");
    // Streaming, converted to Ollama NDJSON for an Ollama client.
    let r = crate::support::http()
        .post(format!("{}/api/chat", p.url))
        .json(&json!({"model": "prompt:capital", "variables": {"country": "Italy"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() > 1, "{text}");
    let done = lines.last().unwrap();
    assert_eq!(done["done"], true);
    // serve asks the upstream for usage in the stream (OpenAI's
    // `stream_options.include_usage`) and passes it on in Ollama's counts.
    assert!(done["prompt_eval_count"].as_u64().unwrap() > 0, "{text}");
    assert!(done["eval_count"].as_u64().unwrap() > 0, "{text}");
    let streamed: String = lines
        .iter()
        .filter_map(|l| l["message"]["content"].as_str())
        .collect();
    assert!(streamed.contains("Rome"), "{streamed}");
    assert_eq!(p.terminate(), Some(0));
    let rows = log_rows(&s.root());
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter().all(|r| r.status == RequestStatus::Ok),
        "{rows:#?}"
    );
    // Usage is logged for every call, the streamed ones from the usage
    // chunk that `stream_options.include_usage` asks for.
    assert!(
        rows.iter()
            .all(|r| r.input_tokens > 0 && r.output_tokens > 0),
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .filter(|r| r.stream)
            .all(|r| r.ttft_ms.is_some())
    );
}
