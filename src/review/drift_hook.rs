//! `on_drift: review`: the calls drift proposes go into the review queue of
//! the log root they were read from.

use std::collections::HashSet;
use std::path::PathBuf;

use super::{ReviewItem, ReviewQueue};
use crate::drift::review::{ReviewCandidate, ReviewQueueError};
use crate::logstore;

/// The review queue as drift's hook sees it: candidates are request ids,
/// so the queue reads their rows (and feedback) from `logs`.
#[derive(Debug, Clone)]
pub struct DriftReviewQueue {
    pub queue: ReviewQueue,
    pub logs: Vec<PathBuf>,
}

impl crate::drift::review::ReviewQueue for DriftReviewQueue {
    fn enqueue(&self, candidates: &[ReviewCandidate]) -> Result<usize, ReviewQueueError> {
        let wanted: HashSet<&str> = candidates.iter().map(|c| c.request_id.as_str()).collect();
        // Only the candidates' rows are decoded: the log may hold days of
        // calls and the queue wants a handful of them.
        let rows = logstore::read_requests_by_id(&self.logs, &wanted).map_err(storage)?;
        let mut feedback = logstore::read_feedback(&self.logs).map_err(storage)?;
        feedback.retain(|f| wanted.contains(f.request_id.as_str()));
        let join = logstore::join_feedback(&rows, &feedback);
        let items: Vec<ReviewItem> = join
            .requests
            .iter()
            .filter(|r| wanted.contains(r.request.request_id.as_str()))
            .filter_map(|r| {
                let c = candidates
                    .iter()
                    .find(|c| c.request_id == r.request.request_id)?;
                Some(ReviewItem::from_row(
                    r.request,
                    &r.feedback,
                    None,
                    format!("drift: {}", c.drifted.join(", ")),
                ))
            })
            .collect();
        self.queue.enqueue(items).map_err(storage)
    }
}

fn storage(e: impl std::error::Error + Send + Sync + 'static) -> ReviewQueueError {
    ReviewQueueError::Storage(Box::new(e))
}
