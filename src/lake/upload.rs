//! The uploader: moves `serve`'s finished log files to `logging.store`.
//!
//! Every round (the flush interval, or sooner when woken):
//! 1. the feedback journal is rotated and converted to Parquet
//!    ([`FeedbackJournal::compact`]), so acknowledged feedback travels too;
//! 2. under the log root's `.compact.lock` (no compaction merges files
//!    while they are being uploaded), the live files of every `date=`
//!    partition of `requests/` and `feedback/` are listed: that is the
//!    backlog, counted in `/metrics`;
//! 3. each is PUT whole to `<prefix>/<requests|feedback>/date=D/<replica>-<name>`
//!    and deleted locally (folder fsynced) only after the store confirmed
//!    the PUT. A PUT is atomic: readers see the whole object or none.
//!
//! A failed PUT ends the round; the next starts after a backoff
//! ([`RetryPolicy::backoff`], full jitter, up to 5 s), so a store that
//! comes back is drained within seconds. Files left by a crash (before or
//! after their upload) are found by the first round after start-up; an
//! object uploaded twice is the same file under the same key.
//!
//! While the backlog exceeds `max_backlog_mb`, the request log writer is
//! stalled: it takes no rows, its channel fills, and `on_full` decides
//! (block: requests wait; drop: rows counted as dropped), so the local
//! disk stays bounded and no row the writer took is lost.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::Notify;

use super::store::{self, Patience, StoreUrl};
use super::{FEEDBACK_DIR, LakeError, REQUESTS_DIR, Result};
use crate::logstore::{self, FeedbackJournal, RequestLogger, StallGuard};
use crate::provider::retry::RetryPolicy;
use crate::spec::config::StoreOptions;

/// Holds this replica's name in the log root.
use crate::logstore::REPLICA_FILE;

/// What the uploader is started with.
#[derive(Debug, Clone)]
pub struct UploaderConfig {
    pub url: StoreUrl,
    pub options: StoreOptions,
    /// Time between rounds when nothing failed.
    pub interval: Duration,
}

/// The uploader's counters, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct UploadStats {
    /// Finished local files not yet confirmed by the store.
    pub backlog_files: u64,
    pub backlog_bytes: u64,
    pub uploaded_files: u64,
    pub uploaded_bytes: u64,
    /// Failed rounds (each retried after a backoff).
    pub upload_errors: u64,
    /// Whether the backlog limit holds the request log writer.
    pub writer_stalled: bool,
}

#[derive(Debug, Default)]
struct Counters {
    backlog_files: AtomicU64,
    backlog_bytes: AtomicU64,
    uploaded_files: AtomicU64,
    uploaded_bytes: AtomicU64,
    upload_errors: AtomicU64,
    writer_stalled: AtomicBool,
}

struct Shared {
    dir: PathBuf,
    replica: String,
    url: StoreUrl,
    client: Arc<dyn ObjectStore>,
    journal: FeedbackJournal,
    counters: Counters,
    wake: Notify,
}

/// Handle to the upload task; cheap to clone.
#[derive(Clone)]
pub struct Uploader {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("store", &self.shared.url.to_string())
            .field("replica", &self.shared.replica)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Uploader {
    /// Starts uploading `dir`'s finished files on the current runtime; the
    /// task ends when the returned handle is aborted. Blocking (reads or
    /// creates the replica name): call once at start-up.
    pub fn start(
        dir: &Path,
        cfg: UploaderConfig,
        logger: RequestLogger,
        journal: FeedbackJournal,
    ) -> Result<(Uploader, tokio::task::JoinHandle<()>)> {
        let client = store::open(&cfg.url, &cfg.options, Patience::Uploader)?;
        Self::start_with_client(dir, cfg, client, logger, journal)
    }

    /// [`start`](Self::start) with a given client (tests: a local folder).
    pub(crate) fn start_with_client(
        dir: &Path,
        cfg: UploaderConfig,
        client: Arc<dyn ObjectStore>,
        logger: RequestLogger,
        journal: FeedbackJournal,
    ) -> Result<(Uploader, tokio::task::JoinHandle<()>)> {
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            replica: replica_name(dir)?,
            url: cfg.url,
            client,
            journal,
            counters: Counters::default(),
            wake: Notify::new(),
        });
        let max_backlog = cfg.options.max_backlog_mb.saturating_mul(1 << 20);
        let task = tokio::spawn(run(shared.clone(), logger, cfg.interval, max_backlog));
        Ok((Uploader { shared }, task))
    }

    pub fn stats(&self) -> UploadStats {
        let c = &self.shared.counters;
        UploadStats {
            backlog_files: c.backlog_files.load(Ordering::Relaxed),
            backlog_bytes: c.backlog_bytes.load(Ordering::Relaxed),
            uploaded_files: c.uploaded_files.load(Ordering::Relaxed),
            uploaded_bytes: c.uploaded_bytes.load(Ordering::Relaxed),
            upload_errors: c.upload_errors.load(Ordering::Relaxed),
            writer_stalled: c.writer_stalled.load(Ordering::Relaxed),
        }
    }

    /// This replica's name, the prefix of its objects' names.
    pub fn replica(&self) -> &str {
        &self.shared.replica
    }

    /// The last rounds at shutdown (after the writer flushed): up to
    /// `attempts` tries; what is left stays local for the next start.
    pub async fn finish(&self, attempts: u32) -> Result<()> {
        let mut last = Ok(());
        for n in 0..attempts.max(1) {
            last = round(&self.shared).await;
            match &last {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, attempt = n + 1, "log upload at shutdown failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        last
    }

    /// Starts a round now (e.g. after a flush).
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }
}

