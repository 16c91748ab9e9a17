//! Durable file writes, the one way promptgate writes a finished file
//! (dataset snapshots and `dataset.lock`, eval results, check reports, log
//! files, the scaffold, the response cache): write to a temporary name in
//! the same folder, fsync, rename over the target, fsync the folder.
//!
//! Response-cache entries ([`write_cache_entry`]) skip the two fsyncs: an
//! entry lost or left empty by a crash is a cache miss, and an fsync per
//! model call (~15 ms each on the test machine) would slow down every
//! cached eval; they are still renamed into place whole.
//!
//! Invariants:
//! - A reader sees the old file or the new one, never a partial one; after
//!   a crash the new file is either complete or absent, and a failed write
//!   leaves the old file as it was. Temporary files are named `.tmp-*`, so
//!   a folder scan can tell them from finished files.
//! - Files are created with mode 0644 (less the umask), as `File::create`
//!   makes an ordinary file, not the 0600 of a temporary file: people and
//!   other tools read them.
//! - When the rename happened and only the folder fsync failed, it is tried
//!   once more before the write is reported as failed, so a caller that
//!   retries on failure does not write the same content twice because of a
//!   transient error.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Prefix of the temporary files; finished files never start with it.
pub const TMP_PREFIX: &str = ".tmp-";

/// Mode of the files written here (before the umask).
#[cfg(unix)]
const FILE_MODE: u32 = 0o644;

/// A write that failed, with the path it was about.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl WriteError {
    fn at(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
        move |source| WriteError {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<WriteError> for std::io::Error {
    fn from(e: WriteError) -> Self {
        std::io::Error::new(e.source.kind(), e)
    }
}

/// What to do when the target exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    Replace,
    Keep,
}

/// What a write must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Survives {
    /// A crash or power loss: fsync the file and the folder.
    Crash,
    /// Only readers in the meantime (atomic rename, no fsync).
    Readers,
}

/// Writes `bytes` to `path` durably, replacing it, creating the folder if needed.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_file(path, Existing::Replace, Survives::Crash, |f| {
        f.write_all(bytes)
    })
}

/// Like [`write`], with the content produced by `fill` into the temporary
/// file (an error from `fill` leaves the target untouched).
pub fn write_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    write_file(path, Existing::Replace, Survives::Crash, fill)
}

/// A response-cache entry: atomic like [`write_with`] (never a partial file
/// under the final name) but without fsyncs, since losing it costs only a
/// cache miss.
pub fn write_cache_entry(
    path: &Path,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    write_file(path, Existing::Replace, Survives::Readers, fill)
}

/// Like [`write`], but fails with [`std::io::ErrorKind::AlreadyExists`] when
/// `path` exists: for immutable files such as dataset snapshots.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_file(path, Existing::Keep, Survives::Crash, |f| {
        f.write_all(bytes)
    })
}

fn write_file(
    path: &Path,
    existing: Existing,
    survives: Survives,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(WriteError::at(dir))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(TMP_PREFIX);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(FILE_MODE));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(WriteError::at(dir))?;
    fill(tmp.as_file_mut()).map_err(WriteError::at(path))?;
    if survives == Survives::Crash {
        tmp.as_file().sync_all().map_err(WriteError::at(path))?;
    }
    match existing {
        Existing::Replace => tmp.persist(path).map(drop),
        Existing::Keep => tmp.persist_noclobber(path).map(drop),
    }
    .map_err(|e| WriteError::at(path)(e.error))?;
    if survives == Survives::Readers {
        return Ok(());
    }
    sync_dir(dir)
        .or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "folder fsync after rename failed; retrying");
            sync_dir(dir)
        })
        .map_err(WriteError::at(dir))
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn names(dir: &Path) -> Vec<std::ffi::OsString> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_content_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/file.txt");
        super::write(&p, b"one").unwrap();
        super::write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(names(p.parent().unwrap()), ["file.txt"]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_intact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("results.parquet");
        super::write(&p, b"old complete file").unwrap();
        let err = super::write_with(&p, |f| {
            use std::io::Write;
            f.write_all(b"half of the new")?;
            Err(std::io::Error::other("encoder failed"))
        })
        .unwrap_err();
        assert_eq!(err.path, p);
        assert!(err.to_string().contains("encoder failed"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old complete file");
        assert_eq!(names(dir.path()), ["results.parquet"]);
    }

    #[test]
    fn write_new_refuses_to_replace() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v1.parquet");
        super::write_new(&p, b"first").unwrap();
        let err = super::write_new(&p, b"second").unwrap_err();
        assert_eq!(err.source.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        assert_eq!(names(dir.path()), ["v1.parquet"]);
    }

    #[cfg(unix)]
    #[test]
    fn files_are_readable_by_others_as_ordinary_files_are() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // What this process's umask makes of an ordinary file.
        let plain = dir.path().join("plain");
        std::fs::File::create(&plain).unwrap();
        let want = mode(&plain) & 0o644;
        for (name, write) in [
            (
                "a",
                super::write as fn(&Path, &[u8]) -> Result<(), super::WriteError>,
            ),
            ("b", super::write_new),
        ] {
            let p = dir.path().join(name);
            write(&p, b"x").unwrap();
            assert_eq!(mode(&p), want, "{name}: {:o}", mode(&p));
        }
        for (name, write) in [
            (
                "c",
                super::write_with as fn(&Path, _) -> Result<(), super::WriteError>,
            ),
            ("d", super::write_cache_entry),
        ] {
            let p = dir.path().join(name);
            write(&p, |_: &mut std::fs::File| Ok(())).unwrap();
            assert_eq!(mode(&p), want, "{name}: {:o}", mode(&p));
        }
    }
}
