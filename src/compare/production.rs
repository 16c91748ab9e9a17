//! The cost-quality plane from production: the request log of a window,
//! grouped by prompt (or pass-through model), prompt version, variant and
//! model. Quality is the online pass rate (the online assertions the proxy
//! scored, over the calls it scored) and the mean feedback score (joined
//! by request id, the latest record wins); cost is the mean logged cost of
//! a call. A canary and its stable version sit on one picture.
//!
//! The frontier is drawn per group name (a prompt's versions and models
//! compete with each other, not with another prompt's), on (cost per call,
//! online pass rate), over the points that have online scores.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::path::Path;

use arrow_array::RecordBatch;
use serde::Serialize;

use super::frontier;
use crate::logstore::{
    ColumnError, Columns, FeedbackRecord, LogStoreError, RequestFilter, RequestStatus, Variant,
    need, request_files, stream_projected,
};
use crate::stats::latency::LatencyQuantiles;
/// One point of the plane.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProductionPoint {
    /// Prompt id, or `model:<name>` for pass-through calls.
    pub group: String,
    /// Git blob id of the prompt file (None for pass-through calls).
    pub prompt_version: Option<String>,
    /// `stable`, `canary` or `none`.
    pub variant: String,
    pub model: String,
    pub calls: u64,
    /// Calls the proxy scored online, and the share that passed.
    pub online_scored: u64,
    pub online_pass_rate: Option<f64>,
    pub feedback_count: u64,
    pub mean_feedback: Option<f64>,
    pub cost_per_call: f64,
    pub cost_per_1k: f64,
    pub error_rate: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub on_frontier: bool,
}

impl ProductionPoint {
    /// A short label: group, variant, version prefix, model.
    pub fn label(&self) -> String {
        let version = self
            .prompt_version
            .as_deref()
            .map(|v| format!(" @{}", &v[..v.len().min(7)]))
            .unwrap_or_default();
        format!("{} {}{version} ({})", self.group, self.variant, self.model)
    }
}

/// The request log columns the plane reads; the others (messages,
/// outputs, variables) are never decoded.
const PLANE_COLUMNS: &[&str] = &[
    "request_id",
    "ts",
    "prompt_id",
    "prompt_version",
    "commit",
    "variant",
    "model",
    "status",
    "latency_ms",
    "cost",
    "online_pass",
];

/// Which calls of the log the plane covers, beyond the filter's dates.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Calls {
    All,
    /// The latest N by time (then request id).
    Last(usize),
    /// Calls served from a commit whose id starts with this.
    Commit(String),
}

/// One logged call: what the plane needs of it.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    ts: i64,
    request_id: String,
    prompt_id: Option<String>,
    prompt_version: Option<String>,
    commit: String,
    variant: Variant,
    model: String,
    ok: bool,
    latency_ms: f64,
    cost: f64,
    online_pass: Option<bool>,
}

impl Call {
    #[cfg(test)]
    fn of_row(r: &crate::logstore::RequestLogRow) -> Call {
        Call {
            ts: r.ts.timestamp_micros(),
            request_id: r.request_id.clone(),
            prompt_id: r.prompt_id.clone(),
            prompt_version: r.prompt_version.clone(),
            commit: r.commit.clone(),
            variant: r.variant,
            model: r.model.clone(),
            ok: r.status == RequestStatus::Ok,
            latency_ms: r.latency_ms,
            cost: r.cost,
            online_pass: r.online_pass,
        }
    }

