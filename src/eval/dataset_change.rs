//! `check` on a pull request that changes only a suite's dataset (new
//! rows from reviews, `dataset grow`), not its prompt.
//!
//! Such a change is a change of the test, not of the thing tested: the
//! unchanged prompt runs on the old version (base's pinned snapshot, read
//! from base's commit) and on the new one (head's), and the report lists the
//! rows new or changed in the new version that the prompt fails, with the
//! expected values, the output and the failed assertions.
//!
//! Rules (documented in the README's pull-request gate section):
//! - a suite is in this mode when its dataset reference differs between
//!   base and head (`name@vN` -> `name@vM`) while its prompt file, the
//!   config entries of its models and the rest of its suite file are the
//!   same on both sides;
//! - the paired regression gate compares the rows common to both versions
//!   (same key, same content): the unchanged prompt on unchanged rows;
//! - the absolute gates (`pass_rate`, `cost_per_1k`, `latency_p95_ms`) are
//!   judged on the new version, and a failed one warns instead of
//!   blocking, unless the suite says `on_dataset_change: block`;
//! - the prompt change that follows runs both sides on the new version as
//!   any other change does.
//!
//! Whenever a change touches a dataset's folder, head's copy of it must be
//! consistent: every recorded snapshot intact, none unrecorded, and
//! `rows.jsonl` holding exactly the latest snapshot's rows (an edit that was
//! not snapshotted would otherwise be silently left out of the eval).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

use super::compare::SuiteVerdict;
use super::runner::{CaseResult, PreparedSuite};
use crate::dataset::{self, RowsStatus};
use crate::project::LoadedEval;
use crate::repo::FileSource;
use crate::spec::dataset::DatasetRef;
use crate::spec::eval::{EvalSuite, OnDatasetChange};
use crate::spec::{FileKind, SourceFile};

/// Why head's copy of a changed dataset cannot be checked.
#[derive(Debug, thiserror::Error)]
pub enum HeadDatasetError {
    #[error(transparent)]
    Dataset(#[from] dataset::DatasetError),
    #[error("{path} is missing, but dataset.lock records snapshots")]
    RowsMissing { path: String },
    #[error(
        "{path} has {errors} invalid row(s); `promptgate dataset snapshot {name}` shows each (file:line, column)"
    )]
    RowsInvalid {
        name: String,
        path: String,
        errors: usize,
    },
    #[error(
        "{path} was edited but not snapshotted: its rows are not those of the latest snapshot {latest}, \
         so the eval would not see the edit; run `promptgate dataset snapshot {name}`, point the suites at the new version and commit"
    )]
    RowsNotSnapshotted {
        name: String,
        path: String,
        latest: String,
    },
}

/// Checks head's copy of dataset `name`; see the module docs.
pub fn verify_head(source: &dyn FileSource, name: &str) -> Result<(), HeadDatasetError> {
    let status = dataset::status(source, name)?;
    if !status.problems.is_empty() {
        return Err(dataset::DatasetError::Integrity(status.problems).into());
    }
    let path = format!("{}/{name}/rows.jsonl", crate::project::DATASETS_DIR);
    match status.rows_jsonl {
        RowsStatus::Snapshotted { .. } => Ok(()),
        RowsStatus::Missing if status.versions.is_empty() => Ok(()),
        RowsStatus::Missing => Err(HeadDatasetError::RowsMissing { path }),
        RowsStatus::Invalid { errors } => Err(HeadDatasetError::RowsInvalid {
            name: name.to_string(),
            path,
            errors,
        }),
        RowsStatus::Changed { latest } => Err(HeadDatasetError::RowsNotSnapshotted {
            name: name.to_string(),
            path,
            latest: latest.map_or_else(|| "(none yet)".to_string(), |v| format!("v{v}")),
        }),
    }
}

/// What `plan` found: the suite changed only its dataset version.
#[derive(Debug, Clone)]
pub struct DatasetChangePlan {
    pub from: DatasetRef,
    pub to: DatasetRef,
    pub mode: OnDatasetChange,
}

