//! `review sample`: picks calls of one prompt from the request logs (one or
//! several replicas' log roots) and queues those not queued before.
//!
//! Reading is two passes over the Parquet files: (1) a column projection of
//! the few columns a strategy looks at (`request_id, ts, commit, variant,
//! status, online_pass`) for every call of the prompt; (2) the full rows of
//! the chosen calls only, by row selection. Feedback (small) is read whole.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, RecordBatch};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{ReviewError, ReviewItem, ReviewQueue};
use crate::logstore::{self, FeedbackRecord, RequestFilter, RequestLogRow};
use crate::spec::drift::WindowSpec;

/// How calls are picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[clap(rename_all = "snake_case")]
pub enum Strategy {
    /// Calls whose latest feedback score is at most `max_score`, worst first.
    LowFeedback,
    /// Calls that failed an online assertion, newest first.
    FailedOnline,
    /// Calls of the current window when drift analysis finds drift.
    Drift,
    /// Calls served by the canary.
    Canary,
    /// A uniform draw (by a hash of the request id).
    Random,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::LowFeedback => "low_feedback",
            Strategy::FailedOnline => "failed_online",
            Strategy::Drift => "drift",
            Strategy::Canary => "canary",
            Strategy::Random => "random",
        }
    }
}

/// What to sample.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    pub suite: String,
    pub prompt_id: String,
    pub logs: Vec<PathBuf>,
    pub strategy: Strategy,
    pub n: usize,
    /// The calls considered (`last:N`, `last:24h`, `A..B`, `commit:SHA`,
    /// `first:N`); None: every call.
    pub window: Option<WindowSpec>,
    /// `low_feedback`: the highest score that counts as low.
    pub max_score: f64,
    pub now: DateTime<Utc>,
}

/// What sampling did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SampleOutcome {
    pub files: usize,
    /// Calls of the prompt read in the first pass.
    pub calls_scanned: u64,
    /// Calls in the window that the strategy picks.
    pub candidates: usize,
    /// Of those, already in the queue (never queued twice).
    pub already_queued: usize,
    /// Request ids queued now.
    pub enqueued: Vec<String>,
}

/// One call as the first pass sees it.
struct Key {
    file: usize,
    row: usize,
    request_id: String,
    ts: i64,
    commit: String,
    canary: bool,
    failed_online: bool,
}

const KEY_COLUMNS: &[&str] = &[
    "request_id",
    "ts",
    "prompt_id",
    "commit",
    "variant",
    "status",
    "online_pass",
];

fn keys_of(batch: &RecordBatch, file: usize, first_row: usize, prompt: &str) -> Vec<Key> {
    let s = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>())
    };
    let (Some(ids), Some(prompts), Some(commits), Some(variants), Some(status)) = (
        s("request_id"),
        s("prompt_id"),
        s("commit"),
        s("variant"),
        s("status"),
    ) else {
        return Vec::new();
    };
    let Some(ts) = batch
        .column_by_name("ts")
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
    else {
        return Vec::new();
    };
    let online = batch
        .column_by_name("online_pass")
        .and_then(|c| c.as_boolean_opt());
    (0..batch.num_rows())
        .filter(|&i| prompts.is_valid(i) && prompts.value(i) == prompt && status.value(i) == "ok")
        .map(|i| Key {
            file,
            row: first_row + i,
            request_id: ids.value(i).to_string(),
            ts: ts.value(i),
            commit: commits.value(i).to_string(),
            canary: variants.value(i) == "canary",
            failed_online: online.is_some_and(|o| o.is_valid(i) && !o.value(i)),
        })
        .collect()
}

fn in_window(
    keys: &mut Vec<Key>,
    window: Option<&WindowSpec>,
    now: DateTime<Utc>,
) -> Result<(), ReviewError> {
    let Some(w) = window else { return Ok(()) };
    keys.sort_by(|a, b| {
        a.ts.cmp(&b.ts)
            .then_with(|| a.request_id.cmp(&b.request_id))
    });
    match w {
        WindowSpec::First(n) => keys.truncate(*n as usize),
        WindowSpec::Last(n) => {
            let drop = keys.len().saturating_sub(*n as usize);
            keys.drain(..drop);
        }
        WindowSpec::LastFor(d) => {
            let from = (now - chrono::Duration::from_std(*d).unwrap_or(chrono::Duration::MAX))
                .timestamp_micros();
            keys.retain(|k| k.ts >= from);
        }
        WindowSpec::Range { from, until } => keys.retain(|k| {
            from.is_none_or(|f| k.ts >= f.timestamp_micros())
                && until.is_none_or(|u| k.ts < u.timestamp_micros())
        }),
        WindowSpec::Commit(c) => keys.retain(|k| k.commit.starts_with(c.as_str())),
        WindowSpec::Dataset(_) | WindowSpec::Eval(_) => {
            return Err(ReviewError::Sample(format!(
                "--window {w}: review samples logged calls; a dataset window has no outputs"
            )));
        }
    }
    Ok(())
}

