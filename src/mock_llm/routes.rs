//! The mock's HTTP API: request bodies in, answers out through the wire
//! encoders the proxy uses ([`crate::provider::encode`]). Streams are sent
//! one frame (SSE event or NDJSON line) per `token_delay`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::MockConfig;
use super::decide::{Answer, Outcome, chunks, decide, json_mode, last_user, text_of};
use crate::provider::encode::{ChatApi, StreamEncoder, encode_response};
use crate::provider::{ChatEvent, ChatResponse, ToolCall, ToolCallDelta, Usage};

pub(super) fn router(cfg: MockConfig) -> Router {
    Router::new()
        .route("/", get(|| async { "mock-llm (MOCK, not a real model)" }))
        .route("/api/chat", post(ollama_chat))
        .route("/api/generate", post(ollama_generate))
        .route("/api/tags", get(ollama_tags))
        .route(
            "/api/version",
            get(|| async { r#"{"version":"0.0.0-mock"}"# }),
        )
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/models", get(openai_models))
        .with_state(Arc::new(cfg))
}

#[derive(Debug, Deserialize)]
struct InMessage {
    #[serde(default)]
    role: String,
    #[serde(default)]
    content: Value,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct ChatIn {
    #[serde(default)]
    model: String,
    #[serde(default)]
    messages: Vec<InMessage>,
    stream: Option<bool>,
    #[serde(default)]
    tools: Vec<Value>,
    format: Option<Value>,
    response_format: Option<Value>,
    stream_options: Option<StreamOptions>,
    /// OpenAI's sampling seed.
    seed: Option<i64>,
    /// Ollama's sampling options (`options.seed`).
    options: Option<Value>,
}

impl ChatIn {
    /// The answer to this chat request (both wire formats).
    fn answer(&self, cfg: &MockConfig, json: bool) -> Outcome {
        let contents: Vec<(&str, &str)> = self
            .messages
            .iter()
            .map(|m| (m.role.as_str(), text_of(&m.content)))
            .collect();
        decide(
            cfg,
            &self.model,
            self.sampling_seed(),
            &contents,
            last_user(&contents),
            &self.tools,
            json,
        )
    }

    fn sampling_seed(&self) -> Option<i64> {
        self.seed.or_else(|| ollama_seed(self.options.as_ref()))
    }
}

#[derive(Debug, Deserialize)]
struct GenerateIn {
    #[serde(default)]
    model: String,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    system: Option<String>,
    stream: Option<bool>,
    format: Option<Value>,
    options: Option<Value>,
}

fn ollama_seed(options: Option<&Value>) -> Option<i64> {
    options.and_then(|o| o.get("seed")).and_then(Value::as_i64)
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error_body(api: ChatApi, message: &str, kind: &str) -> Vec<u8> {
    let body = if api.is_ollama() {
        json!({ "error": message })
    } else {
        json!({"error": {"message": message, "type": kind}})
    };
    body.to_string().into_bytes()
}

/// The 400 of a body that does not parse.
fn bad_request(api: ChatApi, err: &serde_json::Error) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        error_body(
            api,
            &format!("invalid request body: {err}"),
            "invalid_request_error",
        ),
    )
}

async fn pause(cfg: &MockConfig) {
    if !cfg.latency.is_zero() {
        tokio::time::sleep(cfg.latency).await;
    }
}

async fn ollama_chat(State(cfg): State<Arc<MockConfig>>, body: Bytes) -> Response {
    chat(&cfg, ChatApi::OllamaChat, &body).await
}

async fn openai_chat(State(cfg): State<Arc<MockConfig>>, body: Bytes) -> Response {
    chat(&cfg, ChatApi::OpenAi, &body).await
}

/// `/api/chat` and `/v1/chat/completions`: the same request fields with each
/// API's defaults. Ollama streams unless told not to and always reports
/// usage; OpenAI streams on request and reports usage in a stream only
/// with `stream_options.include_usage`.
async fn chat(cfg: &MockConfig, api: ChatApi, body: &[u8]) -> Response {
    let req: ChatIn = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return bad_request(api, &e),
    };
    let (response_format, stream, with_usage) = if api.is_ollama() {
        (None, req.stream.unwrap_or(true), true)
    } else {
        let stream = req.stream.unwrap_or(false);
        let include_usage = req.stream_options.as_ref().is_some_and(|s| s.include_usage);
        (
            req.response_format.as_ref(),
            stream,
            !stream || include_usage,
        )
    };
    let o = req.answer(cfg, json_mode(req.format.as_ref(), response_format));
    pause(cfg).await;
    respond(cfg, api, &req.model, &o, stream, with_usage)
}

async fn ollama_generate(State(cfg): State<Arc<MockConfig>>, body: Bytes) -> Response {
    let api = ChatApi::OllamaGenerate;
    let req: GenerateIn = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(api, &e),
    };
    let mut contents = Vec::with_capacity(2);
    if let Some(s) = &req.system {
        contents.push(("system", s.as_str()));
    }
    contents.push(("user", req.prompt.as_str()));
    let json = json_mode(req.format.as_ref(), None);
    let seed = ollama_seed(req.options.as_ref());
    let o = decide(&cfg, &req.model, seed, &contents, &req.prompt, &[], json);
    pause(&cfg).await;
    respond(&cfg, api, &req.model, &o, req.stream.unwrap_or(true), true)
}

