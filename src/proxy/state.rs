//! The serving state: everything a request needs, built from committed git
//! state only, immutable once built, swapped whole on reload.
//!
//! Invariants: a [`ServingState`] is validated completely before anyone
//! sees it (every served ref loads like `promptgate validate` would accept
//! it, every prompt's templates compile, every prompt's model has a
//! client); a request loads one `Arc<ServingState>` and uses only it, so a
//! reload never changes a request half-way. Nothing here touches git or
//! compiles a template after the build: the hot path only looks things up.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::breaker::{BreakerConfig, CircuitBreaker};
use super::online::{OnlineChecks, OnlineError};
use super::routing::CanaryRule;
use crate::project::{LoadOptions, Project, ProjectError, ROLLOUT_FILE, render_all};
use crate::provider::{ModelClient, ProviderError, merge_params};
use crate::repo::{FileSource, GitRepo, RepoError};
use crate::spec::config::Config;
use crate::spec::prompt::InputSpec;
use crate::spec::rollout::Rollout;
use crate::spec::{Diagnostic, FileKind, SourceFile};
use crate::template::{CompiledMessages, TemplateError};

/// Why a new state was refused, and the commit at fault.
#[derive(Debug, thiserror::Error)]
#[error("{problem}")]
pub struct BuildError {
    /// The control commit, or the stable or canary commit whose files are
    /// invalid; None when no commit could be read.
    pub commit: Option<String>,
    pub problem: Box<BuildProblem>,
}

impl BuildError {
    pub fn at(commit: Option<&str>, problem: BuildProblem) -> BuildError {
        BuildError {
            commit: commit.map(str::to_string),
            problem: Box::new(problem),
        }
    }
}

