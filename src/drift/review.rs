//! The `on_drift: review` hook: which calls of a drifted window go to the
//! review queue, and the trait the queue (issue 16) implements. Drift only
//! proposes calls; the queue decides how to store them.

use serde::Serialize;

use super::analysis::{DriftReport, Status};

/// A call of a drifted current window, proposed for review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewCandidate {
    /// The prompt id, or `model:<name>`.
    pub group: String,
    pub request_id: String,
    /// The features that drifted in the call's window.
    pub drifted: Vec<String>,
}

/// Up to `per_group` calls of each drifted group's current window, drawn
/// from its text sample (a uniform sample of the window).
pub fn candidates(report: &DriftReport, per_group: usize) -> Vec<ReviewCandidate> {
    report
        .groups
        .iter()
        .filter(|g| g.status == Status::Drift)
        .flat_map(|g| {
            g.current_sample_ids
                .iter()
                .take(per_group)
                .map(|id| ReviewCandidate {
                    group: g.group.clone(),
                    request_id: id.clone(),
                    drifted: g.drifted.clone(),
                })
        })
        .collect()
}

/// Where `on_drift: review` puts calls: the review queue implements this.
pub trait ReviewQueue: Send + Sync {
    /// Adds the calls; returns how many were new to the queue.
    fn enqueue(&self, candidates: &[ReviewCandidate]) -> Result<usize, String>;
}

/// The queue until one exists: refuses, so `on_drift: review` is never
/// silently a no-op.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReviewQueue;

impl ReviewQueue for NoReviewQueue {
    fn enqueue(&self, candidates: &[ReviewCandidate]) -> Result<usize, String> {
        Err(format!(
            "on_drift: review: {} call(s) proposed, but this build has no review queue",
            candidates.len()
        ))
    }
}
