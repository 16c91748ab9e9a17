//! Recorded upstream responses (tests/fixtures/, written from the documented
//! Ollama and OpenAI formats) served by a test server and parsed by the providers.

use serde_json::json;

use crate::support::upstream::{Reply, client, fixture, params, serve, user};

#[tokio::test]
async fn ollama_non_streaming_fixture() {
    let body = fixture("ollama/chat.json");
    let srv = serve(move |_, _, _| Reply::json(200, body.clone())).await;
    let c = client("ollama", &srv.url)
        .chat(&user("hi"), &params(json!({})))
        .await
        .unwrap();
    assert_eq!(c.content, "Hello! How are you today?");
    assert_eq!((c.input_tokens, c.output_tokens), (26, 298));
    assert_eq!(c.model, "llama3.2");
    assert_eq!(c.finish_reason.as_deref(), Some("stop"));
    assert!((c.cost - (26.0 + 2.0 * 298.0)).abs() < 1e-6, "{}", c.cost);
    assert!(c.tool_calls.is_empty());
}

#[tokio::test]
async fn ollama_stream_fixture() {
    let body = fixture("ollama/chat_stream.ndjson");
    let srv = serve(move |_, _, _| Reply::typed("application/x-ndjson", body.clone())).await;
    let c = client("ollama", &srv.url)
        .chat_streamed(&user("why is the sky blue?"), &params(json!({})))
        .await
        .unwrap();
    assert_eq!(c.content, "The sky is blue ☀️");
    assert_eq!((c.input_tokens, c.output_tokens), (26, 282));
    assert!(c.ttft_ms.is_some());
    assert_eq!(srv.last_body()["stream"], json!(true));
}

#[tokio::test]
async fn ollama_tool_call_fixture() {
    let body = fixture("ollama/chat_tool_call.json");
    let srv = serve(move |_, _, _| Reply::json(200, body.clone())).await;
    let c = client("ollama", &srv.url)
        .chat(&user("weather in Paris?"), &params(json!({})))
        .await
        .unwrap();
    assert_eq!(c.tool_calls.len(), 1);
    assert_eq!(c.tool_calls[0].name, "get_current_weather");
    assert_eq!(
        c.tool_calls[0].arguments,
        json!({"format": "celsius", "location": "Paris, FR"})
    );
    assert_eq!((c.input_tokens, c.output_tokens), (122, 33));
}

#[tokio::test]
async fn ollama_tool_call_stream_fixture() {
    let body = fixture("ollama/chat_tool_call_stream.ndjson");
    let srv = serve(move |_, _, _| Reply::typed("application/x-ndjson", body.clone())).await;
    let c = client("ollama", &srv.url)
        .chat_streamed(&user("weather and time?"), &params(json!({})))
        .await
        .unwrap();
    let names: Vec<_> = c.tool_calls.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["get_current_weather", "get_time"]);
    assert_eq!(
        c.tool_calls[1].arguments,
        json!({"timezone": "Europe/Paris"})
    );
    assert_eq!((c.input_tokens, c.output_tokens), (160, 41));
}

#[tokio::test]
async fn openai_non_streaming_fixture() {
    let body = fixture("openai/chat.json");
    let srv = serve(move |_, _, _| Reply::json(200, body.clone())).await;
    let c = client("openai", &srv.url)
        .chat(&user("hi"), &params(json!({})))
        .await
        .unwrap();
    assert_eq!(c.content, "Hello! How can I assist you today?");
    assert_eq!((c.input_tokens, c.output_tokens), (19, 10));
    assert_eq!(c.model, "gpt-4.1-2025-04-14");
}

#[tokio::test]
async fn openai_stream_fixture() {
    let body = fixture("openai/chat_stream.sse");
    let srv = serve(move |_, _, _| Reply::typed("text/event-stream", body.clone())).await;
    let c = client("openai", &srv.url)
        .chat_streamed(&user("hi"), &params(json!({})))
        .await
        .unwrap();
    assert_eq!(c.content, "Hello there, ünïcode");
    assert_eq!((c.input_tokens, c.output_tokens), (9, 4));
    assert_eq!(c.finish_reason.as_deref(), Some("stop"));
    let sent = srv.last_body();
    assert_eq!(sent["stream"], json!(true));
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn openai_tool_call_stream_fixture_reassembles_fragments() {
    let body = fixture("openai/chat_tool_call_stream.sse");
    let srv = serve(move |_, _, _| Reply::typed("text/event-stream", body.clone())).await;
    let c = client("openai", &srv.url)
        .chat_streamed(&user("weather and time?"), &params(json!({})))
        .await
        .unwrap();
    assert_eq!(c.tool_calls.len(), 2);
    assert_eq!(c.tool_calls[0].id.as_deref(), Some("call_abc"));
    assert_eq!(c.tool_calls[0].name, "get_weather");
    assert_eq!(c.tool_calls[0].arguments, json!({"location": "Paris"}));
    assert_eq!(c.tool_calls[1].name, "get_time");
    assert_eq!(c.tool_calls[1].arguments, json!({"tz": "CET"}));
    assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!((c.input_tokens, c.output_tokens), (80, 25));
}

#[tokio::test]
async fn stream_cut_before_done_is_an_error() {
    // Only the first two lines: the server died mid-answer.
    let body: String = fixture("ollama/chat_stream.ndjson")
        .lines()
        .take(2)
        .map(|l| format!("{l}\n"))
        .collect();
    let srv = serve(move |_, _, _| Reply::typed("application/x-ndjson", body.clone())).await;
    let err = client("ollama", &srv.url)
        .chat_streamed(&user("hi"), &params(json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), promptgate::provider::ErrorKind::Decode, "{err}");
    assert!(err.to_string().contains("done"), "{err}");
}
