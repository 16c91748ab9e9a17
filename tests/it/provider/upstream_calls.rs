//! What reaches the upstream and how failures are handled, against a
//! recording test server: parameters and formats intact, tool calls
//! converted per dialect, retries on 429/5xx only, timeouts, API keys.

use std::time::{Duration, Instant};

use promptgate::provider::{
    ErrorKind, ModelClient, ProviderError, TimeoutPhase, provider_with_key,
};
use promptgate::spec::config::{Price, Timeouts};
use serde_json::json;

use crate::support::upstream::{Reply, client, config, fixture, params, serve, user};

fn ollama_ok() -> Reply {
    Reply::json(200, fixture("ollama/chat.json"))
}

fn openai_ok() -> Reply {
    Reply::json(200, fixture("openai/chat.json"))
}

#[tokio::test]
async fn ollama_options_and_format_reach_the_upstream_intact() {
    let srv = serve(|_, _, _| ollama_ok()).await;
    // Model defaults in the config, call params over them.
    let cfg = config(
        "ollama",
        &srv.url,
        "",
        "    params: {temperature: 0.7, num_ctx: 8192, options: {top_k: 5}}",
    );
    let c = ModelClient::from_config(&cfg, "m").unwrap();
    let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}});
    c.chat(
        &user("hi"),
        &params(json!({
            "temperature": 0.2, "seed": 42, "top_p": 0.9, "max_tokens": 50,
            "stop": ["\n\n"], "format": schema, "keep_alive": "5m",
            "options": {"num_gpu": 0},
        })),
    )
    .await
    .unwrap();
    let body = srv.last_body();
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["stream"], json!(false));
    assert_eq!(body["format"], schema);
    assert_eq!(body["keep_alive"], "5m");
    let o = &body["options"];
    assert_eq!(o["num_ctx"], json!(8192));
    assert_eq!(o["temperature"], json!(0.2));
    assert_eq!(o["seed"], json!(42));
    assert_eq!(o["top_p"], json!(0.9));
    assert_eq!(o["num_predict"], json!(50));
    assert_eq!(o["stop"], json!(["\n\n"]));
    // `options` objects merge: model default top_k and call's num_gpu.
    assert_eq!(o["top_k"], json!(5));
    assert_eq!(o["num_gpu"], json!(0));
    assert!(
        body.get("temperature").is_none(),
        "generic params go into options: {body}"
    );
}

#[tokio::test]
async fn ollama_json_mode_is_sent_as_format_json() {
    let srv = serve(|_, _, _| ollama_ok()).await;
    client("ollama", &srv.url)
        .chat(&user("hi"), &params(json!({"format": "json"})))
        .await
        .unwrap();
    assert_eq!(srv.last_body()["format"], "json");
}

#[tokio::test]
async fn openai_params_are_top_level_and_response_format_intact() {
    let srv = serve(|_, _, _| openai_ok()).await;
    let rf = json!({"type": "json_schema", "json_schema": {"name": "x", "strict": true,
        "schema": {"type": "object"}}});
    let tools =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    client("openai", &srv.url)
        .chat(
            &user("hi"),
            &params(json!({
                "temperature": 0, "seed": 1, "max_tokens": 20, "stop": ["x"],
                "response_format": rf, "tools": tools, "tool_choice": "auto",
                "num_ctx": 4096,
            })),
        )
        .await
        .unwrap();
    let body = srv.last_body();
    assert_eq!(body["response_format"], rf);
    assert_eq!(body["tools"], tools);
    assert_eq!(body["tool_choice"], "auto");
    assert_eq!(body["temperature"], json!(0));
    assert_eq!(body["seed"], json!(1));
    assert_eq!(body["max_tokens"], json!(20));
    assert_eq!(body["stop"], json!(["x"]));
    assert_eq!(body["stream"], json!(false));
    assert!(body.get("stream_options").is_none());
    // An Ollama-only knob is not sent to an OpenAI server (which would reject it).
    assert!(body.get("num_ctx").is_none());
}

