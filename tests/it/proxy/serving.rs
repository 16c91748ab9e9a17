//! `promptgate serve` end to end: the real binary on 127.0.0.1
//! in front of `mock-llm` (a MOCK, labelled as such in every answer's
//! model name) or a recording test upstream, with the request log read
//! back from Parquet.

use std::time::Duration;

use futures_util::StreamExt;
use promptgate::logstore::{FeedbackJournal, RequestStatus, Variant, read_feedback};
use promptgate::mock_llm::{MockConfig, MockServer};
use promptgate::proxy::CanaryRule;
use promptgate::spec::rollout::StickyKey;
use serde_json::{Value, json};

use crate::support::serve::{
    Proxy, commit_on, header, log_dir, log_rows, metrics, post, proxy_scaffold, status,
};
use crate::support::upstream::{self as upstream, Reply, fixture};
use crate::support::{get_json, http};

async fn mock(token_delay_ms: u64) -> MockServer {
    MockServer::start(MockConfig {
        token_delay: Duration::from_millis(token_delay_ms),
        ..Default::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_requests_are_rendered_routed_answered_and_logged() {
    let m = mock(0).await;
    let s = proxy_scaffold("openai", &m.url(), "");
    let mut p = Proxy::start(&s.root());
    let url = format!("{}/v1/chat/completions", p.url);

    // Variables fill the template; the mock echoes the rendered user message.
    let (code, h, body) = post(
        &url,
        &json!({"model": "prompt:capital", "variables": {"country": "France"}, "user": "alice"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "What is the capital of France?"
    );
    let commit = s.run(&["log", "capital"]);
    assert!(commit.status.success());
    let head = s.head_commit();
    let version = header(&h, "x-promptgate-version");
    assert!(version.starts_with(&format!("{head}:")), "{version}");
    assert_eq!(header(&h, "x-promptgate-variant"), "stable");
    let capital_id = header(&h, "x-request-id");
    assert!(!capital_id.is_empty());

    // `input` from the last user message, earlier turns kept as history
    // after the system message.
    let (code, h, body) = post(
        &url,
        &json!({"model": "prompt:chat", "messages": [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "second question"},
        ]}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let chat_id = header(&h, "x-request-id");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Q: second question");

    // A model alias passes through, logged with variant `none`.
    let (code, h, _) = post(
        &url,
        &json!({"model": "small", "messages": [{"role": "user", "content": "plain call"}]}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(header(&h, "x-promptgate-variant"), "none");

    // Client errors name the field, in the client's JSON error shape.
    let (code, _, body) = post(&url, &json!({"model": "prompt:capital", "variables": {}})).await;
    assert_eq!(code, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["param"], "variables.country", "{v}");
    let (code, _, body) = post(
        &url,
        &json!({"model": "prompt:capital", "variables": {"country": 3}}),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let (code, _, body) = post(&url, &json!({"model": "prompt:nope", "messages": []})).await;
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("unknown prompt `nope`"), "{body}");
    let (code, _, body) = post(
        &format!("{}/api/chat", p.url),
        &json!({"model": "gpt-unknown", "messages": []}),
    )
    .await;
    assert_eq!(code, 404);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["error"].is_string(), "Ollama error shape: {v}");

    // Both client APIs list the prompts and aliases.
    let models = get_json(&format!("{}/v1/models", p.url)).await;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["prompt:capital", "prompt:chat", "small"]);
    let tags = get_json(&format!("{}/api/tags", p.url)).await;
    assert_eq!(tags["models"].as_array().unwrap().len(), 3);

    assert_eq!(p.terminate(), Some(0), "{}", p.stderr());
    let rows = log_rows(&s.root());
    let by_id = |id: &str| rows.iter().find(|r| r.request_id == id).unwrap().clone();
    let r = by_id(&capital_id);
    assert_eq!(r.prompt_id.as_deref(), Some("capital"));
    assert_eq!(r.commit, head);
    assert_eq!(
        Some(format!(
            "{}:{}",
            r.commit,
            r.prompt_version.clone().unwrap()
        )),
        Some(version)
    );
    assert_eq!(r.git_ref.as_deref(), Some("refs/heads/main"));
    assert_eq!(r.variant, Variant::Stable);
    assert_eq!(r.model, "small");
    assert_eq!(r.upstream_model, "mock:llama3.2:1b");
    assert_eq!(r.status, RequestStatus::Ok);
    assert_eq!(r.output, "What is the capital of France?");
    assert_eq!(
        serde_json::from_str::<Value>(&r.variables).unwrap(),
        json!({"country": "France"})
    );
    assert!(r.input_tokens > 0 && r.output_tokens == 6, "{r:?}");
    assert!(r.cost > 0.0, "per-second price");
    assert!(r.latency_ms > 0.0);
    assert!(!r.stream);
    assert_eq!(
        r.user_hash.as_deref(),
        Some(promptgate::proxy::user_hash("alice").as_str())
    );
    let r = by_id(&chat_id);
    let msgs: Value = serde_json::from_str(&r.messages).unwrap();
    let roles: Vec<&str> = msgs
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, vec!["system", "user", "assistant", "user"]);
    assert_eq!(msgs[3]["content"], "Q: second question");
    let pass = rows.iter().find(|r| r.variant == Variant::None).unwrap();
    assert_eq!(pass.prompt_id, None);
    // The rejected render is logged too (it named a prompt); 404s are not.
    let errors: Vec<_> = rows
        .iter()
        .filter(|r| r.status == RequestStatus::Error)
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|r| r.http_status == 400));
    assert_eq!(rows.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_response_format_and_options_reach_the_upstream_intact() {
    let openai_up = upstream::serve(|_, _, _| Reply::json(200, fixture("openai/chat.json"))).await;
    let s = proxy_scaffold("openai", &openai_up.url, "");
    let p = Proxy::start(&s.root());
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let rf =
        json!({"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}});
    let (code, _, body) = post(
        &format!("{}/v1/chat/completions", p.url),
        &json!({"model": "small", "messages": [{"role": "user", "content": "hi"}],
            "tools": tools, "tool_choice": "auto", "response_format": rf, "seed": 7,
            "logit_bias": {"50256": -100}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // The upstream's own body comes back unchanged.
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        serde_json::from_str::<Value>(&fixture("openai/chat.json")).unwrap()
    );
    let sent = openai_up.last_body();
    assert_eq!(sent["tools"], tools);
    assert_eq!(sent["tool_choice"], "auto");
    assert_eq!(sent["response_format"], rf);
    assert_eq!(sent["seed"], 7);
    assert_eq!(sent["logit_bias"], json!({"50256": -100}));
    assert_eq!(sent["model"], "llama3.2:1b");
    drop(p);

    let ollama_up = upstream::serve(|_, _, _| Reply::json(200, fixture("ollama/chat.json"))).await;
    let s = proxy_scaffold("ollama", &ollama_up.url, "");
    let p = Proxy::start(&s.root());
    let format = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    let (code, _, body) = post(
        &format!("{}/api/chat", p.url),
        &json!({"model": "small", "stream": false, "messages": [{"role": "user", "content": "hi"}],
            "options": {"num_ctx": 1234, "temperature": 0.3, "mirostat": 1},
            "format": format, "keep_alive": "5m", "tools": tools}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let sent = ollama_up.last_body();
    assert_eq!(sent["options"]["num_ctx"], 1234);
    assert_eq!(sent["options"]["temperature"], 0.3);
    assert_eq!(sent["options"]["mirostat"], 1);
    // The model's default seed (promptgate.yaml) is kept under the client's options.
    assert_eq!(sent["options"]["seed"], 42);
    assert_eq!(sent["format"], format);
    assert_eq!(sent["keep_alive"], "5m");
    assert_eq!(sent["tools"], tools);
    assert_eq!(sent["stream"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_split_is_sticky_per_user_over_http() {
    let m = mock(0).await;
    let s = proxy_scaffold("openai", &m.url(), "");
    let main = s.commit("noop");
    let canary = commit_on(
        &s.root(),
        "canary",
        &main,
        &[(
            "prompts/chat.yaml",
            &crate::support::serve::CHAT_PROMPT.replace("You are terse.", "You are very terse."),
        )],
        "canary prompt",
    );
    s.write(
        "rollout.yaml",
        "stable: refs/heads/main\ncanary:\n  ref: refs/heads/canary\n  weight: 10\n  prompts: [chat]\n  sticky: user\n  sticky_header: x-user\n",
    );
    s.commit("Start a 10% canary");
    let p = Proxy::start(&s.root());
    let rule = CanaryRule {
        weight: 10.0,
        prompts: vec!["chat".into()],
        sticky: StickyKey::User,
    };
    let url = format!("{}/v1/chat/completions", p.url);
    let client = http();
    let mut canaries = 0;
    for i in 0..300 {
        let user = format!("user-{i}");
        let want = rule.choose("chat", Some(&user), 0.0);
        for round in 0..2 {
            let mut req = client.post(&url);
            let mut body =
                json!({"model": "prompt:chat", "messages": [{"role": "user", "content": "hi"}]});
            // Half the users identify by the rollout's sticky header.
            if i % 2 == 0 {
                body["user"] = json!(user);
            } else {
                req = req.header("x-user", &user);
            }
            let r = req.json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let variant = header(r.headers(), "x-promptgate-variant");
            let version = header(r.headers(), "x-promptgate-version");
            assert_eq!(variant, want.as_str(), "{user} round {round}");
            if want == Variant::Canary {
                assert!(version.starts_with(&canary), "{version}");
            }
        }
        canaries += usize::from(want == Variant::Canary);
    }
    assert!(
        canaries > 10 && canaries < 60,
        "{canaries} of 300 in the canary"
    );
    // The prompt subset: `capital` is never in the canary.
    for i in 0..50 {
        let (_, h, _) = post(
            &url,
            &json!({"model": "prompt:capital", "variables": {"country": "X"}, "user": format!("user-{i}")}),
        )
        .await;
        assert_eq!(header(&h, "x-promptgate-variant"), "stable");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_stream_gets_one_client_closed_row() {
    let m = mock(100).await;
    let s = proxy_scaffold("ollama", &m.url(), "");
    let mut p = Proxy::start(&s.root());
    let words = (0..40)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let r = http()
        .post(format!("{}/v1/chat/completions", p.url))
        .json(&json!({"model": "prompt:chat", "stream": true,
            "messages": [{"role": "user", "content": words}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = header(r.headers(), "x-request-id");
    let mut body = r.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(
        first.starts_with(b"data: "),
        "SSE converted from Ollama NDJSON"
    );
    drop(body);
    // The server notices at its next write; the row follows.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(p.terminate(), Some(0), "{}", p.stderr());
    let rows = log_rows(&s.root());
    let mine: Vec<_> = rows.iter().filter(|r| r.request_id == id).collect();
    assert_eq!(mine.len(), 1, "{rows:?}");
    assert_eq!(mine[0].status, RequestStatus::ClientClosed);
    assert!(mine[0].stream);
    assert!(mine[0].output.len() < words.len(), "{}", mine[0].output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_before_the_first_chunk_gets_one_client_closed_row() {
    // Headers at once, the first chunk only after 5 s: the proxy answers
    // with the first chunk, so the client sees nothing before it gives up.
    let slow = upstream::serve(|_, _, _| Reply {
        body_delay: Duration::from_secs(5),
        ..Reply::typed("text/event-stream", fixture("openai/chat_stream.sse"))
    })
    .await;
    let s = proxy_scaffold("openai", &slow.url, "");
    let mut p = Proxy::start(&s.root());
    let gave_up = http()
        .post(format!("{}/v1/chat/completions", p.url))
        .json(
            &json!({"model": "prompt:capital", "variables": {"country": "Chile"}, "stream": true}),
        )
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gave_up.unwrap_err().is_timeout());
    // The proxy notices the closed connection while it waits for the
    // upstream (not only at its first write, 5 s later) and logs the call.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let rows = loop {
        let rows = log_rows(&s.root());
        if !rows.is_empty() || std::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].status, RequestStatus::ClientClosed);
    assert!(rows[0].stream);
    assert_eq!(rows[0].output, "");
    assert_eq!(p.terminate(), Some(0), "{}", p.stderr());
    assert_eq!(log_rows(&s.root()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_413_without_upstream_call_and_504_on_upstream_timeout() {
    let slow = upstream::serve(|_, _, _| Reply {
        delay: Duration::from_millis(3000),
        ..Reply::json(200, fixture("openai/chat.json"))
    })
    .await;
    let s = proxy_scaffold("openai", &slow.url, "  max_body_bytes: 2000\n");
    s.edit("promptgate.yaml", "total_ms: 120000", "total_ms: 400");
    s.commit("Short timeout");
    let mut p = Proxy::start(&s.root());
    let url = format!("{}/v1/chat/completions", p.url);
    let big = "x".repeat(5000);
    let (code, _, body) = post(
        &url,
        &json!({"model": "small", "messages": [{"role": "user", "content": big}]}),
    )
    .await;
    assert_eq!(code, 413, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "body_too_large");
    assert_eq!(slow.hits(), 0, "no upstream call for a refused body");

    let (code, h, body) = post(
        &url,
        &json!({"model": "small", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(code, 504, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "upstream_timeout", "{v}");
    assert_eq!(slow.hits(), 1, "a total timeout is not retried");
    let id = header(&h, "x-request-id");
    assert_eq!(p.terminate(), Some(0));
    let rows = log_rows(&s.root());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].request_id, id);
    assert_eq!(rows[0].status, RequestStatus::Timeout);
    assert_eq!(rows[0].http_status, 504);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_a_first_token_in_time_ends_with_an_error_and_a_timeout_row() {
    // Headers at once, the first event after 3 s.
    let stalled = upstream::serve(|_, _, _| Reply {
        body_delay: Duration::from_millis(3000),
        ..Reply::typed("text/event-stream", fixture("openai/chat_stream.sse"))
    })
    .await;
    let s = proxy_scaffold("openai", &stalled.url, "");
    s.edit(
        "promptgate.yaml",
        "first_token_ms: 60000",
        "first_token_ms: 300",
    );
    s.commit("Short first-token timeout");
    let mut p = Proxy::start(&s.root());
    let r = http()
        .post(format!("{}/v1/chat/completions", p.url))
        .json(&json!({"model": "small", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("first_token_ms (300 ms)"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(p.terminate(), Some(0));
    let rows = log_rows(&s.root());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, RequestStatus::Timeout);
    assert!(rows[0].stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_fails_fast_after_repeated_upstream_failures() {
    let down = upstream::serve(|_, _, _| Reply::json(500, r#"{"error":"boom"}"#)).await;
    let s = proxy_scaffold(
        "openai",
        &down.url,
        "  circuit_breaker:\n    failure_threshold: 2\n    open_ms: 60000\n",
    );
    s.edit("promptgate.yaml", "max_retries: 2", "max_retries: 0");
    s.commit("No retries");
    let p = Proxy::start(&s.root());
    let url = format!("{}/v1/chat/completions", p.url);
    let body = json!({"model": "small", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..2 {
        let (code, _, b) = post(&url, &body).await;
        assert_eq!(code, 502, "{b}");
    }
    let (code, h, b) = post(&url, &body).await;
    assert_eq!(code, 503, "{b}");
    assert!(!header(&h, "retry-after").is_empty());
    assert_eq!(down.hits(), 2, "the open breaker makes no upstream call");
    let metrics = metrics(&p).await;
    assert!(
        metrics.contains("promptgate_breaker_state{upstream=\"local\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("promptgate_upstream_errors_total"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_is_validated_and_durable_before_the_ack() {
    let m = mock(0).await;
    let s = proxy_scaffold("openai", &m.url(), "");
    let mut p = Proxy::start(&s.root());
    let url = format!("{}/v1/feedback", p.url);
    let cases = [
        (json!({"score": 1}), "request_id"),
        (json!({"request_id": "r1"}), "score"),
        (json!({"request_id": "r1", "score": "good"}), "score"),
        (json!({"request_id": "r1", "score": 1.5}), "score"),
        (json!({"request_id": "", "score": 1}), "request_id"),
        (json!({"request_id": "r1", "score": 1, "label": 3}), "label"),
        (
            json!({"request_id": "r1", "score": 1, "colour": "red"}),
            "colour",
        ),
    ];
    for (body, field) in &cases {
        let (code, _, text) = post(&url, body).await;
        assert_eq!(code, 400, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["param"], *field, "{body}: {v}");
    }
    let r = http().post(&url).body("not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let mut ids = Vec::new();
    for i in 0..5 {
        let (code, _, text) = post(
            &url,
            &json!({"request_id": format!("req-{i}"), "score": 0.25 * f64::from(i % 5),
                "label": "ok", "correction": "Paris", "comment": "c", "user": "bob"}),
        )
        .await;
        assert_eq!(code, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        ids.push(v["feedback_id"].as_str().unwrap().to_string());
    }
    // Acknowledged means on disk: read it back while the server still runs
    // (a kill -9 here would not lose it).
    let journal = log_dir(&s.root()).join("feedback/journal.jsonl");
    let records = read_feedback(&[&journal]).unwrap();
    assert_eq!(
        records
            .iter()
            .map(|r| r.feedback_id.clone())
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(records[2].score, 0.5);
    assert_eq!(records[0].correction.as_deref(), Some("Paris"));
    assert_eq!(
        records[0].user_hash.as_deref(),
        Some(promptgate::proxy::user_hash("bob").as_str())
    );
    assert_eq!(p.terminate(), Some(0));
    // After the server let go of it, the journal opens cleanly again.
    FeedbackJournal::open(&log_dir(&s.root())).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_need_the_bearer_token_when_configured() {
    let m = mock(0).await;
    let s = proxy_scaffold("openai", &m.url(), "  admin_token_env: PG_TEST_ADMIN\n");
    let p = Proxy::start_with(&s.root(), &[], &[("PG_TEST_ADMIN", "s3cret-token")]);
    let url = format!("{}/admin/reload", p.url);
    let r = http().post(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http().post(&url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http()
        .post(&url)
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["reloaded"], true);
    assert_eq!(v["generation"], 2);
    // Status and health stay public; the token never appears anywhere.
    let st = status(&p).await;
    assert_eq!(st["generation"], 2);
    assert!(!st.to_string().contains("s3cret"));
    assert!(!p.stderr().contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_streams_and_flushes_every_row() {
    let m = MockServer::start(MockConfig {
        // Long enough for all ten to be in flight together on a loaded machine.
        latency: Duration::from_millis(4000),
        token_delay: Duration::from_millis(40),
        ..Default::default()
    })
    .await
    .unwrap();
    let s = proxy_scaffold("openai", &m.url(), "");
    let mut p = Proxy::start(&s.root());
    let words = (0..15)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut tasks = Vec::new();
    for i in 0..10 {
        let url = format!("{}/v1/chat/completions", p.url);
        let body = json!({"model": "prompt:chat", "stream": i % 2 == 0,
            "messages": [{"role": "user", "content": words}]});
        tasks.push(tokio::spawn(async move {
            let r = http().post(url).json(&body).send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.text().await.unwrap())
        }));
    }
    // Let every request reach the upstream, then ask the server to stop.
    let (_, ok) = crate::support::serve::wait_status(&p, Duration::from_secs(30), |s| {
        s["in_flight"].as_u64() == Some(10)
    })
    .await;
    assert!(ok, "requests in flight");
    let code = tokio::task::spawn_blocking(move || {
        let code = p.terminate();
        (code, p)
    });
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let (code, p) = code.await.unwrap();
    assert_eq!(code, Some(0), "{}", p.stderr());
    for (status, text) in &answers {
        assert_eq!(*status, 200, "{text}");
        assert!(text.contains("w14"), "complete answer: {text}");
    }
    let rows = log_rows(&s.root());
    assert_eq!(rows.len(), 10, "{}", p.stderr());
    assert!(rows.iter().all(|r| r.status == RequestStatus::Ok));
    assert!(
        rows.iter()
            .filter(|r| r.stream)
            .all(|r| r.ttft_ms.is_some())
    );
    // An independent reader sees the same rows.
    if let Some(py) = crate::support::python_with_pyarrow() {
        let out = std::process::Command::new(py)
            .args([
                "-c",
                "import sys, pyarrow.dataset as ds; t = ds.dataset(sys.argv[1], format='parquet', partitioning='hive').to_table(); print(t.num_rows, sorted(set(t.column('status').to_pylist())))",
            ])
            .arg(log_dir(&s.root()).join("requests"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "10 ['ok']");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_keys_never_reach_logs_and_logged_text_is_redacted() {
    // The upstream echoes the key in its error body; the proxy must not.
    let up = upstream::serve(|n, _, h| {
        let auth = h
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if n == 0 {
            Reply::json(200, fixture("openai/chat.json"))
        } else {
            Reply::json(400, format!("{{\"error\": \"bad request with {auth}\"}}"))
        }
    })
    .await;
    let s = proxy_scaffold("openai", &up.url, "");
    s.edit(
        "promptgate.yaml",
        "    max_retries: 2\n",
        "    max_retries: 2\n    api_key_env: PG_TEST_PROVIDER_KEY\n",
    );
    s.edit(
        "promptgate.yaml",
        "  on_full: block\n",
        "  on_full: block\n  redact: {emails: true, phones: true}\n",
    );
    s.commit("Key and redaction");
    let key = "sk-test-9f8e7d6c5b4a";
    let mut p = Proxy::start_with(&s.root(), &[], &[("PG_TEST_PROVIDER_KEY", key)]);
    let url = format!("{}/v1/chat/completions", p.url);
    let (code, _, body) = post(
        &url,
        &json!({"model": "prompt:chat", "messages": [{"role": "user",
            "content": "mail jane.doe@example.com or call +1 415 555 0100"}]}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let auth = up.last_headers();
    assert_eq!(
        auth.get("authorization").unwrap().to_str().unwrap(),
        format!("Bearer {key}")
    );
    // The client still gets its text as sent; only the log is redacted.
    assert!(up.last_body().to_string().contains("jane.doe@example.com"));
    let (code, _, body) = post(
        &url,
        &json!({"model": "small", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(!body.contains(key), "{body}");
    assert_eq!(p.terminate(), Some(0));
    assert!(!p.stderr().contains(key));
    let rows = log_rows(&s.root());
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let text = format!("{r:?}");
        assert!(!text.contains(key), "{text}");
        assert!(!text.contains("jane.doe@example.com"), "{text}");
        assert!(!text.contains("555 0100"), "{text}");
    }
    let redacted = rows.iter().find(|r| r.prompt_id.is_some()).unwrap();
    assert!(
        redacted.messages.contains("[email]") && redacted.messages.contains("[phone]"),
        "{}",
        redacted.messages
    );
}
