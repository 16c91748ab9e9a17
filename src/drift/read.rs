//! Reading the two windows from request logs: one or several log roots
//! (one per replica), Parquet files read by column projection, row group by
//! row group, in two passes.
//!
//! 1. Keys: `request_id, ts, prompt_id, prompt_version, commit, variant,
//!    model` of every row, to place each row in its group (prompt, or
//!    `model:<name>` for pass-through calls) and choose the windows. A call
//!    is never in both windows: the current window skips reference calls.
//! 2. Features, only for the row groups holding chosen rows and only those
//!    rows (a row selection): the numeric and status columns of every
//!    chosen call, and the text columns (variables, messages, output, online
//!    scores) of the text sample: a uniform draw of at most `sample_rows`
//!    calls per window, decided by a hash of the request id so every run
//!    reads the same calls. Files with the write-time `history_turns`
//!    column skip `messages` (the largest text column) unless pass-through
//!    calls are sampled; older files count the turns in the text.
//!
//! Canary calls are left out of `first:`, `last:` and time windows (the
//! canary is judged by canary analysis; its traffic would look like drift
//! of the stable prompt); `commit:` windows take every call of the commit.
//! Files are read by two threads (in pass 2, a file's chosen rows may be
//! split between them); results are merged in file and row order, and no
//! statistic depends on the order of calls.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMicrosecondType, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::file::metadata::PageIndexPolicy;

use super::DriftError;
use super::analysis::{GroupWindow, WindowSet};
use super::features::{
    ColumnsView, Extractor, FeedbackView, GroupKind, IdMap, OutputSpec, TextView, WindowFeatures,
    id_hash, unit,
};
use crate::logstore::{self, FEEDBACK_DIR, RequestFilter};
use crate::spec::drift::DriftConfig;

/// How a window picks calls, resolved from a [`crate::spec::drift::WindowSpec`]
/// with the repository's state and the clock.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// The first `n` calls served by the stable version: per prompt, the
    /// calls logged with `versions[prompt]` (its blob at the stable ref);
    /// pass-through calls of `stable_commit`. A prompt without a known
    /// stable version: its first `n` calls.
    First {
        n: u64,
        versions: BTreeMap<String, String>,
        stable_commit: Option<String>,
    },
    /// The latest `n` calls.
    Last(u64),
    /// Calls at or after `from` and before `until` (microseconds).
    Range {
        from: Option<i64>,
        until: Option<i64>,
    },
    /// Calls served from a commit (a prefix of its id).
    Commit(String),
}

/// What to read.
#[derive(Debug, Clone)]
pub struct LogQuery {
    /// Log roots, partition folders or files.
    pub logs: Vec<PathBuf>,
    /// None: the reference is not in the logs (a dataset window).
    pub reference: Option<(String, Selector)>,
    pub current: (String, Selector),
    /// Groups to compare (prompt ids, `model:<name>`); empty: all.
    pub groups: Vec<String>,
    /// What each prompt declares about its output.
    pub outputs: BTreeMap<String, OutputSpec>,
}

/// Both windows, read.
#[derive(Debug, Clone, Default)]
pub struct LogWindows {
    pub reference: WindowSet,
    pub current: WindowSet,
    pub files: usize,
    pub rows_scanned: u64,
}

/// What reading did so far, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub pass: u8,
    pub files_done: usize,
    pub files: usize,
}

/// The group name of a pass-through model.
pub fn model_group(model: &str) -> String {
    format!("model:{model}")
}

const REFERENCE: u8 = 1;
const CURRENT: u8 = 2;

/// Interned strings of pass 1.
#[derive(Default)]
struct Interner {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

/// The last string looked up in a column and its id: consecutive calls
/// mostly share their prompt, version and commit, so most lookups are one
/// comparison instead of a hash.
#[derive(Default)]
struct LastSeen(Option<(Box<str>, u32)>);

impl LastSeen {
    fn id(&mut self, interner: &mut Interner, s: &str) -> u32 {
        if let Some((last, id)) = &self.0
            && **last == *s
        {
            return *id;
        }
        let id = interner.id(s);
        self.0 = Some((s.into(), id));
        id
    }
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.into());
        self.ids.insert(s.into(), i);
        i
    }

    fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }
}

/// One row's keys from pass 1.
#[derive(Clone, Copy)]
struct KeyRow {
    ts: i64,
    id_hash: u64,
    file: u32,
    row: u32,
    group: u32,
    version: u32,
    commit: u32,
    canary: bool,
}

