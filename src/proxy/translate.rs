//! The client APIs' request and response shapes, and conversion between
//! them and the upstream's: parsing a client body into a [`ClientRequest`],
//! encoding a finished [`ChatResponse`] for the client, and re-encoding
//! stream events (SSE for OpenAI, NDJSON for Ollama) when the client and
//! the upstream speak different dialects.
//!
//! Fields this layer does not know stay in [`ClientRequest::params`] and
//! reach the upstream through the provider's `build_body`, so `tools`,
//! `tool_choice`, `response_format`, Ollama `options`/`format`/`keep_alive`
//! pass through intact.

use serde_json::{Map, Value, json};

use super::error::{ApiError, Dialect};
use crate::provider::{ChatEvent, ChatResponse, ToolCall, Usage};

/// A chat request as a client sent it, in dialect-neutral form.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRequest {
    pub dialect: Dialect,
    pub model: String,
    pub messages: Vec<Value>,
    pub stream: bool,
    /// The `variables` extra field.
    pub variables: Option<Map<String, Value>>,
    /// The `user` field (OpenAI), the user id for sticky routing.
    pub user: Option<String>,
    /// Everything else, passed to the upstream.
    pub params: Map<String, Value>,
}

/// Keys of `/api/generate` with no chat equivalent; dropped.
const GENERATE_ONLY: &[&str] = &["raw", "template", "context", "suffix"];

fn take_str(body: &mut Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::field(key, "must be a string")),
    }
}

/// Parses a client body of `dialect`.
pub fn parse_request(dialect: Dialect, bytes: &[u8]) -> Result<ClientRequest, ApiError> {
    let mut body: Map<String, Value> = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not a JSON object: {e}"),
        )
        .in_dialect(dialect)
    })?;
    parse_map(dialect, &mut body).map_err(|e| e.in_dialect(dialect))
}

