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

/// Up to `per_group` calls of each drifted group's current window, spread
/// evenly over its text sample (a uniform sample of the window, in time
/// order).
pub fn candidates(report: &DriftReport, per_group: usize) -> Vec<ReviewCandidate> {
    report
        .groups
        .iter()
        .filter(|g| g.status == Status::Drift)
        .flat_map(|g| {
            let ids = &g.current_sample_ids;
            let step = if per_group == 0 {
                usize::MAX
            } else {
                ids.len().div_ceil(per_group).max(1)
            };
            ids.iter()
                .step_by(step)
                .take(per_group)
                .map(|id| ReviewCandidate {
                    group: g.group.clone(),
                    request_id: id.clone(),
                    drifted: g.drifted.clone(),
                })
        })
        .collect()
}

/// Why the review queue did not take the proposed calls.
#[derive(Debug, thiserror::Error)]
pub enum ReviewQueueError {
    /// This build (or this server) has no review queue.
    #[error("on_drift: review: {proposed} call(s) proposed, but no review queue is configured")]
    NoQueue { proposed: usize },
    /// The queue's storage failed; nothing was added.
    #[allow(
        dead_code,
        reason = "constructed by the review queue (src/review/), merged separately"
    )]
    #[error("the review queue: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where `on_drift: review` puts calls: the review queue implements this.
/// `serve` takes an `Arc<dyn ReviewQueue>` (see
/// `proxy::drift_task::DriftOptions`), so the queue is plugged in where
/// the server is started.
pub trait ReviewQueue: Send + Sync {
    /// Adds the calls; returns how many were new to the queue.
    fn enqueue(&self, candidates: &[ReviewCandidate]) -> Result<usize, ReviewQueueError>;
}

/// The queue until one exists: refuses, so `on_drift: review` is never
/// silently a no-op.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReviewQueue;

impl ReviewQueue for NoReviewQueue {
    fn enqueue(&self, candidates: &[ReviewCandidate]) -> Result<usize, ReviewQueueError> {
        Err(ReviewQueueError::NoQueue {
            proposed: candidates.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::GroupReport;
    use crate::spec::drift::Thresholds;

    fn report(status: Status, ids: usize) -> DriftReport {
        DriftReport {
            reference: "first:10".into(),
            current: "last:10".into(),
            fdr: 0.05,
            min_rows: 1,
            thresholds: Thresholds::default(),
            status,
            groups: vec![GroupReport {
                group: "faq".into(),
                kind: "prompt",
                status,
                reference_calls: 10,
                current_calls: 10,
                reference_sampled: 10,
                current_sampled: 10,
                reference_range: None,
                current_range: None,
                features: vec![],
                drifted: vec!["output.refusal".into()],
                current_sample_ids: (0..ids).map(|i| format!("r{i}")).collect(),
            }],
        }
    }

    #[test]
    fn candidates_come_from_drifted_groups_spread_over_the_window() {
        let c = candidates(&report(Status::Drift, 100), 4);
        let ids: Vec<&str> = c.iter().map(|c| c.request_id.as_str()).collect();
        assert_eq!(ids, vec!["r0", "r25", "r50", "r75"]);
        assert_eq!(c[0].drifted, vec!["output.refusal".to_string()]);
        assert_eq!(candidates(&report(Status::Drift, 3), 10).len(), 3);
        assert!(candidates(&report(Status::NoDrift, 100), 4).is_empty());
        assert!(NoReviewQueue.enqueue(&c).is_err());
    }
}
