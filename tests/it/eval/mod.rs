//! Offline evaluation, the pull-request gate and the GitHub Action that runs it.

mod dataset_change;
mod github_action;
mod pull_request_gate;
pub(crate) mod run_suite;
