//! Offline evaluation: run a suite's prompt over a pinned dataset snapshot,
//! score assertions, summarise, and write the results to Parquet; compare
//! two commits' runs of a suite for the pull-request gate (`check`).

pub mod assertions;
pub mod call;
pub mod check;
pub mod compare;
pub mod dataset_change;
pub mod provider_caller;
pub mod results;
pub mod runner;
pub mod similarity;
