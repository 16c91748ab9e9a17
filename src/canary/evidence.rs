//! The evidence of a canary analysis: an ordered, projected scan of the
//! request logs instead of whole rows.
//!
//! [`analysis::analyze`](super::analysis::analyze) replays each prompt's
//! stable and canary rows of the window in time order, ties broken by
//! request id. [`scan`] feeds that replay the same rows in the same order
//! while reading only what the checks need:
//!
//! - files: date partitions before the window are not listed, row groups
//!   whose `ts` statistics end before it are not read;
//! - columns: `request_id`, `ts`, `prompt_id`, `variant`, plus `status`,
//!   `latency_ms`, `cost` or `online_pass` when a configured check reads
//!   them; feedback (when `feedback_score` is checked) is reduced to the
//!   latest score per request id hash ([`id_hash`]) before the rows are read;
//! - passes: a first pass over `ts`, `prompt_id` and `variant` counts the
//!   window's rows and, per prompt, its stable and canary rows; the prompts
//!   under analysis (those named by the canary, else those with canary rows
//!   in the window) are then read in groups of at most [`PASS_ROWS`] rows (a
//!   larger prompt alone), one pass over the projected columns per group;
//!   the analysis's tests are per prompt, so a group is replayed and
//!   dropped before the next is read.
//!
//! Each kept row becomes a fixed-size [`Keyed`] record (64 bytes: time, an
//! order key equal to the request id's string order, and the 32-byte
//! [`Observation`]), then each prompt's records are sorted once by (time,
//! request id) with a stable sort, so rows equal on both keep the order in
//! which files (sorted by path) and rows were read: the order of
//! [`crate::logstore::read_requests`] followed by the analysis's stable
//! sort. The latency check's threshold (the stable arm's exact p95 over the
//! whole window) is computed from these records before the replay.
//!
//! # Memory bound
//!
//! With `g` rows in the largest group (at most [`PASS_ROWS`] = 4 Mi rows, or
//! one prompt's stable and canary rows when that is larger), `d` distinct
//! prompt ids in the window and `f` request ids with feedback, the peak is
//! about `64·g` bytes of records, plus the sort's scratch (at most `32·g`
//! bytes, transient), plus one check's replay stream (`16·g`, and `8·g` for
//! the latency check's sorted stable latencies), plus `16·f` bytes of
//! scores, plus the counts of `d` prompts, plus one decoded record batch of
//! the projected columns of the file being read: about 120 bytes per row of
//! the largest group, whatever the window's size beyond it, and independent
//! of prompts, messages and outputs (a whole `RequestLogRow` is several
//! hundred bytes to kilobytes). Request ids other than canonical UUIDs and
//! strings of at most 16 bytes (the proxy writes UUIDs) are kept as strings
//! beside the records. The price is one pass per group: `1 + groups` reads
//! of the projected columns.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::analysis::{Observation, Outcome, Replay};
use super::{CanaryError, CanaryReport};
use crate::drift::features::{IdMap, id_hash};
use crate::logstore::{
    ColumnError, Columns, LogStoreError, RequestFilter, need, read_feedback, request_files,
    stream_projected_since,
};
use crate::spec::rollout::{Metric, Rollout};

/// Analysed rows (64 bytes each) one pass may hold: prompts are read in
/// groups of at most this many rows (256 MiB); a larger prompt is read
/// alone.
const PASS_ROWS: u64 = 4 << 20;

/// What the first pass over the window found, and how to read the rest.
#[derive(Debug)]
pub struct Evidence {
    /// Request rows of the window (every prompt and variant).
    pub rows: usize,
    /// The prompts under analysis and their stable and canary rows.
    prompts: BTreeMap<String, u64>,
    files: Vec<PathBuf>,
    since: DateTime<Utc>,
    columns: Vec<&'static str>,
    scores: IdMap<f64>,
}

impl Evidence {
    /// Replays every prompt under analysis, reading the files once per
    /// group of prompts (see [`PASS_ROWS`]).
    pub(crate) fn analyze(&self, rollout: &Rollout) -> Result<CanaryReport, CanaryError> {
        self.analyze_in_passes(rollout, PASS_ROWS)
    }

