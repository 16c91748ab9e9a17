//! Runs one eval suite: renders the suite's prompt for every row of the
//! pinned dataset snapshot, calls the model with bounded concurrency, scores
//! every assertion, and summarises.
//!
//! Invariants: a failing case (render error, provider error, assertion
//! error) never aborts the run; only an unreachable provider does. Cases are
//! returned in dataset order whatever order the calls complete in.

use std::sync::Arc;

use futures_util::StreamExt;
use serde::Serialize;

use super::assertions::{self, AssertionResult, CompiledAssertion, JudgeFailure, Observation};
use super::call::{CallFailure, ModelCall, ModelCaller, ModelReply};
use crate::binding::{self, BindError, Supplied};
use crate::dataset::{self, Row};
use crate::project::{LoadedPrompt, Project};
use crate::repo::FileSource;
use crate::spec::config::{Config, Price};
use crate::spec::eval::{Check, Gates};
use crate::template::{ChatMessage, CompiledMessages, TemplateError};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Project(#[from] crate::project::ProjectError),
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error("suite `{suite}`: model `{model}` is not configured in promptgate.yaml")]
    UnknownModel { suite: String, model: String },
    #[error("suite `{suite}`: assertion `{name}`: {message}")]
    Assertion {
        suite: String,
        name: String,
        message: String,
    },
    #[error("model `{model}` is unreachable, the run stopped: {message}")]
    Unreachable { model: String, message: String },
}

/// A suite ready to run: rows read, prompts rendered, assertions compiled.
pub struct PreparedSuite {
    pub suite: String,
    pub prompt_id: String,
    /// Git blob id of the prompt file.
    pub prompt_version: String,
    /// Commit the suite was read from (None for the working tree).
    pub commit: Option<String>,
    /// `name@vN`.
    pub dataset: String,
    pub model: String,
    pub upstream: String,
    pub params: serde_json::Map<String, serde_json::Value>,
    /// The model's price as of the variant's config. Cached replies are
    /// re-priced with it, so a price change is never hidden by the cache.
    pub price: Price,
    pub repeat: u32,
    pub gates: Gates,
    cases: Vec<PreparedCase>,
    assertions: Vec<CompiledAssertion>,
    judges: Vec<Option<(String, String)>>,
}

struct PreparedCase {
    key: String,
    row: Row,
    messages: Result<Vec<ChatMessage>, CaseRenderError>,
}

impl PreparedSuite {
    pub fn case_count(&self) -> usize {
        self.cases.len() * self.repeat as usize
    }

    pub fn assertion_names(&self) -> Vec<String> {
        self.assertions
            .iter()
            .map(|a| a.name().to_string())
            .collect()
    }

    /// The dataset row of `key`, if the pinned version has it.
    pub fn row(&self, key: &str) -> Option<&Row> {
        self.cases.iter().find(|c| c.key == key).map(|c| &c.row)
    }

    /// Row keys in dataset order.
    pub fn row_keys(&self) -> impl Iterator<Item = &str> {
        self.cases.iter().map(|c| c.key.as_str())
    }

    /// The dataset columns the assertions read (the expected answers), in
    /// assertion order, each once.
    pub fn expected_columns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in self.assertions.iter().flat_map(|a| a.columns_read()) {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }
}

/// One evaluated case (one row, one repeat).
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub row_key: String,
    pub repeat: u32,
    pub messages: Vec<ChatMessage>,
    pub output: String,
    pub assertions: Vec<AssertionResult>,
    pub score: f64,
    pub pass: bool,
    pub latency_ms: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: f64,
    pub cached: bool,
    pub error: Option<String>,
}

/// Reads, renders and compiles everything a run needs from one source.
pub fn prepare(
    project: &Project,
    source: &dyn FileSource,
    suite_name: &str,
) -> Result<PreparedSuite, EvalError> {
    let suite = project.eval(suite_name)?;
    let prompt = project.prompt(&suite.suite.prompt)?;
    let variant = Variant {
        config: &project.config,
        prompt,
        commit: project.commit.clone(),
    };
    prepare_variant(project, source, suite_name, &variant)
}

/// The side of a comparison that differs: a prompt and the config that
/// resolves its model, as of some commit. `check` renders the base's prompt
/// on the head's suite and dataset, so both sides see the same rows and are
/// scored by the same assertions.
pub struct Variant<'a> {
    pub config: &'a Config,
    pub prompt: &'a LoadedPrompt,
    pub commit: Option<String>,
}

