//! Preparing and running a comparison: [`plan`] reads git (synchronous;
//! git2 objects are not `Send`) and prepares one eval run per candidate on
//! the suite's rows; [`execute`] runs them one after another through one
//! response cache and builds the [`CompareReport`].

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::candidates::{self, CandidateSpec, PromptSource};
use super::decide::{self, Decision};
use super::frontier;
use super::metrics::{self, CandidateFigures};
use crate::eval::call::{CachedCaller, ModelCaller};
use crate::eval::provider_caller::ProviderCaller;
use crate::eval::results::{self, ResultsError};
use crate::eval::runner::{self, EvalError, PreparedSuite, RunOptions, Variant};
use crate::project::{LoadOptions, LoadedPrompt, Project, ProjectError, render_all};
use crate::provider::ProviderError;
use crate::repo::{FileSource, GitRepo, RepoError};
use crate::spec::config::Config;
use crate::spec::eval::CompareMatrix;
use crate::spec::{FileKind, SourceFile};

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("--prompt-ref {refname}: {source}")]
    PromptRef {
        refname: String,
        source: ProjectError,
    },
    #[error("prompt file {path} does not exist ({at})")]
    MissingPromptFile { path: String, at: String },
    #[error("prompt file {path}:\n{diagnostics}")]
    PromptFile { path: String, diagnostics: String },
    #[error("candidate `{label}`: model `{model}` is not configured in promptgate.yaml")]
    UnknownModel { label: String, model: String },
    #[error("candidate `{label}`: {source}")]
    Eval { label: String, source: EvalError },
    #[error("candidate `{label}`: {source}")]
    Results { label: String, source: ResultsError },
    #[error(
        "two candidates are both labelled `{0}`: give each prompt ref, file or param value once"
    )]
    DuplicateLabel(String),
    #[error("--margin {0} is not within 0..=1")]
    Margin(f64),
    #[error("--confidence {0} is not strictly between 0.5 and 1")]
    Confidence(f64),
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// The command's flags; each non-empty dimension replaces the suite's.
#[derive(Debug, Clone, Default)]
pub struct CompareOptions {
    pub suite: String,
    pub models: Vec<String>,
    pub prompt_refs: Vec<String>,
    pub prompt_files: Vec<String>,
    pub params: Vec<(String, Vec<serde_json::Value>)>,
    pub repeat: Option<u32>,
    pub margin: Option<f64>,
    pub confidence: Option<f64>,
}

/// A candidate ready to run.
pub struct PlannedCandidate {
    pub spec: CandidateSpec,
    pub prepared: PreparedSuite,
}

/// Everything [`execute`] needs, owned.
pub struct ComparePlan {
    pub suite: String,
    pub dataset: String,
    pub commit: Option<String>,
    pub config: Config,
    pub candidates: Vec<PlannedCandidate>,
    pub margin: f64,
    pub confidence: f64,
}

impl ComparePlan {
    /// Calls of all candidates together.
    pub fn case_count(&self) -> usize {
        self.candidates
            .iter()
            .map(|c| c.prepared.case_count())
            .sum()
    }
}

/// The matrix the run uses: the suite's, with every dimension the flags
/// give replaced.
fn matrix(suite: Option<&CompareMatrix>, opts: &CompareOptions) -> CompareMatrix {
    let mut m = suite.cloned().unwrap_or_default();
    if !opts.models.is_empty() {
        m.models = opts.models.clone();
    }
    if !opts.prompt_refs.is_empty() || !opts.prompt_files.is_empty() {
        m.prompt_refs = opts.prompt_refs.clone();
        m.prompt_files = opts.prompt_files.clone();
    }
    for (name, values) in &opts.params {
        m.params.insert(name.clone(), values.clone());
    }
    m
}

/// Reads the suite from `source` and prepares every candidate.
pub fn plan(
    git: &GitRepo,
    source: &dyn FileSource,
    opts: &CompareOptions,
) -> Result<ComparePlan, CompareError> {
    let project = Project::load(source, &LoadOptions { resolve_ref: None })?;
    let suite = project.eval(&opts.suite)?;
    let matrix = matrix(suite.suite.compare.as_ref(), opts);
    let margin = opts
        .margin
        .or(matrix.margin)
        .or(suite.suite.gates.regression.map(|r| r.max_drop))
        .unwrap_or(0.05);
    if !(0.0..=1.0).contains(&margin) {
        return Err(CompareError::Margin(margin));
    }
    let confidence = opts
        .confidence
        .or(suite.suite.gates.regression.map(|r| r.confidence))
        .unwrap_or(0.95);
    if !(confidence > 0.5 && confidence < 1.0) {
        return Err(CompareError::Confidence(confidence));
    }
    let specs = candidates::expand(&matrix);
    let mut seen = std::collections::BTreeSet::new();
    let mut planned = Vec::with_capacity(specs.len());
    for spec in specs {
        if !seen.insert(spec.label.clone()) {
            return Err(CompareError::DuplicateLabel(spec.label));
        }
        let mut prompt = load_prompt(git, source, &project, &suite.suite.prompt, &spec.prompt)?;
        if let Some(model) = &spec.model {
            if !project.config.models.contains_key(model) {
                return Err(CompareError::UnknownModel {
                    label: spec.label.clone(),
                    model: model.clone(),
                });
            }
            prompt.prompt.model = model.clone();
        }
        for (k, v) in &spec.params {
            prompt.prompt.params.insert(k.clone(), v.clone());
        }
        let variant = Variant {
            config: &project.config,
            prompt: &prompt,
            commit: project.commit.clone(),
        };
        let mut prepared = runner::prepare_variant(&project, source, &opts.suite, &variant)
            .map_err(|source| CompareError::Eval {
                label: spec.label.clone(),
                source,
            })?;
        if let Some(r) = opts.repeat {
            prepared.repeat = r.max(1);
        }
        planned.push(PlannedCandidate { spec, prepared });
    }
    Ok(ComparePlan {
        suite: opts.suite.clone(),
        dataset: suite.dataset.to_string(),
        commit: project.commit.clone(),
        config: project.config.clone(),
        candidates: planned,
        margin,
        confidence,
    })
}