fn hash_unit(id: &str) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(id.as_bytes());
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Samples calls into `queue`; see the module docs.
pub fn sample(queue: &ReviewQueue, opts: &SampleOptions) -> Result<SampleOutcome, ReviewError> {
    let filter = RequestFilter {
        prompt_id: Some(opts.prompt_id.clone()),
        ..RequestFilter::default()
    };
    let files = logstore::request_files(&opts.logs, &filter)?;
    let mut keys = Vec::new();
    for (fi, f) in files.iter().enumerate() {
        let mut first = 0;
        for batch in logstore::read_projected(f, KEY_COLUMNS)? {
            keys.extend(keys_of(&batch, fi, first, &opts.prompt_id));
            first += batch.num_rows();
        }
    }
    let mut out = SampleOutcome {
        files: files.len(),
        calls_scanned: keys.len() as u64,
        ..SampleOutcome::default()
    };
    in_window(&mut keys, opts.window.as_ref(), opts.now)?;
    let feedback = logstore::read_feedback(&opts.logs)?;
    let mut by_request: HashMap<&str, Vec<&FeedbackRecord>> = HashMap::new();
    for f in &feedback {
        by_request.entry(f.request_id.as_str()).or_default().push(f);
    }
    let latest = |id: &str| by_request.get(id).and_then(|v| v.last()).map(|f| f.score);

    let mut reasons: HashMap<String, String> = HashMap::new();
    let picked: Vec<Key> = match opts.strategy {
        Strategy::LowFeedback => {
            let mut low: Vec<(f64, Key)> = keys
                .into_iter()
                .filter_map(|k| {
                    latest(&k.request_id)
                        .filter(|s| *s <= opts.max_score)
                        .map(|s| (s, k))
                })
                .collect();
            low.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.ts.cmp(&a.1.ts)));
            for (s, k) in &low {
                reasons.insert(k.request_id.clone(), format!("low_feedback: score {s}"));
            }
            low.into_iter().map(|(_, k)| k).collect()
        }
        Strategy::FailedOnline => {
            let mut v: Vec<Key> = keys.into_iter().filter(|k| k.failed_online).collect();
            v.sort_by_key(|k| std::cmp::Reverse(k.ts));
            v
        }
        Strategy::Canary => {
            let mut v: Vec<Key> = keys.into_iter().filter(|k| k.canary).collect();
            v.sort_by_key(|k| hash_unit(&k.request_id));
            v
        }
        Strategy::Random => {
            keys.sort_by_key(|k| hash_unit(&k.request_id));
            keys
        }
        Strategy::Drift => drift_pick(&files, keys, opts, &feedback, &mut reasons)?,
    };
    out.candidates = picked.len();
    let mut chosen = Vec::new();
    for k in picked {
        if chosen.len() >= opts.n {
            break;
        }
        if queue.contains(&k.request_id)? {
            out.already_queued += 1;
        } else {
            chosen.push(k);
        }
    }
    let rows = full_rows(&files, &chosen)?;
    let items: Vec<ReviewItem> = chosen
        .iter()
        .filter_map(|k| rows.get(&k.request_id))
        .map(|row| {
            let fb = by_request
                .get(row.request_id.as_str())
                .cloned()
                .unwrap_or_default();
            let reason = reasons
                .remove(&row.request_id)
                .unwrap_or_else(|| match opts.strategy {
                    Strategy::FailedOnline => format!("failed_online: {}", row.online_scores),
                    s => s.as_str().to_string(),
                });
            ReviewItem::from_row(row, &fb, Some(&opts.suite), reason)
        })
        .collect();
    let ids: Vec<String> = items.iter().map(|i| i.request_id.clone()).collect();
    queue.enqueue(items)?;
    out.enqueued = ids;
    Ok(out)
}

/// The full rows of `keys`, by request id, read with row selections.
fn full_rows(
    files: &[PathBuf],
    keys: &[Key],
) -> Result<HashMap<String, RequestLogRow>, ReviewError> {
    let mut per_file: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for k in keys {
        per_file.entry(k.file).or_default().push(k.row);
    }
    let wanted: HashSet<&str> = keys.iter().map(|k| k.request_id.as_str()).collect();
    let mut out = HashMap::new();
    for (fi, mut rows) in per_file {
        rows.sort_unstable();
        rows.dedup();
        for r in logstore::read_selected_rows(&files[fi], &rows)? {
            if wanted.contains(r.request_id.as_str()) {
                out.insert(r.request_id.clone(), r);
            }
        }
    }
    Ok(out)
}

/// `drift`: the prompt's first calls (the reference, as many as the
/// window) against the window; when drift is found, calls spread over the
/// window, each with the features that drifted.
fn drift_pick(
    files: &[PathBuf],
    keys: Vec<Key>,
    opts: &SampleOptions,
    feedback: &[FeedbackRecord],
    reasons: &mut HashMap<String, String>,
) -> Result<Vec<Key>, ReviewError> {
    let current_ids: HashSet<String> = keys.iter().map(|k| k.request_id.clone()).collect();
    let all = logstore::read_requests(
        files,
        &RequestFilter {
            prompt_id: Some(opts.prompt_id.clone()),
            ..RequestFilter::default()
        },
    )?;
    let (current, rest): (Vec<RequestLogRow>, Vec<RequestLogRow>) = all
        .into_iter()
        .partition(|r| current_ids.contains(&r.request_id));
    let reference: Vec<RequestLogRow> = rest.into_iter().take(current.len().max(1)).collect();
    let settings = crate::spec::drift::DriftConfig {
        min_rows: 20,
        ..crate::spec::drift::DriftConfig::default()
    };
    let extractor = crate::drift::Extractor::new(&settings).map_err(ReviewError::Sample)?;
    let report = crate::drift::analyze_rows(
        &settings,
        &extractor,
        &BTreeMap::new(),
        &reference,
        &current,
        feedback,
    );
    let cands = crate::drift::review::candidates(&report, opts.n.max(1) * 4);
    let mut by_id: HashMap<String, Key> = keys
        .into_iter()
        .map(|k| (k.request_id.clone(), k))
        .collect();
    Ok(cands
        .into_iter()
        .filter_map(|c| {
            reasons.insert(
                c.request_id.clone(),
                format!("drift: {}", c.drifted.join(", ")),
            );
            by_id.remove(&c.request_id)
        })
        .collect())
}
