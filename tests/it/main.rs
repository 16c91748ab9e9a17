//! One integration-test binary: every module drives the real `promptgate`
//! binary or its HTTP API against real git repositories in temp dirs.

mod common;
mod foundation;
mod logstore;
