//! promptgate: git-native LLMOps. Prompts and datasets are versioned files in
//! a git repository; pull requests are quality gates; a reloadable proxy
//! serves the refs `rollout.yaml` names and rolls a regressing canary back
//! with a git commit.
//!
//! Data flows one way: spec -> repo -> template/binding -> project ->
//! settings -> provider -> dataset/eval/logstore -> stats -> canary/report
//! -> proxy. The CLI sits on top; `mock_llm` (a test server) sits on
//! `provider`, and `durable` (file writes) is a leaf every layer may use.

// Module docs describe the internals too and link to crate-private items:
// read them with `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

// The crate's API is what the binary, the integration tests and the
// benches use: the CLI's entry point, the mock LLM server, and the parts
// of the log store, specs, repository access, providers, proxy, datasets
// and statistics that the tests drive directly or check results with.
// Everything else is crate-private, so the compiler reports dead code.
pub(crate) mod alert;
pub(crate) mod binding;
pub(crate) mod canary;
pub mod cli;
pub mod compare;
pub mod dataset;
pub mod drift;
pub(crate) mod durable;
pub(crate) mod eval;
pub mod lake;
pub mod logstore;
pub mod mock_llm;
pub(crate) mod project;
pub mod provider;
pub mod proxy;
pub mod repo;
pub(crate) mod report;
pub mod review;
pub(crate) mod settings;
pub mod spec;
pub mod stats;
pub(crate) mod template;
pub(crate) mod ui;
pub(crate) mod words;
