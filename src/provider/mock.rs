//! `promptgate mock-llm`: a deterministic LLM server for tests, demos and
//! benchmarks. It speaks the Ollama native API (`POST /api/chat`,
//! `POST /api/generate`, `GET /api/tags`; NDJSON streaming, on by default as
//! in Ollama) and the OpenAI API (`POST /v1/chat/completions`,
//! `GET /v1/models`; SSE streaming with `data: [DONE]`, a usage chunk when
//! `stream_options.include_usage` is set).
//!
//! What it answers, for the last user message (`prompt` for `/api/generate`):
//! 1. With probability `error_rate`: HTTP 500.
//! 2. If the request has `tools` and the message contains `call NAME` (NAME
//!    one of the tools, optionally followed by a JSON object of arguments):
//!    a tool call of NAME with those arguments (`{}` when none).
//! 3. The first rule whose regex matches: its answer template with `$1`,
//!    `${name}` replaced by the capture groups. With probability
//!    `1 - quality` the answer is replaced by a fixed wrong answer
//!    (`quality` is the probability a rule answer is KEPT; 1.0 = always right).
//! 4. No rule matched (or no rules): the message itself (echo).
//! 5. JSON mode (Ollama `format`, OpenAI `response_format` of type
//!    `json_object`/`json_schema`): the answer as `{"answer": "..."}`.
//!
//! Invariants: every random draw is a hash of (seed, model, the request's
//! sampling seed if it has one, messages), so the same request gets the same
//! answer (and the same injected error) whatever the concurrency or order,
//! while requests that differ only in their sampling seed (the repeats of an
//! eval case) are independent draws, as with a real model; token counts are whitespace-split word counts
//! of all message contents (input) and of the answer (output); every
//! response's `model` is `mock:<requested model>` and the banner says MOCK.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use regex::Regex;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The first line `mock-llm` prints; tests read the address from it.
pub fn banner(addr: SocketAddr) -> String {
    format!("mock-llm (MOCK, not a real model) listening on http://{addr}")
}

/// Answers that replace a rule answer when `quality` says so.
const WRONG_ANSWERS: &[&str] = &[
    "I am not sure.",
    "Unknown.",
    "That cannot be answered.",
    "No idea, sorry.",
];

