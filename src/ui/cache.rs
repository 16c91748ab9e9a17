//! The dashboard's view of the request and feedback logs: the columns the
//! overview and the calls table need, read by projection (never the text
//! columns) and kept per file, keyed by the file's path, length and
//! modification time. Log files are immutable once visible (the writer
//! renames a finished file into place; compaction writes a new file and
//! retires the old ones), so a refresh re-reads only the files that
//! appeared since the last one and drops the ones that left the set.
//! Feedback is re-read only when a file under `feedback/` changed.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// The statuses the dashboard counts apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
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

/// The calls of one file, column by column (the overview's loop touches
/// only the numbers it sums; request ids are cold data kept apart), ordered
/// by group then time so that one group's calls in any interval are one
/// contiguous range: an interval's figures are sums over slices and its
/// values for the percentiles one copy.
#[derive(Debug, Default)]
pub struct FileCalls {
    pub path: PathBuf,
    pub groups: Vec<Group>,
    /// `runs[g]`: the indices of the calls of `groups[g]`, ordered by `ts`.
    pub runs: Vec<Range<usize>>,
    /// Microseconds since the epoch, UTC.
    pub ts: Vec<i64>,
    pub status: Vec<Status>,
    pub latency_ms: Vec<f64>,
    pub input_tokens: Vec<u64>,
    pub output_tokens: Vec<u64>,
    pub cost: Vec<f64>,
    pub online_pass: Vec<Option<bool>>,
    /// [`id_hash`] of each request id: feedback is joined on it, since
    /// probing a map of a million `String` keys dominated a refresh.
    pub id_hash: Vec<u64>,
    /// The time-to-first-token values of the calls that have one, in call
    /// order; `ttft_before[i]` counts those among the first `i` calls, so
    /// the values of calls `a..b` are `ttft_ms[ttft_before[a]..ttft_before[b]]`.
    ttft_ms: Vec<f64>,
    ttft_before: Vec<usize>,
    /// Every request id end to end; `id_ends[i]` is where call `i`'s ends.
    ids: String,
    id_ends: Vec<usize>,
}

impl FileCalls {
    /// How many calls.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn request_id(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.id_ends[i - 1] };
        &self.ids[start..self.id_ends[i]]
    }

    #[cfg(test)]
    pub fn ttft(&self, i: usize) -> Option<f64> {
        let k = self.ttft_before[i];
        (self.ttft_before[i + 1] > k).then(|| self.ttft_ms[k])
    }

    /// The time-to-first-token values of calls `range`.
    pub fn ttft_in(&self, range: Range<usize>) -> &[f64] {
        &self.ttft_ms[self.ttft_before[range.start]..self.ttft_before[range.end]]
    }
}

/// One call, as [`FileCallsBuilder::push`] takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord<'a> {
    pub request_id: &'a str,
    pub ts: i64,
    pub status: Status,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: f64,
    pub online_pass: Option<bool>,
}

/// Up to how many groups [`FileCallsBuilder::group`] scans.
const SCAN_GROUPS: usize = 8;

/// Gathers a file's calls in file order; [`FileCallsBuilder::finish`] orders
/// them by group and time.
#[derive(Debug, Default)]
pub struct FileCallsBuilder {
    groups: Vec<Group>,
    /// prompt -> variant -> index into `groups`.
    index: HashMap<String, HashMap<String, usize>>,
    group: Vec<u16>,
    ttft: Vec<Option<f64>>,
    calls: FileCalls,
}

impl FileCallsBuilder {
    /// The index of the group `(prompt, variant)`, added if new. Files
    /// mostly hold a handful of groups, where a scan beats hashing two
    /// strings per call; past [`SCAN_GROUPS`] a map finds them.
    pub fn group(&mut self, prompt: &str, variant: &str) -> u16 {
        let found = if self.groups.len() <= SCAN_GROUPS {
            self.groups
                .iter()
                .position(|g| g.variant == variant && g.prompt == prompt)
        } else {
            self.index.get(prompt).and_then(|v| v.get(variant)).copied()
        };
        if let Some(i) = found {
            return u16::try_from(i).unwrap_or(u16::MAX);
        }
        let i = self.groups.len();
        self.groups.push(Group {
            prompt: prompt.to_string(),
            variant: variant.to_string(),
        });
        self.index
            .entry(prompt.to_string())
            .or_default()
            .insert(variant.to_string(), i);
        u16::try_from(i).unwrap_or(u16::MAX)
    }

