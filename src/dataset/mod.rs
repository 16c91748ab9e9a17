//! Datasets: validated rows, immutable Parquet snapshots pinned by content
//! hash in `dataset.lock`, reading a pinned version back from any
//! [`FileSource`](crate::repo::FileSource) (so an eval at an old commit reads exactly the rows it read
//! then), and row diffs between versions.
//!
//! # Files of one dataset
//!
//! ```text
//! datasets/<name>/dataset.yaml           key column and typed columns
//! datasets/<name>/rows.jsonl             source rows, one JSON object a line (diffable)
//! datasets/<name>/snapshots/v<N>.parquet immutable snapshots
//! datasets/<name>/dataset.lock           every snapshot ever taken, oldest first
//! ```
//!
//! # Rows
//!
//! Each non-blank line of `rows.jsonl` is a JSON object. Every key must be a
//! declared column; values must match the column type (`string`: JSON
//! string; `integer`: JSON integer fitting in i64, `1.0` is refused; `float`:
//! any JSON number, integers must be exactly representable; `boolean`: JSON
//! boolean; `json`: any JSON value). A missing key and `null` both mean
//! "no value", which only a `required: false` column accepts. The key column
//! must be required, of type `string` or `integer`, and unique. Validation
//! reports every bad line (file:line, column, reason) and writes nothing.
//! Rows are stored and returned in ascending key order (integers numerically,
//! strings by UTF-8 bytes), so the row order of `rows.jsonl` is not content.
//!
//! # Parquet snapshot (`snapshots/v<N>.parquet`)
//!
//! One Arrow column per dataset column, key column first, then the others in
//! name order: `string` -> Utf8, `integer` -> Int64, `float` -> Float64,
//! `boolean` -> Boolean, `json` -> Utf8 holding the value's canonical JSON
//! text (see below). Required columns are non-nullable, the others nullable.
//! Compression is zstd (level 3), one file per version. File key-value
//! metadata:
//!
//! | key | value |
//! |---|---|
//! | `promptgate.dataset` | dataset name |
//! | `promptgate.version` | N |
//! | `promptgate.content_sha256` | the content hash below |
//! | `promptgate.schema` | `{"format":1,"key":..,"columns":[{"name","type","required"}..]}` |
//!
//! No timestamp goes into the file, so the same content written by the same
//! writer gives the same bytes. A reader takes the column types from
//! `promptgate.schema` (Utf8 alone cannot tell `string` from `json`) and
//! checks the Arrow types against them.
//!
//! # `dataset.lock`
//!
//! YAML (schema `schema/dataset-lock.schema.json`): `versions:` a list of
//! `{version, rows, content_sha256, file_sha256, file, created}` where `file`
//! is relative to the dataset folder (`snapshots/v3.parquet`), `file_sha256`
//! is the sha256 of the file bytes as written, and `created` is an RFC 3339
//! UTC time. The lock is the commit point of a snapshot: the Parquet file is
//! written first, then the lock. Both are written durably (temporary file in
//! the same folder, fsync, rename, fsync of the folder). Before any new
//! snapshot every recorded file is re-hashed; a changed or missing file, or a
//! `v<N>.parquet` the lock does not record, is refused. Readers check
//! `file_sha256` before decoding and the content hash after.
//!
//! # Content hash (`content_sha256`), encoding version 1
//!
//! sha256 over this byte string (integers little-endian; `str` = u64 byte
//! length then UTF-8 bytes):
//!
//! ```text
//! "promptgate.dataset.v1\0"
//! u64 column count, then per column (snapshot order): str name, u8 type
//!     ('s' string, 'i' integer, 'f' float, 'b' boolean, 'j' json)
//! per row (key order), per column: u8 tag + payload
//!     0 null | 1 str (string) | 2 i64 | 3 f64 bits | 4 u8 0/1 | 5 str (canonical JSON)
//! u64 row count
//! ```
//!
//! Canonical JSON: no whitespace, object keys sorted by UTF-8 bytes, strings
//! escaped as serde_json does, numbers as serde_json prints them (integers
//! as integers, floats in shortest round-trip form). The hash therefore does
//! not depend on key order or whitespace in `rows.jsonl`, on row order, or on
//! the Parquet writer; it changes with any value, column name or type.
//! `required` and descriptions are not content.

mod canonical;
mod diff;
pub mod grow;
mod parquet_io;
mod rows;
mod store;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use serde_json::Value;

pub(crate) use canonical::canonical_json;
pub(crate) use diff::diff_versions;
pub(crate) use rows::{RowError, SchemaError};
pub(crate) use store::{IntegrityProblem, RowsStatus, SnapshotOutcome, status, verify_snapshots};
pub use store::{Snapshot, read_snapshot, snapshot};

use crate::repo::RepoError;
use crate::spec::Diagnostic;

/// One dataset row: column name -> value. Every column of the snapshot is
/// present; a missing value is `Value::Null`; `json` columns hold the parsed
/// JSON value; `float` columns hold a JSON float.
pub type Row = serde_json::Map<String, Value>;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("`{0}` is not a dataset name (lowercase letters, digits, '-' and '_')")]
    BadName(String),
    #[error("dataset `{name}` does not exist ({source_desc}: no {path})")]
    NotFound {
        name: String,
        path: String,
        source_desc: String,
    },
    #[error("{}", crate::project::render_all(.0))]
    Spec(Vec<Diagnostic>),
    #[error("{path}: {source}")]
    BadSchema { path: String, source: SchemaError },
    #[error("{path} is missing: nothing to snapshot")]
    NoRows { path: String },
    #[error("{} invalid row(s) in {path}, nothing written:\n{}", .errors.len(), render_row_errors(.path, .errors))]
    InvalidRows { path: String, errors: Vec<RowError> },
    #[error("dataset `{name}` has no version v{version} ({source_desc}; versions: {available})")]
    VersionNotFound {
        name: String,
        version: u32,
        available: String,
        source_desc: String,
    },
    #[error("snapshots are immutable, refusing to continue:\n{}", render_problems(.0))]
    Integrity(Vec<IntegrityProblem>),
    #[error("{path}: not a valid promptgate snapshot: {message}")]
    Corrupt { path: String, message: String },
    #[error("{path}: parquet: {source}")]
    Parquet {
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<crate::durable::WriteError> for DatasetError {
    fn from(e: crate::durable::WriteError) -> Self {
        DatasetError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

impl DatasetError {
    /// True when the error is about the data (bad rows, a changed snapshot)
    /// rather than about being unable to run.
    pub fn is_invalid_data(&self) -> bool {
        matches!(
            self,
            DatasetError::InvalidRows { .. }
                | DatasetError::Integrity(_)
                | DatasetError::Corrupt { .. }
        )
    }
}

fn render_row_errors(path: &str, errors: &[RowError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {}", e.display_with(path)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_problems(problems: &[IntegrityProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `datasets/<name>`, after checking the name cannot escape that folder.
pub(crate) fn dataset_dir(name: &str) -> Result<String, DatasetError> {
    if !crate::spec::prompt::is_valid_id(name) {
        return Err(DatasetError::BadName(name.to_string()));
    }
    Ok(format!("{}/{name}", crate::project::DATASETS_DIR))
}
