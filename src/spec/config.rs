//! `promptgate.yaml`: providers, models with prices, logging and server settings.
//!
//! Every struct denies unknown fields so a typo is an error, not a silently
//! ignored setting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole `promptgate.yaml`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// File format version; only `1` exists.
    pub version: u32,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: BTreeMap<String, ModelConfig>,
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(default)]
    pub server: ServerConfig,
    /// Drift detection (`promptgate drift`, serve's analyzer); absent: the
    /// defaults of [`super::drift::DriftConfig`] for the CLI, no schedule in serve.
    #[serde(default)]
    pub drift: Option<super::drift::DriftConfig>,
    /// The review queue as serve feeds it; reloads with the prompts.
    #[serde(default)]
    pub review: ReviewConfig,
}

/// `review:`: what serve adds to the review queue by itself.
///
/// ```yaml
/// review:
///   auto_enqueue:          # absent: only `review sample` and drift queue calls
///     max_score: 0.0       # feedback at most this queues the call (0 worst, 1 best)
///     rate: 0.2            # of those calls, this share (by a hash of the request id)
///     max_per_hour: 50     # at most this many queued by serve in any hour
/// ```
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReviewConfig {
    #[serde(default)]
    pub auto_enqueue: Option<AutoEnqueue>,
}

/// `review.auto_enqueue`: a call that gets low feedback goes into the
/// review queue as the feedback arrives.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AutoEnqueue {
    /// A feedback score at most this is low (as `review sample --max-score`).
    #[serde(default)]
    pub max_score: f64,
    /// The share of low-feedback calls queued, 0 to 1; the same call is
    /// always in or out of the share (a hash of its request id decides).
    #[serde(default = "default_auto_rate")]
    pub rate: f64,
    /// Calls queued by serve in any sliding hour, at most.
    #[serde(default = "default_max_per_hour")]
    pub max_per_hour: u32,
}

fn default_auto_rate() -> f64 {
    1.0
}
fn default_max_per_hour() -> u32 {
    50
}

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Ollama native API (`/api/chat`, NDJSON streaming).
    Ollama,
    /// OpenAI-compatible API (`/v1/chat/completions`, SSE streaming): vLLM,
    /// llama.cpp server, LM Studio, TGI, OpenAI.
    Openai,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Ollama => "ollama",
            ProviderKind::Openai => "openai",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// Base URL without the API path, e.g. `http://127.0.0.1:11434`.
    pub base_url: String,
    /// Name of the environment variable holding the API key. The key itself
    /// never appears in a config file, a log or an error.
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Retries after the first attempt on connect errors, 429 and 5xx.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

fn default_max_retries() -> u32 {
    2
}

/// Timeouts of one call, in milliseconds.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    #[serde(default = "default_connect_ms")]
    pub connect_ms: u64,
    #[serde(default = "default_first_token_ms")]
    pub first_token_ms: u64,
    #[serde(default = "default_total_ms")]
    pub total_ms: u64,
}

fn default_connect_ms() -> u64 {
    2_000
}
fn default_first_token_ms() -> u64 {
    60_000
}
fn default_total_ms() -> u64 {
    300_000
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: default_connect_ms(),
            first_token_ms: default_first_token_ms(),
            total_ms: default_total_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Key into `providers`.
    pub provider: String,
    /// The model name the upstream knows, e.g. `llama3.2:1b`.
    pub name: String,
    /// Default parameters (temperature, max_tokens, seed, ...); a prompt's
    /// own params override them key by key.
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub price: Price,
    /// Overrides the provider's timeouts for this model.
    #[serde(default)]
    pub timeouts: Option<Timeouts>,
}

/// Price table of a model. Token prices are per million tokens; `per_second`
/// prices wall-clock time for self-hosted models.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    #[serde(default)]
    pub input_per_mtok: f64,
    #[serde(default)]
    pub output_per_mtok: f64,
    #[serde(default)]
    pub per_second: f64,
}

impl Price {
    /// Cost of one call in the config's currency.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64, seconds: f64) -> f64 {
        (input_tokens as f64) * self.input_per_mtok / 1e6
            + (output_tokens as f64) * self.output_per_mtok / 1e6
            + seconds * self.per_second
    }
}

/// What the request logger does when its channel is full.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnFull {
    /// Wait for room: nothing is lost, requests may slow down.
    #[default]
    Block,
    /// Drop the row and count it: request latency stays flat.
    Drop,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// Root of the Parquet logs, relative to the repository root.
    #[serde(default = "default_log_dir")]
    pub dir: String,
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    #[serde(default = "default_flush_rows")]
    pub flush_rows: usize,
    #[serde(default = "default_channel_capacity")]
    pub channel_capacity: usize,
    #[serde(default)]
    pub on_full: OnFull,
    #[serde(default)]
    pub redact: Redaction,
    /// `s3://bucket/prefix`: finished files are uploaded there and deleted
    /// locally once the store confirmed them ([`crate::lake`]).
    #[serde(default)]
    pub store: Option<String>,
    #[serde(default)]
    pub store_options: StoreOptions,
}

