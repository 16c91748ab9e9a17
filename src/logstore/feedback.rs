//! User feedback: validated records, an fsynced append-only journal, its
//! crash-safe conversion to Parquet, reading, and the read-time join with
//! request rows (feedback may arrive before its request row is flushed).
//!
//! Scores are in [`FEEDBACK_SCORE_RANGE`], `0.0..=1.0`: 1 is the best
//! outcome (thumbs up = 1, thumbs down = 0, five stars = 1.0, one star =
//! 0.0), so a mean score reads as a satisfaction rate and the canary's
//! `feedback_score` check compares means on one scale.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::files::{self, COMPACT_LOCK, DirLock, JOURNAL_LOCK};
use super::row::{ColumnError, Columns, RequestLogRow, need, now_micros};
use super::{FEEDBACK_DIR, FieldError, LogStoreError, Result};
use crate::durable;

/// Valid feedback scores: 0 (worst) to 1 (best), inclusive.
pub const FEEDBACK_SCORE_RANGE: std::ops::RangeInclusive<f64> = 0.0..=1.0;

const JOURNAL: &str = "journal.jsonl";
const ROTATED_PREFIX: &str = "journal-";
const MAX_ID: usize = 128;
const MAX_LABEL: usize = 64;
const MAX_COMMENT: usize = 8 * 1024;
const MAX_CORRECTION: usize = 64 * 1024;

/// One piece of feedback on a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRecord {
    /// Unique id (UUID v7) assigned on receipt; the idempotency key.
    pub feedback_id: String,
    pub request_id: String,
    /// In [`FEEDBACK_SCORE_RANGE`].
    pub score: f64,
    #[serde(default)]
    pub label: Option<String>,
    /// What the output should have been.
    #[serde(default)]
    pub correction: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    /// A hash of the user id, never the raw id.
    #[serde(default)]
    pub user_hash: Option<String>,
    /// Receipt time, UTC, microsecond precision.
    pub ts: DateTime<Utc>,
}

impl FeedbackRecord {
    /// A record received now with a fresh id.
    pub fn new(request_id: impl Into<String>, score: f64) -> FeedbackRecord {
        FeedbackRecord {
            feedback_id: uuid::Uuid::now_v7().to_string(),
            request_id: request_id.into(),
            score,
            label: None,
            correction: None,
            comment: None,
            user_hash: None,
            ts: now_micros(),
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> std::result::Result<(), FieldError> {
        let bad = |field: &'static str, message: String| Err(FieldError { field, message });
        id_like("feedback_id", &self.feedback_id, MAX_ID)?;
        id_like("request_id", &self.request_id, MAX_ID)?;
        if !self.score.is_finite() || !FEEDBACK_SCORE_RANGE.contains(&self.score) {
            return bad(
                "score",
                format!(
                    "must be a number from {} to {}, got {}",
                    FEEDBACK_SCORE_RANGE.start(),
                    FEEDBACK_SCORE_RANGE.end(),
                    self.score
                ),
            );
        }
        if let Some(l) = &self.label {
            id_like("label", l, MAX_LABEL)?;
        }
        if let Some(c) = &self.correction
            && c.len() > MAX_CORRECTION
        {
            return bad("correction", format!("longer than {MAX_CORRECTION} bytes"));
        }
        if let Some(c) = &self.comment
            && c.len() > MAX_COMMENT
        {
            return bad("comment", format!("longer than {MAX_COMMENT} bytes"));
        }
        if let Some(u) = &self.user_hash {
            id_like("user_hash", u, MAX_ID)?;
        }
        Ok(())
    }
}

pub(crate) fn id_like(
    field: &'static str,
    v: &str,
    max: usize,
) -> std::result::Result<(), FieldError> {
    let message = if v.trim().is_empty() {
        "must not be empty".to_string()
    } else if v.chars().count() > max {
        format!("longer than {max} characters")
    } else if v.chars().any(char::is_control) {
        "must not contain control characters".to_string()
    } else {
        return Ok(());
    };
    Err(FieldError { field, message })
}

static FEEDBACK_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("feedback_id", DataType::Utf8, false),
        Field::new("request_id", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("score", DataType::Float64, false),
        Field::new("label", DataType::Utf8, true),
        Field::new("correction", DataType::Utf8, true),
        Field::new("comment", DataType::Utf8, true),
        Field::new("user_hash", DataType::Utf8, true),
    ]))
});

