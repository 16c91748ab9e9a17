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
//! What cannot run on live traffic is skipped with a warning at build time:
//! assertions that read the dataset row (`{{ row.<column> }}` templates,
//! `similarity`), which live traffic does not have, and `llm_judge`, which
//! the proxy does not call yet (a judge call per response would need its own
//! bounded queue; `sample_rate` is parsed and kept for it).
//!
//! Only calls that ended `ok` are scored: a failed call has no answer to
//! judge, and counts against the canary through `error_rate` instead.

use serde_json::{Map, Value};

use super::state::PreparedPrompt;
use crate::eval::assertions::{CompiledAssertion, Observation};
use crate::logstore::{RequestLogRow, RequestStatus};
use crate::project::Project;

/// One online assertion and the key its score is logged under.
#[derive(Debug)]
pub struct OnlineAssertion {
    /// The assertion's name; `<suite>.<name>` when two suites of the prompt
    /// use the same name.
    pub key: String,
    pub suite: String,
    pub compiled: CompiledAssertion,
}

/// The online assertions of one prompt at one ref.
#[derive(Debug, Default)]
pub struct OnlineChecks {
    pub assertions: Vec<OnlineAssertion>,
}

impl OnlineChecks {
    /// Compiles the `online: true` assertions of every suite of `project`
    /// whose prompt is `prompt_id`. Returns the checks and a warning per
    /// skipped assertion; fails when an assertion does not compile.
    pub fn build(
        project: &Project,
        prompt_id: &str,
    ) -> Result<(OnlineChecks, Vec<String>), String> {
        let mut assertions: Vec<OnlineAssertion> = Vec::new();
        let mut warnings = Vec::new();
        for (suite, ev) in &project.evals {
            if ev.suite.prompt != prompt_id {
                continue;
            }
            for a in ev.assertions.iter().filter(|a| a.online) {
                let compiled =
                    CompiledAssertion::compile(a).map_err(|e| format!("{}: {e}", ev.path))?;
                let skip = if compiled.needs_judge() {
                    Some("llm_judge is not run online by serve")
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
                let key = if assertions.iter().any(|o| o.key == a.name) {
                    format!("{suite}.{}", a.name)
                } else {
                    a.name.clone()
                };
                assertions.push(OnlineAssertion {
                    key,
                    suite: suite.clone(),
                    compiled,
                });
            }
        }
        Ok((OnlineChecks { assertions }, warnings))
    }

    pub fn is_empty(&self) -> bool {
        self.assertions.is_empty()
    }

    /// The score keys, in evaluation order.
    pub fn keys(&self) -> Vec<&str> {
        self.assertions.iter().map(|a| a.key.as_str()).collect()
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

/// Scores `row` (a finished call of `prompt`, `None` for a pass-through
/// model call) in place. Rows of prompts without online assertions, and of
/// calls that did not end `ok`, keep `online_pass` empty.
pub fn evaluate(prompt: Option<&PreparedPrompt>, row: &mut RequestLogRow) {
    let Some(p) = prompt else { return };
    if p.online.is_empty() || row.status != RequestStatus::Ok {
        return;
    }
    let (pass, scores) = p.online.score(&row.output, row.latency_ms, row.cost);
    row.online_pass = Some(pass);
    row.online_scores = Value::Object(scores).to_string();
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
            suite: "s".into(),
            compiled: assertion(key, check),
        };
        OnlineChecks {
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
