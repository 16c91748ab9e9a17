//! `promptgate serve`: the proxy beside the application.
//!
//! Clients speak the OpenAI (`/v1/chat/completions`, `/v1/models`) or
//! Ollama (`/api/chat`, `/api/generate`, `/api/tags`) API; `model:
//! "prompt:<id>"` names a prompt of the repository, any other model name is
//! a model alias of promptgate.yaml passed through. Each request is parsed
//! ([`translate`]), routed to the stable or canary ref of `rollout.yaml`
//! and rendered from templates compiled at load time ([`prepare`],
//! [`routing`]), sent upstream through [`crate::provider`] ([`call`]),
//! answered (the provider decodes, [`crate::provider::encode`] re-encodes
//! when client and upstream APIs differ; streams in [`stream`]), and logged
//! to Parquet through [`crate::logstore`] once complete ([`log_row`]).
//!
//! Only committed state is served: `rollout.yaml` is read from the control
//! ref and prompts from the refs it names, through git2 ([`state`]). The
//! state is rebuilt off the request path when refs move and swapped
//! atomically; an invalid one is refused ([`reload`]).
//!
//! Module map: [`server`] (start, shutdown, the background tasks),
//! [`routes`] (HTTP, `/status`), [`app`] (what handlers share), [`call`]
//! (one proxied call), [`prepare`], [`stream`] (the streaming body with
//! its `Drop` guard), [`log_row`], [`state`], [`reload`], [`routing`],
//! [`translate`], [`online`] (online evaluation of every answer),
//! [`analyzer`] (the canary analysis task), [`drift_task`] (drift on a
//! schedule), [`fetch`] (replicas following
//! a shared remote), [`status`] (the typed `/status` and the tasks'
//! rounds), [`metrics`], [`breaker`], [`error`] (the HTTP error type).
//!
//! Layering: no two files import each other, directly or through others
//! (`layering` tests it). Handlers take the whole [`app::App`]; the
//! background tasks take narrow handles (the reloader, the logger, the
//! metrics, their own [`status::TaskStatus`]); [`status`], [`metrics`],
//! [`routing`] and [`breaker`] are leaves.

pub(crate) mod analyzer;
pub(crate) mod app;
pub(crate) mod auto_review;
pub(crate) mod breaker;
pub(crate) mod call;
pub(crate) mod drift_task;
pub(crate) mod error;
pub(crate) mod fetch;
pub(crate) mod log_row;
pub(crate) mod metrics;
pub(crate) mod online;
pub(crate) mod prepare;
pub(crate) mod reload;
pub(crate) mod review_routes;
pub(crate) mod routes;
pub(crate) mod routing;
pub(crate) mod server;
pub(crate) mod state;
pub mod status;
pub(crate) mod stream;
pub(crate) mod test_hooks;
pub(crate) mod translate;
pub(crate) mod ui_host;

pub(crate) use analyzer::AnalyzerOptions;
pub(crate) use drift_task::DriftOptions;
pub(crate) use fetch::FetchOptions;
pub use metrics::{Metrics, RequestSample};
pub use online::sampled;
pub use routing::{CanaryRule, user_hash};
pub(crate) use server::{ServeOptions, Server};

#[cfg(test)]
mod layering;