/// One rule: a regex on the last user message and an answer template.
#[derive(Debug, Clone)]
pub struct Rule {
    pub pattern: Regex,
    pub answer: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    pattern: String,
    answer: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("rules: {0}")]
    Parse(String),
    #[error("rules: rule {index}: invalid pattern `{pattern}`: {source}")]
    Pattern {
        index: usize,
        pattern: String,
        source: regex::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Parses a rules file: a YAML list of `{pattern, answer}`.
pub fn parse_rules(yaml: &str) -> Result<Vec<Rule>, MockError> {
    let raw: Vec<RawRule> =
        serde_yaml_ng::from_str(yaml).map_err(|e| MockError::Parse(e.to_string()))?;
    raw.into_iter()
        .enumerate()
        .map(|(index, r)| {
            Ok(Rule {
                pattern: Regex::new(&r.pattern).map_err(|source| MockError::Pattern {
                    index,
                    pattern: r.pattern.clone(),
                    source,
                })?,
                answer: r.answer,
            })
        })
        .collect()
}

/// Reads and parses a rules file.
pub fn load_rules(path: &Path) -> Result<Vec<Rule>, MockError> {
    let text = std::fs::read_to_string(path).map_err(|source| MockError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_rules(&text).map_err(|e| match e {
        MockError::Parse(m) => MockError::Parse(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Behaviour of the mock server.
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub rules: Vec<Rule>,
    /// Delay before the first byte of every answer.
    pub latency: Duration,
    /// Delay between streamed chunks.
    pub token_delay: Duration,
    /// Probability of an HTTP 500.
    pub error_rate: f64,
    /// Probability that a matched rule's answer is kept (1.0 = always right).
    pub quality: f64,
    pub seed: u64,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            rules: Vec::new(),
            latency: Duration::ZERO,
            token_delay: Duration::ZERO,
            error_rate: 0.0,
            quality: 1.0,
            seed: 0,
        }
    }
}

impl MockConfig {
    /// Checks the probabilities are within 0..=1.
    pub fn validate(&self) -> Result<(), MockError> {
        for (name, p) in [("error-rate", self.error_rate), ("quality", self.quality)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(MockError::Invalid(format!(
                    "--{name} must be between 0 and 1, got {p}"
                )));
            }
        }
        Ok(())
    }
}

/// The mock's routes.
pub fn router(cfg: MockConfig) -> Router {
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

/// Serves the mock on `listener` (TCP_NODELAY on every connection) until the
/// task is dropped.
pub async fn serve(listener: TcpListener, cfg: MockConfig) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(cfg)).await
}

/// A mock server running in this process; stopped when dropped.
#[derive(Debug)]
pub struct MockServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl MockServer {
    /// Binds 127.0.0.1 on a free port and serves `cfg` on a tokio task.
    pub async fn start(cfg: MockConfig) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(serve(listener, cfg));
        Ok(MockServer { addr, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------
// Deciding the answer

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
        self.seed.or_else(|| {
            self.options
                .as_ref()
                .and_then(|o| o.get("seed"))
                .and_then(Value::as_i64)
        })
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

fn text_of(content: &Value) -> &str {
    match content {
        Value::String(s) => s,
        // Content parts: the first text part is enough for matching.
        Value::Array(parts) => parts
            .iter()
            .find_map(|p| p.get("text").and_then(Value::as_str))
            .unwrap_or(""),
        _ => "",
    }
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// FNV-1a, then splitmix64 per draw: stable across platforms and versions.
/// Public so simulations (benches/canary_sim.rs) draw pass/fail exactly as
/// the mock decides it, without a server.
pub struct Draws(u64);

/// The salt of the draw that decides whether a rule answer is kept
/// (`unit(QUALITY_SALT) < quality`).
pub const QUALITY_SALT: u64 = 2;

impl Draws {
    pub fn new(seed: u64) -> Self {
        let mut d = Draws(0xcbf2_9ce4_8422_2325);
        d.feed(&seed.to_le_bytes());
        d
    }
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // Separator so ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }
    pub fn u64(&self, salt: u64) -> u64 {
        let mut z = self.0 ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&self, salt: u64) -> f64 {
        (self.u64(salt) >> 11) as f64 / (1u64 << 53) as f64
    }
}

enum Answer {
    Error,
    Text(String),
    Tool { name: String, arguments: Value },
}

struct Outcome {
    answer: Answer,
    input_tokens: u64,
    output_tokens: u64,
    id: u64,
}

static CALL_RE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?is)\bcall\s+([A-Za-z_][A-Za-z0-9_.\-]*)\s*(\{.*\})?").ok());

fn tool_names(tools: &[Value]) -> impl Iterator<Item = &str> {
    tools.iter().filter_map(|t| {
        t.pointer("/function/name")
            .or_else(|| t.get("name"))
            .and_then(Value::as_str)
    })
}

fn json_mode(format: Option<&Value>, response_format: Option<&Value>) -> bool {
    let ollama = match format {
        Some(Value::String(s)) => s == "json",
        Some(Value::Object(_)) => true,
        _ => false,
    };
    let openai = response_format
        .and_then(|rf| rf.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "json_object" || t == "json_schema");
    ollama || openai
}

fn decide(
    cfg: &MockConfig,
    model: &str,
    sampling_seed: Option<i64>,
    contents: &[(&str, &str)],
    last_user: &str,
    tools: &[Value],
    json: bool,
) -> Outcome {
    let mut draws = Draws::new(cfg.seed);
    draws.feed(model.as_bytes());
    if let Some(s) = sampling_seed {
        draws.feed(&s.to_le_bytes());
    }
    let mut input_tokens = 0;
    for (role, text) in contents {
        draws.feed(role.as_bytes());
        draws.feed(text.as_bytes());
        input_tokens += words(text);
    }
    let id = draws.u64(0);
    let out = |answer: Answer, output_tokens| Outcome {
        answer,
        input_tokens,
        output_tokens,
        id,
    };
    if cfg.error_rate > 0.0 && draws.unit(1) < cfg.error_rate {
        return out(Answer::Error, 0);
    }
    if !tools.is_empty()
        && let Some(caps) = CALL_RE.as_ref().and_then(|re| re.captures(last_user))
    {
        let name = caps.get(1).map_or("", |m| m.as_str());
        if tool_names(tools).any(|t| t == name) {
            let arguments = caps
                .get(2)
                .and_then(|m| serde_json::from_str::<Value>(m.as_str()).ok())
                .unwrap_or_else(|| json!({}));
            let n = words(&arguments.to_string()).max(1);
            return out(
                Answer::Tool {
                    name: name.to_string(),
                    arguments,
                },
                n,
            );
        }
    }
    let mut text = None;
    for rule in &cfg.rules {
        if let Some(caps) = rule.pattern.captures(last_user) {
            let mut s = String::with_capacity(rule.answer.len() + 16);
            caps.expand(&rule.answer, &mut s);
            if cfg.quality < 1.0 && draws.unit(QUALITY_SALT) >= cfg.quality {
                s = WRONG_ANSWERS[(draws.u64(3) % WRONG_ANSWERS.len() as u64) as usize].to_string();
            }
            text = Some(s);
            break;
        }
    }
    let mut text = text.unwrap_or_else(|| last_user.to_string());
    if json {
        text = json!({ "answer": text }).to_string();
    }
    let n = words(&text);
    out(Answer::Text(text), n)
}

/// Splits an answer into word chunks, each word with the whitespace before it,
/// so that concatenating the chunks gives the answer back exactly.
fn chunks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev_ws = true;
    for (i, c) in text.char_indices() {
        let ws = c.is_whitespace();
        // A whitespace run after a word starts the next chunk.
        if ws && !prev_ws && !text[start..i].trim().is_empty() {
            out.push(&text[start..i]);
            start = i;
        }
        prev_ws = ws;
    }
    if start < text.len() {
        match out.last_mut() {
            // Trailing whitespace joins the last word.
            Some(last) if text[start..].trim().is_empty() => {
                let from = text.len() - last.len() - (text.len() - start);
                *last = &text[from..];
            }
            _ => out.push(&text[start..]),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Responses

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn created_at() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn bad_request(openai: bool, msg: String) -> Response {
    let body = if openai {
        json!({"error": {"message": msg, "type": "invalid_request_error"}})
    } else {
        json!({ "error": msg })
    };
    json_response(StatusCode::BAD_REQUEST, body.to_string().into_bytes())
}

fn injected_error(openai: bool) -> Response {
    let msg = "mock-llm: injected error (--error-rate)";
    let body = if openai {
        json!({"error": {"message": msg, "type": "server_error"}})
    } else {
        json!({ "error": msg })
    };
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        body.to_string().into_bytes(),
    )
}

/// A streaming body: all frames at once when there is no token delay, else
/// one frame per delay.
fn stream_body(frames: Vec<Vec<u8>>, delay: Duration, content_type: &'static str) -> Response {
    let body = if delay.is_zero() {
        Body::from(frames.concat())
    } else {
        let stream = futures_util::stream::unfold(
            (frames.into_iter(), true),
            move |(mut it, first)| async move {
                let frame = it.next()?;
                if !first {
                    tokio::time::sleep(delay).await;
                }
                Some((Ok::<_, Infallible>(Bytes::from(frame)), (it, false)))
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

fn ndjson_frame(v: &Value) -> Vec<u8> {
    let mut f = v.to_string().into_bytes();
    f.push(b'\n');
    f
}

fn sse_frame(v: &Value) -> Vec<u8> {
    let mut f = b"data: ".to_vec();
    f.extend_from_slice(v.to_string().as_bytes());
    f.extend_from_slice(b"\n\n");
    f
}

async fn pause(cfg: &MockConfig) {
    if !cfg.latency.is_zero() {
        tokio::time::sleep(cfg.latency).await;
    }
}

fn ollama_final(model: &str, o: &Outcome, extra: (&str, Value)) -> Value {
    let mut v = json!({
        "model": model,
        "created_at": created_at(),
        "done": true,
        "done_reason": "stop",
        "total_duration": 0,
        "load_duration": 0,
        "prompt_eval_count": o.input_tokens,
        "prompt_eval_duration": 0,
        "eval_count": o.output_tokens,
        "eval_duration": 0,
    });
    v[extra.0] = extra.1;
    v
}

async fn ollama_chat(State(cfg): State<Arc<MockConfig>>, body: Bytes) -> Response {
    let req: ChatIn = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(false, format!("invalid request body: {e}")),
    };
    let o = req.answer(&cfg, json_mode(req.format.as_ref(), None));
    pause(&cfg).await;
    let model = format!("mock:{}", req.model);
    let (content, calls) = match &o.answer {
        Answer::Error => return injected_error(false),
        Answer::Text(t) => (t.as_str(), None),
        Answer::Tool { name, arguments } => (
            "",
            Some(json!([{"function": {"name": name, "arguments": arguments}}])),
        ),
    };
    if req.stream.unwrap_or(true) {
        let mut frames = Vec::new();
        for piece in chunks(content) {
            frames.push(ndjson_frame(&json!({
                "model": model, "created_at": created_at(),
                "message": {"role": "assistant", "content": piece}, "done": false,
            })));
        }
        if let Some(calls) = &calls {
            frames.push(ndjson_frame(&json!({
                "model": model, "created_at": created_at(),
                "message": {"role": "assistant", "content": "", "tool_calls": calls},
                "done": false,
            })));
        }
        frames.push(ndjson_frame(&ollama_final(
            &model,
            &o,
            ("message", json!({"role": "assistant", "content": ""})),
        )));
        return stream_body(frames, cfg.token_delay, "application/x-ndjson");
    }
    let mut message = json!({"role": "assistant", "content": content});
    if let Some(calls) = calls {
        message["tool_calls"] = calls;
    }
    let v = ollama_final(&model, &o, ("message", message));
    json_response(StatusCode::OK, v.to_string().into_bytes())
}

fn last_user<'a>(contents: &[(&str, &'a str)]) -> &'a str {
    contents
        .iter()
        .rev()
        .find(|(r, _)| *r == "user")
        .or(contents.last())
        .map_or("", |(_, t)| t)
}

async fn ollama_generate(State(cfg): State<Arc<MockConfig>>, body: Bytes) -> Response {
    let req: GenerateIn = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(false, format!("invalid request body: {e}")),
    };
    let mut contents = Vec::with_capacity(2);
    if let Some(s) = &req.system {
        contents.push(("system", s.as_str()));
    }
    contents.push(("user", req.prompt.as_str()));
    let json = json_mode(req.format.as_ref(), None);
    let seed = req
        .options
        .as_ref()
        .and_then(|o| o.get("seed"))
        .and_then(Value::as_i64);
    let o = decide(&cfg, &req.model, seed, &contents, &req.prompt, &[], json);
    pause(&cfg).await;
    let model = format!("mock:{}", req.model);
    let text = match &o.answer {
        Answer::Error => return injected_error(false),
        Answer::Text(t) => t.as_str(),
        Answer::Tool { .. } => "",
    };
    if req.stream.unwrap_or(true) {
        let mut frames: Vec<Vec<u8>> = chunks(text)
            .into_iter()
            .map(|piece| {
                ndjson_frame(&json!({
                    "model": model, "created_at": created_at(),
                    "response": piece, "done": false,
                }))
            })
            .collect();
        frames.push(ndjson_frame(&ollama_final(
            &model,
            &o,
            ("response", json!("")),
        )));
        return stream_body(frames, cfg.token_delay, "application/x-ndjson");
    }
    let v = ollama_final(&model, &o, ("response", json!(text)));
    json_response(StatusCode::OK, v.to_string().into_bytes())
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

async fn openai_chat(State(cfg): State<Arc<MockConfig>>, body: Bytes) -> Response {
    let req: ChatIn = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(true, format!("invalid request body: {e}")),
    };
    let o = req.answer(
        &cfg,
        json_mode(req.format.as_ref(), req.response_format.as_ref()),
    );
    pause(&cfg).await;
    let model = format!("mock:{}", req.model);
    let id = format!("chatcmpl-mock-{:016x}", o.id);
    let created = now_secs();
    let usage = json!({
        "prompt_tokens": o.input_tokens,
        "completion_tokens": o.output_tokens,
        "total_tokens": o.input_tokens + o.output_tokens,
    });
    let call_id = format!("call_mock_{:08x}", o.id as u32);
    let (content, tool, finish) = match &o.answer {
        Answer::Error => return injected_error(true),
        Answer::Text(t) => (Some(t.as_str()), None, "stop"),
        Answer::Tool { name, arguments } => {
            (None, Some((name, arguments.to_string())), "tool_calls")
        }
    };
    if req.stream.unwrap_or(false) {
        let chunk = |delta: Value, finish: Option<&str>| {
            sse_frame(&json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }))
        };
        let mut frames = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
        for piece in chunks(content.unwrap_or("")) {
            frames.push(chunk(json!({ "content": piece }), None));
        }
        if let Some((name, args)) = &tool {
            frames.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                None,
            ));
            // The arguments in two fragments, as real servers split them.
            let mid = args
                .char_indices()
                .nth(args.chars().count() / 2)
                .map_or(0, |(i, _)| i);
            for part in [&args[..mid], &args[mid..]] {
                frames.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                    None,
                ));
            }
        }
        frames.push(chunk(json!({}), Some(finish)));
        if req.stream_options.is_some_and(|s| s.include_usage) {
            frames.push(sse_frame(&json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [], "usage": usage,
            })));
        }
        frames.push(b"data: [DONE]\n\n".to_vec());
        return stream_body(frames, cfg.token_delay, "text/event-stream");
    }
    let mut message = json!({"role": "assistant", "content": content});
    if let Some((name, args)) = tool {
        message["tool_calls"] = json!([{"id": call_id, "type": "function",
            "function": {"name": name, "arguments": args}}]);
    }
    let v = json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    });
    json_response(StatusCode::OK, v.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_concatenate_to_the_answer() {
        for text in ["", "one", "Hello  big\nworld ", "  lead", "é ü x"] {
            assert_eq!(chunks(text).concat(), text);
        }
        assert_eq!(chunks("a bc d"), vec!["a", " bc", " d"]);
        assert_eq!(chunks("a b "), vec!["a", " b "]);
    }

    #[test]
    fn rules_expand_captures_first_match_wins() {
        let rules = parse_rules(
            "- pattern: 'capital of (?P<c>\\w+)'\n  answer: 'The capital of ${c} is X.'\n- pattern: 'capital'\n  answer: never\n",
        )
        .unwrap();
        let cfg = MockConfig {
            rules,
            ..MockConfig::default()
        };
        let o = decide(
            &cfg,
            "m",
            None,
            &[("user", "capital of France?")],
            "capital of France?",
            &[],
            false,
        );
        match o.answer {
            Answer::Text(t) => assert_eq!(t, "The capital of France is X."),
            _ => panic!("expected text"),
        }
        assert_eq!(o.input_tokens, 3);
        assert_eq!(o.output_tokens, 6);
    }

    #[test]
    fn bad_pattern_names_the_rule() {
        let err = parse_rules("- pattern: '('\n  answer: x\n").unwrap_err();
        assert!(err.to_string().contains("rule 0"), "{err}");
    }

    #[test]
    fn quality_zero_always_wrong_and_deterministic() {
        let cfg = MockConfig {
            rules: parse_rules("- pattern: '.*'\n  answer: right\n").unwrap(),
            quality: 0.0,
            seed: 7,
            ..MockConfig::default()
        };
        let a = |q: &str| match decide(&cfg, "m", None, &[("user", q)], q, &[], false).answer {
            Answer::Text(t) => t,
            _ => panic!(),
        };
        for q in ["a", "b", "c"] {
            assert!(WRONG_ANSWERS.contains(&a(q).as_str()));
            assert_eq!(a(q), a(q));
        }
    }

    #[test]
    fn the_sampling_seed_makes_independent_draws() {
        let cfg = MockConfig {
            rules: parse_rules("- pattern: '.*'\n  answer: right\n").unwrap(),
            quality: 0.5,
            ..MockConfig::default()
        };
        let right =
            |seed: Option<i64>| match decide(&cfg, "m", seed, &[("user", "q")], "q", &[], false)
                .answer
            {
                Answer::Text(t) => t == "right",
                _ => panic!(),
            };
        // Same request, same answer; over 64 seeds both answers occur.
        assert_eq!(right(Some(3)), right(Some(3)));
        let rights = (0..64).filter(|s| right(Some(*s))).count();
        assert!(
            (8..=56).contains(&rights),
            "{rights}/64 right at quality 0.5"
        );
    }
}