/// The Arrow schema of feedback Parquet files.
pub fn feedback_schema() -> SchemaRef {
    FEEDBACK_SCHEMA.clone()
}

pub(crate) fn records_to_batch(
    recs: &[FeedbackRecord],
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let s = |f: fn(&FeedbackRecord) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(recs.iter().map(f)))
    };
    let o = |f: fn(&FeedbackRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(recs.iter().map(f).collect::<StringArray>())
    };
    RecordBatch::try_new(
        feedback_schema(),
        vec![
            s(|r| &r.feedback_id),
            s(|r| &r.request_id),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    recs.iter().map(|r| r.ts.timestamp_micros()),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from_iter_values(recs.iter().map(|r| r.score))),
            o(|r| r.label.as_deref()),
            o(|r| r.correction.as_deref()),
            o(|r| r.comment.as_deref()),
            o(|r| r.user_hash.as_deref()),
        ],
    )
}

pub(crate) fn records_from_batch(
    batch: &RecordBatch,
) -> std::result::Result<Vec<FeedbackRecord>, ColumnError> {
    let c = Columns::new(batch);
    let feedback_id = c.str("feedback_id")?;
    let request_id = c.str("request_id")?;
    let ts = c.ts("ts")?;
    let score = c.f64("score", true)?;
    let label = c.opt_str("label")?;
    let correction = c.opt_str("correction")?;
    let comment = c.opt_str("comment")?;
    let user_hash = c.opt_str("user_hash")?;
    let owned = |v: Option<&str>| v.map(str::to_string);
    (0..batch.num_rows())
        .map(|i| {
            Ok(FeedbackRecord {
                feedback_id: need(feedback_id(i), "feedback_id", i)?.to_string(),
                request_id: need(request_id(i), "request_id", i)?.to_string(),
                ts: DateTime::from_timestamp_micros(need(ts(i), "ts", i)?)
                    .ok_or(ColumnError::OutOfRange { name: "ts", row: i })?,
                score: need(score(i), "score", i)?,
                label: owned(label(i)),
                correction: owned(correction(i)),
                comment: owned(comment(i)),
                user_hash: owned(user_hash(i)),
            })
        })
        .collect()
}

/// What opening the journal found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JournalOpenReport {
    /// The journal ended in a partial line (a crash mid-append); it was
    /// terminated so the next append starts on a fresh line.
    pub torn_tail_repaired: bool,
    /// Conversion of journals left rotated by an interrupted compaction;
    /// `None` when a compaction was running and will see them.
    pub leftovers: Option<FeedbackCompactReport>,
}

/// What converting journals to Parquet did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FeedbackCompactReport {
    /// Whether the live journal was rotated (only its owner may).
    pub rotated_live: bool,
    pub journals_processed: usize,
    pub records: u64,
    pub files_written: usize,
    /// Unparseable lines (torn writes) skipped.
    pub skipped_lines: usize,
}

struct JournalInner {
    root: PathBuf,
    file: Mutex<File>,
    _lock: DirLock,
}

/// The append-only feedback journal of one log root; cheap to clone.
#[derive(Clone)]
pub struct FeedbackJournal {
    inner: Arc<JournalInner>,
}

impl std::fmt::Debug for FeedbackJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedbackJournal")
            .field("root", &self.inner.root)
            .finish()
    }
}

fn open_journal(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(LogStoreError::io(path))
}

