//! Canary analysis and its git actions.
//!
//! The [`analysis`] is a pure function from the rollout, the window start
//! and the window's rows to a [`CanaryReport`] (decision, action and the
//! evidence); [`evidence`] reads those rows from the log roots by a
//! projected, ordered scan, in passes over files that must stay in place
//! until the report is made; [`act()`] carries the action out (a commit on the control
//! branch through [`actions::apply`], its push, or an alert and its
//! webhook). [`load`] gathers what both need from the repository, so the
//! proxy's analyzer task and `promptgate canary` share one path:
//!
//! ```text
//! let state = canary::load(&git, control_ref)?;           // rollout + origin
//! let evidence = state.read_evidence(&logs)?;             // first pass
//! let report = state.analyze(&evidence)?;                 // grouped passes
//! let acted = canary::act(root, &state, &report, push).await?;
//! ```

pub mod act;
pub mod actions;
pub mod analysis;
pub mod evidence;

use chrono::{DateTime, Utc};

pub use act::{Acted, act};
pub use actions::{Applied, CanaryOrigin, ControlBranch, apply, canary_origin, rollout_at};
pub use analysis::{CanaryReport, Decision};
pub use evidence::Evidence;

use crate::logstore::LogStoreError;
use crate::repo::{GitRepo, RepoError};
use crate::spec::rollout::Rollout;

#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Logs(#[from] LogStoreError),
    #[error(transparent)]
    Lake(#[from] crate::lake::LakeError),
    #[error("{0}")]
    Invalid(String),
    #[error("rollout.yaml: analysis.checks[{index}]: {message}")]
    BadCheck { index: usize, message: String },
    #[error("{0}")]
    Action(String),
}

/// The committed rollout on the control branch and where its canary came from.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryState {
    pub control: ControlBranch,
    pub rollout: Rollout,
    pub origin: Option<CanaryOrigin>,
}

impl CanaryState {
    /// Start of the analysis window: when the canary's current settings were
    /// committed (the epoch when unknown, i.e. all rows).
    pub fn since(&self) -> DateTime<Utc> {
        self.origin
            .as_ref()
            .map_or(DateTime::<Utc>::UNIX_EPOCH, |o| o.current_since)
    }

    /// The evidence in the request logs at `logs` (log roots, partition
    /// folders or files; one per replica): the analysis window's rows, by
    /// the projected, ordered scan of [`evidence::scan`], and the feedback
    /// of the folders.
    pub fn read_evidence(&self, logs: &[std::path::PathBuf]) -> Result<Evidence, CanaryError> {
        evidence::scan(&self.rollout, self.since(), logs)
    }

    /// The report on `evidence` (the one `analysis::analyze` gives on the
    /// same rows read whole; tests hold them equal). The log roots it was
    /// read from must still be there.
    pub fn analyze(&self, evidence: &Evidence) -> Result<CanaryReport, CanaryError> {
        evidence.analyze(&self.rollout)
    }
}

/// Reads rollout.yaml from the control branch (`control_ref`, `HEAD` = the
/// checked-out branch) and the canary's origin from its history.
pub fn load(git: &GitRepo, control_ref: &str) -> Result<CanaryState, CanaryError> {
    let control = ControlBranch::resolve(git, control_ref)?;
    let rollout = rollout_at(git, &control.commit)?.ok_or_else(|| {
        CanaryError::Invalid(format!(
            "{}: no {} at {}",
            control.refname,
            crate::project::ROLLOUT_FILE,
            &control.commit
        ))
    })?;
    let origin = canary_origin(git, &control)?;
    Ok(CanaryState {
        control,
        rollout,
        origin,
    })
}
