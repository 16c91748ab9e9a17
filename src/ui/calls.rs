//! The calls table (filtered from the cached projection, newest first) and
//! one call in full (its file read whole, the row found by request id).

use serde::Serialize;

use super::UiError;
use super::cache::Snapshot;
use crate::logstore::{self, FeedbackRecord, RequestFilter, RequestLogRow};

/// The table's filters, from the query string.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallFilter {
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// `any` (some feedback), `none`, `low` (latest score below 0.5).
    #[serde(default)]
    pub feedback: Option<String>,
    /// `fail`: only calls an online assertion failed.
    #[serde(default)]
    pub online: Option<String>,
    /// `1h`, `24h`, `7d` (default 7d).
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct CallRow {
    pub request_id: String,
    pub ts: String,
    pub prompt: String,
    pub variant: String,
    pub status: &'static str,
    pub latency_ms: f64,
    pub cost: f64,
    pub feedback: Option<f64>,
    pub online_pass: Option<bool>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// The calls at or after `since_us` matching `f`, newest first, at most
/// `f.limit` (default 200), and how many matched in all.
pub fn table(snapshot: &Snapshot, f: &CallFilter, since_us: i64) -> (Vec<CallRow>, usize) {
    let limit = f.limit.unwrap_or(200).clamp(1, 5000);
    let mut hits = Vec::new();
    for file in &snapshot.files {
        for c in &file.calls {
            if c.ts < since_us {
                continue;
            }
            let g = &file.groups[usize::from(c.group)];
            if non_empty(&f.prompt).is_some_and(|p| p != g.prompt)
                || non_empty(&f.variant).is_some_and(|v| v != g.variant)
                || non_empty(&f.status).is_some_and(|s| s != c.status.as_str())
                || (non_empty(&f.online) == Some("fail") && c.online_pass != Some(false))
            {
                continue;
            }
            let fb = snapshot.feedback.latest(&c.request_id);
            let keep = match non_empty(&f.feedback) {
                Some("any") => fb.is_some(),
                Some("none") => fb.is_none(),
                Some("low") => fb.is_some_and(|s| s < 0.5),
                _ => true,
            };
            if keep {
                hits.push((c, g, fb));
            }
        }
    }
    let matched = hits.len();
    hits.sort_by(|a, b| {
        b.0.ts
            .cmp(&a.0.ts)
            .then_with(|| a.0.request_id.cmp(&b.0.request_id))
    });
    let rows = hits
        .into_iter()
        .take(limit)
        .map(|(c, g, fb)| CallRow {
            request_id: c.request_id.clone(),
            ts: chrono::DateTime::from_timestamp_micros(c.ts)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                .unwrap_or_default(),
            prompt: g.prompt.clone(),
            variant: g.variant.clone(),
            status: c.status.as_str(),
            latency_ms: c.latency_ms,
            cost: c.cost,
            feedback: fb,
            online_pass: c.online_pass,
        })
        .collect();
    (rows, matched)
}

/// One call in full, with its feedback.
pub fn call(
    snapshot: &Snapshot,
    request_id: &str,
) -> Result<(RequestLogRow, Vec<FeedbackRecord>), UiError> {
    let file = snapshot
        .files
        .iter()
        .find(|f| f.calls.iter().any(|c| c.request_id == request_id))
        .ok_or_else(|| UiError::NoSuchCall(request_id.to_string()))?;
    let row = logstore::read_requests(&[&file.path], &RequestFilter::default())?
        .into_iter()
        .find(|r| r.request_id == request_id)
        .ok_or_else(|| UiError::NoSuchCall(request_id.to_string()))?;
    let mut feedback = snapshot
        .feedback
        .by_request
        .get(request_id)
        .cloned()
        .unwrap_or_default();
    feedback.sort_by_key(|r| r.ts);
    Ok((row, feedback))
}
