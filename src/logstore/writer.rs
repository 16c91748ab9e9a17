//! The request log writer: a bounded channel in front of one task that
//! batches rows and writes Parquet partitions.
//!
//! The request path only does a `try_send` (or, under `on_full: block`, waits
//! for room). The task flushes when `flush_rows` rows are buffered or when
//! the oldest buffered row is `flush_interval_ms` old, whichever comes first,
//! so a crash loses at most one interval. Buffered rows are redacted and
//! encoded, [`CHUNK_ROWS`] at a time, into one in-memory Parquet file per
//! UTC date as they arrive: held as row structs (later as Arrow batches),
//! one second of traffic at thousands of requests per second was most of
//! the proxy's memory under load. Finishing the files and the file I/O run
//! on the blocking pool. A failed write keeps its rows and is retried one interval
//! later; while rows are waiting for a retry the task stops taking new ones
//! from the channel, so a broken disk turns into back-pressure (block) or
//! counted drops (drop), never into unbounded memory.
//!
//! `flush_rows`, `flush_interval_ms`, `on_full` and `redact` can change
//! while the writer runs ([`RequestLogger::reconfigure`], `serve`'s reload);
//! the folder and the channel's capacity are fixed when it starts.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::files::{self, DirLock, WRITER_LOCK};
use super::recover::{RecoveryReport, recover_locked};
use super::redact::Redactor;
use super::row::{RequestLogRow, request_schema, rows_to_batch};
use super::{LogStoreError, REQUESTS_DIR, Result};
use crate::spec::config::{LoggingConfig, OnFull};

/// Attempts of the last flush at shutdown before rows are given up.
const SHUTDOWN_ATTEMPTS: u32 = 3;

/// Rows encoded at a time while they wait for a flush.
pub(crate) const CHUNK_ROWS: usize = 512;

enum Msg {
    Row(Box<RequestLogRow>),
    Flush(oneshot::Sender<Result<()>>),
    Shutdown(oneshot::Sender<Result<()>>),
}

#[derive(Debug, Default)]
struct Counters {
    rows_written: AtomicU64,
    files_written: AtomicU64,
    rows_dropped: AtomicU64,
    write_errors: AtomicU64,
    buffered: AtomicU64,
}

/// A snapshot of the writer's counters, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoggerStats {
    /// Rows (and control messages) waiting in the channel.
    pub queue_depth: u64,
    pub queue_capacity: u64,
    /// Rows taken from the channel and not yet in a file.
    pub buffered_rows: u64,
    pub rows_written: u64,
    pub files_written: u64,
    /// Rows that never reached a file: refused on a full channel (drop
    /// mode), logged after shutdown, or still failing at shutdown.
    pub rows_dropped: u64,
    /// Failed file writes (each retried later).
    pub write_errors: u64,
}

struct Inner {
    tx: mpsc::Sender<Msg>,
    /// `on_full: drop`.
    drop_when_full: AtomicBool,
    tuning: watch::Sender<Tuning>,
    counters: Arc<Counters>,
    task: Mutex<Option<JoinHandle<()>>>,
    stall: watch::Sender<bool>,
    dir: PathBuf,
}

