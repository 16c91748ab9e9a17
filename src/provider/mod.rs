//! Calling LLM servers: one [`Provider`] trait with a non-streaming and a
//! streaming chat call, implemented once over HTTP (`dialect::HttpProvider`)
//! for two wire formats: the Ollama native API ([`ollama`]) and
//! OpenAI-compatible servers ([`openai`]); [`ModelClient`] binds a provider to one
//! model of `promptgate.yaml` with its parameters, price and timeouts;
//! [`encode`] writes answers in the client APIs' wire formats, for servers
//! that answer clients (the proxy, `crate::mock_llm`).
//!
//! Invariants:
//! - Messages are JSON objects and travel as such, so fields this layer does
//!   not know (`tool_calls`, `tool_call_id`, `images`, ...) reach the
//!   upstream; only the tool-call argument encoding is converted between
//!   the two dialects (object for Ollama, JSON string for OpenAI).
//! - Provider-specific parameters (`options`, `format`, `response_format`,
//!   `tools`, ...) reach the upstream intact; generic ones are placed where
//!   each dialect expects them (see the `Dialect` impls of `ollama` and `openai`).
//! - One connection pool (TCP_NODELAY) per process, connect timeout and
//!   client: hyper's for plain-HTTP upstreams no proxy variable covers,
//!   reqwest's for the rest (TLS, proxies); see `http::Upstream`.
//! - Retries happen only in [`retry`]; API keys never appear in errors or logs.

pub(crate) mod client;
pub(crate) mod dialect;
pub(crate) mod encode;
pub(crate) mod error;
pub(crate) mod http;
pub(crate) mod ollama;
pub(crate) mod openai;
pub(crate) mod retry;
pub(crate) mod wire;

#[cfg(test)]
mod chunking_tests;

use std::fmt;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub(crate) use crate::spec::config::Timeouts;
pub use client::{ModelClient, provider_with_key};
pub(crate) use client::{merge_params, message_json};
pub(crate) use encode::ChatApi;
pub(crate) use error::DecodeError;
pub use error::{ErrorKind, ProviderError, TimeoutPhase};
pub use http::read_body;
pub(crate) use http::{UpstreamBody, UpstreamResponse};

/// One chat call, independent of the wire format.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    /// The model name the upstream knows (e.g. `llama3.2:1b`).
    pub model: String,
    /// Chat messages as JSON objects (`role`, `content`, optional
    /// `tool_calls`, `tool_call_id`, ...).
    pub messages: Vec<Value>,
    /// Parameters: generic ones (`temperature`, `seed`, `top_p`,
    /// `max_tokens`, `stop`, `tools`) and dialect-specific ones (`options`,
    /// `format`, `response_format`, `num_ctx`, ...).
    pub params: Map<String, Value>,
}

/// Per-call limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallOptions {
    pub timeouts: Timeouts,
}

/// Token usage of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A tool call the model made, in a dialect-neutral form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// OpenAI's call id; Ollama has none.
    pub id: Option<String>,
    pub name: String,
    /// The arguments as JSON; a string that is not valid JSON stays a string.
    pub arguments: Value,
}

impl ToolCall {
    /// Builds a call from a name and the argument text a stream delivered.
    pub fn from_text(id: Option<String>, name: String, arguments: &str) -> Self {
        let arguments = if arguments.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_string()))
        };
        ToolCall {
            id,
            name,
            arguments,
        }
    }

    /// The arguments as a JSON text (OpenAI's encoding).
    pub fn arguments_text(&self) -> String {
        match &self.arguments {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        }
    }

    /// OpenAI wire form: `{id, type: "function", function: {name, arguments: "<json>"}}`.
    pub fn to_openai(&self, index: usize) -> Value {
        serde_json::json!({
            "id": self.id.clone().unwrap_or_else(|| format!("call_{index}")),
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments_text()},
        })
    }

    /// Ollama wire form: `{function: {name, arguments: {...}}}`.
    pub fn to_ollama(&self) -> Value {
        serde_json::json!({"function": {"name": self.name, "arguments": self.arguments}})
    }
}

/// The result of a non-streaming call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatResponse {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    /// `None` when the upstream reported no usage.
    pub usage: Option<Usage>,
    pub finish_reason: Option<String>,
    /// The model name the upstream reported.
    pub model: Option<String>,
    /// The upstream's JSON body as received (`Null` for an accumulated stream).
    pub raw: Value,
}

/// A piece of a tool call in a stream. OpenAI sends the id and name first and
/// the arguments in fragments; Ollama sends each call whole (one delta).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCallDelta {
    /// Position of the call in the message; fragments with the same index belong together.
    pub index: usize,
    pub id: Option<String>,
    pub name: Option<String>,
    /// A fragment of the arguments' JSON text.
    pub arguments: String,
}