/// The suite's prompt as a candidate has it.
fn load_prompt(
    git: &GitRepo,
    source: &dyn FileSource,
    project: &Project,
    prompt_id: &str,
    from: &PromptSource,
) -> Result<LoadedPrompt, CompareError> {
    match from {
        PromptSource::Suite => Ok(project.prompt(prompt_id)?.clone()),
        PromptSource::Ref(refname) => {
            let tree = git.tree_at(refname)?;
            Project::load_prompt(&tree, prompt_id)
                .map(|(_, p)| p)
                .map_err(|source| CompareError::PromptRef {
                    refname: refname.clone(),
                    source,
                })
        }
        PromptSource::File(path) => {
            let text =
                source
                    .read_string(path)?
                    .ok_or_else(|| CompareError::MissingPromptFile {
                        path: path.clone(),
                        at: source.describe(),
                    })?;
            let prompt = SourceFile::new(path.clone(), text)
                .parse(FileKind::Prompt)
                .map_err(|d| CompareError::PromptFile {
                    path: path.clone(),
                    diagnostics: render_all(&d),
                })?;
            Ok(LoadedPrompt {
                prompt,
                blob: source.blob_id(path)?.unwrap_or_default(),
                path: path.clone(),
            })
        }
    }
}

/// How to run.
pub struct ExecOptions<'a> {
    pub concurrency: usize,
    pub use_cache: bool,
    /// `.promptgate` of the repository (cache, results).
    pub state_dir: &'a Path,
    /// Called after each finished call (progress bar).
    pub on_case: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// One candidate in the report.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateReport {
    #[serde(flatten)]
    pub figures: CandidateFigures,
    pub on_frontier: bool,
    /// Against the best (None for the best itself).
    pub versus_best: Option<decide::VersusBest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versus_best_error: Option<String>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub suite: String,
    pub dataset: String,
    pub commit: Option<String>,
    pub repeat: u32,
    pub rows: usize,
    pub margin: f64,
    pub confidence: f64,
    pub candidates: Vec<CandidateReport>,
    /// Labels of the frontier's candidates by ascending cost.
    pub frontier: Vec<String>,
    /// Label of the best candidate (highest pass rate).
    pub best: Option<String>,
    /// Label of the recommended candidate.
    pub recommended: Option<String>,
    /// The recommendation in one sentence.
    pub recommendation: String,
    pub model_calls: usize,
    pub cache_hits: usize,
}

/// Runs every candidate and builds the report.
pub async fn execute(
    plan: ComparePlan,
    opts: &ExecOptions<'_>,
) -> Result<CompareReport, CompareError> {
    let provider = ProviderCaller::new(&plan.config)?;
    let caller: Arc<dyn ModelCaller> = if opts.use_cache {
        Arc::new(CachedCaller::new(
            provider,
            opts.state_dir.join("cache/responses"),
        ))
    } else {
        Arc::new(provider)
    };
    let mut figures = Vec::with_capacity(plan.candidates.len());
    let mut rows = Vec::with_capacity(plan.candidates.len());
    let level = 2.0 * plan.confidence - 1.0;
    for c in &plan.candidates {
        let tick = opts.on_case.clone();
        let run_opts = RunOptions {
            concurrency: opts.concurrency,
            on_case: Some(Box::new(move || {
                if let Some(t) = &tick {
                    t();
                }
            })),
        };
        let label = || c.spec.label.clone();
        let started = std::time::Instant::now();
        let cases = runner::run(&c.prepared, caller.clone(), &run_opts)
            .await
            .map_err(|source| CompareError::Eval {
                label: label(),
                source,
            })?;
        let summary = results::record(opts.state_dir, &c.prepared, &cases, started.elapsed())
            .map_err(|source| CompareError::Results {
                label: label(),
                source,
            })?;
        let outcomes = metrics::row_outcomes(&cases);
        figures.push(metrics::figures(
            &c.spec.label,
            &c.spec.prompt.describe(),
            &c.prepared.params,
            &summary,
            &outcomes,
            level,
        ));
        rows.push(outcomes);
    }
    let decision = decide::decide(&figures, &rows, plan.margin, plan.confidence);
    Ok(assemble(&plan, figures, decision))
}

