//! Reading request logs from one or several log roots (one per replica),
//! partition folders or single files.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch, StringArray};
use chrono::{DateTime, Utc};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection};

use super::files::{self, is_data_file_name, partition_date};
use super::row::{ColumnError, RequestLogRow, rows_from_batch};
use super::{FEEDBACK_DIR, LogStoreError, QUARANTINE_DIR, REQUESTS_DIR, Result};

/// Which rows to read. Bounds are inclusive `since`, exclusive `until`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestFilter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only rows of this prompt id.
    pub prompt_id: Option<String>,
}

impl RequestFilter {
    pub fn matches(&self, row: &RequestLogRow) -> bool {
        self.admits(row.ts, row.prompt_id.as_deref())
    }

    /// [`Self::matches`] on the two fields it reads (for readers that do
    /// not decode whole rows).
    pub(crate) fn admits(&self, ts: DateTime<Utc>, prompt_id: Option<&str>) -> bool {
        self.since.is_none_or(|s| ts >= s)
            && self.until.is_none_or(|u| ts < u)
            && self
                .prompt_id
                .as_deref()
                .is_none_or(|p| prompt_id == Some(p))
    }

    fn may_hold(&self, date: chrono::NaiveDate) -> bool {
        self.since.is_none_or(|s| date >= s.date_naive())
            && self.until.is_none_or(|u| date <= u.date_naive())
    }
}

/// The live request log files under `sources`: each a log root (its
/// `requests/` folder is read), any folder below it, or a single `.parquet`
/// file. Temporaries, hidden files, non-Parquet files, `quarantine/` and
/// files superseded by a merged file are skipped; partitions outside the
/// filter's dates are not opened.
pub fn request_files(sources: &[impl AsRef<Path>], filter: &RequestFilter) -> Result<Vec<PathBuf>> {
    let mut out = BTreeSet::new();
    for src in sources {
        let src = src.as_ref();
        let meta = std::fs::metadata(src).map_err(LogStoreError::io(src))?;
        if meta.is_file() {
            let name = src.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if is_data_file_name(name) {
                out.insert(canonical(src));
            }
            continue;
        }
        let root = if src.join(REQUESTS_DIR).is_dir() {
            src.join(REQUESTS_DIR)
        } else {
            src.to_path_buf()
        };
        walk(&root, filter, &mut out)?;
    }
    Ok(out.into_iter().collect())
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn walk(folder: &Path, filter: &RequestFilter, out: &mut BTreeSet<PathBuf>) -> Result<()> {
    let name = folder
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if let Some(d) = partition_date(name)
        && !filter.may_hold(d)
    {
        return Ok(());
    }
    let parts = files::partition_files(folder)?;
    // Live files are regular files (never links), so the folder is
    // resolved once instead of every file's path, component by component.
    let resolved = canonical(folder);
    out.extend(
        parts
            .live
            .iter()
            .filter_map(|p| p.file_name())
            .map(|name| resolved.join(name)),
    );
    let entries = std::fs::read_dir(folder).map_err(LogStoreError::io(folder))?;
    let mut subdirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(LogStoreError::io(folder))?;
        let n = entry.file_name();
        let n = n.to_string_lossy();
        if n.starts_with('.') || n == QUARANTINE_DIR || n == FEEDBACK_DIR {
            continue;
        }
        if entry
            .file_type()
            .map_err(LogStoreError::io(entry.path()))?
            .is_dir()
        {
            subdirs.push(entry.path());
        }
    }
    subdirs.sort();
    for d in subdirs {
        walk(&d, filter, out)?;
    }
    Ok(())
}

/// The rows under `sources` that match `filter`, sorted by time then id.
pub fn read_requests(
    sources: &[impl AsRef<Path>],
    filter: &RequestFilter,
) -> Result<Vec<RequestLogRow>> {
    let mut rows = Vec::new();
    for f in request_files(sources, filter)? {
        for batch in files::read_parquet(&f)?.0 {
            let decoded = rows_from_batch(&batch).map_err(|source| LogStoreError::Columns {
                path: f.clone(),
                source,
            })?;
            rows.extend(decoded.into_iter().filter(|r| filter.matches(r)));
        }
    }
    rows.sort_by(|a, b| {
        a.ts.cmp(&b.ts)
            .then_with(|| a.request_id.cmp(&b.request_id))
    });
    Ok(rows)
}

/// The rows under `sources` whose request id is in `ids`, sorted by time
/// then id. Only the `request_id` column of each file is read to find them;
/// full rows are decoded for the matches alone (a handful of calls out of
/// days of logs, for the review queue).
pub fn read_requests_by_id(
    sources: &[impl AsRef<Path>],
    ids: &HashSet<&str>,
) -> Result<Vec<RequestLogRow>> {
    read_requests_by_id_in(sources, &RequestFilter::default(), ids)
}