/// What is wrong with the state a commit describes.
#[derive(Debug, thiserror::Error)]
pub enum BuildProblem {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("control ref: {0}")]
    ControlRef(#[source] RepoError),
    #[error("{ROLLOUT_FILE}: {field}: {source}")]
    RolloutRef {
        /// `stable` or `canary.ref`.
        field: &'static str,
        source: RepoError,
    },
    #[error("no {ROLLOUT_FILE} at commit {0}")]
    NoRollout(String),
    #[error("{}", render_all(.0))]
    Rollout(Vec<Diagnostic>),
    /// The control commit's own files are invalid.
    #[error(transparent)]
    Control(ProjectError),
    /// A served ref's files are invalid.
    #[error("{served} (commit {commit}) is invalid: {source}")]
    Project {
        /// E.g. ``stable ref `refs/heads/main` ``.
        served: String,
        commit: String,
        source: ProjectError,
    },
    #[error("{served}: {path}: {source}")]
    Prompt {
        served: String,
        /// The prompt file.
        path: String,
        source: PromptProblem,
    },
    #[error("{ROLLOUT_FILE}: canary.prompts names `{prompt}`, which {served} does not have")]
    CanaryPrompt { prompt: String, served: String },
    #[error("{ROLLOUT_FILE}: canary.sticky_header `{header}`: {source}")]
    StickyHeader {
        header: String,
        source: axum::http::header::InvalidHeaderName,
    },
    #[error("version header: {0}")]
    Version(#[from] axum::http::header::InvalidHeaderValue),
    #[error("the reload task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Why one prompt of a served ref cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum PromptProblem {
    #[error("unknown model `{0}`")]
    UnknownModel(String),
    #[error("model `{model}`: {source}")]
    Model {
        model: String,
        source: Arc<ProviderError>,
    },
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Online(#[from] OnlineError),
    #[error("version header: {0}")]
    Version(#[from] axum::http::header::InvalidHeaderValue),
}

/// One model of `promptgate.yaml`, ready to call.
#[derive(Debug)]
pub struct ModelTarget {
    /// Key under `models`.
    pub key: String,
    pub client: ModelClient,
    /// The provider's key: the upstream a circuit breaker guards.
    pub upstream: String,
    /// The breaker of `upstream`, shared by every model and state using it.
    pub breaker: CircuitBreaker,
}

/// One circuit breaker per upstream (provider key), kept across reloads so
/// a reload neither resets an open breaker nor forgets failures.
#[derive(Debug)]
pub struct Breakers {
    inner: std::sync::Mutex<BreakerMap>,
}

#[derive(Debug)]
struct BreakerMap {
    cfg: BreakerConfig,
    map: BTreeMap<String, CircuitBreaker>,
}

impl Breakers {
    pub fn new(cfg: BreakerConfig) -> Breakers {
        Breakers {
            inner: std::sync::Mutex::new(BreakerMap {
                cfg,
                map: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerMap> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The breaker of `upstream` (created closed on first use).
    pub fn get(&self, upstream: &str) -> CircuitBreaker {
        let mut inner = self.lock();
        let cfg = inner.cfg;
        inner
            .map
            .entry(upstream.to_string())
            .or_insert_with(|| CircuitBreaker::new(cfg))
            .clone()
    }

    /// New settings for every breaker, present and future (a reload of
    /// `server.circuit_breaker`); their states are kept.
    pub fn reconfigure(&self, cfg: BreakerConfig) {
        let mut inner = self.lock();
        inner.cfg = cfg;
        for b in inner.map.values() {
            b.reconfigure(cfg);
        }
    }

    /// Every upstream's breaker, by name.
    pub fn all(&self) -> Vec<(String, CircuitBreaker)> {
        let inner = self.lock();
        inner
            .map
            .iter()
            .map(|(k, b)| (k.clone(), b.clone()))
            .collect()
    }
}

/// One prompt of one served ref, ready to render.
#[derive(Debug)]
pub struct PreparedPrompt {
    pub id: String,
    /// Git blob id of the prompt file.
    pub blob: String,
    pub git_ref: Arc<str>,
    pub commit: Arc<str>,
    /// `x-promptgate-version`: `<commit>:<blob>`.
    pub version: HeaderValue,
    pub target: Arc<ModelTarget>,
    /// The model's default params with the prompt's own over them.
    pub params: Map<String, Value>,
    pub templates: Arc<CompiledMessages>,
    /// Declared inputs, bound per request by [`crate::binding::bind`].
    pub inputs: BTreeMap<String, InputSpec>,
    /// The `online: true` assertions of this prompt's eval suites at the
    /// same ref, scored on every finished call ([`super::online`]).
    pub online: Arc<OnlineChecks>,
}

/// The prompts of one served ref.
#[derive(Debug)]
pub struct RefState {
    pub git_ref: Arc<str>,
    pub commit: Arc<str>,
    pub prompts: HashMap<String, Arc<PreparedPrompt>>,
}

/// The canary side of a rollout.
#[derive(Debug)]
pub struct CanaryState {
    pub state: Arc<RefState>,
    pub rule: CanaryRule,
    /// Header carrying the user id when the body has none.
    pub sticky_header: Option<HeaderName>,
}

/// Everything a request is served from.
#[derive(Debug)]
pub struct ServingState {
    /// 1 for the state built at start-up, +1 per successful reload.
    pub generation: u64,
    pub control_ref: String,
    /// The commit `rollout.yaml` was read from.
    pub control_commit: String,
    /// promptgate.yaml of the control commit: the `logging` and `server`
    /// settings in force (those read only at start-up aside, see
    /// [`crate::settings::RESTART_ONLY`]).
    pub config: Arc<Config>,
    pub rollout: Rollout,
    pub stable: Arc<RefState>,
    pub canary: Option<CanaryState>,
    /// Model aliases for pass-through requests (the stable ref's config).
    pub models: BTreeMap<String, Arc<ModelTarget>>,
    /// `x-promptgate-version` of pass-through requests: the stable commit.
    pub passthrough_version: HeaderValue,
    pub built_at: DateTime<Utc>,
}

/// The commits a state was built from; equal fingerprints mean nothing to reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub control: String,
    pub stable: String,
    pub canary: Option<String>,
}

impl ServingState {
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            control: self.control_commit.clone(),
            stable: self.stable.commit.to_string(),
            canary: self.canary.as_ref().map(|c| c.state.commit.to_string()),
        }
    }

    /// Ids of every prompt served (stable and canary), sorted.
    pub fn prompt_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.stable.prompts.keys().map(String::as_str).collect();
        if let Some(c) = &self.canary {
            ids.extend(c.state.prompts.keys().map(String::as_str));
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// What a rebuild can reuse across reloads: compiled templates by prompt
/// blob id (an unchanged prompt is never recompiled) and validated
/// projects by commit id (a commit's files never change, so a ref that did
/// not move is not loaded again).
#[derive(Debug, Default)]
pub struct TemplateCache {
    by_blob: HashMap<String, Arc<CompiledMessages>>,
    projects: HashMap<String, Arc<Project>>,
}

impl TemplateCache {
    /// Keeps only the entries `state` uses.
    fn retain_used(&mut self, state: &ServingState) {
        let mut used = std::collections::HashSet::new();
        for r in std::iter::once(&state.stable).chain(state.canary.as_ref().map(|c| &c.state)) {
            used.extend(r.prompts.values().map(|p| p.blob.clone()));
        }
        self.by_blob.retain(|k, _| used.contains(k));
        let fp = state.fingerprint();
        self.projects.retain(|c, _| {
            *c == fp.control || *c == fp.stable || fp.canary.as_deref() == Some(c.as_str())
        });
    }

    /// The project at `commit`, loaded and checked once.
    fn project(&mut self, repo: &GitRepo, commit: &str) -> Result<Arc<Project>, ProjectError> {
        if let Some(p) = self.projects.get(commit) {
            return Ok(p.clone());
        }
        let p = Arc::new(load_project(repo, commit)?);
        self.projects.insert(commit.to_string(), p.clone());
        Ok(p)
    }
}

/// Reads the commits the state at `control_ref` would be built from,
/// without building it (cheap: ref lookups and one blob read).
pub fn fingerprint(repo: &GitRepo, control_ref: &str) -> Result<Fingerprint, BuildError> {
    let control = repo
        .resolve(control_ref)
        .map_err(|e| BuildError::at(None, BuildProblem::ControlRef(e)))?
        .to_string();
    let rollout = read_rollout(repo, &control)?;
    let resolve = |r: &str, field: &'static str| {
        repo.resolve(r).map(|o| o.to_string()).map_err(|source| {
            BuildError::at(Some(&control), BuildProblem::RolloutRef { field, source })
        })
    };
    let stable = resolve(&rollout.stable, "stable")?;
    let canary = match &rollout.canary {
        Some(c) => Some(resolve(&c.git_ref, "canary.ref")?),
        None => None,
    };
    Ok(Fingerprint {
        control,
        stable,
        canary,
    })
}

fn read_rollout(repo: &GitRepo, commit: &str) -> Result<Rollout, BuildError> {
    let fail = |p: BuildProblem| BuildError::at(Some(commit), p);
    let tree = repo.tree_at(commit).map_err(|e| fail(e.into()))?;
    let text = tree
        .read_string(ROLLOUT_FILE)
        .map_err(|e| fail(e.into()))?
        .ok_or_else(|| fail(BuildProblem::NoRollout(commit.to_string())))?;
    SourceFile::new(ROLLOUT_FILE, text)
        .parse::<Rollout>(FileKind::Rollout)
        .map_err(|d| fail(BuildProblem::Rollout(d)))
}

/// Loads and checks the whole project at `commit`, like `validate` does.
fn load_project(repo: &GitRepo, commit: &str) -> Result<Project, ProjectError> {
    let tree = repo.tree_at(commit)?;
    let resolve = |r: &str| repo.resolve(r).is_ok();
    let opts = LoadOptions {
        resolve_ref: Some(&resolve),
    };
    Project::load(&tree, &opts)
}

/// Every model of a config, or why it has no client.
type Targets = BTreeMap<String, Result<Arc<ModelTarget>, Arc<ProviderError>>>;

fn model_targets(config: &Config, breakers: &Breakers) -> Targets {
    config
        .models
        .iter()
        .map(|(key, m)| {
            let t = ModelClient::from_config(config, key)
                .map(|client| {
                    Arc::new(ModelTarget {
                        key: key.clone(),
                        client,
                        upstream: m.provider.clone(),
                        breaker: breakers.get(&m.provider),
                    })
                })
                .map_err(Arc::new);
            (key.clone(), t)
        })
        .collect()
}

/// The prompts of `project` (the files at `commit` of `git_ref`), ready to
/// serve, and every model of its config. `served` names the ref in errors.
fn ref_state(
    project: &Project,
    (git_ref, commit, served): (&str, &str, &str),
    cache: &mut TemplateCache,
    breakers: &Breakers,
) -> Result<(RefState, Targets), BuildError> {
    let targets = model_targets(&project.config, breakers);
    let git_ref: Arc<str> = Arc::from(git_ref);
    let commit_a: Arc<str> = Arc::from(commit);
    let mut prompts = HashMap::new();
    for (id, lp) in &project.prompts {
        let prepared = prepare_prompt(project, id, lp, (&git_ref, &commit_a), &targets, cache)
            .map_err(|source| {
                let (served, path) = (served.to_string(), lp.path.clone());
                BuildError::at(
                    Some(commit),
                    BuildProblem::Prompt {
                        served,
                        path,
                        source,
                    },
                )
            })?;
        prompts.insert(id.clone(), Arc::new(prepared));
    }
    Ok((
        RefState {
            git_ref,
            commit: commit_a,
            prompts,
        },
        targets,
    ))
}

/// One prompt ready to serve: its model's client, its compiled templates
/// (from the cache when its blob was compiled before), its online checks.
fn prepare_prompt(
    project: &Project,
    id: &str,
    lp: &crate::project::LoadedPrompt,
    (git_ref, commit): (&Arc<str>, &Arc<str>),
    targets: &Targets,
    cache: &mut TemplateCache,
) -> Result<PreparedPrompt, PromptProblem> {
    let model = &lp.prompt.model;
    let target = match targets.get(model) {
        Some(Ok(t)) => t.clone(),
        Some(Err(e)) => {
            return Err(PromptProblem::Model {
                model: model.clone(),
                source: e.clone(),
            });
        }
        None => return Err(PromptProblem::UnknownModel(model.clone())),
    };
    let templates = match cache.by_blob.get(&lp.blob) {
        Some(t) => t.clone(),
        None => {
            let t = Arc::new(CompiledMessages::compile(&lp.prompt.messages)?);
            cache.by_blob.insert(lp.blob.clone(), t.clone());
            t
        }
    };
    let judge = |model: &str| {
        targets
            .get(model)
            .and_then(|t| t.as_ref().ok().map(|t| t.client.clone()))
    };
    let (online, warnings) = OnlineChecks::build(project, id, &judge)?;
    for w in warnings {
        tracing::warn!(git_ref = %git_ref, prompt = %id, "{w}");
    }
    Ok(PreparedPrompt {
        id: id.to_string(),
        blob: lp.blob.clone(),
        git_ref: git_ref.clone(),
        commit: commit.clone(),
        version: HeaderValue::from_str(&format!("{commit}:{}", lp.blob))?,
        params: merge_params(target.client.params(), &lp.prompt.params),
        target,
        templates,
        inputs: lp.prompt.inputs.clone(),
        online: Arc::new(online),
    })
}

/// Builds and validates the complete state of `control_ref`. Blocking
/// (git reads, template compilation): run it off the request path.
pub fn build(
    root: &Path,
    control_ref: &str,
    generation: u64,
    cache: &mut TemplateCache,
    breakers: &Breakers,
) -> Result<ServingState, BuildError> {
    let repo = GitRepo::open(root).map_err(|e| BuildError::at(None, e.into()))?;
    let fp = fingerprint(&repo, control_ref)?;
    let control = fp.control.as_str();
    let rollout = read_rollout(&repo, control)?;
    // The control commit itself must be valid: it is what the team commits to.
    let config = cache
        .project(&repo, control)
        .map_err(|e| BuildError::at(Some(control), BuildProblem::Control(e)))?
        .config
        .clone();
    let stable_served = format!("stable ref `{}`", rollout.stable);
    let stable_project = served_project(cache, &repo, &fp.stable, &stable_served)?;
    let refs = (
        rollout.stable.as_str(),
        fp.stable.as_str(),
        stable_served.as_str(),
    );
    let (stable, stable_models) = ref_state(&stable_project, refs, cache, breakers)?;
    let canary = match (&rollout.canary, &fp.canary) {
        (Some(c), Some(commit)) => {
            Some(canary_state(c, commit, control, (cache, &repo, breakers))?)
        }
        _ => None,
    };
    let passthrough_version =
        HeaderValue::from_str(&fp.stable).map_err(|e| BuildError::at(Some(control), e.into()))?;
    let state = ServingState {
        generation,
        control_ref: control_ref.to_string(),
        control_commit: fp.control.clone(),
        config: Arc::new(config),
        rollout,
        stable: Arc::new(stable),
        canary,
        models: passthrough_models(stable_models),
        passthrough_version,
        built_at: Utc::now(),
    };
    cache.retain_used(&state);
    Ok(state)
}

/// The project at the commit of a served ref, loaded and checked once.
fn served_project(
    cache: &mut TemplateCache,
    repo: &GitRepo,
    commit: &str,
    served: &str,
) -> Result<Arc<Project>, BuildError> {
    cache.project(repo, commit).map_err(|source| {
        let problem = BuildProblem::Project {
            served: served.to_string(),
            commit: commit.to_string(),
            source,
        };
        BuildError::at(Some(commit), problem)
    })
}

/// The canary side of the rollout at `commit`; a problem of rollout.yaml's
/// `canary` block is the control commit's.
fn canary_state(
    c: &crate::spec::rollout::Canary,
    commit: &str,
    control: &str,
    (cache, repo, breakers): (&mut TemplateCache, &GitRepo, &Breakers),
) -> Result<CanaryState, BuildError> {
    let served = format!("canary ref `{}`", c.git_ref);
    let project = served_project(cache, repo, commit, &served)?;
    let (state, _) = ref_state(&project, (&c.git_ref, commit, &served), cache, breakers)?;
    let fail = |p: BuildProblem| BuildError::at(Some(control), p);
    if let Some(p) = c.prompts.iter().find(|p| !state.prompts.contains_key(*p)) {
        let (prompt, served) = (p.clone(), served.clone());
        return Err(fail(BuildProblem::CanaryPrompt { prompt, served }));
    }
    let sticky_header = match &c.sticky_header {
        Some(h) => Some(HeaderName::from_bytes(h.as_bytes()).map_err(|source| {
            let header = h.clone();
            fail(BuildProblem::StickyHeader { header, source })
        })?),
        None => None,
    };
    Ok(CanaryState {
        state: Arc::new(state),
        rule: CanaryRule {
            weight: c.weight,
            prompts: c.prompts.clone(),
            sticky: c.sticky,
        },
        sticky_header,
    })
}

/// The models of the stable ref's config that have a client. A
/// pass-through alias whose key is unset is unusable but must not stop the
/// prompts from being served.
fn passthrough_models(targets: Targets) -> BTreeMap<String, Arc<ModelTarget>> {
    targets
        .into_iter()
        .filter_map(|(k, t)| match t {
            Ok(t) => Some((k, t)),
            Err(e) => {
                tracing::warn!(model = %k, error = %e, "model alias not available for pass-through");
                None
            }
        })
        .collect()
}
