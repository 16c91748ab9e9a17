//! One integration-test binary: every module drives the real `promptgate`
//! binary or its HTTP API against real git repositories in temp dirs.

// Test helpers outside #[test] functions may panic and print too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod binding;
mod canary;
mod compare;
mod demo;
mod drift;
mod eval;
mod lake;
mod logs;
mod provider;
mod proxy;
mod repository;
mod review;
mod review_auto;
mod settings;
mod support;
mod ui;
