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

pub mod analyzer;
pub mod app;
pub mod breaker;
pub mod call;
pub mod error;
pub mod fetch;
pub mod log_row;
pub mod metrics;
pub mod online;
pub mod prepare;
pub mod reload;
pub mod routes;
pub mod routing;
pub mod server;
pub mod state;
pub mod status;
pub mod stream;
pub mod test_hooks;
pub mod translate;

pub use analyzer::AnalyzerOptions;
pub use fetch::FetchOptions;
pub use server::{DEFAULT_GRACE, ServeError, ServeOptions, Server, ShutdownReport};

#[cfg(test)]
mod layering;
