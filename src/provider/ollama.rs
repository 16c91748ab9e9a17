//! The Ollama native dialect: `POST {base}/api/chat`, NDJSON streaming.
//!
//! Body mapping ([`Ollama::build_body`](Dialect::build_body)): `format`, `tools`, `keep_alive`, `think`
//! stay top-level; OpenAI's `response_format` becomes `format` (`"json"` for
//! `json_object`, the schema for `json_schema`); `max_tokens` becomes
//! `options.num_predict`; every other parameter (`temperature`, `seed`,
//! `top_p`, `stop`, `num_ctx`, ...) goes into `options`, and an explicit
//! `options` object wins key by key. Tool-call arguments in assistant
//! messages are sent as objects, as Ollama expects.
//!
//! Usage: `prompt_eval_count` is input tokens, `eval_count` output tokens;
//! both arrive on the final (`done: true`) object.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::dialect::Dialect;
use super::error::DecodeError;
use super::wire::{NdjsonDecoder, Obj, present, str_field};
use super::{
    ChatApi, ChatEvent, ChatRequest, ChatResponse, EventDecoder, ToolCall, ToolCallDelta, Usage,
};

/// Keys that stay at the top level of an Ollama request.
const TOP_LEVEL: &[&str] = &["format", "tools", "keep_alive", "think"];
/// OpenAI-only keys with no Ollama meaning; dropped rather than sent as options.
const DROPPED: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "tool_choice",
    "parallel_tool_calls",
    "n",
    "user",
    "logit_bias",
    "logprobs",
    "top_logprobs",
];

fn format_from_response_format(rf: &Value) -> Option<Value> {
    match rf.get("type").and_then(Value::as_str)? {
        "json_object" => Some(Value::String("json".into())),
        "json_schema" => rf
            .get("json_schema")
            .and_then(|s| s.get("schema"))
            .cloned()
            .or(Some(Value::String("json".into()))),
        _ => None,
    }
}

/// Converts OpenAI-shaped parts of a message to Ollama's: tool-call
/// arguments as objects, a content array as its text. Everything else is kept.
fn normalize_message(m: &Value) -> Value {
    let mut m = m.clone();
    if let Some(obj) = m.as_object_mut() {
        if let Some(c) = obj.get("content")
            && c.is_array()
        {
            let text = super::content_text(c).unwrap_or_default();
            obj.insert("content".into(), Value::String(text));
        }
        if let Some(Value::Array(calls)) = obj.get_mut("tool_calls") {
            for call in calls {
                if let Some(args) = call.pointer_mut("/function/arguments")
                    && let Value::String(s) = args
                    && let Ok(v) = serde_json::from_str::<Value>(s)
                {
                    *args = v;
                }
            }
        }
    }
    m
}

fn tool_calls(message: &Value) -> Vec<ToolCall> {
    tool_calls_of(message.get("tool_calls"))
}

fn tool_calls_of(calls: Option<&Value>) -> Vec<ToolCall> {
    let Some(calls) = calls.and_then(Value::as_array) else {
        return Vec::new();
    };
    calls
        .iter()
        .filter_map(|c| {
            let f = c.get("function")?;
            let name = f.get("name")?.as_str()?.to_string();
            let arguments = match f.get("arguments") {
                Some(Value::String(s)) => ToolCall::from_text(None, name.clone(), s).arguments,
                Some(v) => v.clone(),
                None => Value::Object(Map::new()),
            };
            Some(ToolCall {
                id: c.get("id").and_then(Value::as_str).map(str::to_string),
                name,
                arguments,
            })
        })
        .collect()
}

fn usage(v: &Value) -> Option<Usage> {
    let input = v.get("prompt_eval_count").and_then(Value::as_u64);
    let output = v.get("eval_count").and_then(Value::as_u64);
    if input.is_none() && output.is_none() {
        return None;
    }
    Some(Usage {
        input_tokens: input.unwrap_or(0),
        output_tokens: output.unwrap_or(0),
    })
}