/// Makes sure a non-empty journal ends with `\n`; returns whether it did
/// not. Also used by the review queue's journal.
pub(crate) fn repair_tail(file: &mut File, path: &Path) -> Result<bool> {
    use std::io::Read;
    let len = file.metadata().map_err(LogStoreError::io(path))?.len();
    if len == 0 {
        return Ok(false);
    }
    file.seek(std::io::SeekFrom::Start(len - 1))
        .map_err(LogStoreError::io(path))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)
        .map_err(LogStoreError::io(path))?;
    if last[0] == b'\n' {
        return Ok(false);
    }
    tracing::warn!(path = %path.display(), "journal ends in a torn line (crash mid-append); it will be skipped");
    file.write_all(b"\n").map_err(LogStoreError::io(path))?;
    file.sync_data().map_err(LogStoreError::io(path))?;
    Ok(true)
}

impl FeedbackJournal {
    /// Opens (creating) `<dir>/feedback/journal.jsonl` for appending. Holds
    /// `<dir>/.journal.lock` while alive: one appender per log root.
    pub fn open(dir: &Path) -> Result<(FeedbackJournal, JournalOpenReport)> {
        let Some(lock) = DirLock::try_acquire(dir, JOURNAL_LOCK)? else {
            return Err(LogStoreError::Locked {
                path: dir.join(JOURNAL_LOCK),
                what: "another process has the feedback journal open",
            });
        };
        let fdir = dir.join(FEEDBACK_DIR);
        std::fs::create_dir_all(&fdir).map_err(LogStoreError::io(&fdir))?;
        let path = fdir.join(JOURNAL);
        let mut file = open_journal(&path)?;
        durable::sync_dir(&fdir).map_err(LogStoreError::io(&fdir))?;
        let torn_tail_repaired = repair_tail(&mut file, &path)?;
        let leftovers = match DirLock::try_acquire(dir, COMPACT_LOCK)? {
            Some(_c) => Some(process_journals(dir, false)?),
            None => None,
        };
        let journal = FeedbackJournal {
            inner: Arc::new(JournalInner {
                root: dir.to_path_buf(),
                file: Mutex::new(file),
                _lock: lock,
            }),
        };
        Ok((
            journal,
            JournalOpenReport {
                torn_tail_repaired,
                leftovers,
            },
        ))
    }

    /// Validates `record`, appends it as one line and fsyncs. When this
    /// returns `Ok`, the record survives a crash: acknowledge after it.
    /// Blocking (an fsync): from async code use [`Self::append_async`].
    pub fn append(&self, record: &FeedbackRecord) -> Result<()> {
        record.validate()?;
        let mut line = serde_json::to_vec(record).map_err(|e| LogStoreError::Format {
            path: self.journal_path(),
            message: e.to_string(),
        })?;
        line.push(b'\n');
        let path = self.journal_path();
        let mut file = self.inner.file.lock().unwrap_or_else(|p| p.into_inner());
        let before = file.metadata().map_err(LogStoreError::io(&path))?.len();
        let res = file.write_all(&line).and_then(|()| file.sync_data());
        if let Err(e) = res {
            // Do not leave a partial line for the next append to extend.
            let _ = file.set_len(before);
            return Err(LogStoreError::Io { path, source: e });
        }
        Ok(())
    }

    /// [`Self::append`] on the blocking pool.
    pub async fn append_async(&self, record: FeedbackRecord) -> Result<()> {
        let j = self.clone();
        tokio::task::spawn_blocking(move || j.append(&record))
            .await
            .map_err(|e| LogStoreError::Unflushed {
                rows: 1,
                message: e.to_string(),
            })?
    }

    /// Rotates the live journal and converts every rotated journal to
    /// Parquet. Fails with [`LogStoreError::Locked`] if a compaction is
    /// running (it will not see this journal's newest lines; try later).
    pub fn compact(&self) -> Result<FeedbackCompactReport> {
        let root = &self.inner.root;
        let Some(_c) = DirLock::try_acquire(root, COMPACT_LOCK)? else {
            return Err(LogStoreError::Locked {
                path: root.join(COMPACT_LOCK),
                what: "a compaction is running",
            });
        };
        let rotated = {
            let mut file = self.inner.file.lock().unwrap_or_else(|p| p.into_inner());
            let rotated = rotate(&root.join(FEEDBACK_DIR))?;
            if rotated {
                *file = open_journal(&self.journal_path())?;
            }
            rotated
        };
        let mut report = process_journals(root, false)?;
        report.rotated_live = rotated;
        Ok(report)
    }

