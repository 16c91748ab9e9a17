//! The overview's figures: per prompt and variant over a window (1 h,
//! 24 h, 7 d), the current figures of the whole window and a time series
//! of equal intervals. Percentiles are exact nearest-rank values (the
//! smallest value with at least `q` of the calls at or below it), so an
//! independent reader of the same Parquet files finds the same numbers.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::cache::{FileCalls, FileScores, Group, Snapshot, Status, parallel_map};

/// A window the overview offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Window {
    Hour,
    Day,
    Week,
}

impl Window {
    pub const ALL: [Window; 3] = [Window::Hour, Window::Day, Window::Week];

    pub fn parse(s: &str) -> Option<Window> {
        match s {
            "1h" => Some(Window::Hour),
            "24h" => Some(Window::Day),
            "7d" => Some(Window::Week),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Hour => "1h",
            Window::Day => "24h",
            Window::Week => "7d",
        }
    }

    pub fn duration(self) -> Duration {
        match self {
            Window::Hour => Duration::hours(1),
            Window::Day => Duration::hours(24),
            Window::Week => Duration::days(7),
        }
    }

    /// Intervals of the time series: 1 min, 30 min, 2 h.
    pub fn buckets(self) -> usize {
        match self {
            Window::Hour => 60,
            Window::Day => 48,
            Window::Week => 84,
        }
    }
}

/// The figures of a set of calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub requests: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub error_rate: Option<f64>,
    pub timeout_rate: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p95_ms: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: f64,
    /// Calls with an online verdict, and the share that passed.
    pub online_scored: u64,
    pub online_pass_rate: Option<f64>,
    /// Calls with feedback, and the mean of their latest scores.
    pub feedback_count: u64,
    pub feedback_mean: Option<f64>,
}

/// Accumulates the counts and sums of calls into [`Figures`]; their
/// values for the percentiles are laid out in a [`Scratch`].
#[derive(Debug, Default, Clone)]
struct Acc {
    requests: u64,
    errors: u64,
    timeouts: u64,
    input_tokens: u64,
    output_tokens: u64,
    cost: f64,
    online_scored: u64,
    online_passed: u64,
    feedback_count: u64,
    feedback_sum: f64,
}

impl Acc {
    /// Adds the calls `range` of `file`, whose scores are `scores`.
    fn add_calls(&mut self, file: &FileCalls, scores: &[(usize, f64)], range: Range<usize>) {
        let r = range.clone();
        self.requests += r.len() as u64;
        for s in &file.status[r.clone()] {
            match s {
                Status::Error => self.errors += 1,
                Status::Timeout => self.timeouts += 1,
                _ => {}
            }
        }
        self.input_tokens += file.input_tokens[r.clone()].iter().sum::<u64>();
        self.output_tokens += file.output_tokens[r.clone()].iter().sum::<u64>();
        self.cost += file.cost[r.clone()].iter().sum::<f64>();
        for p in file.online_pass[r.clone()].iter().flatten() {
            self.online_scored += 1;
            self.online_passed += u64::from(*p);
        }
        let first = scores.partition_point(|(i, _)| *i < r.start);
        let end = scores.partition_point(|(i, _)| *i < r.end);
        for (_, s) in &scores[first..end] {
            self.feedback_count += 1;
            self.feedback_sum += s;
        }
    }

