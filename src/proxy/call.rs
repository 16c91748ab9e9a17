//! One proxied chat call: route, render, call the upstream, answer the
//! client, and log the call once it is over.
//!
//! Invariants:
//! - The call uses the one [`ServingState`] loaded when it started.
//! - Exactly one log row per call that reached a model, written after the
//!   response is complete (streams: when the stream ends, or with status
//!   `client_closed` when the client goes away first, by the body's `Drop`).
//! - Row assembly, response parsing for the log, online evaluation and the
//!   channel send run on a completion task, off the request path.
//! - Retries happen only inside the provider's `send_raw`, i.e. before the
//!   first byte reaches the client.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use http_body_util::BodyDataStream;
use serde_json::{Map, Value};

use super::app::{App, InFlightGuard};
use super::error::{ApiError, Dialect, json_response};
use super::metrics::RequestSample;
use super::online;
use super::routing::user_hash;
use super::state::{ModelTarget, PreparedPrompt, ServingState};
use super::translate::ClientRequest;
use crate::binding::{self, BindError, INPUT_VARIABLE, Supplied};
use crate::logstore::{RequestLogRow, RequestStatus, Variant};
use crate::provider::content_text;
use crate::provider::encode::{StreamEncoder, encode_response};
use crate::provider::{
    CallOptions, ChatEvent, ChatRequest, ChatResponse, DecodeError, ErrorKind, ProviderKind,
    StreamAccumulator, UpstreamBody, UpstreamResponse, merge_params, ollama, openai, read_body,
};

pub const REQUEST_ID: &str = "x-request-id";
pub const VARIANT: &str = "x-promptgate-variant";
pub const VERSION: &str = "x-promptgate-version";

/// Where a request goes.
struct Route {
    target: Arc<ModelTarget>,
    prompt: Option<Arc<PreparedPrompt>>,
    variant: Variant,
}

/// Everything the log row of a call needs, carried to its completion.
struct CallCtx {
    app: Arc<App>,
    request_id: String,
    ts: DateTime<Utc>,
    started: Instant,
    state: Arc<ServingState>,
    route: Route,
    variables: Map<String, Value>,
    messages: Vec<Value>,
    user_hash: Option<String>,
    stream: bool,
    _guard: InFlightGuard,
}

/// How a call ended.
enum Outcome {
    /// A finished answer.
    Done {
        response: ChatResponse,
        ttft_ms: Option<f64>,
    },
    /// The upstream's body, passed to the client as it was; parsed for the
    /// log on the completion task.
    Raw { kind: ProviderKind, body: Bytes },
    Failed {
        status: RequestStatus,
        http_status: u16,
        error: String,
        /// What had been produced before the failure (streams).
        partial: Option<ChatResponse>,
        ttft_ms: Option<f64>,
    },
}

fn status_of(err: &ApiError) -> RequestStatus {
    if err.status == StatusCode::GATEWAY_TIMEOUT {
        RequestStatus::Timeout
    } else {
        RequestStatus::Error
    }
}