    pub fn journal_path(&self) -> PathBuf {
        self.inner.root.join(FEEDBACK_DIR).join(JOURNAL)
    }
}

/// Renames a non-empty live journal to `journal-<time>-<uuid>.jsonl` and
/// creates an empty one. Caller holds the journal lock (or its mutex).
fn rotate(fdir: &Path) -> Result<bool> {
    let live = fdir.join(JOURNAL);
    match std::fs::metadata(&live) {
        Ok(m) if m.len() > 0 => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(LogStoreError::Io {
                path: live,
                source: e,
            });
        }
    }
    let name = format!(
        "{ROTATED_PREFIX}{}-{}.jsonl",
        Utc::now().format("%Y%m%dT%H%M%S%6fZ"),
        uuid::Uuid::new_v4().simple()
    );
    std::fs::rename(&live, fdir.join(name)).map_err(LogStoreError::io(&live))?;
    drop(open_journal(&live)?);
    durable::sync_dir(fdir).map_err(LogStoreError::io(fdir))?;
    Ok(true)
}

fn rotated_journals(fdir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in files::entries(fdir)? {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(ROTATED_PREFIX) && name.ends_with(".jsonl") {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Converts rotated journals (after rotating the live one if
/// `rotate_live`). Caller holds the compaction lock. Idempotent: output
/// names are a function of the journal name.
pub(crate) fn process_journals(dir: &Path, rotate_live: bool) -> Result<FeedbackCompactReport> {
    let fdir = dir.join(FEEDBACK_DIR);
    let mut report = FeedbackCompactReport::default();
    if rotate_live {
        report.rotated_live = rotate(&fdir)?;
    }
    for journal in rotated_journals(&fdir)? {
        let (records, skipped) = read_journal(&journal)?;
        report.skipped_lines += skipped;
        report.records += records.len() as u64;
        let stem = journal
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut by_date: BTreeMap<NaiveDate, Vec<FeedbackRecord>> = BTreeMap::new();
        for r in records {
            by_date.entry(r.ts.date_naive()).or_default().push(r);
        }
        for (date, recs) in by_date {
            let name = format!("part-fb-{stem}.parquet");
            let path = fdir.join(files::partition_name(date)).join(&name);
            let batch = records_to_batch(&recs)?;
            files::write_parquet(
                &path,
                feedback_schema(),
                &[batch],
                files::base_metadata(FEEDBACK_DIR, &name),
            )?;
            report.files_written += 1;
        }
        std::fs::remove_file(&journal).map_err(LogStoreError::io(&journal))?;
        durable::sync_dir(&fdir).map_err(LogStoreError::io(&fdir))?;
        report.journals_processed += 1;
    }
    Ok(report)
}

/// The records of one journal file and the number of lines skipped.
fn read_journal(path: &Path) -> Result<(Vec<FeedbackRecord>, usize)> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => {
            return Err(LogStoreError::Io {
                path: path.to_path_buf(),
                source: e,
            });
        }
    };
    let mut out = Vec::new();
    let mut skipped = 0;
    for (i, line) in std::io::BufReader::new(f).split(b'\n').enumerate() {
        let line = line.map_err(LogStoreError::io(path))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<FeedbackRecord>(&line) {
            Ok(r) => out.push(r),
            Err(e) => {
                skipped += 1;
                tracing::warn!(path = %path.display(), line = i + 1, error = %e, "skipping an unreadable feedback journal line (torn write?)");
            }
        }
    }
    Ok((out, skipped))
}

/// All feedback under `sources` (log roots, their `feedback/` folders, or
/// single `.jsonl`/`.parquet` files): journals and Parquet together, one
/// record per `feedback_id`, sorted by time.
pub fn read_feedback(sources: &[impl AsRef<Path>]) -> Result<Vec<FeedbackRecord>> {
    let mut all = Vec::new();
    for src in sources {
        let src = src.as_ref();
        if src.is_file() {
            let name = src.to_string_lossy();
            if name.ends_with(".jsonl") {
                all.extend(read_journal(src)?.0);
            } else if name.ends_with(".parquet") {
                all.extend(read_feedback_parquet(src)?);
            }
            continue;
        }
        let fdir = if src.join(FEEDBACK_DIR).is_dir() {
            src.join(FEEDBACK_DIR)
        } else {
            src.to_path_buf()
        };
        for (_, part) in files::partition_dirs(&fdir)? {
            for f in files::partition_files(&part)?.live {
                all.extend(read_feedback_parquet(&f)?);
            }
        }
        for j in rotated_journals(&fdir)? {
            all.extend(read_journal(&j)?.0);
        }
        all.extend(read_journal(&fdir.join(JOURNAL))?.0);
    }
    // The first of each id, found without copying the ids.
    let keep: Vec<bool> = {
        let mut seen = HashSet::with_capacity(all.len());
        all.iter()
            .map(|r| seen.insert(r.feedback_id.as_str()))
            .collect()
    };
    let mut keep = keep.into_iter();
    all.retain(|_| keep.next().unwrap_or(true));
    // No two records share an id any more: an unstable sort is exact.
    all.sort_unstable_by(|a, b| {
        a.ts.cmp(&b.ts)
            .then_with(|| a.feedback_id.cmp(&b.feedback_id))
    });
    Ok(all)
}

fn read_feedback_parquet(path: &Path) -> Result<Vec<FeedbackRecord>> {
    let mut out = Vec::new();
    for batch in files::read_parquet(path)?.0 {
        out.extend(
            records_from_batch(&batch).map_err(|source| LogStoreError::Columns {
                path: path.to_path_buf(),
                source,
            })?,
        );
    }
    Ok(out)
}

/// A request row with the feedback given on it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestWithFeedback<'a> {
    pub request: &'a RequestLogRow,
    /// Sorted by time.
    pub feedback: Vec<&'a FeedbackRecord>,
}

impl RequestWithFeedback<'_> {
    /// The latest score given, if any (a user's revised opinion wins).
    #[cfg(test)]
    pub fn score(&self) -> Option<f64> {
        self.feedback.last().map(|f| f.score)
    }
}