/// One event of a streaming call.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// Text to append to the answer.
    Content(String),
    ToolCall(ToolCallDelta),
    /// The last event of a successful stream.
    Done {
        usage: Option<Usage>,
        finish_reason: Option<String>,
        model: Option<String>,
    },
}

/// A stream of events; it ends after [`ChatEvent::Done`] or after an error.
pub type EventStream = BoxStream<'static, Result<ChatEvent, ProviderError>>;

/// Turns the bytes of a streaming body into events, chunk by chunk; one
/// per wire format ([`Provider::stream_decoder`]).
pub trait EventDecoder: Send {
    /// Events completed by `chunk`.
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<ChatEvent>, DecodeError>;
    /// Events at the end of the body; an error when the stream ended early.
    fn finish(&mut self) -> Result<Vec<ChatEvent>, DecodeError>;
}

/// An upstream LLM server. Implementations are cheap to share (`Arc<dyn Provider>`)
/// and safe to call concurrently.
pub trait Provider: Send + Sync + fmt::Debug {
    /// The provider's key in `promptgate.yaml` (used in errors and metrics).
    fn name(&self) -> &str;
    /// The client API this provider's wire format is: a client of that API
    /// takes the upstream's bytes as they are.
    fn api(&self) -> ChatApi;
    /// The URL chat requests go to.
    fn chat_url(&self) -> &str;
    /// The wire body of `req` (what a pass-through proxy would send).
    fn build_body(&self, req: &ChatRequest, stream: bool) -> Value;
    /// One non-streaming call, with retries.
    fn chat<'a>(
        &'a self,
        req: &'a ChatRequest,
        opts: CallOptions,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>>;
    /// One streaming call. Retries cover the request until the response
    /// headers; once events flow, an error ends the stream.
    fn chat_stream<'a>(
        &'a self,
        req: &'a ChatRequest,
        opts: CallOptions,
    ) -> BoxFuture<'a, Result<EventStream, ProviderError>>;
    /// Raw pass-through: POSTs `body` (already in this provider's wire
    /// format) to [`Provider::chat_url`] with the API key, retries and
    /// timeouts, and returns the successful response with its body unread
    /// (a non-success status is an error). `stream` selects the first-token
    /// deadline for the headers.
    fn send_raw<'a>(
        &'a self,
        body: bytes::Bytes,
        stream: bool,
        opts: CallOptions,
    ) -> BoxFuture<'a, Result<UpstreamResponse, ProviderError>>;
    /// Parses a whole non-streaming response body of this wire format
    /// (what [`Provider::send_raw`] answered).
    fn parse_response(&self, body: &[u8]) -> Result<ChatResponse, DecodeError>;
    /// A decoder of this wire format's streaming body.
    fn stream_decoder(&self) -> Box<dyn EventDecoder>;
}

/// The tool calls of a stream, joined from their deltas by index.
#[derive(Debug, Default)]
pub struct ToolCallFragments {
    /// (id, name, argument text) per index.
    calls: Vec<(Option<String>, String, String)>,
}

impl ToolCallFragments {
    pub fn push(&mut self, d: &ToolCallDelta) {
        while self.calls.len() <= d.index {
            self.calls.push((None, String::new(), String::new()));
        }
        let call = &mut self.calls[d.index];
        if let Some(id) = &d.id {
            call.0 = Some(id.clone());
        }
        if let Some(name) = &d.name {
            call.1.push_str(name);
        }
        call.2.push_str(&d.arguments);
    }

    /// Whether no delta was pushed.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The calls, in index order; indexes that never got a name are dropped.
    pub fn finish(self) -> Vec<ToolCall> {
        self.calls
            .into_iter()
            .filter(|c| !c.1.is_empty())
            .map(|(id, name, args)| ToolCall::from_text(id, name, &args))
            .collect()
    }
}

/// Folds stream events into a [`ChatResponse`].
#[derive(Debug, Default)]
pub struct StreamAccumulator {
    content: String,
    calls: ToolCallFragments,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    model: Option<String>,
    done: bool,
}

impl StreamAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, event: &ChatEvent) {
        match event {
            ChatEvent::Content(s) => self.content.push_str(s),
            ChatEvent::ToolCall(d) => self.calls.push(d),
            ChatEvent::Done {
                usage,
                finish_reason,
                model,
            } => {
                self.usage = *usage;
                self.finish_reason.clone_from(finish_reason);
                self.model.clone_from(model);
                self.done = true;
            }
        }
    }

    /// Whether [`ChatEvent::Done`] was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn finish(self) -> ChatResponse {
        ChatResponse {
            content: self.content,
            tool_calls: self.calls.finish(),
            usage: self.usage,
            finish_reason: self.finish_reason,
            model: self.model,
            raw: Value::Null,
        }
    }
}

/// Joins the text parts of an OpenAI content array (`[{type: text, text}]`);
/// a string stays as it is.
pub fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
        ),
        _ => None,
    }
}