#[tokio::test]
async fn tool_call_history_is_converted_per_dialect() {
    let history = vec![
        json!({"role": "user", "content": "weather?"}),
        json!({"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
        json!({"role": "tool", "tool_call_id": "call_1", "content": "18C"}),
    ];
    let srv = serve(|_, _, _| ollama_ok()).await;
    client("ollama", &srv.url)
        .chat(&history, &params(json!({})))
        .await
        .unwrap();
    let sent = srv.last_body();
    // Ollama wants arguments as an object; other fields pass through.
    assert_eq!(
        sent["messages"][1]["tool_calls"][0]["function"]["arguments"],
        json!({"city": "Paris"})
    );
    assert_eq!(sent["messages"][2]["tool_call_id"], "call_1");

    // Ollama-shaped history to an OpenAI server: arguments become JSON text.
    let ollama_history = vec![
        json!({"role": "user", "content": "weather?"}),
        json!({"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}),
    ];
    let srv = serve(|_, _, _| openai_ok()).await;
    client("openai", &srv.url)
        .chat(&ollama_history, &params(json!({})))
        .await
        .unwrap();
    let call = &srv.last_body()["messages"][1]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    let args: serde_json::Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
}

#[tokio::test]
async fn retries_429_and_5xx_then_succeeds() {
    let srv = serve(|n, _, _| match n {
        0 => Reply::json(503, r#"{"error":"overloaded"}"#),
        1 => Reply {
            headers: vec![("retry-after", "0".into())],
            ..Reply::json(429, r#"{"error":"slow down"}"#)
        },
        _ => openai_ok(),
    })
    .await;
    let cfg = config("openai", &srv.url, "    max_retries: 2", "");
    let out = ModelClient::from_config(&cfg, "m")
        .unwrap()
        .chat(&user("hi"), &params(json!({})))
        .await
        .unwrap();
    assert_eq!(out.content, "Hello! How can I assist you today?");
    assert_eq!(srv.hits(), 3);
}

#[tokio::test]
async fn retries_are_bounded() {
    let srv = serve(|_, _, _| Reply::json(502, "bad gateway")).await;
    let cfg = config("ollama", &srv.url, "    max_retries: 3", "");
    let err = ModelClient::from_config(&cfg, "m")
        .unwrap()
        .chat(&user("hi"), &params(json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(502));
    assert_eq!(srv.hits(), 4, "1 attempt + 3 retries");
}

#[tokio::test]
async fn no_retry_on_400_and_the_error_says_what_failed() {
    let srv =
        serve(|_, _, _| Reply::json(400, r#"{"error":"model 'test-model' not found"}"#)).await;
    let cfg = config("ollama", &srv.url, "    max_retries: 3", "");
    let err = ModelClient::from_config(&cfg, "m")
        .unwrap()
        .chat(&user("hi"), &params(json!({})))
        .await
        .unwrap_err();
    assert_eq!(srv.hits(), 1);
    assert_eq!(err.kind(), ErrorKind::Status4xx);
    let msg = err.to_string();
    assert!(msg.contains("provider `up`"), "{msg}");
    assert!(msg.contains(&format!("{}/api/chat", srv.url)), "{msg}");
    assert!(msg.contains("HTTP 400"), "{msg}");
    assert!(msg.contains("model 'test-model' not found"), "{msg}");
}

#[tokio::test]
async fn first_token_timeout_on_a_stream_that_stalls() {
    // Headers at once, then nothing for 3 s.
    let srv = serve(|_, _, _| Reply {
        body_delay: Duration::from_secs(3),
        ..Reply::typed("application/x-ndjson", fixture("ollama/chat_stream.ndjson"))
    })
    .await;
    let cfg = config(
        "ollama",
        &srv.url,
        "    timeouts: {first_token_ms: 200, total_ms: 10000}\n    max_retries: 2",
        "",
    );
    let c = ModelClient::from_config(&cfg, "m").unwrap();
    let start = Instant::now();
    let err = c
        .chat_streamed(&user("hi"), &params(json!({})))
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(
            err,
            ProviderError::Timeout {
                phase: TimeoutPhase::FirstToken,
                ms: 200,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(srv.hits(), 1, "a first-token timeout is not retried");
    assert!(
        err.to_string().contains("first-token timeout after 200 ms"),
        "{err}"
    );
}

#[tokio::test]
async fn first_token_timeout_when_headers_never_come() {
    let srv = serve(|_, _, _| Reply {
        delay: Duration::from_secs(3),
        ..Reply::typed("text/event-stream", fixture("openai/chat_stream.sse"))
    })
    .await;
    let cfg = config(
        "openai",
        &srv.url,
        "    timeouts: {first_token_ms: 200}",
        "",
    );
    let start = Instant::now();
    let err = ModelClient::from_config(&cfg, "m")
        .unwrap()
        .chat_stream(&user("hi"), &params(json!({})))
        .await
        .err()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
}

#[tokio::test]
async fn total_timeout_on_a_slow_non_streaming_call() {
    let srv = serve(|_, _, _| Reply {
        delay: Duration::from_secs(3),
        ..openai_ok()
    })
    .await;
    // Per-model timeouts override the provider's.
    let cfg = config(
        "openai",
        &srv.url,
        "    timeouts: {total_ms: 60000}",
        "    timeouts: {connect_ms: 1000, first_token_ms: 1000, total_ms: 300}",
    );
    let start = Instant::now();
    let err = ModelClient::from_config(&cfg, "m")
        .unwrap()
        .chat(&user("hi"), &params(json!({})))
        .await
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(
            err,
            ProviderError::Timeout {
                phase: TimeoutPhase::Total,
                ms: 300,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn connect_errors_are_retried_and_reported() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let cfg = config("ollama", &url, "    max_retries: 2", "");
    let err = ModelClient::from_config(&cfg, "m")
        .unwrap()
        .chat(&user("hi"), &params(json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert!(err.is_retryable());
    assert!(
        err.to_string().contains(&format!("{url}/api/chat")),
        "{err}"
    );
}

const SECRET: &str = "sk-test-9f8e7d6c5b4a";

#[tokio::test]
async fn api_key_is_sent_as_bearer_but_never_in_errors() {
    // The upstream echoes the header it got, as some servers do on 401.
    let srv = serve(|_, _, h| {
        let auth = h
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Reply::json(
            401,
            format!(r#"{{"error":{{"message":"Incorrect API key provided: {auth}"}}}}"#),
        )
    })
    .await;
    let cfg = config("openai", &srv.url, "", "");
    let provider =
        provider_with_key("up", &cfg.providers["up"], 1000, Some(SECRET.into())).unwrap();
    let c = ModelClient::new(
        "m",
        "test-model",
        provider,
        Default::default(),
        Price::default(),
        Timeouts::default(),
    );
    let err = c.chat(&user("hi"), &params(json!({}))).await.unwrap_err();
    assert_eq!(
        srv.last_headers()["authorization"],
        format!("Bearer {SECRET}")
    );
    assert_eq!(err.status(), Some(401));
    assert_eq!(srv.hits(), 1, "401 is not retried");
    let shown = format!("{err} | {err:?} | {c:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("Incorrect API key provided"), "{shown}");
}

#[tokio::test]
async fn api_key_comes_from_the_named_environment_variable() {
    let srv = serve(|_, _, _| openai_ok()).await;
    // Cargo sets CARGO_PKG_NAME for test processes; it stands in for a key variable.
    let cfg = config("openai", &srv.url, "    api_key_env: CARGO_PKG_NAME", "");
    ModelClient::from_config(&cfg, "m")
        .unwrap()
        .chat(&user("hi"), &params(json!({})))
        .await
        .unwrap();
    assert_eq!(srv.last_headers()["authorization"], "Bearer promptgate");

    let cfg = config(
        "openai",
        &srv.url,
        "    api_key_env: PROMPTGATE_TEST_UNSET_KEY_VAR",
        "",
    );
    let err = ModelClient::from_config(&cfg, "m").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string().contains("PROMPTGATE_TEST_UNSET_KEY_VAR"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_model_is_a_config_error() {
    let cfg = config("openai", "http://127.0.0.1:1", "", "");
    let err = ModelClient::from_config(&cfg, "nope").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("`nope`"), "{err}");
}

#[tokio::test]
async fn openai_base_url_may_end_in_v1() {
    let srv = serve(|_, _, _| openai_ok()).await;
    let c = client("openai", &format!("{}/v1/", srv.url));
    assert_eq!(
        c.provider().chat_url(),
        format!("{}/v1/chat/completions", srv.url)
    );
    c.chat(&user("hi"), &params(json!({}))).await.unwrap();
}

#[tokio::test]
async fn raw_pass_through_returns_upstream_bytes_and_retries() {
    let sse = fixture("openai/chat_stream.sse");
    let sse2 = sse.clone();
    let srv = serve(move |n, _, _| match n {
        0 => Reply::json(500, "boom"),
        _ => Reply::typed("text/event-stream", sse2.clone()),
    })
    .await;
    let cfg = config("openai", &srv.url, "    max_retries: 1", "");
    let c = ModelClient::from_config(&cfg, "m").unwrap();
    let body = json!({"model": "client-chosen", "stream": true, "messages": [], "x_extra": 1});
    let resp = c
        .provider()
        .send_raw(
            body.to_string().into(),
            true,
            promptgate::provider::CallOptions {
                timeouts: c.timeouts(),
            },
        )
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let bytes = promptgate::provider::read_body(resp.into_body())
        .await
        .unwrap();
    assert_eq!(String::from_utf8(bytes.to_vec()).unwrap(), sse);
    assert_eq!(srv.hits(), 2);
    assert_eq!(
        srv.last_body(),
        body,
        "the body reaches the upstream untouched"
    );
}