/// A chosen row for pass 2.
#[derive(Clone, Copy)]
struct Chosen {
    row: u32,
    window: u8,
    group: u32,
    text: bool,
    language: bool,
    id_hash: u64,
    ts: i64,
}

fn parquet_err(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> DriftError + '_ {
    move |source| DriftError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn arrow_err(path: &Path) -> impl Fn(arrow_schema::ArrowError) -> DriftError + '_ {
    move |e| DriftError::Parquet {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

pub(crate) fn format_err(path: &Path, message: impl Into<String>) -> DriftError {
    DriftError::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Opens `path` for a projected read of `columns` (missing ones skipped).
pub(crate) fn reader(
    path: &Path,
    columns: &[&str],
    row_groups: Option<Vec<usize>>,
    selection: Option<RowSelection>,
    page_index: bool,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader, DriftError> {
    let file = File::open(path).map_err(|source| DriftError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let options = if page_index {
        ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional)
    } else {
        ArrowReaderOptions::new()
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(parquet_err(path))?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let mut builder = builder.with_projection(mask).with_batch_size(8192);
    if let Some(rg) = row_groups {
        builder = builder.with_row_groups(rg);
    }
    if let Some(sel) = selection {
        builder = builder.with_row_selection(sel);
    }
    builder.build().map_err(parquet_err(path))
}

/// What pass 2 needs to know of a file before reading it.
struct FileLayout {
    /// Rows per row group.
    row_groups: Vec<usize>,
    /// The file has the write-time `history_turns` column.
    history_turns: bool,
}

fn file_layout(path: &Path) -> Result<FileLayout, DriftError> {
    let file = File::open(path).map_err(|source| DriftError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err(path))?;
    Ok(FileLayout {
        row_groups: builder
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| rg.num_rows() as usize)
            .collect(),
        history_turns: builder
            .schema()
            .column_with_name(logstore::HISTORY_TURNS)
            .is_some(),
    })
}

pub(crate) fn str_col<'b>(
    batch: &'b RecordBatch,
    name: &str,
    path: &Path,
) -> Result<Option<&'b arrow_array::StringArray>, DriftError> {
    match batch.column_by_name(name) {
        None => Ok(None),
        Some(c) => c
            .as_string_opt::<i32>()
            .map(Some)
            .ok_or_else(|| format_err(path, format!("column `{name}` is not Utf8"))),
    }
}

pub(crate) fn opt_str(a: Option<&arrow_array::StringArray>, i: usize) -> Option<&str> {
    a.and_then(|a| a.is_valid(i).then(|| a.value(i)))
}

/// Pass 1 over one file: its rows' keys.
fn read_keys(
    path: &Path,
    file_idx: u32,
    interner: &mut Interner,
    groups: &mut Interner,
) -> Result<Vec<KeyRow>, DriftError> {
    let r = reader(
        path,
        &[
            "request_id",
            "ts",
            "prompt_id",
            "prompt_version",
            "commit",
            "variant",
            "model",
        ],
        None,
        None,
        false,
    )?;
    let mut out = Vec::new();
    let mut row = 0u32;
    let (mut last_group, mut last_version, mut last_commit) = (
        LastSeen::default(),
        LastSeen::default(),
        LastSeen::default(),
    );
    for batch in r {
        let batch = batch.map_err(arrow_err(path))?;
        let ids = str_col(&batch, "request_id", path)?;
        let ts = batch
            .column_by_name("ts")
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
            .ok_or_else(|| format_err(path, "missing or mistyped column `ts`"))?;
        let prompt = str_col(&batch, "prompt_id", path)?;
        let version = str_col(&batch, "prompt_version", path)?;
        let commit = str_col(&batch, "commit", path)?;
        let variant = str_col(&batch, "variant", path)?;
        let model = str_col(&batch, "model", path)?;
        for i in 0..batch.num_rows() {
            let group = match opt_str(prompt, i) {
                Some(p) => last_group.id(groups, p),
                None => groups.id(&model_group(opt_str(model, i).unwrap_or(""))),
            };
            out.push(KeyRow {
                ts: if ts.is_valid(i) { ts.value(i) } else { 0 },
                id_hash: id_hash(opt_str(ids, i).unwrap_or("")),
                file: file_idx,
                row,
                group,
                version: last_version.id(interner, opt_str(version, i).unwrap_or("")),
                commit: last_commit.id(interner, opt_str(commit, i).unwrap_or("")),
                canary: opt_str(variant, i) == Some("canary"),
            });
            row += 1;
        }
    }
    Ok(out)
}

/// Feedback of the log roots: per request id hash, the latest score and label.
pub struct FeedbackIndex {
    by_request: IdMap<(i64, f64, Option<u32>)>,
    labels: Vec<String>,
}

impl FeedbackIndex {
    fn view(&self, id_hash: u64) -> Option<FeedbackView<'_>> {
        self.by_request
            .get(&id_hash)
            .map(|(_, score, label)| FeedbackView {
                score: *score,
                label: label.map(|l| self.labels[l as usize].as_str()),
            })
    }

    fn add(
        &mut self,
        label_ids: &mut HashMap<String, u32>,
        request_id: &str,
        ts: i64,
        score: f64,
        label: Option<&str>,
    ) {
        let label = label.map(|l| match label_ids.get(l) {
            Some(&i) => i,
            None => {
                self.labels.push(l.to_string());
                let i = (self.labels.len() - 1) as u32;
                label_ids.insert(l.to_string(), i);
                i
            }
        });
        let slot = self
            .by_request
            .entry(id_hash(request_id))
            .or_insert((i64::MIN, 0.0, None));
        // The latest record wins; a record seen twice (a journal and its
        // Parquet conversion) changes nothing, so no dedupe is needed.
        if ts >= slot.0 {
            *slot = (ts, score, label);
        }
    }
}

/// Reads every feedback record under the log roots: Parquet partitions by
/// projection (request_id, ts, score, label) and the journals.
pub fn read_feedback_index(logs: &[PathBuf]) -> Result<FeedbackIndex, DriftError> {
    let mut index = FeedbackIndex {
        by_request: IdMap::default(),
        labels: Vec::new(),
    };
    let mut label_ids: HashMap<String, u32> = HashMap::new();
    for root in logs {
        let fdir = if root.join(FEEDBACK_DIR).is_dir() {
            root.join(FEEDBACK_DIR)
        } else if root.file_name().is_some_and(|n| n == FEEDBACK_DIR) {
            root.clone()
        } else {
            continue;
        };
        let mut parquet_files = Vec::new();
        let mut journals = Vec::new();
        collect_feedback_files(&fdir, &mut parquet_files, &mut journals)?;
        for f in parquet_files {
            let r = reader(
                &f,
                &["request_id", "ts", "score", "label"],
                None,
                None,
                false,
            )?;
            for batch in r {
                let batch = batch.map_err(arrow_err(&f))?;
                let rid = str_col(&batch, "request_id", &f)?;
                let label = str_col(&batch, "label", &f)?;
                let ts = batch
                    .column_by_name("ts")
                    .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>());
                let score = batch
                    .column_by_name("score")
                    .and_then(|c| c.as_primitive_opt::<Float64Type>())
                    .ok_or_else(|| format_err(&f, "missing or mistyped column `score`"))?;
                for i in 0..batch.num_rows() {
                    let (Some(r), true) = (opt_str(rid, i), score.is_valid(i)) else {
                        continue;
                    };
                    let t = ts.map_or(0, |t| t.value(i));
                    index.add(&mut label_ids, r, t, score.value(i), opt_str(label, i));
                }
            }
        }
        for j in journals {
            let records = logstore::read_feedback(&[&j]).map_err(DriftError::Logs)?;
            for r in records {
                index.add(
                    &mut label_ids,
                    &r.request_id,
                    r.ts.timestamp_micros(),
                    r.score,
                    r.label.as_deref(),
                );
            }
        }
    }
    Ok(index)
}