/// Requests joined with their feedback by `request_id`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeedbackJoin<'a> {
    /// Every request, in input order, with its feedback (possibly none).
    pub requests: Vec<RequestWithFeedback<'a>>,
    /// Feedback whose request row is not among `requests` (not flushed yet,
    /// another replica, or outside the time window).
    pub orphans: Vec<&'a FeedbackRecord>,
}

/// Joins at read time: storage of requests and feedback is independent.
pub fn join_feedback<'a>(
    requests: &'a [RequestLogRow],
    feedback: &'a [FeedbackRecord],
) -> FeedbackJoin<'a> {
    let mut by_request: BTreeMap<&str, Vec<&FeedbackRecord>> = BTreeMap::new();
    for f in feedback {
        by_request.entry(f.request_id.as_str()).or_default().push(f);
    }
    for v in by_request.values_mut() {
        v.sort_by(|a, b| {
            a.ts.cmp(&b.ts)
                .then_with(|| a.feedback_id.cmp(&b.feedback_id))
        });
    }
    let known: HashSet<&str> = requests.iter().map(|r| r.request_id.as_str()).collect();
    let orphans = feedback
        .iter()
        .filter(|f| !known.contains(f.request_id.as_str()))
        .collect();
    let requests = requests
        .iter()
        .map(|r| RequestWithFeedback {
            request: r,
            feedback: by_request
                .get(r.request_id.as_str())
                .cloned()
                .unwrap_or_default(),
        })
        .collect();
    FeedbackJoin { requests, orphans }
}