/// Base's dataset reference when `suite` (head's) differs from base's only
/// in its dataset version; `prompt_or_model_changed` rules the mode out.
pub fn dataset_only(
    base: &dyn FileSource,
    suite: &LoadedEval,
    prompt_or_model_changed: bool,
) -> Option<DatasetChangePlan> {
    if prompt_or_model_changed {
        return None;
    }
    let text = base.read_string(&suite.path).ok()??;
    let base_suite: EvalSuite = SourceFile::new(&suite.path, text)
        .parse(FileKind::Eval)
        .ok()?;
    let from: DatasetRef = base_suite.dataset.parse().ok()?;
    if from == suite.dataset {
        return None;
    }
    // Everything else in the suite file the same (assertions, vars, gates).
    let same_otherwise = EvalSuite {
        dataset: suite.suite.dataset.clone(),
        description: suite.suite.description.clone(),
        ..base_suite
    } == suite.suite;
    same_otherwise.then(|| DatasetChangePlan {
        from,
        to: suite.dataset.clone(),
        mode: suite.suite.on_dataset_change,
    })
}

/// One failed assertion of a row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailedAssertion {
    pub name: String,
    pub kind: &'static str,
    /// Why it failed (`output does not contain "Canberra"`), or why it
    /// could not be evaluated.
    pub detail: String,
}

/// A row new (or changed) in the new version that the prompt fails.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NewRowFailure {
    pub key: String,
    /// `added` or `changed`.
    pub change: &'static str,
    /// The row's values of the columns the assertions read.
    pub expected: Map<String, Value>,
    /// The output of a failing repeat.
    pub output: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub passes: u32,
    pub repeats: u32,
    pub failed_assertions: Vec<FailedAssertion>,
}

/// The dataset part of a suite's report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DatasetChangeReport {
    pub from: String,
    pub to: String,
    pub on_dataset_change: OnDatasetChange,
    pub rows_added: usize,
    pub rows_changed: usize,
    pub rows_removed: usize,
    /// Rows with the same key and content in both versions: the paired
    /// regression test's rows.
    pub rows_common: usize,
    /// Added or changed rows the unchanged prompt fails, in dataset order.
    pub new_failures: Vec<NewRowFailure>,
    /// Added or changed rows it passes.
    pub new_passing: usize,
    /// Failed absolute gates reported instead of blocking.
    pub warnings: Vec<String>,
}

/// Splits the runs by row: keeps only the cases of rows common to both
/// versions for the paired comparison, and describes the rest.
pub struct Split {
    pub base_common: Vec<CaseResult>,
    pub head_common: Vec<CaseResult>,
    pub report: DatasetChangeReport,
}

