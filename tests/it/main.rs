//! One integration-test binary: every module drives the real `promptgate`
//! binary or its HTTP API against real git repositories in temp dirs.

// Test helpers outside #[test] functions may panic too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod action;
mod canary;
mod canary_e2e;
mod check;
mod common;
mod dataset;
mod demo;
mod drift;
mod eval;
mod foundation;
mod logstore;
mod provider;
mod provider_fixtures;
mod provider_mock_bin;
mod provider_support;
mod provider_upstream;
mod provider_wire;
mod proxy;
mod proxy_clients;
mod proxy_crash;
mod proxy_reload;
mod proxy_support;
