//! The repository format and its versioned files: init, validate, render, log, datasets.

mod dataset_versions;
mod format;
