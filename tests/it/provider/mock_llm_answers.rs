//! Both providers against the in-process `mock-llm`: answers, streaming,
//! tokens, cost, tool calls, JSON mode, injected errors, concurrency.

use std::time::Duration;

use futures_util::StreamExt;
use promptgate::mock_llm::{MockConfig, MockServer, parse_rules};
use promptgate::provider::{ChatEvent, ErrorKind, ModelClient};
use serde_json::{Value, json};

use crate::support::upstream::{client, config, params, user};
use crate::support::{get_json, post_json};

const RULES: &str = r#"
- pattern: 'capital of (?P<country>\w+)'
  answer: 'The capital of ${country} is Paris.'
- pattern: '(\d+) plus (\d+)'
  answer: '$1 + $2'
"#;

async fn mock(cfg: MockConfig) -> MockServer {
    MockServer::start(cfg).await.unwrap()
}

fn with_rules() -> MockConfig {
    MockConfig {
        rules: parse_rules(RULES).unwrap(),
        ..MockConfig::default()
    }
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }}])
}

#[tokio::test]
async fn both_dialects_answer_from_rules_with_tokens_and_cost() {
    let srv = mock(with_rules()).await;
    for kind in ["ollama", "openai"] {
        let c = client(kind, &srv.url());
        let msgs = vec![
            json!({"role": "system", "content": "Be brief."}),
            json!({"role": "user", "content": "What is the capital of France?"}),
        ];
        let out = c.chat(&msgs, &params(json!({}))).await.unwrap();
        assert_eq!(out.content, "The capital of France is Paris.", "{kind}");
        // Whitespace words: 2 (system) + 6 (user) in, 6 out.
        assert_eq!((out.input_tokens, out.output_tokens), (8, 6), "{kind}");
        assert_eq!(out.model, "mock:test-model", "{kind}");
        // Price: 1 per input token, 2 per output token.
        assert!((out.cost - 20.0).abs() < 1e-9, "{kind}: {}", out.cost);
        assert_eq!(out.ttft_ms, None);
    }
}

#[tokio::test]
async fn no_rule_match_echoes_the_last_user_message() {
    let srv = mock(with_rules()).await;
    for kind in ["ollama", "openai"] {
        let msgs = vec![
            json!({"role": "user", "content": "first"}),
            json!({"role": "assistant", "content": "ok"}),
            json!({"role": "user", "content": "say  this back"}),
        ];
        let out = client(kind, &srv.url())
            .chat(&msgs, &params(json!({})))
            .await
            .unwrap();
        assert_eq!(out.content, "say  this back", "{kind}");
    }
}

#[tokio::test]
async fn streaming_gives_the_same_answer_in_several_chunks() {
    let srv = mock(MockConfig {
        token_delay: Duration::from_millis(5),
        ..with_rules()
    })
    .await;
    for kind in ["ollama", "openai"] {
        let c = client(kind, &srv.url());
        let q = user("capital of Spain please");
        let whole = c.chat(&q, &params(json!({}))).await.unwrap();
        let mut stream = c.chat_stream(&q, &params(json!({}))).await.unwrap();
        let mut pieces = Vec::new();
        let mut done = None;
        while let Some(ev) = stream.next().await {
            match ev.unwrap() {
                ChatEvent::Content(s) => pieces.push(s),
                ChatEvent::Done { usage, .. } => done = usage,
                ChatEvent::ToolCall(_) => panic!("no tool call expected"),
            }
        }
        assert!(pieces.len() >= 6, "{kind}: {pieces:?}");
        assert_eq!(pieces.concat(), whole.content, "{kind}");
        let usage = done.unwrap();
        assert_eq!(usage.input_tokens, whole.input_tokens, "{kind}");
        assert_eq!(usage.output_tokens, whole.output_tokens, "{kind}");
        let streamed = c.chat_streamed(&q, &params(json!({}))).await.unwrap();
        assert_eq!(streamed.content, whole.content);
        assert!(streamed.ttft_ms.unwrap() <= streamed.latency_ms);
        // Six chunks 5 ms apart.
        assert!(streamed.latency_ms >= 25, "{kind}: {}", streamed.latency_ms);
    }
}

