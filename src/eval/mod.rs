//! Offline evaluation: run a suite's prompt over a pinned dataset snapshot,
//! score assertions, summarise, and write the results to Parquet.

pub mod assertions;
pub mod call;
pub mod provider_caller;
pub mod results;
pub mod runner;
pub mod similarity;
