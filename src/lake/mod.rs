//! The log lake: every replica's request and feedback logs on S3-compatible
//! object storage, in the same Hive layout as a local log root, so that
//! promptgate's readers, DataFusion and outside engines (DuckDB, Spark,
//! Trino/Athena) read one prefix for the whole fleet.
//!
//! # Layout in the bucket
//!
//! ```text
//! s3://bucket/prefix/
//!   requests/date=YYYY-MM-DD/<replica>-part-<time>-<uuid>.parquet
//!   feedback/date=YYYY-MM-DD/<replica>-part-fb-journal-<time>-<uuid>.parquet
//! ```
//!
//! An object is the complete local file it was uploaded from (a single PUT:
//! readers never see a partial object). Its name is a function of the local
//! file's name, which carries a UUID, so uploading the same file twice (a
//! crash between the upload and the local delete) overwrites the object
//! with the same bytes: no duplicate rows.
//!
//! # Writing ([`upload`])
//!
//! `serve` still finishes every file locally ([`crate::logstore`]: temporary,
//! fsync, rename); the uploader then puts it and deletes the local copy only
//! after the store confirmed the PUT. See [`upload::Uploader`].
//!
//! # Reading ([`source`])
//!
//! A log source is a local log root (folder or file, as before) or an
//! `s3://bucket/prefix` URL. [`source::LocalView`] resolves a list of them to
//! local log roots, fetching a store's objects (partitions outside the asked
//! dates are not listed) into a temporary folder, so every reader of log roots
//! (`canary`, `drift`, `logs query`) reads the lake unchanged. With the `sql`
//! feature, [`sql`] runs DataFusion over the same sources directly.

pub mod source;
#[cfg(feature = "sql")]
pub mod sql;
pub mod store;
pub mod upload;

use std::path::PathBuf;

/// Folder (and key segment) of request partitions.
pub use crate::logstore::{FEEDBACK_DIR, REQUESTS_DIR};

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("{url}: {message}")]
    Url { url: String, message: String },
    #[error("{url}: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Logs(#[from] crate::logstore::LogStoreError),
    #[error("query: {0}")]
    Sql(String),
}

impl LakeError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LakeError {
        let path = path.into();
        move |source| LakeError::Io { path, source }
    }

    pub(crate) fn store(
        url: impl std::fmt::Display,
    ) -> impl FnOnce(object_store::Error) -> LakeError {
        let url = url.to_string();
        move |source| LakeError::Store { url, source }
    }
}

pub type Result<T, E = LakeError> = std::result::Result<T, E>;
