//! `promptgate serve`: the proxy beside the application.
//!
//! Clients speak the OpenAI (`/v1/chat/completions`, `/v1/models`) or
//! Ollama (`/api/chat`, `/api/generate`, `/api/tags`) API; `model:
//! "prompt:<id>"` names a prompt of the repository, any other model name is
//! a model alias of promptgate.yaml passed through. Each request is routed
//! to the stable or canary ref of `rollout.yaml` ([`routing`]), rendered
//! from templates compiled at load time, sent upstream through
//! [`crate::provider`], answered (converted when client and upstream
//! dialects differ, [`translate`]), and logged to Parquet through
//! [`crate::logstore`] once complete ([`call`]).
//!
//! Only committed state is served: `rollout.yaml` is read from the control
//! ref and prompts from the refs it names, through git2 ([`state`]). The
//! state is rebuilt off the request path when refs move and swapped
//! atomically; an invalid one is refused ([`reload`]).
//!
//! Module map: [`server`] (start, shutdown), [`routes`] (HTTP), [`call`]
//! (one proxied call, streaming body with its `Drop` guard), [`state`],
//! [`reload`], [`routing`], [`translate`], [`online`] (online evaluation
//! of every answer), [`analyzer`] (the canary analysis task), [`fetch`]
//! (replicas following a shared remote), [`error`] (the HTTP error type).

pub(crate) mod analyzer;
pub(crate) mod app;
pub(crate) mod breaker;
pub(crate) mod call;
pub(crate) mod error;
pub(crate) mod fetch;
pub(crate) mod log_row;
pub(crate) mod metrics;
pub(crate) mod online;
pub(crate) mod prepare;
pub(crate) mod reload;
pub(crate) mod routes;
pub(crate) mod routing;
pub(crate) mod server;
pub(crate) mod state;
pub mod status;
pub(crate) mod stream;
pub(crate) mod test_hooks;
pub(crate) mod translate;

pub(crate) use analyzer::AnalyzerOptions;
pub(crate) use fetch::FetchOptions;
pub use metrics::{Metrics, RequestSample};
pub use online::sampled;
pub use routing::{CanaryRule, user_hash};
pub(crate) use server::{ServeOptions, Server};

#[cfg(test)]
mod layering;