/// Decodes an `/api/chat` NDJSON stream into events.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    lines: NdjsonDecoder,
    next_tool_index: usize,
    done: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    fn line(&mut self, line: &str, out: &mut Vec<ChatEvent>) -> Result<(), DecodeError> {
        if self.done {
            return Ok(());
        }
        // The usual line, read without building a JSON tree; anything the
        // strict types do not accept takes the general path, which gives
        // the same result wherever both apply (as in the OpenAI decoder).
        if let Ok(Obj(l)) = serde_json::from_str::<Obj<LineWire<'_>>>(line)
            && !l.error
        {
            if let Some(Obj(message)) = l.message {
                if let Some(c) = message.content
                    && !c.is_empty()
                {
                    out.push(ChatEvent::Content(c.into_owned()));
                }
                self.push_tool_calls(message.tool_calls.as_ref(), out);
            }
            if l.done == Some(true) {
                self.done = true;
                let usage =
                    (l.prompt_eval_count.is_some() || l.eval_count.is_some()).then(|| Usage {
                        input_tokens: l.prompt_eval_count.unwrap_or(0),
                        output_tokens: l.eval_count.unwrap_or(0),
                    });
                out.push(ChatEvent::Done {
                    usage,
                    finish_reason: l.done_reason.map(Cow::into_owned),
                    model: l.model.map(Cow::into_owned),
                });
            }
            return Ok(());
        }
        self.line_general(line, out)
    }

    fn line_general(&mut self, line: &str, out: &mut Vec<ChatEvent>) -> Result<(), DecodeError> {
        let v: Value = serde_json::from_str(line).map_err(|source| DecodeError::Event {
            what: "NDJSON line",
            source,
        })?;
        if let Some(err) = v.get("error") {
            return Err(DecodeError::UpstreamInStream(err.clone()));
        }
        if let Some(message) = v.get("message") {
            if let Some(c) = message.get("content").and_then(Value::as_str)
                && !c.is_empty()
            {
                out.push(ChatEvent::Content(c.to_string()));
            }
            self.push_tool_calls(message.get("tool_calls"), out);
        }
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            self.done = true;
            out.push(ChatEvent::Done {
                usage: usage(&v),
                finish_reason: str_field(&v, "done_reason"),
                model: str_field(&v, "model"),
            });
        }
        Ok(())
    }

    fn push_tool_calls(&mut self, calls: Option<&Value>, out: &mut Vec<ChatEvent>) {
        for call in tool_calls_of(calls) {
            let arguments = call.arguments_text();
            out.push(ChatEvent::ToolCall(ToolCallDelta {
                index: self.next_tool_index,
                id: call.id,
                name: Some(call.name),
                arguments,
            }));
            self.next_tool_index += 1;
        }
    }
}

impl EventDecoder for StreamDecoder {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<ChatEvent>, DecodeError> {
        let mut out = Vec::new();
        for line in self.lines.push(chunk) {
            self.line(&line, &mut out)?;
        }
        Ok(out)
    }

    /// The rest at the end of the body; an error if `done: true` never came.
    fn finish(&mut self) -> Result<Vec<ChatEvent>, DecodeError> {
        let mut out = Vec::new();
        for line in self.lines.finish() {
            self.line(&line, &mut out)?;
        }
        if !self.done {
            return Err(DecodeError::EndedEarly("done: true"));
        }
        Ok(out)
    }
}

/// The fields of a stream line the decoder reads, borrowed from its text
/// where no escapes need decoding.
#[derive(Deserialize)]
struct LineWire<'a> {
    /// Whether an `error` key is there at all (even `null`).
    #[serde(default, deserialize_with = "present")]
    error: bool,
    #[serde(default, borrow)]
    message: Option<Obj<MessageWire<'a>>>,
    #[serde(default)]
    done: Option<bool>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default, borrow)]
    done_reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MessageWire<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Value>,
}

/// The Ollama wire format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ollama;

impl Dialect for Ollama {
    const API: ChatApi = ChatApi::OllamaChat;

    fn chat_url_for(base_url: &str) -> String {
        format!("{}/api/chat", base_url.trim_end_matches('/'))
    }