    pub fn push(&mut self, group: u16, call: CallRecord<'_>) {
        let c = &mut self.calls;
        self.group.push(group);
        c.ts.push(call.ts);
        c.status.push(call.status);
        c.latency_ms.push(call.latency_ms);
        self.ttft.push(call.ttft_ms);
        c.input_tokens.push(call.input_tokens);
        c.output_tokens.push(call.output_tokens);
        c.cost.push(call.cost);
        c.online_pass.push(call.online_pass);
        c.id_hash.push(id_hash(call.request_id));
        c.ids.push_str(call.request_id);
        c.id_ends.push(c.ids.len());
    }

    pub fn finish(self, path: &Path) -> FileCalls {
        let FileCallsBuilder {
            groups,
            group,
            ttft,
            mut calls,
            index: _,
        } = self;
        let n = group.len();
        let key = |i: usize| (group[i], calls.ts[i]);
        let sorted = (1..n).all(|i| key(i - 1) <= key(i));
        let mut c = if sorted {
            calls.ttft_before = Vec::with_capacity(n + 1);
            calls.ttft_before.push(0);
            for t in &ttft {
                if let Some(t) = t {
                    calls.ttft_ms.push(*t);
                }
                calls.ttft_before.push(calls.ttft_ms.len());
            }
            calls
        } else {
            let mut order: Vec<usize> = (0..n).collect();
            // Stable: calls at the same time keep their file order.
            order.sort_by_key(|&i| key(i));
            let mut out = FileCalls {
                ts: permute(&calls.ts, &order),
                status: permute(&calls.status, &order),
                latency_ms: permute(&calls.latency_ms, &order),
                input_tokens: permute(&calls.input_tokens, &order),
                output_tokens: permute(&calls.output_tokens, &order),
                cost: permute(&calls.cost, &order),
                online_pass: permute(&calls.online_pass, &order),
                id_hash: permute(&calls.id_hash, &order),
                ids: String::with_capacity(calls.ids.len()),
                id_ends: Vec::with_capacity(n),
                ttft_before: Vec::with_capacity(n + 1),
                ..FileCalls::default()
            };
            out.ttft_before.push(0);
            for &i in &order {
                out.ids.push_str(calls.request_id(i));
                out.id_ends.push(out.ids.len());
                if let Some(t) = ttft[i] {
                    out.ttft_ms.push(t);
                }
                out.ttft_before.push(out.ttft_ms.len());
            }
            out
        };
        let mut sizes = vec![0usize; groups.len()];
        for g in &group {
            sizes[usize::from(*g)] += 1;
        }
        let mut start = 0;
        c.runs = sizes
            .into_iter()
            .map(|k| {
                start += k;
                start - k..start
            })
            .collect();
        c.groups = groups;
        c.path = path.to_path_buf();
        c
    }
}

fn permute<T: Copy>(values: &[T], order: &[usize]) -> Vec<T> {
    order.iter().map(|&i| values[i]).collect()
}

type FileKey = (std::ffi::OsString, u64, Option<SystemTime>);

/// Every feedback record, found by request id for the call page and the
/// table, and the latest score per request id hash for the overview. Built
/// with no map keyed by `String` (hashing half a million ids with SipHash
/// and allocating a list per id made most of a cold start).
#[derive(Debug, Default)]
pub struct Feedback {
    /// As read: in time order.
    records: Vec<FeedbackRecord>,
    /// ([`id_hash`] of the request id, index into `records`), ordered by
    /// hash then index: a request's records are one run, in time order.
    by_hash: Vec<(u64, usize)>,
    /// The latest score per [`id_hash`] of the request id. Two ids sharing a
    /// 64-bit hash (odds about 1e-8 among a million calls) would share a
    /// score in the overview; the call page and the table compare the ids.
    latest_by_hash: IdMap<f64>,
}

