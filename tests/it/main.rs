//! The one integration-test binary; each module is a subject.

// Helpers outside #[test] functions may panic too: this is test code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod provider;
mod provider_fixtures;
mod provider_mock_bin;
mod provider_support;
mod provider_upstream;
mod provider_wire;
