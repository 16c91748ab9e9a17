//! The OpenAI-compatible dialect: `POST {base}/v1/chat/completions`, SSE
//! streaming ending in `data: [DONE]`. Covers vLLM, llama.cpp server, LM
//! Studio, TGI and OpenAI.
//!
//! Body mapping ([`OpenAi::build_body`](Dialect::build_body)): parameters are top-level as they are
//! (`temperature`, `seed`, `top_p`, `max_tokens`, `stop`, `tools`,
//! `tool_choice`, `response_format`, ...). Ollama-shaped ones are
//! translated: `format: "json"` becomes `response_format: {type:
//! json_object}`, a schema `format` becomes `json_schema`, `num_predict`
//! becomes `max_tokens`, and the generic keys inside an `options` object are
//! lifted; Ollama-only knobs (`num_ctx`, `keep_alive`, ...) are dropped. A
//! streaming request asks for `stream_options: {include_usage: true}`.
//! Tool-call arguments in assistant messages are sent as JSON text.
//!
//! The base URL may or may not end in `/v1`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::dialect::Dialect;
use super::error::DecodeError;
use super::wire::{Obj, SseDecoder, present, str_field};
use super::{
    ChatApi, ChatEvent, ChatRequest, ChatResponse, EventDecoder, ToolCall, ToolCallDelta, Usage,
};

/// Ollama-only keys with no OpenAI meaning.
const DROPPED: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "keep_alive",
    "think",
    "num_ctx",
    "num_gpu",
    "num_thread",
    "num_batch",
    "num_keep",
    "repeat_last_n",
    "mirostat",
    "mirostat_eta",
    "mirostat_tau",
];
/// Keys of an Ollama `options` object that OpenAI has at the top level.
const LIFTED_OPTIONS: &[&str] = &[
    "temperature",
    "seed",
    "top_p",
    "stop",
    "presence_penalty",
    "frequency_penalty",
];

/// Converts Ollama-shaped tool calls in a message to OpenAI's: arguments as
/// JSON text, `type: function`, an id when missing. Everything else is kept.
fn normalize_message(m: &Value) -> Value {
    let mut m = m.clone();
    if let Some(Value::Array(calls)) = m.get_mut("tool_calls") {
        for (i, call) in calls.iter_mut().enumerate() {
            let Some(obj) = call.as_object_mut() else {
                continue;
            };
            obj.entry("type")
                .or_insert_with(|| Value::String("function".into()));
            obj.entry("id")
                .or_insert_with(|| Value::String(format!("call_{i}")));
            if let Some(args) = obj.get_mut("function").and_then(|f| f.get_mut("arguments"))
                && !args.is_string()
            {
                *args = Value::String(args.to_string());
            }
        }
    }
    m
}

fn usage(v: &Value) -> Option<Usage> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    Some(Usage {
        input_tokens: u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        output_tokens: u
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    })
}

/// Decodes a chat-completions SSE stream into events. [`ChatEvent::Done`]
/// comes at `[DONE]` and carries the usage chunk's counts (if the server
/// sent one) and the last `finish_reason`.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    sse: SseDecoder,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    model: Option<String>,
    done: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    fn data(&mut self, data: &str, out: &mut Vec<ChatEvent>) -> Result<(), DecodeError> {
        if self.done {
            return Ok(());
        }
        if data.trim() == "[DONE]" {
            self.done = true;
            out.push(self.done_event());
            return Ok(());
        }
        // The usual chunk, read without building a JSON tree (a quarter of
        // the proxy's CPU in a stream). Anything it does not accept (wrong
        // types, an `error`, not an object) takes the general path below,
        // which gives the same result wherever both apply.
        if let Ok(Obj(chunk)) = serde_json::from_str::<Obj<ChunkWire<'_>>>(data)
            && !chunk.error
        {
            self.apply(chunk, out);
            return Ok(());
        }
        self.data_general(data, out)
    }

    fn data_general(&mut self, data: &str, out: &mut Vec<ChatEvent>) -> Result<(), DecodeError> {
        let v: Value = serde_json::from_str(data).map_err(|source| DecodeError::Event {
            what: "SSE data",
            source,
        })?;
        if let Some(err) = v.get("error") {
            return Err(DecodeError::UpstreamInStream(err.clone()));
        }
        if let Some(m) = v.get("model").and_then(Value::as_str) {
            self.set_model(m);
        }
        if let Some(u) = usage(&v) {
            self.usage = Some(u);
        }
        let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else {
            return Ok(());
        };
        if let Some(r) = str_field(choice, "finish_reason") {
            self.finish_reason = Some(r);
        }
        let Some(delta) = choice.get("delta") else {
            return Ok(());
        };
        if let Some(c) = delta.get("content").and_then(Value::as_str)
            && !c.is_empty()
        {
            out.push(ChatEvent::Content(c.to_string()));
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            push_tool_calls(calls, out);
        }
        Ok(())
    }

    fn apply(&mut self, chunk: ChunkWire<'_>, out: &mut Vec<ChatEvent>) {
        if let Some(m) = &chunk.model {
            self.set_model(m);
        }
        if let Some(Obj(u)) = chunk.usage {
            self.usage = Some(Usage {
                input_tokens: u.prompt_tokens.unwrap_or(0),
                output_tokens: u.completion_tokens.unwrap_or(0),
            });
        }
        let Some(Obj(choice)) = chunk.choices.and_then(|c| c.into_iter().next()) else {
            return;
        };
        if let Some(r) = choice.finish_reason {
            self.finish_reason = Some(r.into_owned());
        }
        let Some(Obj(delta)) = choice.delta else {
            return;
        };
        if let Some(c) = delta.content
            && !c.is_empty()
        {
            out.push(ChatEvent::Content(c.into_owned()));
        }
        if let Some(calls) = delta.tool_calls {
            push_tool_calls(&calls, out);
        }
    }

    fn set_model(&mut self, m: &str) {
        if self.model.as_deref() != Some(m) {
            self.model = Some(m.to_string());
        }
    }

    fn done_event(&self) -> ChatEvent {
        ChatEvent::Done {
            usage: self.usage,
            finish_reason: self.finish_reason.clone(),
            model: self.model.clone(),
        }
    }
}

