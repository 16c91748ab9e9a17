//! The dashboard's view of the request and feedback logs: the columns the
//! overview and the calls table need, read by projection (never the text
//! columns) and kept per file, keyed by the file's path, length and
//! modification time. Log files are immutable once visible (the writer
//! renames a finished file into place; compaction writes a new file and
//! retires the old ones), so a refresh re-reads only the files that
//! appeared since the last one and drops the ones that left the set.
//! Feedback is re-read only when a file under `feedback/` changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType, UInt64Type};
use chrono::{DateTime, Utc};

use super::UiError;
use crate::drift::features::{IdMap, id_hash};
use crate::drift::read::{arrow_err, format_err, opt_str, reader, str_col};
use crate::logstore::{self, FEEDBACK_DIR, FeedbackRecord, RequestFilter};

/// The columns read from every request file.
const COLUMNS: &[&str] = &[
    "request_id",
    "ts",
    "prompt_id",
    "variant",
    "model",
    "status",
    "latency_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "cost",
    "online_pass",
];

/// One logged call, as the overview and the table see it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSummary {
    pub request_id: String,
    /// [`id_hash`] of `request_id`: the overview joins feedback on it, since
    /// probing a map of a million `String` keys dominated a warm refresh.
    pub id_hash: u64,
    /// Microseconds since the epoch, UTC.
    pub ts: i64,
    /// Index into [`FileCalls::groups`].
    pub group: u16,
    pub status: Status,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: f64,
    pub online_pass: Option<bool>,
}

/// The statuses the dashboard counts apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Error,
    Timeout,
    ClientClosed,
    Other,
}

impl Status {
    fn parse(s: &str) -> Status {
        match s {
            "ok" => Status::Ok,
            "error" => Status::Error,
            "timeout" => Status::Timeout,
            "client_closed" => Status::ClientClosed,
            _ => Status::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::ClientClosed => "client_closed",
            Status::Other => "other",
        }
    }
}

/// Which prompt (or `model:<name>` for a pass-through call) and variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group {
    pub prompt: String,
    pub variant: String,
}

/// The calls of one file.
#[derive(Debug)]
pub struct FileCalls {
    pub path: PathBuf,
    pub groups: Vec<Group>,
    pub calls: Vec<CallSummary>,
}

type FileKey = (PathBuf, u64, Option<SystemTime>);

/// The latest feedback per request, and every record for the call page.
#[derive(Debug, Default)]
pub struct Feedback {
    pub by_request: HashMap<String, Vec<FeedbackRecord>>,
    /// The latest score per [`id_hash`] of the request id. Two ids sharing a
    /// 64-bit hash (odds about 1e-8 among a million calls) would share a
    /// score in the overview; the call page reads `by_request`.
    latest_by_hash: IdMap<f64>,
}

impl Feedback {
    pub fn from_records(records: impl IntoIterator<Item = FeedbackRecord>) -> Feedback {
        let mut by_request: HashMap<String, Vec<FeedbackRecord>> = HashMap::new();
        for r in records {
            by_request.entry(r.request_id.clone()).or_default().push(r);
        }
        let latest_by_hash = by_request
            .iter()
            .filter_map(|(id, v)| {
                let latest = v.iter().max_by_key(|r| r.ts)?;
                Some((id_hash(id), latest.score))
            })
            .collect();
        Feedback {
            by_request,
            latest_by_hash,
        }
    }

    /// The latest score given to `request_id`.
    pub fn latest(&self, request_id: &str) -> Option<f64> {
        self.by_request
            .get(request_id)
            .and_then(|v| v.iter().max_by_key(|r| r.ts))
            .map(|r| r.score)
    }

    /// The latest score given to the call whose id hashes to `id_hash`.
    pub fn latest_by_hash(&self, id_hash: u64) -> Option<f64> {
        self.latest_by_hash.get(&id_hash).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.by_request.is_empty()
    }
}

/// What one refresh found: every file's calls and the feedback.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub files: Vec<Arc<FileCalls>>,
    pub feedback: Arc<Feedback>,
    /// Files read (not served from the cache) by this refresh.
    pub files_read: usize,
}

/// Cache of projected request files and of the feedback, shared by every
/// page of one dashboard.
#[derive(Debug)]
pub struct LogCache {
    roots: Vec<PathBuf>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    files: HashMap<FileKey, Arc<FileCalls>>,
    feedback_key: Vec<FileKey>,
    feedback: Arc<Feedback>,
}

