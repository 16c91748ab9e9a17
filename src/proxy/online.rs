//! Online evaluation of served responses: the one place where a finished
//! call's log row is scored before it is written.
//!
//! At state build time ([`super::state`]) every served prompt gets the
//! `online: true` assertions of the eval suites (at the same ref) whose
//! `prompt` is that prompt, compiled once ([`OnlineChecks::build`]).
//! [`evaluate`] then runs on the completion task of every call (never on the
//! request path: the client already has its response) and fills the row's
//! `online_pass` (every online assertion passed) and `online_scores`
//! (`{assertion: score}`); the caller counts the verdict per prompt and
//! variant ([`super::metrics::Metrics::record_online`]).
//!
//! Online `llm_judge` assertions run on a sampled fraction (`sample_rate`,
//! drawn from a hash of the request id, so a replay samples the same rows)
//! on their own tasks, at most [`JUDGE_CONCURRENCY`] at a time: a judge
//! call never delays the row's logging, and when every slot is busy the
//! sample is skipped and counted (`result="skipped"`). Judge verdicts go to
//! `promptgate_online_judge_total{prompt,variant,assertion,result}` only;
//! `online_pass` is the verdict of the deterministic assertions.
//!
//! What cannot run on live traffic is skipped with a warning at build time:
//! assertions that read the dataset row (`{{ row.<column> }}` templates,
//! `similarity`), which live traffic does not have, and judges whose model
//! has no client.
//!
//! Only calls that ended `ok` are scored: a failed call has no answer to
//! judge, and counts against the canary through `error_rate` instead.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde_json::{Map, Value};

use tokio::sync::Semaphore;

use super::metrics::{Metrics, ONLINE_JUDGE};
use crate::eval::assertions::{
    AssertionCompileError, AssertionResult, CompiledAssertion, JudgeFailure, Observation,
};
use crate::logstore::{RequestLogRow, RequestStatus};
use crate::project::Project;
use crate::provider::ModelClient;

/// An online assertion of an eval suite that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct OnlineError {
    /// The suite's file.
    pub path: String,
    pub source: AssertionCompileError,
}

/// One online assertion and the key its score is logged under.
#[derive(Debug)]
pub struct OnlineAssertion {
    /// The assertion's name; `<suite>.<name>` when two suites of the prompt
    /// use the same name.
    pub key: String,
    pub compiled: CompiledAssertion,
}

/// Judge calls running at once per server; more samples are skipped.
pub const JUDGE_CONCURRENCY: usize = 4;

/// An online `llm_judge` and the model that judges.
#[derive(Debug)]
pub struct OnlineJudge {
    pub key: String,
    pub compiled: CompiledAssertion,
    /// The judge model's client.
    pub client: ModelClient,
    /// Fraction of responses judged.
    pub sample_rate: f64,
}

/// The online assertions of one prompt at one ref.
#[derive(Debug, Default)]
pub struct OnlineChecks {
    /// Deterministic: scored on every answer.
    pub assertions: Vec<OnlineAssertion>,
    /// Sampled, off the logging path.
    pub judges: Vec<OnlineJudge>,
}