    /// [`Self::analyze`] with passes of at most `pass_rows` rows.
    fn analyze_in_passes(
        &self,
        rollout: &Rollout,
        pass_rows: u64,
    ) -> Result<CanaryReport, CanaryError> {
        let mut replay = Replay::new(rollout, self.since, self.prompts.len())?;
        for group in self.groups(pass_rows) {
            for (prompt, records) in self.read_group(&group)? {
                replay.prompt(&prompt, &records);
            }
        }
        Ok(replay.finish())
    }

    /// The prompts, in groups of at most `pass_rows` rows (or one prompt).
    fn groups(&self, pass_rows: u64) -> Vec<Vec<&str>> {
        let mut groups: Vec<Vec<&str>> = Vec::new();
        let mut held = 0;
        for (p, &n) in &self.prompts {
            match groups.last_mut() {
                Some(g) if held + n <= pass_rows => {
                    g.push(p);
                    held += n;
                }
                _ => {
                    groups.push(vec![p]);
                    held = n;
                }
            }
        }
        groups
    }

    /// The records of the prompts of `group`, each prompt's in replay order.
    fn read_group(&self, group: &[&str]) -> Result<BTreeMap<String, Vec<Keyed>>, CanaryError> {
        let mut out: BTreeMap<String, Vec<Keyed>> = group
            .iter()
            .map(|p| {
                let n = self.prompts.get(*p).copied().unwrap_or(0);
                (p.to_string(), Vec::with_capacity(n as usize))
            })
            .collect();
        let mut long: Vec<Box<str>> = Vec::new();
        let since_us = self.since.timestamp_micros();
        for f in &self.files {
            for batch in stream_projected_since(f, &self.columns, Some(self.since))? {
                let batch = batch?;
                read_batch(
                    &batch,
                    &self.columns,
                    since_us,
                    &self.scores,
                    &mut long,
                    &mut out,
                )
                .map_err(columns_error(f))?;
            }
        }
        for records in out.values_mut() {
            records.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| a.id.cmp(&b.id, &long)));
        }
        Ok(out)
    }
}

/// One analysed row: its replay order key and what the checks read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keyed {
    ts: i64,
    id: OrderId,
    obs: Observation,
}

impl std::borrow::Borrow<Observation> for Keyed {
    fn borrow(&self) -> &Observation {
        &self.obs
    }
}

/// A request id reduced to 20 bytes that sort like the id's string: a
/// canonical (lowercase, hyphenated) UUID as its 128-bit value, an id of at
/// most 16 bytes as its bytes zero-padded with its length, anything else as
/// an index into the scan's table of long ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OrderId {
    hi: u64,
    lo: u64,
    /// 0..=16: inline of that length; [`UUID`]; [`TABLE`] + index.
    tag: u32,
}

const INLINE_MAX: usize = 16;
const UUID: u32 = 17;
const TABLE: u32 = 18;

impl OrderId {
    fn new(id: &str, long: &mut Vec<Box<str>>) -> OrderId {
        let b = id.as_bytes();
        if b.len() <= INLINE_MAX {
            let mut w = [0u8; INLINE_MAX];
            w[..b.len()].copy_from_slice(b);
            return OrderId::split(u128::from_be_bytes(w), b.len() as u32);
        }
        if b.len() == 36
            && !b.iter().any(u8::is_ascii_uppercase)
            && let Ok(u) = uuid::Uuid::try_parse(id)
        {
            return OrderId::split(u.as_u128(), UUID);
        }
        long.push(id.into());
        OrderId {
            hi: 0,
            lo: 0,
            tag: TABLE + (long.len() - 1) as u32,
        }
    }

    fn split(v: u128, tag: u32) -> OrderId {
        OrderId {
            hi: (v >> 64) as u64,
            lo: v as u64,
            tag,
        }
    }

    fn value(&self) -> u128 {
        (u128::from(self.hi) << 64) | u128::from(self.lo)
    }