/// Like [`prepare`], with the prompt and model taken from `variant` while the
/// suite (rows, variable mapping, assertions, judges, gates) comes from
/// `project` and its `source`.
pub fn prepare_variant(
    project: &Project,
    source: &dyn FileSource,
    suite_name: &str,
    variant: &Variant<'_>,
) -> Result<PreparedSuite, EvalError> {
    let suite = project.eval(suite_name)?;
    prepare_on_dataset(project, suite_name, variant, source, &suite.dataset)
}

/// Like [`prepare_variant`], with the rows of `dataset` read from
/// `dataset_source` instead of the suite's own pinned version: `check`
/// runs an unchanged prompt on a pull request's old dataset version.
pub fn prepare_on_dataset(
    project: &Project,
    suite_name: &str,
    variant: &Variant<'_>,
    dataset_source: &dyn FileSource,
    dataset: &crate::spec::dataset::DatasetRef,
) -> Result<PreparedSuite, EvalError> {
    let suite = project.eval(suite_name)?;
    let prompt = variant.prompt;
    let model_key = prompt.prompt.model.clone();
    let (upstream, mut params) = model_identity(variant.config, suite_name, &model_key)?;
    let price = variant
        .config
        .models
        .get(&model_key)
        .map(|m| m.price)
        .unwrap_or_default();
    // The prompt's params override the model's defaults key by key.
    for (k, v) in &prompt.prompt.params {
        params.insert(k.clone(), v.clone());
    }
    let snapshot = dataset::read_snapshot(dataset_source, dataset)?;
    let mut assertions = Vec::new();
    let mut judges = Vec::new();
    for a in &suite.assertions {
        let compiled = CompiledAssertion::compile(a).map_err(|e| EvalError::Assertion {
            suite: suite_name.to_string(),
            name: a.name.clone(),
            message: e.to_string(),
        })?;
        judges.push(match &a.check {
            Check::LlmJudge { judge, .. } => {
                let (up, _) = model_identity(&project.config, suite_name, judge)?;
                Some((judge.clone(), up))
            }
            _ => None,
        });
        assertions.push(compiled);
    }
    // Compiled once: compiling a template per row took a tenth of a
    // zero-latency eval's CPU. A template that does not compile fails every
    // case with the same message, as rendering it per row would.
    let templates = CompiledMessages::compile(&prompt.prompt.messages);
    let cases = snapshot
        .rows
        .iter()
        .map(|row| {
            let key = snapshot.key_of(row);
            let messages =
                prompt_vars(&prompt.prompt, &suite.suite.vars, &key, row).and_then(|vars| {
                    let templates = templates.as_ref().map_err(|e| e.clone())?;
                    Ok(templates.render(&vars)?)
                });
            PreparedCase {
                key,
                row: row.clone(),
                messages,
            }
        })
        .collect();
    Ok(PreparedSuite {
        suite: suite_name.to_string(),
        prompt_id: prompt.prompt.id.clone(),
        prompt_version: prompt.blob.clone(),
        commit: variant.commit.clone(),
        dataset: dataset.to_string(),
        model: model_key,
        upstream,
        params,
        price,
        repeat: suite.suite.repeat.max(1),
        gates: suite.suite.gates.clone(),
        cases,
        assertions,
        judges,
    })
}

/// The upstream identity of a model (for the cache key) and its default params.
fn model_identity(
    config: &Config,
    suite: &str,
    model: &str,
) -> Result<(String, serde_json::Map<String, serde_json::Value>), EvalError> {
    let unknown = || EvalError::UnknownModel {
        suite: suite.to_string(),
        model: model.to_string(),
    };
    let m = config.models.get(model).ok_or_else(unknown)?;
    let upstream = upstream_id(config, model).ok_or_else(unknown)?;
    Ok((upstream, m.params.clone()))
}

/// What identifies a configured model at its upstream: model name, wire
/// format and URL. Part of the response cache key; None when the model or
/// its provider is not configured.
pub fn upstream_id(config: &Config, model: &str) -> Option<String> {
    let m = config.models.get(model)?;
    let p = config.providers.get(&m.provider)?;
    Some(format!("{}@{}:{}", m.name, p.kind.as_str(), p.base_url))
}

/// Why a case's messages could not be rendered: the case's error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CaseRenderError {
    #[error("dataset row `{key}`: column `{column}` is empty or absent: {source}")]
    MissingColumn {
        key: String,
        column: String,
        source: BindError,
    },
    #[error("dataset row `{key}`, column `{column}`: {source}")]
    Column {
        key: String,
        column: String,
        source: BindError,
    },
    #[error(transparent)]
    Template(#[from] TemplateError),
}

