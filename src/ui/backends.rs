//! The dashboard's [`CostPlane`] and [`ReviewQueue`] over the modules that
//! compute them: the production plane of [`crate::compare::production`]
//! and the journal of [`crate::review`]. `serve` plugs in its own queue;
//! `promptgate ui` lists the queues it finds under its log roots and
//! refuses to change them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{CostPlane, PlanePoint, ReviewDecision, ReviewItemView, ReviewQueue};
use crate::compare::production;
use crate::logstore::{self, RequestFilter};
use crate::review::{self, ItemStatus, ReviewItem, Verdict};

/// Who the dashboard's decisions are recorded for (the dashboard knows an
/// admin token, not a person).
pub const DASHBOARD_REVIEWER: &str = "dashboard";

/// The cost-vs-quality plane of every logged call under the roots.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProductionPlane;

impl CostPlane for ProductionPlane {
    fn plane(&self, roots: &[PathBuf]) -> Result<Vec<PlanePoint>, String> {
        // The plane's columns only, a batch at a time: the page must not
        // hold every logged prompt and output to draw a point per version.
        let feedback = logstore::read_feedback(roots).map_err(|e| e.to_string())?;
        let (_, points) = production::read_plane(
            roots,
            &RequestFilter::default(),
            &production::Calls::All,
            &feedback,
        )
        .map_err(|e| e.to_string())?;
        Ok(points.iter().filter_map(plane_point).collect())
    }
}

/// A production point as the page draws it. Quality is the online pass
/// rate, else the mean feedback score; a point with neither has no place
/// on the plane and is left out.
fn plane_point(p: &production::ProductionPoint) -> Option<PlanePoint> {
    let quality = p.online_pass_rate.or(p.mean_feedback)?;
    let version = match &p.prompt_version {
        Some(v) => format!("{} @{}", p.group, &v[..v.len().min(7)]),
        None => p.group.clone(),
    };
    Some(PlanePoint {
        label: p.label(),
        prompt_version: format!("{version} ({})", p.variant),
        model: p.model.clone(),
        calls: p.calls,
        cost_per_call: p.cost_per_call,
        quality,
        on_frontier: p.on_frontier,
    })
}

/// The review queue of a log root, with the roots its calls are read from
/// when the call page enqueues one.
#[derive(Debug, Clone)]
pub struct JournalQueue {
    pub queue: review::ReviewQueue,
    pub logs: Vec<PathBuf>,
}

impl ReviewQueue for JournalQueue {
    fn enqueue(&self, request_id: &str, reason: &str) -> Result<String, String> {
        let wanted: HashSet<&str> = [request_id].into_iter().collect();
        let rows = logstore::read_requests_by_id(&self.logs, &wanted).map_err(|e| e.to_string())?;
        let row = rows
            .first()
            .ok_or_else(|| format!("no logged call with request id `{request_id}`"))?;
        let mut feedback = logstore::read_feedback(&self.logs).map_err(|e| e.to_string())?;
        feedback.retain(|f| f.request_id == request_id);
        let feedback: Vec<&logstore::FeedbackRecord> = feedback.iter().collect();
        let item = ReviewItem::from_row(row, &feedback, None, reason.to_string());
        // Already queued is fine: a call is one item, whoever put it there.
        self.queue.enqueue(vec![item]).map_err(|e| e.to_string())?;
        Ok(request_id.to_string())
    }

    fn items(&self) -> Result<Vec<ReviewItemView>, String> {
        list_items(std::slice::from_ref(&self.queue))
    }