impl CallCtx {
    /// Logs the call on a completion task.
    fn finish(self, outcome: Outcome) {
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let task = async move {
            let mut row = self.row(outcome, latency_ms);
            if let Some(p) = &self.route.prompt {
                online::evaluate(Some(&p.online), &mut row);
                self.app.judges.spawn(&p.id, &p.online, &row);
            }
            if let (Some(prompt), Some(pass)) = (&row.prompt_id, row.online_pass) {
                self.app
                    .metrics
                    .record_online(prompt, row.variant.as_str(), pass);
            }
            self.app.metrics.record_request(&RequestSample {
                prompt: row.prompt_id.as_deref().unwrap_or(""),
                variant: row.variant.as_str(),
                status: row.status.as_str(),
                latency_ms: row.latency_ms,
                ttft_ms: row.ttft_ms,
                input_tokens: row.input_tokens,
                output_tokens: row.output_tokens,
                cost: row.cost,
            });
            self.app.logger.log(row).await;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(task);
            }
            Err(_) => tracing::error!("no runtime to log a finished call on"),
        }
    }

    fn row(&self, outcome: Outcome, latency_ms: f64) -> RequestLogRow {
        let mut row = RequestLogRow::new(self.request_id.clone(), self.ts);
        let target = &self.route.target;
        match &self.route.prompt {
            Some(p) => {
                row.prompt_id = Some(p.id.clone());
                row.prompt_version = Some(p.blob.clone());
                row.git_ref = Some(p.git_ref.to_string());
                row.commit = p.commit.to_string();
            }
            None => {
                row.git_ref = Some(self.state.stable.git_ref.to_string());
                row.commit = self.state.stable.commit.to_string();
            }
        }
        row.variant = self.route.variant;
        row.model = target.key.clone();
        row.upstream_model = target.client.model_name().to_string();
        // Serializing a map of JSON values cannot fail.
        row.variables = serde_json::to_string(&self.variables).unwrap_or_default();
        row.messages = serde_json::to_string(&self.messages).unwrap_or_default();
        row.user_hash = self.user_hash.clone();
        row.stream = self.stream;
        row.latency_ms = latency_ms;
        let (response, ttft) = match outcome {
            Outcome::Done { response, ttft_ms } => (Some(response), ttft_ms),
            Outcome::Raw { kind, body } => {
                let parsed = serde_json::from_slice::<Value>(&body)
                    .map_err(DecodeError::from)
                    .and_then(|v| match kind {
                        ProviderKind::Openai => openai::parse_response(v),
                        ProviderKind::Ollama => ollama::parse_response(v),
                    });
                match parsed {
                    Ok(r) => (Some(r), None),
                    Err(e) => {
                        row.status = RequestStatus::Error;
                        row.error = Some(format!("cannot decode the upstream response: {e}"));
                        row.output = String::from_utf8_lossy(&body).into_owned();
                        (None, None)
                    }
                }
            }
            Outcome::Failed {
                status,
                http_status,
                error,
                partial,
                ttft_ms,
            } => {
                row.status = status;
                row.http_status = http_status;
                row.error = Some(error);
                (partial, ttft_ms)
            }
        };
        row.ttft_ms = ttft;
        if let Some(r) = response {
            row.output = if r.content.is_empty() && !r.tool_calls.is_empty() {
                Value::Array(
                    r.tool_calls
                        .iter()
                        .enumerate()
                        .map(|(i, c)| c.to_openai(i))
                        .collect(),
                )
                .to_string()
            } else {
                r.content
            };
            let usage = r.usage.unwrap_or_default();
            row.input_tokens = usage.input_tokens;
            row.output_tokens = usage.output_tokens;
            if let Some(m) = r.model {
                row.upstream_model = m;
            }
        }
        row.cost =
            target
                .client
                .price()
                .cost(row.input_tokens, row.output_tokens, latency_ms / 1000.0);
        row
    }
}

fn route(state: &ServingState, req: &ClientRequest, user: Option<&str>) -> Result<Route, ApiError> {
    let Some(id) = req.model.strip_prefix("prompt:") else {
        let target = state.models.get(&req.model).ok_or_else(|| {
            let known = state.models.keys().cloned().collect::<Vec<_>>().join(", ");
            ApiError::not_found(
                "model_not_found",
                format!(
                    "unknown model `{}`: use `prompt:<id>` or a model of promptgate.yaml ({known})",
                    req.model
                ),
            )
        })?;
        return Ok(Route {
            target: target.clone(),
            prompt: None,
            variant: Variant::None,
        });
    };
    let mut variant = Variant::Stable;
    let mut prompt = None;
    if let Some(c) = &state.canary
        && c.rule.covers(id)
        && c.rule.choose(id, user, rand::random::<f64>()) == Variant::Canary
        && let Some(p) = c.state.prompts.get(id)
    {
        variant = Variant::Canary;
        prompt = Some(p.clone());
    }
    let prompt = match prompt {
        Some(p) => p,
        None => state.stable.prompts.get(id).cloned().ok_or_else(|| {
            ApiError::not_found(
                "prompt_not_found",
                format!(
                    "unknown prompt `{id}` (serving: {})",
                    state.prompt_ids().join(", ")
                ),
            )
        })?,
    };
    Ok(Route {
        target: prompt.target.clone(),
        prompt: Some(prompt),
        variant,
    })
}