/// Handle to the request log writer; cheap to clone, one per handler.
#[derive(Clone)]
pub struct RequestLogger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RequestLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLogger")
            .field("dir", &self.inner.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl RequestLogger {
    /// Starts the writer task on the current tokio runtime, logging under
    /// `dir` (the resolved `logging.dir`; `cfg.dir` itself is not read).
    ///
    /// Takes `<dir>/.writer.lock` for the writer's lifetime (a second writer
    /// on the same folder fails with [`LogStoreError::Locked`]) and first
    /// recovers leftover temporaries. Blocking file I/O (and a wait for a
    /// running `logs compact` to finish): call once at start-up.
    pub fn start(dir: &Path, cfg: &LoggingConfig) -> Result<(RequestLogger, RecoveryReport)> {
        let Some(lock) = DirLock::try_acquire(dir, WRITER_LOCK)? else {
            return Err(LogStoreError::Locked {
                path: dir.join(WRITER_LOCK),
                what: "another request log writer is running",
            });
        };
        let report = recover_locked(dir)?;
        let capacity = cfg.channel_capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let (stall_tx, stall_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let tuning = Tuning::from(cfg);
        let (tuning_tx, tuning_rx) = watch::channel(tuning);
        let writer = Writer {
            dir: dir.to_path_buf(),
            rx,
            tuning,
            tuning_rx,
            tuning_alive: true,
            counters: counters.clone(),
            buf: Pending::default(),
            first_at: None,
            retry_at: None,
            stall: stall_rx,
            stall_alive: true,
            _lock: lock,
        };
        let task = tokio::spawn(writer.run());
        let inner = Inner {
            tx,
            drop_when_full: AtomicBool::new(cfg.on_full == OnFull::Drop),
            tuning: tuning_tx,
            counters,
            task: Mutex::new(Some(task)),
            stall: stall_tx,
            dir: dir.to_path_buf(),
        };
        Ok((
            RequestLogger {
                inner: Arc::new(inner),
            },
            report,
        ))
    }

    /// Queues a row. Under `on_full: drop` this never waits: a full channel
    /// drops the row and counts it. Under `block` it waits for room. Returns
    /// whether the row was queued.
    pub async fn log(&self, row: RequestLogRow) -> bool {
        match self.inner.tx.try_send(Msg::Row(Box::new(row))) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(msg))
                if !self.inner.drop_when_full.load(Ordering::Relaxed) =>
            {
                match self.inner.tx.send(msg).await {
                    Ok(()) => true,
                    Err(_) => self.dropped(),
                }
            }
            Err(_) => self.dropped(),
        }
    }

    fn dropped(&self) -> bool {
        self.inner
            .counters
            .rows_dropped
            .fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Writes every row queued before this call; returns the write error if
    /// some rows are still waiting for a retry.
    pub async fn flush(&self) -> Result<()> {
        let (ack, done) = oneshot::channel();
        self.inner
            .tx
            .send(Msg::Flush(ack))
            .await
            .map_err(|_| LogStoreError::WriterStopped)?;
        done.await.map_err(|_| LogStoreError::WriterStopped)?
    }

    /// Stops taking rows, writes every queued row, waits for the task. Rows
    /// logged afterwards are dropped and counted. Idempotent.
    pub async fn shutdown(&self) -> Result<LoggerStats> {
        let (ack, done) = oneshot::channel();
        let sent = self.inner.tx.send(Msg::Shutdown(ack)).await.is_ok();
        let result = if sent {
            done.await.unwrap_or(Err(LogStoreError::WriterStopped))
        } else {
            Ok(())
        };
        let task = self.inner.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "request log writer task failed");
        }
        result.map(|()| self.stats())
    }

    /// Applies new `flush_rows`, `flush_interval_ms`, `on_full` and
    /// `redact` settings to the running writer (rows already buffered keep
    /// the redaction they were staged with). `dir` and `channel_capacity`
    /// are fixed at start.
    pub fn reconfigure(&self, cfg: &LoggingConfig) {
        self.inner
            .drop_when_full
            .store(cfg.on_full == OnFull::Drop, Ordering::Relaxed);
        self.inner.tuning.send_if_modified(|t| {
            let new = Tuning::from(cfg);
            let changed = *t != new;
            *t = new;
            changed
        });
    }

    /// Current counters.
    pub fn stats(&self) -> LoggerStats {
        let c = &self.inner.counters;
        let tx = &self.inner.tx;
        LoggerStats {
            queue_depth: (tx.max_capacity() - tx.capacity()) as u64,
            queue_capacity: tx.max_capacity() as u64,
            buffered_rows: c.buffered.load(Ordering::Relaxed),
            rows_written: c.rows_written.load(Ordering::Relaxed),
            files_written: c.files_written.load(Ordering::Relaxed),
            rows_dropped: c.rows_dropped.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
        }
    }

    /// The writer takes no rows from the channel until the guard is
    /// dropped: the lake uploader's backlog limit, and the test hook that
    /// simulates a stalled disk for back-pressure tests.
    pub fn stall(&self) -> StallGuard {
        self.inner.stall.send_replace(true);
        StallGuard {
            inner: self.inner.clone(),
        }
    }
}

