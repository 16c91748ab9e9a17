//! The outcome of a run: a summary with gate verdicts, and one Parquet file
//! of per-case results.
//!
//! Results file: `.promptgate/results/<suite>/<run_id>.parquet`, zstd, one
//! row per case (row x repeat) with the columns run_id, suite, prompt_id,
//! prompt_version, commit, dataset, model, row_key, repeat, messages (JSON
//! text), output, score, pass, latency_ms, input_tokens, output_tokens, cost,
//! cached, error, then `assert_<name>_score` / `assert_<name>_pass` for each
//! assertion (nullable: null when the case never reached scoring).
//! A summary JSON with the same stem sits beside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::runner::{CaseResult, PreparedSuite};
use crate::spec::eval::Gates;
use crate::stats;

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing results: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("writing results: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

impl From<crate::durable::WriteError> for ResultsError {
    fn from(e: crate::durable::WriteError) -> Self {
        ResultsError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// One gate's verdict.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GateResult {
    pub gate: String,
    /// `>=` or `<=`.
    pub op: &'static str,
    pub threshold: f64,
    pub actual: Option<f64>,
    pub pass: bool,
}

/// A [`GateResult`] as `eval --json` writes it.
#[derive(Deserialize)]
struct GateResultJson {
    gate: String,
    op: String,
    threshold: f64,
    actual: Option<f64>,
    pass: bool,
}

impl<'de> Deserialize<'de> for GateResult {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<GateResult, D::Error> {
        let g = GateResultJson::deserialize(d)?;
        let op = match g.op.as_str() {
            ">=" => ">=",
            "<=" => "<=",
            other => {
                let want = &"`>=` or `<=`";
                let got = serde::de::Unexpected::Str(other);
                return Err(serde::de::Error::invalid_value(got, want));
            }
        };
        Ok(GateResult {
            gate: g.gate,
            op,
            threshold: g.threshold,
            actual: g.actual,
            pass: g.pass,
        })
    }
}

/// A run's summary: printed by `eval`, as JSON with `--json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub run_id: String,
    pub suite: String,
    pub prompt_id: String,
    pub prompt_version: String,
    pub commit: Option<String>,
    pub dataset: String,
    pub model: String,
    pub cases: usize,
    pub passed: usize,
    pub failed: usize,
    pub errors: usize,
    pub pass_rate: f64,
    pub mean_score: f64,
    pub cost_total: f64,
    /// Mean cost of a case times 1000.
    pub cost_per_1k: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Calls answered from the response cache.
    pub cache_hits: usize,
    /// Wall time of the calls, first call to last answer (not start-up or
    /// writing the results).
    pub duration_ms: f64,
    /// Cases (times repeats) finished per second of `duration_ms`.
    pub cases_per_s: f64,
    pub gates: Vec<GateResult>,
    pub results_file: Option<String>,
}

impl Summary {
    pub fn gates_pass(&self) -> bool {
        self.gates.iter().all(|g| g.pass)
    }
}

pub fn summarise(
    prepared: &PreparedSuite,
    run_id: &str,
    cases: &[CaseResult],
    duration: std::time::Duration,
) -> Summary {
    let n = cases.len();
    let passed = cases.iter().filter(|c| c.pass).count();
    let errors = cases.iter().filter(|c| c.error.is_some()).count();
    // Per run (a compare candidate): an HDR histogram, no sort.
    let latencies: stats::latency::LatencyQuantiles = cases
        .iter()
        .filter(|c| c.error.is_none())
        .map(|c| c.latency_ms)
        .collect();
    let cost_total: f64 = cases.iter().map(|c| c.cost).sum();
    let pass_rate = if n == 0 {
        0.0
    } else {
        passed as f64 / n as f64
    };
    let scores: Vec<f64> = cases.iter().map(|c| c.score).collect();
    let mut summary = Summary {
        run_id: run_id.to_string(),
        suite: prepared.suite.clone(),
        prompt_id: prepared.prompt_id.clone(),
        prompt_version: prepared.prompt_version.clone(),
        commit: prepared.commit.clone(),
        dataset: prepared.dataset.clone(),
        model: prepared.model.clone(),
        cases: n,
        passed,
        failed: n - passed,
        errors,
        pass_rate,
        mean_score: stats::mean(&scores).unwrap_or(0.0),
        cost_total,
        cost_per_1k: if n == 0 {
            0.0
        } else {
            cost_total / n as f64 * 1000.0
        },
        latency_p50_ms: latencies.quantile(0.5),
        latency_p95_ms: latencies.quantile(0.95),
        input_tokens: cases.iter().map(|c| c.input_tokens).sum(),
        output_tokens: cases.iter().map(|c| c.output_tokens).sum(),
        cache_hits: cases.iter().filter(|c| c.cached).count(),
        duration_ms: duration.as_secs_f64() * 1000.0,
        cases_per_s: if duration.is_zero() {
            0.0
        } else {
            n as f64 / duration.as_secs_f64()
        },
        gates: Vec::new(),
        results_file: None,
    };
    summary.gates = absolute_gates(&prepared.gates, &summary);
    summary
}

/// The gates one run can decide alone (the regression gate needs a base
/// and is decided by `check`).
pub fn absolute_gates(gates: &Gates, s: &Summary) -> Vec<GateResult> {
    let mut out = Vec::new();
    if let Some(g) = gates.pass_rate {
        out.push(GateResult {
            gate: "pass_rate".into(),
            op: ">=",
            threshold: g.min,
            actual: Some(s.pass_rate),
            pass: s.pass_rate >= g.min,
        });
    }
    if let Some(g) = gates.cost_per_1k {
        out.push(GateResult {
            gate: "cost_per_1k".into(),
            op: "<=",
            threshold: g.max,
            actual: Some(s.cost_per_1k),
            pass: s.cost_per_1k <= g.max,
        });
    }
    if let Some(g) = gates.latency_p95_ms {
        out.push(GateResult {
            gate: "latency_p95_ms".into(),
            op: "<=",
            threshold: g.max,
            actual: s.latency_p95_ms,
            pass: s.latency_p95_ms.is_some_and(|v| v <= g.max),
        });
    }
    out
}

/// Column-safe, unique names for the assertion columns.
fn assertion_columns(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let base: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let mut candidate = base.clone();
        let mut i = 2;
        while out.contains(&candidate) {
            candidate = format!("{base}_{i}");
            i += 1;
        }
        out.push(candidate);
    }
    out
}