/// The messages sent upstream for a prompt, and the variables used. The
/// variables are bound by [`binding::bind`], as in `render` and `eval`; when
/// the last user message fills `input`, the turns before it stay as history
/// after the prompt's system messages and the turns after it (tool results)
/// follow the prompt's messages.
fn render(
    p: &PreparedPrompt,
    variables: Option<Map<String, Value>>,
    messages: Vec<Value>,
) -> Result<(Vec<Value>, Map<String, Value>), ApiError> {
    let values = variables.unwrap_or_default();
    let chat_input = binding::takes_chat_input(&p.inputs, &values);
    let last_user = if chat_input {
        messages
            .iter()
            .rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    } else {
        None
    };
    let last_user_message = last_user.map(|i| {
        messages[i]
            .get("content")
            .and_then(content_text)
            .unwrap_or_default()
    });
    let supplied = Supplied {
        values,
        last_user_message,
    };
    let bound = binding::bind(&p.id, &p.inputs, supplied).map_err(|e| match e {
        BindError::Missing { .. } if chat_input && e.input() == INPUT_VARIABLE => ApiError::field(
            "messages",
            format!(
                "prompt `{}` needs `variables.{INPUT_VARIABLE}` or a user message to fill `{INPUT_VARIABLE}`",
                p.id
            ),
        ),
        e => ApiError::field(format!("variables.{}", e.input()), e.to_string()),
    })?;
    let (history, tail) = match last_user {
        Some(i) if bound.input_from_chat => {
            let mut history = messages;
            let tail = history.split_off(i + 1);
            history.pop();
            (history, tail)
        }
        _ => (Vec::new(), messages),
    };
    let vars = bound.values;
    let rendered = p
        .templates
        .render(&vars)
        .map_err(|e| ApiError::field("variables", e.to_string()))?;
    let lead = rendered.iter().take_while(|m| m.role == "system").count();
    let mut out = Vec::with_capacity(rendered.len() + history.len() + tail.len());
    let as_json = |m: &crate::template::ChatMessage| serde_json::json!({"role": m.role, "content": m.content});
    out.extend(rendered[..lead].iter().map(as_json));
    out.extend(history);
    out.extend(rendered[lead..].iter().map(as_json));
    out.extend(tail);
    Ok((out, vars))
}

fn sticky_user(state: &ServingState, req: &ClientRequest, headers: &HeaderMap) -> Option<String> {
    if let Some(u) = &req.user {
        return Some(u.clone());
    }
    let name = state.canary.as_ref()?.sticky_header.as_ref()?;
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn set_headers(r: &mut Response, request_id: &str, variant: Variant, version: &HeaderValue) {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(REQUEST_ID, v);
    }
    h.insert(VARIANT, HeaderValue::from_static(variant.as_str()));
    h.insert(VERSION, version.clone());
}

fn error_response(err: ApiError, dialect: Dialect, request_id: &str) -> Response {
    let mut r = axum::response::IntoResponse::into_response(err.in_dialect(dialect));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert(REQUEST_ID, v);
    }
    r
}

/// Whether the upstream speaks the client's dialect, so bytes pass as they are.
fn same_dialect(dialect: Dialect, kind: ProviderKind) -> bool {
    matches!(
        (dialect, kind),
        (Dialect::OpenAi, ProviderKind::Openai) | (Dialect::OllamaChat, ProviderKind::Ollama)
    )
}

