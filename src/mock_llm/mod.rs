//! `promptgate mock-llm`: a deterministic LLM server for tests, demos and
//! benchmarks, always labelled as a mock. It speaks the Ollama native API
//! (`POST /api/chat`, `POST /api/generate`, `GET /api/tags`; NDJSON
//! streaming, on by default as in Ollama) and the OpenAI API
//! (`POST /v1/chat/completions`, `GET /v1/models`; SSE streaming with
//! `data: [DONE]`, a usage chunk when `stream_options.include_usage` is set).
//! Answers are written by the same encoders the proxy answers its clients
//! with ([`crate::provider::encode`]).
//!
//! What it answers, for the last user message (`prompt` for `/api/generate`):
//! 1. With probability `error_rate`: HTTP 500.
//! 2. If the request has `tools` and the message contains `call NAME` (NAME
//!    one of the tools, optionally followed by a JSON object of arguments):
//!    a tool call of NAME with those arguments (`{}` when none).
//! 3. The first rule whose regex matches ([`rules`]): its answer template
//!    with `$1`, `${name}` replaced by the capture groups. With probability
//!    `1 - quality` the answer is replaced by a fixed wrong answer
//!    (`quality` is the probability a rule answer is KEPT; 1.0 = always right).
//! 4. No rule matched (or no rules): the message itself (echo).
//! 5. JSON mode (Ollama `format`, OpenAI `response_format` of type
//!    `json_object`/`json_schema`): the answer as `{"answer": "..."}`.
//!
//! Invariants: every random draw is a hash of (seed, model, the request's
//! sampling seed if it has one, messages) ([`decide`]), so the same request
//! gets the same answer (and the same injected error) whatever the
//! concurrency or order, while requests that differ only in their sampling
//! seed (the repeats of an eval case) are independent draws, as with a real
//! model; token counts are whitespace-split word counts of all message
//! contents (input) and of the answer (output); every response's `model` is
//! `mock:<requested model>` and the banner says MOCK.

mod decide;
mod routes;
mod rules;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

pub use decide::{Draws, QUALITY_SALT};
pub use rules::parse_rules;
pub(crate) use rules::{Rule, load_rules};

/// The first line `mock-llm` prints; tests read the address from it.
pub fn banner(addr: SocketAddr) -> String {
    format!("mock-llm (MOCK, not a real model) listening on http://{addr}")
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
    #[error("--{flag} must be between 0 and 1, got {value}")]
    Probability { flag: &'static str, value: f64 },
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
        for (flag, value) in [("error-rate", self.error_rate), ("quality", self.quality)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(MockError::Probability { flag, value });
            }
        }
        Ok(())
    }
}

/// The mock's routes.
pub fn router(cfg: MockConfig) -> Router {
    routes::router(cfg)
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
