//! Parquet files on disk: durable writes, reads, names, partition listing
//! (with superseded files removed) and the advisory locks of a log root.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use chrono::{DateTime, NaiveDate, Utc};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::{LogStoreError, Result};
use crate::durable;

pub(crate) const META_FORMAT: &str = "promptgate.format";
pub(crate) const META_KIND: &str = "promptgate.kind";
pub(crate) const META_FILE_NAME: &str = "promptgate.file_name";
pub(crate) const META_COMPACTED_FROM: &str = "promptgate.compacted_from";

pub(crate) const TMP_PREFIX: &str = durable::TMP_PREFIX;
pub(crate) const MERGED_PREFIX: &str = "merged-";

/// `part-<time>-<uuid>.parquet` (or another prefix): unique, time-sortable.
pub(crate) fn new_file_name(prefix: &str, now: DateTime<Utc>) -> String {
    format!(
        "{prefix}-{}-{}.parquet",
        now.format("%Y%m%dT%H%M%S%6fZ"),
        uuid::Uuid::new_v4().simple()
    )
}

/// `date=YYYY-MM-DD`.
pub(crate) fn partition_name(date: NaiveDate) -> String {
    format!("date={}", date.format("%Y-%m-%d"))
}

/// The date of a `date=YYYY-MM-DD` folder name.
pub(crate) fn partition_date(name: &str) -> Option<NaiveDate> {
    let d = name.strip_prefix("date=")?;
    NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()
}

/// A name readers consider: `*.parquet`, not hidden, not a temporary.
pub(crate) fn is_data_file_name(name: &str) -> bool {
    name.ends_with(".parquet") && !name.starts_with('.')
}

/// A final name we accept from a temporary's metadata when recovering it.
pub(crate) fn is_valid_final_name(name: &str) -> bool {
    is_data_file_name(name)
        && (name.starts_with("part-") || name.starts_with(MERGED_PREFIX))
        && !name.contains(['/', '\\'])
        && name != ".."
}

fn props(kv: Vec<KeyValue>) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by(format!("promptgate {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(kv))
        .build()
}

/// Standard metadata of a file named `name` of `kind`.
pub(crate) fn base_metadata(kind: &str, name: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::new(META_FORMAT.to_string(), "1".to_string()),
        KeyValue::new(META_KIND.to_string(), kind.to_string()),
        KeyValue::new(META_FILE_NAME.to_string(), name.to_string()),
    ]
}

/// A Parquet writer with promptgate's properties (zstd, metadata `kv`).
pub(crate) fn arrow_writer<W: std::io::Write + Send>(
    out: W,
    schema: SchemaRef,
    kv: Vec<KeyValue>,
) -> std::result::Result<ArrowWriter<W>, parquet::errors::ParquetError> {
    ArrowWriter::try_new(out, schema, Some(props(kv)))
}

/// Encodes batches as a complete Parquet file into `out`.
pub(crate) fn encode<W: std::io::Write + Send>(
    out: W,
    schema: SchemaRef,
    batches: &[RecordBatch],
    kv: Vec<KeyValue>,
) -> std::result::Result<(), parquet::errors::ParquetError> {
    let mut w = arrow_writer(out, schema, kv)?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(())
}

/// Writes a file at `path` durably with [`durable::write_with`] (which
/// retries a failed folder fsync after the rename, so rows are not written
/// twice because of it).
pub(crate) fn write_file(
    path: &Path,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<()> {
    durable::write_with(path, fill).map_err(LogStoreError::from)
}

/// Writes a Parquet file at `path` durably (temporary, close, fsync,
/// rename, folder fsync).
pub(crate) fn write_parquet(
    path: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
    kv: Vec<KeyValue>,
) -> Result<()> {
    write_file(path, |f| {
        encode(&mut *f, schema, batches, kv).map_err(std::io::Error::other)
    })
}

/// A Parquet file's key-value metadata.
pub(crate) fn read_metadata(path: &Path) -> Result<Vec<(String, String)>> {
    let f = File::open(path).map_err(LogStoreError::io(path))?;
    let b =
        ParquetRecordBatchReaderBuilder::try_new(f).map_err(|source| LogStoreError::Parquet {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(kv_pairs(b.metadata().file_metadata().key_value_metadata()))
}

fn kv_pairs(kv: Option<&Vec<KeyValue>>) -> Vec<(String, String)> {
    kv.map(|v| {
        v.iter()
            .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
            .collect()
    })
    .unwrap_or_default()
}

/// Every batch of a Parquet file, plus its key-value metadata.
/// Key-value metadata of a Parquet file.
pub(crate) type Metadata = Vec<(String, String)>;

pub(crate) fn read_parquet(path: &Path) -> Result<(Vec<RecordBatch>, Metadata)> {
    let perr = |source| LogStoreError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(LogStoreError::io(path))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(perr)?;
    let kv = kv_pairs(b.metadata().file_metadata().key_value_metadata());
    let reader = b.build().map_err(perr)?;
    let mut batches = Vec::new();
    for batch in reader {
        batches.push(batch.map_err(|e| LogStoreError::Parquet {
            path: path.to_path_buf(),
            source: e.into(),
        })?);
    }
    Ok((batches, kv))
}

pub(crate) fn meta_value<'a>(kv: &'a [(String, String)], key: &str) -> Option<&'a str> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The data files of one partition folder, split into live and superseded.
#[derive(Debug, Default)]
pub(crate) struct PartitionFiles {
    /// Files whose rows count, sorted by name.
    pub live: Vec<PathBuf>,
    /// Files present whose rows a merged file already holds.
    pub superseded: Vec<PathBuf>,
}

/// The entries of `dir`; none when it does not exist (no rows logged yet).
pub(crate) fn entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.map_err(LogStoreError::io(dir))).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(LogStoreError::io(dir)(e)),
    }
}