impl Feedback {
    pub fn from_records(records: impl IntoIterator<Item = FeedbackRecord>) -> Feedback {
        let records: Vec<FeedbackRecord> = records.into_iter().collect();
        let mut by_hash: Vec<(u64, usize)> = records
            .iter()
            .enumerate()
            .map(|(i, r)| (id_hash(&r.request_id), i))
            .collect();
        by_hash.sort_unstable();
        let mut latest_by_hash = IdMap::default();
        latest_by_hash.reserve(by_hash.len());
        for run in by_hash.chunk_by(|a, b| a.0 == b.0) {
            if let Some(r) = latest(run.iter().map(|(_, i)| &records[*i])) {
                latest_by_hash.insert(run[0].0, r.score);
            }
        }
        Feedback {
            records,
            by_hash,
            latest_by_hash,
        }
    }

    /// Every record given to `request_id`, oldest first.
    pub fn records_of<'a>(
        &'a self,
        request_id: &'a str,
    ) -> impl Iterator<Item = &'a FeedbackRecord> + 'a {
        let h = id_hash(request_id);
        let start = self.by_hash.partition_point(|(x, _)| *x < h);
        self.by_hash[start..]
            .iter()
            .take_while(move |(x, _)| *x == h)
            .map(|(_, i)| &self.records[*i])
            .filter(move |r| r.request_id == request_id)
    }

    /// The latest score given to `request_id`.
    pub fn latest(&self, request_id: &str) -> Option<f64> {
        latest(self.records_of(request_id)).map(|r| r.score)
    }

    /// The latest score given to the call whose id hashes to `id_hash`.
    pub fn latest_by_hash(&self, id_hash: u64) -> Option<f64> {
        self.latest_by_hash.get(&id_hash).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// The latest of `records` (the last of those given at the latest time).
fn latest<'a>(records: impl Iterator<Item = &'a FeedbackRecord>) -> Option<&'a FeedbackRecord> {
    records.max_by_key(|r| r.ts)
}

/// The latest feedback score of each call of one file that has one, by
/// call index ascending: the overview finds an interval's scores as one
/// slice instead of probing a map per call.
pub type FileScores = Arc<[(usize, f64)]>;

/// What one refresh found: every file's calls and the feedback.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub files: Vec<Arc<FileCalls>>,
    /// Per file (same order), its calls' scores from `feedback`.
    pub scores: Vec<FileScores>,
    pub feedback: Arc<Feedback>,
    /// Files read (not served from the cache) by this refresh.
    pub files_read: usize,
}

impl Snapshot {
    /// `files` joined with `feedback`.
    #[cfg(test)]
    pub fn new(files: Vec<Arc<FileCalls>>, feedback: Arc<Feedback>) -> Snapshot {
        let scores = parallel_map(&files, |f| join_feedback(f, &feedback));
        Snapshot {
            files,
            scores,
            feedback,
            files_read: 0,
        }
    }
}

/// The scores of `file`'s calls in `feedback`.
fn join_feedback(file: &FileCalls, feedback: &Feedback) -> FileScores {
    if feedback.is_empty() {
        return Arc::from([]);
    }
    file.id_hash
        .iter()
        .enumerate()
        .filter_map(|(i, h)| feedback.latest_by_hash(*h).map(|s| (i, s)))
        .collect()
}

