//! Serve's drift task: on `drift.schedule` of the serving state's
//! promptgate.yaml it runs the path of `promptgate drift`
//! ([`crate::drift::job::run`]) over this replica's log roots, records the
//! round for `/status` and `/metrics`, and, when drift is found, raises an
//! alert ([`crate::alert::raise`]: a warning and `drift.webhook`) and, for
//! `on_drift: review`, proposes calls of the drifted window to the review
//! queue. Drift never rolls anything back: it is not a regression verdict.
//!
//! Reload: the task reads the `drift:` section from the serving state at
//! every tick ([`POLL`]), so a committed change (a new schedule, other
//! windows, the section added or removed) takes effect on the next tick
//! after the reload. A malformed section never gets here: the reload
//! refuses the state that holds it and the old one keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use super::reload::Reloader;
use super::status::{DriftResult, DriftRun, TaskStatus};
use crate::drift::review::{self, ReviewQueue};
use crate::drift::{DriftError, DriftJob, DriftReport};
use crate::logstore::RequestLogger;
use crate::repo::GitRepo;
use crate::spec::drift::{DriftConfig, OnDrift};

/// How often the task looks at the serving state's `drift:` section.
pub const POLL: Duration = Duration::from_secs(5);

/// Calls of each drifted prompt's current window proposed for review.
pub const REVIEW_PER_GROUP: usize = 20;

/// How the drift task runs, and where `on_drift: review` puts calls.
#[derive(Clone)]
pub struct DriftOptions {
    /// False: no drift task (`serve --no-drift`).
    pub enabled: bool,
    /// Overrides `drift.schedule` (tests use milliseconds); the task still
    /// runs only while the serving state has a `drift:` section.
    pub interval: Option<Duration>,
    /// The review queue of `on_drift: review`; the default refuses, so the
    /// refusal is reported rather than the calls silently dropped.
    pub review: Arc<dyn ReviewQueue>,
}

impl Default for DriftOptions {
    fn default() -> Self {
        DriftOptions {
            enabled: true,
            interval: None,
            review: Arc::new(review::NoReviewQueue),
        }
    }
}

impl std::fmt::Debug for DriftOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriftOptions")
            .field("enabled", &self.enabled)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Where the drift task reads.
#[derive(Debug, Clone)]
pub struct DriftTarget {
    pub root: PathBuf,
    /// The branch whose rollout.yaml names the stable ref.
    pub control_ref: String,
    /// This replica's request log roots.
    pub log_roots: Vec<PathBuf>,
}

/// What the drift task uses of the server.
#[derive(Clone)]
pub struct DriftHandles {
    /// The serving state's `drift:` section.
    pub reloader: Arc<Reloader>,
    /// Flushed before each round reads the log.
    pub logger: RequestLogger,
    /// Where each round is recorded, for `/status` and `/metrics`.
    pub status: Arc<TaskStatus<DriftRun>>,
    pub review: Arc<dyn ReviewQueue>,
}

/// Runs drift rounds until the task is aborted.
pub async fn run(handles: DriftHandles, target: DriftTarget, interval: Option<Duration>) {
    let mut last: Option<Instant> = None;
    let mut alerted: Option<String> = None;
    loop {
        let every = interval.or_else(|| schedule(&handles));
        tokio::time::sleep(every.map_or(POLL, |e| e.min(POLL))).await;
        // Read again after the sleep: a reload may have changed it.
        let state = handles.reloader.current();
        let Some(settings) = state.config.drift.clone() else {
            continue;
        };
        let Some(every) = interval.or(settings.schedule.0) else {
            continue;
        };
        if last.is_some_and(|t| t.elapsed() < every) {
            continue;
        }
        last = Some(Instant::now());
        let served = Served {
            control_commit: state.control_commit.clone(),
            stable_commit: state.stable.commit.to_string(),
        };
        let round = drift_once(&handles, &target, settings, &served, &mut alerted).await;
        handles.status.store(round);
    }
}

