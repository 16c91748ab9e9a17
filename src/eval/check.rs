//! The pull-request gate: which eval suites a change between two commits
//! affects, and running each on both sides.
//!
//! A suite (as defined at head) is affected when its suite file, its prompt
//! file, anything under its dataset's folder, or, in promptgate.yaml, the
//! entry of a model it uses (the prompt's model on either side, judge
//! models) or that model's provider changed.
//!
//! Both sides run on head's suite: head's dataset version (rows), variable
//! mapping, assertions, judges and gates. Only the prompt and the config
//! that resolves its model come from base, so the comparison measures the
//! change under review and nothing else. A prompt that does not exist at
//! base has nothing to compare with: head is judged by the absolute gates.
//!
//! Work is split in two: [`plan`] reads git (synchronous, git2 objects are
//! not `Send`) and leaves owned, prepared suites; [`execute`] runs them.
//! Both sides call the model through the response cache, so a re-run on a
//! new head commit calls the model only for prompts and rows that changed.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::call::{CachedCaller, ModelCaller};
use super::compare::{self, SuiteVerdict};
use super::dataset_change::{self, DatasetChangePlan, DatasetChangeReport, HeadDatasetError};
use super::provider_caller::ProviderCaller;
use super::results::{self, ResultsError, Summary};
use super::runner::{self, EvalError, PreparedSuite, RunOptions, Variant};
use crate::project::{
    CONFIG_FILE, DATASETS_DIR, EVALS_DIR, LoadOptions, PROMPTS_DIR, Project, ProjectError,
};
use crate::provider::ProviderError;
use crate::repo::{GitRepo, RepoError};
use crate::spec::config::Config;
use crate::spec::eval::Check;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("head ({refname}) is not a valid promptgate repository: {source}")]
    Head {
        refname: String,
        source: ProjectError,
    },
    #[error("--suite {0}: no such eval suite at head")]
    UnknownSuite(String),
    #[error("suite `{suite}` ({side}): {source}")]
    Eval {
        suite: String,
        side: &'static str,
        source: EvalError,
    },
    #[error("suite `{suite}`: {source}")]
    Results { suite: String, source: ResultsError },
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("dataset `{name}` at head ({refname}): {source}")]
    HeadDataset {
        name: String,
        refname: String,
        source: Box<HeadDatasetError>,
    },
}

/// What to compare.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub base: String,
    pub head: String,
    /// Only these suites (empty: every affected suite).
    pub suites: Vec<String>,
    /// Overrides every suite's `repeat`.
    pub repeat: Option<u32>,
}

/// A ref as given and the commit it resolved to.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RefInfo {
    #[serde(rename = "ref")]
    pub refname: String,
    pub commit: String,
}

/// One affected suite, ready to run.
pub struct PlannedSuite {
    pub name: String,
    /// Why the suite is affected, in words.
    pub reasons: Vec<String>,
    pub head: PreparedSuite,
    /// None when base has nothing to compare with.
    pub base: Option<PreparedSuite>,
    base_config: Option<Config>,
    /// Why there is no base, when there is none.
    pub note: Option<String>,
    /// Set when the change touches only the suite's dataset: base runs on
    /// base's (old) version, see [`dataset_change`].
    pub dataset_change: Option<DatasetChangePlan>,
}

pub struct Plan {
    pub base: RefInfo,
    pub head: RefInfo,
    pub changed_paths: Vec<String>,
    pub suites: Vec<PlannedSuite>,
    /// Suites at head that the change does not affect.
    pub unaffected: Vec<String>,
    head_config: Option<Config>,
}

/// Paths whose change can affect an eval (everything else, e.g. a README,
/// cannot).
fn is_relevant(path: &str) -> bool {
    path == CONFIG_FILE
        || [PROMPTS_DIR, EVALS_DIR, DATASETS_DIR]
            .iter()
            .any(|d| path.starts_with(&format!("{d}/")))
}

/// The config entries a model depends on, for change detection.
fn model_entry(config: &Config, model: &str) -> Option<String> {
    let m = config.models.get(model)?;
    let p = config.providers.get(&m.provider);
    serde_json::to_string(&(m, p)).ok()
}