/// Serves one chat request of `dialect`.
pub async fn chat(app: Arc<App>, dialect: Dialect, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let ts = Utc::now();
    let request_id = uuid::Uuid::now_v7().to_string();
    let req = match super::translate::parse_request(dialect, &body) {
        Ok(r) => r,
        Err(e) => return error_response(e, dialect, &request_id),
    };
    let state = app.reloader.current();
    let user = sticky_user(&state, &req, &headers);
    let route = match route(&state, &req, user.as_deref()) {
        Ok(r) => r,
        Err(e) => return error_response(e, dialect, &request_id),
    };
    let version = match &route.prompt {
        Some(p) => p.version.clone(),
        None => state.passthrough_version.clone(),
    };
    let variant = route.variant;
    let ClientRequest {
        model: client_model,
        messages,
        stream,
        variables,
        params,
        ..
    } = req;
    let (messages, variables, params) = match &route.prompt {
        Some(p) => match render(p, variables, messages) {
            Ok((m, v)) => (m, v, merge_params(&p.params, &params)),
            Err(e) => {
                let ctx = CallCtx {
                    app: app.clone(),
                    request_id: request_id.clone(),
                    ts,
                    started,
                    state: state.clone(),
                    route,
                    variables: Map::new(),
                    messages: Vec::new(),
                    user_hash: user.as_deref().map(user_hash),
                    stream,
                    _guard: app.in_flight.enter(),
                };
                ctx.finish(Outcome::Failed {
                    status: RequestStatus::Error,
                    http_status: e.status.as_u16(),
                    error: e.to_string(),
                    partial: None,
                    ttft_ms: None,
                });
                let mut r = error_response(e, dialect, &request_id);
                set_headers(&mut r, &request_id, variant, &version);
                return r;
            }
        },
        None => (
            messages,
            variables.unwrap_or_default(),
            merge_params(route.target.client.params(), &params),
        ),
    };
    let target = route.target.clone();
    let provider = target.client.provider().clone();
    let creq = ChatRequest {
        model: target.client.model_name().to_string(),
        messages,
        params,
    };
    let upstream_body = Bytes::from(provider.build_body(&creq, stream).to_string());
    let ctx = CallCtx {
        app: app.clone(),
        request_id,
        ts,
        started,
        state,
        route,
        variables,
        messages: creq.messages,
        user_hash: user.as_deref().map(user_hash),
        stream,
        _guard: app.in_flight.enter(),
    };
    let timeout_ms = ctx.state.config.server.request_timeout_ms;
    let deadline =
        tokio::time::Instant::from_std(started) + std::time::Duration::from_millis(timeout_ms);
    let opts = CallOptions {
        timeouts: target.client.timeouts(),
    };
    // Fail fast while the upstream is down; the permit's verdict is the
    // upstream's answer up to its headers (a client-side 4xx is no failure).
    let permit = match target.breaker.try_acquire() {
        Ok(p) => p,
        Err(open) => {
            app.metrics
                .record_upstream_error(&target.upstream, "breaker_open");
            let err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                format!(
                    "upstream `{}` is failing; circuit breaker open ({open})",
                    target.upstream
                ),
            );
            let mut r = fail(ctx, err, dialect, variant, &version);
            let secs = open.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
    };
    let sent =
        tokio::time::timeout_at(deadline, provider.send_raw(upstream_body, stream, opts)).await;
    let resp = match sent {
        Ok(Ok(r)) => {
            permit.success();
            r
        }
        Ok(Err(e)) => {
            if matches!(e.kind(), ErrorKind::Status4xx | ErrorKind::Config) {
                permit.success();
            } else {
                permit.failure();
            }
            app.metrics
                .record_upstream_error(&target.upstream, e.kind().as_str());
            return fail(ctx, ApiError::upstream(&e), dialect, variant, &version);
        }
        Err(_) => {
            permit.failure();
            app.metrics
                .record_upstream_error(&target.upstream, "timeout");
            let err = ApiError::request_timeout(timeout_ms);
            return fail(ctx, err, dialect, variant, &version);
        }
    };
    if stream {
        let t = target.client.timeouts();
        let model_total =
            tokio::time::Instant::from_std(started) + std::time::Duration::from_millis(t.total_ms);
        let limits = StreamLimits {
            total_at: deadline.min(model_total),
            total_ms: timeout_ms.min(t.total_ms),
            first_at: Some(
                tokio::time::Instant::from_std(started)
                    + std::time::Duration::from_millis(t.first_token_ms),
            ),
            first_ms: t.first_token_ms,
        };
        return stream_response(
            ctx,
            resp,
            dialect,
            &client_model,
            provider.kind(),
            limits,
            variant,
            &version,
        )
        .await;
    }
    let bytes = match tokio::time::timeout_at(deadline, read_body(resp.into_body())).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let err = ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!("reading the upstream response: {e}"),
            );
            return fail(ctx, err, dialect, variant, &version);
        }
        Err(_) => {
            let err = ApiError::request_timeout(timeout_ms);
            return fail(ctx, err, dialect, variant, &version);
        }
    };
    let kind = provider.kind();
    let (body, outcome) = if same_dialect(dialect, kind) {
        (bytes.clone(), Outcome::Raw { kind, body: bytes })
    } else {
        let parsed = serde_json::from_slice::<Value>(&bytes)
            .map_err(DecodeError::from)
            .and_then(|v| match kind {
                ProviderKind::Openai => openai::parse_response(v),
                ProviderKind::Ollama => ollama::parse_response(v),
            });
        match parsed {
            Ok(r) => {
                let v = encode_response(dialect, &client_model, &ctx.request_id, &r);
                (
                    Bytes::from(v.to_string()),
                    Outcome::Done {
                        response: r,
                        ttft_ms: None,
                    },
                )
            }
            Err(e) => {
                let err = ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    format!("cannot decode the upstream response: {e}"),
                );
                return fail(ctx, err, dialect, variant, &version);
            }
        }
    };
    let mut r = json_response(StatusCode::OK, body);
    set_headers(&mut r, &ctx.request_id, variant, &version);
    ctx.finish(outcome);
    r
}

