//! One proxied chat call: parse, route and prepare the request
//! ([`super::prepare`]), call the upstream through its circuit breaker,
//! answer the client (whole, or streaming through [`super::stream`]), and
//! hand the call to its log row ([`super::log_row`]).
//!
//! Invariants:
//! - The call uses the one [`ServingState`](super::state::ServingState)
//!   loaded when it started.
//! - Exactly one log row per call that reached a model, written after the
//!   response is complete (streams: when the stream ends, or with status
//!   `client_closed` when the client goes away first).
//! - Row assembly, response parsing for the log, online evaluation and the
//!   channel send run on a completion task, off the request path.
//! - Retries happen only inside the provider's `send_raw`, i.e. before the
//!   first byte reaches the client.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::app::App;
use super::error::{ApiError, json_response};
use super::log_row::{Arrival, CallRecord, Outcome};
use super::prepare;
use super::state::ModelTarget;
use super::stream::{self, StreamLimits};
use super::translate;
use crate::logstore::Variant;
use crate::provider::encode::encode_response;
use crate::provider::{CallOptions, ChatApi, ErrorKind, UpstreamResponse, read_body};

pub const REQUEST_ID: &str = "x-request-id";
pub const VARIANT: &str = "x-promptgate-variant";
pub const VERSION: &str = "x-promptgate-version";

/// How the client is answered: its API, the model name it asked for, and
/// what the headers of every answer say.
struct Reply {
    api: ChatApi,
    client_model: String,
    request_id: String,
    variant: Variant,
    version: HeaderValue,
}

impl Reply {
    fn set_headers(&self, r: &mut Response) {
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            h.insert(REQUEST_ID, v);
        }
        h.insert(VARIANT, HeaderValue::from_static(self.variant.as_str()));
        h.insert(VERSION, self.version.clone());
    }

    /// Logs the call as failed with `err` and answers it.
    fn fail(&self, record: CallRecord, err: ApiError) -> Response {
        record.finish(Outcome::failed(&err));
        let mut r = err.in_api(self.api).into_response();
        self.set_headers(&mut r);
        r
    }
}

/// The error of a request that was not routed: only its id is known.
fn error_response(err: ApiError, api: ChatApi, request_id: &str) -> Response {
    let mut r = err.in_api(api).into_response();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert(REQUEST_ID, v);
    }
    r
}

/// Serves one chat request of client API `api`.
pub async fn chat(app: Arc<App>, api: ChatApi, headers: HeaderMap, body: Bytes) -> Response {
    let arrival = Arrival::now();
    let mut req = match translate::parse_request(api, &body) {
        Ok(r) => r,
        Err(e) => return error_response(e, api, &arrival.request_id),
    };
    let state = app.reloader.current();
    let user = prepare::sticky_user(&state, &req, &headers);
    let route = match prepare::route(&state, &req, user.as_deref()) {
        Ok(r) => r,
        Err(e) => return error_response(e, api, &arrival.request_id),
    };
    let reply = Reply {
        api,
        // Routed: the request's model name is only the answer's now.
        client_model: std::mem::take(&mut req.model),
        request_id: arrival.request_id.clone(),
        variant: route.variant,
        version: route.version(&state),
    };
    let stream = req.stream;
    let mut record = CallRecord::start(app, arrival, state, route, user.as_deref(), stream);
    let prepared = match prepare::prepare(&record.route, req) {
        Ok(p) => p,
        Err(e) => return reply.fail(record, e),
    };
    let target = record.route.target.clone();
    let body = target
        .client
        .provider()
        .build_body(&prepared.request, stream);
    record.variables = prepared.variables;
    record.messages = prepared.request.messages;
    let timeout_ms = record.state.config.server.request_timeout_ms;
    let deadline = tokio::time::Instant::from_std(record.started)
        + std::time::Duration::from_millis(timeout_ms);
    let body = Bytes::from(body.to_string());
    let resp = match send(&record.app, &target, body, stream, deadline, timeout_ms).await {
        Ok(r) => r,
        Err(e) => return reply.fail(record, e),
    };
    if stream {
        let limits = StreamLimits::new(record.started, timeout_ms, target.client.timeouts());
        let mut r = stream::respond(record, resp, api, &reply.client_model, limits).await;
        reply.set_headers(&mut r);
        return r;
    }
    answer_whole(record, resp, deadline, timeout_ms, &reply).await
}

/// Sends `body` to the target's upstream by `deadline`, through its
/// circuit breaker: failing fast while the upstream is down, and giving
/// the breaker the upstream's verdict up to its headers (a client-side 4xx
/// is no failure).
async fn send(
    app: &App,
    target: &ModelTarget,
    body: Bytes,
    stream: bool,
    deadline: tokio::time::Instant,
    timeout_ms: u64,
) -> Result<UpstreamResponse, ApiError> {
    let upstream = &target.upstream;
    let permit = target.breaker.try_acquire().map_err(|open| {
        app.metrics.record_upstream_error(upstream, "breaker_open");
        ApiError::breaker_open(upstream, &open)
    })?;
    let opts = CallOptions {
        timeouts: target.client.timeouts(),
    };
    let provider = target.client.provider();
    match tokio::time::timeout_at(deadline, provider.send_raw(body, stream, opts)).await {
        Ok(Ok(r)) => {
            permit.success();
            Ok(r)
        }
        Ok(Err(e)) => {
            if matches!(e.kind(), ErrorKind::Status4xx | ErrorKind::Config) {
                permit.success();
            } else {
                permit.failure();
            }
            app.metrics
                .record_upstream_error(upstream, e.kind().as_str());
            Err(ApiError::upstream(&e))
        }
        Err(_) => {
            permit.failure();
            app.metrics.record_upstream_error(upstream, "timeout");
            Err(ApiError::request_timeout(timeout_ms))
        }
    }
}

/// A non-streaming answer in one write: the upstream's bytes when the
/// client speaks its API (parsed for the log later), else the parsed
/// answer encoded for the client.
async fn answer_whole(
    record: CallRecord,
    resp: UpstreamResponse,
    deadline: tokio::time::Instant,
    timeout_ms: u64,
    reply: &Reply,
) -> Response {
    let bytes = match tokio::time::timeout_at(deadline, read_body(resp.into_body())).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let err = ApiError::bad_gateway(format!("reading the upstream response: {e}"));
            return reply.fail(record, err);
        }
        Err(_) => return reply.fail(record, ApiError::request_timeout(timeout_ms)),
    };
    let provider = record.route.target.client.provider().clone();
    let (body, outcome) = if provider.api() == reply.api {
        (bytes.clone(), Outcome::Raw { body: bytes })
    } else {
        match provider.parse_response(&bytes) {
            Ok(r) => {
                let v = encode_response(reply.api, &reply.client_model, &reply.request_id, &r);
                let outcome = Outcome::Done {
                    response: r,
                    ttft_ms: None,
                };
                (Bytes::from(v.to_string()), outcome)
            }
            Err(e) => {
                let err =
                    ApiError::bad_gateway(format!("cannot decode the upstream response: {e}"));
                return reply.fail(record, err);
            }
        }
    };
    let mut r = json_response(StatusCode::OK, body);
    reply.set_headers(&mut r);
    record.finish(outcome);
    r
}