/// The prompt's variables for one row: each input takes the column `vars`
/// maps it to, else the column of the same name, bound like every command
/// binds ([`binding::bind`]). An error names the row and the column.
pub(crate) fn prompt_vars(
    prompt: &crate::spec::prompt::Prompt,
    mapping: &std::collections::BTreeMap<String, String>,
    key: &str,
    row: &Row,
) -> Result<serde_json::Map<String, serde_json::Value>, CaseRenderError> {
    let column_of = |input: &str| {
        mapping
            .get(input)
            .cloned()
            .unwrap_or_else(|| input.to_string())
    };
    let values = prompt
        .inputs
        .keys()
        .filter_map(|input| Some((input.clone(), row.get(&column_of(input))?.clone())))
        .collect();
    binding::bind(&prompt.id, &prompt.inputs, Supplied::values(values))
        .map(|b| b.values)
        .map_err(|source| {
            let (key, column) = (key.to_string(), column_of(source.input()));
            match source {
                BindError::Missing { .. } => CaseRenderError::MissingColumn {
                    key,
                    column,
                    source,
                },
                source => CaseRenderError::Column {
                    key,
                    column,
                    source,
                },
            }
        })
}

/// Options of one run.
pub struct RunOptions {
    pub concurrency: usize,
    /// Called after each finished case (progress bars).
    pub on_case: Option<Box<dyn Fn() + Send + Sync>>,
}

/// Runs every case; returns them in dataset order (then repeat order).
pub async fn run(
    prepared: &PreparedSuite,
    caller: Arc<dyn ModelCaller>,
    opts: &RunOptions,
) -> Result<Vec<CaseResult>, EvalError> {
    let jobs = prepared
        .cases
        .iter()
        .flat_map(|c| (0..prepared.repeat).map(move |r| (c, r)))
        .enumerate();
    // Unordered: with `buffered`, a finished case waits behind a slower one
    // ahead of it and holds its slot, so the effective concurrency drops
    // below the requested one whenever latencies vary. Order is restored
    // after the run instead.
    let mut stream = futures_util::stream::iter(jobs)
        .map(|(index, (case, repeat))| {
            let caller = caller.clone();
            async move {
                (
                    index,
                    run_case(prepared, case, repeat, caller.as_ref()).await,
                )
            }
        })
        .buffer_unordered(opts.concurrency.max(1));
    let mut out = Vec::with_capacity(prepared.case_count());
    while let Some((index, result)) = stream.next().await {
        out.push((index, result?));
        if let Some(cb) = &opts.on_case {
            cb();
        }
    }
    out.sort_unstable_by_key(|(index, _)| *index);
    Ok(out.into_iter().map(|(_, case)| case).collect())
}

/// The request parameters of repeat `draw`. A fixed sampling `seed` would
/// make every repeat the same draw, so repeat r asks for seed + r: repeats
/// are independent samples and a re-run is still reproducible. Repeat 0
/// keeps the configured seed, so a single run and the first repeat agree.
pub fn params_for_draw(
    params: &serde_json::Map<String, serde_json::Value>,
    draw: u32,
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = params.clone();
    if draw > 0
        && let Some(seed) = params.get("seed").and_then(serde_json::Value::as_i64)
    {
        out.insert("seed".into(), seed.wrapping_add(i64::from(draw)).into());
    }
    out
}

fn unreachable(prepared: &PreparedSuite, message: String) -> EvalError {
    EvalError::Unreachable {
        model: prepared.model.clone(),
        message,
    }
}

