//! One drift run over the request logs: the single path of `promptgate
//! drift` and serve's drift task, so both compare the same windows with the
//! same settings.
//!
//! A run reads the rollout on the control ref to learn the stable ref (its
//! prompts' versions make `first:N`, its prompts' output declarations the
//! JSON features), resolves the windows at `now`, reads a dataset reference
//! through the prompt's input binding ([`crate::eval::runner::prompt_vars`],
//! the binding every command uses), reads the log windows from Parquet and
//! analyses. It never writes anything: drift is not a verdict to act on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{
    DriftError, DriftReport, Extractor, GroupKind, GroupWindow, LogQuery, OutputSpec, Progress,
    StableState, WindowFeatures, WindowSet,
};
use crate::project::{LoadOptions, Project};
use crate::repo::{FileSource, GitRepo};
use crate::spec::drift::{DriftConfig, WindowSpec};
use crate::spec::prompt::OutputFormat;

/// What one run compares, resolved by the caller (flags or the serving
/// state's `drift:` section, and [`crate::settings::Settings`]).
#[derive(Debug, Clone)]
pub struct DriftJob {
    pub settings: DriftConfig,
    /// The branch whose rollout.yaml names the stable ref.
    pub control_ref: String,
    /// The stable commit, when the caller knows it (serve: the one it
    /// serves, which a newer, refused commit on the branch must not move);
    /// None: resolved from the rollout on `control_ref`.
    pub stable_commit: Option<String>,
    /// Log roots (one per replica), partition folders or files.
    pub logs: Vec<PathBuf>,
    /// Prompt ids or `model:<name>`; empty: `settings.prompts`, else every
    /// group with calls.
    pub groups: Vec<String>,
    /// The time `last:24h` counts back from.
    pub now: DateTime<Utc>,
}