fn assemble(
    plan: &ComparePlan,
    figures: Vec<CandidateFigures>,
    decision: Option<Decision>,
) -> CompareReport {
    let points: Vec<(f64, f64)> = figures
        .iter()
        .map(|f| (f.cost_per_1k, f.pass_rate))
        .collect();
    let on_frontier = frontier::pareto(&points);
    let frontier: Vec<String> = on_frontier
        .iter()
        .map(|&i| figures[i].label.clone())
        .collect();
    let model_calls = figures.iter().map(|f| f.cases).sum();
    let cache_hits = figures.iter().map(|f| f.cache_hits).sum();
    let rows = figures.first().map_or(0, |f| f.rows);
    let best = decision.as_ref().map(|d| figures[d.best].label.clone());
    let recommended = decision
        .as_ref()
        .map(|d| figures[d.recommended].label.clone());
    let recommendation = recommendation_text(&figures, decision.as_ref(), plan.margin);
    let candidates = figures
        .into_iter()
        .enumerate()
        .map(|(i, f)| CandidateReport {
            figures: f,
            on_frontier: on_frontier.contains(&i),
            versus_best: decision.as_ref().and_then(|d| d.versus_best[i].clone()),
            versus_best_error: decision.as_ref().and_then(|d| d.errors[i].clone()),
        })
        .collect();
    CompareReport {
        suite: plan.suite.clone(),
        dataset: plan.dataset.clone(),
        commit: plan.commit.clone(),
        repeat: plan.candidates.first().map_or(1, |c| c.prepared.repeat),
        rows,
        margin: plan.margin,
        confidence: plan.confidence,
        candidates,
        frontier,
        best,
        recommended,
        recommendation,
        model_calls,
        cache_hits,
    }
}

/// "0.0123" with enough digits for small costs.
pub fn cost_text(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// "p = 0.012", "p < 0.001".
pub fn p_text(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else {
        format!("p = {p:.3}")
    }
}

fn recommendation_text(
    figures: &[CandidateFigures],
    decision: Option<&Decision>,
    margin: f64,
) -> String {
    let Some(d) = decision else {
        return "no candidate ran".into();
    };
    let best = &figures[d.best];
    let points = margin * 100.0;
    let i = d.recommended;
    if i != d.best {
        let f = &figures[i];
        let p = d.versus_best[i].as_ref().map_or(1.0, |v| v.p_holm);
        return format!(
            "use `{}`: at {} per 1k calls it is not worse than `{}` ({} per 1k calls) by more than {points:.1} points ({}, Holm-corrected), {:.0}% cheaper",
            f.label,
            cost_text(f.cost_per_1k),
            best.label,
            cost_text(best.cost_per_1k),
            p_text(p),
            if best.cost_per_1k > 0.0 {
                (1.0 - f.cost_per_1k / best.cost_per_1k) * 100.0
            } else {
                0.0
            }
        );
    }
    let cheaper = figures.iter().any(|f| f.cost_per_1k < best.cost_per_1k);
    if cheaper {
        format!(
            "none of the cheaper candidates is shown to be within {points:.1} points of `{}` ({:.1}%, {} per 1k calls): keep it",
            best.label,
            best.pass_rate * 100.0,
            cost_text(best.cost_per_1k)
        )
    } else {
        format!(
            "`{}` has the highest pass rate ({:.1}%) and nothing is cheaper: keep it",
            best.label,
            best.pass_rate * 100.0
        )
    }
}

/// One sentence per candidate against the best, as in "`small` at 0.21
/// per 1k calls is not worse than `large` by more than 3.0 points (p =
/// 0.010)".
pub fn versus_text(report: &CompareReport, c: &CandidateReport) -> String {
    let best = report.best.as_deref().unwrap_or("-");
    let points = report.margin * 100.0;
    let head = format!(
        "`{}` at {} per 1k calls",
        c.figures.label,
        cost_text(c.figures.cost_per_1k)
    );
    match (&c.versus_best, &c.versus_best_error) {
        (_, Some(e)) => format!("{head}: could not be compared with `{best}`: {e}"),
        (None, None) => format!("{head} is the best ({:.1}%)", c.figures.pass_rate * 100.0),
        (Some(v), None) if v.non_inferior => format!(
            "{head} is not worse than `{best}` by more than {points:.1} points ({})",
            p_text(v.p_holm)
        ),
        (Some(v), None) if v.worse => format!(
            "{head} is worse than `{best}` by more than {points:.1} points ({})",
            p_text(v.p_worse_holm)
        ),
        (Some(v), None) => format!(
            "{head} is not shown to be within {points:.1} points of `{best}` ({})",
            p_text(v.p_holm)
        ),
    }
}