impl LogCache {
    pub fn new(roots: Vec<PathBuf>) -> LogCache {
        LogCache {
            roots,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The calls of the files that may hold rows at or after `since`, and
    /// the feedback, reading only what changed since the last refresh.
    pub fn refresh(&self, since: DateTime<Utc>) -> Result<Snapshot, UiError> {
        let filter = RequestFilter {
            since: Some(since),
            ..RequestFilter::default()
        };
        let roots: Vec<&PathBuf> = self.roots.iter().filter(|r| r.exists()).collect();
        let paths = logstore::request_files(&roots, &filter)?;
        let keys: Vec<FileKey> = paths.into_iter().map(|p| file_key(&p)).collect();
        let feedback_key = self.feedback_files()?;
        // Reading happens outside the lock; a concurrent refresh may read
        // the same new file twice, which costs time, not correctness.
        let (known, stale_feedback) = {
            let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let known: HashMap<FileKey, Arc<FileCalls>> = keys
                .iter()
                .filter_map(|k| inner.files.get(k).map(|f| (k.clone(), f.clone())))
                .collect();
            (known, inner.feedback_key != feedback_key)
        };
        let mut files = Vec::with_capacity(keys.len());
        let mut fresh = Vec::new();
        for k in &keys {
            match known.get(k) {
                Some(f) => files.push(f.clone()),
                None => {
                    let f = Arc::new(read_calls(&k.0)?);
                    fresh.push((k.clone(), f.clone()));
                    files.push(f);
                }
            }
        }
        let feedback = if stale_feedback {
            Some(Arc::new(self.read_feedback()?))
        } else {
            None
        };
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // Files that left the set (compacted, out of every window) go.
        let live: std::collections::HashSet<&FileKey> = keys.iter().collect();
        inner.files.retain(|k, _| live.contains(k));
        let files_read = fresh.len();
        inner.files.extend(fresh);
        if let Some(f) = feedback {
            inner.feedback = f;
            inner.feedback_key = feedback_key;
        }
        Ok(Snapshot {
            files,
            feedback: inner.feedback.clone(),
            files_read,
        })
    }

    fn feedback_dirs(&self) -> Vec<PathBuf> {
        self.roots
            .iter()
            .map(|r| r.join(FEEDBACK_DIR))
            .filter(|d| d.is_dir())
            .collect()
    }

    fn feedback_files(&self) -> Result<Vec<FileKey>, UiError> {
        let mut out = Vec::new();
        for d in self.feedback_dirs() {
            walk_files(&d, &mut out)?;
        }
        out.sort();
        Ok(out)
    }

    fn read_feedback(&self) -> Result<Feedback, UiError> {
        Ok(Feedback::from_records(logstore::read_feedback(
            &self.feedback_dirs(),
        )?))
    }
}

fn file_key(p: &Path) -> FileKey {
    let meta = std::fs::metadata(p).ok();
    (
        p.to_path_buf(),
        meta.as_ref().map_or(0, std::fs::Metadata::len),
        meta.and_then(|m| m.modified().ok()),
    )
}

fn walk_files(dir: &Path, out: &mut Vec<FileKey>) -> Result<(), UiError> {
    let entries = std::fs::read_dir(dir).map_err(|source| UiError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk_files(&p, out)?;
        } else {
            out.push(file_key(&p));
        }
    }
    Ok(())
}

/// Reads the projected columns of one request file.
fn read_calls(path: &Path) -> Result<FileCalls, UiError> {
    let r = reader(path, COLUMNS, None, None, false)?;
    let mut groups: Vec<Group> = Vec::new();
    let mut group_ids: HashMap<(String, String), u16> = HashMap::new();
    let mut calls = Vec::new();
    for batch in r {
        let batch = batch.map_err(arrow_err(path))?;
        let f64_col = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Float64Type>())
        };
        let u64_col = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<UInt64Type>())
        };
        let ids = str_col(&batch, "request_id", path)?;
        let ts = batch
            .column_by_name("ts")
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
            .ok_or_else(|| format_err(path, "missing or mistyped column `ts`"))?;
        let prompt = str_col(&batch, "prompt_id", path)?;
        let variant = str_col(&batch, "variant", path)?;
        let model = str_col(&batch, "model", path)?;
        let status = str_col(&batch, "status", path)?;
        let latency = f64_col("latency_ms");
        let ttft = f64_col("ttft_ms");
        let cost = f64_col("cost");
        let (tin, tout) = (u64_col("input_tokens"), u64_col("output_tokens"));
        let online = batch
            .column_by_name("online_pass")
            .and_then(|c| c.as_boolean_opt());
        let f = |a: Option<&arrow_array::Float64Array>, i: usize| {
            a.and_then(|a| a.is_valid(i).then(|| a.value(i)))
        };
        let u = |a: Option<&arrow_array::UInt64Array>, i: usize| {
            a.and_then(|a| a.is_valid(i).then(|| a.value(i)))
                .unwrap_or(0)
        };
        for i in 0..batch.num_rows() {
            let prompt = match opt_str(prompt, i) {
                Some(p) => p.to_string(),
                None => format!("model:{}", opt_str(model, i).unwrap_or("")),
            };
            let variant = opt_str(variant, i).unwrap_or("none").to_string();
            let next = u16::try_from(groups.len()).unwrap_or(u16::MAX);
            let group = *group_ids
                .entry((prompt.clone(), variant.clone()))
                .or_insert_with(|| {
                    groups.push(Group { prompt, variant });
                    next
                });
            let request_id = opt_str(ids, i).unwrap_or("");
            calls.push(CallSummary {
                id_hash: id_hash(request_id),
                request_id: request_id.to_string(),
                ts: if ts.is_valid(i) { ts.value(i) } else { 0 },
                group,
                status: Status::parse(opt_str(status, i).unwrap_or("")),
                latency_ms: f(latency, i).unwrap_or(0.0),
                ttft_ms: f(ttft, i),
                input_tokens: u(tin, i),
                output_tokens: u(tout, i),
                cost: f(cost, i).unwrap_or(0.0),
                online_pass: online.and_then(|a| a.is_valid(i).then(|| a.value(i))),
            });
        }
    }
    Ok(FileCalls {
        path: path.to_path_buf(),
        groups,
        calls,
    })
}
