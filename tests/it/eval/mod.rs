//! Offline evaluation, the pull-request gate and the GitHub Action that runs it.

mod github_action;
mod pull_request_gate;
mod run_suite;
