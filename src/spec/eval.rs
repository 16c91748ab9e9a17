//! `evals/<suite>.yaml`: a prompt, a pinned dataset version, the mapping of
//! row columns to prompt variables, assertions and gates.
//!
//! Assertions are parsed in two stages: [`RawAssertion`] accepts every field
//! any assertion type may have, and [`Assertion::try_from`] checks that a type
//! got exactly the fields it needs, naming the missing or stray one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EvalSuite {
    #[serde(default)]
    pub description: Option<String>,
    /// Prompt id.
    pub prompt: String,
    /// `name@vN`.
    pub dataset: String,
    /// Prompt variable -> dataset column. Variables not listed take the
    /// column of the same name.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Run every case this many times (for non-deterministic models).
    #[serde(default = "default_repeat")]
    pub repeat: u32,
    pub assertions: Vec<RawAssertion>,
    #[serde(default)]
    pub gates: Gates,
    /// Candidates `promptgate compare` runs on this suite by default.
    #[serde(default)]
    pub compare: Option<CompareMatrix>,
    /// What the absolute gates do in `check` when a change touches only
    /// this suite's dataset (the prompt, its model and the rest of the
    /// suite unchanged).
    #[serde(default)]
    pub on_dataset_change: OnDatasetChange,
}

/// `on_dataset_change:` of a suite. A dataset that grows by rows the
/// current prompt fails lowers the pass rate without any change to the
/// prompt: that is the point of adding them, so by default it warns, and
/// the prompt change that follows is judged on the new version as usual.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnDatasetChange {
    /// Failed absolute gates are reported as warnings; check passes.
    #[default]
    Warn,
    /// Failed absolute gates block, as on any other change.
    Block,
}

impl OnDatasetChange {
    pub fn as_str(self) -> &'static str {
        match self {
            OnDatasetChange::Warn => "warn",
            OnDatasetChange::Block => "block",
        }
    }
}

/// `compare:` of a suite: the candidates are every combination of a model,
/// a prompt version and one value of each param. An empty list keeps the
/// suite's own (its prompt's model, its prompt at the ref, its params).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct CompareMatrix {
    /// Keys under `models` in promptgate.yaml.
    #[serde(default)]
    pub models: Vec<String>,
    /// Git refs to read the suite's prompt from (`main`, `prompt/short`).
    #[serde(default)]
    pub prompt_refs: Vec<String>,
    /// Prompt files (paths relative to the repository root), read from
    /// the same commit as the suite.
    #[serde(default)]
    pub prompt_files: Vec<String>,
    /// Param name -> the values to try (`max_tokens: [64, 256]`).
    #[serde(default)]
    pub params: BTreeMap<String, Vec<serde_json::Value>>,
    /// Largest pass-rate drop from the best candidate that still counts as
    /// "as good" (0.03 = 3 points).
    #[serde(default)]
    pub margin: Option<f64>,
}

fn default_repeat() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum AssertionType {
    Equals,
    Contains,
    Icontains,
    NotContains,
    Regex,
    StartsWith,
    JsonValid,
    JsonSchema,
    MinLength,
    MaxLength,
    Similarity,
    LlmJudge,
    LatencyMs,
    Cost,
}

impl AssertionType {
    pub fn as_str(self) -> &'static str {
        match self {
            AssertionType::Equals => "equals",
            AssertionType::Contains => "contains",
            AssertionType::Icontains => "icontains",
            AssertionType::NotContains => "not_contains",
            AssertionType::Regex => "regex",
            AssertionType::StartsWith => "starts_with",
            AssertionType::JsonValid => "json_valid",
            AssertionType::JsonSchema => "json_schema",
            AssertionType::MinLength => "min_length",
            AssertionType::MaxLength => "max_length",
            AssertionType::Similarity => "similarity",
            AssertionType::LlmJudge => "llm_judge",
            AssertionType::LatencyMs => "latency_ms",
            AssertionType::Cost => "cost",
        }
    }

    /// Deterministic assertions cheap enough to run on live traffic.
    pub fn can_run_online(self) -> bool {
        !matches!(self, AssertionType::Similarity | AssertionType::Equals)
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SimilarityMetric {
    #[default]
    RougeL,
    TokenF1,
}

/// An assertion as written; see [`Assertion`] for the checked form.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawAssertion {
    #[serde(rename = "type")]
    pub kind: AssertionType,
    /// Optional display name; defaults to the type.
    #[serde(default)]
    pub name: Option<String>,
    /// Text to compare with (equals, contains, icontains, not_contains,
    /// starts_with) or the pattern (regex). May use `{{ row.<column> }}`.
    #[serde(default)]
    pub value: Option<String>,
    /// Dataset column holding the reference text (similarity).
    #[serde(default)]
    pub column: Option<String>,
    #[serde(default)]
    pub metric: Option<SimilarityMetric>,
    /// Pass threshold for scored assertions (similarity, llm_judge), 0..=1.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Length limit in characters, latency limit in ms, or cost limit.
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub min: Option<f64>,
    /// JSON Schema (json_schema).
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    /// Rubric for llm_judge.
    #[serde(default)]
    pub rubric: Option<String>,
    /// Judge model (key into `models`) for llm_judge.
    #[serde(default)]
    pub judge: Option<String>,
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Also run on live traffic in the proxy.
    #[serde(default)]
    pub online: bool,
    /// Fraction of live responses judged (llm_judge online).
    #[serde(default)]
    pub sample_rate: Option<f64>,
}