    /// Adds everything `other` counted.
    fn merge(&mut self, other: &Acc) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost += other.cost;
        self.online_scored += other.online_scored;
        self.online_passed += other.online_passed;
        self.feedback_count += other.feedback_count;
        self.feedback_sum += other.feedback_sum;
    }

    /// The figures, with the calls' `latency` and `ttft` values (reordered).
    fn finish(&self, latency: &mut [f64], ttft: &mut [f64]) -> Figures {
        let rate = |k: u64, n: u64| (n > 0).then(|| k as f64 / n as f64);
        let lat = percentiles(latency, &[0.5, 0.95, 0.99]);
        let ttft = percentiles(ttft, &[0.5, 0.95]);
        Figures {
            requests: self.requests,
            errors: self.errors,
            timeouts: self.timeouts,
            error_rate: rate(self.errors, self.requests),
            timeout_rate: rate(self.timeouts, self.requests),
            latency_p50_ms: lat[0],
            latency_p95_ms: lat[1],
            latency_p99_ms: lat[2],
            ttft_p50_ms: ttft[0],
            ttft_p95_ms: ttft[1],
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost: self.cost,
            online_scored: self.online_scored,
            online_pass_rate: rate(self.online_passed, self.online_scored),
            feedback_count: self.feedback_count,
            feedback_mean: (self.feedback_count > 0)
                .then(|| self.feedback_sum / self.feedback_count as f64),
        }
    }
}

/// Nearest-rank percentiles of `values` (reordered in place). Each
/// selection after the first searches only above the rank found before
/// (everything there is at or above it).
pub fn percentiles(values: &mut [f64], qs: &[f64]) -> Vec<Option<f64>> {
    let n = values.len();
    if n == 0 {
        return vec![None; qs.len()];
    }
    let rank = |q: f64| ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
    let mut order: Vec<usize> = (0..qs.len()).collect();
    order.sort_by_key(|&i| rank(qs[i]));
    let mut out = vec![None; qs.len()];
    // (rank, value) of the last selection: values[..=rank] are at or below it.
    let mut last: Option<(usize, f64)> = None;
    for i in order {
        let r = rank(qs[i]);
        let v = match last {
            Some((lr, lv)) if lr == r => lv,
            _ => {
                let lo = last.map_or(0, |(lr, _)| lr + 1);
                let (_, v, _) = values[lo..].select_nth_unstable_by(r - lo, f64::total_cmp);
                *v
            }
        };
        last = Some((r, v));
        out[i] = Some(v);
    }
    out
}

/// One prompt and variant over the window.
#[derive(Debug, Clone, Serialize)]
pub struct GroupOverview {
    pub prompt: String,
    pub variant: String,
    pub current: Figures,
    /// One entry per interval, oldest first.
    pub series: Vec<Figures>,
}

/// The overview of every prompt and variant with calls in the window.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub window: Window,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Start of each interval of the series.
    pub bucket_starts: Vec<DateTime<Utc>>,
    pub groups: Vec<GroupOverview>,
    pub total: Figures,
}

/// Where the percentiles are selected, kept between refreshes: a 7-day
/// refresh over a million calls selects in tens of megabytes, which fresh
/// from the allocator each time cost more in page faults than selecting.
#[derive(Debug, Default)]
pub struct Scratch {
    latency: Vec<f64>,
    ttft: Vec<f64>,
}

/// One interval of one group: its counts and where its calls are.
#[derive(Debug, Default)]
struct Interval {
    acc: Acc,
    /// (file index, call range) of every run of its calls.
    pieces: Vec<(usize, Range<usize>)>,
}

/// The figures of one set of calls, with its values in the scratch.
type Job<'a> = Mutex<(Acc, &'a mut [f64], &'a mut [f64])>;

/// [`overview_in`] with buffers of its own.
pub fn overview(snapshot: &Snapshot, window: Window, now: DateTime<Utc>) -> Overview {
    overview_in(snapshot, window, now, &mut Scratch::default())
}