/// Keeps the writer stalled while alive; see [`RequestLogger::stall`].
pub struct StallGuard {
    inner: Arc<Inner>,
}

impl Drop for StallGuard {
    fn drop(&mut self) {
        self.inner.stall.send_replace(false);
    }
}

/// The writer's settings that may change while it runs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tuning {
    flush_rows: usize,
    interval: Duration,
    redactor: Redactor,
}

impl From<&LoggingConfig> for Tuning {
    fn from(cfg: &LoggingConfig) -> Tuning {
        Tuning {
            flush_rows: cfg.flush_rows.max(1),
            interval: Duration::from_millis(cfg.flush_interval_ms.max(1)),
            redactor: Redactor::new(cfg.redact),
        }
    }
}

struct Writer {
    dir: PathBuf,
    rx: mpsc::Receiver<Msg>,
    tuning: Tuning,
    tuning_rx: watch::Receiver<Tuning>,
    tuning_alive: bool,
    counters: Arc<Counters>,
    buf: Pending,
    /// When the oldest buffered row arrived.
    first_at: Option<Instant>,
    /// Set after a failed write: when to try again.
    retry_at: Option<Instant>,
    stall: watch::Receiver<bool>,
    stall_alive: bool,
    _lock: DirLock,
}

async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Writer {
    async fn run(mut self) {
        loop {
            if self.stall_alive
                && *self.stall.borrow()
                && self.stall.wait_for(|s| !*s).await.is_err()
            {
                self.stall_alive = false;
            }
            let full = self.buf.len() >= self.tuning.flush_rows;
            let deadline = if self.buf.is_empty() {
                None
            } else if let Some(r) = self.retry_at {
                Some(r)
            } else if full {
                Some(Instant::now())
            } else {
                self.first_at.map(|t| t + self.tuning.interval)
            };
            tokio::select! {
                biased;
                _ = sleep_opt(deadline) => {
                    let _ = self.flush().await;
                }
                msg = self.rx.recv(), if !full => match msg {
                    Some(Msg::Row(row)) => self.push(*row),
                    Some(Msg::Flush(ack)) => {
                        let r = self.flush().await;
                        let _ = ack.send(r);
                    }
                    Some(Msg::Shutdown(ack)) => {
                        let r = self.finish().await;
                        let _ = ack.send(r);
                        return;
                    }
                    None => {
                        let _ = self.finish().await;
                        return;
                    }
                },
                changed = self.stall.changed(), if self.stall_alive => {
                    if changed.is_err() {
                        self.stall_alive = false;
                    }
                }
                // New settings: the next turn recomputes the deadline.
                changed = self.tuning_rx.changed(), if self.tuning_alive => {
                    match changed {
                        Ok(()) => self.tuning = *self.tuning_rx.borrow_and_update(),
                        Err(_) => self.tuning_alive = false,
                    }
                }
            }
        }
    }

    fn push(&mut self, row: RequestLogRow) {
        if self.buf.is_empty() {
            self.first_at = Some(Instant::now());
        }
        let lost = self.buf.stage(row, self.tuning.redactor);
        if lost > 0 {
            self.counters
                .rows_dropped
                .fetch_add(lost as u64, Ordering::Relaxed);
        }
        self.counters
            .buffered
            .store(self.buf.len() as u64, Ordering::Relaxed);
    }

    /// Closes the channel, takes everything still queued, writes it all.
    async fn finish(&mut self) -> Result<()> {
        self.rx.close();
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Row(row) => self.push(*row),
                Msg::Flush(ack) | Msg::Shutdown(ack) => {
                    let _ = ack.send(Ok(()));
                }
            }
        }
        let mut last = Ok(());
        for attempt in 0..SHUTDOWN_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            last = self.flush().await;
            if last.is_ok() {
                return Ok(());
            }
        }
        let lost = self.buf.len();
        self.counters
            .rows_dropped
            .fetch_add(lost as u64, Ordering::Relaxed);
        tracing::error!(
            rows = lost,
            "request log rows could not be written at shutdown"
        );
        self.buf = Pending::default();
        self.counters.buffered.store(0, Ordering::Relaxed);
        last
    }

    async fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            self.retry_at = None;
            self.first_at = None;
            return Ok(());
        }
        let pending = std::mem::take(&mut self.buf);
        let n = pending.len();
        let dir = self.dir.clone();
        let outcome = tokio::task::spawn_blocking(move || write_pending(&dir, pending)).await;
        let c = &self.counters;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                c.write_errors.fetch_add(1, Ordering::Relaxed);
                c.rows_dropped.fetch_add(n as u64, Ordering::Relaxed);
                c.buffered.store(0, Ordering::Relaxed);
                tracing::error!(error = %e, rows = n, "request log write task failed; rows lost");
                self.first_at = None;
                return Err(LogStoreError::Unflushed {
                    rows: n,
                    message: e.to_string(),
                });
            }
        };
        c.rows_written
            .fetch_add(outcome.rows_written, Ordering::Relaxed);
        c.rows_dropped
            .fetch_add(outcome.rows_lost, Ordering::Relaxed);
        c.files_written
            .fetch_add(outcome.files_written, Ordering::Relaxed);
        self.buf = outcome.failed;
        c.buffered.store(self.buf.len() as u64, Ordering::Relaxed);
        match outcome.error {
            None => {
                self.retry_at = None;
                self.first_at = None;
                Ok(())
            }
            Some(e) => {
                c.write_errors.fetch_add(1, Ordering::Relaxed);
                let rows = self.buf.len();
                tracing::error!(error = %e, rows, "writing request log rows failed; will retry");
                self.retry_at = Some(Instant::now() + self.tuning.interval);
                Err(LogStoreError::Unflushed {
                    rows,
                    message: e.to_string(),
                })
            }
        }
    }
}