fn collect_feedback_files(
    dir: &Path,
    parquet_files: &mut Vec<PathBuf>,
    journals: &mut Vec<PathBuf>,
) -> Result<(), DriftError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DriftError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names: Vec<PathBuf> = Vec::new();
    for e in entries {
        let e = e.map_err(|source| DriftError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        names.push(e.path());
    }
    names.sort();
    for p in names {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            if name.starts_with("date=") {
                // Only live files: compaction leaves superseded ones briefly.
                let filter = RequestFilter::default();
                for f in logstore::request_files(&[&p], &filter).map_err(DriftError::Logs)? {
                    parquet_files.push(f);
                }
            }
        } else if name.ends_with(".jsonl") {
            journals.push(p);
        }
    }
    Ok(())
}

/// Reads both windows of every group in scope; see the module docs.
pub fn read_windows(
    settings: &DriftConfig,
    extractor: &Extractor,
    query: &LogQuery,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<LogWindows, DriftError> {
    for root in &query.logs {
        if !root.exists() {
            return Err(DriftError::MissingLogs { path: root.clone() });
        }
    }
    let files = logstore::request_files(&query.logs, &RequestFilter::default())
        .map_err(DriftError::Logs)?;
    if files.is_empty() {
        return Err(DriftError::NoLogFiles {
            roots: query.logs.clone(),
        });
    }

    // Pass 1: keys, two threads over the files, each file with its own
    // interned names, remapped to shared ids after.
    let started = std::time::Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    type Keys = Vec<Result<(Vec<KeyRow>, Interner, Interner), DriftError>>;
    let (parts, feedback): (Keys, Result<FeedbackIndex, DriftError>) = std::thread::scope(|s| {
        // Feedback is independent of the keys: read it meanwhile.
        let feedback = s.spawn(|| {
            let started = std::time::Instant::now();
            let f = read_feedback_index(&query.logs);
            if let Ok(f) = &f {
                tracing::debug!(
                    calls_with_feedback = f.by_request.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "drift: feedback read"
                );
            }
            f
        });
        let handles: Vec<_> = (0..2usize)
            .map(|w| {
                let (files, done) = (&files, &done);
                s.spawn(move || {
                    let mut out = Vec::new();
                    for i in (w..files.len()).step_by(2) {
                        let mut strings = Interner::default();
                        let mut names = Interner::default();
                        let keys = read_keys(&files[i], i as u32, &mut strings, &mut names);
                        out.push((i, keys.map(|k| (k, strings, names))));
                        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                        progress(Progress {
                            pass: 1,
                            files_done: n,
                            files: files.len(),
                        });
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            match h.join() {
                Ok(v) => all.extend(v),
                Err(_) => all.push((usize::MAX, Err(DriftError::Worker))),
            }
        }
        all.sort_by_key(|(i, _)| *i);
        let keys = all.into_iter().map(|(_, r)| r).collect();
        let feedback = feedback.join().unwrap_or(Err(DriftError::Worker));
        (keys, feedback)
    });
    let feedback = feedback?;
    let mut interner = Interner::default();
    let mut groups = Interner::default();
    let mut keys = Vec::new();
    for part in parts {
        let (mut rows, strings, names) = part?;
        let string_ids: Vec<u32> = strings.names.iter().map(|n| interner.id(n)).collect();
        let group_ids: Vec<u32> = names.names.iter().map(|n| groups.id(n)).collect();
        for k in &mut rows {
            k.version = string_ids[k.version as usize];
            k.commit = string_ids[k.commit as usize];
            k.group = group_ids[k.group as usize];
        }
        keys.append(&mut rows);
    }
    tracing::debug!(
        rows = keys.len(),
        files = files.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "drift: keys read"
    );
    let rows_scanned = keys.len() as u64;
    let in_scope: Vec<bool> = (0..groups.names.len())
        .map(|g| {
            query.groups.is_empty()
                || query
                    .groups
                    .iter()
                    .any(|q| q.as_str() == groups.name(g as u32))
        })
        .collect();
    for wanted in &query.groups {
        if !groups.ids.contains_key(wanted.as_str()) {
            let mut known: Vec<&str> = groups.names.iter().map(|n| &**n).collect();
            known.sort_unstable();
            return Err(DriftError::NoTraffic {
                group: wanted.clone(),
                roots: query.logs.clone(),
                known: known.join(", "),
            });
        }
    }

    // Windows, per group, in time order.
    let mut by_group: Vec<Vec<usize>> = vec![Vec::new(); groups.names.len()];
    for (i, k) in keys.iter().enumerate() {
        if in_scope[k.group as usize] {
            by_group[k.group as usize].push(i);
        }
    }
    let mut window = vec![0u8; keys.len()];
    let mut counts: BTreeMap<(u8, u32), u64> = BTreeMap::new();
    for (g, rows) in by_group.iter_mut().enumerate() {
        rows.sort_by_key(|&i| (keys[i].ts, keys[i].id_hash));
        let gname = groups.name(g as u32).to_string();
        if let Some((_, sel)) = &query.reference {
            for i in select(sel, &gname, rows, &keys, &interner, &window) {
                window[i] = REFERENCE;
                *counts.entry((REFERENCE, g as u32)).or_insert(0) += 1;
            }
        }
        for i in select(&query.current.1, &gname, rows, &keys, &interner, &window) {
            window[i] = CURRENT;
            *counts.entry((CURRENT, g as u32)).or_insert(0) += 1;
        }
    }
    let total = |w: u8| {
        counts
            .iter()
            .filter(|((x, _), _)| *x == w)
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let describe_range = || data_range(&keys, &in_scope);
    if query.reference.is_some() && total(REFERENCE) == 0 {
        return Err(DriftError::EmptyWindow {
            which: "reference",
            spec: query
                .reference
                .as_ref()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            roots: query.logs.clone(),
            data: describe_range(),
        });
    }
    if total(CURRENT) == 0 {
        return Err(DriftError::EmptyWindow {
            which: "current",
            spec: query.current.0.clone(),
            roots: query.logs.clone(),
            data: describe_range(),
        });
    }

    // The text sample and the language sample, per window and group.
    let rate = |w: u8, g: u32, cap: u64| -> f64 {
        let n = counts.get(&(w, g)).copied().unwrap_or(0);
        if n == 0 {
            0.0
        } else {
            (cap as f64 / n as f64).min(1.0)
        }
    };
    let mut per_file: Vec<Vec<Chosen>> = vec![Vec::new(); files.len()];
    for (i, k) in keys.iter().enumerate() {
        let w = window[i];
        if w == 0 {
            continue;
        }
        let u = unit(k.id_hash);
        per_file[k.file as usize].push(Chosen {
            row: k.row,
            window: w,
            group: k.group,
            text: u < rate(w, k.group, settings.sample_rows),
            language: u < rate(w, k.group, settings.language_rows.min(settings.sample_rows)),
            id_hash: k.id_hash,
            ts: k.ts,
        });
    }
    drop(keys);
    drop(window);
    for chosen in &mut per_file {
        chosen.sort_by_key(|c| c.row);
    }

    let started = std::time::Instant::now();
    let kinds: Vec<GroupKind> = groups
        .names
        .iter()
        .map(|n| {
            if n.starts_with("model:") {
                GroupKind::Model
            } else {
                GroupKind::Prompt
            }
        })
        .collect();
    let default_spec = OutputSpec::default();
    let specs: Vec<&OutputSpec> = groups
        .names
        .iter()
        .map(|n| query.outputs.get(&**n).unwrap_or(&default_spec))
        .collect();
    let ctx = PassTwo {
        extractor,
        feedback: &feedback,
        kinds: &kinds,
        specs: &specs,
    };

    // Pass 2: features, two threads over tasks: runs of one file's chosen
    // rows, at most half of all chosen rows each, so both cores work even
    // when the windows sit in one file. Parts merge in task order (file,
    // then row), as if read in one pass.
    let workers = 2usize;
    let total: usize = per_file.iter().map(Vec::len).sum();
    let chunk = total.div_ceil(workers).max(1);
    let tasks: Vec<(usize, &[Chosen], bool)> = per_file
        .iter()
        .enumerate()
        .flat_map(|(i, chosen)| {
            let whole = chosen.len() <= chunk;
            chosen.chunks(chunk).map(move |c| (i, c, whole))
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<FilePart, DriftError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (files, tasks, ctx, next) = (&files, &tasks, &ctx, &next);
                s.spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        let t = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(i, chosen, whole)) = tasks.get(t) else {
                            break;
                        };
                        out.push((t, ctx.read_file(&files[i], chosen, !whole)));
                        progress(Progress {
                            pass: 2,
                            files_done: (t + 1) * files.len() / tasks.len(),
                            files: files.len(),
                        });
                    }
                    out
                })
            })
            .collect();
        let mut all: Vec<(usize, Result<FilePart, DriftError>)> = Vec::new();
        for h in handles {
            match h.join() {
                Ok(v) => all.extend(v),
                Err(_) => all.push((usize::MAX, Err(DriftError::Worker))),
            }
        }
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, r)| r).collect()
    });
    let mut reference = WindowSet {
        spec: query
            .reference
            .as_ref()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
        inputs_only: false,
        groups: BTreeMap::new(),
    };
    let mut current = WindowSet {
        spec: query.current.0.clone(),
        inputs_only: false,
        groups: BTreeMap::new(),
    };
    for part in results {
        for ((w, g), features) in part?.windows {
            let set = if w == REFERENCE {
                &mut reference
            } else {
                &mut current
            };
            let name = groups.name(g).to_string();
            let entry = set
                .groups
                .entry(name.clone())
                .or_insert_with(|| GroupWindow {
                    kind: kinds[g as usize],
                    output_json: query.outputs.get(&name).and_then(|o| o.json),
                    features: WindowFeatures::new(),
                });
            entry.features.merge(features);
        }
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "drift: features read"
    );
    Ok(LogWindows {
        reference,
        current,
        files: files.len(),
        rows_scanned,
    })
}

