//! The integration-test binary: one module per area, each driving the real
//! `promptgate` binary against real git repositories in temp folders.

// Test helpers outside #[test] functions may panic too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dataset;