fn parse_map(dialect: Dialect, body: &mut Map<String, Value>) -> Result<ClientRequest, ApiError> {
    let model = take_str(body, "model")?
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::field("model", "is required"))?;
    let stream = match body.remove("stream") {
        None | Some(Value::Null) => dialect.is_ollama(), // Ollama streams by default.
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(ApiError::field("stream", "must be a boolean")),
    };
    let variables = match body.remove("variables") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err(ApiError::field("variables", "must be an object")),
    };
    let user = match body.get("user") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(_) => return Err(ApiError::field("user", "must be a string")),
    };
    let messages = match dialect {
        Dialect::OpenAi | Dialect::OllamaChat => match body.remove("messages") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(ms)) => {
                for (i, m) in ms.iter().enumerate() {
                    if !m.is_object() || !m.get("role").is_some_and(Value::is_string) {
                        return Err(ApiError::field(
                            format!("messages[{i}]"),
                            "must be an object with a string `role`",
                        ));
                    }
                }
                ms
            }
            Some(_) => return Err(ApiError::field("messages", "must be an array")),
        },
        Dialect::OllamaGenerate => {
            let prompt = take_str(body, "prompt")?.unwrap_or_default();
            let system = take_str(body, "system")?;
            let images = body.remove("images");
            for k in GENERATE_ONLY {
                body.remove(*k);
            }
            let mut ms = Vec::with_capacity(2);
            if let Some(s) = system {
                ms.push(json!({"role": "system", "content": s}));
            }
            let mut user = json!({"role": "user", "content": prompt});
            if let Some(images) = images {
                user["images"] = images;
            }
            ms.push(user);
            ms
        }
    };
    body.remove("stream_options");
    Ok(ClientRequest {
        dialect,
        model,
        messages,
        stream,
        variables,
        user,
        params: std::mem::take(body),
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn created_at() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn openai_usage(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

fn ollama_counts(v: &mut Value, u: Option<Usage>, finish: Option<&str>) {
    let u = u.unwrap_or_default();
    v["done"] = Value::Bool(true);
    v["done_reason"] = Value::String(finish.unwrap_or("stop").to_string());
    v["total_duration"] = json!(0);
    v["prompt_eval_count"] = json!(u.input_tokens);
    v["eval_count"] = json!(u.output_tokens);
}

/// A finished response in the client's dialect.
pub fn encode_response(dialect: Dialect, model: &str, request_id: &str, r: &ChatResponse) -> Value {
    match dialect {
        Dialect::OpenAi => {
            let mut message = json!({"role": "assistant", "content": r.content});
            if !r.tool_calls.is_empty() {
                if r.content.is_empty() {
                    message["content"] = Value::Null;
                }
                message["tool_calls"] = Value::Array(
                    r.tool_calls
                        .iter()
                        .enumerate()
                        .map(|(i, c)| c.to_openai(i))
                        .collect(),
                );
            }
            let finish = r.finish_reason.clone().unwrap_or_else(|| {
                if r.tool_calls.is_empty() {
                    "stop"
                } else {
                    "tool_calls"
                }
                .to_string()
            });
            json!({
                "id": format!("chatcmpl-{request_id}"),
                "object": "chat.completion",
                "created": now_secs(),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": openai_usage(r.usage.unwrap_or_default()),
            })
        }
        Dialect::OllamaChat => {
            let mut message = json!({"role": "assistant", "content": r.content});
            if !r.tool_calls.is_empty() {
                message["tool_calls"] =
                    Value::Array(r.tool_calls.iter().map(ToolCall::to_ollama).collect());
            }
            let mut v = json!({"model": model, "created_at": created_at(), "message": message});
            ollama_counts(&mut v, r.usage, r.finish_reason.as_deref());
            v
        }
        Dialect::OllamaGenerate => {
            let mut v = json!({"model": model, "created_at": created_at(), "response": r.content});
            ollama_counts(&mut v, r.usage, r.finish_reason.as_deref());
            v
        }
    }
}

/// Re-encodes upstream stream events for the client.
#[derive(Debug)]
pub struct StreamEncoder {
    dialect: Dialect,
    model: String,
    id: String,
    created: u64,
    started: bool,
    /// Ollama wants whole tool calls: OpenAI fragments collect here until Done.
    calls: Vec<(Option<String>, String, String)>,
}

impl StreamEncoder {
    pub fn new(dialect: Dialect, model: &str, request_id: &str) -> StreamEncoder {
        StreamEncoder {
            dialect,
            model: model.to_string(),
            id: format!("chatcmpl-{request_id}"),
            created: now_secs(),
            started: false,
            calls: Vec::new(),
        }
    }

    fn sse(out: &mut Vec<u8>, v: &Value) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(v.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    fn ndjson(out: &mut Vec<u8>, v: &Value) {
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b'\n');
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    }

    /// Appends the client bytes of `ev` to `out`.
    pub fn push(&mut self, ev: &ChatEvent, out: &mut Vec<u8>) {
        match self.dialect {
            Dialect::OpenAi => {
                if !self.started {
                    self.started = true;
                    Self::sse(
                        out,
                        &self.chunk(json!({"role": "assistant", "content": ""}), None),
                    );
                }
                match ev {
                    ChatEvent::Content(s) => {
                        Self::sse(out, &self.chunk(json!({"content": s}), None))
                    }
                    ChatEvent::ToolCall(d) => {
                        let mut call =
                            json!({"index": d.index, "function": {"arguments": d.arguments}});
                        if let Some(id) = &d.id {
                            call["id"] = json!(id);
                            call["type"] = json!("function");
                        }
                        if let Some(name) = &d.name {
                            call["function"]["name"] = json!(name);
                            if d.id.is_none() {
                                call["id"] = json!(format!("call_{}", d.index));
                                call["type"] = json!("function");
                            }
                        }
                        Self::sse(out, &self.chunk(json!({"tool_calls": [call]}), None));
                    }
                    ChatEvent::Done {
                        usage,
                        finish_reason,
                        ..
                    } => {
                        let finish = finish_reason.as_deref().unwrap_or("stop");
                        Self::sse(out, &self.chunk(json!({}), Some(finish)));
                        if let Some(u) = usage {
                            let mut v = self.chunk(json!({}), None);
                            v["choices"] = json!([]);
                            v["usage"] = openai_usage(*u);
                            Self::sse(out, &v);
                        }
                        out.extend_from_slice(b"data: [DONE]\n\n");
                    }
                }
            }
            Dialect::OllamaChat | Dialect::OllamaGenerate => match ev {
                ChatEvent::Content(s) => {
                    let v = if self.dialect == Dialect::OllamaChat {
                        json!({"model": self.model, "created_at": created_at(),
                            "message": {"role": "assistant", "content": s}, "done": false})
                    } else {
                        json!({"model": self.model, "created_at": created_at(), "response": s, "done": false})
                    };
                    Self::ndjson(out, &v);
                }
                ChatEvent::ToolCall(d) => {
                    while self.calls.len() <= d.index {
                        self.calls.push((None, String::new(), String::new()));
                    }
                    let c = &mut self.calls[d.index];
                    if d.id.is_some() {
                        c.0.clone_from(&d.id);
                    }
                    if let Some(n) = &d.name {
                        c.1.push_str(n);
                    }
                    c.2.push_str(&d.arguments);
                }
                ChatEvent::Done {
                    usage,
                    finish_reason,
                    ..
                } => {
                    if self.dialect == Dialect::OllamaChat && !self.calls.is_empty() {
                        let calls: Vec<Value> = std::mem::take(&mut self.calls)
                            .into_iter()
                            .filter(|c| !c.1.is_empty())
                            .map(|(id, name, args)| {
                                ToolCall::from_text(id, name, &args).to_ollama()
                            })
                            .collect();
                        Self::ndjson(
                            out,
                            &json!({"model": self.model, "created_at": created_at(),
                                "message": {"role": "assistant", "content": "", "tool_calls": calls},
                                "done": false}),
                        );
                    }
                    let mut v = if self.dialect == Dialect::OllamaChat {
                        json!({"model": self.model, "created_at": created_at(),
                            "message": {"role": "assistant", "content": ""}})
                    } else {
                        json!({"model": self.model, "created_at": created_at(), "response": ""})
                    };
                    ollama_counts(&mut v, *usage, finish_reason.as_deref());
                    Self::ndjson(out, &v);
                }
            },
        }
    }

    /// The bytes that tell the client the stream failed.
    pub fn error(&self, message: &str, out: &mut Vec<u8>) {
        match self.dialect {
            Dialect::OpenAi => {
                Self::sse(
                    out,
                    &json!({"error": {"message": message, "type": "server_error"}}),
                );
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            _ => Self::ndjson(out, &json!({ "error": message })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{StreamAccumulator, ToolCallDelta, ollama, openai};

    fn events() -> Vec<ChatEvent> {
        vec![
            ChatEvent::Content("Hel".into()),
            ChatEvent::Content("lo".into()),
            ChatEvent::ToolCall(ToolCallDelta {
                index: 0,
                id: Some("c1".into()),
                name: Some("get_weather".into()),
                arguments: "{\"city\":".into(),
            }),
            ChatEvent::ToolCall(ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: "\"Paris\"}".into(),
            }),
            ChatEvent::Done {
                usage: Some(Usage {
                    input_tokens: 3,
                    output_tokens: 4,
                }),
                finish_reason: Some("tool_calls".into()),
                model: None,
            },
        ]
    }

    fn accumulate(evs: Vec<ChatEvent>) -> ChatResponse {
        let mut acc = StreamAccumulator::new();
        for e in &evs {
            acc.push(e);
        }
        assert!(acc.is_done());
        acc.finish()
    }

    #[test]
    fn encoded_streams_decode_to_the_same_answer_in_both_dialects() {
        let want = accumulate(events());
        for dialect in [Dialect::OpenAi, Dialect::OllamaChat] {
            let mut enc = StreamEncoder::new(dialect, "prompt:x", "r1");
            let mut bytes = Vec::new();
            for e in &events() {
                enc.push(e, &mut bytes);
            }
            let evs = match dialect {
                Dialect::OpenAi => {
                    let mut d = openai::StreamDecoder::new();
                    let mut evs = d.push(&bytes).unwrap();
                    evs.extend(d.finish().unwrap());
                    evs
                }
                _ => {
                    let mut d = ollama::StreamDecoder::new();
                    let mut evs = d.push(&bytes).unwrap();
                    evs.extend(d.finish().unwrap());
                    evs
                }
            };
            let got = accumulate(evs);
            assert_eq!(got.content, want.content, "{dialect:?}");
            // Ollama has no call ids; name and arguments must survive.
            let calls = |r: &ChatResponse| {
                r.tool_calls
                    .iter()
                    .map(|c| (c.name.clone(), c.arguments.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(calls(&got), calls(&want), "{dialect:?}");
            if dialect == Dialect::OpenAi {
                assert_eq!(got.tool_calls, want.tool_calls);
            }
            assert_eq!(got.usage, want.usage, "{dialect:?}");
        }
    }

    #[test]
    fn generate_becomes_chat_messages_and_keeps_options() {
        let r = parse_request(
            Dialect::OllamaGenerate,
            br#"{"model":"m","prompt":"hi","system":"be brief","options":{"num_ctx":512},"raw":true}"#,
        )
        .unwrap();
        assert!(r.stream, "Ollama streams by default");
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.messages[1]["content"], "hi");
        assert_eq!(r.params["options"]["num_ctx"], 512);
        assert!(!r.params.contains_key("raw"));
    }

    fn json_leaf() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z \\u{e9}\\\"]{0,12}".prop_map(Value::String),
        ]
    }

    proptest::proptest! {
        /// Whatever extra fields a client sends reach `params` unchanged
        /// (that is how tools, response_format and options pass through),
        /// and the fields the proxy consumes never do.
        #[test]
        fn unknown_fields_pass_through_unchanged(
            extra in proptest::collection::btree_map("x_[a-z]{1,8}", json_leaf(), 0..6),
            nested in json_leaf(),
            stream in proptest::option::of(proptest::bool::ANY),
            ollama in proptest::bool::ANY,
        ) {
            let dialect = if ollama { Dialect::OllamaChat } else { Dialect::OpenAi };
            let mut body = Map::new();
            body.insert("model".into(), json!("prompt:p"));
            body.insert("messages".into(), json!([{"role": "user", "content": "hi"}]));
            body.insert("variables".into(), json!({"a": 1}));
            body.insert("options".into(), json!({"nested": nested.clone()}));
            if let Some(s) = stream {
                body.insert("stream".into(), json!(s));
            }
            for (k, v) in &extra {
                body.insert(k.clone(), v.clone());
            }
            let r = parse_request(dialect, Value::Object(body).to_string().as_bytes()).unwrap();
            proptest::prop_assert_eq!(r.stream, stream.unwrap_or(ollama));
            proptest::prop_assert_eq!(r.variables, Some(json!({"a": 1}).as_object().unwrap().clone()));
            proptest::prop_assert_eq!(&r.params["options"], &json!({"nested": nested}));
            for (k, v) in &extra {
                proptest::prop_assert_eq!(&r.params[k], v);
            }
            for consumed in ["model", "messages", "variables", "stream"] {
                proptest::prop_assert!(!r.params.contains_key(consumed));
            }
            proptest::prop_assert_eq!(r.params.len(), extra.len() + 1);
        }

        /// Arbitrary bytes are an error, never a panic.
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            for d in [Dialect::OpenAi, Dialect::OllamaChat, Dialect::OllamaGenerate] {
                let _ = parse_request(d, &bytes);
            }
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let e = parse_request(Dialect::OpenAi, br#"{"model": 3}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("model"));
        let e = parse_request(Dialect::OpenAi, br#"{"model":"m","messages":[1]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("messages[0]"));
        let e = parse_request(Dialect::OpenAi, br#"{"model":"m","variables":[]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("variables"));
        assert!(parse_request(Dialect::OpenAi, b"not json").is_err());
    }
}
