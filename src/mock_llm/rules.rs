//! The rules file of `mock-llm --rules`: a YAML list of `{pattern, answer}`,
//! a regex on the last user message and an answer template (`$1`,
//! `${name}`). Every pattern is compiled when the file is read, so a bad
//! one is reported with its index before the server starts.

use std::path::Path;

use regex::Regex;
use serde::Deserialize;

use super::MockError;

/// One rule: a regex on the last user message and an answer template.
#[derive(Debug, Clone)]
pub struct Rule {
    pub pattern: Regex,
    pub answer: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    pattern: String,
    answer: String,
}

/// Parses a rules file: a YAML list of `{pattern, answer}`.
pub fn parse_rules(yaml: &str) -> Result<Vec<Rule>, MockError> {
    let raw: Vec<RawRule> =
        serde_yaml_ng::from_str(yaml).map_err(|e| MockError::Parse(e.to_string()))?;
    raw.into_iter()
        .enumerate()
        .map(|(index, r)| {
            Ok(Rule {
                pattern: Regex::new(&r.pattern).map_err(|source| MockError::Pattern {
                    index,
                    pattern: r.pattern.clone(),
                    source,
                })?,
                answer: r.answer,
            })
        })
        .collect()
}

/// Reads and parses a rules file.
pub fn load_rules(path: &Path) -> Result<Vec<Rule>, MockError> {
    let text = std::fs::read_to_string(path).map_err(|source| MockError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_rules(&text).map_err(|e| match e {
        MockError::Parse(m) => MockError::Parse(format!("{}: {m}", path.display())),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pattern_names_the_rule() {
        let err = parse_rules("- pattern: '('\n  answer: x\n").unwrap_err();
        assert!(err.to_string().contains("rule 0"), "{err}");
    }
}