/// Runs `job` in the repository `git` (blocking: git and Parquet).
pub fn run(
    git: &GitRepo,
    job: &DriftJob,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<DriftReport, DriftError> {
    let settings = &job.settings;
    if settings.current.inputs_only() {
        return Err(DriftError::Window {
            which: "current",
            spec: settings.current.to_string(),
            message: "a dataset has inputs only; the current window must be calls from the logs"
                .into(),
        });
    }
    let extractor = Extractor::new(settings)
        .map_err(|e| DriftError::Config(format!("refusal_phrases: {e}")))?;
    let groups = if job.groups.is_empty() {
        settings.prompts.clone()
    } else {
        job.groups.clone()
    };
    let mut stable = StableState::default();
    let mut outputs = BTreeMap::new();
    let stable_at = match &job.stable_commit {
        Some(c) => Some((c.clone(), load_project(git, c, c)?)),
        None => stable_project(git, &job.control_ref)?,
    };
    if let Some((commit, project)) = stable_at {
        for (id, p) in &project.prompts {
            stable.versions.insert(id.clone(), p.blob.clone());
            let schema = match &p.prompt.output.schema {
                Some(s) => Some(Arc::new(jsonschema::validator_for(s).map_err(|e| {
                    DriftError::Stable {
                        git_ref: commit.clone(),
                        message: format!("{}: output.schema does not compile: {e}", p.path),
                    }
                })?)),
                None => None,
            };
            outputs.insert(
                id.clone(),
                OutputSpec {
                    json: Some(p.prompt.output.format == OutputFormat::Json),
                    schema,
                },
            );
        }
        stable.commit = Some(commit);
    }
    let dataset_reference = if settings.reference.inputs_only() {
        Some(dataset_window(git, settings, &groups)?)
    } else {
        None
    };
    let current =
        super::resolve(&settings.current, job.now, &stable).ok_or_else(|| DriftError::Window {
            which: "current",
            spec: settings.current.to_string(),
            message: "must be calls from the logs".into(),
        })?;
    let query = LogQuery {
        logs: job.logs.clone(),
        reference: super::resolve(&settings.reference, job.now, &stable)
            .map(|s| (settings.reference.to_string(), s)),
        current: (settings.current.to_string(), current),
        groups: match &dataset_reference {
            Some(d) => d.groups.keys().cloned().collect(),
            None => groups,
        },
        outputs,
    };
    let windows = super::read_windows(settings, &extractor, &query, progress)?;
    let reference = dataset_reference.unwrap_or(windows.reference);
    Ok(super::analyze(settings, &reference, &windows.current))
}

/// The project at the stable ref of the rollout on `control_ref`, and that
/// ref's commit; None when there is no rollout.yaml (then `first:N` is the
/// first N calls of each group).
fn stable_project(
    git: &GitRepo,
    control_ref: &str,
) -> Result<Option<(String, Project)>, DriftError> {
    let stable_err = |git_ref: &str, e: &dyn std::fmt::Display| DriftError::Stable {
        git_ref: git_ref.to_string(),
        message: e.to_string(),
    };
    let control = crate::canary::ControlBranch::resolve(git, control_ref)
        .map_err(|e| stable_err(control_ref, &format!("control ref: {e}")))?;
    let rollout =
        crate::canary::rollout_at(git, &control.commit).map_err(|e| stable_err(control_ref, &e))?;
    let Some(rollout) = rollout else {
        return Ok(None);
    };
    let commit = git
        .resolve(&rollout.stable)
        .map_err(|e| stable_err(&rollout.stable, &e))?
        .to_string();
    let project = load_project(git, &commit, &rollout.stable)?;
    Ok(Some((commit, project)))
}

/// The project at `commit` (the stable ref `git_ref` names).
fn load_project(git: &GitRepo, commit: &str, git_ref: &str) -> Result<Project, DriftError> {
    let tree = git.tree_at(commit)?;
    Project::load(&tree, &LoadOptions { resolve_ref: None }).map_err(|e| DriftError::Stable {
        git_ref: git_ref.to_string(),
        message: e.to_string(),
    })
}

/// A reference window of dataset rows (inputs only): `dataset:NAME@vN`
/// with columns named like the prompt's variables (needs one group), or
/// `eval:SUITE` through the suite's variable mapping. Each row binds to
/// the prompt's inputs as `eval` binds it (defaults, types, required).
fn dataset_window(
    git: &GitRepo,
    settings: &DriftConfig,
    groups: &[String],
) -> Result<WindowSet, DriftError> {
    let spec = &settings.reference;
    let bad = |message: String| DriftError::Window {
        which: "reference",
        spec: spec.to_string(),
        message,
    };
    let tree = git.tree_at("HEAD")?;
    let project = Project::load(&tree, &LoadOptions { resolve_ref: None })
        .map_err(|e| bad(format!("reading the repository at HEAD: {e}")))?;
    let (prompt_id, dataset, mapping) = match spec {
        WindowSpec::Eval(suite) => {
            let e = project.eval(suite).map_err(|e| bad(e.to_string()))?;
            (
                e.suite.prompt.clone(),
                e.dataset.clone(),
                e.suite.vars.clone(),
            )
        }
        WindowSpec::Dataset(d) => {
            let [prompt] = groups else {
                return Err(bad(
                    "name the one prompt its rows are inputs of (--prompt, or drift.prompts)"
                        .into(),
                ));
            };
            (prompt.clone(), d.clone(), BTreeMap::new())
        }
        _ => return Err(bad("not a dataset window".into())),
    };
    let prompt = project.prompt(&prompt_id).map_err(|e| bad(e.to_string()))?;
    let snapshot = crate::dataset::read_snapshot(&tree as &dyn FileSource, &dataset)
        .map_err(|e| bad(format!("reading {dataset}: {e}")))?;
    if snapshot.rows.is_empty() {
        return Err(bad(format!("{dataset} has no rows")));
    }
    let mut features = WindowFeatures::new();
    let n = snapshot.rows.len() as f64;
    let lang_rate = (settings.language_rows as f64 / n).min(1.0);
    for row in &snapshot.rows {
        let row_key = snapshot.key_of(row);
        let vars = crate::eval::runner::prompt_vars(&prompt.prompt, &mapping, &row_key, row)
            .map_err(|e| bad(format!("{dataset}: {e}")))?;
        let key = super::features::id_hash(&row_key);
        let detect = super::features::unit(key) < lang_rate;
        features.push_inputs(&vars, detect, key);
    }
    Ok(WindowSet {
        spec: spec.to_string(),
        inputs_only: true,
        groups: [(
            prompt_id,
            GroupWindow {
                kind: GroupKind::Prompt,
                output_json: None,
                features,
            },
        )]
        .into_iter()
        .collect(),
    })
}
