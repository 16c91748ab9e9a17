//! The analyzer task of `serve`: every `analysis.interval_s` (of the
//! committed rollout.yaml) it runs the same path as `promptgate canary
//! analyze --apply` over this replica's request log, so a canary that hurts
//! quality is rolled back (and one that holds up promoted) without anyone
//! watching.
//!
//! Each round flushes the request logger, then (on the blocking pool) loads
//! the rollout and the canary's origin from the control branch
//! ([`crate::canary::load`]), reads the rows of the analysis window and the
//! feedback from Parquet, analyses, and commits the action
//! ([`crate::canary::apply`]; pushed with `push_moved` when
//! `analysis.push` is set). Because the evidence is re-read from the log
//! every round, a restart does not reset it. `on_regression: alert` only
//! reports: a warning, the decision counter and the optional webhook.
//!
//! The commit moves the control branch; the proxy's reload (the ref watcher,
//! and a direct reload right after the commit) then serves the new state.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::metrics::{CANARY_DECISIONS, Metrics};
use super::reload::Reloader;
use super::status::{AnalysisRun, TaskStatus};
use crate::canary::{self, Action, Applied, CanaryError, CanaryReport, Decision, actions};
use crate::logstore::RequestLogger;
use crate::repo::GitRepo;

/// How the analyzer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalyzerOptions {
    /// False: no analyzer task (e.g. when a scheduled job runs `canary
    /// analyze` over every replica's logs instead).
    pub enabled: bool,
    /// Overrides `analysis.interval_s` (tests use milliseconds).
    pub interval: Option<Duration>,
}

impl Default for AnalyzerOptions {
    fn default() -> Self {
        AnalyzerOptions {
            enabled: true,
            interval: None,
        }
    }
}

/// Where the analyzer reads and writes.
#[derive(Debug, Clone)]
pub struct AnalyzerTarget {
    pub root: PathBuf,
    pub control_ref: String,
    /// This replica's request log root.
    pub log_dir: PathBuf,
}

/// What the analyzer uses of the server.
#[derive(Debug, Clone)]
pub struct AnalyzerHandles {
    /// The interval of the committed rollout, and a reload after a commit.
    pub reloader: Arc<Reloader>,
    /// Flushed before each round reads the log.
    pub logger: RequestLogger,
    pub metrics: Arc<Metrics>,
    /// Where each round is recorded, for `/status`.
    pub status: Arc<TaskStatus<AnalysisRun>>,
}

/// Runs analysis rounds until the task is aborted.
pub async fn run(handles: AnalyzerHandles, target: AnalyzerTarget, opts: AnalyzerOptions) {
    loop {
        let interval = opts.interval.unwrap_or_else(|| {
            Duration::from_secs(
                handles
                    .reloader
                    .current()
                    .rollout
                    .analysis
                    .interval_s
                    .max(1),
            )
        });
        tokio::time::sleep(interval).await;
        let round = analyze_once(&handles, &target).await;
        handles.status.store(round);
    }
}

/// What the blocking part of a round produced.
struct Step {
    control_commit: String,
    rows: usize,
    report: Option<CanaryReport>,
    webhook: Option<String>,
    applied: Option<Applied>,
    pushed: Vec<String>,
    notes: Vec<String>,
}

/// One round: flush, read, analyse, act, report.
pub async fn analyze_once(handles: &AnalyzerHandles, target: &AnalyzerTarget) -> AnalysisRun {
    let at = Utc::now();
    let mut notes = Vec::new();
    // The writer flushes on an interval: the latest rows must be in Parquet
    // before the round reads them.
    if let Err(e) = handles.logger.flush().await {
        notes.push(format!("flushing the request log: {e}"));
    }
    let t = target.clone();
    let step = tokio::task::spawn_blocking(move || blocking_round(&t))
        .await
        .unwrap_or_else(|e| {
            Err(CanaryError::Action(format!(
                "the analysis task failed: {e}"
            )))
        });
    let step = match step {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "canary analysis failed");
            return AnalysisRun {
                at,
                control_commit: None,
                rows: 0,
                report: None,
                applied: None,
                pushed: Vec::new(),
                notes,
                error: Some(e.to_string()),
            };
        }
    };
    notes.extend(step.notes);
    if let Some(report) = &step.report {
        record(&handles.metrics, report);
        if report.action == Action::Alert {
            tracing::warn!(reason = %report.reason, "canary regression (on_regression: alert)");
            if let Some(url) = &step.webhook {
                match actions::post_webhook(url, report).await {
                    Ok(()) => notes.push(format!("webhook {url} notified")),
                    Err(e) => notes.push(format!("webhook failed: {e}")),
                }
            }
        }
    }
    if let Some(a) = &step.applied {
        tracing::warn!(
            action = %a.action.describe(),
            commit = a.commit.as_deref().unwrap_or(""),
            method = %a.method,
            "canary analysis acted"
        );
        // The watcher would notice the moved branch too; reloading now
        // ends the canary's traffic without waiting for the file event.
        handles.reloader.reload(false).await;
    }
    AnalysisRun {
        at,
        control_commit: Some(step.control_commit),
        rows: step.rows,
        report: step.report,
        applied: step.applied,
        pushed: step.pushed,
        notes,
        error: None,
    }
}

/// Counts the decision once per analysed prompt (a round without canary
/// traffic yet counts under the prompt `""`).
fn record(metrics: &Metrics, report: &CanaryReport) {
    let decision = match report.decision {
        Decision::NoCanary => return,
        d => d.as_str(),
    };
    if report.prompts.is_empty() {
        metrics.count_event(CANARY_DECISIONS, &["", decision]);
    }
    for p in &report.prompts {
        metrics.count_event(CANARY_DECISIONS, &[&p.prompt_id, decision]);
    }
}

fn blocking_round(t: &AnalyzerTarget) -> Result<Step, CanaryError> {
    let git = GitRepo::open(&t.root)?;
    let state = canary::load(&git, &t.control_ref)?;
    let mut step = Step {
        control_commit: state.control.commit.clone(),
        rows: 0,
        report: None,
        webhook: state.rollout.analysis.webhook.clone(),
        applied: None,
        pushed: Vec::new(),
        notes: Vec::new(),
    };
    if state.rollout.canary.is_none() {
        return Ok(step);
    }
    // No log folder yet: no traffic, no rows.
    let logs = if t.log_dir.exists() {
        vec![t.log_dir.clone()]
    } else {
        Vec::new()
    };
    let (rows, feedback) = state.read_evidence(&logs)?;
    step.rows = rows.len();
    let report = state.analyze(&rows, &feedback)?;
    if matches!(
        report.action,
        Action::Rollback | Action::Promote | Action::AdvanceStep { .. }
    ) {
        let applied = canary::apply(
            &git,
            &state.control,
            &state.rollout,
            &report,
            state.origin.as_ref(),
        )?;
        if state.rollout.analysis.push.is_some() {
            // The commit stands even when the push fails; the next
            // `canary analyze --push` or a person can push it.
            match actions::push_moved(&git, &state.control, &state.rollout, &applied.moved) {
                Ok(p) => step.pushed = p,
                Err(e) => step.notes.push(format!("push failed: {e}")),
            }
        }
        step.applied = Some(applied);
    }
    step.report = Some(report);
    Ok(step)
}
