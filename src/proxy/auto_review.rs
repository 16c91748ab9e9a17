//! `review.auto_enqueue`: a call that gets low feedback goes into the
//! review queue by itself, as the feedback arrives.
//!
//! The problem: feedback usually comes seconds after the answer, before
//! the call's row is in a Parquet file (the writer flushes on an interval),
//! so the queue item cannot be built from the log yet. Two paths:
//!
//! 1. **Recent calls** ([`RecentCalls`]): while auto-enqueue is on, the
//!    completion task of each prompt call keeps a copy of its row in a
//!    bounded in-memory map keyed by request id ([`RECENT_CALLS`] rows and
//!    [`RECENT_BYTES`] of text at most, oldest evicted first). Feedback on
//!    a call in the map is queued at once.
//! 2. **Pending** references: feedback on a call not in the map (served
//!    before auto-enqueue was switched on, evicted, or whose completion
//!    task had not run yet) waits until the writer's flush interval has
//!    passed, then the call is read from this replica's log by id
//!    ([`crate::logstore::read_requests_by_id_in`], only the partitions
//!    from the call's time on: request ids are UUIDv7). A call still not
//!    found is tried again with backoff and given up after [`PENDING_TTL`]
//!    (feedback on a call another replica served, or a made-up id).
//!
//! The feedback route never waits: it checks the score and the rate
//! (a hash of the request id, so repeated feedback on one call decides the
//! same way) and hands the call to this module's task through a bounded
//! channel (`try_send`; a full channel counts `overflow`). The task
//! applies `max_per_hour` (a sliding hour, seeded from the queue's journal
//! at start so a restart does not reset it) and enqueues off the async
//! threads. A call is never queued twice: the queue refuses known request
//! ids durably, and pending references are keyed by request id.
//!
//! Every outcome is counted in `/metrics` as
//! `promptgate_review_auto_total{result}`; `promptgate_review_auto_pending`
//! is the number of calls waiting for the log. Settings are read from the
//! serving state of each feedback request, so a committed change of
//! `review.auto_enqueue` applies from the next feedback after the reload.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::metrics::{Metrics, REVIEW_AUTO};
use crate::logstore::{FeedbackRecord, RequestFilter, RequestLogRow, RequestStatus};
use crate::review::{ReviewItem, ReviewQueue};
use crate::spec::config::AutoEnqueue;

/// Rows kept in the recent-calls map, at most.
pub const RECENT_CALLS: usize = 2048;
/// Bytes of text (messages, variables, output) kept in the map, at most.
pub const RECENT_BYTES: usize = 16 << 20;
/// Low-feedback calls waiting for the task, at most (the channel).
pub const CHANNEL: usize = 1024;
/// Calls waiting for the log, at most.
pub const MAX_PENDING: usize = 1024;
/// How long a call not found in the log is looked for.
pub const PENDING_TTL: Duration = Duration::from_secs(600);
/// What a queued item's reason says after the score.
pub const AUTO_REASON: &str = "queued by serve as the feedback arrived";

/// The recent prompt calls, by request id, oldest first out.
#[derive(Debug, Default)]
pub struct RecentCalls {
    rows: HashMap<String, Arc<RequestLogRow>>,
    order: VecDeque<String>,
    bytes: usize,
}

fn text_bytes(row: &RequestLogRow) -> usize {
    row.messages.len() + row.variables.len() + row.output.len() + row.online_scores.len()
}

impl RecentCalls {
    /// Keeps `row`, evicting the oldest rows past the bounds.
    pub fn insert(&mut self, row: RequestLogRow) {
        let size = text_bytes(&row);
        if size > RECENT_BYTES || self.rows.contains_key(&row.request_id) {
            return;
        }
        while !self.order.is_empty()
            && (self.rows.len() >= RECENT_CALLS || self.bytes + size > RECENT_BYTES)
        {
            if let Some(old) = self.order.pop_front()
                && let Some(r) = self.rows.remove(&old)
            {
                self.bytes -= text_bytes(&r);
            }
        }
        self.bytes += size;
        self.order.push_back(row.request_id.clone());
        self.rows.insert(row.request_id.clone(), Arc::new(row));
    }

