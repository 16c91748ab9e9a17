//! The body of a streaming call: the upstream's chunks decoded by the
//! provider's [`EventDecoder`], forwarded as they are (same API on both
//! sides) or re-encoded for the client, under the first-token and total
//! deadlines, and logged when the stream ends.
//!
//! Invariants: the call's [`CallRecord`] is finished exactly once: at the
//! final event, at the first error or deadline (the client then gets an
//! error frame), or, when the client goes away first, by [`Drop`] as
//! `client_closed`. The headers wait for the first chunk so that both
//! leave in one write.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::BodyDataStream;

use super::log_row::{CallRecord, Outcome};
use crate::logstore::RequestStatus;
use crate::provider::encode::StreamEncoder;
use crate::provider::{
    ChatApi, ChatEvent, EventDecoder, StreamAccumulator, Timeouts, UpstreamBody, UpstreamResponse,
};

/// The deadlines of a stream after its headers arrived.
pub struct StreamLimits {
    /// The whole call: the sooner of the request timeout and the model's total timeout.
    total_at: tokio::time::Instant,
    total_ms: u64,
    /// The first event, while none has arrived (the model's first-token timeout).
    first_at: Option<tokio::time::Instant>,
    first_ms: u64,
}

impl StreamLimits {
    /// The limits of a call started at `started` with `request_timeout_ms`
    /// (`server.request_timeout_ms`) and the model's timeouts.
    pub fn new(started: std::time::Instant, request_timeout_ms: u64, t: Timeouts) -> StreamLimits {
        let started = tokio::time::Instant::from_std(started);
        let ms = std::time::Duration::from_millis;
        let total_ms = request_timeout_ms.min(t.total_ms);
        StreamLimits {
            total_at: started + ms(total_ms),
            total_ms,
            first_at: Some(started + ms(t.first_token_ms)),
            first_ms: t.first_token_ms,
        }
    }

    /// The message of the deadline that fired.
    fn timeout_message(&self) -> String {
        match self.first_at {
            Some(_) => format!(
                "no first token within the model's first_token_ms ({} ms)",
                self.first_ms
            ),
            None => format!("the stream did not finish within {} ms", self.total_ms),
        }
    }
}

/// The streaming response for a client of `api` that asked for
/// `client_model`, without the promptgate headers (the caller's).
pub async fn respond(
    record: CallRecord,
    resp: UpstreamResponse,
    api: ChatApi,
    client_model: &str,
    limits: StreamLimits,
) -> Response {
    let first = limits
        .first_at
        .map_or(limits.total_at, |f| f.min(limits.total_at));
    let provider = record.route.target.client.provider().clone();
    let encoder =
        (provider.api() != api).then(|| StreamEncoder::new(api, client_model, &record.request_id));
    let mut body = ProxyStream {
        upstream: BodyDataStream::new(resp.into_body()),
        decoder: provider.stream_decoder(),
        encoder,
        errors: StreamEncoder::new(api, client_model, &record.request_id),
        acc: StreamAccumulator::new(),
        ttft_ms: None,
        deadline: Box::pin(tokio::time::sleep_until(first)),
        limits,
        record: Some(record),
        done: false,
    };
    // A client that goes away meanwhile drops `body`, which logs the call.
    let first = body.next().await;
    let mut r = Response::new(Body::from_stream(
        futures_util::stream::iter(first).chain(body),
    ));
    let content_type = if api.is_ollama() {
        "application/x-ndjson"
    } else {
        "text/event-stream"
    };
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The client's body of a streaming call: forwards (or re-encodes) the
/// upstream's chunks as they arrive and logs the call when it ends; if
/// the client goes away first, `Drop` logs it as `client_closed`.
struct ProxyStream {
    upstream: BodyDataStream<UpstreamBody>,
    decoder: Box<dyn EventDecoder>,
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
    /// Taken when the call is logged.
    record: Option<CallRecord>,
    done: bool,
}

impl ProxyStream {
    /// Ends the stream with an error frame and logs the call as failed.
    fn fail(&mut self, status: RequestStatus, error: String) -> Bytes {
        let mut out = Vec::new();
        self.errors.error(&error, &mut out);
        self.done = true;
        if let Some(record) = self.record.take() {
            let kind = match status {
                RequestStatus::Timeout => "timeout",
                _ => "stream",
            };
            let upstream = &record.route.target.upstream;
            record.app.metrics.record_upstream_error(upstream, kind);
            self.finish_failed(record, status, error);
        }
        Bytes::from(out)
    }

    fn finish_failed(&mut self, record: CallRecord, status: RequestStatus, error: String) {
        let partial = std::mem::take(&mut self.acc).finish();
        record.finish(Outcome::Failed {
            status,
            http_status: 200,
            error,
            partial: Some(partial),
            ttft_ms: self.ttft_ms,
        });
    }

    /// Handles decoded events; returns the client bytes for `chunk`.
    fn events(&mut self, chunk: Bytes, events: Vec<ChatEvent>) -> Bytes {
        let mut out = Vec::new();
        let mut finished = false;
        for ev in &events {
            if self.ttft_ms.is_none()
                && !matches!(ev, ChatEvent::Done { .. })
                && let Some(record) = &self.record
            {
                self.ttft_ms = Some(record.elapsed_ms());
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
            if let Some(record) = self.record.take() {
                let response = std::mem::take(&mut self.acc).finish();
                record.finish(Outcome::Done {
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

    /// The client bytes of the upstream body's end.
    fn end(&mut self) -> Option<Bytes> {
        let out = match self.decoder.finish() {
            Ok(evs) => self.events(Bytes::new(), evs),
            Err(e) => self.fail(RequestStatus::Error, format!("upstream stream: {e}")),
        };
        self.done = true;
        if self.record.is_some() {
            // Ended without a final event and without an error: the
            // decoders make this impossible, but never lose the row.
            return Some(self.fail(
                RequestStatus::Error,
                "the upstream stream ended early".into(),
            ));
        }
        (!out.is_empty()).then_some(out)
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
                let msg = this.limits.timeout_message();
                let b = this.fail(RequestStatus::Timeout, msg);
                return Poll::Ready(Some(Ok(b)));
            }
            let out = match this.upstream.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => match this.decoder.push(&chunk) {
                    Ok(evs) => this.events(chunk, evs),
                    Err(e) => this.fail(RequestStatus::Error, format!("upstream stream: {e}")),
                },
                Poll::Ready(Some(Err(e))) => {
                    this.fail(RequestStatus::Error, format!("upstream stream: {e}"))
                }
                Poll::Ready(None) => return Poll::Ready(this.end().map(Ok)),
            };
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(out)));
            }
        }
    }
}

impl Drop for ProxyStream {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            let error = "the client closed the connection before the stream ended".into();
            self.finish_failed(record, RequestStatus::ClientClosed, error);
        }
    }
}
