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
        for (g, run) in file.groups.iter().zip(&file.runs) {
            if non_empty(&f.prompt).is_some_and(|p| p != g.prompt)
                || non_empty(&f.variant).is_some_and(|v| v != g.variant)
            {
                continue;
            }
            // A group's calls are in time order: skip those before `since_us`.
            let first = run.start + file.ts[run.clone()].partition_point(|t| *t < since_us);
            for i in first..run.end {
                let status = file.status[i];
                if non_empty(&f.status).is_some_and(|s| s != status.as_str())
                    || (non_empty(&f.online) == Some("fail") && file.online_pass[i] != Some(false))
                {
                    continue;
                }
                let id = file.request_id(i);
                let fb = snapshot.feedback.latest(id);
                let keep = match non_empty(&f.feedback) {
                    Some("any") => fb.is_some(),
                    Some("none") => fb.is_none(),
                    Some("low") => fb.is_some_and(|s| s < 0.5),
                    _ => true,
                };
                if keep {
                    hits.push((file.ts[i], id, file, g, i, fb));
                }
            }
        }
    }
    let matched = hits.len();
    hits.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let rows = hits
        .into_iter()
        .take(limit)
        .map(|(ts, id, file, g, i, fb)| CallRow {
            request_id: id.to_string(),
            ts: chrono::DateTime::from_timestamp_micros(ts)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                .unwrap_or_default(),
            prompt: g.prompt.clone(),
            variant: g.variant.clone(),
            status: file.status[i].as_str(),
            latency_ms: file.latency_ms[i],
            cost: file.cost[i],
            feedback: fb,
            online_pass: file.online_pass[i],
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
        .find(|f| (0..f.len()).any(|i| f.request_id(i) == request_id))
        .ok_or_else(|| UiError::NoSuchCall(request_id.to_string()))?;
    let row = logstore::read_requests(&[&file.path], &RequestFilter::default())?
        .into_iter()
        .find(|r| r.request_id == request_id)
        .ok_or_else(|| UiError::NoSuchCall(request_id.to_string()))?;
    let mut feedback: Vec<FeedbackRecord> =
        snapshot.feedback.records_of(request_id).cloned().collect();
    feedback.sort_by_key(|r| r.ts);
    Ok((row, feedback))
}