/// Computes the overview of the calls in `[now - window, now)`.
///
/// Each file keeps a group's calls in time order, so an interval's calls
/// are a range found by binary search: the counts and sums of each (group,
/// interval) are sums over slices, and a group's whole window and the total
/// add those up. The values for the percentiles are copied once into
/// `scratch`, interval after interval, group after group; a group's window
/// and the total select on copies of those runs, on every core.
pub fn overview_in(
    snapshot: &Snapshot,
    window: Window,
    now: DateTime<Utc>,
    scratch: &mut Scratch,
) -> Overview {
    let since = now - window.duration();
    let (from, until) = (since.timestamp_micros(), now.timestamp_micros());
    let nb = window.buckets();
    let width = ((until - from) / nb as i64).max(1);
    // Interval b holds the calls with edges[b] <= ts < edges[b + 1]; the
    // last one runs to `until`.
    let edges: Vec<i64> = (0..nb)
        .map(|i| (from + width * i as i64).min(until))
        .chain([until])
        .collect();
    let mut groups: BTreeMap<&Group, Vec<Interval>> = BTreeMap::new();
    let no_scores: FileScores = Arc::from([]);
    for (i, file) in snapshot.files.iter().enumerate() {
        let scores = snapshot.scores.get(i).unwrap_or(&no_scores);
        for (g, run) in file.groups.iter().zip(&file.runs) {
            let ts = &file.ts[run.clone()];
            let bounds: Vec<usize> = edges
                .iter()
                .map(|e| run.start + ts.partition_point(|t| t < e))
                .collect();
            if bounds[0] == bounds[nb] {
                continue;
            }
            let series = groups
                .entry(g)
                .or_insert_with(|| (0..nb).map(|_| Interval::default()).collect());
            for (interval, w) in series.iter_mut().zip(bounds.windows(2)) {
                if w[0] < w[1] {
                    interval.acc.add_calls(file, scores, w[0]..w[1]);
                    interval.pieces.push((i, w[0]..w[1]));
                }
            }
        }
    }

    // The values, interval after interval, group after group: a group's
    // window is one run. Then a copy for the groups' windows and, unless a
    // lone group's window is the total, one for the total.
    let Scratch { latency, ttft } = scratch;
    latency.clear();
    ttft.clear();
    let mut sizes: Vec<(usize, usize)> = Vec::with_capacity(groups.len() * nb);
    for interval in groups.values().flatten() {
        let (l0, t0) = (latency.len(), ttft.len());
        for (f, r) in &interval.pieces {
            let file = &snapshot.files[*f];
            latency.extend_from_slice(&file.latency_ms[r.clone()]);
            ttft.extend_from_slice(file.ttft_in(r.clone()));
        }
        sizes.push((latency.len() - l0, ttft.len() - t0));
    }
    let (n_lat, n_ttft) = (latency.len(), ttft.len());
    let separate_total = groups.len() != 1;
    for _ in 0..if separate_total { 2 } else { 1 } {
        latency.extend_from_within(..n_lat);
        ttft.extend_from_within(..n_ttft);
    }
    let (lat_intervals, lat_rest) = latency.split_at_mut(n_lat);
    let (mut lat_windows, lat_total) = lat_rest.split_at_mut(n_lat);
    let (ttft_intervals, ttft_rest) = ttft.split_at_mut(n_ttft);
    let (mut ttft_windows, ttft_total) = ttft_rest.split_at_mut(n_ttft);

    // Everything to finish, the largest first so that the cores end
    // together: the total, each group's window, then every interval.
    let names: Vec<&Group> = groups.keys().copied().collect();
    let windows: Vec<Acc> = groups
        .values()
        .map(|series| {
            let mut cur = Acc::default();
            for interval in series {
                cur.merge(&interval.acc);
            }
            cur
        })
        .collect();
    let mut jobs: Vec<Job<'_>> = Vec::with_capacity(names.len() * (nb + 1) + 1);
    if separate_total {
        let mut total = Acc::default();
        for w in &windows {
            total.merge(w);
        }
        jobs.push(Mutex::new((total, lat_total, ttft_total)));
    }
    for (acc, series_sizes) in windows.into_iter().zip(sizes.chunks(nb)) {
        let nl = series_sizes.iter().map(|s| s.0).sum();
        let nt = series_sizes.iter().map(|s| s.1).sum();
        let (l, rest) = std::mem::take(&mut lat_windows).split_at_mut(nl);
        lat_windows = rest;
        let (t, rest) = std::mem::take(&mut ttft_windows).split_at_mut(nt);
        ttft_windows = rest;
        jobs.push(Mutex::new((acc, l, t)));
    }
    let (mut lat_rest, mut ttft_rest) = (lat_intervals, ttft_intervals);
    for (interval, (nl, nt)) in groups.into_values().flatten().zip(sizes) {
        let (l, rest) = std::mem::take(&mut lat_rest).split_at_mut(nl);
        lat_rest = rest;
        let (t, rest) = std::mem::take(&mut ttft_rest).split_at_mut(nt);
        ttft_rest = rest;
        jobs.push(Mutex::new((interval.acc, l, t)));
    }
    let mut figures = parallel_map(&jobs, |job| {
        let mut job = job.lock().unwrap_or_else(PoisonError::into_inner);
        let (acc, l, t) = &mut *job;
        acc.finish(l, t)
    })
    .into_iter();

    let total = if separate_total { figures.next() } else { None };
    let currents: Vec<Figures> = figures.by_ref().take(names.len()).collect();
    let bucket_starts = (0..nb)
        .map(|i| DateTime::from_timestamp_micros(from + width * i as i64).unwrap_or(since))
        .collect();
    let total = total
        .or_else(|| currents.first().cloned())
        .unwrap_or_else(|| Acc::default().finish(&mut [], &mut []));
    Overview {
        window,
        since,
        until: now,
        bucket_starts,
        groups: names
            .into_iter()
            .zip(currents)
            .map(|(g, current)| GroupOverview {
                prompt: g.prompt.clone(),
                variant: g.variant.clone(),
                current,
                series: figures.by_ref().take(nb).collect(),
            })
            .collect(),
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v = vec![5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(
            percentiles(&mut v, &[0.0, 0.2, 0.5, 0.95, 1.0]),
            vec![Some(1.0), Some(1.0), Some(3.0), Some(5.0), Some(5.0)]
        );
        assert_eq!(percentiles(&mut [], &[0.5]), vec![None]);
    }

    use std::collections::HashMap;

    use crate::logstore::FeedbackRecord;
    use crate::ui::cache::{CallRecord, Feedback, FileCallsBuilder};

    /// One call as the tests write it.
    #[derive(Debug, Clone)]
    struct Call {
        id: String,
        ts: i64,
        prompt: &'static str,
        variant: &'static str,
        status: Status,
        latency_ms: f64,
        ttft_ms: Option<f64>,
        input_tokens: u64,
        output_tokens: u64,
        cost: f64,
        online_pass: Option<bool>,
    }

    fn call(id: &str, ts: i64, variant: &'static str, status: Status, latency_ms: f64) -> Call {
        Call {
            id: id.into(),
            ts,
            prompt: "a",
            variant,
            status,
            latency_ms,
            ttft_ms: None,
            input_tokens: 10,
            output_tokens: 5,
            cost: 0.25,
            online_pass: Some(status == Status::Ok),
        }
    }

    fn file_of(name: &str, calls: &[Call]) -> Arc<FileCalls> {
        let mut b = FileCallsBuilder::default();
        for c in calls {
            let g = b.group(c.prompt, c.variant);
            b.push(
                g,
                CallRecord {
                    request_id: &c.id,
                    ts: c.ts,
                    status: c.status,
                    latency_ms: c.latency_ms,
                    ttft_ms: c.ttft_ms,
                    input_tokens: c.input_tokens,
                    output_tokens: c.output_tokens,
                    cost: c.cost,
                    online_pass: c.online_pass,
                },
            );
        }
        Arc::new(b.finish(std::path::Path::new(name)))
    }

    fn snapshot(files: &[Vec<Call>], feedback: &[(String, f64)]) -> Snapshot {
        let files = files
            .iter()
            .enumerate()
            .map(|(i, calls)| file_of(&format!("f{i}"), calls))
            .collect();
        let feedback = Feedback::from_records(
            feedback
                .iter()
                .map(|(id, score)| FeedbackRecord::new(id.clone(), *score)),
        );
        Snapshot::new(files, Arc::new(feedback))
    }

    #[test]
    fn figures_per_group_and_interval_from_the_window_only() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let us = |minutes_ago: i64| (now - Duration::minutes(minutes_ago)).timestamp_micros();
        let calls = vec![
            call("old", us(61), "stable", Status::Ok, 1.0),
            call("s1", us(59), "stable", Status::Ok, 10.0),
            call("s3", us(0) - 1, "stable", Status::Timeout, 30.0),
            call("s2", us(30), "stable", Status::Error, 20.0),
            call("c1", us(1), "canary", Status::Ok, 5.0),
        ];
        let feedback = [("s1", 1.0), ("s2", 0.0), ("old", 0.0)].map(|(id, s)| (id.to_string(), s));
        let snap = snapshot(&[calls], &feedback);
        let ov = overview(&snap, Window::Hour, now);
        assert_eq!(ov.total.requests, 4, "the call 61 minutes ago is outside");
        let stable = ov.groups.iter().find(|g| g.variant == "stable");
        let cur = &stable.map(|g| g.current.clone()).unwrap_or_default();
        assert_eq!(cur.requests, 3);
        assert_eq!((cur.errors, cur.timeouts), (1, 1));
        assert_eq!(cur.latency_p50_ms, Some(20.0));
        assert_eq!(cur.latency_p99_ms, Some(30.0));
        assert_eq!(cur.online_pass_rate, Some(1.0 / 3.0));
        assert_eq!((cur.feedback_count, cur.feedback_mean), (2, Some(0.5)));
        assert_eq!(cur.cost, 0.75);
        let series = &stable.map(|g| g.series.clone()).unwrap_or_default();
        assert_eq!(series.len(), 60);
        let per_minute: Vec<u64> = series.iter().map(|f| f.requests).collect();
        assert_eq!(
            (
                per_minute[1],
                per_minute[29],
                per_minute[30],
                per_minute[59]
            ),
            (1, 0, 1, 1)
        );
        assert_eq!(per_minute.iter().sum::<u64>(), 3);
    }

    proptest! {
        #[test]
        fn percentile_is_the_smallest_value_covering_q(
            mut v in prop::collection::vec(-1e6f64..1e6, 1..200),
            q in 0.0f64..=1.0,
        ) {
            let p = percentiles(&mut v, &[q])[0].unwrap_or(f64::NAN);
            let n = v.len() as f64;
            let at_or_below = v.iter().filter(|x| **x <= p).count() as f64;
            let below = v.iter().filter(|x| **x < p).count() as f64;
            prop_assert!(at_or_below >= (q * n).ceil().max(1.0));
            prop_assert!(below < (q * n).ceil().max(1.0));
        }
    }

    /// The overview computed the plain way: every call in file order, its
    /// interval by division, every value pushed to its group, interval and
    /// total, percentiles by sorting.
    fn naive(
        files: &[Vec<Call>],
        feedback: &[(String, f64)],
        window: Window,
        now: DateTime<Utc>,
    ) -> (Vec<(Group, Figures, Vec<Figures>)>, Figures) {
        #[derive(Default, Clone)]
        struct Plain {
            calls: Vec<Call>,
            scores: Vec<f64>,
        }
        fn figures(p: &Plain) -> Figures {
            let rank = |v: &[f64], q: f64| {
                let mut v = v.to_vec();
                v.sort_by(f64::total_cmp);
                let n = v.len();
                (n > 0).then(|| v[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
            };
            let lat: Vec<f64> = p.calls.iter().map(|c| c.latency_ms).collect();
            let ttft: Vec<f64> = p.calls.iter().filter_map(|c| c.ttft_ms).collect();
            let n = p.calls.len() as u64;
            let count = |s: Status| p.calls.iter().filter(|c| c.status == s).count() as u64;
            let online: Vec<bool> = p.calls.iter().filter_map(|c| c.online_pass).collect();
            let rate = |k: u64, n: u64| (n > 0).then(|| k as f64 / n as f64);
            Figures {
                requests: n,
                errors: count(Status::Error),
                timeouts: count(Status::Timeout),
                error_rate: rate(count(Status::Error), n),
                timeout_rate: rate(count(Status::Timeout), n),
                latency_p50_ms: rank(&lat, 0.5),
                latency_p95_ms: rank(&lat, 0.95),
                latency_p99_ms: rank(&lat, 0.99),
                ttft_p50_ms: rank(&ttft, 0.5),
                ttft_p95_ms: rank(&ttft, 0.95),
                input_tokens: p.calls.iter().map(|c| c.input_tokens).sum(),
                output_tokens: p.calls.iter().map(|c| c.output_tokens).sum(),
                cost: p.calls.iter().map(|c| c.cost).sum(),
                online_scored: online.len() as u64,
                online_pass_rate: rate(
                    online.iter().filter(|p| **p).count() as u64,
                    online.len() as u64,
                ),
                feedback_count: p.scores.len() as u64,
                feedback_mean: (!p.scores.is_empty())
                    .then(|| p.scores.iter().sum::<f64>() / p.scores.len() as f64),
            }
        }
        let latest: HashMap<&str, f64> = feedback.iter().map(|(id, s)| (id.as_str(), *s)).collect();
        let since = now - window.duration();
        let (from, until) = (since.timestamp_micros(), now.timestamp_micros());
        let nb = window.buckets();
        let width = (until - from) / nb as i64;
        let mut groups: BTreeMap<Group, (Plain, Vec<Plain>)> = BTreeMap::new();
        let mut total = Plain::default();
        for c in files.iter().flatten() {
            if c.ts < from || c.ts >= until {
                continue;
            }
            let b = (((c.ts - from) / width) as usize).min(nb - 1);
            let key = Group {
                prompt: c.prompt.into(),
                variant: c.variant.into(),
            };
            let e = groups
                .entry(key)
                .or_insert_with(|| (Plain::default(), vec![Plain::default(); nb]));
            for p in [&mut e.0, &mut e.1[b], &mut total] {
                p.calls.push(c.clone());
                p.scores.extend(latest.get(c.id.as_str()));
            }
        }
        (
            groups
                .into_iter()
                .map(|(g, (cur, series))| (g, figures(&cur), series.iter().map(figures).collect()))
                .collect(),
            figures(&total),
        )
    }

    /// Equal but for the sums of floats, which may add in another order.
    fn assert_same(got: &Figures, want: &Figures, what: &str) {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()));
        assert!(close(got.cost, want.cost), "{what}: {got:?} vs {want:?}");
        match (got.feedback_mean, want.feedback_mean) {
            (Some(a), Some(b)) => assert!(close(a, b), "{what}: {got:?} vs {want:?}"),
            (a, b) => assert_eq!(a, b, "{what}"),
        }
        let exact = |f: &Figures| Figures {
            cost: 0.0,
            feedback_mean: None,
            ..f.clone()
        };
        assert_eq!(exact(got), exact(want), "{what}");
    }

    const PROMPTS: [&str; 3] = ["a", "b", "model:m"];
    const VARIANTS: [&str; 2] = ["stable", "canary"];
    const STATUSES: [Status; 5] = [
        Status::Ok,
        Status::Error,
        Status::Timeout,
        Status::ClientClosed,
        Status::Other,
    ];

    /// Calls within 8 days before `now` (and a few after), often on an
    /// interval's edge, with few distinct latencies (ties) and every
    /// optional field sometimes absent.
    fn calls_strategy(now_us: i64) -> impl Strategy<Value = Vec<Call>> {
        let week = 7 * 86_400_000_000i64;
        let offset = prop_oneof![
            0..(week + week / 7),
            // Edges of every window's intervals, give or take 1 µs.
            (
                0i64..=84,
                prop_oneof![
                    Just(3_600_000_000i64 / 60),
                    Just(86_400_000_000 / 48),
                    Just(week / 84)
                ],
                -1i64..=1
            )
                .prop_map(|(k, w, d)| k * w + d),
            Just(-1i64),
        ];
        let call = (
            0usize..40,
            offset,
            0usize..3,
            0usize..2,
            0usize..5,
            0u8..12,
            prop::option::of(0u8..6),
            (0u64..100, 0u64..100, 0u32..1000),
            prop::option::of(any::<bool>()),
        )
            .prop_map(
                move |(id, off, p, v, s, lat, ttft, (i, o, cost), online)| Call {
                    id: format!("r{id}"),
                    ts: now_us - off,
                    prompt: PROMPTS[p],
                    variant: VARIANTS[v],
                    status: STATUSES[s],
                    latency_ms: f64::from(lat) * 1.5,
                    ttft_ms: ttft.map(|t| f64::from(t) * 0.25),
                    input_tokens: i,
                    output_tokens: o,
                    cost: f64::from(cost) / 1000.0,
                    online_pass: online,
                },
            );
        prop::collection::vec(call, 0..80)
    }

    /// `now` in µs, the files' calls, (request id, score), a window index.
    type Case = (i64, Vec<Vec<Call>>, Vec<(String, f64)>, usize);

    fn case() -> impl Strategy<Value = Case> {
        (0i64..1_000_000).prop_flat_map(|micros| {
            let now_us = 1_800_000_000_000_000 + micros;
            (
                Just(now_us),
                prop::collection::vec(calls_strategy(now_us), 0..4),
                prop::collection::vec(((0usize..40).prop_map(|i| format!("r{i}")), 0u8..=4), 0..20)
                    .prop_map(|v| {
                        v.into_iter()
                            .map(|(id, s)| (id, f64::from(s) / 4.0))
                            .collect()
                    }),
                0usize..3,
            )
        })
    }

    proptest! {
        #[test]
        fn overview_equals_the_per_call_computation(
            (now_us, files, feedback, w) in case(),
        ) {
            // One score per id: `Feedback` keeps the latest by time, the
            // naive join the last given.
            let mut seen = std::collections::HashSet::new();
            let feedback: Vec<(String, f64)> =
                feedback.into_iter().filter(|(id, _)| seen.insert(id.clone())).collect();
            let now = DateTime::from_timestamp_micros(now_us).unwrap_or_default();
            let window = Window::ALL[w];
            let snap = snapshot(&files, &feedback);
            // Buffers left over from another window's refresh change nothing.
            let mut scratch = Scratch::default();
            overview_in(&snap, Window::ALL[(w + 1) % 3], now, &mut scratch);
            let ov = overview_in(&snap, window, now, &mut scratch);
            prop_assert_eq!(&serde_json::to_value(&ov).ok(), &serde_json::to_value(overview(&snap, window, now)).ok());
            let (groups, total) = naive(&files, &feedback, window, now);
            assert_same(&ov.total, &total, "total");
            prop_assert_eq!(ov.groups.len(), groups.len());
            for (got, (g, cur, series)) in ov.groups.iter().zip(&groups) {
                prop_assert_eq!((&got.prompt, &got.variant), (&g.prompt, &g.variant));
                assert_same(&got.current, cur, "current");
                prop_assert_eq!(got.series.len(), series.len());
                for (b, (x, y)) in got.series.iter().zip(series).enumerate() {
                    assert_same(x, y, &format!("{} {} interval {b}", g.prompt, g.variant));
                }
            }
        }

        #[test]
        fn several_percentiles_equal_each_one_alone(
            v in prop::collection::vec(0u8..20, 0..300),
            qs in prop::collection::vec(0.0f64..=1.0, 1..6),
        ) {
            let v: Vec<f64> = v.into_iter().map(f64::from).collect();
            let together = percentiles(&mut v.clone(), &qs);
            let alone: Vec<Option<f64>> =
                qs.iter().map(|q| percentiles(&mut v.clone(), &[*q])[0]).collect();
            prop_assert_eq!(together, alone);
        }
    }
}