    fn cmp(&self, other: &OrderId, long: &[Box<str>]) -> Ordering {
        let inline = |t: u32| t as usize <= INLINE_MAX;
        if (self.tag == UUID && other.tag == UUID) || (inline(self.tag) && inline(other.tag)) {
            // Zero padding then length: a proper prefix sorts first.
            return (self.hi, self.lo, self.tag).cmp(&(other.hi, other.lo, other.tag));
        }
        let (mut a, mut b) = ([0u8; 36], [0u8; 36]);
        self.text(long, &mut a).cmp(other.text(long, &mut b))
    }

    fn text<'a>(&self, long: &'a [Box<str>], buf: &'a mut [u8; 36]) -> &'a str {
        if self.tag == UUID {
            return uuid::Uuid::from_u128(self.value())
                .hyphenated()
                .encode_lower(buf);
        }
        if let Some(i) = self.tag.checked_sub(TABLE) {
            return long.get(i as usize).map_or("", |s| s);
        }
        let len = self.tag as usize;
        buf[..INLINE_MAX].copy_from_slice(&self.value().to_be_bytes());
        // The bytes of a `&str` that fitted inline.
        std::str::from_utf8(&buf[..len]).unwrap_or("")
    }
}

/// The columns a rollout's checks read, beside the four every scan reads.
fn check_columns(rollout: &Rollout) -> Vec<&'static str> {
    let mut cols = vec!["request_id", "ts", "prompt_id", "variant"];
    for c in &rollout.analysis.checks {
        let more: &[&'static str] = match c.metric {
            Metric::OnlinePassRate => &["online_pass"],
            Metric::FeedbackScore => &[],
            Metric::ErrorRate => &["status"],
            Metric::LatencyP95Ms => &["status", "latency_ms"],
            Metric::CostPerCall => &["cost"],
        };
        for m in more {
            if !cols.contains(m) {
                cols.push(m);
            }
        }
    }
    cols
}

/// The first pass over the evidence of `rollout`'s canary in the log roots
/// `sources` (log roots, partition folders or files; one per replica):
/// request rows at or after `since`, and the feedback of the folders. See
/// the module documentation for what is read and the memory it takes.
pub fn scan(
    rollout: &Rollout,
    since: DateTime<Utc>,
    sources: &[PathBuf],
) -> Result<Evidence, CanaryError> {
    let mut evidence = Evidence {
        rows: 0,
        prompts: BTreeMap::new(),
        files: Vec::new(),
        since,
        columns: check_columns(rollout),
        scores: IdMap::default(),
    };
    let Some(canary) = &rollout.canary else {
        return Ok(evidence);
    };
    let filter = RequestFilter {
        since: Some(since),
        ..Default::default()
    };
    evidence.files = request_files(sources, &filter)?;
    let census = census(&evidence.files, since)?;
    evidence.rows = census.rows;
    // The prompts under analysis: those named, else those with canary rows.
    evidence.prompts = if canary.prompts.is_empty() {
        census
            .prompts
            .into_iter()
            .filter(|(_, (_, canary_rows))| *canary_rows > 0)
            .map(|(p, (n, _))| (p, n))
            .collect()
    } else {
        canary
            .prompts
            .iter()
            .map(|p| (p.clone(), census.prompts.get(p).map_or(0, |c| c.0)))
            .collect()
    };
    if rollout
        .analysis
        .checks
        .iter()
        .any(|c| c.metric == Metric::FeedbackScore)
    {
        evidence.scores = latest_scores(sources)?;
    }
    Ok(evidence)
}

fn columns_error(path: &Path) -> impl FnOnce(ColumnError) -> LogStoreError {
    let path = path.to_path_buf();
    move |source| LogStoreError::Columns { path, source }
}

/// The variant of a row: canary (true), stable (false) or neither (None).
fn arm(value: &str, row: usize) -> Result<Option<bool>, ColumnError> {
    match value {
        "canary" => Ok(Some(true)),
        "stable" => Ok(Some(false)),
        "none" => Ok(None),
        other => Err(ColumnError::UnknownVariant {
            row,
            value: other.to_string(),
        }),
    }
}

/// What the first pass counts.
#[derive(Debug, Default)]
struct Census {
    /// Rows at or after `since`.
    rows: usize,
    /// Per prompt: stable and canary rows, and canary rows, in the window.
    prompts: BTreeMap<String, (u64, u64)>,
}