/// One case. Per-case failures become the case's `error`; the only `Err`
/// is an unreachable provider, which stops the run.
async fn run_case(
    prepared: &PreparedSuite,
    case: &PreparedCase,
    repeat: u32,
    caller: &dyn ModelCaller,
) -> Result<CaseResult, EvalError> {
    let mut result = CaseResult {
        row_key: case.key.clone(),
        repeat,
        messages: Vec::new(),
        output: String::new(),
        assertions: Vec::new(),
        score: 0.0,
        pass: false,
        latency_ms: 0.0,
        input_tokens: 0,
        output_tokens: 0,
        cost: 0.0,
        cached: false,
        error: None,
    };
    let messages = match &case.messages {
        Ok(m) => m.clone(),
        Err(e) => {
            result.error = Some(format!("render: {e}"));
            return Ok(result);
        }
    };
    result.messages = messages.clone();
    let call = ModelCall {
        model: prepared.model.clone(),
        upstream: prepared.upstream.clone(),
        messages,
        params: params_for_draw(&prepared.params, repeat),
        draw: repeat,
    };
    let reply: ModelReply = match caller.call(&call).await {
        Ok(r) => r,
        Err(CallFailure::Case(e)) => {
            result.error = Some(e);
            return Ok(result);
        }
        Err(CallFailure::Unreachable(message)) => return Err(unreachable(prepared, message)),
    };
    result.output = reply.content.clone();
    result.latency_ms = reply.latency_ms;
    result.input_tokens = reply.input_tokens;
    result.output_tokens = reply.output_tokens;
    result.cost = if reply.cached {
        prepared.price.cost(
            reply.input_tokens,
            reply.output_tokens,
            reply.latency_ms / 1000.0,
        )
    } else {
        reply.cost
    };
    result.cached = reply.cached;
    let obs = Observation {
        output: &reply.content,
        row: Some(&case.row),
        latency_ms: reply.latency_ms,
        cost: reply.cost,
    };
    for (a, judge) in prepared.assertions.iter().zip(&prepared.judges) {
        let r = match judge {
            None => a.evaluate(&obs),
            Some((judge_model, judge_upstream)) => match a.judge_messages(&obs) {
                Err(e) => a.judge_result(Err(e.into())),
                Ok(messages) => {
                    let judge_call = ModelCall {
                        model: judge_model.clone(),
                        upstream: judge_upstream.clone(),
                        messages,
                        params: serde_json::Map::from_iter([("temperature".to_string(), 0.into())]),
                        draw: repeat,
                    };
                    match caller.call(&judge_call).await {
                        Ok(j) => {
                            result.cost += j.cost;
                            a.judge_result(Ok(&j.content))
                        }
                        Err(CallFailure::Case(e)) => a.judge_result(Err(JudgeFailure::Call(e))),
                        Err(CallFailure::Unreachable(message)) => {
                            return Err(unreachable(prepared, message));
                        }
                    }
                }
            },
        };
        result.assertions.push(r);
    }
    let (score, pass) = assertions::aggregate(&result.assertions);
    result.score = score;
    result.pass = pass;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use futures_util::FutureExt;
    use futures_util::future::BoxFuture;

    use super::*;
    use crate::eval::call::{CallFailure, ModelCall, ModelCaller, ModelReply};
    use crate::project::LoadOptions;
    use crate::repo::WorkTree;

    /// Answers the first calls slowest, so completion order is the reverse
    /// of dataset order, and records the highest number of calls in flight.
    struct ReversingCaller {
        started: AtomicUsize,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
    }

    impl ModelCaller for ReversingCaller {
        fn call<'a>(
            &'a self,
            call: &'a ModelCall,
        ) -> BoxFuture<'a, Result<ModelReply, CallFailure>> {
            async move {
                let n = self.started.fetch_add(1, Ordering::SeqCst);
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5 * (40 - n as u64).max(1))).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(ModelReply {
                    content: call
                        .messages
                        .last()
                        .map(|m| m.content.clone())
                        .unwrap_or_default(),
                    input_tokens: 1,
                    output_tokens: 1,
                    latency_ms: 1.0,
                    cost: 0.0,
                    cached: false,
                })
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn results_come_back_in_dataset_order_whatever_the_completion_order() {
        let dir = tempfile::tempdir().unwrap();
        crate::cli::init::scaffold(dir.path(), false).unwrap();
        let source = WorkTree::new(dir.path());
        let project = Project::load(&source, &LoadOptions { resolve_ref: None }).unwrap();
        let mut prepared = prepare(&project, &source, "capitals").unwrap();
        prepared.repeat = 2;
        let caller = Arc::new(ReversingCaller {
            started: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let opts = RunOptions {
            concurrency: 8,
            on_case: None,
        };
        let results = run(&prepared, caller.clone(), &opts).await.unwrap();

        let expected: Vec<(String, u32)> = prepared
            .cases
            .iter()
            .flat_map(|c| (0..2).map(move |r| (c.key.clone(), r)))
            .collect();
        let got: Vec<(String, u32)> = results
            .iter()
            .map(|r| (r.row_key.clone(), r.repeat))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(caller.max_in_flight.load(Ordering::SeqCst), 8);
    }

    #[test]
    fn repeats_vary_the_sampling_seed_only() {
        let mut p = serde_json::Map::new();
        p.insert("seed".into(), 42.into());
        p.insert("temperature".into(), 0.7.into());
        assert_eq!(params_for_draw(&p, 0), p);
        let second = params_for_draw(&p, 2);
        assert_eq!(second["seed"], 44);
        assert_eq!(second["temperature"], 0.7);
        let mut no_seed = p.clone();
        no_seed.remove("seed");
        assert_eq!(params_for_draw(&no_seed, 3), no_seed);
    }
}