impl EventDecoder for StreamDecoder {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<ChatEvent>, DecodeError> {
        let mut out = Vec::new();
        for ev in self.sse.push(chunk) {
            self.data(&ev.data, &mut out)?;
        }
        Ok(out)
    }

    /// The rest at the end of the body. A stream without `[DONE]` is
    /// accepted when a `finish_reason` arrived (some servers omit it);
    /// otherwise it ended early and that is an error.
    fn finish(&mut self) -> Result<Vec<ChatEvent>, DecodeError> {
        let mut out = Vec::new();
        for ev in self.sse.finish() {
            self.data(&ev.data, &mut out)?;
        }
        if !self.done {
            if self.finish_reason.is_none() {
                return Err(DecodeError::EndedEarly("[DONE]"));
            }
            self.done = true;
            out.push(self.done_event());
        }
        Ok(out)
    }
}

fn push_tool_calls(calls: &[Value], out: &mut Vec<ChatEvent>) {
    for (pos, c) in calls.iter().enumerate() {
        let f = c.get("function");
        out.push(ChatEvent::ToolCall(ToolCallDelta {
            index: c
                .get("index")
                .and_then(Value::as_u64)
                .map_or(pos, |i| i as usize),
            id: str_field(c, "id"),
            name: f.and_then(|f| str_field(f, "name")),
            arguments: f
                .and_then(|f| f.get("arguments"))
                .map(|a| match a {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default(),
        }));
    }
}

/// The fields of a stream chunk the decoder reads, borrowed from its text
/// where no escapes need decoding. Types are strict: a chunk they do not
/// fit goes to the general path.
#[derive(Deserialize)]
struct ChunkWire<'a> {
    /// Whether an `error` key is there at all (even `null`).
    #[serde(default, deserialize_with = "present")]
    error: bool,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<Obj<UsageWire>>,
    #[serde(default, borrow)]
    choices: Option<Vec<Obj<ChoiceWire<'a>>>>,
}

#[derive(Deserialize)]
struct UsageWire {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ChoiceWire<'a> {
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    delta: Option<Obj<DeltaWire<'a>>>,
}

#[derive(Deserialize)]
struct DeltaWire<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
}

/// The OpenAi wire format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenAi;

impl Dialect for OpenAi {
    const API: ChatApi = ChatApi::OpenAi;

    fn chat_url_for(base_url: &str) -> String {
        let base = base_url.trim_end_matches('/');
        if base.ends_with("/v1") {
            format!("{base}/chat/completions")
        } else {
            format!("{base}/v1/chat/completions")
        }
    }