/// Counts the window's rows from `ts`, `prompt_id` and `variant` alone.
fn census(files: &[PathBuf], since: DateTime<Utc>) -> Result<Census, CanaryError> {
    let since_us = since.timestamp_micros();
    let mut out = Census::default();
    for f in files {
        for batch in stream_projected_since(f, &["ts", "prompt_id", "variant"], Some(since))? {
            let batch = batch?;
            let mut count = || -> Result<(), ColumnError> {
                let c = Columns::new(&batch);
                let (ts, prompt, variant) =
                    (c.ts("ts")?, c.opt_str("prompt_id")?, c.str("variant")?);
                for i in 0..batch.num_rows() {
                    // Checked on every row read, as a reader of whole rows does.
                    let arm = arm(need(variant(i), "variant", i)?, i)?;
                    if need(ts(i), "ts", i)? < since_us {
                        continue;
                    }
                    out.rows += 1;
                    let (Some(canary), Some(p)) = (arm, prompt(i)) else {
                        continue;
                    };
                    let counts = match out.prompts.get_mut(p) {
                        Some(c) => c,
                        None => out.prompts.entry(p.to_string()).or_default(),
                    };
                    counts.0 += 1;
                    counts.1 += u64::from(canary);
                }
                Ok(())
            };
            count().map_err(columns_error(f))?;
        }
    }
    Ok(out)
}

/// The latest score per request id hash of the feedback under the folders
/// among `sources` (the record [`crate::logstore::join_feedback`] picks).
fn latest_scores(sources: &[PathBuf]) -> Result<IdMap<f64>, CanaryError> {
    let dirs: Vec<&Path> = sources
        .iter()
        .map(PathBuf::as_path)
        .filter(|p| p.is_dir())
        .collect();
    let mut scores = IdMap::default();
    // Sorted by time then feedback id: the last one wins, as in the join.
    for f in read_feedback(&dirs)? {
        scores.insert(id_hash(&f.request_id), f.score);
    }
    Ok(scores)
}

/// Adds the rows of one batch of the prompts of `prompts` to them.
fn read_batch(
    batch: &arrow_array::RecordBatch,
    columns: &[&str],
    since_us: i64,
    scores: &IdMap<f64>,
    long: &mut Vec<Box<str>>,
    prompts: &mut BTreeMap<String, Vec<Keyed>>,
) -> Result<(), ColumnError> {
    let c = Columns::new(batch);
    let request_id = c.str("request_id")?;
    let ts = c.ts("ts")?;
    let prompt_id = c.opt_str("prompt_id")?;
    let variant = c.str("variant")?;
    // Columns no check reads are not projected: neutral values stand in.
    let wants = |name| columns.contains(&name);
    let status = c.opt_str("status")?;
    let latency = c.f64("latency_ms", wants("latency_ms"))?;
    let cost = c.f64("cost", wants("cost"))?;
    let online_pass = c.bool("online_pass", false)?;
    let (want_status, want_latency, want_cost) =
        (wants("status"), wants("latency_ms"), wants("cost"));
    for i in 0..batch.num_rows() {
        // Checked on every row read, as a reader of whole rows does.
        let arm = arm(need(variant(i), "variant", i)?, i)?;
        let micros = need(ts(i), "ts", i)?;
        if micros < since_us {
            continue;
        }
        let Some(canary) = arm else {
            continue;
        };
        let Some(records) = prompt_id(i).and_then(|p| prompts.get_mut(p)) else {
            continue;
        };
        let id = need(request_id(i), "request_id", i)?;
        let outcome = if want_status {
            Outcome::of(need(status(i), "status", i)?)
        } else {
            Outcome::Ok
        };
        let latency_ms = if want_latency {
            need(latency(i), "latency_ms", i)?
        } else {
            0.0
        };
        let cost = if want_cost {
            need(cost(i), "cost", i)?
        } else {
            0.0
        };
        let score = if scores.is_empty() {
            None
        } else {
            scores.get(&id_hash(id)).copied()
        };
        records.push(Keyed {
            ts: micros,
            id: OrderId::new(id, long),
            obs: Observation::new(canary, outcome, latency_ms, cost, online_pass(i), score),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