/// [`read_requests_by_id`] over the files `filter`'s dates may hold only
/// (its time bounds pick date partitions; rows are not filtered further).
pub fn read_requests_by_id_in(
    sources: &[impl AsRef<Path>],
    filter: &RequestFilter,
    ids: &HashSet<&str>,
) -> Result<Vec<RequestLogRow>> {
    let mut rows = Vec::new();
    if ids.is_empty() {
        return Ok(rows);
    }
    for f in request_files(sources, filter)? {
        let mut at = Vec::new();
        let mut offset = 0;
        for batch in read_projected(&f, &["request_id"])? {
            let columns = |source| LogStoreError::Columns {
                path: f.clone(),
                source,
            };
            let column = batch
                .column_by_name("request_id")
                .ok_or(columns(ColumnError::Missing("request_id")))?
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or(columns(ColumnError::WrongType {
                    name: "request_id",
                    expected: "a string",
                }))?;
            at.extend(
                column
                    .iter()
                    .enumerate()
                    .filter(|(_, id)| id.is_some_and(|id| ids.contains(id)))
                    .map(|(i, _)| offset + i),
            );
            offset += batch.num_rows();
        }
        if !at.is_empty() {
            rows.extend(read_selected_rows(&f, &at)?);
        }
    }
    rows.sort_by(|a, b| {
        a.ts.cmp(&b.ts)
            .then_with(|| a.request_id.cmp(&b.request_id))
    });
    Ok(rows)
}

/// The named columns of every row of one request log file (column
/// projection: the other columns are not decoded), one batch per row group
/// read. Columns the file does not have are left out of the batches.
pub(crate) fn read_projected(path: &Path, columns: &[&str]) -> Result<Vec<RecordBatch>> {
    stream_projected(path, columns)?.collect()
}

/// [`read_projected`] one batch at a time: a caller that folds the batches
/// into a summary holds one batch in memory, not the file.
pub(crate) fn stream_projected(
    path: &Path,
    columns: &[&str],
) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
    stream_projected_since(path, columns, None)
}

/// [`stream_projected`] without the row groups whose `ts` statistics show
/// every row before `since` (their pages are not read).
pub(crate) fn stream_projected_since(
    path: &Path,
    columns: &[&str],
    since: Option<DateTime<Utc>>,
) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
    let mut builder = open_reader(path)?;
    if let Some(since) = since {
        let groups = groups_reaching(builder.metadata(), since.timestamp_micros());
        builder = builder.with_row_groups(groups);
    }
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let reader =
        builder
            .with_projection(mask)
            .build()
            .map_err(|source| LogStoreError::Parquet {
                path: path.to_path_buf(),
                source,
            })?;
    let path = path.to_path_buf();
    Ok(reader.map(move |batch| {
        batch.map_err(|e| LogStoreError::Parquet {
            path: path.clone(),
            source: e.into(),
        })
    }))
}

/// The full rows at `rows` (indices into the file, ascending) of one request
/// log file, read with a row selection so the other rows are skipped.
pub(crate) fn read_selected_rows(path: &Path, rows: &[usize]) -> Result<Vec<RequestLogRow>> {
    let builder = open_reader(path)?;
    let ranges = rows.iter().map(|&r| r..r + 1);
    let selection = RowSelection::from_consecutive_ranges(
        ranges,
        builder.metadata().file_metadata().num_rows().max(0) as usize,
    );
    let mut out = Vec::with_capacity(rows.len());
    for batch in collect(path, builder.with_row_selection(selection))? {
        out.extend(
            rows_from_batch(&batch).map_err(|source| LogStoreError::Columns {
                path: path.to_path_buf(),
                source,
            })?,
        );
    }
    Ok(out)
}

/// The row groups whose `ts` maximum is `since_micros` or later (all, for
/// a file without `ts` statistics).
fn groups_reaching(
    meta: &parquet::file::metadata::ParquetMetaData,
    since_micros: i64,
) -> Vec<usize> {
    let ts = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string() == "ts");
    (0..meta.num_row_groups())
        .filter(|&g| {
            let max = ts.and_then(|i| match meta.row_group(g).column(i).statistics() {
                Some(parquet::file::statistics::Statistics::Int64(s)) => s.max_opt().copied(),
                _ => None,
            });
            max.is_none_or(|m| m >= since_micros)
        })
        .collect()
}

fn open_reader(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<std::fs::File>> {
    let f = std::fs::File::open(path).map_err(LogStoreError::io(path))?;
    ParquetRecordBatchReaderBuilder::try_new(f).map_err(|source| LogStoreError::Parquet {
        path: path.to_path_buf(),
        source,
    })
}

fn collect(
    path: &Path,
    builder: ParquetRecordBatchReaderBuilder<std::fs::File>,
) -> Result<Vec<RecordBatch>> {
    let perr = |source| LogStoreError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let reader = builder.build().map_err(perr)?;
    let mut out = Vec::new();
    for batch in reader {
        out.push(batch.map_err(|e| LogStoreError::Parquet {
            path: path.to_path_buf(),
            source: e.into(),
        })?);
    }
    Ok(out)
}