    pub fn get(&self, request_id: &str) -> Option<Arc<RequestLogRow>> {
        self.rows.get(request_id).cloned()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }
}

/// The enqueues of the last hour, for `max_per_hour`.
#[derive(Debug, Default)]
pub struct HourWindow {
    at: VecDeque<DateTime<Utc>>,
}

impl HourWindow {
    fn trim(&mut self, now: DateTime<Utc>) {
        let from = now - chrono::Duration::hours(1);
        while self.at.front().is_some_and(|t| *t <= from) {
            self.at.pop_front();
        }
    }

    /// Whether one more fits under `max` at `now`.
    pub fn allows(&mut self, now: DateTime<Utc>, max: u32) -> bool {
        self.trim(now);
        self.at.len() < max as usize
    }

    pub fn record(&mut self, at: DateTime<Utc>) {
        let i = self.at.partition_point(|t| *t <= at);
        self.at.insert(i, at);
    }
}

/// One low feedback on its way to the task, with the settings in force
/// when it arrived.
#[derive(Debug)]
struct LowFeedback {
    feedback: FeedbackRecord,
    settings: AutoEnqueue,
    /// The writer's flush interval then: when the row is in Parquet.
    flush_after: Duration,
}

/// What the feedback route and the completion task share with the task.
#[derive(Debug)]
pub struct AutoReview {
    recent: Mutex<RecentCalls>,
    tx: mpsc::Sender<LowFeedback>,
    rx: Mutex<Option<mpsc::Receiver<LowFeedback>>>,
    pending: AtomicU64,
    metrics: Arc<Metrics>,
}

/// The outcome of a feedback as the route sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handed {
    /// Off, or the score is not low.
    Ignored,
    /// Low, but outside the rate's share.
    SampledOut,
    /// Handed to the task.
    Queued,
    /// The channel was full (or the task gone): not queued, counted.
    Dropped,
}

impl AutoReview {
    pub fn new(metrics: Arc<Metrics>) -> AutoReview {
        let (tx, rx) = mpsc::channel(CHANNEL);
        AutoReview {
            recent: Mutex::new(RecentCalls::default()),
            tx,
            rx: Mutex::new(Some(rx)),
            pending: AtomicU64::new(0),
            metrics,
        }
    }

    /// The completion task's part: keeps a finished prompt call while
    /// auto-enqueue is on (`settings`), so its feedback needs no log read.
    pub fn remember(&self, settings: Option<&AutoEnqueue>, row: &RequestLogRow) {
        if settings.is_none_or(|s| s.rate <= 0.0)
            || row.prompt_id.is_none()
            || row.status != RequestStatus::Ok
        {
            return;
        }
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(row.clone());
    }

    /// The feedback route's part, after the feedback is stored: never
    /// waits.
    pub fn on_feedback(
        &self,
        settings: Option<&AutoEnqueue>,
        flush_interval_ms: u64,
        feedback: &FeedbackRecord,
    ) -> Handed {
        let Some(settings) = settings else {
            return Handed::Ignored;
        };
        if feedback.score > settings.max_score {
            return Handed::Ignored;
        }
        if settings.rate <= 0.0
            || !super::online::sampled(&feedback.request_id, "review.auto_enqueue", settings.rate)
        {
            self.metrics.count_event(REVIEW_AUTO, &["sampled_out"]);
            return Handed::SampledOut;
        }
        let msg = LowFeedback {
            feedback: feedback.clone(),
            settings: *settings,
            flush_after: Duration::from_millis(flush_interval_ms),
        };
        match self.tx.try_send(msg) {
            Ok(()) => Handed::Queued,
            Err(_) => {
                self.metrics.count_event(REVIEW_AUTO, &["overflow"]);
                Handed::Dropped
            }
        }
    }

