//! Snapshots on disk: taking one (validate, verify the old ones, write
//! durably, record in the lock), reading a pinned one from any
//! [`FileSource`], and the status of a dataset.

use std::path::Path;

use serde::Serialize;

use super::canonical::{ContentHasher, sha256_hex};
use super::parquet_io::{self, META_CONTENT, META_DATASET, META_VERSION, SnapshotMeta};
use super::rows::{Schema, cells, json_texts, parse_rows};
use super::{DatasetError, Row, dataset_dir};
use crate::durable;
use crate::repo::{FileSource, WorkTree};
use crate::spec::dataset::{DatasetLock, DatasetRef, DatasetSpec, LockedVersion};
use crate::spec::{FileKind, SourceFile};

pub const SPEC_FILE: &str = "dataset.yaml";
pub const LOCK_FILE: &str = "dataset.lock";
pub const ROWS_FILE: &str = "rows.jsonl";
pub const SNAPSHOTS_DIR: &str = "snapshots";
const LOCK_HEADER: &str = "# Written by `promptgate dataset snapshot`; do not edit.\n\
# Snapshot files are immutable: a changed file is detected and refused.\n\
# yaml-language-server: $schema=../../schema/dataset-lock.schema.json\n";

/// The content hash of normalised rows in key order (see the module doc).
pub fn content_hash(schema: &Schema, rows: &[Row]) -> String {
    let mut hasher = ContentHasher::new(&schema.columns);
    for row in rows {
        let json = json_texts(schema, row);
        hasher.row(cells(schema, row, &json));
    }
    hasher.finish()
}

/// Reads and checks `dataset.yaml`.
pub fn load_schema(
    source: &dyn FileSource,
    name: &str,
) -> Result<(DatasetSpec, Schema), DatasetError> {
    let dir = dataset_dir(name)?;
    let path = format!("{dir}/{SPEC_FILE}");
    let Some(text) = source.read_string(&path)? else {
        return Err(DatasetError::NotFound {
            name: name.to_string(),
            path,
            source_desc: source.describe(),
        });
    };
    let spec: DatasetSpec = SourceFile::new(&path, text)
        .parse(FileKind::Dataset)
        .map_err(DatasetError::Spec)?;
    let schema =
        Schema::from_spec(&spec).map_err(|source| DatasetError::BadSchema { path, source })?;
    Ok((spec, schema))
}

/// Reads `dataset.lock`; an absent lock has no versions.
pub fn load_lock(source: &dyn FileSource, name: &str) -> Result<DatasetLock, DatasetError> {
    let path = format!("{}/{LOCK_FILE}", dataset_dir(name)?);
    match source.read_string(&path)? {
        None => Ok(DatasetLock::default()),
        Some(text) => SourceFile::new(&path, text)
            .parse(FileKind::DatasetLock)
            .map_err(DatasetError::Spec),
    }
}

/// Something wrong with the recorded snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum IntegrityProblem {
    /// The file's bytes are not the ones recorded.
    Changed {
        file: String,
        version: u32,
        expected_sha256: String,
        actual_sha256: String,
    },
    Missing {
        file: String,
        version: u32,
    },
    /// A `v<N>.parquet` the lock does not record.
    Unrecorded {
        file: String,
    },
}

