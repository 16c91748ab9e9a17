//! The candidates of a comparison: every combination of a model, a prompt
//! version and one value of each param, from a suite's `compare:` matrix
//! with the command's flags replacing it dimension by dimension.
//!
//! A dimension left empty keeps the suite's own choice: the prompt's model,
//! the suite's prompt as of the suite's commit, the prompt's params. Every
//! candidate is prepared on the suite's rows, variable mapping and
//! assertions, so all of them see the same pinned dataset version.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::spec::eval::CompareMatrix;

/// Where a candidate's prompt comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum PromptSource {
    /// The suite's prompt, read from the same commit as the suite.
    Suite,
    /// The suite's prompt as of this git ref.
    Ref(String),
    /// This prompt file, read from the same commit as the suite.
    File(String),
}

impl PromptSource {
    pub fn describe(&self) -> String {
        match self {
            PromptSource::Suite => "suite".into(),
            PromptSource::Ref(r) => r.clone(),
            PromptSource::File(f) => f.clone(),
        }
    }
}

/// One candidate before it is prepared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateSpec {
    /// Short name shown on charts and in tables: the values of the
    /// dimensions that vary (the model alone when nothing does).
    pub label: String,
    /// Key under `models`; None: the prompt's own model.
    pub model: Option<String>,
    pub prompt: PromptSource,
    /// Param overrides, applied over the prompt's params.
    pub params: BTreeMap<String, serde_json::Value>,
}

/// Expands a matrix into its candidates, in a stable order (models, then
/// prompts, then params by name and listed value).
pub fn expand(matrix: &CompareMatrix) -> Vec<CandidateSpec> {
    let models: Vec<Option<String>> = if matrix.models.is_empty() {
        vec![None]
    } else {
        matrix.models.iter().cloned().map(Some).collect()
    };
    let mut prompts: Vec<PromptSource> = matrix
        .prompt_refs
        .iter()
        .cloned()
        .map(PromptSource::Ref)
        .chain(matrix.prompt_files.iter().cloned().map(PromptSource::File))
        .collect();
    if prompts.is_empty() {
        prompts.push(PromptSource::Suite);
    }
    let mut param_sets: Vec<BTreeMap<String, serde_json::Value>> = vec![BTreeMap::new()];
    for (name, values) in &matrix.params {
        param_sets = param_sets
            .iter()
            .flat_map(|set| {
                values.iter().map(move |v| {
                    let mut s = set.clone();
                    s.insert(name.clone(), v.clone());
                    s
                })
            })
            .collect();
    }
    let varying_params: Vec<&String> = matrix
        .params
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(k, _)| k)
        .collect();
    let mut out = Vec::new();
    for model in &models {
        for prompt in &prompts {
            for params in &param_sets {
                let mut parts = Vec::new();
                if models.len() > 1 || (prompts.len() == 1 && varying_params.is_empty()) {
                    parts.push(model.clone().unwrap_or_else(|| "default".into()));
                }
                if prompts.len() > 1 {
                    parts.push(prompt.describe());
                }
                for k in &varying_params {
                    if let Some(v) = params.get(*k) {
                        parts.push(format!("{k}={}", value_text(v)));
                    }
                }
                out.push(CandidateSpec {
                    label: parts.join(" · "),
                    model: model.clone(),
                    prompt: prompt.clone(),
                    params: params.clone(),
                });
            }
        }
    }
    out
}

/// A param value as typed on the command line: strings without quotes.
pub fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses `--param name=v1,v2`: each value as JSON when it is JSON (`64`,
/// `0.7`, `true`), else as a string.
pub fn parse_param(arg: &str) -> Result<(String, Vec<serde_json::Value>), String> {
    let (name, values) = arg
        .split_once('=')
        .ok_or_else(|| format!("--param {arg}: expected NAME=VALUE[,VALUE...]"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("--param {arg}: the name is empty"));
    }
    let values: Vec<serde_json::Value> = values
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into())))
        .collect();
    if values.is_empty() {
        return Err(format!("--param {arg}: no value"));
    }
    Ok((name.to_string(), values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_is_the_product_and_labels_name_what_varies() {
        let m = CompareMatrix {
            models: vec!["small".into(), "large".into()],
            params: BTreeMap::from([("max_tokens".into(), vec![64.into(), 256.into()])]),
            ..Default::default()
        };
        let c = expand(&m);
        let labels: Vec<&str> = c.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "small · max_tokens=64",
                "small · max_tokens=256",
                "large · max_tokens=64",
                "large · max_tokens=256"
            ]
        );
        assert!(c.iter().all(|c| c.prompt == PromptSource::Suite));
        assert_eq!(c[3].params["max_tokens"], 256);
    }

    #[test]
    fn an_empty_matrix_is_the_suite_itself() {
        let c = expand(&CompareMatrix::default());
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].model, None);
        assert_eq!(c[0].label, "default");
    }

    #[test]
    fn params_parse_as_json_or_text() {
        let (k, v) = parse_param("max_tokens=64,256").unwrap();
        assert_eq!(k, "max_tokens");
        assert_eq!(v, vec![serde_json::json!(64), serde_json::json!(256)]);
        let (_, v) = parse_param("stop=END, 0.5").unwrap();
        assert_eq!(v, vec![serde_json::json!("END"), serde_json::json!(0.5)]);
        assert!(
            parse_param("max_tokens")
                .unwrap_err()
                .contains("NAME=VALUE")
        );
        assert!(parse_param("max_tokens=").unwrap_err().contains("no value"));
    }
}