/// The answer `o` to a request of `model`, in `api`'s wire format; a stream
/// reports usage only when `with_usage` (OpenAI's `include_usage`).
fn respond(
    cfg: &MockConfig,
    api: ChatApi,
    model: &str,
    o: &Outcome,
    stream: bool,
    with_usage: bool,
) -> Response {
    let model = format!("mock:{model}");
    let request_id = format!("mock-{:016x}", o.id);
    let (content, call) = match &o.answer {
        Answer::Error => {
            let message = "mock-llm: injected error (--error-rate)";
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                error_body(api, message, "server_error"),
            );
        }
        Answer::Text(t) => (t.as_str(), None),
        Answer::Tool { name, arguments } => (
            "",
            Some(ToolCall {
                id: Some(format!("call_mock_{:08x}", o.id as u32)),
                name: name.clone(),
                arguments: arguments.clone(),
            }),
        ),
    };
    // Ollama says "stop" after a tool call too.
    let finish = if call.is_some() && !api.is_ollama() {
        "tool_calls"
    } else {
        "stop"
    };
    let usage = Usage {
        input_tokens: o.input_tokens,
        output_tokens: o.output_tokens,
    };
    if !stream {
        let r = ChatResponse {
            content: content.to_string(),
            tool_calls: call.into_iter().collect(),
            usage: Some(usage),
            finish_reason: Some(finish.to_string()),
            model: Some(model.clone()),
            raw: Value::Null,
        };
        let v = encode_response(api, &model, &request_id, &r);
        return json_response(StatusCode::OK, v.to_string().into_bytes());
    }
    let mut events: Vec<ChatEvent> = chunks(content)
        .into_iter()
        .map(|piece| ChatEvent::Content(piece.to_string()))
        .collect();
    if let Some(call) = call {
        let args = call.arguments_text();
        events.push(ChatEvent::ToolCall(ToolCallDelta {
            index: 0,
            id: call.id,
            name: Some(call.name),
            arguments: String::new(),
        }));
        // The arguments in two fragments, as real servers split them.
        let mid = args
            .char_indices()
            .nth(args.chars().count() / 2)
            .map_or(0, |(i, _)| i);
        for part in [&args[..mid], &args[mid..]] {
            events.push(ChatEvent::ToolCall(ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: part.to_string(),
            }));
        }
    }
    events.push(ChatEvent::Done {
        usage: with_usage.then_some(usage),
        finish_reason: Some(finish.to_string()),
        model: None,
    });
    let mut encoder = StreamEncoder::new(api, &model, &request_id);
    let mut bytes = Vec::new();
    for ev in &events {
        encoder.push(ev, &mut bytes);
    }
    stream_body(api, bytes, cfg.token_delay)
}

/// A streaming body: all at once when there is no token delay, else one
/// frame (an SSE event or an NDJSON line) per delay.
fn stream_body(api: ChatApi, bytes: Vec<u8>, delay: std::time::Duration) -> Response {
    let (content_type, separator): (&'static str, &[u8]) = if api.is_ollama() {
        ("application/x-ndjson", b"\n")
    } else {
        ("text/event-stream", b"\n\n")
    };
    let body = if delay.is_zero() {
        Body::from(bytes)
    } else {
        let stream = futures_util::stream::unfold(
            (Bytes::from(bytes), true),
            move |(mut rest, first)| async move {
                if rest.is_empty() {
                    return None;
                }
                // JSON text has no raw newlines, so a separator ends a frame.
                let end = rest
                    .windows(separator.len())
                    .position(|w| w == separator)
                    .map_or(rest.len(), |i| i + separator.len());
                let frame = rest.split_to(end);
                if !first {
                    tokio::time::sleep(delay).await;
                }
                Some((Ok::<_, Infallible>(frame), (rest, false)))
            },
        );
        Body::from_stream(stream)
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn ollama_tags() -> Response {
    let v = json!({"models": [{
        "name": "mock", "model": "mock", "modified_at": "1970-01-01T00:00:00Z",
        "size": 0, "digest": "mock",
        "details": {"format": "mock", "family": "mock", "parameter_size": "0", "quantization_level": "none"},
    }]});
    json_response(StatusCode::OK, v.to_string().into_bytes())
}

async fn openai_models() -> Response {
    let v = json!({"object": "list", "data": [
        {"id": "mock", "object": "model", "created": 0, "owned_by": "promptgate-mock-llm"},
    ]});
    json_response(StatusCode::OK, v.to_string().into_bytes())
}