#[tokio::test]
async fn tool_calls_survive_both_dialects_streaming_and_not() {
    let srv = mock(with_rules()).await;
    for kind in ["ollama", "openai"] {
        let c = client(kind, &srv.url());
        let p = params(json!({"tools": weather_tool()}));
        let q = user(r#"please call get_weather {"city": "Paris"}"#);
        for streamed in [false, true] {
            let out = if streamed {
                c.chat_streamed(&q, &p).await.unwrap()
            } else {
                c.chat(&q, &p).await.unwrap()
            };
            assert_eq!(out.tool_calls.len(), 1, "{kind} streamed={streamed}");
            assert_eq!(out.tool_calls[0].name, "get_weather");
            assert_eq!(out.tool_calls[0].arguments, json!({"city": "Paris"}));
            assert_eq!(out.content, "");
        }
        // Without tools in the request the same message is just text.
        let plain = c.chat(&q, &params(json!({}))).await.unwrap();
        assert!(plain.tool_calls.is_empty());
    }
}

#[tokio::test]
async fn json_mode_returns_json_in_both_dialects() {
    let srv = mock(with_rules()).await;
    let cases = [
        ("ollama", json!({"format": "json"})),
        (
            "openai",
            json!({"response_format": {"type": "json_object"}}),
        ),
        // Translated across dialects: OpenAI's response_format to an Ollama upstream.
        (
            "ollama",
            json!({"response_format": {"type": "json_object"}}),
        ),
        ("openai", json!({"format": "json"})),
    ];
    for (kind, p) in cases {
        let out = client(kind, &srv.url())
            .chat(&user("capital of Italy"), &params(p.clone()))
            .await
            .unwrap();
        let v: Value =
            serde_json::from_str(&out.content).unwrap_or_else(|e| panic!("{kind} {p}: {e}"));
        assert_eq!(v, json!({"answer": "The capital of Italy is Paris."}));
    }
}

#[tokio::test]
async fn quality_zero_replaces_rule_answers_deterministically() {
    let srv = mock(MockConfig {
        quality: 0.0,
        seed: 3,
        ..with_rules()
    })
    .await;
    let c = client("openai", &srv.url());
    let a = c
        .chat(&user("capital of France"), &params(json!({})))
        .await
        .unwrap();
    let b = c
        .chat(&user("capital of France"), &params(json!({})))
        .await
        .unwrap();
    assert_ne!(a.content, "The capital of France is Paris.");
    assert_eq!(a.content, b.content);
    // Echo is not a rule answer: quality does not touch it.
    let e = c
        .chat(&user("hello there"), &params(json!({})))
        .await
        .unwrap();
    assert_eq!(e.content, "hello there");
}

#[tokio::test]
async fn error_rate_one_fails_with_status_and_names_provider_and_url() {
    let srv = mock(MockConfig {
        error_rate: 1.0,
        ..MockConfig::default()
    })
    .await;
    let cfg = config("ollama", &srv.url(), "    max_retries: 1", "");
    let c = ModelClient::from_config(&cfg, "m").unwrap();
    let err = c.chat(&user("hi"), &params(json!({}))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Status5xx);
    assert_eq!(err.status(), Some(500));
    let msg = err.to_string();
    assert!(msg.contains("provider `up`"), "{msg}");
    assert!(msg.contains(&format!("{}/api/chat", srv.url())), "{msg}");
    assert!(msg.contains("HTTP 500"), "{msg}");
    assert!(msg.contains("injected error"), "{msg}");
}

#[tokio::test]
async fn error_rate_draws_are_per_request_and_reproducible() {
    let srv = mock(MockConfig {
        error_rate: 0.5,
        seed: 11,
        ..MockConfig::default()
    })
    .await;
    let cfg = config("openai", &srv.url(), "    max_retries: 0", "");
    let c = ModelClient::from_config(&cfg, "m").unwrap();
    let mut first = Vec::new();
    for i in 0..40 {
        first.push(
            c.chat(&user(&format!("q{i}")), &params(json!({})))
                .await
                .is_ok(),
        );
    }
    let ok = first.iter().filter(|x| **x).count();
    assert!(
        (8..=32).contains(&ok),
        "{ok} of 40 succeeded at error rate 0.5"
    );
    // Same requests, in reverse order and concurrently: same outcomes.
    let tasks: Vec<_> = (0..40)
        .rev()
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                (
                    i,
                    c.chat(&user(&format!("q{i}")), &params(json!({})))
                        .await
                        .is_ok(),
                )
            })
        })
        .collect();
    for t in tasks {
        let (i, ok) = t.await.unwrap();
        assert_eq!(ok, first[i], "request q{i}");
    }
}

#[tokio::test]
async fn many_concurrent_calls_share_one_client() {
    let srv = mock(with_rules()).await;
    let c = client("openai", &srv.url());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                let out = c
                    .chat(&user(&format!("{i} plus 1")), &params(json!({})))
                    .await
                    .unwrap();
                assert_eq!(out.content, format!("{i} + 1"));
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn mock_speaks_generate_tags_models_and_streams_ollama_by_default() {
    let srv = mock(with_rules()).await;
    let http = crate::support::http();
    // /api/chat without `stream`: Ollama streams by default (NDJSON).
    let r = http
        .post(format!("{}/api/chat", srv.url()))
        .json(&json!({"model": "x", "messages": [{"role": "user", "content": "one two three"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3]["done"], json!(true));
    assert_eq!(lines[3]["eval_count"], json!(3));
    assert!(lines.iter().all(|l| l["model"] == "mock:x"));

    let g = post_json(
        &format!("{}/api/generate", srv.url()),
        &json!({"model": "x", "prompt": "capital of Peru", "stream": false}),
    )
    .await;
    assert_eq!(g["response"], "The capital of Peru is Paris.");
    assert_eq!(g["model"], "mock:x");
    assert_eq!(g["prompt_eval_count"], json!(3));

    let tags = get_json(&format!("{}/api/tags", srv.url())).await;
    assert!(tags["models"].as_array().is_some_and(|m| !m.is_empty()));
    let models = get_json(&format!("{}/v1/models", srv.url())).await;
    assert_eq!(models["object"], "list");

    // OpenAI streams only on request, and sends usage only when asked.
    let sse = http
        .post(format!("{}/v1/chat/completions", srv.url()))
        .json(&json!({"model": "x", "stream": true, "messages": [{"role": "user", "content": "a b"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sse.ends_with("data: [DONE]\n\n"), "{sse}");
    assert!(!sse.contains("\"usage\""), "{sse}");
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let srv = mock(MockConfig {
        latency: Duration::from_millis(150),
        ..MockConfig::default()
    })
    .await;
    let out = client("ollama", &srv.url())
        .chat(&user("hi"), &params(json!({})))
        .await
        .unwrap();
    assert!(out.latency_ms >= 150, "{}", out.latency_ms);
}