    /// The `/v1/chat/completions` body for `req`.
    fn build_body(req: &ChatRequest, stream: bool) -> Value {
        let mut body = Map::new();
        body.insert("model".into(), Value::String(req.model.clone()));
        body.insert(
            "messages".into(),
            Value::Array(req.messages.iter().map(normalize_message).collect()),
        );
        for (k, v) in &req.params {
            match k.as_str() {
                "options" => {
                    if let Some(opts) = v.as_object() {
                        for (ok, ov) in opts {
                            if LIFTED_OPTIONS.contains(&ok.as_str()) && !req.params.contains_key(ok)
                            {
                                body.insert(ok.clone(), ov.clone());
                            } else if ok == "num_predict" && !req.params.contains_key("max_tokens")
                            {
                                body.insert("max_tokens".into(), ov.clone());
                            }
                        }
                    }
                }
                "format" => {
                    if !req.params.contains_key("response_format") {
                        let rf = match v {
                            Value::String(s) if s == "json" => Some(json!({"type": "json_object"})),
                            Value::Object(_) => Some(json!({
                                "type": "json_schema",
                                "json_schema": {"name": "response", "schema": v},
                            })),
                            _ => None,
                        };
                        if let Some(rf) = rf {
                            body.insert("response_format".into(), rf);
                        }
                    }
                }
                "num_predict" => {
                    if !req.params.contains_key("max_tokens") {
                        body.insert("max_tokens".into(), v.clone());
                    }
                }
                k if DROPPED.contains(&k) => {}
                _ => {
                    body.insert(k.clone(), v.clone());
                }
            }
        }
        body.insert("stream".into(), Value::Bool(stream));
        if stream {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
        Value::Object(body)
    }

    /// Parses a non-streaming chat completion.
    fn parse_response(v: Value) -> Result<ChatResponse, DecodeError> {
        if let Some(err) = v.get("error") {
            return Err(DecodeError::Upstream(err.clone()));
        }
        let choice = v
            .get("choices")
            .and_then(|c| c.get(0))
            .ok_or(DecodeError::Missing("choices[0]"))?;
        let message = choice
            .get("message")
            .ok_or(DecodeError::Missing("choices[0].message"))?;
        let tool_calls = message
            .get("tool_calls")
            .and_then(Value::as_array)
            .map(|calls| {
                calls
                    .iter()
                    .filter_map(|c| {
                        let f = c.get("function")?;
                        let name = f.get("name")?.as_str()?.to_string();
                        let id = c.get("id").and_then(Value::as_str).map(str::to_string);
                        Some(match f.get("arguments") {
                            Some(Value::String(s)) => ToolCall::from_text(id, name, s),
                            Some(other) => ToolCall {
                                id,
                                name,
                                arguments: other.clone(),
                            },
                            None => ToolCall::from_text(id, name, ""),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(ChatResponse {
            content: message
                .get("content")
                .and_then(super::content_text)
                .unwrap_or_default(),
            tool_calls,
            usage: usage(&v),
            finish_reason: str_field(choice, "finish_reason"),
            model: str_field(&v, "model"),
            raw: v,
        })
    }

    fn decoder() -> Box<dyn EventDecoder> {
        Box::new(StreamDecoder::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::wire::json_strategies::{
        function, leaf, message_like, optional_fields, or_any, with_rare_error,
    };
    use proptest::prelude::*;

    fn chunk() -> impl Strategy<Value = Value> {
        let tool_call = optional_fields(vec![
            ("index", or_any((0u64..3).prop_map(Value::from))),
            ("id", or_any(leaf())),
            ("function", function()),
        ]);
        let delta = message_like(tool_call);
        let choice = optional_fields(vec![
            ("index", leaf().boxed()),
            ("finish_reason", or_any(leaf())),
            ("delta", or_any(delta)),
        ]);
        let usage = optional_fields(vec![
            ("prompt_tokens", or_any(leaf())),
            ("completion_tokens", or_any(leaf())),
        ]);
        or_any(optional_fields(vec![
            ("id", leaf().boxed()),
            ("model", or_any(leaf())),
            ("usage", or_any(usage)),
            (
                "choices",
                or_any(prop::collection::vec(choice, 0..3).prop_map(Value::from)),
            ),
        ]))
        .prop_flat_map(with_rare_error)
    }

    fn state(d: &StreamDecoder) -> (Option<Usage>, Option<String>, Option<String>) {
        (d.usage, d.finish_reason.clone(), d.model.clone())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn the_typed_chunk_path_agrees_with_the_general_one(
            chunks in prop::collection::vec(chunk(), 1..4)
        ) {
            let (mut fast, mut general) = (StreamDecoder::new(), StreamDecoder::new());
            for c in &chunks {
                let text = c.to_string();
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let ra = fast.data(&text, &mut a);
                let rb = general.data_general(&text, &mut b);
                prop_assert_eq!(
                    ra.map_err(|e| e.to_string()),
                    rb.map_err(|e| e.to_string()),
                    "{}", text
                );
                prop_assert_eq!(a, b, "{}", text);
                prop_assert_eq!(state(&fast), state(&general), "{}", text);
            }
        }
    }

    #[test]
    fn a_usual_chunk_is_decoded_and_an_error_key_stops_the_stream() {
        let mut d = StreamDecoder::new();
        let mut out = Vec::new();
        let chunk = r#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"Pa\"ris"},"finish_reason":null}]}"#;
        d.data(chunk, &mut out).unwrap();
        assert_eq!(out, [ChatEvent::Content("Pa\"ris".into())]);
        assert_eq!(d.model.as_deref(), Some("m"));
        let err = d.data(r#"{"error":null}"#, &mut out).unwrap_err();
        assert!(err.to_string().contains("upstream error"), "{err}");
    }
}