    /// Calls waiting for the log now.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Rows in the recent-calls map now.
    pub fn recent_calls(&self) -> usize {
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn recent(&self, request_id: &str) -> Option<Arc<RequestLogRow>> {
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(request_id)
    }
}

/// A call whose row is not in memory: looked for in the log.
struct Pending {
    msg: LowFeedback,
    since: Instant,
    next_try: Instant,
    tries: u32,
}

/// What the task uses: the shared half, the queue, this replica's log.
#[derive(Clone)]
pub struct AutoReviewHandles {
    pub shared: Arc<AutoReview>,
    pub queue: ReviewQueue,
    pub log_dir: PathBuf,
}

/// Runs until aborted (serve's shutdown) or the channel closes.
pub async fn run(handles: AutoReviewHandles) {
    let Some(mut rx) = handles
        .shared
        .rx
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    else {
        tracing::error!("review auto-enqueue task started twice");
        return;
    };
    let mut window = seed_window(&handles.queue).await;
    let mut pending: HashMap<String, Pending> = HashMap::new();
    loop {
        let wake = pending.values().map(|p| p.next_try).min();
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { return };
                take(&handles, &mut window, &mut pending, msg).await;
            }
            () = sleep_until(wake), if wake.is_some() => {
                resolve(&handles, &mut window, &mut pending).await;
            }
        }
        handles
            .shared
            .pending
            .store(pending.len() as u64, Ordering::Relaxed);
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}

/// The auto-enqueues of the last hour in the journal: a restart keeps the
/// cap.
async fn seed_window(queue: &ReviewQueue) -> HourWindow {
    let queue = queue.clone();
    let listed = tokio::task::spawn_blocking(move || queue.list()).await;
    let mut w = HourWindow::default();
    match listed {
        Ok(Ok(items)) => {
            let from = Utc::now() - chrono::Duration::hours(1);
            for v in items {
                if v.item.reason.ends_with(AUTO_REASON) && v.item.enqueued_at > from {
                    w.record(v.item.enqueued_at);
                }
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "review queue unreadable: max_per_hour starts at 0")
        }
        Err(e) => tracing::warn!(error = %e, "review queue task failed"),
    }
    w
}

/// A new low feedback: queued now when its call is in memory, else
/// pending until the writer has flushed it.
async fn take(
    handles: &AutoReviewHandles,
    window: &mut HourWindow,
    pending: &mut HashMap<String, Pending>,
    msg: LowFeedback,
) {
    if let Some(row) = handles.shared.recent(&msg.feedback.request_id) {
        enqueue(handles, window, &row, &msg).await;
        return;
    }
    let id = msg.feedback.request_id.clone();
    if pending.contains_key(&id) {
        // The same call, pending already: one item at most.
        handles
            .shared
            .metrics
            .count_event(REVIEW_AUTO, &["duplicate"]);
        return;
    }
    if pending.len() >= MAX_PENDING {
        handles
            .shared
            .metrics
            .count_event(REVIEW_AUTO, &["overflow"]);
        return;
    }
    let now = Instant::now();
    // A little after the flush: the writer's rename lands after its tick.
    let first = now + msg.flush_after + Duration::from_millis(250);
    pending.insert(
        id,
        Pending {
            msg,
            since: now,
            next_try: first,
            tries: 0,
        },
    );
}

