//! Compaction: one file per partition, by the crash-safe protocol in the
//! module docs of [`crate::logstore`] (merged file lists its inputs; readers
//! skip listed inputs; inputs are deleted only after the merged file is
//! durable).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;

use super::feedback::{self, FeedbackCompactReport};
use super::files::{self, COMPACT_LOCK, DirLock, JOURNAL_LOCK, META_COMPACTED_FROM, WRITER_LOCK};
use super::recover::{RecoveryReport, recover_walk};
use super::row::{ColumnError, request_schema, rows_from_batch, rows_to_batch};
use super::{FEEDBACK_DIR, LogStoreError, REQUESTS_DIR, Result};
use crate::durable;

/// What `compact` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CompactReport {
    /// Recovery of leftover temporaries; `None` when a running writer owns
    /// the folder (it recovered at its own start).
    pub recovery: Option<RecoveryReport>,
    pub feedback: FeedbackCompactReport,
    /// Partitions that got a merged file.
    pub partitions_merged: usize,
    /// Input files deleted after their rows were merged.
    pub files_removed: usize,
    /// Rows in the merged files written.
    pub rows_merged: u64,
    /// The root uploads to `logging.store` (it holds `.replica`): its
    /// partitions were not merged (see [`compact`]).
    pub uploading: bool,
}

/// The two kinds of partitioned data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Requests,
    Feedback,
}

impl Kind {
    pub(crate) fn dir(self) -> &'static str {
        match self {
            Kind::Requests => REQUESTS_DIR,
            Kind::Feedback => FEEDBACK_DIR,
        }
    }

    fn schema(self) -> SchemaRef {
        match self {
            Kind::Requests => request_schema(),
            Kind::Feedback => feedback::feedback_schema(),
        }
    }

    /// Re-encodes a batch of any older schema version with the current one.
    fn normalize(self, batch: &RecordBatch) -> std::result::Result<RecordBatch, ColumnError> {
        let encoded = match self {
            Kind::Requests => rows_to_batch(&rows_from_batch(batch)?),
            Kind::Feedback => feedback::records_to_batch(&feedback::records_from_batch(batch)?),
        };
        Ok(encoded?)
    }
}

/// Where a simulated crash stops compaction (tests).
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// The merged file is left as a temporary, complete or cut in half.
    DuringMergedWrite { complete: bool },
    /// After the merged file is in place and `n` inputs were deleted.
    AfterRemoving(usize),
}

/// Compacts every partition under the log root `dir` and converts the
/// feedback journals. Also recovers leftover temporaries when no writer is
/// running. Fails with [`LogStoreError::Locked`] if another compaction runs.
///
/// A root that uploads to `logging.store` (it holds `.replica`) is not
/// merged: a file uploaded but not yet deleted (a crash between the PUT and
/// the delete) is re-uploaded under the same key, but merged into a file
/// of a new name its rows would reach the store twice. Its files are
/// transient anyway (each leaves once the store has it); recovery and the
/// journals' conversion (whose outputs are uploaded like any file) still run.
pub fn compact(dir: &Path) -> Result<CompactReport> {
    let Some(_compact) = DirLock::try_acquire(dir, COMPACT_LOCK)? else {
        return Err(LogStoreError::Locked {
            path: dir.join(COMPACT_LOCK),
            what: "another compaction is running",
        });
    };
    let mut report = CompactReport::default();
    if let Some(_writer) = DirLock::try_acquire(dir, WRITER_LOCK)? {
        report.recovery = Some(recover_walk(dir)?);
    }
    let journal_lock = DirLock::try_acquire(dir, JOURNAL_LOCK)?;
    report.feedback = feedback::process_journals(dir, journal_lock.is_some())?;
    drop(journal_lock);
    if dir.join(files::REPLICA_FILE).exists() {
        report.uploading = true;
        return Ok(report);
    }
    for kind in [Kind::Requests, Kind::Feedback] {
        for (_, folder) in files::partition_dirs(&dir.join(kind.dir()))? {
            if let Some((rows, removed)) = compact_partition(&folder, kind, None)? {
                report.partitions_merged += usize::from(rows.is_some());
                report.rows_merged += rows.unwrap_or(0);
                report.files_removed += removed;
            }
        }
    }
    Ok(report)
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Streams the rows of `inputs` into one Parquet file written to `out`.
fn merge_into<W: Write + Send>(
    out: W,
    kind: Kind,
    inputs: &[PathBuf],
    kv: Vec<KeyValue>,
) -> std::io::Result<u64> {
    let err = |p: &Path, e: &dyn std::fmt::Display| {
        std::io::Error::other(format!("{}: {e}", p.display()))
    };
    let mut w = files::arrow_writer(out, kind.schema(), kv).map_err(std::io::Error::other)?;
    let mut rows = 0u64;
    for p in inputs {
        let f = File::open(p)?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(f)
            .and_then(|b| b.build())
            .map_err(|e| err(p, &e))?;
        for batch in reader {
            let batch = batch.map_err(|e| err(p, &e))?;
            let batch = kind.normalize(&batch).map_err(|e| err(p, &e))?;
            rows += batch.num_rows() as u64;
            w.write(&batch).map_err(std::io::Error::other)?;
        }
    }
    w.close().map_err(std::io::Error::other)?;
    Ok(rows)
}

/// Compacts one partition folder. Returns `None` when there was nothing to
/// do, else (rows merged if a merged file was written, inputs removed).
pub(crate) fn compact_partition(
    folder: &Path,
    kind: Kind,
    crash: Option<CrashPoint>,
) -> Result<Option<(Option<u64>, usize)>> {
    let parts = files::partition_files(folder)?;
    if parts.live.len() <= 1 && parts.superseded.is_empty() {
        return Ok(None);
    }
    let mut to_remove = parts.superseded.clone();
    let mut merged_rows = None;
    if parts.live.len() > 1 {
        let name = files::new_file_name("merged", chrono::Utc::now());
        let listed: Vec<String> = parts
            .live
            .iter()
            .chain(parts.superseded.iter())
            .map(|p| name_of(p))
            .collect();
        let mut kv = files::base_metadata(kind.dir(), &name);
        kv.push(KeyValue::new(
            META_COMPACTED_FROM.to_string(),
            serde_json::to_string(&listed).unwrap_or_default(),
        ));
        if let Some(CrashPoint::DuringMergedWrite { complete }) = crash {
            let mut bytes = Vec::new();
            merge_into(&mut bytes, kind, &parts.live, kv).map_err(LogStoreError::io(folder))?;
            if !complete {
                bytes.truncate(bytes.len() / 2);
            }
            let tmp = folder.join(format!(
                ".tmp-crash-{}.parquet",
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::write(&tmp, bytes).map_err(LogStoreError::io(&tmp))?;
            return Ok(None);
        }
        let path = folder.join(&name);
        let mut rows = 0;
        files::write_file(&path, |f| {
            rows = merge_into(&mut *f, kind, &parts.live, kv)?;
            Ok(())
        })?;
        merged_rows = Some(rows);
        to_remove.extend(parts.live.iter().cloned());
    }
    let mut removed = 0;
    for p in &to_remove {
        if crash == Some(CrashPoint::AfterRemoving(removed)) {
            return Ok(Some((merged_rows, removed)));
        }
        match std::fs::remove_file(p) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(LogStoreError::Io {
                    path: p.clone(),
                    source: e,
                });
            }
        }
    }
    durable::sync_dir(folder).map_err(LogStoreError::io(folder))?;
    Ok(Some((merged_rows, removed)))
}