impl OnlineChecks {
    /// Compiles the `online: true` assertions of every suite of `project`
    /// whose prompt is `prompt_id`. Returns the checks and a warning per
    /// skipped assertion; fails when an assertion does not compile.
    /// `judge_client` gives the client of a judge model key.
    pub fn build(
        project: &Project,
        prompt_id: &str,
        judge_client: &dyn Fn(&str) -> Option<ModelClient>,
    ) -> Result<(OnlineChecks, Vec<String>), OnlineError> {
        let mut assertions: Vec<OnlineAssertion> = Vec::new();
        let mut judges: Vec<OnlineJudge> = Vec::new();
        let mut warnings = Vec::new();
        for (suite, ev) in &project.evals {
            if ev.suite.prompt != prompt_id {
                continue;
            }
            for a in ev.assertions.iter().filter(|a| a.online) {
                let compiled = CompiledAssertion::compile(a).map_err(|source| OnlineError {
                    path: ev.path.clone(),
                    source,
                })?;
                let judge = compiled
                    .judge_model()
                    .map(|m| (m.to_string(), judge_client(m)));
                let skip = if let Some((model, None)) = &judge {
                    warnings.push(format!(
                        "{}: online assertion `{}` skipped: judge model `{model}` has no client",
                        ev.path, a.name
                    ));
                    continue;
                } else if compiled.reads_row() {
                    Some("it reads the dataset row, which live traffic does not have")
                } else {
                    None
                };
                if let Some(why) = skip {
                    warnings.push(format!(
                        "{}: online assertion `{}` skipped: {why}",
                        ev.path, a.name
                    ));
                    continue;
                }
                let taken = assertions.iter().any(|o| o.key == a.name)
                    || judges.iter().any(|j| j.key == a.name);
                let key = if taken {
                    format!("{suite}.{}", a.name)
                } else {
                    a.name.clone()
                };
                if let Some((_, Some(client))) = judge {
                    judges.push(OnlineJudge {
                        key,
                        compiled,
                        client,
                        sample_rate: a.sample_rate,
                    });
                    continue;
                }
                assertions.push(OnlineAssertion { key, compiled });
            }
        }
        Ok((OnlineChecks { assertions, judges }, warnings))
    }

    /// No deterministic assertion (judges may still sample).
    pub fn is_empty(&self) -> bool {
        self.assertions.is_empty()
    }

    /// The score keys, in evaluation order, judges last.
    pub fn keys(&self) -> Vec<&str> {
        self.assertions
            .iter()
            .map(|a| a.key.as_str())
            .chain(self.judges.iter().map(|j| j.key.as_str()))
            .collect()
    }

    /// Scores one answer: every assertion's score by key, and whether all
    /// passed (an assertion that could not be evaluated does not pass).
    pub fn score(&self, output: &str, latency_ms: f64, cost: f64) -> (bool, Map<String, Value>) {
        let obs = Observation {
            output,
            row: None,
            latency_ms,
            cost,
        };
        let mut pass = true;
        let mut scores = Map::new();
        for a in &self.assertions {
            let r = a.compiled.evaluate(&obs);
            pass &= r.pass && r.error.is_none();
            scores.insert(a.key.clone(), Value::from(r.score));
        }
        (pass, scores)
    }
}

/// Scores `row` (a finished call of a prompt with `checks`; `None` for a
/// pass-through model call) in place. Rows of prompts without online
/// assertions, and of calls that did not end `ok`, keep `online_pass` empty.
pub fn evaluate(checks: Option<&OnlineChecks>, row: &mut RequestLogRow) {
    let Some(checks) = checks else { return };
    if checks.is_empty() || row.status != RequestStatus::Ok {
        return;
    }
    let (pass, scores) = checks.score(&row.output, row.latency_ms, row.cost);
    row.online_pass = Some(pass);
    row.online_scores = Value::Object(scores).to_string();
}

/// Whether the response `request_id` is in the `rate` sample of judge
/// `key`: a fixed hash, so the same request is always sampled the same way.
pub fn sampled(request_id: &str, key: &str, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    // DefaultHasher::new() uses fixed keys: stable within a build.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (request_id, key).hash(&mut h);
    ((h.finish() >> 11) as f64 / (1u64 << 53) as f64) < rate
}

/// Where online judge calls run: at most [`JUDGE_CONCURRENCY`] at a time
/// per server, each verdict counted in the metrics.
#[derive(Debug, Clone)]
pub struct JudgePool {
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl JudgePool {
    pub fn new(metrics: Arc<Metrics>) -> JudgePool {
        JudgePool {
            slots: Arc::new(Semaphore::new(JUDGE_CONCURRENCY)),
            metrics,
        }
    }

    /// Starts the sampled judge calls of `row` (a finished call of prompt
    /// `prompt_id` with `checks`) on their own tasks; a sample finding no
    /// free slot is skipped and counted.
    pub fn spawn(&self, prompt_id: &str, checks: &Arc<OnlineChecks>, row: &RequestLogRow) {
        if checks.judges.is_empty() || row.status != RequestStatus::Ok {
            return;
        }
        let variant = row.variant.as_str();
        for (i, j) in checks.judges.iter().enumerate() {
            if !sampled(&row.request_id, &j.key, j.sample_rate) {
                continue;
            }
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                self.metrics
                    .count_event(ONLINE_JUDGE, &[prompt_id, variant, &j.key, "skipped"]);
                continue;
            };
            let (metrics, checks) = (self.metrics.clone(), checks.clone());
            let (prompt_id, variant) = (prompt_id.to_string(), variant.to_string());
            let obs = OwnedObservation {
                output: row.output.clone(),
                latency_ms: row.latency_ms,
                cost: row.cost,
            };
            tokio::spawn(async move {
                let j = &checks.judges[i];
                let r = judge(j, &obs).await;
                drop(permit);
                let result = match (&r.error, r.pass) {
                    (Some(e), _) => {
                        tracing::warn!(prompt = %prompt_id, assertion = %j.key, error = %e, "online judge failed");
                        "error"
                    }
                    (None, true) => "pass",
                    (None, false) => "fail",
                };
                metrics.count_event(ONLINE_JUDGE, &[&prompt_id, &variant, &j.key, result]);
            });
        }
    }
}