/// Reads both commits and prepares every affected suite on both sides.
pub fn plan(git: &GitRepo, opts: &CheckOptions) -> Result<Plan, CheckError> {
    let base_commit = git.resolve(&opts.base)?;
    let head_commit = git.resolve(&opts.head)?;
    let changed_paths = git.changed_paths(&opts.base, &opts.head)?;
    let mut plan = Plan {
        base: RefInfo {
            refname: opts.base.clone(),
            commit: base_commit.to_string(),
        },
        head: RefInfo {
            refname: opts.head.clone(),
            commit: head_commit.to_string(),
        },
        changed_paths,
        suites: Vec::new(),
        unaffected: Vec::new(),
        head_config: None,
    };
    // Nothing an eval reads changed: do not even load (a README-only PR on
    // a repository with an unrelated problem still passes).
    if !plan.changed_paths.iter().any(|p| is_relevant(p)) && opts.suites.is_empty() {
        return Ok(plan);
    }
    let head_tree = git.tree_at(&opts.head)?;
    let base_tree = git.tree_at(&opts.base)?;
    let head = Project::load(&head_tree, &LoadOptions { resolve_ref: None }).map_err(|source| {
        CheckError::Head {
            refname: opts.head.clone(),
            source,
        }
    })?;
    for name in &opts.suites {
        if !head.evals.contains_key(name) {
            return Err(CheckError::UnknownSuite(name.clone()));
        }
    }
    // A changed dataset must be consistent at head: intact snapshots and
    // `rows.jsonl` equal to the latest one (else an edit goes unevaluated).
    for name in head.datasets.keys() {
        let dir = format!("{DATASETS_DIR}/{name}/");
        if plan.changed_paths.iter().any(|p| p.starts_with(&dir)) {
            dataset_change::verify_head(&head_tree, name).map_err(|source| {
                CheckError::HeadDataset {
                    name: name.clone(),
                    refname: opts.head.clone(),
                    source: Box::new(source),
                }
            })?;
        }
    }
    let config_changed = plan.changed_paths.iter().any(|p| p == CONFIG_FILE);
    for (name, suite) in &head.evals {
        if !opts.suites.is_empty() && !opts.suites.contains(name) {
            continue;
        }
        let prompt_id = &suite.suite.prompt;
        let base_side = Project::load_prompt(&base_tree, prompt_id);
        let mut reasons = Vec::new();
        let changed = |path: &str| plan.changed_paths.iter().any(|p| p == path);
        if changed(&suite.path) {
            reasons.push(format!("suite `{}` changed", suite.path));
        }
        let prompt_path = format!("{PROMPTS_DIR}/{prompt_id}.yaml");
        let prompt_changed = changed(&prompt_path);
        if prompt_changed {
            reasons.push(format!("prompt `{prompt_path}` changed"));
        }
        let dataset_dir = format!("{DATASETS_DIR}/{}/", suite.dataset.name);
        if plan
            .changed_paths
            .iter()
            .any(|p| p.starts_with(&dataset_dir))
        {
            reasons.push(format!("dataset `{}` changed", suite.dataset.name));
        }
        let reasons_before_config = reasons.len();
        if config_changed {
            match &base_side {
                Ok((base_config, base_prompt)) => {
                    let mut models = vec![base_prompt.prompt.model.clone()];
                    models.extend(head.prompts.get(prompt_id).map(|p| p.prompt.model.clone()));
                    models.extend(suite.assertions.iter().filter_map(|a| match &a.check {
                        Check::LlmJudge { judge, .. } => Some(judge.clone()),
                        _ => None,
                    }));
                    models.sort();
                    models.dedup();
                    for m in models {
                        if model_entry(&head.config, &m) != model_entry(base_config, &m) {
                            reasons.push(format!("model `{m}` changed in {CONFIG_FILE}"));
                        }
                    }
                }
                Err(_) => reasons.push(format!("{CONFIG_FILE} changed")),
            }
        }
        if reasons.is_empty() {
            plan.unaffected.push(name.clone());
            continue;
        }
        let model_changed = reasons.len() > reasons_before_config;
        let dataset_change = match &base_side {
            Ok(_) => {
                dataset_change::dataset_only(&base_tree, suite, prompt_changed || model_changed)
            }
            Err(_) => None,
        };
        let eval_err = |side| {
            let suite = name.clone();
            move |source| CheckError::Eval {
                suite,
                side,
                source,
            }
        };
        let mut head_prepared =
            runner::prepare(&head, &head_tree, name).map_err(eval_err("head"))?;
        let (mut base_prepared, base_config, note) = match base_side {
            Ok((config, prompt)) => {
                let variant = Variant {
                    config: &config,
                    prompt: &prompt,
                    commit: Some(plan.base.commit.clone()),
                };
                let prepared = match &dataset_change {
                    // The unchanged prompt on base's own (old) version.
                    Some(dc) => {
                        runner::prepare_on_dataset(&head, name, &variant, &base_tree, &dc.from)
                    }
                    None => runner::prepare_variant(&head, &head_tree, name, &variant),
                }
                .map_err(eval_err("base"))?;
                let note = if dataset_change.is_none()
                    && reasons.iter().any(|r| r.starts_with("dataset"))
                    && (prompt_changed || model_changed)
                {
                    Some(format!(
                        "the dataset and the prompt changed together: both sides run on head's {}, the usual gate",
                        suite.dataset
                    ))
                } else {
                    None
                };
                (Some(prepared), Some(config), note)
            }
            Err(ProjectError::NotFound { .. }) => (
                None,
                None,
                Some(format!(
                    "prompt `{prompt_id}` does not exist at base: judged by the absolute gates only"
                )),
            ),
            Err(e) => (
                None,
                None,
                Some(format!(
                    "prompt `{prompt_id}` could not be loaded at base, so there is nothing to compare with: {e}"
                )),
            ),
        };
        if let Some(r) = opts.repeat {
            head_prepared.repeat = r.max(1);
            if let Some(b) = &mut base_prepared {
                b.repeat = r.max(1);
            }
        }
        plan.suites.push(PlannedSuite {
            name: name.clone(),
            reasons,
            head: head_prepared,
            base: base_prepared,
            base_config,
            note,
            dataset_change,
        });
    }
    plan.head_config = Some(head.config);
    Ok(plan)
}

