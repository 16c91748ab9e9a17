//! Acting on a canary decision, the one path of `promptgate canary analyze
//! --apply` and serve's analyzer task: commit the rollback, promotion or
//! step ([`super::apply`]), push the moved branches when asked
//! ([`super::actions::push_moved`]), or, for `on_regression: alert`, report
//! and POST the analysis to `analysis.webhook`.
//!
//! Invariants: a commit stands even when its push fails (the failure is
//! reported in [`Acted::push_error`]; a later `canary analyze --push` or a
//! person can push it); a webhook failure is a note, never an error; `none`
//! and `hold` do nothing.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::actions::{Applied, push_moved};
use super::analysis::{Action, CanaryReport};
use super::{CanaryError, CanaryState};
use crate::repo::GitRepo;

/// What [`act`] did about a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Acted {
    /// The commit of a rollback, promotion or step.
    pub applied: Option<Applied>,
    /// The refspecs pushed, `src:dst to remote`.
    pub pushed: Vec<String>,
    /// The alert and the webhook's outcome.
    pub notes: Vec<String>,
    /// Why the push failed; the commit stands.
    pub push_error: Option<String>,
}

/// Carries out `report.action` in the repository at `root`, whose control
/// branch and rollout `state` was read from. `push`: push what moved to
/// `analysis.push` (default remote `origin`).
pub async fn act(
    root: PathBuf,
    state: &CanaryState,
    report: &CanaryReport,
    push: bool,
) -> Result<Acted, CanaryError> {
    match report.action {
        Action::Rollback | Action::Promote | Action::AdvanceStep { .. } => {
            let (state, report) = (state.clone(), report.clone());
            tokio::task::spawn_blocking(move || commit(&root, &state, &report, push))
                .await
                .map_err(|e| CanaryError::Action(format!("the commit task failed: {e}")))?
        }
        Action::Alert => Ok(alert(state, report).await),
        Action::None | Action::Hold => Ok(Acted::default()),
    }
}

/// The commit, then the push.
fn commit(
    root: &std::path::Path,
    state: &CanaryState,
    report: &CanaryReport,
    push: bool,
) -> Result<Acted, CanaryError> {
    let git = GitRepo::open(root)?;
    let (control, rollout) = (&state.control, &state.rollout);
    let applied = super::apply(&git, control, rollout, report, state.origin.as_ref())?;
    let mut acted = Acted::default();
    if push {
        match push_moved(&git, control, rollout, &applied.moved) {
            Ok(p) => acted.pushed = p,
            Err(e) => acted.push_error = Some(e.to_string()),
        }
    }
    acted.applied = Some(applied);
    Ok(acted)
}

/// `on_regression: alert`: a warning, a note, and the webhook (the body
/// is the canary report), through the one alert sender.
async fn alert(state: &CanaryState, report: &CanaryReport) -> Acted {
    let summary = format!("canary regression: {}", report.reason);
    let notes = crate::alert::raise(
        "canary_regression",
        &summary,
        state.rollout.analysis.webhook.as_deref(),
        report,
    )
    .await;
    Acted {
        notes,
        ..Acted::default()
    }
}
