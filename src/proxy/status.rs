//! What a running proxy reports about itself: the typed body of `GET
//! /status` ([`Status`]), serialised by the route and deserialised by its
//! clients (`promptgate demo`, tests), and the status of every background
//! task, written by the task and read by the route ([`TaskStatus`]).
//!
//! Invariant: a leaf of `proxy/`. It imports no other file of the proxy, so
//! the reloader, the background tasks and the routes can all depend on it
//! without depending on each other. A new background task (a scheduled
//! drift run, say) adds its round type and snapshot here, one
//! [`TaskStatus`] in [`TaskStatuses`], and one field in [`Status`].

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::canary::{Applied, CanaryReport};
use crate::logstore::LoggerStats;
use crate::repo::Followed;
use crate::settings::PendingRestart;
use crate::spec::config::{CircuitBreakerConfig, OnFull, Redaction};
use crate::spec::rollout::StickyKey;

/// The body of `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// 1 for the state built at start-up, +1 per successful reload.
    pub generation: u64,
    pub control_ref: String,
    /// The commit rollout.yaml was read from.
    pub control_commit: String,
    pub built_at: DateTime<Utc>,
    pub stable: ServedRef,
    /// None when rollout.yaml has no canary.
    pub canary: Option<CanaryRef>,
    /// Model aliases served as pass-through.
    pub models: Vec<String>,
    pub last_reload: Option<ReloadResult>,
    pub reloads: ReloadCounts,
    pub in_flight: u64,
    pub log: LoggerStats,
    pub uptime_s: f64,
    pub online: OnlineStatus,
    pub analysis: AnalyzerSnapshot,
    pub fetch: FetchSnapshot,
    /// Serve's drift task (`drift.schedule` of promptgate.yaml).
    #[serde(default)]
    pub drift: DriftSnapshot,
    pub settings: SettingsStatus,
}

/// The stable ref and the prompts served from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServedRef {
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub commit: String,
    /// Sorted.
    pub prompts: Vec<String>,
}

/// The canary ref, its routing and the prompts served from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryRef {
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub commit: String,
    /// Percent of traffic.
    pub weight: f64,
    /// `canary.prompts` of rollout.yaml (empty: every prompt).
    pub applies_to: Vec<String>,
    pub sticky: StickyKey,
    pub sticky_header: Option<String>,
    /// Sorted.
    pub prompts: Vec<String>,
}

/// The result of the last reload attempt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReloadResult {
    pub ok: bool,
    pub at: DateTime<Utc>,
    /// The control commit the attempt read (the offending one on failure).
    pub commit: Option<String>,
    pub error: Option<String>,
    /// Generation serving after the attempt.
    pub generation: u64,
    /// Time the check and rebuild took, in milliseconds.
    pub build_ms: f64,
}

/// Counters of reload attempts.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReloadCounts {
    /// New states swapped in.
    pub ok: u64,
    /// New states refused.
    pub failed: u64,
    /// Checks that found nothing new.
    pub unchanged: u64,
}

/// The online assertions of every served prompt and the verdicts so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OnlineStatus {
    /// Variant (`stable`, `canary`) -> prompt -> assertion keys.
    pub assertions: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    pub counts: Vec<OnlineCount>,
}

/// Online verdict counts of one prompt and variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineCount {
    pub prompt: String,
    pub variant: String,
    pub evaluated: u64,
    pub passed: u64,
    pub pass_rate: Option<f64>,
}

/// The `logging` and `server` settings in force, and the committed changes
/// that wait for a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingsStatus {
    /// The control commit the reloadable settings come from.
    pub commit: String,
    pub control_ref: String,
    pub listen: String,
    pub log_dir: std::path::PathBuf,
    pub logging: LoggingStatus,
    pub server: ServerStatus,
    /// `review:` in force (`auto_enqueue`: low feedback into the queue).
    #[serde(default)]
    pub review: crate::spec::config::ReviewConfig,
    pub pending_restart: Vec<PendingRestart>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggingStatus {
    pub flush_interval_ms: u64,
    pub flush_rows: usize,
    /// As started (a restart-only setting).
    pub channel_capacity: usize,
    pub on_full: OnFull,
    pub redact: Redaction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub max_body_bytes: usize,
    pub request_timeout_ms: u64,
    pub circuit_breaker: CircuitBreakerConfig,
    pub admin_token_env: Option<String>,
}

