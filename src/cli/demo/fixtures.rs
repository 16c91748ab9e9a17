//! What the demo writes into the scaffold: the worse prompt opened as a
//! change, the mock's rules for the capitals dataset, and the rollout that
//! puts the change live as a canary.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::json;

use super::{BRANCH, CANARY_WEIGHT, SUITE};

/// One row of the scaffold's capitals dataset.
#[derive(Debug, Clone, serde::Deserialize)]
pub(super) struct Capital {
    pub(super) country: String,
    pub(super) expected: String,
}

pub(super) fn read_dataset(root: &Path) -> anyhow::Result<Vec<Capital>> {
    let path = root.join(format!("datasets/{SUITE}/rows.jsonl"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let rows = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<Vec<Capital>, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    if rows.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(rows)
}

/// The countries of the dataset, the traffic's variables.
pub(super) fn countries(root: &Path) -> anyhow::Result<Vec<String>> {
    Ok(read_dataset(root)?.into_iter().map(|r| r.country).collect())
}

/// The worse prompt opened as a change: chattier instructions, so answers
/// grow long and hedge, which the suite's online assertions (`max_length`,
/// `not_contains "I'm sorry"`) catch.
pub(super) const WORSE_PROMPT: &str = "\
# yaml-language-server: $schema=../schema/prompt.schema.json
id: capital
description: Answers with the capital city of a country, with some background.
model: small
params:
  temperature: 0
  max_tokens: 160
inputs:
  country:
    type: string
    required: true
    description: Country name in English.
messages:
  - role: system
    content: You are a friendly geography tutor. Explain your answer with some background.
  - role: user
    content: Tell me about {{ country }}. Which city is its capital?
";

/// Mock rules answering both prompts on every dataset row: the scaffold's
/// prompt gets the city; the worse prompt gets a long, hedging answer for
/// three rows in four (still naming the city) and the city for the rest.
pub(super) fn mock_rules(rows: &[Capital]) -> String {
    let mut rules = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let country = regex::escape(&r.country);
        let worse = match i % 4 {
            0 => format!("{}.", r.expected),
            1 => format!(
                "I'm sorry, I can only give a short answer: the capital of {} is {}.",
                r.country, r.expected
            ),
            _ => format!(
                "{} is a country with a long history, and its capital, {}, is also its largest and best-known city.",
                r.country, r.expected
            ),
        };
        rules.push(json!({
            "pattern": format!("^Tell me about {country}\\. Which city is its capital\\?$"),
            "answer": worse,
        }));
        rules.push(json!({
            "pattern": format!("capital of {country}\\?"),
            "answer": r.expected,
        }));
    }
    let mut out = String::from(
        "# Written by `promptgate demo`: answers for the capitals dataset (a mock, not a real model).\n",
    );
    out.push_str(&serde_yaml_ng::to_string(&rules).unwrap_or_default());
    out
}

/// The rollout.yaml that puts the branch live: 30% of traffic, sticky per
/// user, and an analysis that decides after a few dozen requests.
pub(super) fn canary_rollout() -> String {
    format!(
        "\
# yaml-language-server: $schema=schema/rollout.schema.json
# Written by `promptgate demo`: the branch {BRANCH} goes live as a canary.
stable: refs/heads/main
canary:
  ref: refs/heads/{BRANCH}
  weight: {CANARY_WEIGHT}            # percent of traffic
  prompts: [capital]
  sticky: user          # same user -> same variant
analysis:
  # Small, so the demo decides in seconds (production: a few hundred).
  min_requests: 30
  interval_s: 1
  checks:
    - metric: online_pass_rate
      max_drop: 0.03
    - metric: error_rate
      max_increase: 0.01
  on_regression: rollback
  on_success: hold
"
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::PROMPT_FILE;
    use super::*;
    use crate::mock_llm;

    /// What the mock answers to `message` under `rules`.
    pub(in crate::cli::demo) fn answer(rules: &[mock_llm::Rule], message: &str) -> Option<String> {
        rules.iter().find_map(|r| {
            r.pattern.captures(message).map(|c| {
                let mut s = String::new();
                c.expand(&r.answer, &mut s);
                s
            })
        })
    }

    /// The rules answer the scaffold's prompt with the city and the worse
    /// prompt, for most rows, with answers the suite's online assertions
    /// fail; both rendered from the prompt files the demo uses.
    #[test]
    fn mock_rules_answer_both_prompts_of_the_scaffold_dataset() {
        let rows_text = crate::cli::init::SCAFFOLD
            .iter()
            .find(|(p, _)| *p == "datasets/capitals/rows.jsonl")
            .map(|(_, t)| *t)
            .unwrap();
        let rows: Vec<Capital> = rows_text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let rules = mock_llm::parse_rules(&mock_rules(&rows)).unwrap();
        let mut failing = 0;
        for r in &rows {
            let good = answer(&rules, &format!("What is the capital of {}?", r.country));
            assert_eq!(good.as_deref(), Some(r.expected.as_str()));
            let worse = answer(
                &rules,
                &format!("Tell me about {}. Which city is its capital?", r.country),
            )
            .unwrap();
            assert!(worse.contains(&r.expected));
            if worse.len() > 60 || worse.contains("I'm sorry") {
                failing += 1;
            }
        }
        assert!(failing * 2 > rows.len(), "{failing} of {}", rows.len());
    }

    #[test]
    fn canary_rollout_is_a_valid_rollout_naming_the_branch() {
        let text = canary_rollout();
        let r: crate::spec::rollout::Rollout =
            crate::spec::SourceFile::new(crate::project::ROLLOUT_FILE, &text)
                .parse(crate::spec::FileKind::Rollout)
                .unwrap();
        let c = r.canary.unwrap();
        assert_eq!(c.git_ref, format!("refs/heads/{BRANCH}"));
        assert_eq!(c.weight, f64::from(CANARY_WEIGHT));
        assert_eq!(r.analysis.min_requests, 30);
    }

    #[test]
    fn worse_prompt_asks_what_the_rules_expect() {
        let p: crate::spec::prompt::Prompt = serde_yaml_ng::from_str(WORSE_PROMPT).unwrap();
        assert_eq!(p.id, "capital");
        assert!(WORSE_PROMPT.contains("Tell me about {{ country }}. Which city is its capital?"));
        assert!(
            crate::cli::init::SCAFFOLD
                .iter()
                .any(|(p, t)| *p == PROMPT_FILE
                    && t.contains("What is the capital of {{ country }}?"))
        );
    }
}