    fn submit(&self, item_id: &str, decision: ReviewDecision) -> Result<(), String> {
        let verdict = match decision {
            ReviewDecision::Accept => Verdict::Accept,
            ReviewDecision::Correct(text) => Verdict::Correct {
                expected: Some(text),
                columns: serde_json::Map::new(),
            },
            ReviewDecision::Label(label) => Verdict::Label { label },
            ReviewDecision::Discard => Verdict::Discard,
        };
        self.queue
            .decide(item_id, DASHBOARD_REVIEWER, verdict)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The review queues found under log roots (`<root>/review`), listed and
/// never changed: `promptgate ui` runs beside the `serve` that owns them.
#[derive(Debug, Clone)]
pub struct ReadOnlyQueues {
    queues: Vec<review::ReviewQueue>,
}

impl ReadOnlyQueues {
    /// The queues of the roots that have one; None when none has.
    pub fn find(roots: &[PathBuf]) -> Result<Option<ReadOnlyQueues>, String> {
        let queues = roots
            .iter()
            .map(|r| r.join(review::REVIEW_DIR))
            .filter(|d| d.is_dir())
            .map(|d| review::ReviewQueue::open(&d).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((!queues.is_empty()).then_some(ReadOnlyQueues { queues }))
    }

    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.queues.iter().map(review::ReviewQueue::dir)
    }
}

const READ_ONLY: &str = "`promptgate ui` shows the review queue read-only: \
     enqueue and decide through `promptgate serve`'s dashboard or `promptgate review`";

impl ReviewQueue for ReadOnlyQueues {
    fn enqueue(&self, _request_id: &str, _reason: &str) -> Result<String, String> {
        Err(READ_ONLY.into())
    }

    fn items(&self) -> Result<Vec<ReviewItemView>, String> {
        list_items(&self.queues)
    }

    fn submit(&self, _item_id: &str, _decision: ReviewDecision) -> Result<(), String> {
        Err(READ_ONLY.into())
    }

    fn writable(&self) -> bool {
        false
    }
}

/// The items of the queues, open ones first (then in queue order).
fn list_items(queues: &[review::ReviewQueue]) -> Result<Vec<ReviewItemView>, String> {
    let mut views = Vec::new();
    for q in queues {
        views.extend(q.list().map_err(|e| e.to_string())?);
    }
    // A stable sort keeps queue order within open and within decided.
    views.sort_by_key(|v| v.status == ItemStatus::Decided);
    Ok(views
        .into_iter()
        .map(|v| ReviewItemView {
            state: match (&v.decision, &v.lease) {
                (Some(d), _) => format!("decided: {} by {}", d.verdict.kind(), d.reviewer),
                (None, Some(l)) if v.status == ItemStatus::Leased => {
                    format!("leased by {}", l.reviewer)
                }
                _ => "pending".to_string(),
            },
            item_id: v.item.request_id.clone(),
            request_id: v.item.request_id,
            reason: v.item.reason,
            output: v.item.output,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logstore::RequestLogRow;

    fn point(online: Option<f64>, feedback: Option<f64>) -> production::ProductionPoint {
        production::ProductionPoint {
            group: "capital".into(),
            prompt_version: Some("aaaaaaaa11".into()),
            variant: "canary".into(),
            model: "small".into(),
            calls: 4,
            online_scored: 0,
            online_pass_rate: online,
            feedback_count: 0,
            mean_feedback: feedback,
            cost_per_call: 0.002,
            cost_per_1k: 2.0,
            error_rate: 0.0,
            latency_p50_ms: None,
            latency_p95_ms: None,
            on_frontier: true,
        }
    }

    #[test]
    fn quality_is_the_online_pass_rate_else_the_feedback_else_no_point() {
        let both = plane_point(&point(Some(0.75), Some(0.2))).unwrap();
        assert_eq!(both.quality, 0.75);
        assert_eq!(both.prompt_version, "capital @aaaaaaa (canary)");
        assert!(both.on_frontier);
        assert_eq!(plane_point(&point(None, Some(0.2))).unwrap().quality, 0.2);
        assert!(plane_point(&point(None, None)).is_none());
    }

    fn item(id: &str) -> ReviewItem {
        let mut row = RequestLogRow::new(id, chrono::Utc::now());
        row.output = format!("output of {id}");
        ReviewItem::from_row(&row, &[], None, "test".into())
    }

    #[test]
    fn open_items_come_first_and_read_only_queues_refuse_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let queue = review::ReviewQueue::for_log_root(&root).unwrap();
        queue
            .enqueue(vec![item("a"), item("b"), item("c")])
            .unwrap();
        let journal = JournalQueue {
            queue: queue.clone(),
            logs: vec![root.clone()],
        };
        journal
            .submit("a", ReviewDecision::Correct("fixed".into()))
            .unwrap();
        let items = journal.items().unwrap();
        let order: Vec<&str> = items.iter().map(|i| i.item_id.as_str()).collect();
        assert_eq!(order, ["b", "c", "a"]);
        assert_eq!(items[2].state, "decided: correct by dashboard");
        assert_eq!(items[0].state, "pending");

        let read_only = ReadOnlyQueues::find(std::slice::from_ref(&root))
            .unwrap()
            .unwrap();
        assert!(!read_only.writable());
        assert_eq!(read_only.items().unwrap().len(), 3);
        assert!(read_only.submit("b", ReviewDecision::Accept).is_err());
        assert!(read_only.enqueue("b", "x").is_err());
        assert!(queue.get("b").unwrap().decision.is_none());
        let empty = tempfile::tempdir().unwrap();
        assert!(
            ReadOnlyQueues::find(&[empty.path().to_path_buf()])
                .unwrap()
                .is_none()
        );
    }
}