    /// The calls of a batch holding [`PLANE_COLUMNS`].
    fn of_batch(batch: &RecordBatch) -> Result<Vec<Call>, ColumnError> {
        let c = Columns::new(batch);
        let request_id = c.str("request_id")?;
        let ts = c.ts("ts")?;
        let prompt_id = c.opt_str("prompt_id")?;
        let prompt_version = c.opt_str("prompt_version")?;
        let commit = c.str("commit")?;
        let variant = c.str("variant")?;
        let model = c.str("model")?;
        let status = c.str("status")?;
        let latency_ms = c.f64("latency_ms", true)?;
        let cost = c.f64("cost", true)?;
        let online_pass = c.bool("online_pass", false)?;
        let owned = |v: Option<&str>| v.map(str::to_string);
        (0..batch.num_rows())
            .map(|i| {
                let v = need(variant(i), "variant", i)?;
                Ok(Call {
                    ts: need(ts(i), "ts", i)?,
                    request_id: need(request_id(i), "request_id", i)?.to_string(),
                    prompt_id: owned(prompt_id(i)),
                    prompt_version: owned(prompt_version(i)),
                    commit: need(commit(i), "commit", i)?.to_string(),
                    variant: Variant::parse(v).ok_or_else(|| ColumnError::UnknownVariant {
                        row: i,
                        value: v.to_string(),
                    })?,
                    model: need(model(i), "model", i)?.to_string(),
                    ok: RequestStatus::from(need(status(i), "status", i)?) == RequestStatus::Ok,
                    latency_ms: need(latency_ms(i), "latency_ms", i)?,
                    cost: need(cost(i), "cost", i)?,
                    online_pass: online_pass(i),
                })
            })
            .collect()
    }

    fn group(&self) -> String {
        match &self.prompt_id {
            Some(p) => p.clone(),
            None => crate::drift::model_group(&self.model),
        }
    }
}

/// Orders calls as the log is read: by time, then request id.
struct ByTime(Call);

impl ByTime {
    fn key(&self) -> (i64, &str) {
        (self.0.ts, self.0.request_id.as_str())
    }
}