/// The time range of the rows in scope, for an error message.
fn data_range(keys: &[KeyRow], in_scope: &[bool]) -> String {
    let ts: Vec<i64> = keys
        .iter()
        .filter(|k| in_scope[k.group as usize])
        .map(|k| k.ts)
        .collect();
    let (Some(lo), Some(hi)) = (ts.iter().min(), ts.iter().max()) else {
        return "no calls in scope".into();
    };
    let f = |t: i64| {
        chrono::DateTime::from_timestamp_micros(t)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    format!(
        "{} call(s) in scope, from {} to {}",
        ts.len(),
        f(*lo),
        f(*hi)
    )
}

/// The rows of one group (`rows`, in time order) a selector picks, skipping
/// rows already in a window.
fn select(
    sel: &Selector,
    group: &str,
    rows: &[usize],
    keys: &[KeyRow],
    interner: &Interner,
    taken: &[u8],
) -> Vec<usize> {
    let free = |i: &usize| taken[*i] == 0;
    match sel {
        Selector::First {
            n,
            versions,
            stable_commit,
        } => {
            let matches = |k: &KeyRow| -> bool {
                if k.canary {
                    return false;
                }
                if let Some(v) = versions.get(group) {
                    return interner.name(k.version) == v;
                }
                match (group.starts_with("model:"), stable_commit) {
                    (true, Some(c)) => interner.name(k.commit) == c,
                    _ => true,
                }
            };
            rows.iter()
                .filter(|i| free(i) && matches(&keys[**i]))
                .take(*n as usize)
                .copied()
                .collect()
        }
        Selector::Last(n) => {
            let mut v: Vec<usize> = rows
                .iter()
                .rev()
                .filter(|i| free(i) && !keys[**i].canary)
                .take(*n as usize)
                .copied()
                .collect();
            v.reverse();
            v
        }
        Selector::Range { from, until } => rows
            .iter()
            .filter(|i| {
                let k = &keys[**i];
                free(i)
                    && !k.canary
                    && from.is_none_or(|f| k.ts >= f)
                    && until.is_none_or(|u| k.ts < u)
            })
            .copied()
            .collect(),
        Selector::Commit(prefix) => rows
            .iter()
            .filter(|i| free(i) && interner.name(keys[**i].commit).starts_with(prefix.as_str()))
            .copied()
            .collect(),
    }
}

/// What one file contributes: per (window, group) features.
#[derive(Default)]
struct FilePart {
    windows: BTreeMap<(u8, u32), WindowFeatures>,
}

struct PassTwo<'a> {
    extractor: &'a Extractor,
    feedback: &'a FeedbackIndex,
    kinds: &'a [GroupKind],
    specs: &'a [&'a OutputSpec],
}

