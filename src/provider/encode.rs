//! Answers in the client APIs' wire formats: a finished [`ChatResponse`] as
//! one JSON body ([`encode_response`]) and stream events as SSE (OpenAI) or
//! NDJSON (Ollama) bytes ([`StreamEncoder`]). The inverse of the decoders in
//! [`super::openai`] and [`super::ollama`]; used by everything that answers
//! a client: the proxy and the mock-llm server.
//!
//! Invariant: bytes a [`StreamEncoder`] writes decode, with this module's
//! sibling decoders, to the events it was given (a test pins this), so an
//! answer survives any pairing of client and upstream dialects.

use serde_json::{Value, json};

use super::{ChatEvent, ChatResponse, ToolCall, ToolCallFragments, Usage};

/// Which client API an answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatApi {
    /// `POST /v1/chat/completions`.
    OpenAi,
    /// `POST /api/chat`.
    OllamaChat,
    /// `POST /api/generate`.
    OllamaGenerate,
}

impl ChatApi {
    pub fn is_ollama(self) -> bool {
        matches!(self, ChatApi::OllamaChat | ChatApi::OllamaGenerate)
    }
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
    // Ollama reports timings too; the encoders know none, so they are 0.
    for timing in [
        "total_duration",
        "load_duration",
        "prompt_eval_duration",
        "eval_duration",
    ] {
        v[timing] = json!(0);
    }
    v["prompt_eval_count"] = json!(u.input_tokens);
    v["eval_count"] = json!(u.output_tokens);
}

/// A finished response in the client's dialect.
pub fn encode_response(api: ChatApi, model: &str, request_id: &str, r: &ChatResponse) -> Value {
    match api {
        ChatApi::OpenAi => {
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
        ChatApi::OllamaChat => {
            let mut message = json!({"role": "assistant", "content": r.content});
            if !r.tool_calls.is_empty() {
                message["tool_calls"] =
                    Value::Array(r.tool_calls.iter().map(ToolCall::to_ollama).collect());
            }
            let mut v = json!({"model": model, "created_at": created_at(), "message": message});
            ollama_counts(&mut v, r.usage, r.finish_reason.as_deref());
            v
        }
        ChatApi::OllamaGenerate => {
            let mut v = json!({"model": model, "created_at": created_at(), "response": r.content});
            ollama_counts(&mut v, r.usage, r.finish_reason.as_deref());
            v
        }
    }
}

/// Re-encodes upstream stream events for the client.
#[derive(Debug)]
pub struct StreamEncoder {
    api: ChatApi,
    model: String,
    id: String,
    created: u64,
    started: bool,
    /// Ollama wants whole tool calls: OpenAI fragments collect here until Done.
    calls: ToolCallFragments,
}

impl StreamEncoder {
    pub fn new(api: ChatApi, model: &str, request_id: &str) -> StreamEncoder {
        StreamEncoder {
            api,
            model: model.to_string(),
            id: format!("chatcmpl-{request_id}"),
            created: now_secs(),
            started: false,
            calls: ToolCallFragments::default(),
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
        match self.api {
            ChatApi::OpenAi => {
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
            ChatApi::OllamaChat | ChatApi::OllamaGenerate => match ev {
                ChatEvent::Content(s) => {
                    let v = if self.api == ChatApi::OllamaChat {
                        json!({"model": self.model, "created_at": created_at(),
                            "message": {"role": "assistant", "content": s}, "done": false})
                    } else {
                        json!({"model": self.model, "created_at": created_at(), "response": s, "done": false})
                    };
                    Self::ndjson(out, &v);
                }
                ChatEvent::ToolCall(d) => self.calls.push(d),
                ChatEvent::Done {
                    usage,
                    finish_reason,
                    ..
                } => {
                    if self.api == ChatApi::OllamaChat && !self.calls.is_empty() {
                        let calls: Vec<Value> = std::mem::take(&mut self.calls)
                            .finish()
                            .iter()
                            .map(ToolCall::to_ollama)
                            .collect();
                        Self::ndjson(
                            out,
                            &json!({"model": self.model, "created_at": created_at(),
                                "message": {"role": "assistant", "content": "", "tool_calls": calls},
                                "done": false}),
                        );
                    }
                    let mut v = if self.api == ChatApi::OllamaChat {
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
        match self.api {
            ChatApi::OpenAi => {
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
    use crate::provider::{EventDecoder, StreamAccumulator, ToolCallDelta, ollama, openai};

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
        for api in [ChatApi::OpenAi, ChatApi::OllamaChat] {
            let mut enc = StreamEncoder::new(api, "prompt:x", "r1");
            let mut bytes = Vec::new();
            for e in &events() {
                enc.push(e, &mut bytes);
            }
            let mut d: Box<dyn EventDecoder> = match api {
                ChatApi::OpenAi => Box::new(openai::StreamDecoder::new()),
                _ => Box::new(ollama::StreamDecoder::new()),
            };
            let mut evs = d.push(&bytes).unwrap();
            evs.extend(d.finish().unwrap());
            let got = accumulate(evs);
            assert_eq!(got.content, want.content, "{api:?}");
            // Ollama has no call ids; name and arguments must survive.
            let calls = |r: &ChatResponse| {
                r.tool_calls
                    .iter()
                    .map(|c| (c.name.clone(), c.arguments.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(calls(&got), calls(&want), "{api:?}");
            if api == ChatApi::OpenAi {
                assert_eq!(got.tool_calls, want.tool_calls);
            }
            assert_eq!(got.usage, want.usage, "{api:?}");
        }
    }
}