/// The schedule of the serving state's `drift:` section, if it runs.
fn schedule(handles: &DriftHandles) -> Option<Duration> {
    handles
        .reloader
        .current()
        .config
        .drift
        .as_ref()
        .and_then(|d| d.schedule.0)
}

/// The commits of the serving state a round runs for.
#[derive(Debug, Clone)]
pub struct Served {
    /// Whose `drift:` section the round runs with.
    pub control_commit: String,
    /// The stable commit served: its prompts' versions make `first:N`.
    pub stable_commit: String,
}

/// One round: flush, read, analyse, alert, propose for review.
/// `alerted` is the summary of the drift last alerted about: while the
/// same features of the same prompts drift, the alert (and the review
/// proposal) is not repeated every round; a change, or drift after a
/// round without, alerts again.
pub async fn drift_once(
    handles: &DriftHandles,
    target: &DriftTarget,
    settings: DriftConfig,
    served: &Served,
    alerted: &mut Option<String>,
) -> DriftRun {
    let control_commit = served.control_commit.as_str();
    let mut run = DriftRun {
        at: Utc::now(),
        control_commit: control_commit.to_string(),
        reference: settings.reference.to_string(),
        current: settings.current.to_string(),
        result: None,
        alerted: false,
        queued_for_review: None,
        notes: Vec::new(),
        error: None,
    };
    // The writer flushes on an interval: the latest calls must be in
    // Parquet before the round reads them.
    if let Err(e) = handles.logger.flush().await {
        run.notes.push(format!("flushing the request log: {e}"));
    }
    let job = DriftJob {
        settings: settings.clone(),
        control_ref: target.control_ref.clone(),
        stable_commit: Some(served.stable_commit.clone()),
        logs: target.log_roots.clone(),
        groups: Vec::new(),
        now: run.at,
    };
    let root = target.root.clone();
    let report = tokio::task::spawn_blocking(move || -> Result<DriftReport, DriftError> {
        let git = GitRepo::open(&root)?;
        crate::drift::job::run(&git, &job, &|_| {})
    })
    .await
    .unwrap_or(Err(DriftError::Worker));
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "drift round failed");
            run.error = Some(e.to_string());
            return run;
        }
    };
    let result = DriftResult::from(&report);
    if !report.drifted() {
        *alerted = None;
    } else if alerted.as_deref() == Some(summary(&result).as_str()) {
        run.notes
            .push("the same drift as the last alert: not alerted again".into());
    } else {
        let summary = summary(&result);
        let body = serde_json::json!({
            "kind": "drift",
            "summary": summary,
            "control_commit": control_commit,
            "reference": run.reference,
            "current": run.current,
            "result": result,
        });
        run.notes.extend(
            crate::alert::raise("drift", &summary, settings.webhook.as_deref(), &body).await,
        );
        if settings.on_drift == OnDrift::Review {
            propose(handles, &report, &mut run).await;
        }
        *alerted = Some(summary);
        run.alerted = true;
    }
    run.result = Some(result);
    run
}

/// `drift in `faq`: input.question.language, output.language; drift in ...`
fn summary(result: &DriftResult) -> String {
    result
        .groups
        .iter()
        .filter(|g| !g.drifted.is_empty())
        .map(|g| format!("drift in `{}`: {}", g.group, g.drifted.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `on_drift: review`: calls of each drifted window go to the review queue
/// (off the async threads: a queue may write and fsync).
async fn propose(handles: &DriftHandles, report: &DriftReport, run: &mut DriftRun) {
    let candidates = review::candidates(report, REVIEW_PER_GROUP);
    let queue = handles.review.clone();
    let outcome = tokio::task::spawn_blocking(move || queue.enqueue(&candidates)).await;
    match outcome {
        Ok(Ok(n)) => run.queued_for_review = Some(n),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "on_drift: review: the review queue refused the calls");
            run.notes.push(e.to_string());
        }
        Err(e) => run.notes.push(format!("the review task failed: {e}")),
    }
}