/// What a judge task keeps of the row.
struct OwnedObservation {
    output: String,
    latency_ms: f64,
    cost: f64,
}

/// One judge call and its verdict.
async fn judge(j: &OnlineJudge, o: &OwnedObservation) -> AssertionResult {
    let obs = Observation {
        output: &o.output,
        row: None,
        latency_ms: o.latency_ms,
        cost: o.cost,
    };
    match j.compiled.judge_messages(&obs) {
        Err(e) => j.compiled.judge_result(Err(e.into())),
        Ok(messages) => {
            let params = Map::from_iter([("temperature".to_string(), Value::from(0))]);
            match j.client.chat_messages(&messages, &params).await {
                Ok(c) => j.compiled.judge_result(Ok(&c.content)),
                Err(e) => j
                    .compiled
                    .judge_result(Err(JudgeFailure::Call(e.to_string()))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::eval::{Assertion, Check};

    fn assertion(name: &str, check: Check) -> CompiledAssertion {
        CompiledAssertion::compile(&Assertion {
            name: name.into(),
            check,
            weight: 1.0,
            online: true,
            sample_rate: 1.0,
        })
        .unwrap()
    }

    fn checks() -> OnlineChecks {
        let a = |key: &str, check| OnlineAssertion {
            key: key.into(),
            compiled: assertion(key, check),
        };
        OnlineChecks {
            judges: Vec::new(),
            assertions: vec![
                a("max_length", Check::MaxLength { max: 10 }),
                a(
                    "regex",
                    Check::Regex {
                        pattern: "^[A-Z]".into(),
                    },
                ),
            ],
        }
    }

    #[test]
    fn passes_only_when_every_assertion_passes() {
        let c = checks();
        let (pass, scores) = c.score("Paris", 1.0, 0.0);
        assert!(pass);
        assert_eq!(
            Value::Object(scores),
            serde_json::json!({"max_length": 1.0, "regex": 1.0})
        );
        let (pass, scores) = c.score("Paris is the capital", 1.0, 0.0);
        assert!(!pass);
        assert_eq!(
            Value::Object(scores),
            serde_json::json!({"max_length": 0.0, "regex": 1.0})
        );
        let (pass, _) = c.score("paris", 1.0, 0.0);
        assert!(!pass);
    }

    #[test]
    fn sampling_is_a_fixed_fraction_of_request_ids() {
        let n = (0..10_000)
            .filter(|i| sampled(&format!("req-{i}"), "judge", 0.2))
            .count();
        assert!((1_700..2_300).contains(&n), "{n}");
        assert_eq!(sampled("a", "judge", 0.5), sampled("a", "judge", 0.5));
        assert!(sampled("a", "judge", 1.0));
        assert!(!(0..1000).any(|i| sampled(&format!("r{i}"), "judge", 0.0)));
    }

    #[test]
    fn row_templates_are_detected_as_offline_only() {
        let row = assertion(
            "c",
            Check::Contains {
                value: "{{ row.expected }}".into(),
            },
        );
        assert!(row.reads_row());
        let literal = assertion(
            "c",
            Check::Contains {
                value: "Paris".into(),
            },
        );
        assert!(!literal.reads_row());
    }
}