/// Looks for the due pending calls in the log; queues those found.
async fn resolve(
    handles: &AutoReviewHandles,
    window: &mut HourWindow,
    pending: &mut HashMap<String, Pending>,
) {
    let now = Instant::now();
    let due: Vec<String> = pending
        .iter()
        .filter(|(_, p)| p.next_try <= now)
        .map(|(id, _)| id.clone())
        .collect();
    if due.is_empty() {
        return;
    }
    let since = due
        .iter()
        .map(|id| call_time(id))
        .collect::<Option<Vec<_>>>()
        .and_then(|ts| ts.into_iter().min())
        .map(|t| t - chrono::Duration::minutes(1));
    let log_dir = handles.log_dir.clone();
    let ids = due.clone();
    let read = tokio::task::spawn_blocking(move || {
        let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
        if !log_dir.exists() {
            return Ok(Vec::new());
        }
        let filter = RequestFilter {
            since,
            ..RequestFilter::default()
        };
        crate::logstore::read_requests_by_id_in(&[&log_dir], &filter, &wanted)
    })
    .await;
    let rows = match read {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "review auto-enqueue: reading the request log");
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "review auto-enqueue: the log reader failed");
            Vec::new()
        }
    };
    let found: HashMap<&str, &RequestLogRow> =
        rows.iter().map(|r| (r.request_id.as_str(), r)).collect();
    for id in due {
        let Some(mut p) = pending.remove(&id) else {
            continue;
        };
        if let Some(row) = found.get(id.as_str()) {
            if row.prompt_id.is_some() && row.status == RequestStatus::Ok {
                enqueue(handles, window, row, &p.msg).await;
            } else {
                handles
                    .shared
                    .metrics
                    .count_event(REVIEW_AUTO, &["not_reviewable"]);
            }
            continue;
        }
        if p.since.elapsed() >= PENDING_TTL {
            tracing::info!(request_id = %id, "review auto-enqueue: the call is not in this replica's log; given up");
            handles
                .shared
                .metrics
                .count_event(REVIEW_AUTO, &["not_found"]);
            continue;
        }
        p.tries += 1;
        p.next_try = now + backoff(p.tries);
        pending.insert(id, p);
    }
}

/// 1 s, 2 s, 4 s ... up to a minute between looks.
fn backoff(tries: u32) -> Duration {
    Duration::from_secs(1u64 << tries.min(6)).min(Duration::from_secs(60))
}

/// When a call was served, from its UUIDv7 request id.
fn call_time(request_id: &str) -> Option<DateTime<Utc>> {
    let (secs, nanos) = uuid::Uuid::parse_str(request_id)
        .ok()?
        .get_timestamp()?
        .to_unix();
    DateTime::from_timestamp(secs as i64, nanos)
}