/// Whether two rows hold the same values. A column without a value is
/// the same as an absent one: a column added to the dataset (e.g. the
/// provenance columns of `dataset grow`) leaves the old rows unchanged.
fn same_content(a: &crate::dataset::Row, b: &crate::dataset::Row) -> bool {
    let valued = |r: &crate::dataset::Row| -> BTreeMap<String, Value> {
        r.iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    valued(a) == valued(b)
}

/// Pairs base's run (old version) with head's (new version); see [`Split`].
pub fn split(
    plan: &DatasetChangePlan,
    base: &PreparedSuite,
    base_cases: &[CaseResult],
    head: &PreparedSuite,
    head_cases: &[CaseResult],
) -> Split {
    let base_keys: BTreeSet<&str> = base.row_keys().collect();
    let mut change: BTreeMap<&str, &'static str> = BTreeMap::new();
    let mut common: BTreeSet<&str> = BTreeSet::new();
    for key in head.row_keys() {
        match (base.row(key), head.row(key)) {
            (None, _) => {
                change.insert(key, "added");
            }
            (Some(b), Some(h)) if !same_content(b, h) => {
                change.insert(key, "changed");
            }
            _ => {
                common.insert(key);
            }
        }
    }
    let head_keys: BTreeSet<&str> = head.row_keys().collect();
    let keep = |cases: &[CaseResult]| -> Vec<CaseResult> {
        cases
            .iter()
            .filter(|c| common.contains(c.row_key.as_str()))
            .cloned()
            .collect()
    };
    let expected_columns = head.expected_columns();
    let mut new_failures = Vec::new();
    let mut new_passing = 0;
    for key in head.row_keys() {
        let Some(kind) = change.get(key) else {
            continue;
        };
        let cases: Vec<&CaseResult> = head_cases.iter().filter(|c| c.row_key == key).collect();
        let passes = cases.iter().filter(|c| c.pass).count() as u32;
        let Some(failing) = cases.iter().find(|c| !c.pass) else {
            new_passing += 1;
            continue;
        };
        let expected = head
            .row(key)
            .map(|row| {
                expected_columns
                    .iter()
                    .filter_map(|c| Some((c.clone(), row.get(c)?.clone())))
                    .collect()
            })
            .unwrap_or_default();
        new_failures.push(NewRowFailure {
            key: key.to_string(),
            change: kind,
            expected,
            output: failing.output.clone(),
            error: failing.error.clone(),
            passes,
            repeats: cases.len() as u32,
            failed_assertions: failing
                .assertions
                .iter()
                .filter(|a| !a.pass)
                .map(|a| FailedAssertion {
                    name: a.name.clone(),
                    kind: a.kind,
                    detail: a
                        .error
                        .clone()
                        .or_else(|| a.detail.clone())
                        .unwrap_or_else(|| format!("score {:.2}", a.score)),
                })
                .collect(),
        });
    }
    Split {
        base_common: keep(base_cases),
        head_common: keep(head_cases),
        report: DatasetChangeReport {
            from: plan.from.to_string(),
            to: plan.to.to_string(),
            on_dataset_change: plan.mode,
            rows_added: change.values().filter(|k| **k == "added").count(),
            rows_changed: change.values().filter(|k| **k == "changed").count(),
            rows_removed: base_keys.difference(&head_keys).count(),
            rows_common: common.len(),
            new_failures,
            new_passing,
            warnings: Vec::new(),
        },
    }
}

/// Applies the suite's `on_dataset_change` to the verdict: a failed
/// absolute gate becomes a warning (recorded in the report) in `warn`
/// mode; the regression gate, on the common rows, keeps blocking.
pub fn apply_mode(verdict: &mut SuiteVerdict, report: &mut DatasetChangeReport) {
    for g in verdict
        .gates
        .iter_mut()
        .filter(|g| !g.pass && g.gate != "regression")
    {
        let value = |v: f64| match g.gate.as_str() {
            "pass_rate" => format!("{:.1}%", v * 100.0),
            _ => format!("{v:.4}"),
        };
        let actual = g.head.map_or_else(|| "–".to_string(), value);
        let text = format!(
            "gate `{}` fails on {}: {actual} (limit {} {})",
            g.gate,
            report.to,
            g.op,
            value(g.threshold)
        );
        match report.on_dataset_change {
            OnDatasetChange::Warn => {
                g.warning = true;
                g.note = Some(
                    "fails on the grown dataset; a warning, not blocking (the change touches only the dataset; `on_dataset_change: block` makes it block)"
                        .to_string(),
                );
                report.warnings.push(text);
            }
            OnDatasetChange::Block => {
                g.note = Some(
                    "fails on the grown dataset; blocking (`on_dataset_change: block`)".to_string(),
                );
            }
        }
    }
    verdict.pass = verdict.gates.iter().all(|g| g.allows());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> crate::dataset::Row {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_new_column_without_a_value_leaves_a_row_unchanged() {
        let old = row(json!({"id": "fr", "expected": "Paris"}));
        let grown = row(json!({"id": "fr", "expected": "Paris", "reviewer": null}));
        assert!(same_content(&old, &grown));
        let edited = row(json!({"id": "fr", "expected": "Paris, France", "reviewer": null}));
        assert!(!same_content(&old, &edited));
        let valued = row(json!({"id": "fr", "expected": "Paris", "reviewer": "ann"}));
        assert!(!same_content(&old, &valued));
    }
}