/// `f` over `items` on every core, results in the order of `items`.
pub(crate) fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut out: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, f(item)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    out.sort_unstable_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
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
    /// Each cached file joined with `feedback`.
    scores: HashMap<FileKey, FileScores>,
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
    /// the feedback, reading only what changed since the last refresh
    /// (new files on every core, beside the feedback when it changed).
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
        let (known, known_scores, feedback) = {
            let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let known: HashMap<FileKey, Arc<FileCalls>> = keys
                .iter()
                .filter_map(|k| inner.files.get(k).map(|f| (k.clone(), f.clone())))
                .collect();
            let fresh_feedback = inner.feedback_key == feedback_key;
            let scores: HashMap<FileKey, FileScores> = if fresh_feedback {
                keys.iter()
                    .filter_map(|k| inner.scores.get(k).map(|s| (k.clone(), s.clone())))
                    .collect()
            } else {
                HashMap::new()
            };
            (
                known,
                scores,
                fresh_feedback.then(|| inner.feedback.clone()),
            )
        };
        let missing: Vec<&FileKey> = keys.iter().filter(|k| !known.contains_key(*k)).collect();
        let (read, feedback) = std::thread::scope(|scope| {
            let feedback_read = feedback
                .is_none()
                .then(|| scope.spawn(|| self.read_feedback().map(Arc::new)));
            let read = parallel_map(&missing, |k| read_calls(Path::new(&k.0)).map(Arc::new));
            let feedback = match (feedback, feedback_read) {
                (Some(f), _) => Ok(f),
                (None, Some(h)) => h
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                (None, None) => Ok(Arc::default()),
            };
            (read, feedback)
        });
        let feedback = feedback?;
        let mut fresh = HashMap::new();
        for (k, f) in missing.into_iter().zip(read) {
            fresh.insert(k.clone(), f?);
        }
        let files: Vec<Arc<FileCalls>> = keys
            .iter()
            .filter_map(|k| known.get(k).or_else(|| fresh.get(k)).cloned())
            .collect();
        let unjoined: Vec<usize> = (0..keys.len())
            .filter(|i| !known_scores.contains_key(&keys[*i]))
            .collect();
        let joined = parallel_map(&unjoined, |i| join_feedback(&files[*i], &feedback));
        let mut new_scores: HashMap<&FileKey, FileScores> = HashMap::new();
        for (i, s) in unjoined.into_iter().zip(joined) {
            new_scores.insert(&keys[i], s);
        }
        let scores: Vec<FileScores> = keys
            .iter()
            .filter_map(|k| known_scores.get(k).or_else(|| new_scores.get(k)).cloned())
            .collect();

        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // Files that left the set (compacted, out of every window) go.
        let live: std::collections::HashSet<&FileKey> = keys.iter().collect();
        inner.files.retain(|k, _| live.contains(k));
        let files_read = fresh.len();
        inner.files.extend(fresh);
        if !Arc::ptr_eq(&inner.feedback, &feedback) && inner.feedback_key != feedback_key {
            inner.feedback = feedback.clone();
            inner.feedback_key = feedback_key;
            inner.scores.clear();
        }
        // Scores are kept only against the feedback they were joined with.
        if Arc::ptr_eq(&inner.feedback, &feedback) {
            inner.scores.retain(|k, _| live.contains(k));
            for (k, s) in new_scores {
                inner.scores.insert(k.clone(), s);
            }
        }
        Ok(Snapshot {
            files,
            scores,
            feedback,
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
        p.as_os_str().to_owned(),
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
    let mut out = FileCallsBuilder::default();
    let mut pass_through = String::new();
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
                Some(p) => p,
                None => {
                    pass_through.clear();
                    pass_through.push_str("model:");
                    pass_through.push_str(opt_str(model, i).unwrap_or(""));
                    &pass_through
                }
            };
            let group = out.group(prompt, opt_str(variant, i).unwrap_or("none"));
            out.push(
                group,
                CallRecord {
                    request_id: opt_str(ids, i).unwrap_or(""),
                    ts: if ts.is_valid(i) { ts.value(i) } else { 0 },
                    status: Status::parse(opt_str(status, i).unwrap_or("")),
                    latency_ms: f(latency, i).unwrap_or(0.0),
                    ttft_ms: f(ttft, i),
                    input_tokens: u(tin, i),
                    output_tokens: u(tout, i),
                    cost: f(cost, i).unwrap_or(0.0),
                    online_pass: online.and_then(|a| a.is_valid(i).then(|| a.value(i))),
                },
            );
        }
    }
    Ok(out.finish(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, ts: i64, ttft_ms: Option<f64>) -> CallRecord<'_> {
        CallRecord {
            request_id: id,
            ts,
            status: Status::Ok,
            latency_ms: ts as f64,
            ttft_ms,
            input_tokens: 1,
            output_tokens: 2,
            cost: 0.5,
            online_pass: None,
        }
    }

    #[test]
    fn a_files_calls_are_ordered_by_group_then_time_with_their_ids_and_ttft() {
        let mut b = FileCallsBuilder::default();
        let a = b.group("p", "stable");
        let c = b.group("p", "canary");
        assert_eq!(b.group("p", "stable"), a);
        b.push(a, record("a3", 30, Some(3.0)));
        b.push(c, record("c1", 10, None));
        b.push(a, record("a1", 10, None));
        b.push(a, record("a2", 20, Some(2.0)));
        b.push(c, record("c2", 5, Some(7.0)));
        let f = b.finish(Path::new("f"));
        assert_eq!(f.runs, vec![0..3, 3..5]);
        assert_eq!(f.ts, vec![10, 20, 30, 5, 10]);
        let ids: Vec<&str> = (0..f.len()).map(|i| f.request_id(i)).collect();
        assert_eq!(ids, ["a1", "a2", "a3", "c2", "c1"]);
        assert_eq!(f.latency_ms, vec![10.0, 20.0, 30.0, 5.0, 10.0]);
        let ttft: Vec<Option<f64>> = (0..f.len()).map(|i| f.ttft(i)).collect();
        assert_eq!(ttft, [None, Some(2.0), Some(3.0), Some(7.0), None]);
        assert_eq!(f.ttft_in(1..4), [2.0, 3.0, 7.0]);
        assert_eq!(f.id_hash[3], id_hash("c2"));
    }

    #[test]
    fn feedback_joins_on_the_calls_latest_score_by_index() {
        let mut b = FileCallsBuilder::default();
        let g = b.group("p", "stable");
        for (id, ts) in [("x", 3), ("y", 1), ("z", 2)] {
            b.push(g, record(id, ts, None));
        }
        let file = Arc::new(b.finish(Path::new("f")));
        let mut old = FeedbackRecord::new("x", 0.0);
        old.ts -= chrono::Duration::seconds(5);
        let feedback = Feedback::from_records([
            old,
            FeedbackRecord::new("x", 1.0),
            FeedbackRecord::new("y", 0.25),
        ]);
        let snap = Snapshot::new(vec![file], Arc::new(feedback));
        // In time order: y (index 0), z, x (index 2).
        assert_eq!(&*snap.scores[0], &[(0, 0.25), (2, 1.0)]);
    }

    #[test]
    fn a_requests_records_come_oldest_first_and_the_latest_wins() {
        let at = |id: &str, score: f64, secs: i64| {
            let mut r = FeedbackRecord::new(id, score);
            r.ts = DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default();
            r
        };
        let mut records = vec![at("a", 0.1, 1), at("b", 0.5, 2), at("a", 0.9, 3)];
        records.extend((0..50).map(|i| at(&format!("other{i}"), 0.0, i)));
        records.sort_by_key(|r| r.ts);
        let fb = Feedback::from_records(records);
        let scores: Vec<f64> = fb.records_of("a").map(|r| r.score).collect();
        assert_eq!(scores, [0.1, 0.9]);
        assert_eq!(fb.latest("a"), Some(0.9));
        assert_eq!(fb.latest_by_hash(id_hash("a")), Some(0.9));
        assert_eq!(fb.latest("b"), Some(0.5));
        assert_eq!(fb.latest("c"), None);
        assert_eq!(fb.records_of("c").count(), 0);
        assert!(Feedback::default().is_empty() && !fb.is_empty());
    }

    #[test]
    fn many_groups_keep_their_indices_past_the_scan() {
        let mut b = FileCallsBuilder::default();
        let names: Vec<String> = (0..3 * SCAN_GROUPS).map(|i| format!("p{i}")).collect();
        let first: Vec<u16> = names.iter().map(|p| b.group(p, "v")).collect();
        let again: Vec<u16> = names.iter().map(|p| b.group(p, "v")).collect();
        assert_eq!(first, again);
        assert_eq!(first, (0..3 * SCAN_GROUPS as u16).collect::<Vec<_>>());
        assert_eq!(b.group("p3", "w"), 3 * SCAN_GROUPS as u16);
    }
}