/// The overall outcome.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No suite is affected by the change.
    NoChanges,
    Pass,
    Fail,
}

/// One suite's result on both sides.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    pub suite: String,
    pub reasons: Vec<String>,
    pub prompt_id: String,
    pub dataset: String,
    pub repeat: u32,
    pub base: Option<Summary>,
    pub head: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Set when the change touches only the suite's dataset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_change: Option<DatasetChangeReport>,
    #[serde(flatten)]
    pub verdict: SuiteVerdict,
}

/// Everything `check` found; rendered as markdown or JSON.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub verdict: Verdict,
    pub base: RefInfo,
    pub head: RefInfo,
    pub changed_paths: Vec<String>,
    pub suites: Vec<SuiteReport>,
    pub unaffected: Vec<String>,
    /// Model calls made by both sides, and how many the cache answered.
    pub model_calls: usize,
    pub cache_hits: usize,
}

/// Called when a side starts running, with a label and its case count;
/// returns the per-case callback (progress bars).
pub type OnRun = dyn Fn(&str, usize) -> Option<Box<dyn Fn() + Send + Sync>> + Send + Sync;

/// How to run.
pub struct ExecOptions<'a> {
    pub concurrency: usize,
    pub use_cache: bool,
    /// `<repo>/.promptgate`: results files and the response cache.
    pub state_dir: PathBuf,
    pub on_run: Option<&'a OnRun>,
}

fn caller(configs: &[&Config], opts: &ExecOptions<'_>) -> Result<Arc<dyn ModelCaller>, CheckError> {
    let provider = ProviderCaller::for_configs(configs)?;
    Ok(if opts.use_cache {
        Arc::new(CachedCaller::new(
            provider,
            opts.state_dir.join("cache/responses"),
        ))
    } else {
        Arc::new(provider)
    })
}