/// Lists `dir`'s data files and resolves compaction supersession.
pub(crate) fn partition_files(dir: &Path) -> Result<PartitionFiles> {
    let mut names = BTreeSet::new();
    for entry in entries(dir)? {
        let is_file = entry
            .file_type()
            .map_err(LogStoreError::io(entry.path()))?
            .is_file();
        if let (true, Some(name)) = (is_file, entry.file_name().to_str())
            && is_data_file_name(name)
        {
            names.insert(name.to_string());
        }
    }
    let mut superseded_names = BTreeSet::new();
    for name in names.iter().filter(|n| n.starts_with(MERGED_PREFIX)) {
        let path = dir.join(name);
        let kv = read_metadata(&path)?;
        if let Some(list) = meta_value(&kv, META_COMPACTED_FROM) {
            let inputs: Vec<String> =
                serde_json::from_str(list).map_err(|e| LogStoreError::Format {
                    path: path.clone(),
                    message: format!("bad `{META_COMPACTED_FROM}` metadata: {e}"),
                })?;
            superseded_names.extend(inputs.into_iter().filter(|i| i != name));
        }
    }
    let mut out = PartitionFiles::default();
    for name in names {
        if superseded_names.contains(&name) {
            out.superseded.push(dir.join(name));
        } else {
            out.live.push(dir.join(name));
        }
    }
    Ok(out)
}

/// The `date=...` partition folders under `root`, sorted.
pub(crate) fn partition_dirs(root: &Path) -> Result<Vec<(NaiveDate, PathBuf)>> {
    let mut out = Vec::new();
    for entry in entries(root)? {
        if !entry
            .file_type()
            .map_err(LogStoreError::io(entry.path()))?
            .is_dir()
        {
            continue;
        }
        if let Some(d) = entry.file_name().to_str().and_then(partition_date) {
            out.push((d, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// An exclusive advisory lock on `<root>/<name>`, released on drop.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Opens (creating) the lock file `<root>/<name>`.
    fn open(root: &Path, name: &str) -> Result<(PathBuf, File)> {
        std::fs::create_dir_all(root).map_err(LogStoreError::io(root))?;
        let path = root.join(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(LogStoreError::io(&path))?;
        Ok((path, file))
    }

    /// Takes the lock without waiting; `Ok(None)` when another holder has it.
    pub(crate) fn try_acquire(root: &Path, name: &str) -> Result<Option<DirLock>> {
        let (path, file) = Self::open(root, name)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(DirLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(LogStoreError::Io { path, source: e }),
        }
    }

    /// Takes the lock, waiting for the holder to release it.
    pub(crate) fn acquire(root: &Path, name: &str) -> Result<DirLock> {
        let (path, file) = Self::open(root, name)?;
        file.lock().map_err(LogStoreError::io(&path))?;
        Ok(DirLock { _file: file })
    }
}

pub(crate) const WRITER_LOCK: &str = ".writer.lock";
pub(crate) const JOURNAL_LOCK: &str = ".journal.lock";
pub(crate) const COMPACT_LOCK: &str = ".compact.lock";
/// Holds the replica name of a log root whose files the uploader moves to
/// `logging.store` ([`crate::lake::upload`]); its presence marks the root
/// as uploading.
pub(crate) const REPLICA_FILE: &str = ".replica";
