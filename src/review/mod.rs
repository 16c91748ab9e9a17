//! The review queue: production calls picked for people to look at, their
//! leases and the decisions taken on them. `review sample` (and serve's
//! automatic enqueue, and drift's `on_drift: review`) add items;
//! `review next` and the HTTP routes lease and decide them; `dataset grow`
//! turns the decided items into dataset rows.
//!
//! Invariants:
//! - An item is one logged call, identified by its request id: a call is
//!   never queued twice.
//! - An item gets at most one decision; a second one is refused, and the
//!   first stays as it was.
//! - At most one unexpired lease per item: two reviewers never hold the
//!   same item. A decision needs the item unleased, or leased by the same
//!   reviewer.
//! - A decision is acknowledged only after its journal line is fsynced.
//!
//! The on-disk format is described in [`queue`].

mod drift_hook;
mod queue;
mod sample;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use drift_hook::DriftReviewQueue;
pub use queue::{QueueStats, ReviewQueue};
pub use sample::{SampleOptions, SampleOutcome, Strategy, sample};

/// Folder of the queue under a log root.
pub const REVIEW_DIR: &str = "review";

/// How long a lease lasts unless the caller says otherwise.
pub const DEFAULT_LEASE_SECS: i64 = 15 * 60;

const MAX_REVIEWER: usize = 128;
const MAX_TEXT: usize = 64 * 1024;

/// A feedback record as the reviewer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemFeedback {
    pub score: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// One queued call: everything a reviewer needs without the logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// The logged call's request id; also the item's id.
    pub request_id: String,
    /// The suite the call was sampled for, when known.
    #[serde(default)]
    pub suite: Option<String>,
    pub prompt_id: Option<String>,
    pub prompt_version: Option<String>,
    pub commit: String,
    pub variant: String,
    /// The bound variables, a JSON object.
    pub variables: Value,
    /// The rendered messages, a JSON array.
    pub messages: Value,
    pub output: String,
    #[serde(default)]
    pub feedback: Vec<ItemFeedback>,
    /// `{assertion: score}` of the online checks.
    #[serde(default)]
    pub online_scores: Value,
    #[serde(default)]
    pub online_pass: Option<bool>,
    /// Why it was picked: the strategy and what it saw.
    pub reason: String,
    /// When the call was served.
    pub call_ts: DateTime<Utc>,
    pub enqueued_at: DateTime<Utc>,
}

impl ReviewItem {
    /// The item of a logged call with its feedback.
    pub fn from_row(
        row: &crate::logstore::RequestLogRow,
        feedback: &[&crate::logstore::FeedbackRecord],
        suite: Option<&str>,
        reason: String,
    ) -> ReviewItem {
        let json = |text: &str, empty: Value| serde_json::from_str(text).unwrap_or(empty);
        ReviewItem {
            request_id: row.request_id.clone(),
            suite: suite.map(str::to_string),
            prompt_id: row.prompt_id.clone(),
            prompt_version: row.prompt_version.clone(),
            commit: row.commit.clone(),
            variant: row.variant.as_str().to_string(),
            variables: json(&row.variables, Value::Object(Map::new())),
            messages: json(&row.messages, Value::Array(Vec::new())),
            output: row.output.clone(),
            feedback: feedback
                .iter()
                .map(|f| ItemFeedback {
                    score: f.score,
                    label: f.label.clone(),
                    correction: f.correction.clone(),
                    comment: f.comment.clone(),
                })
                .collect(),
            online_scores: json(&row.online_scores, Value::Object(Map::new())),
            online_pass: row.online_pass,
            reason,
            call_ts: row.ts,
            enqueued_at: crate::logstore::RequestLogRow::new("", Utc::now()).ts,
        }
    }
}

/// What the reviewer decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Verdict {
    /// The output is right: it becomes the expected answer.
    Accept,
    /// The output is wrong: this is what it should have been (`expected`
    /// text, and/or values of the columns the suite's assertions read).
    Correct {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected: Option<String>,
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        columns: Map<String, Value>,
    },
    /// A label only (no dataset row).
    Label { label: String },
    /// Not useful: no dataset row.
    Discard,
}

impl Verdict {
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Correct { .. } => "correct",
            Verdict::Label { .. } => "label",
            Verdict::Discard => "discard",
        }
    }

    fn validate(&self) -> Result<(), ReviewError> {
        let bad = |field: &'static str, message: String| {
            Err(ReviewError::Invalid(crate::logstore::FieldError {
                field,
                message,
            }))
        };
        match self {
            Verdict::Correct { expected, columns } => {
                if expected.is_none() && columns.is_empty() {
                    return bad(
                        "expected",
                        "a correction needs `expected` text or `columns`".into(),
                    );
                }
                if expected.as_ref().is_some_and(|e| e.len() > MAX_TEXT) {
                    return bad("expected", format!("longer than {MAX_TEXT} bytes"));
                }
                if let Some(k) = columns.keys().find(|k| k.trim().is_empty()) {
                    return bad("columns", format!("empty column name `{k}`"));
                }
            }
            Verdict::Label { label } => crate::logstore::id_like("label", label, 64)?,
            Verdict::Accept | Verdict::Discard => {}
        }
        Ok(())
    }
}

/// A decision on one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub request_id: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub reviewer: String,
    pub ts: DateTime<Utc>,
}

/// A reviewer's hold on an item until `expires`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub lease_id: String,
    pub request_id: String,
    pub reviewer: String,
    pub expires: DateTime<Utc>,
}

/// Where an item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Pending,
    Leased,
    Decided,
}

/// An item with its lease and decision, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemView {
    pub status: ItemStatus,
    pub item: ReviewItem,
    pub lease: Option<Lease>,
    pub decision: Option<Decision>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no review item for request `{0}`")]
    UnknownItem(String),
    #[error(
        "item `{request_id}` was already decided ({kind} by {reviewer} at {ts}); a decision is final"
    )]
    AlreadyDecided {
        request_id: String,
        kind: &'static str,
        reviewer: String,
        ts: DateTime<Utc>,
    },
    #[error("item `{request_id}` is leased by {reviewer} until {expires}")]
    LeasedByOther {
        request_id: String,
        reviewer: String,
        expires: DateTime<Utc>,
    },
    #[error("invalid decision: {0}")]
    Invalid(#[from] crate::logstore::FieldError),
    #[error(transparent)]
    Logs(#[from] crate::logstore::LogStoreError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Sample(String),
}

impl ReviewError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ReviewError {
        let path = path.into();
        move |source| ReviewError::Io { path, source }
    }

    /// The HTTP status a client error maps to (None: a server error).
    pub fn client_status(&self) -> Option<u16> {
        match self {
            ReviewError::UnknownItem(_) => Some(404),
            ReviewError::AlreadyDecided { .. } | ReviewError::LeasedByOther { .. } => Some(409),
            ReviewError::Invalid(_) => Some(422),
            _ => None,
        }
    }
}

fn check_reviewer(reviewer: &str) -> Result<(), ReviewError> {
    Ok(crate::logstore::id_like(
        "reviewer",
        reviewer,
        MAX_REVIEWER,
    )?)
}
