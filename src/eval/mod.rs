//! Offline evaluation: scoring model outputs against a suite's assertions.
pub mod assertions;
pub mod similarity;