impl std::fmt::Display for IntegrityProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntegrityProblem::Changed {
                file,
                version,
                expected_sha256,
                actual_sha256,
            } => write!(
                f,
                "{file} (v{version}) was changed after it was recorded: sha256 {} in dataset.lock, {} on disk; restore it (e.g. `git checkout -- {file}`) and make a new version instead",
                short(expected_sha256),
                short(actual_sha256)
            ),
            IntegrityProblem::Missing { file, version } => write!(
                f,
                "{file} (v{version}) is recorded in dataset.lock but missing; restore it (e.g. `git checkout -- {file}`)"
            ),
            IntegrityProblem::Unrecorded { file } => write!(
                f,
                "{file} is not recorded in dataset.lock (left by an interrupted snapshot, or copied in?); remove it and re-run"
            ),
        }
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Re-hashes every recorded snapshot file and looks for unrecorded ones.
/// Empty means every snapshot is intact.
pub fn verify_snapshots(
    source: &dyn FileSource,
    name: &str,
    lock: &DatasetLock,
) -> Result<Vec<IntegrityProblem>, DatasetError> {
    let dir = dataset_dir(name)?;
    let mut problems = Vec::new();
    for v in &lock.versions {
        if let Some(p) = check_file(source, &dir, v)? {
            problems.push(p);
        }
    }
    for entry in source.list(&format!("{dir}/{SNAPSHOTS_DIR}"))? {
        let rel = format!("{SNAPSHOTS_DIR}/{entry}");
        if is_snapshot_name(&entry) && !lock.versions.iter().any(|v| v.file == rel) {
            problems.push(IntegrityProblem::Unrecorded {
                file: format!("{dir}/{rel}"),
            });
        }
    }
    Ok(problems)
}

fn check_file(
    source: &dyn FileSource,
    dir: &str,
    v: &LockedVersion,
) -> Result<Option<IntegrityProblem>, DatasetError> {
    let file = format!("{dir}/{}", v.file);
    Ok(match source.read(&file)? {
        None => Some(IntegrityProblem::Missing {
            file,
            version: v.version,
        }),
        Some(bytes) => {
            let actual = sha256_hex(&bytes);
            (actual != v.file_sha256).then(|| IntegrityProblem::Changed {
                file,
                version: v.version,
                expected_sha256: v.file_sha256.clone(),
                actual_sha256: actual,
            })
        }
    })
}