fn fail(
    ctx: CallCtx,
    err: ApiError,
    dialect: Dialect,
    variant: Variant,
    version: &HeaderValue,
) -> Response {
    let request_id = ctx.request_id.clone();
    ctx.finish(Outcome::Failed {
        status: status_of(&err),
        http_status: err.status.as_u16(),
        error: err.to_string(),
        partial: None,
        ttft_ms: None,
    });
    let mut r = error_response(err, dialect, &request_id);
    set_headers(&mut r, &request_id, variant, version);
    r
}

/// Decodes the upstream's stream dialect.
enum Decoder {
    OpenAi(openai::StreamDecoder),
    Ollama(ollama::StreamDecoder),
}

impl Decoder {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<ChatEvent>, DecodeError> {
        match self {
            Decoder::OpenAi(d) => d.push(chunk),
            Decoder::Ollama(d) => d.push(chunk),
        }
    }
    fn finish(&mut self) -> Result<Vec<ChatEvent>, DecodeError> {
        match self {
            Decoder::OpenAi(d) => d.finish(),
            Decoder::Ollama(d) => d.finish(),
        }
    }
}

/// The client's body of a streaming call: forwards (or re-encodes) the
/// upstream's chunks as they arrive and logs the call when it ends; if
/// the client goes away first, `Drop` logs it as `client_closed`.
struct ProxyStream {
    upstream: BodyDataStream<UpstreamBody>,
    decoder: Decoder,
    /// None: the bytes pass as they are.
    encoder: Option<StreamEncoder>,
    /// Encodes the error frame when the stream fails.
    errors: StreamEncoder,
    acc: StreamAccumulator,
    ttft_ms: Option<f64>,
    /// Fires at the first-token deadline until the first event, then at
    /// the end of the whole call.
    deadline: Pin<Box<tokio::time::Sleep>>,
    limits: StreamLimits,
    ctx: Option<CallCtx>,
    done: bool,
}

/// The deadlines of a stream after its headers arrived.
struct StreamLimits {
    /// The whole call: the sooner of the request timeout and the model's total timeout.
    total_at: tokio::time::Instant,
    total_ms: u64,
    /// The first event, while none has arrived (the model's first-token timeout).
    first_at: Option<tokio::time::Instant>,
    first_ms: u64,
}

impl ProxyStream {
    fn fail(&mut self, status: RequestStatus, error: String) -> Bytes {
        if let Some(ctx) = &self.ctx {
            let kind = if status == RequestStatus::Timeout {
                "timeout"
            } else {
                "stream"
            };
            ctx.app
                .metrics
                .record_upstream_error(&ctx.route.target.upstream, kind);
        }
        let mut out = Vec::new();
        self.errors.error(&error, &mut out);
        self.done = true;
        if let Some(ctx) = self.ctx.take() {
            let partial = std::mem::take(&mut self.acc).finish();
            ctx.finish(Outcome::Failed {
                status,
                http_status: 200,
                error,
                partial: Some(partial),
                ttft_ms: self.ttft_ms,
            });
        }
        Bytes::from(out)
    }