impl PartialEq for ByTime {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for ByTime {}
impl PartialOrd for ByTime {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByTime {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

#[derive(Default)]
struct Acc {
    calls: u64,
    scored: u64,
    passed: u64,
    feedback: Vec<f64>,
    cost: f64,
    errors: u64,
    latencies: LatencyQuantiles,
}

/// The plane's groups, filled one call at a time.
struct Plane<'f> {
    latest: HashMap<&'f str, &'f FeedbackRecord>,
    groups: BTreeMap<(String, Option<String>, String, String), Acc>,
    calls: usize,
}

impl<'f> Plane<'f> {
    fn new(feedback: &'f [FeedbackRecord]) -> Plane<'f> {
        let mut latest: HashMap<&str, &FeedbackRecord> = HashMap::new();
        for f in feedback {
            match latest.get(f.request_id.as_str()) {
                Some(prev) if prev.ts > f.ts => {}
                _ => {
                    latest.insert(&f.request_id, f);
                }
            }
        }
        Plane {
            latest,
            groups: BTreeMap::new(),
            calls: 0,
        }
    }

    fn add(&mut self, r: Call) {
        self.calls += 1;
        let group = r.group();
        let key = (
            group,
            r.prompt_version,
            r.variant.as_str().to_string(),
            r.model,
        );
        let a = self.groups.entry(key).or_default();
        a.calls += 1;
        if let Some(p) = r.online_pass {
            a.scored += 1;
            a.passed += u64::from(p);
        }
        if let Some(f) = self.latest.get(r.request_id.as_str()) {
            a.feedback.push(f.score);
        }
        a.cost += r.cost;
        if r.ok {
            a.latencies.record(r.latency_ms);
        } else {
            a.errors += 1;
        }
    }

    fn points(self) -> Vec<ProductionPoint> {
        let mut points: Vec<ProductionPoint> = self
            .groups
            .into_iter()
            .map(|((group, prompt_version, variant, model), a)| {
                let n = a.calls.max(1) as f64;
                ProductionPoint {
                    group,
                    prompt_version,
                    variant,
                    model,
                    calls: a.calls,
                    online_scored: a.scored,
                    online_pass_rate: (a.scored > 0).then(|| a.passed as f64 / a.scored as f64),
                    feedback_count: a.feedback.len() as u64,
                    mean_feedback: crate::stats::mean(&a.feedback),
                    cost_per_call: a.cost / n,
                    cost_per_1k: a.cost / n * 1000.0,
                    error_rate: a.errors as f64 / n,
                    latency_p50_ms: a.latencies.quantile(0.5),
                    latency_p95_ms: a.latencies.quantile(0.95),
                    on_frontier: false,
                }
            })
            .collect();
        let names: BTreeSet<String> = points.iter().map(|p| p.group.clone()).collect();
        for name in &names {
            let members: Vec<usize> = (0..points.len())
                .filter(|&i| &points[i].group == name && points[i].online_pass_rate.is_some())
                .collect();
            let xy: Vec<(f64, f64)> = members
                .iter()
                .map(|&i| {
                    (
                        points[i].cost_per_call,
                        points[i].online_pass_rate.unwrap_or(f64::NAN),
                    )
                })
                .collect();
            for k in frontier::pareto(&xy) {
                points[members[k]].on_frontier = true;
            }
        }
        points
    }
}

/// The plane of `rows` with `feedback` joined: the in-memory oracle that
/// the streamed [`read_plane`] is tested against.
#[cfg(test)]
pub fn plane(
    rows: &[crate::logstore::RequestLogRow],
    feedback: &[FeedbackRecord],
) -> Vec<ProductionPoint> {
    let mut p = Plane::new(feedback);
    for r in rows {
        p.add(Call::of_row(r));
    }
    p.points()
}

/// The plane of the request log under `sources` (as
/// [`crate::logstore::read_requests`] finds its files) for the calls that
/// match `filter` and `calls`, with `feedback` joined, and the number of
/// calls it covers. Only [`PLANE_COLUMNS`] are read, one batch at a time;
/// `Calls::Last(n)` holds the n latest calls seen so far, the other
/// selections nothing but the groups' sums.
pub(crate) fn read_plane(
    sources: &[impl AsRef<Path>],
    filter: &RequestFilter,
    calls: &Calls,
    feedback: &[FeedbackRecord],
) -> Result<(usize, Vec<ProductionPoint>), LogStoreError> {
    let mut plane = Plane::new(feedback);
    let mut latest: BinaryHeap<Reverse<ByTime>> = BinaryHeap::new();
    for f in request_files(sources, filter)? {
        for batch in stream_projected(&f, PLANE_COLUMNS)? {
            let decoded = Call::of_batch(&batch?).map_err(|source| LogStoreError::Columns {
                path: f.clone(),
                source,
            })?;
            for c in decoded {
                let ts = chrono::DateTime::from_timestamp_micros(c.ts);
                if !ts.is_some_and(|ts| filter.admits(ts, c.prompt_id.as_deref())) {
                    continue;
                }
                match calls {
                    Calls::All => plane.add(c),
                    Calls::Commit(prefix) => {
                        if c.commit.starts_with(prefix.as_str()) {
                            plane.add(c);
                        }
                    }
                    Calls::Last(n) => {
                        latest.push(Reverse(ByTime(c)));
                        if latest.len() > *n {
                            latest.pop();
                        }
                    }
                }
            }
        }
    }
    // In log order, so that sums add up as for the whole log.
    for Reverse(ByTime(c)) in latest.into_sorted_vec().into_iter().rev() {
        plane.add(c);
    }
    let n = plane.calls;
    Ok((n, plane.points()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logstore::{RequestLogRow, Variant};

    fn row(
        id: &str,
        variant: Variant,
        version: &str,
        cost: f64,
        pass: Option<bool>,
    ) -> RequestLogRow {
        let mut r = RequestLogRow::new(id, chrono::Utc::now());
        r.prompt_id = Some("capital".into());
        r.prompt_version = Some(version.into());
        r.variant = variant;
        r.cost = cost;
        r.online_pass = pass;
        r
    }

    #[test]
    fn a_canary_and_its_stable_version_are_two_points_with_feedback_joined() {
        let rows = vec![
            row("a", Variant::Stable, "v1", 0.02, Some(true)),
            row("b", Variant::Stable, "v1", 0.04, Some(false)),
            row("c", Variant::Canary, "v2", 0.01, Some(true)),
            row("d", Variant::Canary, "v2", 0.01, None),
        ];
        let fb = |id: &str, ts: i64, score: f64| {
            let mut f = FeedbackRecord::new(id, score);
            f.ts = chrono::DateTime::from_timestamp(ts, 0).unwrap();
            f
        };
        let feedback = vec![fb("a", 1, 0.0), fb("a", 2, 1.0), fb("c", 1, 0.5)];
        let p = plane(&rows, &feedback);
        assert_eq!(p.len(), 2);
        // Ordered by group, then version.
        let (stable, canary) = (&p[0], &p[1]);
        assert_eq!(
            (stable.variant.as_str(), canary.variant.as_str()),
            ("stable", "canary")
        );
        assert_eq!(stable.online_pass_rate, Some(0.5));
        assert!((stable.cost_per_call - 0.03).abs() < 1e-12);
        // The latest feedback record wins.
        assert_eq!(stable.mean_feedback, Some(1.0));
        assert_eq!(
            (canary.online_scored, canary.online_pass_rate),
            (1, Some(1.0))
        );
        // Cheaper and better: the canary dominates.
        assert!(canary.on_frontier && !stable.on_frontier);
    }

    /// Mixed calls over two days: prompts and a pass-through model, both
    /// variants, two versions, errors, unscored calls, ties in time.
    fn logged_rows() -> Vec<RequestLogRow> {
        let start = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        (0..900)
            .map(|i: i64| {
                let canary = i % 3 == 0;
                let mut r = row(
                    &format!("req-{i:04}"),
                    if canary {
                        Variant::Canary
                    } else {
                        Variant::Stable
                    },
                    if canary { "v2" } else { "v1" },
                    0.001 + (i % 7) as f64 * 1e-4,
                    (i % 5 != 0).then_some(i % 11 != 0),
                );
                // Two calls per second: ties in time are broken by id.
                r.ts = start + chrono::Duration::seconds(i / 2) + chrono::Duration::hours(i / 20);
                r.commit = if canary {
                    "c0ffee1".into()
                } else {
                    "beef002".into()
                };
                r.latency_ms = 50.0 + (i * 37 % 400) as f64;
                if i % 13 == 0 {
                    r.status = RequestStatus::Other("upstream_error".into());
                }
                if i % 17 == 0 {
                    r.prompt_id = None;
                    r.prompt_version = None;
                    r.model = "gpt-x".into();
                }
                r
            })
            .collect()
    }

    #[tokio::test]
    async fn the_projected_streamed_plane_is_the_plane_of_whole_rows() {
        use crate::logstore::{RequestLogger, read_requests};
        let tmp = tempfile::tempdir().unwrap();
        let config = crate::spec::config::LoggingConfig {
            // Many small files and batches.
            flush_rows: 64,
            ..Default::default()
        };
        let (logger, _) = RequestLogger::start(tmp.path(), &config).unwrap();
        for r in logged_rows() {
            assert!(logger.log(r).await);
        }
        logger.shutdown().await.unwrap();
        let feedback: Vec<FeedbackRecord> = (0..900)
            .step_by(4)
            .map(|i| FeedbackRecord::new(format!("req-{i:04}"), (i % 3) as f64 / 2.0))
            .collect();
        let roots = [tmp.path()];
        let all = read_requests(&roots, &RequestFilter::default()).unwrap();
        assert_eq!(all.len(), 900);
        let filter = RequestFilter {
            since: Some(all[100].ts),
            until: Some(all[800].ts),
            prompt_id: None,
        };
        let in_dates: Vec<RequestLogRow> =
            all.iter().filter(|r| filter.matches(r)).cloned().collect();
        let cases: Vec<(Calls, Vec<RequestLogRow>)> = vec![
            (Calls::All, in_dates.clone()),
            (Calls::Last(250), in_dates[in_dates.len() - 250..].to_vec()),
            (
                Calls::Commit("c0ff".into()),
                in_dates
                    .iter()
                    .filter(|r| r.commit.starts_with("c0ff"))
                    .cloned()
                    .collect(),
            ),
        ];
        for (calls, rows) in cases {
            let (n, got) = read_plane(&roots, &filter, &calls, &feedback).unwrap();
            assert_eq!(n, rows.len(), "{calls:?}");
            assert_eq!(got, plane(&rows, &feedback), "{calls:?}");
            assert!(got.len() >= 2, "{got:?}");
        }
    }
}
