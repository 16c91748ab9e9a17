//! promptgate: git-native LLMOps. Prompts and datasets are versioned files in
//! a git repository; pull requests are quality gates; a reloadable proxy
//! serves the refs `rollout.yaml` names and rolls a regressing canary back
//! with a git commit.
//!
//! Data flows one way: spec -> repo -> template/binding -> project -> settings -> provider ->
//! dataset/eval/logstore -> stats -> canary/report. The CLI sits on top;
//! `mock_llm` (a test server) sits on `provider`, and `durable` (file
//! writes) is a leaf every layer may use.

pub mod binding;
pub mod canary;
pub mod cli;
pub mod dataset;
pub mod drift;
pub mod durable;
pub mod eval;
pub mod logstore;
pub mod mock_llm;
pub mod project;
pub mod provider;
pub mod proxy;
pub mod repo;
pub mod report;
pub mod settings;
pub mod spec;
pub mod stats;
pub mod template;
