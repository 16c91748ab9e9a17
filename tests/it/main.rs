//! One integration-test binary: every module drives the real `promptgate`
//! binary or its HTTP API against real git repositories in temp dirs.

// Test helpers outside #[test] functions may panic too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod dataset;
mod foundation;