fn is_snapshot_name(name: &str) -> bool {
    name.strip_prefix('v')
        .and_then(|r| r.strip_suffix(".parquet"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// What `snapshot` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SnapshotOutcome {
    /// A new version was written and recorded.
    Created(LockedVersion),
    /// The rows equal the latest version's content; nothing was written.
    Unchanged(LockedVersion),
}

/// `promptgate dataset snapshot`: validates `rows.jsonl` of the working tree
/// at `root`, verifies the existing snapshots, and writes the next version
/// unless the content equals the latest one.
pub fn snapshot(root: &Path, name: &str) -> Result<SnapshotOutcome, DatasetError> {
    let dir = dataset_dir(name)?;
    let tree = WorkTree::new(root);
    let (_, schema) = load_schema(&tree, name)?;
    let lock = load_lock(&tree, name)?;
    let abs_dir = root.join(&dir);
    let snap_dir = abs_dir.join(SNAPSHOTS_DIR);
    remove_leftovers(&abs_dir)?;
    remove_leftovers(&snap_dir)?;

    let problems = verify_snapshots(&tree, name, &lock)?;
    if !problems.is_empty() {
        return Err(DatasetError::Integrity(problems));
    }

    let rows_path = format!("{dir}/{ROWS_FILE}");
    let text = tree
        .read_string(&rows_path)?
        .ok_or_else(|| DatasetError::NoRows {
            path: rows_path.clone(),
        })?;
    let rows = parse_rows(&schema, &text).map_err(|errors| DatasetError::InvalidRows {
        path: rows_path.clone(),
        errors,
    })?;
    let hash = content_hash(&schema, &rows);
    if let Some(latest) = lock.latest()
        && latest.content_sha256 == hash
    {
        return Ok(SnapshotOutcome::Unchanged(latest.clone()));
    }

    let next = next_version(&schema, &rows, &lock, name, hash)?;
    let version = next.locked.version;
    std::fs::create_dir_all(&snap_dir).map_err(|source| DatasetError::Io {
        path: snap_dir.clone(),
        source,
    })?;
    // The snapshot first, never over an existing file; the lock commits it.
    durable::write_new(&snap_dir.join(format!("v{version}.parquet")), &next.bytes)?;
    durable::write(&abs_dir.join(LOCK_FILE), next.lock_text.as_bytes())?;
    Ok(SnapshotOutcome::Created(next.locked))
}

/// The next snapshot of a dataset, encoded but not written: its file bytes,
/// its lock entry, and the new `dataset.lock` text.
pub(crate) struct NextVersion {
    pub bytes: Vec<u8>,
    pub locked: LockedVersion,
    pub lock_text: String,
}

/// Encodes `rows` (normalised, in key order, with content hash `hash`) as
/// the version after the latest one of `lock`. Shared by `dataset snapshot`
/// (written to the working tree) and `dataset grow` (committed to a branch).
pub(crate) fn next_version(
    schema: &Schema,
    rows: &[Row],
    lock: &DatasetLock,
    name: &str,
    hash: String,
) -> Result<NextVersion, DatasetError> {
    let dir = dataset_dir(name)?;
    let version = lock.latest().map_or(1, |v| v.version + 1);
    let file = format!("{SNAPSHOTS_DIR}/v{version}.parquet");
    let bytes = parquet_io::write(
        schema,
        rows,
        &SnapshotMeta {
            name: name.to_string(),
            version,
            content_sha256: hash.clone(),
        },
        &format!("{dir}/{file}"),
    )?;
    let locked = LockedVersion {
        version,
        rows: rows.len() as u64,
        content_sha256: hash,
        file_sha256: sha256_hex(&bytes),
        file,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let mut new_lock = lock.clone();
    new_lock.versions.push(locked.clone());
    let yaml = serde_yaml_ng::to_string(&new_lock).map_err(|e| DatasetError::Corrupt {
        path: format!("{dir}/{LOCK_FILE}"),
        message: e.to_string(),
    })?;
    Ok(NextVersion {
        bytes,
        locked,
        lock_text: format!("{LOCK_HEADER}{yaml}"),
    })
}

fn remove_leftovers(dir: &Path) -> Result<(), DatasetError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(DatasetError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(durable::TMP_PREFIX)
        {
            let path = entry.path();
            tracing::warn!(path = %path.display(), "removing the leftover of an interrupted write");
            std::fs::remove_file(&path).map_err(|source| DatasetError::Io { path, source })?;
        }
    }
    Ok(())
}

/// The rows of one pinned version.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub name: String,
    /// The lock entry the rows were checked against.
    pub locked: LockedVersion,
    /// The snapshot's own columns (not today's `dataset.yaml`).
    pub schema: Schema,
    /// Rows in key order.
    pub rows: Vec<Row>,
}

impl Snapshot {
    /// The row's key as text.
    pub fn key_of(&self, row: &Row) -> String {
        self.schema.key_text(row)
    }
}

/// Reads `name@vN` from `source` (a commit or the working tree): the lock
/// entry of that source, the file's sha256 checked against it, the rows
/// decoded and their content hash checked too.
pub fn read_snapshot(
    source: &dyn FileSource,
    dataset: &DatasetRef,
) -> Result<Snapshot, DatasetError> {
    let name = &dataset.name;
    let dir = dataset_dir(name)?;
    let lock = load_lock(source, name)?;
    let Some(locked) = lock.get(dataset.version).cloned() else {
        if source.read(&format!("{dir}/{SPEC_FILE}"))?.is_none() {
            return Err(DatasetError::NotFound {
                name: name.clone(),
                path: format!("{dir}/{SPEC_FILE}"),
                source_desc: source.describe(),
            });
        }
        let available = lock
            .versions
            .iter()
            .map(|v| format!("v{}", v.version))
            .collect::<Vec<_>>();
        return Err(DatasetError::VersionNotFound {
            name: name.clone(),
            version: dataset.version,
            available: if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            },
            source_desc: source.describe(),
        });
    };
    let path = format!("{dir}/{}", locked.file);
    let Some(bytes) = source.read(&path)? else {
        return Err(DatasetError::Integrity(vec![IntegrityProblem::Missing {
            file: path,
            version: locked.version,
        }]));
    };
    let actual = sha256_hex(&bytes);
    if actual != locked.file_sha256 {
        return Err(DatasetError::Integrity(vec![IntegrityProblem::Changed {
            file: path,
            version: locked.version,
            expected_sha256: locked.file_sha256.clone(),
            actual_sha256: actual,
        }]));
    }
    let decoded = parquet_io::read(bytes, &path)?;
    let corrupt = |message: String| DatasetError::Corrupt {
        path: path.clone(),
        message,
    };
    if decoded.content_sha256 != locked.content_sha256 {
        return Err(corrupt(format!(
            "content hash {} does not match {} in dataset.lock",
            short(&decoded.content_sha256),
            short(&locked.content_sha256)
        )));
    }
    if decoded.rows.len() as u64 != locked.rows {
        return Err(corrupt(format!(
            "{} rows, dataset.lock says {}",
            decoded.rows.len(),
            locked.rows
        )));
    }
    let meta = |k: &str| decoded.metadata.get(k).map(String::as_str);
    let version_text = locked.version.to_string();
    if meta(META_DATASET) != Some(name.as_str())
        || meta(META_VERSION) != Some(version_text.as_str())
        || meta(META_CONTENT) != Some(locked.content_sha256.as_str())
    {
        return Err(corrupt(format!(
            "its metadata names {}@v{}, not {dataset}",
            meta(META_DATASET).unwrap_or("?"),
            meta(META_VERSION).unwrap_or("?")
        )));
    }
    Ok(Snapshot {
        name: name.clone(),
        locked,
        schema: decoded.schema,
        rows: decoded.rows,
    })
}

