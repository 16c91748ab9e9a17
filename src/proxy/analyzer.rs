//! The analyzer task of `serve`: every `analysis.interval_s` (of the
//! committed rollout.yaml) it runs the same path as `promptgate canary
//! analyze --apply` over this replica's request log, so a canary that hurts
//! quality is rolled back (and one that holds up promoted) without anyone
//! watching.
//!
//! Each round flushes the request logger, then (on the blocking pool) loads
//! the rollout and the canary's origin from the control branch
//! ([`crate::canary::load`]), reads the rows of the analysis window and the
//! feedback from Parquet (with `logging.store`, every replica's uploaded
//! files plus this replica's not uploaded yet, each file once: the source
//! `canary analyze` reads), analyses, and acts as `canary analyze --apply`
//! does ([`crate::canary::act()`]: the commit, pushed when `analysis.push`
//! is set; an alert and its webhook). Because the evidence is re-read from
//! the log every round, a restart does not reset it.
//!
//! The commit moves the control branch; the round is recorded for
//! `/status` first, then the proxy reloads (the ref watcher would too) and
//! serves the new state.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::metrics::{CANARY_DECISIONS, Metrics};
use super::reload::Reloader;
use super::status::{AnalysisRun, TaskStatus};
use crate::canary::{self, CanaryError, CanaryReport, CanaryState, Decision};
use crate::logstore::RequestLogger;
use crate::repo::GitRepo;
use crate::spec::config::StoreOptions;

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
    /// `logging.store`: when set, the evidence is the store (every
    /// replica's uploaded files) plus this replica's files not uploaded yet.
    pub store: Option<String>,
    pub store_options: StoreOptions,
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
            let rollout = &handles.reloader.current().rollout;
            Duration::from_secs(rollout.analysis.interval_s.max(1))
        });
        tokio::time::sleep(interval).await;
        let round = analyze_once(&handles, &target).await;
        let committed = round.applied.as_ref().is_some_and(|a| a.commit.is_some());
        // Recorded before the reload: whoever sees the new state at
        // `/status` also sees the round that made it.
        handles.status.store(round);
        if committed {
            // The watcher would notice the moved branch too; reloading now
            // ends the canary's traffic without waiting for the file event.
            handles.reloader.reload(false).await;
        }
    }
}

/// What the blocking part of a round read.
struct Analysis {
    state: CanaryState,
    rows: usize,
    /// Store objects downloaded and reused by this round.
    store_objects: (usize, usize),
    /// None when rollout.yaml has no canary.
    report: Option<CanaryReport>,
}

/// One round: flush, read, analyse, act. The caller records it and reloads.
pub async fn analyze_once(handles: &AnalyzerHandles, target: &AnalyzerTarget) -> AnalysisRun {
    let mut run = AnalysisRun {
        at: Utc::now(),
        control_commit: None,
        rows: 0,
        store_objects_fetched: 0,
        store_objects_reused: 0,
        report: None,
        applied: None,
        pushed: Vec::new(),
        notes: Vec::new(),
        error: None,
    };
    // The writer flushes on an interval: the latest rows must be in Parquet
    // before the round reads them.
    if let Err(e) = handles.logger.flush().await {
        run.notes.push(format!("flushing the request log: {e}"));
    }
    let t = target.clone();
    let analysis = tokio::task::spawn_blocking(move || analyse(&t))
        .await
        .unwrap_or_else(|e| {
            Err(CanaryError::Action(format!(
                "the analysis task failed: {e}"
            )))
        });
    let Analysis {
        state,
        rows,
        store_objects,
        report,
    } = match analysis {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "canary analysis failed");
            run.error = Some(e.to_string());
            return run;
        }
    };
    run.control_commit = Some(state.control.commit.clone());
    run.rows = rows;
    (run.store_objects_fetched, run.store_objects_reused) = store_objects;
    let Some(report) = report else { return run };
    record(&handles.metrics, &report);
    act(target, &state, &report, &mut run).await;
    run.report = Some(report);
    run
}

/// Acts on `report` as `canary analyze --apply` would (pushing when
/// `analysis.push` is set) and records what it did in `run`.
async fn act(
    target: &AnalyzerTarget,
    state: &CanaryState,
    report: &CanaryReport,
    run: &mut AnalysisRun,
) {
    let push = state.rollout.analysis.push.is_some();
    match canary::act(target.root.clone(), state, report, push).await {
        Ok(acted) => {
            if let Some(a) = &acted.applied {
                tracing::warn!(
                    action = %a.action.describe(),
                    commit = a.commit.as_deref().unwrap_or(""),
                    method = %a.method,
                    "canary analysis acted"
                );
            }
            run.notes.extend(acted.notes);
            if let Some(e) = acted.push_error {
                run.notes.push(format!("push failed: {e}"));
            }
            run.applied = acted.applied;
            run.pushed = acted.pushed;
        }
        Err(e) => {
            tracing::error!(error = %e, "acting on the canary analysis failed");
            run.error = Some(e.to_string());
        }
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

/// Where serve's analyzer keeps the store's objects between rounds: in the
/// repository's state folder, not under the log root (a glob over the log
/// folder must not find the fleet's files twice), one folder per log root
/// (replicas of one checkout must not share it).
pub fn store_cache_dir(root: &Path, log_dir: &Path) -> PathBuf {
    let key = crate::drift::features::id_hash(&log_dir.to_string_lossy());
    root.join(crate::settings::STATE_DIR)
        .join("cache/store")
        .join(format!("{key:016x}"))
}

/// Reads the rollout and the evidence and analyses (blocking: git and Parquet).
fn analyse(t: &AnalyzerTarget) -> Result<Analysis, CanaryError> {
    let git = GitRepo::open(&t.root)?;
    let state = canary::load(&git, &t.control_ref)?;
    if state.rollout.canary.is_none() {
        return Ok(Analysis {
            state,
            rows: 0,
            store_objects: (0, 0),
            report: None,
        });
    }
    // The store first, then the local files it does not hold yet; no log
    // folder yet: no traffic here.
    let mut logs: Vec<PathBuf> = t.store.iter().map(PathBuf::from).collect();
    if t.log_dir.exists() {
        logs.push(t.log_dir.clone());
    }
    let since = Some(state.since().date_naive());
    let view = match &t.store {
        // A round every `interval_s`: download only the objects uploaded
        // since the last one.
        Some(_) => crate::lake::source::LocalView::open_cached(
            &logs,
            &t.store_options,
            since,
            &store_cache_dir(&t.root, &t.log_dir),
        )?,
        None => crate::lake::source::LocalView::open(&logs, &t.store_options, since)?,
    };
    let evidence = state.read_evidence(view.roots())?;
    let rows = evidence.rows;
    let report = state.analyze(&evidence)?;
    Ok(Analysis {
        rows,
        store_objects: (view.fetched, view.reused),
        state,
        report: Some(report),
    })
}