    /// The `/api/chat` body for `req`.
    fn build_body(req: &ChatRequest, stream: bool) -> Value {
        let mut body = Map::new();
        body.insert("model".into(), Value::String(req.model.clone()));
        body.insert(
            "messages".into(),
            Value::Array(req.messages.iter().map(normalize_message).collect()),
        );
        body.insert("stream".into(), Value::Bool(stream));
        let mut options = Map::new();
        let mut explicit = None;
        for (k, v) in &req.params {
            match k.as_str() {
                "options" => explicit = v.as_object(),
                "response_format" => {
                    if !req.params.contains_key("format")
                        && let Some(f) = format_from_response_format(v)
                    {
                        body.insert("format".into(), f);
                    }
                }
                "max_tokens" | "max_completion_tokens" => {
                    options.insert("num_predict".into(), v.clone());
                }
                k if TOP_LEVEL.contains(&k) => {
                    body.insert(k.to_string(), v.clone());
                }
                k if DROPPED.contains(&k) => {}
                _ => {
                    options.insert(k.clone(), v.clone());
                }
            }
        }
        if let Some(explicit) = explicit {
            for (k, v) in explicit {
                options.insert(k.clone(), v.clone());
            }
        }
        if !options.is_empty() {
            body.insert("options".into(), Value::Object(options));
        }
        Value::Object(body)
    }

    /// Parses a non-streaming `/api/chat` response.
    fn parse_response(v: Value) -> Result<ChatResponse, DecodeError> {
        if let Some(err) = v.get("error") {
            return Err(DecodeError::Upstream(err.clone()));
        }
        let message = v.get("message").ok_or(DecodeError::Missing("message"))?;
        Ok(ChatResponse {
            content: message
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            tool_calls: tool_calls(message),
            usage: usage(&v),
            finish_reason: str_field(&v, "done_reason"),
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
    use serde_json::json;

    fn line() -> impl Strategy<Value = Value> {
        let call = optional_fields(vec![("id", or_any(leaf())), ("function", function())]);
        let message = message_like(call);
        or_any(optional_fields(vec![
            ("model", or_any(leaf())),
            ("message", or_any(message)),
            ("done", or_any(any::<bool>().prop_map(Value::from))),
            ("done_reason", or_any(leaf())),
            (
                "prompt_eval_count",
                or_any((0u64..50).prop_map(Value::from)),
            ),
            ("eval_count", or_any((0u64..50).prop_map(Value::from))),
        ]))
        .prop_flat_map(with_rare_error)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn the_typed_line_path_agrees_with_the_general_one(
            lines in prop::collection::vec(line(), 1..4)
        ) {
            let (mut fast, mut general) = (StreamDecoder::new(), StreamDecoder::new());
            for l in &lines {
                let text = l.to_string();
                let (mut a, mut b) = (Vec::new(), Vec::new());
                if fast.done {
                    break;
                }
                let ra = fast.line(&text, &mut a);
                let rb = general.line_general(&text, &mut b);
                prop_assert_eq!(
                    ra.map_err(|e| e.to_string()),
                    rb.map_err(|e| e.to_string()),
                    "{}", text
                );
                prop_assert_eq!(a, b, "{}", text);
                prop_assert_eq!(
                    (fast.done, fast.next_tool_index),
                    (general.done, general.next_tool_index),
                    "{}", text
                );
            }
        }
    }

    #[test]
    fn a_usual_line_is_decoded_and_the_last_carries_the_counts() {
        let mut d = StreamDecoder::new();
        let mut out = Vec::new();
        d.line(
            r#"{"model":"m","message":{"role":"assistant","content":"Pa\"ris"},"done":false}"#,
            &mut out,
        )
        .unwrap();
        let last = json!({"model": "m", "message": {"role": "assistant", "content": ""},
            "done": true, "done_reason": "stop", "prompt_eval_count": 7, "eval_count": 3});
        d.line(&last.to_string(), &mut out).unwrap();
        assert_eq!(
            out,
            [
                ChatEvent::Content("Pa\"ris".into()),
                ChatEvent::Done {
                    usage: Some(Usage {
                        input_tokens: 7,
                        output_tokens: 3
                    }),
                    finish_reason: Some("stop".into()),
                    model: Some("m".into()),
                }
            ]
        );
    }
}