/// One recorded version and whether its file is intact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionStatus {
    #[serde(flatten)]
    pub locked: LockedVersion,
    pub intact: bool,
}

/// `rows.jsonl` compared with the latest snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RowsStatus {
    Missing,
    Invalid {
        errors: usize,
    },
    /// Same content as this version.
    Snapshotted {
        version: u32,
    },
    /// Content not in the latest snapshot (None: there is none yet).
    Changed {
        latest: Option<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetStatus {
    pub name: String,
    pub key: String,
    pub versions: Vec<VersionStatus>,
    /// Unrecorded snapshot files and other problems.
    pub problems: Vec<IntegrityProblem>,
    pub rows_jsonl: RowsStatus,
}

/// Versions of a dataset, their integrity, and whether `rows.jsonl` has
/// changes not yet snapshotted.
pub fn status(source: &dyn FileSource, name: &str) -> Result<DatasetStatus, DatasetError> {
    let dir = dataset_dir(name)?;
    let (_, schema) = load_schema(source, name)?;
    let lock = load_lock(source, name)?;
    let problems = verify_snapshots(source, name, &lock)?;
    let versions = lock
        .versions
        .iter()
        .map(|v| VersionStatus {
            intact: !problems.iter().any(|p| match p {
                IntegrityProblem::Changed { version, .. }
                | IntegrityProblem::Missing { version, .. } => *version == v.version,
                IntegrityProblem::Unrecorded { .. } => false,
            }),
            locked: v.clone(),
        })
        .collect();
    let rows_jsonl = match source.read_string(&format!("{dir}/{ROWS_FILE}"))? {
        None => RowsStatus::Missing,
        Some(text) => match parse_rows(&schema, &text) {
            Err(errors) => RowsStatus::Invalid {
                errors: errors.len(),
            },
            Ok(rows) => {
                let hash = content_hash(&schema, &rows);
                match lock.latest() {
                    Some(l) if l.content_sha256 == hash => {
                        RowsStatus::Snapshotted { version: l.version }
                    }
                    l => RowsStatus::Changed {
                        latest: l.map(|l| l.version),
                    },
                }
            }
        },
    };
    Ok(DatasetStatus {
        name: name.to_string(),
        key: schema.key,
        versions,
        problems,
        rows_jsonl,
    })
}