/// One analysis round of the analyzer task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisRun {
    pub at: DateTime<Utc>,
    /// The control commit the rollout was read from.
    pub control_commit: Option<String>,
    /// Request rows of the analysis window read from the log.
    pub rows: usize,
    /// With `logging.store`: objects of the window this round downloaded,
    /// and those it already held from earlier rounds.
    #[serde(default)]
    pub store_objects_fetched: usize,
    #[serde(default)]
    pub store_objects_reused: usize,
    /// None when rollout.yaml has no canary (nothing to analyse).
    pub report: Option<CanaryReport>,
    pub applied: Option<Applied>,
    pub pushed: Vec<String>,
    pub notes: Vec<String>,
    pub error: Option<String>,
}

/// The analyzer's rounds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalyzerSnapshot {
    pub runs: u64,
    pub last: Option<AnalysisRun>,
    /// The last round that committed something (kept when later rounds
    /// find no canary): the typed record of a rollback or promotion.
    pub last_applied: Option<AnalysisRun>,
}

/// One fetch round of `serve --fetch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchRun {
    pub at: DateTime<Utc>,
    pub remote: String,
    pub branches: Vec<Followed>,
    pub error: Option<String>,
}

/// The fetch loop's rounds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FetchSnapshot {
    pub runs: u64,
    pub last: Option<FetchRun>,
}

/// One round of serve's drift task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftRun {
    pub at: DateTime<Utc>,
    /// The control commit whose `drift:` section the round ran with.
    pub control_commit: String,
    /// The windows compared, as configured (`first:2000`, `last:24h`).
    pub reference: String,
    pub current: String,
    /// None when the round could not run (see `error`).
    pub result: Option<DriftResult>,
    /// Whether the round raised an alert (drift, and not the same drift as
    /// the last alert).
    pub alerted: bool,
    /// Calls of drifted windows the review queue took (`on_drift: review`).
    pub queued_for_review: Option<usize>,
    /// The alert, the webhook's outcome, the review queue's refusal.
    pub notes: Vec<String>,
    /// Why the round could not run: unreadable log roots, no traffic, an
    /// empty window.
    pub error: Option<String>,
}

/// What a drift round found: per prompt (or pass-through model), its status
/// and every tested feature's effect. The full report (charts, samples) is
/// `promptgate drift --json` / `--html`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftResult {
    /// `no_drift`, `not_enough_data` or `drift` (as in `promptgate drift
    /// --json`): the worst of the groups.
    pub status: String,
    pub groups: Vec<DriftGroupResult>,
}

/// One prompt's (or pass-through model's) drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftGroupResult {
    /// The prompt id, or `model:<name>`.
    pub group: String,
    pub status: String,
    pub reference_calls: u64,
    pub current_calls: u64,
    /// The features that drifted.
    pub drifted: Vec<String>,
    /// Every feature with an effect size, in report order.
    pub features: Vec<DriftFeatureResult>,
}

/// One feature of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftFeatureResult {
    pub name: String,
    /// `wasserstein_norm`, `jensen_shannon`, `cohen_h` or `auc`.
    pub effect_name: String,
    pub effect: f64,
    pub q_value: Option<f64>,
    pub verdict: String,
}