/// Queues the call of `row` unless the hour's cap is reached.
async fn enqueue(
    handles: &AutoReviewHandles,
    window: &mut HourWindow,
    row: &RequestLogRow,
    msg: &LowFeedback,
) {
    let metrics = &handles.shared.metrics;
    let now = Utc::now();
    if !window.allows(now, msg.settings.max_per_hour) {
        metrics.count_event(REVIEW_AUTO, &["capped"]);
        return;
    }
    let reason = format!("low_feedback: score {}, {AUTO_REASON}", msg.feedback.score);
    let item = ReviewItem::from_row(row, &[&msg.feedback], None, reason);
    let queue = handles.queue.clone();
    let id = row.request_id.clone();
    match tokio::task::spawn_blocking(move || queue.enqueue(vec![item])).await {
        Ok(Ok(1)) => {
            window.record(now);
            metrics.count_event(REVIEW_AUTO, &["enqueued"]);
            tracing::info!(request_id = %id, score = msg.feedback.score, "low feedback: call queued for review");
        }
        Ok(Ok(_)) => metrics.count_event(REVIEW_AUTO, &["duplicate"]),
        Ok(Err(e)) => {
            metrics.count_event(REVIEW_AUTO, &["error"]);
            tracing::warn!(request_id = %id, error = %e, "low feedback: the review queue refused the call");
        }
        Err(e) => {
            metrics.count_event(REVIEW_AUTO, &["error"]);
            tracing::warn!(request_id = %id, error = %e, "low feedback: the enqueue task failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, output_len: usize) -> RequestLogRow {
        let mut r = RequestLogRow::new(id, Utc::now());
        r.prompt_id = Some("p".into());
        r.output = "x".repeat(output_len);
        r
    }

    #[test]
    fn recent_calls_stay_within_their_bounds_oldest_out_first() {
        let mut m = RecentCalls::default();
        for i in 0..RECENT_CALLS + 10 {
            m.insert(row(&format!("c{i}"), 10));
        }
        assert_eq!(m.len(), RECENT_CALLS);
        assert!(m.get("c0").is_none() && m.get("c9").is_none());
        assert!(m.get("c10").is_some());
        let big = RECENT_BYTES / 4;
        for i in 0..6 {
            m.insert(row(&format!("big{i}"), big));
        }
        assert!(m.bytes <= RECENT_BYTES, "{}", m.bytes);
        assert!(m.get("big5").is_some() && m.get("big0").is_none());
        // A row larger than the whole budget is not kept.
        m.insert(row("huge", RECENT_BYTES + 1));
        assert!(m.get("huge").is_none());
        assert!(m.get("big5").is_some());
    }

    #[test]
    fn the_hour_window_counts_only_the_last_hour() {
        let mut w = HourWindow::default();
        let t0 = Utc::now();
        assert!(w.allows(t0, 2));
        w.record(t0);
        w.record(t0 + chrono::Duration::minutes(10));
        assert!(!w.allows(t0 + chrono::Duration::minutes(30), 2));
        assert!(w.allows(t0 + chrono::Duration::minutes(61), 2));
        assert!(!w.allows(t0 + chrono::Duration::minutes(61), 1));
        assert!(w.allows(t0 + chrono::Duration::minutes(71), 1));
    }

    fn settings(max_score: f64, rate: f64) -> AutoEnqueue {
        AutoEnqueue {
            max_score,
            rate,
            max_per_hour: 10,
        }
    }

    #[tokio::test]
    async fn the_route_hands_on_only_low_sampled_feedback_and_never_waits() {
        let auto = AutoReview::new(Arc::new(Metrics::new()));
        let low = FeedbackRecord::new("a", 0.0);
        let high = FeedbackRecord::new("a", 0.9);
        assert_eq!(auto.on_feedback(None, 1000, &low), Handed::Ignored);
        let on = settings(0.2, 1.0);
        assert_eq!(auto.on_feedback(Some(&on), 1000, &high), Handed::Ignored);
        assert_eq!(auto.on_feedback(Some(&on), 1000, &low), Handed::Queued);
        let off = settings(0.2, 0.0);
        assert_eq!(auto.on_feedback(Some(&off), 1000, &low), Handed::SampledOut);
        // Nobody reads the channel: past its capacity the route drops.
        let mut dropped = 0;
        for i in 0..CHANNEL + 5 {
            let f = FeedbackRecord::new(format!("c{i}"), 0.0);
            if auto.on_feedback(Some(&on), 1000, &f) == Handed::Dropped {
                dropped += 1;
            }
        }
        assert_eq!(dropped, 6, "one slot was taken by the first call");
    }

    #[test]
    fn a_share_of_calls_is_sampled_and_the_same_call_always_alike() {
        let on = settings(0.0, 0.3);
        let auto = AutoReview::new(Arc::new(Metrics::new()));
        let mut queued = 0;
        for i in 0..1000 {
            let id = uuid::Uuid::now_v7().to_string();
            let f = FeedbackRecord::new(id.clone(), 0.0);
            let first = auto.on_feedback(Some(&on), 1000, &f);
            let again = super::super::online::sampled(&id, "review.auto_enqueue", on.rate);
            assert_eq!(first != Handed::SampledOut, again, "call {i}");
            if first != Handed::SampledOut {
                queued += 1;
            }
        }
        assert!((200..400).contains(&queued), "{queued} of 1000 at rate 0.3");
    }

    #[test]
    fn request_ids_tell_when_the_call_was_served() {
        let before = Utc::now() - chrono::Duration::seconds(1);
        let t = call_time(&uuid::Uuid::now_v7().to_string()).unwrap();
        assert!(t >= before && t <= Utc::now(), "{t}");
        assert!(call_time("not-a-uuid").is_none());
        assert!(call_time(&uuid::Uuid::new_v4().to_string()).is_none());
    }
}