fn default_weight() -> f64 {
    1.0
}

/// The checked form of an assertion: each variant has the fields it needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Equals {
        value: String,
    },
    Contains {
        value: String,
    },
    Icontains {
        value: String,
    },
    NotContains {
        value: String,
    },
    Regex {
        pattern: String,
    },
    StartsWith {
        value: String,
    },
    JsonValid,
    JsonSchema {
        schema: serde_json::Value,
    },
    MinLength {
        min: usize,
    },
    MaxLength {
        max: usize,
    },
    Similarity {
        column: String,
        metric: SimilarityMetric,
        threshold: f64,
    },
    LlmJudge {
        rubric: String,
        judge: String,
        threshold: f64,
    },
    LatencyMs {
        max: f64,
    },
    Cost {
        max: f64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assertion {
    pub name: String,
    pub check: Check,
    pub weight: f64,
    pub online: bool,
    pub sample_rate: f64,
}

/// Why a raw assertion is not a valid one: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct AssertionError {
    pub field: &'static str,
    pub message: String,
}

fn need<T: Clone>(
    v: &Option<T>,
    field: &'static str,
    kind: AssertionType,
) -> Result<T, AssertionError> {
    v.clone().ok_or_else(|| AssertionError {
        field,
        message: format!("`{}` assertion needs `{field}`", kind.as_str()),
    })
}

fn unit_interval(v: f64, field: &'static str) -> Result<f64, AssertionError> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(AssertionError {
            field,
            message: format!("must be between 0 and 1, got {v}"),
        })
    }
}

fn count(v: f64, field: &'static str) -> Result<usize, AssertionError> {
    if v >= 0.0 && v.fract() == 0.0 {
        Ok(v as usize)
    } else {
        Err(AssertionError {
            field,
            message: format!("must be a whole number of characters, got {v}"),
        })
    }
}

impl TryFrom<&RawAssertion> for Assertion {
    type Error = AssertionError;

    fn try_from(raw: &RawAssertion) -> Result<Self, Self::Error> {
        use AssertionType as T;
        let k = raw.kind;
        let check = match k {
            T::Equals => Check::Equals {
                value: need(&raw.value, "value", k)?,
            },
            T::Contains => Check::Contains {
                value: need(&raw.value, "value", k)?,
            },
            T::Icontains => Check::Icontains {
                value: need(&raw.value, "value", k)?,
            },
            T::NotContains => Check::NotContains {
                value: need(&raw.value, "value", k)?,
            },
            T::StartsWith => Check::StartsWith {
                value: need(&raw.value, "value", k)?,
            },
            T::Regex => Check::Regex {
                pattern: need(&raw.value, "value", k)?,
            },
            T::JsonValid => Check::JsonValid,
            T::JsonSchema => Check::JsonSchema {
                schema: need(&raw.schema, "schema", k)?,
            },
            T::MinLength => Check::MinLength {
                min: count(need(&raw.min, "min", k)?, "min")?,
            },
            T::MaxLength => Check::MaxLength {
                max: count(need(&raw.max, "max", k)?, "max")?,
            },
            T::Similarity => Check::Similarity {
                column: need(&raw.column, "column", k)?,
                metric: raw.metric.unwrap_or_default(),
                threshold: unit_interval(need(&raw.threshold, "threshold", k)?, "threshold")?,
            },
            T::LlmJudge => Check::LlmJudge {
                rubric: need(&raw.rubric, "rubric", k)?,
                judge: need(&raw.judge, "judge", k)?,
                threshold: unit_interval(raw.threshold.unwrap_or(0.5), "threshold")?,
            },
            T::LatencyMs => Check::LatencyMs {
                max: need(&raw.max, "max", k)?,
            },
            T::Cost => Check::Cost {
                max: need(&raw.max, "max", k)?,
            },
        };
        if !(raw.weight.is_finite() && raw.weight >= 0.0) {
            return Err(AssertionError {
                field: "weight",
                message: format!("must be a non-negative number, got {}", raw.weight),
            });
        }
        if raw.online && !k.can_run_online() {
            return Err(AssertionError {
                field: "online",
                message: format!(
                    "`{}` compares with dataset columns, which live traffic does not have",
                    k.as_str()
                ),
            });
        }
        let sample_rate = unit_interval(raw.sample_rate.unwrap_or(1.0), "sample_rate")?;
        Ok(Assertion {
            name: raw.name.clone().unwrap_or_else(|| k.as_str().to_string()),
            check,
            weight: raw.weight,
            online: raw.online,
            sample_rate,
        })
    }
}

/// Quality gates of a suite, used by `check` and reported by `eval`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Gates {
    #[serde(default)]
    pub pass_rate: Option<MinGate>,
    #[serde(default)]
    pub regression: Option<RegressionGate>,
    #[serde(default)]
    pub cost_per_1k: Option<MaxGate>,
    #[serde(default)]
    pub latency_p95_ms: Option<MaxGate>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MinGate {
    pub min: f64,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MaxGate {
    pub max: f64,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegressionGate {
    /// Largest tolerated drop in pass rate, head vs base (0.05 = 5 points).
    pub max_drop: f64,
    /// Block only when a drop larger than `max_drop` is shown at this
    /// confidence (one-sided; the schema keeps it within 0.5..1).
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// When false, the observed drop alone decides.
    #[serde(default = "default_true")]
    pub require_significance: bool,
}

fn default_confidence() -> f64 {
    0.95
}
fn default_true() -> bool {
    true
}
