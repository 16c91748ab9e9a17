//! `promptgate canary` and serve's analyzer: rollbacks, promotions and steps as git commits.

mod analyze_and_apply;
mod serve_analyzer;
