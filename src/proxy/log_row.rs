//! The log row of one call: what a call carries to its end
//! ([`CallRecord`]), how it ended ([`Outcome`]), and the completion task
//! that builds the row, scores it online, counts it and queues it for the
//! request log.
//!
//! Invariants: a [`CallRecord`] is finished exactly once (finishing
//! consumes it), so a call that reached a model has exactly one row; the
//! row is built, parsed and scored on a task of its own, after the client
//! has its answer, never on the request path.

use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::app::{App, InFlightGuard};
use super::error::ApiError;
use super::metrics::RequestSample;
use super::online;
use super::prepare::Route;
use super::routing::user_hash;
use super::state::ServingState;
use crate::logstore::{RequestLogRow, RequestStatus};
use crate::provider::ChatResponse;

/// When and as what a request arrived.
pub struct Arrival {
    pub request_id: String,
    pub ts: DateTime<Utc>,
    pub started: Instant,
}

impl Arrival {
    pub fn now() -> Arrival {
        Arrival {
            started: Instant::now(),
            ts: Utc::now(),
            request_id: uuid::Uuid::now_v7().to_string(),
        }
    }
}

/// Everything the log row of a call needs, carried to its completion.
pub struct CallRecord {
    pub app: Arc<App>,
    pub request_id: String,
    pub ts: DateTime<Utc>,
    pub started: Instant,
    pub state: Arc<ServingState>,
    pub route: Route,
    /// The variables bound (empty until the request is prepared).
    pub variables: Map<String, Value>,
    /// The messages sent upstream (empty until the request is prepared).
    pub messages: Vec<Value>,
    pub user_hash: Option<String>,
    pub stream: bool,
    _guard: InFlightGuard,
}

/// How a call ended.
pub enum Outcome {
    /// A finished answer.
    Done {
        response: ChatResponse,
        ttft_ms: Option<f64>,
    },
    /// The upstream's body, passed to the client as it was; parsed for the
    /// log on the completion task.
    Raw { body: Bytes },
    Failed {
        status: RequestStatus,
        http_status: u16,
        error: String,
        /// What had been produced before the failure (streams).
        partial: Option<ChatResponse>,
        ttft_ms: Option<f64>,
    },
}

impl Outcome {
    /// The failure answered to the client as `err` before any answer.
    pub fn failed(err: &ApiError) -> Outcome {
        let status = if err.status == StatusCode::GATEWAY_TIMEOUT {
            RequestStatus::Timeout
        } else {
            RequestStatus::Error
        };
        Outcome::Failed {
            status,
            http_status: err.status.as_u16(),
            error: err.to_string(),
            partial: None,
            ttft_ms: None,
        }
    }
}

impl CallRecord {
    /// A call in flight from now until it is finished.
    pub fn start(
        app: Arc<App>,
        arrival: Arrival,
        state: Arc<ServingState>,
        route: Route,
        user: Option<&str>,
        stream: bool,
    ) -> CallRecord {
        CallRecord {
            _guard: app.in_flight.enter(),
            app,
            request_id: arrival.request_id,
            ts: arrival.ts,
            started: arrival.started,
            state,
            route,
            variables: Map::new(),
            messages: Vec::new(),
            user_hash: user.map(user_hash),
            stream,
        }
    }

    /// Milliseconds since the call started.
    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// Logs the call on a completion task.
    pub fn finish(self, outcome: Outcome) {
        let latency_ms = self.elapsed_ms();
        let task = async move {
            let mut row = self.row(outcome, latency_ms);
            if let Some(p) = &self.route.prompt {
                online::evaluate(Some(&p.online), &mut row);
                self.app.judges.spawn(&p.id, &p.online, &row);
            }
            let auto = self.state.config.review.auto_enqueue.as_ref();
            self.app.auto_review.remember(auto, &row);
            let metrics = &self.app.metrics;
            if let (Some(prompt), Some(pass)) = (&row.prompt_id, row.online_pass) {
                metrics.record_online(prompt, row.variant.as_str(), pass);
            }
            metrics.record_request(&RequestSample {
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
        let mut row = self.request_row();
        row.latency_ms = latency_ms;
        let (response, ttft_ms) = self.answer(outcome, &mut row);
        row.ttft_ms = ttft_ms;
        if let Some(r) = response {
            fill_answer(&mut row, r);
        }
        row.cost = self.route.target.client.price().cost(
            row.input_tokens,
            row.output_tokens,
            latency_ms / 1000.0,
        );
        row
    }

    /// The row's fields known before the answer: what was served, from
    /// where, to whom, with what.
    fn request_row(&self) -> RequestLogRow {
        let mut row = RequestLogRow::new(self.request_id.clone(), self.ts);
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
        let target = &self.route.target;
        row.variant = self.route.variant;
        row.model = target.key.clone();
        row.upstream_model = target.client.model_name().to_string();
        // Serializing a map of JSON values cannot fail.
        row.variables = serde_json::to_string(&self.variables).unwrap_or_default();
        row.messages = serde_json::to_string(&self.messages).unwrap_or_default();
        row.user_hash = self.user_hash.clone();
        row.stream = self.stream;
        row
    }

    /// The answer of `outcome` (parsed by the provider when the client got
    /// the upstream's bytes), and its time to first token; a failure's
    /// status and error go to `row`.
    fn answer(
        &self,
        outcome: Outcome,
        row: &mut RequestLogRow,
    ) -> (Option<ChatResponse>, Option<f64>) {
        match outcome {
            Outcome::Done { response, ttft_ms } => (Some(response), ttft_ms),
            Outcome::Raw { body } => {
                match self.route.target.client.provider().parse_response(&body) {
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
        }
    }
}

/// The output (the text, else the tool calls as OpenAI JSON), the tokens
/// and the model the upstream reported.
fn fill_answer(row: &mut RequestLogRow, r: ChatResponse) {
    row.output = if r.content.is_empty() && !r.tool_calls.is_empty() {
        let calls = r.tool_calls.iter().enumerate();
        Value::Array(calls.map(|(i, c)| c.to_openai(i)).collect()).to_string()
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
