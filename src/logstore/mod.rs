//! Request logs and user feedback on local disk: Parquet files any engine can
//! read (pyarrow, DuckDB, Spark, DataFusion), written so that no file a
//! reader can see is ever partial, and a crash loses at most one flush
//! interval of request rows and no acknowledged feedback.
//!
//! # On-disk format (version 1)
//!
//! ```text
//! <dir>/                                   logging.dir of promptgate.yaml, one per replica
//!   .writer.lock                           flock held by the running RequestLogger
//!   .journal.lock                          flock held by the open FeedbackJournal
//!   .compact.lock                          flock held during compaction and recovery
//!   requests/date=YYYY-MM-DD/              Hive-style partition by the row's UTC date
//!     part-<YYYYMMDDTHHMMSSffffffZ>-<uuid>.parquet     one writer flush
//!     merged-<YYYYMMDDTHHMMSSffffffZ>-<uuid>.parquet   output of compaction
//!     .tmp-<random>                         a file being written (never read)
//!   feedback/
//!     journal.jsonl                         live append-only journal
//!     journal-<YYYYMMDDTHHMMSSffffffZ>-<uuid>.jsonl    rotated, awaiting conversion
//!     date=YYYY-MM-DD/part-fb-<rotated journal stem>.parquet
//!     date=YYYY-MM-DD/merged-....parquet
//!   quarantine/                             unreadable leftovers, never read
//! ```
//!
//! ## Request rows
//!
//! Schema of `requests/` files (see [`request_schema`](row::request_schema)); every column is
//! typed, nothing is a catch-all JSON blob except the three JSON-text columns:
//!
//! | column | type | null |
//! |---|---|---|
//! | request_id | Utf8 | no |
//! | ts | Timestamp(Microsecond, "UTC") | no |
//! | prompt_id | Utf8 | yes (model pass-through) |
//! | prompt_version | Utf8 (git blob id) | yes |
//! | git_ref | Utf8 | yes |
//! | commit | Utf8 | no |
//! | variant | Utf8: `stable`, `canary`, `none` | no |
//! | model, upstream_model | Utf8 | no |
//! | variables | Utf8, JSON object text | no |
//! | messages | Utf8, JSON array text (rendered) | no |
//! | output | Utf8 | no |
//! | status | Utf8: `ok`, `error`, `client_closed`, `timeout`, ... | no |
//! | http_status | UInt16 | no |
//! | error | Utf8 | yes |
//! | latency_ms | Float64 | no |
//! | ttft_ms | Float64 | yes |
//! | input_tokens, output_tokens | UInt64 | no |
//! | cost | Float64 | no |
//! | user_hash | Utf8 | yes (a hash, never the raw user id) |
//! | stream | Boolean | no |
//! | online_pass | Boolean | yes |
//! | online_scores | Utf8, JSON object text `{assertion: score}` | no |
//! | replica | Utf8 | yes |
//!
//! Files are zstd-compressed. Every file carries Parquet key-value metadata
//! `promptgate.format = 1`, `promptgate.kind = requests|feedback` and
//! `promptgate.file_name = <its final name>`; merged files also carry
//! `promptgate.compacted_from = <JSON array of the file names it replaces>`.
//! Readers tolerate missing nullable columns (older files).
//!
//! ## Writing protocol
//!
//! A file is written with [`crate::durable`]: to `.tmp-<random>` in the
//! partition folder, the Parquet writer closed (footer written), fsynced,
//! renamed to its final name, the folder fsynced. Readers list only
//! `*.parquet` names that do not start with `.`, so they never see a file
//! without its footer.
//!
//! ## Recovery (at start-up of the writer, and by `logs compact`)
//!
//! Every `.tmp-*` file under `requests/` and `feedback/` is opened and
//! decoded completely. A complete one is renamed to the name recorded in its
//! `promptgate.file_name` metadata (or a fresh `part-recovered-...` name);
//! if that name already exists, or the file does not decode, it is moved to
//! `quarantine/`. Recovery runs only while holding `.writer.lock` (no live
//! writer owns those temporaries) and `.compact.lock`.
//!
//! ## Compaction (no duplicates, no losses, at any crash point)
//!
//! Per partition folder, under `.compact.lock`:
//! 1. list the `*.parquet` files; the *superseded* ones are those named in
//!    the `compacted_from` list of any `merged-*` file present; the others
//!    are *live*;
//! 2. write `merged-...parquet` with the rows of all live files, its
//!    `compacted_from` naming every file listed in step 1 (live and
//!    superseded), durably;
//! 3. delete those files, fsync the folder.
//!
//! Readers (and compaction) skip superseded files. A crash during step 2
//! leaves a temporary (recovered or quarantined: either the merged file
//! exists complete with its list, or it does not); a crash during step 3
//! leaves inputs that the merged file already supersedes. File names carry
//! a UUID, so a name is never reused for different content.
//!
//! ## Feedback
//!
//! `feedback/journal.jsonl` holds one JSON object per line, a
//! [`FeedbackRecord`] (`feedback_id`, `request_id`, `score`, `label`,
//! `correction`, `comment`, `user_hash`, `ts` in RFC 3339). An append is one
//! `write` of a whole line followed by fsync; the caller acknowledges after
//! it returns. A torn last line (crash mid-write) is terminated with `\n` at
//! open and skipped, with a warning, by readers.
//!
//! Conversion to Parquet: (1) rename `journal.jsonl` to
//! `journal-<ts>-<uuid>.jsonl` and fsync the folder (only the process holding
//! `.journal.lock` rotates); (2) for each rotated journal `R`, write its
//! records to `date=D/part-fb-<R stem>.parquet` durably; the name is a
//! function of `R`, so redoing the step after a crash overwrites the same
//! file with the same rows; (3) delete `R`. Readers read journals and
//! Parquet files together and keep the first record of each `feedback_id`,
//! so the window between (2) and (3) shows no duplicates either.