    /// Handles decoded events; returns the client bytes for `chunk`.
    fn events(&mut self, chunk: Bytes, events: Vec<ChatEvent>) -> Bytes {
        let mut out = Vec::new();
        let mut finished = false;
        for ev in &events {
            if self.ttft_ms.is_none()
                && !matches!(ev, ChatEvent::Done { .. })
                && let Some(ctx) = &self.ctx
            {
                self.ttft_ms = Some(ctx.started.elapsed().as_secs_f64() * 1000.0);
            }
            if self.limits.first_at.take().is_some() {
                self.deadline.as_mut().reset(self.limits.total_at);
            }
            self.acc.push(ev);
            if let Some(enc) = &mut self.encoder {
                enc.push(ev, &mut out);
            }
            finished |= matches!(ev, ChatEvent::Done { .. });
        }
        if finished {
            self.done = true;
            if let Some(ctx) = self.ctx.take() {
                let response = std::mem::take(&mut self.acc).finish();
                ctx.finish(Outcome::Done {
                    response,
                    ttft_ms: self.ttft_ms,
                });
            }
        }
        match &self.encoder {
            None => chunk,
            Some(_) => Bytes::from(out),
        }
    }
}

impl Stream for ProxyStream {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.deadline.as_mut().poll(cx).is_ready() {
                let msg = match this.limits.first_at {
                    Some(_) => format!(
                        "no first token within the model's first_token_ms ({} ms)",
                        this.limits.first_ms
                    ),
                    None => format!(
                        "the stream did not finish within {} ms",
                        this.limits.total_ms
                    ),
                };
                let b = this.fail(RequestStatus::Timeout, msg);
                return Poll::Ready(Some(Ok(b)));
            }
            match this.upstream.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    let out = match this.decoder.push(&chunk) {
                        Ok(evs) => this.events(chunk, evs),
                        Err(e) => this.fail(RequestStatus::Error, format!("upstream stream: {e}")),
                    };
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let b = this.fail(RequestStatus::Error, format!("upstream stream: {e}"));
                    return Poll::Ready(Some(Ok(b)));
                }
                Poll::Ready(None) => {
                    let out = match this.decoder.finish() {
                        Ok(evs) => this.events(Bytes::new(), evs),
                        Err(e) => this.fail(RequestStatus::Error, format!("upstream stream: {e}")),
                    };
                    this.done = true;
                    if this.ctx.is_some() {
                        // Ended without a final event and without an error:
                        // the decoders make this impossible, but never lose the row.
                        let b = this.fail(
                            RequestStatus::Error,
                            "the upstream stream ended early".into(),
                        );
                        return Poll::Ready(Some(Ok(b)));
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl Drop for ProxyStream {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.take() {
            let partial = std::mem::take(&mut self.acc).finish();
            ctx.finish(Outcome::Failed {
                status: RequestStatus::ClientClosed,
                http_status: 200,
                error: "the client closed the connection before the stream ended".into(),
                partial: Some(partial),
                ttft_ms: self.ttft_ms,
            });
        }
    }
}

/// The streaming response. Its headers wait for the first chunk so that
/// both leave in one write: sent apart, they cost the client a second
/// read and the proxy a second flush on the path to the first token.
#[allow(clippy::too_many_arguments)]
async fn stream_response(
    ctx: CallCtx,
    resp: UpstreamResponse,
    dialect: Dialect,
    client_model: &str,
    kind: ProviderKind,
    limits: StreamLimits,
    variant: Variant,
    version: &HeaderValue,
) -> Response {
    let first = limits
        .first_at
        .map_or(limits.total_at, |f| f.min(limits.total_at));
    let decoder = match kind {
        ProviderKind::Openai => Decoder::OpenAi(openai::StreamDecoder::new()),
        ProviderKind::Ollama => Decoder::Ollama(ollama::StreamDecoder::new()),
    };
    let encoder = (!same_dialect(dialect, kind))
        .then(|| StreamEncoder::new(dialect, client_model, &ctx.request_id));
    let request_id = ctx.request_id.clone();
    let mut body = ProxyStream {
        upstream: BodyDataStream::new(resp.into_body()),
        decoder,
        encoder,
        errors: StreamEncoder::new(dialect, client_model, &request_id),
        acc: StreamAccumulator::new(),
        ttft_ms: None,
        deadline: Box::pin(tokio::time::sleep_until(first)),
        limits,
        ctx: Some(ctx),
        done: false,
    };
    // A client that goes away meanwhile drops `body`, which logs the call.
    let first = body.next().await;
    let mut r = Response::new(Body::from_stream(
        futures_util::stream::iter(first).chain(body),
    ));
    let content_type = if dialect.is_ollama() {
        "application/x-ndjson"
    } else {
        "text/event-stream"
    };
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    set_headers(&mut r, &request_id, variant, version);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::prompt::{InputSpec, InputType, MessageTemplate, Role};
    use crate::template::CompiledMessages;
    use serde_json::json;

    fn prompt() -> PreparedPrompt {
        let messages = vec![
            MessageTemplate {
                role: Role::System,
                content: "Be brief.".into(),
            },
            MessageTemplate {
                role: Role::User,
                content: "Q: {{ input }}".into(),
            },
        ];
        let config: crate::spec::config::Config = serde_yaml_ng::from_str(
            "version: 1\nproviders: {p: {kind: openai, base_url: 'http://127.0.0.1:9'}}\nmodels: {m: {provider: p, name: n}}\n",
        )
        .unwrap();
        let client = crate::provider::ModelClient::from_config(&config, "m").unwrap();
        let mut inputs = std::collections::BTreeMap::new();
        inputs.insert(
            "input".to_string(),
            InputSpec {
                kind: InputType::String,
                required: true,
                default: None,
                description: None,
            },
        );
        PreparedPrompt {
            id: "p".into(),
            blob: "b".into(),
            git_ref: "r".into(),
            commit: "c".into(),
            version: HeaderValue::from_static("c:b"),
            target: Arc::new(ModelTarget {
                key: "m".into(),
                client,
                upstream: "p".into(),
                breaker: super::super::breaker::CircuitBreaker::new(Default::default()),
            }),
            params: Map::new(),
            templates: Arc::new(CompiledMessages::compile(&messages).unwrap()),
            inputs,
            online: Default::default(),
        }
    }

    #[test]
    fn the_last_user_message_fills_input_between_history_and_tool_turns() {
        let msgs = vec![
            json!({"role": "user", "content": "earlier"}),
            json!({"role": "assistant", "content": "reply"}),
            json!({"role": "user", "content": [{"type": "text", "text": "now"}]}),
            json!({"role": "assistant", "tool_calls": [{"id": "c1"}]}),
            json!({"role": "tool", "tool_call_id": "c1", "content": "42"}),
        ];
        let (out, vars) = render(&prompt(), None, msgs).unwrap();
        assert_eq!(vars["input"], "now");
        let roles: Vec<&str> = out.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(
            roles,
            ["system", "user", "assistant", "user", "assistant", "tool"]
        );
        assert_eq!(out[3]["content"], "Q: now");
        assert_eq!(out[1]["content"], "earlier");
    }

    #[test]
    fn variables_are_checked_against_the_declared_inputs() {
        let p = prompt();
        let err = render(&p, None, vec![json!({"role": "system", "content": "x"})]).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("messages"));
        let vars = |v: serde_json::Value| v.as_object().cloned();
        let err = render(&p, vars(json!({"input": 1})), vec![]).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("variables.input"));
        let err = render(&p, vars(json!({"input": "a", "extra": 1})), vec![]).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("variables.extra"));
        // `variables` without `input` and no user message to fill it.
        let err = render(&p, vars(json!({})), vec![]).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("messages"));
        let (out, _) = render(&p, vars(json!({"input": "{{ 7*7 }}"})), vec![]).unwrap();
        assert_eq!(out[1]["content"], "Q: {{ 7*7 }}");
    }

    #[test]
    fn variables_without_input_still_take_it_from_the_last_user_message() {
        let mut p = prompt();
        p.inputs.insert(
            "tone".to_string(),
            InputSpec {
                kind: InputType::String,
                required: false,
                default: None,
                description: None,
            },
        );
        let vars = json!({"tone": "dry"}).as_object().cloned();
        let msgs = vec![json!({"role": "user", "content": "hello"})];
        let (out, bound) = render(&p, vars, msgs).unwrap();
        assert_eq!(bound["input"], "hello");
        assert_eq!(bound["tone"], "dry");
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[1]["content"], "Q: hello");
        // Without variables the optional input is bound to none.
        let msgs = vec![json!({"role": "user", "content": "hi"})];
        let (_, bound) = render(&p, None, msgs).unwrap();
        assert_eq!(bound["tone"], Value::Null);
    }
}
