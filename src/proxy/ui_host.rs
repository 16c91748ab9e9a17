//! The dashboard's [`Host`] inside `serve`: the admin token and redaction
//! of the serving state (they follow reloads), live figures from the
//! in-memory metrics, and the rollout as served with the analyzer's rounds
//! and `rollout.yaml`'s history on the control ref. The cost page reads the
//! plane from the log folder; the review pages work on `App.review`.

use std::sync::Arc;

use super::app::App;
use super::routes::status;
use super::status::AnalysisRun;
use crate::project::ROLLOUT_FILE;
use crate::repo::GitRepo;
use crate::spec::config::Redaction;
use crate::ui::{
    AnalysisView, CheckView, HistoryEntry, Host, JournalQueue, LiveFigures, ProductionPlane,
    RolloutView, ServedView,
};

/// The `/ui` routes over this server's log folder, with live figures and
/// the rollout as served.
pub fn router(app: Arc<App>) -> axum::Router {
    let log_dir = app.settings.log_dir.clone();
    let review = JournalQueue {
        queue: app.review.clone(),
        logs: vec![log_dir.clone()],
    };
    crate::ui::router(Arc::new(
        crate::ui::Dashboard::new(vec![log_dir], Arc::new(ProxyHost { app }), "serve")
            .with_cost(Arc::new(ProductionPlane))
            .with_review(Arc::new(review)),
    ))
}

/// `serve`'s side of the dashboard.
#[derive(Debug)]
pub struct ProxyHost {
    pub app: Arc<App>,
}

impl Host for ProxyHost {
    fn admin_token(&self) -> Option<String> {
        super::app::admin_token(&self.app)
    }

    fn redaction(&self) -> Redaction {
        self.app.reloader.current().config.logging.redact
    }

    fn live(&self) -> Option<Vec<LiveFigures>> {
        Some(self.app.metrics.live_totals())
    }

    fn rollout(&self) -> Option<RolloutView> {
        let s = status(&self.app);
        let git = GitRepo::open(self.app.settings.root()).ok();
        let subject = |commit: &str| {
            git.as_ref()
                .and_then(|g| g.message(commit).ok())
                .and_then(|m| m.lines().next().map(str::to_string))
                .unwrap_or_default()
        };
        let history = git
            .as_ref()
            .and_then(|g| g.file_history(&s.control_ref, ROLLOUT_FILE).ok())
            .unwrap_or_default()
            .into_iter()
            .map(HistoryEntry::from)
            .collect();
        let rounds = [s.analysis.last_applied.as_ref(), s.analysis.last.as_ref()]
            .into_iter()
            .flatten()
            .map(analysis_view)
            .collect();
        Some(RolloutView {
            stable: ServedView {
                subject: subject(&s.stable.commit),
                git_ref: s.stable.git_ref.clone(),
                commit: s.stable.commit.clone(),
            },
            weight: s.canary.as_ref().map(|c| c.weight),
            canary: s.canary.as_ref().map(|c| ServedView {
                subject: subject(&c.commit),
                git_ref: c.git_ref.clone(),
                commit: c.commit.clone(),
            }),
            control_ref: s.control_ref,
            control_commit: s.control_commit,
            rounds,
            history,
        })
    }
}

fn analysis_view(run: &AnalysisRun) -> AnalysisView {
    let report = run.report.as_ref();
    AnalysisView {
        at: run.at.to_rfc3339(),
        decision: report
            .map_or("no canary", |r| r.decision.as_str())
            .to_string(),
        action: report.map_or_else(|| "none".into(), |r| r.action.describe()),
        reason: report.map_or_else(String::new, |r| r.reason.clone()),
        min_requests: report.map_or(0, |r| r.min_requests),
        canary_requests: report
            .map(|r| {
                r.prompts
                    .iter()
                    .map(|p| (p.prompt_id.clone(), p.canary_requests))
                    .collect()
            })
            .unwrap_or_default(),
        checks: report
            .map(|r| {
                r.prompts
                    .iter()
                    .flat_map(|p| {
                        p.checks.iter().map(|c| CheckView {
                            prompt: p.prompt_id.clone(),
                            metric: c.metric.as_str().to_string(),
                            limit: c.limit.clone(),
                            stable_n: c.stable.n,
                            canary_n: c.canary.n,
                            stable_value: c.stable.value,
                            canary_value: c.canary.value,
                            difference: c.difference,
                            ci_low: c.ci_low,
                            ci_high: c.ci_high,
                            margin: c.margin,
                            status: serde_json::to_value(c.status)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_default(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
        applied: run.applied.as_ref().map(|a| {
            format!(
                "{}: {}{}",
                a.action.describe(),
                a.method,
                a.commit
                    .as_deref()
                    .map(|c| format!(" (commit {})", &c[..c.len().min(12)]))
                    .unwrap_or_default()
            )
        }),
        error: run.error.clone(),
    }
}
