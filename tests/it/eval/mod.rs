//! Offline evaluation, the pull-request gate and the GitHub Action that runs it.

mod dataset_change;
mod github_action;
mod pull_request_gate;
pub(crate) mod run_suite;

/// (country, capital) of every row of the scaffold's capitals dataset.
pub(crate) fn scaffold_capitals() -> Vec<(String, String)> {
    include_str!("../../../template-repo/datasets/capitals/rows.jsonl")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["country"].as_str().unwrap().to_string(),
                v["expected"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