impl From<&crate::drift::DriftReport> for DriftResult {
    fn from(r: &crate::drift::DriftReport) -> DriftResult {
        DriftResult {
            status: status_name(r.status).to_string(),
            groups: r
                .groups
                .iter()
                .map(|g| DriftGroupResult {
                    group: g.group.clone(),
                    status: status_name(g.status).to_string(),
                    reference_calls: g.reference_calls,
                    current_calls: g.current_calls,
                    drifted: g.drifted.clone(),
                    features: g
                        .features
                        .iter()
                        .filter_map(|f| {
                            Some(DriftFeatureResult {
                                name: f.name.clone(),
                                effect_name: f.effect_name.to_string(),
                                effect: f.effect?,
                                q_value: f.q_value,
                                verdict: verdict_name(f.verdict).to_string(),
                            })
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// A drift status as `promptgate drift --json` names it.
pub fn status_name(s: crate::drift::Status) -> &'static str {
    use crate::drift::Status;
    match s {
        Status::NoDrift => "no_drift",
        Status::NotEnoughData => "not_enough_data",
        Status::Drift => "drift",
    }
}

/// A feature's verdict as `promptgate drift --json` names it.
fn verdict_name(v: crate::drift::Verdict) -> &'static str {
    use crate::drift::Verdict;
    match v {
        Verdict::Drift => "drift",
        Verdict::Small => "small",
        Verdict::Ok => "ok",
        Verdict::NotEnoughData => "not_enough_data",
        Verdict::Constant => "constant",
    }
}

/// The drift task's rounds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DriftSnapshot {
    pub runs: u64,
    pub last: Option<DriftRun>,
    /// The last round that raised an alert (kept while later rounds find
    /// the same drift, or none).
    pub last_alert: Option<DriftRun>,
}

/// A round a background task records in its snapshot.
pub trait Round: Clone {
    type Snapshot: Default + Clone + std::fmt::Debug;
    fn record(self, snapshot: &mut Self::Snapshot);
}

impl Round for AnalysisRun {
    type Snapshot = AnalyzerSnapshot;
    fn record(self, s: &mut AnalyzerSnapshot) {
        s.runs += 1;
        if self.applied.as_ref().is_some_and(|a| a.commit.is_some()) {
            s.last_applied = Some(self.clone());
        }
        s.last = Some(self);
    }
}

impl Round for DriftRun {
    type Snapshot = DriftSnapshot;
    fn record(self, s: &mut DriftSnapshot) {
        s.runs += 1;
        if self.alerted {
            s.last_alert = Some(self.clone());
        }
        s.last = Some(self);
    }
}

impl Round for FetchRun {
    type Snapshot = FetchSnapshot;
    fn record(self, s: &mut FetchSnapshot) {
        s.runs += 1;
        s.last = Some(self);
    }
}

/// The status of one background task: its rounds, written by the task,
/// read by `/status`.
pub struct TaskStatus<R: Round> {
    inner: Mutex<R::Snapshot>,
}

impl<R: Round> Default for TaskStatus<R> {
    fn default() -> Self {
        TaskStatus {
            inner: Mutex::new(R::Snapshot::default()),
        }
    }
}

impl<R: Round> std::fmt::Debug for TaskStatus<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TaskStatus").field(&self.get()).finish()
    }
}

impl<R: Round> TaskStatus<R> {
    pub fn store(&self, round: R) {
        round.record(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner));
    }

    pub fn get(&self) -> R::Snapshot {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The status of every background task of a server (each shared with its
/// task).
#[derive(Debug, Default)]
pub struct TaskStatuses {
    pub analysis: std::sync::Arc<TaskStatus<AnalysisRun>>,
    pub fetch: std::sync::Arc<TaskStatus<FetchRun>>,
    pub drift: std::sync::Arc<TaskStatus<DriftRun>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::{Status as DriftStatus, Verdict};

    #[test]
    fn drift_names_are_those_of_the_json_report() {
        for s in [
            DriftStatus::NoDrift,
            DriftStatus::NotEnoughData,
            DriftStatus::Drift,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), status_name(s));
        }
        for v in [
            Verdict::Drift,
            Verdict::Small,
            Verdict::Ok,
            Verdict::NotEnoughData,
            Verdict::Constant,
        ] {
            assert_eq!(serde_json::to_value(v).unwrap(), verdict_name(v));
        }
    }
}
