//! Start-up recovery of leftover temporaries (see the module docs of
//! [`crate::logstore`]): complete ones are renamed into place, the rest are
//! moved to `quarantine/`. Nothing is left where readers look.

use std::path::{Path, PathBuf};

use super::files::{
    self, COMPACT_LOCK, DirLock, META_FILE_NAME, TMP_PREFIX, is_valid_final_name, meta_value,
    new_file_name,
};
use super::{FEEDBACK_DIR, LogStoreError, QUARANTINE_DIR, REQUESTS_DIR, Result};
use crate::durable;

/// What recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecoveryReport {
    /// Final paths of temporaries that were complete and renamed into place.
    pub recovered: Vec<PathBuf>,
    /// Quarantine paths of temporaries that were unreadable or duplicates.
    pub quarantined: Vec<PathBuf>,
}

impl RecoveryReport {
    pub fn is_empty(&self) -> bool {
        self.recovered.is_empty() && self.quarantined.is_empty()
    }
}

/// Recovery by a caller that already holds the writer lock.
pub(crate) fn recover_locked(dir: &Path) -> Result<RecoveryReport> {
    let _compact = DirLock::acquire(dir, COMPACT_LOCK)?;
    recover_walk(dir)
}

/// Recovery by a caller that holds both the writer and the compaction lock.
pub(crate) fn recover_walk(dir: &Path) -> Result<RecoveryReport> {
    let mut report = RecoveryReport::default();
    for sub in [REQUESTS_DIR, FEEDBACK_DIR] {
        walk(dir, &dir.join(sub), &mut report)?;
    }
    if !report.is_empty() {
        tracing::warn!(
            recovered = report.recovered.len(),
            quarantined = report.quarantined.len(),
            dir = %dir.display(),
            "recovered leftover temporary log files"
        );
    }
    Ok(report)
}

fn walk(root: &Path, folder: &Path, report: &mut RecoveryReport) -> Result<()> {
    let mut paths: Vec<(PathBuf, bool)> = Vec::new();
    for entry in files::entries(folder)? {
        let is_dir = entry
            .file_type()
            .map_err(LogStoreError::io(entry.path()))?
            .is_dir();
        paths.push((entry.path(), is_dir));
    }
    paths.sort();
    for (path, is_dir) in paths {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if is_dir {
            walk(root, &path, report)?;
        } else if name.starts_with(TMP_PREFIX) {
            recover_one(root, folder, &path, report)?;
        }
    }
    Ok(())
}

fn recover_one(root: &Path, folder: &Path, tmp: &Path, report: &mut RecoveryReport) -> Result<()> {
    // Decode every batch: a file with a footer but damaged pages is not complete.
    let target = match files::read_parquet(tmp) {
        Ok((_, kv)) => {
            let name = match meta_value(&kv, META_FILE_NAME) {
                Some(n) if is_valid_final_name(n) => n.to_string(),
                _ => new_file_name("part-recovered", chrono::Utc::now()),
            };
            Some(folder.join(name))
        }
        Err(e) => {
            tracing::warn!(path = %tmp.display(), error = %e, "leftover temporary is not a complete Parquet file");
            None
        }
    };
    match target {
        Some(target) if !target.exists() => {
            std::fs::rename(tmp, &target).map_err(LogStoreError::io(tmp))?;
            durable::sync_dir(folder).map_err(LogStoreError::io(folder))?;
            report.recovered.push(target);
        }
        _ => {
            let q = quarantine(root, tmp)?;
            report.quarantined.push(q);
        }
    }
    Ok(())
}

/// Moves `path` under `<root>/quarantine/`, keeping its relative path in the
/// name; returns the new path.
pub(crate) fn quarantine(root: &Path, path: &Path) -> Result<PathBuf> {
    let qdir = root.join(QUARANTINE_DIR);
    std::fs::create_dir_all(&qdir).map_err(LogStoreError::io(&qdir))?;
    let rel = path.strip_prefix(root).unwrap_or(path);
    let flat = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("__");
    let dest = qdir.join(format!("{}-{}", flat, uuid::Uuid::new_v4().simple()));
    std::fs::rename(path, &dest).map_err(LogStoreError::io(path))?;
    durable::sync_dir(&qdir).map_err(LogStoreError::io(&qdir))?;
    if let Some(parent) = path.parent() {
        durable::sync_dir(parent).map_err(LogStoreError::io(parent))?;
    }
    Ok(dest)
}