async fn run_side(
    prepared: &PreparedSuite,
    caller: Arc<dyn ModelCaller>,
    side: &'static str,
    opts: &ExecOptions<'_>,
) -> Result<(Summary, Vec<runner::CaseResult>), CheckError> {
    let on_case = opts.on_run.and_then(|f| {
        f(
            &format!("{} ({side})", prepared.suite),
            prepared.case_count(),
        )
    });
    let run_opts = RunOptions {
        concurrency: opts.concurrency,
        on_case,
    };
    let started = std::time::Instant::now();
    let cases = runner::run(prepared, caller, &run_opts)
        .await
        .map_err(|source| CheckError::Eval {
            suite: prepared.suite.clone(),
            side,
            source,
        })?;
    let summary = results::record(&opts.state_dir, prepared, &cases, started.elapsed()).map_err(
        |source| CheckError::Results {
            suite: prepared.suite.clone(),
            source,
        },
    )?;
    Ok((summary, cases))
}

/// Runs every planned suite on both sides and compares them.
pub async fn execute(plan: Plan, opts: &ExecOptions<'_>) -> Result<CheckReport, CheckError> {
    let mut report = CheckReport {
        verdict: Verdict::NoChanges,
        base: plan.base,
        head: plan.head,
        changed_paths: plan.changed_paths,
        suites: Vec::new(),
        unaffected: plan.unaffected,
        model_calls: 0,
        cache_hits: 0,
    };
    let Some(head_config) = plan.head_config else {
        return Ok(report);
    };
    let head_caller = caller(&[&head_config], opts)?;
    for s in plan.suites {
        let base = match (&s.base, &s.base_config) {
            (Some(prepared), Some(config)) => {
                // Judges resolve in head's config, which comes second.
                let c = caller(&[config, &head_config], opts)?;
                Some(run_side(prepared, c, "base", opts).await?)
            }
            _ => None,
        };
        let (head_summary, head_cases) =
            run_side(&s.head, head_caller.clone(), "head", opts).await?;
        let (verdict, dataset_change) = match (&s.dataset_change, &s.base, &base) {
            (Some(plan), Some(base_prepared), Some((base_summary, base_cases))) => {
                let split =
                    dataset_change::split(plan, base_prepared, base_cases, &s.head, &head_cases);
                let mut report = split.report;
                let mut verdict = compare::decide(
                    &s.head.gates,
                    Some((base_summary, &split.base_common)),
                    (&head_summary, &split.head_common),
                );
                dataset_change::apply_mode(&mut verdict, &mut report);
                (verdict, Some(report))
            }
            _ => (
                compare::decide(
                    &s.head.gates,
                    base.as_ref().map(|(sum, cases)| (sum, cases.as_slice())),
                    (&head_summary, &head_cases),
                ),
                None,
            ),
        };
        for summary in base.iter().map(|(b, _)| b).chain([&head_summary]) {
            report.model_calls += summary.cases;
            report.cache_hits += summary.cache_hits;
        }
        report.suites.push(SuiteReport {
            suite: s.name,
            reasons: s.reasons,
            prompt_id: s.head.prompt_id.clone(),
            dataset: s.head.dataset.clone(),
            repeat: s.head.repeat,
            base: base.map(|(b, _)| b),
            head: head_summary,
            note: s.note,
            dataset_change,
            verdict,
        });
    }
    report.verdict = if report.suites.is_empty() {
        Verdict::NoChanges
    } else if report.suites.iter().all(|s| s.verdict.pass) {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_eval_inputs_are_relevant() {
        for p in [
            "promptgate.yaml",
            "prompts/capital.yaml",
            "evals/capitals.yaml",
            "datasets/capitals/snapshots/v2.parquet",
        ] {
            assert!(is_relevant(p), "{p}");
        }
        for p in [
            "README.md",
            "rollout.yaml",
            ".github/workflows/promptgate.yml",
            "prompts.md",
            "schema/prompt.schema.json",
        ] {
            assert!(!is_relevant(p), "{p}");
        }
    }
}