mod compact;
mod feedback;
mod files;
mod read;
mod recover;
mod redact;
mod row;
mod writer;

use std::path::PathBuf;

pub use compact::compact;
pub(crate) use feedback::join_feedback;
pub use feedback::{FeedbackJournal, FeedbackRecord, feedback_schema, read_feedback};
pub(crate) use feedback::{id_like, repair_tail};
pub(crate) use files::{
    COMPACT_LOCK, DirLock, REPLICA_FILE, entries, partition_date, partition_dirs, partition_files,
    partition_name,
};
pub use read::{RequestFilter, read_requests, read_requests_by_id, read_requests_by_id_in};
pub(crate) use read::{
    read_projected, read_selected_rows, request_files, stream_projected, stream_projected_since,
};
pub(crate) use redact::Redactor;
#[cfg(test)]
pub(crate) use row::rows_to_batch;
pub(crate) use row::{ColumnError, Columns, need};
pub use row::{
    HISTORY_TURNS, OUTPUT_CHARS, OUTPUT_WORDS, RequestLogRow, RequestStatus, Variant,
    history_turns, request_schema,
};
pub(crate) use writer::StallGuard;
pub use writer::{LoggerStats, RequestLogger};

/// Folder of request partitions under the log root.
pub const REQUESTS_DIR: &str = "requests";
/// Folder of the feedback journal and partitions under the log root.
pub const FEEDBACK_DIR: &str = "feedback";
/// Folder of unreadable leftovers under the log root.
pub const QUARANTINE_DIR: &str = "quarantine";

/// A feedback field that failed validation: `field` is the JSON field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("building a record batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Columns {
        path: PathBuf,
        #[source]
        source: ColumnError,
    },
    #[error("invalid feedback: {0}")]
    Invalid(#[from] FieldError),
    #[error("{}: held by another process ({what})", path.display())]
    Locked { path: PathBuf, what: &'static str },
    #[error("the request log writer has stopped")]
    WriterStopped,
    #[error("{rows} log row(s) could not be written: {message}")]
    Unflushed { rows: usize, message: String },
}

impl From<crate::durable::WriteError> for LogStoreError {
    fn from(e: crate::durable::WriteError) -> Self {
        LogStoreError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

impl LogStoreError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LogStoreError {
        let path = path.into();
        move |source| LogStoreError::Io { path, source }
    }
}

pub type Result<T, E = LogStoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