/// Rows taken from the channel and not yet in a file: the newest (fewer
/// than [`CHUNK_ROWS`]) as rows, the rest already encoded as Parquet in
/// memory, one file per UTC date. Compressed, a second of traffic takes a
/// fraction of the memory its Arrow batches took (most of the proxy's
/// memory under load, and growing with the request rate).
#[derive(Default)]
struct Pending {
    staged: Vec<RequestLogRow>,
    open: BTreeMap<NaiveDate, OpenFile>,
    /// Finished files a failed write left behind, written again at the next flush.
    closed: Vec<ClosedFile>,
}

/// A partition's file being encoded in memory; its name is fixed when it starts.
struct OpenFile {
    name: String,
    writer: ArrowWriter<Vec<u8>>,
    rows: usize,
}

/// A complete Parquet file waiting to be written under `date`.
struct ClosedFile {
    date: NaiveDate,
    name: String,
    bytes: Vec<u8>,
    rows: usize,
}

impl Pending {
    fn len(&self) -> usize {
        let open: usize = self.open.values().map(|f| f.rows).sum();
        let closed: usize = self.closed.iter().map(|f| f.rows).sum();
        self.staged.len() + open + closed
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a row; returns how many rows an encoding failure lost (normally 0).
    fn stage(&mut self, mut row: RequestLogRow, redactor: Redactor) -> usize {
        redactor.row(&mut row);
        self.staged.push(row);
        // At every CHUNK_ROWS-th row, not at every row past it: rows that
        // failed to convert stay staged, and retrying them on each new row
        // would re-encode (and log) the whole backlog per request.
        if !self.staged.len().is_multiple_of(CHUNK_ROWS) {
            return 0;
        }
        match self.encode_staged() {
            Ok(lost) => lost,
            Err(e) => {
                // Kept as rows; the flush tries again and reports the error.
                tracing::error!(error = %e, "converting request log rows failed");
                0
            }
        }
    }

    /// Encodes the staged rows into their dates' files. A conversion error
    /// keeps the rows staged. A Parquet encoding error (a bug: the batches
    /// match the schema and the sink is memory) loses that date's file;
    /// it is logged and the lost rows are returned to be counted as dropped.
    fn encode_staged(&mut self) -> std::result::Result<usize, arrow_schema::ArrowError> {
        let mut by_date: BTreeMap<NaiveDate, Vec<&RequestLogRow>> = BTreeMap::new();
        for r in &self.staged {
            by_date.entry(r.ts.date_naive()).or_default().push(r);
        }
        let mut batches = Vec::with_capacity(by_date.len());
        for (date, rows) in by_date {
            batches.push((date, rows_to_batch(rows)?));
        }
        self.staged.clear();
        let mut lost = 0;
        for (date, batch) in batches {
            let file = match self.open.entry(date) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    let name = files::new_file_name("part", chrono::Utc::now());
                    let kv = files::base_metadata(REQUESTS_DIR, &name);
                    match files::arrow_writer(Vec::new(), request_schema(), kv) {
                        Ok(writer) => v.insert(OpenFile {
                            name,
                            writer,
                            rows: 0,
                        }),
                        Err(e) => {
                            tracing::error!(error = %e, "starting a request log file failed");
                            lost += batch.num_rows();
                            continue;
                        }
                    }
                }
            };
            match file.writer.write(&batch) {
                Ok(()) => file.rows += batch.num_rows(),
                Err(e) => {
                    tracing::error!(error = %e, "encoding request log rows failed; the partition's buffered rows are lost");
                    lost += self.open.remove(&date).map_or(0, |f| f.rows);
                    lost += batch.num_rows();
                }
            }
        }
        Ok(lost)
    }
}