/// Writes the per-case results to `path` durably.
pub fn write_parquet(
    path: &Path,
    prepared: &PreparedSuite,
    summary: &Summary,
    cases: &[CaseResult],
) -> Result<(), ResultsError> {
    let names = assertion_columns(&prepared.assertion_names());
    let n = cases.len();
    let mut fields = vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("suite", DataType::Utf8, false),
        Field::new("prompt_id", DataType::Utf8, false),
        Field::new("prompt_version", DataType::Utf8, false),
        Field::new("commit", DataType::Utf8, true),
        Field::new("dataset", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("row_key", DataType::Utf8, false),
        Field::new("repeat", DataType::UInt32, false),
        Field::new("messages", DataType::Utf8, false),
        Field::new("output", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("pass", DataType::Boolean, false),
        Field::new("latency_ms", DataType::Float64, false),
        Field::new("input_tokens", DataType::UInt64, false),
        Field::new("output_tokens", DataType::UInt64, false),
        Field::new("cost", DataType::Float64, false),
        Field::new("cached", DataType::Boolean, false),
        Field::new("error", DataType::Utf8, true),
    ];
    let constant = |v: &str| {
        let mut b = StringBuilder::with_capacity(n, n * v.len());
        for _ in 0..n {
            b.append_value(v);
        }
        Arc::new(b.finish()) as ArrayRef
    };
    let mut commit = StringBuilder::new();
    let mut row_key = StringBuilder::new();
    let mut repeat = UInt32Builder::with_capacity(n);
    let mut messages = StringBuilder::new();
    let mut output = StringBuilder::new();
    let mut score = Float64Builder::with_capacity(n);
    let mut pass = BooleanBuilder::with_capacity(n);
    let mut latency = Float64Builder::with_capacity(n);
    let mut tin = UInt64Builder::with_capacity(n);
    let mut tout = UInt64Builder::with_capacity(n);
    let mut cost = Float64Builder::with_capacity(n);
    let mut cached = BooleanBuilder::with_capacity(n);
    let mut error = StringBuilder::new();
    let mut a_score: Vec<Float64Builder> = names
        .iter()
        .map(|_| Float64Builder::with_capacity(n))
        .collect();
    let mut a_pass: Vec<BooleanBuilder> = names
        .iter()
        .map(|_| BooleanBuilder::with_capacity(n))
        .collect();
    for c in cases {
        commit.append_option(summary.commit.as_deref());
        row_key.append_value(&c.row_key);
        repeat.append_value(c.repeat);
        messages.append_value(serde_json::to_string(&c.messages).unwrap_or_default());
        output.append_value(&c.output);
        score.append_value(c.score);
        pass.append_value(c.pass);
        latency.append_value(c.latency_ms);
        tin.append_value(c.input_tokens);
        tout.append_value(c.output_tokens);
        cost.append_value(c.cost);
        cached.append_value(c.cached);
        error.append_option(c.error.as_deref());
        for i in 0..names.len() {
            match c.assertions.get(i) {
                Some(r) => {
                    a_score[i].append_value(r.score);
                    a_pass[i].append_value(r.pass);
                }
                None => {
                    a_score[i].append_null();
                    a_pass[i].append_null();
                }
            }
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        constant(&summary.run_id),
        constant(&summary.suite),
        constant(&summary.prompt_id),
        constant(&summary.prompt_version),
        Arc::new(commit.finish()),
        constant(&summary.dataset),
        constant(&summary.model),
        Arc::new(row_key.finish()),
        Arc::new(repeat.finish()),
        Arc::new(messages.finish()),
        Arc::new(output.finish()),
        Arc::new(score.finish()),
        Arc::new(pass.finish()),
        Arc::new(latency.finish()),
        Arc::new(tin.finish()),
        Arc::new(tout.finish()),
        Arc::new(cost.finish()),
        Arc::new(cached.finish()),
        Arc::new(error.finish()),
    ];
    for (i, name) in names.iter().enumerate() {
        fields.push(Field::new(
            format!("assert_{name}_score"),
            DataType::Float64,
            true,
        ));
        fields.push(Field::new(
            format!("assert_{name}_pass"),
            DataType::Boolean,
            true,
        ));
        columns.push(Arc::new(a_score[i].finish()));
        columns.push(Arc::new(a_pass[i].finish()));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props))?;
    writer.write(&batch)?;
    writer.close()?;
    crate::durable::write(path, &buf).map_err(ResultsError::from)
}

/// Summarises a finished run and records it under `state_dir` (normally
/// `<repo>/.promptgate`): the per-case Parquet file, then the summary JSON
/// beside it, both written durably. The summary names the Parquet file.
pub fn record(
    state_dir: &Path,
    prepared: &PreparedSuite,
    cases: &[CaseResult],
    duration: std::time::Duration,
) -> Result<Summary, ResultsError> {
    let run_id = uuid::Uuid::now_v7().to_string();
    let mut summary = summarise(prepared, &run_id, cases, duration);
    let (parquet, json) = result_paths(state_dir, &prepared.suite, &run_id);
    write_parquet(&parquet, prepared, &summary, cases)?;
    summary.results_file = Some(parquet.display().to_string());
    let text = serde_json::to_string_pretty(&summary).map_err(|e| ResultsError::Io {
        path: json.clone(),
        source: e.into(),
    })?;
    crate::durable::write(&json, text.as_bytes())?;
    Ok(summary)
}

/// Where a run's files go: `<state>/results/<suite>/<run_id>.{parquet,json}`.
pub fn result_paths(state_dir: &Path, suite: &str, run_id: &str) -> (PathBuf, PathBuf) {
    let dir = state_dir.join("results").join(suite);
    (
        dir.join(format!("{run_id}.parquet")),
        dir.join(format!("{run_id}.json")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `eval --json` is read back by `promptgate demo`: what it writes
    /// deserialises to the same summary, and a gate with an unknown
    /// comparison is refused.
    #[test]
    fn summary_json_reads_back_and_gate_ops_are_checked() {
        let json = serde_json::json!({
            "run_id": "r", "suite": "s", "prompt_id": "p", "prompt_version": "b",
            "commit": null, "dataset": "d@v1", "model": "m", "cases": 2, "passed": 1,
            "failed": 1, "errors": 0, "pass_rate": 0.5, "mean_score": 0.5,
            "cost_total": 0.0, "cost_per_1k": 0.0, "latency_p50_ms": 1.5,
            "latency_p95_ms": null, "input_tokens": 3, "output_tokens": 4,
            "cache_hits": 0, "duration_ms": 10.0, "cases_per_s": 200.0,
            "gates": [{"gate": "pass_rate", "op": ">=", "threshold": 0.9, "actual": 0.5, "pass": false}],
            "results_file": "x.parquet",
        });
        let s: Summary = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(s.gates[0].op, ">=");
        assert_eq!(serde_json::to_value(&s).unwrap(), json);
        let mut bad = json;
        bad["gates"][0]["op"] = "==".into();
        let err = serde_json::from_value::<Summary>(bad).unwrap_err();
        assert!(err.to_string().contains("=="), "{err}");
    }

    #[test]
    fn assertion_columns_are_safe_and_unique() {
        let cols =
            assertion_columns(&["icontains".into(), "icontains".into(), "Max Length!".into()]);
        assert_eq!(cols, vec!["icontains", "icontains_2", "max_length_"]);
    }
}
