//! The dashboard: HTML pages rendered on the server (minijinja, auto-escaped)
//! with SVG charts drawn on the server ([`crate::report::svg`]), every asset
//! compiled into the binary: no script from elsewhere, no Node build.
//!
//! Two hosts serve the same pages: `serve` at `/ui` (live figures from the
//! in-memory metrics, the rollout as it is served, the analyzer's last
//! round) and `promptgate ui --logs DIR...` (read-only over log roots).
//! What differs between them is behind [`Host`]; the review queue and the
//! cost-vs-quality plane are behind [`ReviewQueue`] and [`CostPlane`] so
//! their modules plug in without the pages changing.
//!
//! History comes from the Parquet logs by column projection through
//! [`cache::LogCache`], which re-reads only the files that changed.
//!
//! Security: when an admin token is configured every page and API needs it
//! (`Authorization: Bearer` or the cookie `/ui/login` sets); requests that
//! change state also need a same-origin `Origin`. Every logged text is
//! escaped by the templates and redacted with the host's settings before
//! it is shown.

pub(crate) mod backends;
pub(crate) mod cache;
pub(crate) mod calls;
pub(crate) mod overview;
pub(crate) mod pages;
pub(crate) mod priority;
pub(crate) mod routes;

use std::path::PathBuf;

use serde::Serialize;

use crate::logstore::LogStoreError;
use crate::spec::config::Redaction;

pub use backends::{JournalQueue, ProductionPlane, ReadOnlyQueues};
pub use routes::{Dashboard, router};

/// Why a page could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error(transparent)]
    Logs(#[from] LogStoreError),
    #[error(transparent)]
    Read(#[from] crate::drift::DriftError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
    #[error("no call `{0}` in the logs")]
    NoSuchCall(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    BadRequest(String),
}

/// The live figures of one prompt and variant since the proxy started
/// (from the in-memory metrics, the same counters `/metrics` renders).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LiveFigures {
    pub prompt: String,
    pub variant: String,
    pub requests: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: f64,
    pub latency_mean_ms: Option<f64>,
    pub online_scored: u64,
    pub online_passed: u64,
}

/// One served ref.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServedView {
    pub git_ref: String,
    pub commit: String,
    pub subject: String,
}

/// One check of the canary analysis as it stands.
#[derive(Debug, Clone, Serialize)]
pub struct CheckView {
    pub prompt: String,
    pub metric: String,
    pub limit: String,
    pub stable_n: u64,
    pub canary_n: u64,
    pub stable_value: Option<f64>,
    pub canary_value: Option<f64>,
    pub difference: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub margin: f64,
    pub status: String,
}

/// One round of the analyzer, as the rollout page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AnalysisView {
    pub at: String,
    pub decision: String,
    pub action: String,
    pub reason: String,
    pub min_requests: u64,
    /// Calls of the canary so far per prompt (progress to `min_requests`).
    pub canary_requests: Vec<(String, u64)>,
    pub checks: Vec<CheckView>,
    /// What the round committed (rollback or promotion), if anything.
    pub applied: Option<String>,
    pub error: Option<String>,
}

/// One commit of `rollout.yaml`'s history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub commit: String,
    pub time: String,
    pub author: String,
    pub subject: String,
    /// `rollback`, `promotion` or `change`, from the subject.
    pub kind: &'static str,
}

impl From<crate::repo::FileVersion> for HistoryEntry {
    fn from(v: crate::repo::FileVersion) -> HistoryEntry {
        HistoryEntry {
            kind: history_kind(&v.subject),
            time: chrono::DateTime::from_timestamp(v.time, 0)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default(),
            commit: v.commit,
            author: v.author,
            subject: v.subject,
        }
    }
}

/// What is live and how the canary is doing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RolloutView {
    pub control_ref: String,
    pub control_commit: String,
    pub stable: ServedView,
    pub canary: Option<ServedView>,
    pub weight: Option<f64>,
    /// Every round the dashboard has seen, oldest first (the confidence
    /// sequence over time).
    pub rounds: Vec<AnalysisView>,
    pub history: Vec<HistoryEntry>,
}

/// What the host of the pages provides beyond the logs.
pub trait Host: Send + Sync {
    /// The admin token in force, if any (read per request: it may change
    /// with a reload).
    fn admin_token(&self) -> Option<String>;
    /// Redaction to apply to every logged text shown.
    fn redaction(&self) -> Redaction;
    /// Live figures since start-up; None where there is no proxy.
    fn live(&self) -> Option<Vec<LiveFigures>> {
        None
    }
    /// The rollout as served; None where there is no repository.
    fn rollout(&self) -> Option<RolloutView> {
        None
    }
}

/// An item of the review queue as the review page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewItemView {
    pub item_id: String,
    pub request_id: String,
    pub reason: String,
    pub state: String,
    pub output: String,
}

/// What a reviewer decided, from the review form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ReviewDecision {
    Accept,
    Correct(String),
    Label(String),
    Discard,
}

/// The review queue the call page enqueues into and the review page works
/// on ([`backends::JournalQueue`], [`backends::ReadOnlyQueues`]).
pub trait ReviewQueue: Send + Sync {
    /// Puts a logged call in the queue; the item id.
    fn enqueue(&self, request_id: &str, reason: &str) -> Result<String, String>;
    /// Open items first.
    fn items(&self) -> Result<Vec<ReviewItemView>, String>;
    fn submit(&self, item_id: &str, decision: ReviewDecision) -> Result<(), String>;
    /// Whether enqueue and submit may work (the pages hide their forms
    /// otherwise).
    fn writable(&self) -> bool {
        true
    }
}

/// One point of the production cost-vs-quality plane.
#[derive(Debug, Clone, Serialize)]
pub struct PlanePoint {
    pub label: String,
    pub prompt_version: String,
    pub model: String,
    pub calls: u64,
    pub cost_per_call: f64,
    pub quality: f64,
    pub on_frontier: bool,
}

/// The production cost/quality plane per version and model
/// ([`backends::ProductionPlane`]).
pub trait CostPlane: Send + Sync {
    fn plane(&self, roots: &[PathBuf]) -> Result<Vec<PlanePoint>, String>;
}

/// A host with fixed settings: `promptgate ui` over log roots.
#[derive(Debug, Clone, Default)]
pub struct StaticHost {
    pub token: Option<String>,
    pub redaction: Redaction,
    pub rollout: Option<RolloutView>,
}

impl Host for StaticHost {
    fn admin_token(&self) -> Option<String> {
        self.token.clone()
    }

    fn redaction(&self) -> Redaction {
        self.redaction
    }

    fn rollout(&self) -> Option<RolloutView> {
        self.rollout.clone()
    }
}

/// Whether `given` equals `expected`, in time independent of where they
/// differ (a token's prefix must not leak by timing).
pub(crate) fn token_matches(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The kind of a rollout.yaml commit, from the subjects the canary
/// actions write.
pub(crate) fn history_kind(subject: &str) -> &'static str {
    let s = subject.to_ascii_lowercase();
    if s.contains("rollback") || s.contains("roll back") || s.starts_with("revert") {
        "rollback"
    } else if s.contains("promot") {
        "promotion"
    } else {
        "change"
    }
}