/// Row groups holding chosen rows, and the selection of `rows` (sorted)
/// relative to those row groups.
fn plan(sizes: &[usize], rows: &[u32]) -> (Vec<usize>, RowSelection) {
    let mut groups = Vec::new();
    let mut ranges = Vec::new();
    let (mut start, mut offset) = (0usize, 0usize);
    let mut k = 0;
    for (g, &size) in sizes.iter().enumerate() {
        let end = start + size;
        let first = k;
        while k < rows.len() && (rows[k] as usize) < end {
            k += 1;
        }
        if k > first {
            groups.push(g);
            let mut i = first;
            while i < k {
                let run_start = rows[i] as usize;
                let mut run_end = run_start + 1;
                while i + 1 < k && rows[i + 1] as usize == run_end {
                    i += 1;
                    run_end += 1;
                }
                ranges.push(run_start - start + offset..run_end - start + offset);
                i += 1;
            }
            offset += size;
        }
        start = end;
    }
    (
        groups,
        RowSelection::from_consecutive_ranges(ranges.into_iter(), offset),
    )
}

impl PassTwo<'_> {
    /// The features of `chosen` (sorted rows of the file); `part_of_file` when they
    /// are a part of the file's chosen rows (the page index then lets the
    /// reader skip the pages of the other parts).
    fn read_file(
        &self,
        path: &Path,
        chosen: &[Chosen],
        part_of_file: bool,
    ) -> Result<FilePart, DriftError> {
        let layout = file_layout(path)?;
        let sizes = &layout.row_groups;
        let mut part = FilePart::default();
        // Columns of every chosen row.
        let rows: Vec<u32> = chosen.iter().map(|c| c.row).collect();
        let (rgs, sel) = plan(sizes, &rows);
        let r = reader(
            path,
            &[
                "status",
                "latency_ms",
                "ttft_ms",
                "input_tokens",
                "output_tokens",
                "cost",
                "upstream_model",
                "online_pass",
            ],
            Some(rgs),
            Some(sel),
            part_of_file,
        )?;
        let mut k = 0usize;
        for batch in r {
            let batch = batch.map_err(arrow_err(path))?;
            let status = str_col(&batch, "status", path)?;
            let f64s = |name: &str| {
                batch
                    .column_by_name(name)
                    .and_then(|c| c.as_primitive_opt::<Float64Type>())
            };
            let u64s = |name: &str| {
                batch
                    .column_by_name(name)
                    .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            };
            let (latency, ttft, cost) = (f64s("latency_ms"), f64s("ttft_ms"), f64s("cost"));
            let (tin, tout) = (u64s("input_tokens"), u64s("output_tokens"));
            let upstream = str_col(&batch, "upstream_model", path)?;
            let online = batch
                .column_by_name("online_pass")
                .and_then(|c| c.as_boolean_opt());
            for i in 0..batch.num_rows() {
                let Some(c) = chosen.get(k) else {
                    return Err(format_err(path, "more rows than selected"));
                };
                k += 1;
                let valid_f = |a: Option<&arrow_array::Float64Array>| {
                    a.and_then(|a| a.is_valid(i).then(|| a.value(i)))
                };
                let valid_u = |a: Option<&arrow_array::UInt64Array>| {
                    a.and_then(|a| a.is_valid(i).then(|| a.value(i)))
                };
                let view = ColumnsView {
                    status: opt_str(status, i).unwrap_or(""),
                    latency_ms: valid_f(latency).unwrap_or(f64::NAN),
                    ttft_ms: valid_f(ttft),
                    input_tokens: valid_u(tin).unwrap_or(0),
                    output_tokens: valid_u(tout).unwrap_or(0),
                    cost: valid_f(cost).unwrap_or(f64::NAN),
                    upstream_model: opt_str(upstream, i).unwrap_or(""),
                    online_pass: online.and_then(|a| a.is_valid(i).then(|| a.value(i))),
                    feedback: self.feedback.view(c.id_hash),
                };
                let w = part.windows.entry((c.window, c.group)).or_default();
                w.push_time(c.ts);
                w.push_columns(&view);
            }
        }
        if k != chosen.len() {
            return Err(format_err(
                path,
                format!("read {k} of {} selected rows", chosen.len()),
            ));
        }
        // Text of the sampled rows.
        let sampled: Vec<&Chosen> = chosen.iter().filter(|c| c.text).collect();
        if sampled.is_empty() {
            return Ok(part);
        }
        let rows: Vec<u32> = sampled.iter().map(|c| c.row).collect();
        let (rgs, sel) = plan(sizes, &rows);
        // The rendered messages are the largest text column; a prompt call
        // needs them only for its history turns, which newer files log as a
        // column. Pass-through calls read their input from the messages.
        let needs_messages = !layout.history_turns
            || sampled
                .iter()
                .any(|c| self.kinds[c.group as usize] == GroupKind::Model);
        let mut columns = vec![
            "request_id",
            "status",
            "variables",
            "output",
            "online_scores",
        ];
        if needs_messages {
            columns.push("messages");
        }
        if layout.history_turns {
            columns.push(logstore::HISTORY_TURNS);
        }
        let r = reader(path, &columns, Some(rgs), Some(sel), true)?;
        let mut k = 0usize;
        for batch in r {
            let batch = batch.map_err(arrow_err(path))?;
            let text = |name: &str| str_col(&batch, name, path);
            let (request_id, status, variables, output, online_scores, messages) = (
                text("request_id")?,
                text("status")?,
                text("variables")?,
                text("output")?,
                text("online_scores")?,
                text("messages")?,
            );
            let turns = batch
                .column_by_name(logstore::HISTORY_TURNS)
                .map(|c| {
                    c.as_primitive_opt::<UInt32Type>().ok_or_else(|| {
                        format_err(
                            path,
                            format!("column `{}` is not UInt32", logstore::HISTORY_TURNS),
                        )
                    })
                })
                .transpose()?;
            for i in 0..batch.num_rows() {
                let Some(c) = sampled.get(k) else {
                    return Err(format_err(path, "more rows than sampled"));
                };
                k += 1;
                let view = TextView {
                    request_id: opt_str(request_id, i).unwrap_or(""),
                    status: opt_str(status, i).unwrap_or(""),
                    variables: opt_str(variables, i).unwrap_or("{}"),
                    // Not read: nothing to count turns in (a null
                    // `history_turns` stays unknown, as from the text).
                    messages: if needs_messages {
                        opt_str(messages, i).unwrap_or("[]")
                    } else {
                        ""
                    },
                    output: opt_str(output, i).unwrap_or(""),
                    online_scores: opt_str(online_scores, i).unwrap_or("{}"),
                    history_turns: turns.and_then(|a| a.is_valid(i).then(|| a.value(i))),
                    detect_language: c.language,
                };
                let g = c.group as usize;
                part.windows
                    .entry((c.window, c.group))
                    .or_default()
                    .push_text(self.extractor, self.kinds[g], self.specs[g], &view);
            }
        }
        Ok(part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_select_rows_relative_to_the_kept_row_groups() {
        // Row groups of 10, 10, 10 rows; rows 12, 13, 14 and 25 chosen.
        let (rgs, sel) = plan(&[10, 10, 10], &[12, 13, 14, 25]);
        assert_eq!(rgs, vec![1, 2]);
        let ranges: Vec<_> = sel.iter().map(|s| (s.skip, s.row_count)).collect();
        // Relative to rows 10..30: skip 2, take 3, skip 10, take 1, skip 4.
        assert_eq!(
            ranges,
            vec![(true, 2), (false, 3), (true, 10), (false, 1), (true, 4)]
        );
        let (rgs, _) = plan(&[5, 5], &[]);
        assert!(rgs.is_empty());
    }

    /// A file of `n` calls of one prompt, written as the log writer does,
    /// with small pages so a part of the rows does not touch every page.
    fn log_file(dir: &Path, n: usize) -> PathBuf {
        use crate::logstore::{RequestLogRow, request_schema, rows_to_batch};
        let t0 = chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default();
        let rows: Vec<RequestLogRow> = (0..n)
            .map(|i| {
                let mut r =
                    RequestLogRow::new(format!("r-{i}"), t0 + chrono::Duration::seconds(i as i64));
                r.prompt_id = Some("p".into());
                r.status = if i % 9 == 0 { "error" } else { "ok" }.into();
                r.latency_ms = (i * 37 % 101) as f64;
                r.output_tokens = (i % 13) as u64;
                r.variables = serde_json::json!({"q": "word ".repeat(i % 7 + 1)}).to_string();
                r.messages = serde_json::json!([
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "user", "content": "c"},
                ])
                .to_string();
                r.output = format!("answer {} in words", "x ".repeat(i % 5));
                r
            })
            .collect();
        let path = dir.join("part.parquet");
        let props = parquet::file::properties::WriterProperties::builder()
            .set_data_page_row_count_limit(8)
            .set_write_batch_size(8)
            .build();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            File::create(&path).unwrap(),
            request_schema(),
            Some(props),
        )
        .unwrap();
        w.write(&rows_to_batch(&rows).unwrap()).unwrap();
        w.close().unwrap();
        path
    }

    #[test]
    fn a_file_read_in_parts_gives_the_features_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_file(dir.path(), 120);
        let extractor = Extractor::new(&DriftConfig::default()).unwrap();
        let feedback = FeedbackIndex {
            by_request: IdMap::default(),
            labels: Vec::new(),
        };
        let spec = OutputSpec::default();
        let ctx = PassTwo {
            extractor: &extractor,
            feedback: &feedback,
            kinds: &[GroupKind::Prompt],
            specs: &[&spec],
        };
        // Every other row, both windows, a text sample of every third row.
        let chosen: Vec<Chosen> = (0..120u32)
            .filter(|r| r % 2 == 0)
            .map(|row| Chosen {
                row,
                window: if row < 60 { REFERENCE } else { CURRENT },
                group: 0,
                text: row % 3 == 0,
                language: row % 6 == 0,
                id_hash: id_hash(&format!("r-{row}")),
                ts: i64::from(row),
            })
            .collect();
        let whole = ctx.read_file(&path, &chosen, false).unwrap();
        let mut merged = FilePart::default();
        for part in chosen.chunks(17) {
            for (key, w) in ctx.read_file(&path, part, true).unwrap().windows {
                merged.windows.entry(key).or_default().merge(w);
            }
        }
        assert_eq!(whole.windows.len(), 2);
        let reference = &whole.windows[&(REFERENCE, 0)];
        assert_eq!(reference.calls, 30);
        assert_eq!(reference.sampled, 10);
        assert!(reference.features.contains_key("input.history_turns"));
        assert_eq!(merged.windows, whole.windows);
    }
}
