//! The one integration-test binary; each module is a subject.

mod provider;
mod provider_fixtures;
mod provider_mock_bin;
mod provider_support;
mod provider_upstream;
mod provider_wire;