async fn run(shared: Arc<Shared>, logger: RequestLogger, interval: Duration, max_backlog: u64) {
    let policy = RetryPolicy::new(u32::MAX);
    let mut failures = 0u32;
    let mut stall: Option<StallGuard> = None;
    loop {
        match round(&shared).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                shared
                    .counters
                    .upload_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, failures, "log upload failed; retrying");
            }
        }
        let over = shared.counters.backlog_bytes.load(Ordering::Relaxed) > max_backlog;
        if over && stall.is_none() {
            tracing::warn!(
                max_backlog,
                "log upload backlog over its limit: the request log writer waits"
            );
            stall = Some(logger.stall());
        } else if !over && stall.is_some() {
            stall = None;
        }
        shared
            .counters
            .writer_stalled
            .store(stall.is_some(), Ordering::Relaxed);
        let delay = if failures > 0 {
            policy
                .backoff(failures - 1, None)
                .max(Duration::from_millis(50))
        } else {
            interval
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shared.wake.notified() => {}
        }
    }
}

/// A finished local file waiting for upload.
#[derive(Debug)]
struct Pending {
    kind: &'static str,
    partition: String,
    path: PathBuf,
    size: u64,
}

/// One round: convert feedback, list the backlog, upload it oldest first.
async fn round(shared: &Arc<Shared>) -> Result<()> {
    let s = shared.clone();
    let listed = tokio::task::spawn_blocking(move || -> Result<_> {
        match s.journal.compact() {
            Ok(_) | Err(logstore::LogStoreError::Locked { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let Some(lock) = logstore::DirLock::try_acquire(&s.dir, logstore::COMPACT_LOCK)? else {
            // `logs compact` is running: upload after it.
            return Ok(None);
        };
        Ok(Some((lock, backlog(&s.dir)?)))
    })
    .await
    .map_err(|e| LakeError::Io {
        path: shared.dir.clone(),
        source: std::io::Error::other(e),
    })??;
    let Some((lock, pending)) = listed else {
        return Ok(());
    };
    let c = &shared.counters;
    c.backlog_files
        .store(pending.len() as u64, Ordering::Relaxed);
    c.backlog_bytes
        .store(pending.iter().map(|p| p.size).sum(), Ordering::Relaxed);
    for p in pending {
        upload_one(shared, &p).await?;
        c.backlog_files.fetch_sub(1, Ordering::Relaxed);
        c.backlog_bytes.fetch_sub(p.size, Ordering::Relaxed);
        c.uploaded_files.fetch_add(1, Ordering::Relaxed);
        c.uploaded_bytes.fetch_add(p.size, Ordering::Relaxed);
    }
    drop(lock);
    Ok(())
}

async fn upload_one(shared: &Shared, p: &Pending) -> Result<()> {
    let bytes = tokio::fs::read(&p.path)
        .await
        .map_err(LakeError::io(&p.path))?;
    let name = p
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let object_name = format!("{}-{name}", shared.replica);
    let key = shared
        .url
        .key([p.kind, p.partition.as_str(), object_name.as_str()]);
    shared
        .client
        .put(&key, PutPayload::from(bytes))
        .await
        .map_err(LakeError::store(format!("{} ({key})", shared.url)))?;
    // Confirmed: only now may the local copy go.
    let path = p.path.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        std::fs::remove_file(&path).map_err(LakeError::io(&path))?;
        if let Some(dir) = path.parent() {
            crate::durable::sync_dir(dir).map_err(LakeError::io(dir))?;
        }
        Ok(())
    })
    .await
    .map_err(|e| LakeError::Io {
        path: p.path.clone(),
        source: std::io::Error::other(e),
    })??;
    tracing::debug!(%key, size = p.size, "uploaded log file");
    Ok(())
}

/// The live files of every partition under `dir`'s `requests/` and
/// `feedback/`, oldest partition first, then by name.
fn backlog(dir: &Path) -> Result<Vec<Pending>> {
    let mut out = Vec::new();
    for kind in [REQUESTS_DIR, FEEDBACK_DIR] {
        for (date, pdir) in logstore::partition_dirs(&dir.join(kind))? {
            for path in logstore::partition_files(&pdir)?.live {
                let size = std::fs::metadata(&path)
                    .map_err(LakeError::io(&path))?
                    .len();
                out.push(Pending {
                    kind,
                    partition: logstore::partition_name(date),
                    path,
                    size,
                });
            }
        }
    }
    Ok(out)
}

/// The replica name of a log root that uploads (its `.replica` file), if any.
pub(crate) fn read_replica(dir: &Path) -> Option<String> {
    let s = std::fs::read_to_string(dir.join(REPLICA_FILE)).ok()?;
    valid_replica(s.trim()).then(|| s.trim().to_string())
}

/// The replica's name: `<host>-<8 hex>`, made once and kept in
/// `<dir>/.replica`, so names stay the same across restarts and two
/// replicas on one host differ.
fn replica_name(dir: &Path) -> Result<String> {
    let path = dir.join(REPLICA_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if valid_replica(s.trim()) => return Ok(s.trim().to_string()),
        Ok(_) => tracing::warn!(path = %path.display(), "bad replica name; making a new one"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LakeError::io(&path)(e)),
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let mut host: String = host
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    if host.is_empty() {
        host.push_str("replica");
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("{host}-{}", &id[..8]);
    std::fs::create_dir_all(dir).map_err(LakeError::io(dir))?;
    crate::durable::write(&path, name.as_bytes()).map_err(|e| LakeError::Io {
        path: e.path,
        source: e.source,
    })?;
    Ok(name)
}

fn valid_replica(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logstore::{FeedbackRecord, RequestLogRow};
    use crate::spec::config::LoggingConfig;

    /// Every row and feedback record reaches the store once, under the
    /// layout's keys, and the local files go; a second uploader on the same
    /// folder (a restart) has nothing left to send.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finished_files_move_to_the_store_and_leave_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = tempfile::tempdir().unwrap();
        let client: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(bucket.path()).unwrap());
        let cfg = LoggingConfig {
            flush_rows: 10,
            ..LoggingConfig::default()
        };
        let (logger, _) = RequestLogger::start(dir.path(), &cfg).unwrap();
        let (journal, _) = FeedbackJournal::open(dir.path()).unwrap();
        for i in 0..25 {
            let ts = chrono::Utc::now();
            assert!(logger.log(RequestLogRow::new(format!("r{i}"), ts)).await);
        }
        logger.flush().await.unwrap();
        journal.append(&FeedbackRecord::new("r1", 1.0)).unwrap();
        let up_cfg = UploaderConfig {
            url: StoreUrl::parse("s3://b/fleet").unwrap(),
            options: StoreOptions::default(),
            interval: Duration::from_millis(20),
        };
        let (up, task) = Uploader::start_with_client(
            dir.path(),
            up_cfg,
            client.clone(),
            logger.clone(),
            journal.clone(),
        )
        .unwrap();
        let start = std::time::Instant::now();
        while up.stats().uploaded_files < 4 {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{:?}",
                up.stats()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
        let keys: Vec<String> =
            futures_util::TryStreamExt::try_collect::<Vec<_>>(client.list(None))
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.location.to_string())
                .collect();
        let date = logstore::partition_name(chrono::Utc::now().date_naive());
        let requests: Vec<_> = keys
            .iter()
            .filter(|k| k.starts_with(&format!("fleet/requests/{date}/{}-part-", up.replica())))
            .collect();
        assert_eq!(requests.len(), 3, "{keys:?}");
        assert!(
            keys.iter().any(|k| k.starts_with("fleet/feedback/")),
            "{keys:?}"
        );
        assert!(backlog(dir.path()).unwrap().is_empty());
        // The objects hold the rows, once.
        let view = bucket.path().join("fleet");
        let rows = logstore::read_requests(&[&view], &Default::default()).unwrap();
        assert_eq!(rows.len(), 25);
        let fb = logstore::read_feedback(&[&view]).unwrap();
        assert_eq!(fb.len(), 1);
        logger.shutdown().await.unwrap();
    }

    #[test]
    fn replica_name_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = replica_name(dir.path()).unwrap();
        assert!(valid_replica(&a), "{a}");
        assert_eq!(replica_name(dir.path()).unwrap(), a);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(replica_name(other.path()).unwrap(), a);
    }
}