struct WriteOutcome {
    rows_written: u64,
    files_written: u64,
    /// Rows lost to an encoding failure.
    rows_lost: u64,
    /// What could not be written: the files whose write failed (or the
    /// staged rows, if they could not be converted).
    failed: Pending,
    error: Option<LogStoreError>,
}

/// Finishes every open file and writes each finished file. Files written
/// before a failure stay written (they are not retried).
fn write_pending(dir: &Path, mut pending: Pending) -> WriteOutcome {
    let mut out = WriteOutcome {
        rows_written: 0,
        files_written: 0,
        rows_lost: 0,
        failed: Pending::default(),
        error: None,
    };
    match pending.encode_staged() {
        Ok(lost) => out.rows_lost += lost as u64,
        Err(e) => {
            out.error = Some(LogStoreError::Arrow(e));
            out.failed.staged = std::mem::take(&mut pending.staged);
        }
    }
    let mut closed = std::mem::take(&mut pending.closed);
    for (date, f) in pending.open {
        match f.writer.into_inner() {
            Ok(bytes) => closed.push(ClosedFile {
                date,
                name: f.name,
                bytes,
                rows: f.rows,
            }),
            Err(e) => {
                tracing::error!(error = %e, rows = f.rows, "finishing a request log file failed; its rows are lost");
                out.rows_lost += f.rows as u64;
            }
        }
    }
    for f in closed {
        let path = partition_file(dir, f.date, &f.name);
        match files::write_file(&path, |out| out.write_all(&f.bytes)) {
            Ok(()) => {
                out.rows_written += f.rows as u64;
                out.files_written += 1;
            }
            Err(e) => {
                out.failed.closed.push(f);
                out.error.get_or_insert(e);
            }
        }
    }
    out
}

/// Where a request log file named `name` of `date` goes.
fn partition_file(dir: &Path, date: NaiveDate, name: &str) -> PathBuf {
    dir.join(REQUESTS_DIR)
        .join(files::partition_name(date))
        .join(name)
}

/// Writes `rows` as one file of `date`'s partition, as the writer would.
#[cfg(test)]
pub(crate) fn write_partition_file(
    dir: &Path,
    date: NaiveDate,
    rows: &[RequestLogRow],
) -> Result<()> {
    let batch = rows_to_batch(rows)?;
    let name = files::new_file_name("part", chrono::Utc::now());
    let path = partition_file(dir, date, &name);
    files::write_parquet(
        &path,
        request_schema(),
        &[batch],
        files::base_metadata(REQUESTS_DIR, &name),
    )
}
