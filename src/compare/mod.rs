//! Cost vs quality: run several candidates (models x prompt versions x
//! param values) of one suite on the same pinned dataset rows, put them on
//! the (cost, quality) plane, find the Pareto frontier, and say which
//! cheaper candidate is *shown* to be as good as the best one.
//!
//! - [`candidates`]: the matrix (a suite's `compare:` and the command's
//!   flags) expanded into candidates, each prepared as an eval run;
//! - [`metrics`]: per-candidate figures (pass rate with its interval,
//!   cost per 1k calls, latency, tokens, errors) and per-row pass fractions;
//! - [`frontier`]: the non-dominated set on (cost, quality);
//! - [`decide`]: each candidate against the best on the same rows (the
//!   gate's non-inferiority test, Holm-corrected) and the recommendation.
//!
//! Every candidate runs through the eval runner and its response cache, so
//! a re-run calls the model only for what changed.

// `decide`, `frontier` and `metrics` are API for benches/compare_sim.rs.
pub(crate) mod candidates;
pub mod decide;
pub mod frontier;
pub mod metrics;
pub(crate) mod production;
pub(crate) mod run;

pub(crate) use run::CompareReport;