/// How to reach `logging.store` (credentials: the environment only).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreOptions {
    /// E.g. `http://127.0.0.1:9000` for MinIO or moto; default: AWS (or
    /// `AWS_ENDPOINT_URL`).
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most
    /// S3-compatible servers want; default: the client's (path style).
    #[serde(default)]
    pub path_style: Option<bool>,
    /// Finished files waiting for upload, in MiB, before the request log
    /// writer stops taking rows (back-pressure, nothing dropped).
    #[serde(default = "default_max_backlog_mb")]
    pub max_backlog_mb: u64,
}

fn default_max_backlog_mb() -> u64 {
    1024
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            endpoint: None,
            region: None,
            path_style: None,
            max_backlog_mb: default_max_backlog_mb(),
        }
    }
}

fn default_log_dir() -> String {
    ".promptgate/logs".to_string()
}
fn default_flush_interval_ms() -> u64 {
    1_000
}
fn default_flush_rows() -> usize {
    10_000
}
fn default_channel_capacity() -> usize {
    65_536
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            dir: default_log_dir(),
            flush_interval_ms: default_flush_interval_ms(),
            flush_rows: default_flush_rows(),
            channel_capacity: default_channel_capacity(),
            on_full: OnFull::default(),
            redact: Redaction::default(),
            store: None,
            store_options: StoreOptions::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Redaction {
    #[serde(default)]
    pub emails: bool,
    #[serde(default)]
    pub phones: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Environment variable holding the bearer token for `/admin/*`.
    #[serde(default)]
    pub admin_token_env: Option<String>,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Git ref whose `rollout.yaml` is served; `HEAD` follows the checked-out branch.
    #[serde(default = "default_control_ref")]
    pub control_ref: String,
    /// Per-upstream circuit breaker: fail fast with 503 while an upstream is down.
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
}

/// `server.circuit_breaker`: after `failure_threshold` consecutive failures
/// of one upstream, refuse calls to it for `open_ms`, then let one probe
/// through; its outcome closes or re-opens the breaker.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    #[serde(default = "default_open_ms")]
    pub open_ms: u64,
}

fn default_failure_threshold() -> u32 {
    5
}
fn default_open_ms() -> u64 {
    10_000
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            failure_threshold: default_failure_threshold(),
            open_ms: default_open_ms(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8787".to_string()
}
fn default_max_body_bytes() -> usize {
    1 << 20
}
fn default_request_timeout_ms() -> u64 {
    300_000
}
fn default_control_ref() -> String {
    "HEAD".to_string()
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            admin_token_env: None,
            max_body_bytes: default_max_body_bytes(),
            request_timeout_ms: default_request_timeout_ms(),
            control_ref: default_control_ref(),
            circuit_breaker: CircuitBreakerConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Diagnostic, FileKind, SourceFile};

    fn config(review: &str) -> Result<Config, Vec<Diagnostic>> {
        let text = format!(
            "version: 1\nproviders:\n  local: {{kind: ollama, base_url: \"http://127.0.0.1:1\"}}\nmodels:\n  m: {{provider: local, name: x}}\n{review}"
        );
        SourceFile::new("promptgate.yaml", text).parse(FileKind::Config)
    }

    #[test]
    fn review_auto_enqueue_defaults_and_parses() {
        assert_eq!(config("").unwrap().review.auto_enqueue, None);
        let c = config("review:\n  auto_enqueue: {}\n").unwrap();
        assert_eq!(
            c.review.auto_enqueue,
            Some(AutoEnqueue {
                max_score: 0.0,
                rate: 1.0,
                max_per_hour: 50
            })
        );
        let c = config("review:\n  auto_enqueue: {max_score: 0.25, rate: 0.2, max_per_hour: 7}\n")
            .unwrap();
        let a = c.review.auto_enqueue.unwrap();
        assert_eq!((a.max_score, a.rate, a.max_per_hour), (0.25, 0.2, 7));
    }

    #[test]
    fn review_mistakes_are_named_at_their_line() {
        let cases = [
            (
                "review:\n  auto_enqueue:\n    rate: 1.5\n",
                8,
                "review.auto_enqueue.rate",
            ),
            (
                "review:\n  auto_enqueue:\n    max_score: -1\n",
                8,
                "review.auto_enqueue.max_score",
            ),
            (
                "review:\n  auto_enqueue:\n    max_per_hour: 0\n",
                8,
                "review.auto_enqueue.max_per_hour",
            ),
            (
                "review:\n  auto_enqueue:\n    below: 0.1\n",
                8,
                "review.auto_enqueue.below",
            ),
            ("review:\n  auto: {}\n", 7, "review.auto"),
        ];
        for (text, line, field) in cases {
            let d = config(text).unwrap_err();
            assert_eq!(
                (d[0].line, d[0].field.as_str()),
                (line, field),
                "{text}: {d:?}"
            );
        }
    }
}
