//! The overview's figures: per prompt and variant over a window (1 h,
//! 24 h, 7 d), the current figures of the whole window and a time series
//! of intervals aligned to the clock (1 min, 30 min, 2 h; the first cut at
//! the window's start, the last at its end). Percentiles are exact
//! nearest-rank values (the smallest value with at least `q` of the calls
//! at or below it), so an independent reader of the same Parquet files
//! finds the same numbers.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

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

    /// Intervals of the time series in the window's duration: 1 min,
    /// 30 min, 2 h.
    pub fn buckets(self) -> usize {
        match self {
            Window::Hour => 60,
            Window::Day => 48,
            Window::Week => 84,
        }
    }

    /// Width of an interval of the time series in microseconds.
    pub fn interval_micros(self) -> i64 {
        self.duration().num_microseconds().unwrap_or(i64::MAX) / self.buckets() as i64
    }

    fn index(self) -> usize {
        match self {
            Window::Hour => 0,
            Window::Day => 1,
            Window::Week => 2,
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

/// Counts and sums of a set of calls. Their values for the percentiles
/// are kept apart, sorted, in the [`Piece`]s the set is made of.
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
    /// The counts of the calls `range` of `file`, without their feedback
    /// (which changes while the file does not).
    fn of_calls(file: &FileCalls, range: Range<usize>) -> Acc {
        let mut acc = Acc {
            requests: range.len() as u64,
            input_tokens: file.input_tokens[range.clone()].iter().sum::<u64>(),
            output_tokens: file.output_tokens[range.clone()].iter().sum::<u64>(),
            cost: file.cost[range.clone()].iter().sum::<f64>(),
            ..Acc::default()
        };
        for s in &file.status[range.clone()] {
            match s {
                Status::Error => acc.errors += 1,
                Status::Timeout => acc.timeouts += 1,
                _ => {}
            }
        }
        for p in file.online_pass[range].iter().flatten() {
            acc.online_scored += 1;
            acc.online_passed += u64::from(*p);
        }
        acc
    }

    /// Adds the scores of the calls `range` (`scores` is by call index).
    fn add_scores(&mut self, scores: &[(usize, f64)], range: &Range<usize>) {
        let first = scores.partition_point(|(i, _)| *i < range.start);
        let end = scores.partition_point(|(i, _)| *i < range.end);
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

    /// The figures, with the percentiles of the calls' values, which lie
    /// in the sorted runs `latency` and `ttft`.
    fn finish(&self, latency: &[&[f64]], ttft: &[&[f64]]) -> Figures {
        let rate = |k: u64, n: u64| (n > 0).then(|| k as f64 / n as f64);
        let lat = sorted_percentiles(latency, &[0.5, 0.95, 0.99]);
        let ttft = sorted_percentiles(ttft, &[0.5, 0.95]);
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

/// 0-based nearest rank of quantile `q` among `n > 0` values.
fn rank(q: f64, n: usize) -> usize {
    ((q * n as f64).ceil() as usize).clamp(1, n) - 1
}

/// Nearest-rank percentiles of `values` (reordered in place): the
/// tests' oracle for the selection among sorted runs. Each
/// selection after the first searches only above the rank found before
/// (everything there is at or above it).
#[cfg(test)]
fn percentiles(values: &mut [f64], qs: &[f64]) -> Vec<Option<f64>> {
    let n = values.len();
    if n == 0 {
        return vec![None; qs.len()];
    }
    let mut order: Vec<usize> = (0..qs.len()).collect();
    order.sort_by_key(|&i| rank(qs[i], n));
    let mut out = vec![None; qs.len()];
    // (rank, value) of the last selection: values[..=rank] are at or below it.
    let mut last: Option<(usize, f64)> = None;
    for i in order {
        let r = rank(qs[i], n);
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

/// Nearest-rank percentiles of the values of several runs together, each
/// run sorted by [`f64::total_cmp`].
fn sorted_percentiles(runs: &[&[f64]], qs: &[f64]) -> Vec<Option<f64>> {
    let n: usize = runs.iter().map(|r| r.len()).sum();
    if n == 0 {
        return vec![None; qs.len()];
    }
    let runs: Vec<&[f64]> = runs.iter().copied().filter(|r| !r.is_empty()).collect();
    qs.iter()
        .map(|q| {
            let r = rank(*q, n);
            Some(match runs.as_slice() {
                [one] => one[r],
                many => select_in_sorted(many, r),
            })
        })
        .collect()
}

/// A key whose unsigned order is [`f64::total_cmp`]'s order.
fn order_key(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

/// The value whose [`order_key`] is `key`.
fn from_order_key(key: u64) -> f64 {
    f64::from_bits(if key >> 63 == 1 {
        key & !(1 << 63)
    } else {
        !key
    })
}

/// The value of 0-based rank `r` among the values of non-empty sorted
/// `runs` together, without merging them: bisects the values' order (at
/// most 64 steps), counting in each run by binary search only within the
/// part not yet known to lie below or above the bracket, until few enough
/// values are left in it to select among them.
fn select_in_sorted(runs: &[&[f64]], r: usize) -> f64 {
    select_gathering_below(runs, r, GATHER)
}

/// [`select_in_sorted`], selecting directly once at most `gather` values
/// are left in the bracket.
fn select_gathering_below(runs: &[&[f64]], r: usize, gather: usize) -> f64 {
    let first = |s: &[f64]| order_key(s[0]);
    let last = |s: &[f64]| order_key(s[s.len() - 1]);
    let mut lo = runs.iter().map(|s| first(s)).min().unwrap_or(0);
    let mut hi = runs.iter().map(|s| last(s)).max().unwrap_or(0);
    // The answer is the smallest key K with count(key <= K) > r, and
    // lo <= K <= hi. In each open run (values, a, b): values[..a] have keys
    // below lo, values[b..] above hi; `settled` counts the values below lo
    // of the runs with nothing left between.
    let mut open: Vec<(&[f64], usize, usize)> = runs.iter().map(|s| (*s, 0, s.len())).collect();
    let mut settled = 0usize;
    let mut cuts: Vec<usize> = Vec::with_capacity(open.len());
    loop {
        let inside: usize = open.iter().map(|(_, a, b)| b - a).sum();
        if lo == hi {
            return from_order_key(lo);
        }
        if inside <= gather {
            // Few values left between lo and hi: select among them.
            let below = settled + open.iter().map(|(_, a, _)| a).sum::<usize>();
            let mut left: Vec<f64> = Vec::with_capacity(inside);
            for (s, a, b) in &open {
                left.extend_from_slice(&s[*a..*b]);
            }
            let (_, v, _) = left.select_nth_unstable_by(r - below, f64::total_cmp);
            return *v;
        }
        let mid = lo + (hi - lo) / 2;
        cuts.clear();
        let mut count = settled;
        for (s, a, b) in &open {
            let cut = a + s[*a..*b].partition_point(|x| order_key(*x) <= mid);
            count += cut;
            cuts.push(cut);
        }
        let at_or_below = count > r;
        if at_or_below {
            hi = mid;
        } else {
            lo = mid + 1;
        }
        for ((_, a, b), cut) in open.iter_mut().zip(&cuts) {
            if at_or_below {
                *b = *cut;
            } else {
                *a = *cut;
            }
        }
        open.retain(|(_, a, b)| {
            if a == b {
                settled += a;
            }
            a != b
        });
    }
}

/// Below this many values left in the bracket, [`select_in_sorted`] stops
/// bisecting and selects among them.
const GATHER: usize = 2048;

/// One group and variant's view of the window.
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
    /// Start of each interval of the series: the first is `since`, the
    /// others are multiples of the interval's width since the epoch (UTC).
    pub bucket_starts: Vec<DateTime<Utc>>,
    pub groups: Vec<GroupOverview>,
    pub total: Figures,
}

/// One file's calls of one group within one interval: their counts, and
/// their latency and time-to-first-token values sorted. A file never
/// changes, so a piece is computed once and reused by every refresh whose
/// interval holds the same calls of that file.
#[derive(Debug)]
struct Piece {
    /// Held so that the address in the piece's key stays this file's.
    _file: Arc<FileCalls>,
    calls: Acc,
    latency: Vec<f64>,
    ttft: Vec<f64>,
    /// The refresh of each window that used it last.
    used: [u64; 3],
}

impl Piece {
    fn new(file: &Arc<FileCalls>, range: Range<usize>) -> Piece {
        let mut latency = file.latency_ms[range.clone()].to_vec();
        let mut ttft = file.ttft_in(range.clone()).to_vec();
        latency.sort_unstable_by(f64::total_cmp);
        ttft.sort_unstable_by(f64::total_cmp);
        Piece {
            _file: file.clone(),
            calls: Acc::of_calls(file, range),
            latency,
            ttft,
            used: [0; 3],
        }
    }
}

/// (address of the file's calls, first call, end).
type PieceKey = (usize, usize, usize);

/// The values of an interval made of several pieces, merged into one
/// sorted run and kept between refreshes, updated by the pieces that came
/// (a file of the latest second) and went (the cut at `since` moved, a
/// file was compacted): a window's percentiles then select among one run
/// per interval, however many small files the proxy wrote.
#[derive(Debug, Default)]
struct MergedRun {
    /// Its pieces, sorted.
    keys: Vec<PieceKey>,
    latency: Vec<f64>,
    ttft: Vec<f64>,
    /// The refresh of each window that used it last.
    used: [u64; 3],
}

impl MergedRun {
    /// Brings the run to the pieces `keys` (sorted, all in `pieces`). The
    /// pieces it leaves are read from `pieces` to take their values out;
    /// if one is no longer there, the run is rebuilt.
    fn update(&mut self, keys: &[PieceKey], pieces: &HashMap<PieceKey, Piece>) {
        if self.keys == keys {
            return;
        }
        let left: Vec<&PieceKey> = self
            .keys
            .iter()
            .filter(|k| keys.binary_search(k).is_err())
            .collect();
        let gone: Vec<&Piece> = left.iter().filter_map(|k| pieces.get(*k)).collect();
        let came: Vec<&Piece> = keys
            .iter()
            .filter(|k| self.keys.binary_search(k).is_err())
            .map(|k| &pieces[k])
            .collect();
        if self.keys.is_empty() || gone.len() < left.len() {
            let all: Vec<&Piece> = keys.iter().map(|k| &pieces[k]).collect();
            self.latency = sorted_values(&all, |p| &p.latency);
            self.ttft = sorted_values(&all, |p| &p.ttft);
        } else {
            let pick: [fn(&Piece) -> &[f64]; 2] = [|p| &p.latency, |p| &p.ttft];
            for (values, pick) in [&mut self.latency, &mut self.ttft].into_iter().zip(pick) {
                let kept = remove_sorted(values, &sorted_values(&gone, pick));
                *values = merge_sorted(&kept, &sorted_values(&came, pick));
            }
        }
        self.keys = keys.to_vec();
    }
}

/// The values `pick` takes from each of `pieces`, sorted together.
fn sorted_values(pieces: &[&Piece], pick: fn(&Piece) -> &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = pieces.iter().flat_map(|p| pick(p)).copied().collect();
    v.sort_unstable_by(f64::total_cmp);
    v
}

/// Sorted `a` without the values of sorted `b` (as a multiset; values of
/// `b` not in `a` are ignored).
fn remove_sorted(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(a.len().saturating_sub(b.len()));
    let mut j = 0;
    for x in a {
        while j < b.len() && b[j].total_cmp(x).is_lt() {
            j += 1;
        }
        if j < b.len() && b[j].to_bits() == x.to_bits() {
            j += 1;
        } else {
            out.push(*x);
        }
    }
    out
}

/// Sorted `a` and `b` merged.
fn merge_sorted(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if b[j].total_cmp(&a[i]).is_lt() {
            out.push(b[j]);
            j += 1;
        } else {
            out.push(a[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// The overview's pieces, kept between refreshes. Intervals are aligned
/// to the clock, so as the window slides only the pieces of its first
/// interval (cut at `since`) and of files new since the last refresh are
/// computed; every other piece, and so most of the work of sorting a
/// million values, is reused. A piece no refresh of any window used last
/// time is dropped.
#[derive(Debug, Default)]
pub struct PieceCache {
    pieces: HashMap<PieceKey, Piece>,
    /// Per group, interval width and aligned interval: the merged values
    /// of the intervals made of several pieces.
    merged: HashMap<(Group, i64, i64), MergedRun>,
    /// Number of the latest refresh of each window.
    latest: [u64; 3],
    refreshes: u64,
    /// Pieces computed by the latest refresh.
    computed: usize,
}

impl PieceCache {
    /// How many pieces the latest refresh computed, and how many it kept.
    pub fn stats(&self) -> (usize, usize) {
        (self.computed, self.pieces.len())
    }
}

/// [`overview_in`] with a cache of its own.
#[cfg(test)]
fn overview(snapshot: &Snapshot, window: Window, now: DateTime<Utc>) -> Overview {
    overview_in(snapshot, window, now, &mut PieceCache::default())
}

/// Computes the overview of the calls in `[now - window, now)`.
///
/// Each file keeps a group's calls in time order, so an interval's calls
/// in a file are a range found by binary search: a piece. Counts and sums
/// add up over the pieces; percentiles are selected among the pieces'
/// sorted values without merging them.
pub fn overview_in(
    snapshot: &Snapshot,
    window: Window,
    now: DateTime<Utc>,
    cache: &mut PieceCache,
) -> Overview {
    let since = now - window.duration();
    let (from, until) = (since.timestamp_micros(), now.timestamp_micros());
    let width = window.interval_micros();
    // Interval b holds the calls with edges[b] <= ts < edges[b + 1]: the
    // first starts at `from`, the last ends at `until`, the others are
    // aligned to the clock.
    let edges: Vec<i64> = std::iter::once(from)
        .chain((from.div_euclid(width) + 1..=(until - 1).div_euclid(width)).map(|k| k * width))
        .chain([until])
        .collect();
    let nb = edges.len() - 1;
    let w = window.index();
    cache.refreshes += 1;
    let refresh = cache.refreshes;
    cache.latest[w] = refresh;

    // (file, calls) of every piece, per group and interval.
    type Parts = Vec<Vec<(usize, Range<usize>)>>;
    let mut groups: BTreeMap<&Group, Parts> = BTreeMap::new();
    for (i, file) in snapshot.files.iter().enumerate() {
        for (g, run) in file.groups.iter().zip(&file.runs) {
            let ts = &file.ts[run.clone()];
            let (Some(first), Some(last)) = (ts.first(), ts.last()) else {
                continue;
            };
            // Only the edges within the run's time span are searched for:
            // a small file of the latest seconds meets one or two.
            let (inner_from, inner_to) = (
                edges.partition_point(|e| e <= first),
                edges.partition_point(|e| e <= last),
            );
            let bounds: Vec<usize> = (0..edges.len())
                .map(|j| match j {
                    j if j < inner_from => run.start,
                    j if j >= inner_to => run.end,
                    j => run.start + ts.partition_point(|t| *t < edges[j]),
                })
                .collect();
            if bounds[0] == bounds[nb] {
                continue;
            }
            let series = groups.entry(g).or_insert_with(|| vec![Vec::new(); nb]);
            for (parts, b) in series.iter_mut().zip(bounds.windows(2)) {
                if b[0] < b[1] {
                    parts.push((i, b[0]..b[1]));
                }
            }
        }
    }
    let key = |f: usize, r: &Range<usize>| -> PieceKey {
        (Arc::as_ptr(&snapshot.files[f]) as usize, r.start, r.end)
    };
    let mut missing: Vec<(PieceKey, usize, Range<usize>)> = Vec::new();
    for (f, r) in groups.values().flatten().flatten() {
        let k = key(*f, r);
        match cache.pieces.get_mut(&k) {
            Some(p) => p.used[w] = refresh,
            None => missing.push((k, *f, r.clone())),
        }
    }
    missing.sort_unstable_by_key(|m| m.0);
    missing.dedup_by_key(|m| m.0);
    let computed = parallel_map(&missing, |(_, f, r)| {
        Piece::new(&snapshot.files[*f], r.clone())
    });
    cache.computed = computed.len();
    for ((k, _, _), mut p) in missing.into_iter().zip(computed) {
        p.used[w] = refresh;
        cache.pieces.insert(k, p);
    }
    // Intervals of several pieces: their merged runs, brought up to date
    // while the pieces they leave are still cached.
    for (g, series) in &groups {
        for (b, parts) in series.iter().enumerate() {
            if parts.len() < 2 {
                continue;
            }
            let mut keys: Vec<PieceKey> = parts.iter().map(|(f, r)| key(*f, r)).collect();
            keys.sort_unstable();
            let id = ((*g).clone(), width, edges[b].div_euclid(width));
            let run = cache.merged.entry(id).or_default();
            run.update(&keys, &cache.pieces);
            run.used[w] = refresh;
        }
    }
    let latest = cache.latest;
    let live = |used: &[u64; 3]| (0..3).any(|w| latest[w] > 0 && used[w] == latest[w]);
    cache.pieces.retain(|_, p| live(&p.used));
    cache.merged.retain(|_, r| live(&r.used));

    // The figures of each interval, of each group's window and of the
    // total, from the pieces, with the feedback joined at this refresh.
    let no_scores: FileScores = Arc::from([]);
    let (pieces, merged) = (&cache.pieces, &cache.merged);
    let piece_acc = |f: usize, r: &Range<usize>| -> (&Piece, Acc) {
        let p = &pieces[&key(f, r)];
        let mut acc = p.calls.clone();
        acc.add_scores(snapshot.scores.get(f).unwrap_or(&no_scores), r);
        (p, acc)
    };
    let mut total = Acc::default();
    let (mut total_lat, mut total_ttft): (Vec<&[f64]>, Vec<&[f64]>) = (Vec::new(), Vec::new());
    let n_groups = groups.len();
    let mut out_groups = Vec::with_capacity(n_groups);
    for (g, series) in groups {
        let mut window_acc = Acc::default();
        let (mut lat, mut ttft): (Vec<&[f64]>, Vec<&[f64]>) = (Vec::new(), Vec::new());
        let series: Vec<Figures> = series
            .iter()
            .enumerate()
            .map(|(b, parts)| {
                let mut acc = Acc::default();
                let (l0, t0) = (lat.len(), ttft.len());
                for (f, r) in parts {
                    let (p, a) = piece_acc(*f, r);
                    acc.merge(&a);
                    if parts.len() == 1 {
                        lat.push(&p.latency);
                        ttft.push(&p.ttft);
                    }
                }
                if parts.len() > 1 {
                    let run = &merged[&(g.clone(), width, edges[b].div_euclid(width))];
                    lat.push(&run.latency);
                    ttft.push(&run.ttft);
                }
                window_acc.merge(&acc);
                acc.finish(&lat[l0..], &ttft[t0..])
            })
            .collect();
        let current = window_acc.finish(&lat, &ttft);
        total.merge(&window_acc);
        if n_groups > 1 {
            total_lat.extend(lat);
            total_ttft.extend(ttft);
        }
        out_groups.push(GroupOverview {
            prompt: g.prompt.clone(),
            variant: g.variant.clone(),
            current,
            series,
        });
    }
    let total = match out_groups.as_slice() {
        [one] => one.current.clone(),
        _ => total.finish(&total_lat, &total_ttft),
    };
    Overview {
        window,
        since,
        until: now,
        bucket_starts: edges[..nb]
            .iter()
            .map(|t| DateTime::from_timestamp_micros(*t).unwrap_or(since))
            .collect(),
        groups: out_groups,
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

    #[test]
    fn a_refresh_computes_only_the_pieces_of_new_files_and_of_the_cut_interval() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let at = |ago: Duration| (now - ago).timestamp_micros();
        // A call every 10 minutes over the week, none within 1 s after the
        // window's start.
        let week: Vec<Call> = (0..7 * 24 * 6)
            .map(|k| {
                let ts = at(Duration::minutes(10 * k + 5));
                call(&format!("w{k}"), ts, "stable", Status::Ok, k as f64)
            })
            .collect();
        let old = file_of("old", &week);
        let mut cache = PieceCache::default();
        let snap = Snapshot::new(vec![old.clone()], Arc::default());
        let first = overview_in(&snap, Window::Week, now, &mut cache);
        assert_eq!(
            first.bucket_starts.len(),
            84,
            "`now` on an edge: no cut interval"
        );
        assert_eq!(cache.stats(), (84, 84));

        // One second later, one new file with one call: one new piece.
        let later = now + Duration::seconds(1);
        let new = file_of(
            "new",
            &[call(
                "n",
                at(-Duration::milliseconds(500)),
                "stable",
                Status::Error,
                7.5,
            )],
        );
        let snap = Snapshot::new(vec![old.clone(), new.clone()], Arc::default());
        let ov = overview_in(&snap, Window::Week, later, &mut cache);
        assert_eq!(cache.stats(), (1, 85));
        assert_eq!(
            ov.bucket_starts.len(),
            85,
            "a cut first interval and a new last one"
        );
        assert_eq!(ov.total.requests, first.total.requests + 1);
        assert_eq!(ov.total.errors, 1);

        // A new file whose call is on the next refresh's start: its piece
        // is the only one computed (the old file's first piece, cut 1 µs
        // later, holds the same calls).
        let next = later + Duration::microseconds(1);
        let start = (next - Duration::days(7)).timestamp_micros();
        let edge = file_of("edge", &[call("e", start, "stable", Status::Ok, 1.0)]);
        let snap = Snapshot::new(vec![old, new, edge], Arc::default());
        let ov2 = overview_in(&snap, Window::Week, next, &mut cache);
        assert_eq!(cache.stats(), (1, 86));
        assert_eq!(ov2.total.requests, ov.total.requests + 1);
        assert_eq!(
            ov2.groups[0].series[0].requests,
            1 + ov.groups[0].series[0].requests
        );
        assert_eq!(
            serde_json::to_value(&ov2).ok(),
            serde_json::to_value(overview(&snap, Window::Week, next)).ok()
        );
    }

    #[test]
    fn selection_among_sorted_runs_orders_as_total_cmp() {
        let runs: [&[f64]; 3] = [
            &[-0.0, 1.0, 3.0],
            &[f64::NEG_INFINITY, 0.0, 3.0],
            &[-2.5, 2.0],
        ];
        let mut all: Vec<f64> = runs.concat();
        all.sort_by(f64::total_cmp);
        for (r, want) in all.iter().enumerate() {
            for gather in [0, 3, GATHER] {
                let got = select_gathering_below(&runs, r, gather);
                assert_eq!(got.to_bits(), want.to_bits(), "rank {r}, gather {gather}");
            }
        }
    }

    proptest! {
        #[test]
        fn selection_among_sorted_runs_equals_sorting_them_together(
            runs in prop::collection::vec(
                prop::collection::vec(prop_oneof![any::<f64>(), (0u8..8).prop_map(f64::from)], 1..30),
                1..8,
            ),
            q in 0.0f64..=1.0,
        ) {
            let mut runs = runs;
            for r in &mut runs {
                r.sort_by(f64::total_cmp);
            }
            let refs: Vec<&[f64]> = runs.iter().map(Vec::as_slice).collect();
            let mut all = runs.concat();
            let want = percentiles(&mut all, &[q])[0].map(f64::to_bits);
            prop_assert_eq!(sorted_percentiles(&refs, &[q])[0].map(f64::to_bits), want);
            // Bisecting all the way, and stopping part of the way.
            let r = rank(q, all.len());
            for gather in [0, 1, 7] {
                prop_assert_eq!(Some(select_gathering_below(&refs, r, gather).to_bits()), want);
            }
        }

        #[test]
        fn removing_and_merging_sorted_values_keeps_the_multiset(
            a in prop::collection::vec(0u8..10, 0..40),
            take in prop::collection::vec(any::<bool>(), 40),
            b in prop::collection::vec(0u8..10, 0..40),
        ) {
            let sorted = |v: Vec<f64>| { let mut v = v; v.sort_by(f64::total_cmp); v };
            let a = sorted(a.into_iter().map(f64::from).collect());
            let gone = sorted(a.iter().zip(&take).filter(|(_, t)| **t).map(|(x, _)| *x).collect());
            let kept = sorted(a.iter().zip(&take).filter(|(_, t)| !**t).map(|(x, _)| *x).collect());
            prop_assert_eq!(&remove_sorted(&a, &gone), &kept);
            let b = sorted(b.into_iter().map(f64::from).collect());
            let mut both = a.clone();
            both.extend(&b);
            prop_assert_eq!(merge_sorted(&a, &b), sorted(both));
        }

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
        let width = window.interval_micros();
        let first = from.div_euclid(width);
        let nb = ((until - 1).div_euclid(width) - first + 1) as usize;
        let mut groups: BTreeMap<Group, (Plain, Vec<Plain>)> = BTreeMap::new();
        let mut total = Plain::default();
        for c in files.iter().flatten() {
            if c.ts < from || c.ts >= until {
                continue;
            }
            let b = (c.ts.div_euclid(width) - first) as usize;
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
            // Edges of every window's intervals (aligned to the clock)
            // and its start, give or take 1 µs.
            (
                0i64..=85,
                prop_oneof![
                    Just(3_600_000_000i64 / 60),
                    Just(86_400_000_000 / 48),
                    Just(week / 84)
                ],
                -1i64..=1
            )
                .prop_map(move |(k, w, d)| now_us - ((now_us.div_euclid(w) - k) * w + d)),
            (
                prop_oneof![Just(3_600_000_000i64), Just(86_400_000_000), Just(week)],
                -1i64..=1
            )
                .prop_map(|(w, d)| w + d),
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
            earlier_files in 0usize..4,
            earlier_by in prop_oneof![Just(0i64), 1i64..=1_000_000, 1i64..=20_000_000_000],
        ) {
            // One score per id: `Feedback` keeps the latest by time, the
            // naive join the last given.
            let mut seen = std::collections::HashSet::new();
            let feedback: Vec<(String, f64)> =
                feedback.into_iter().filter(|(id, _)| seen.insert(id.clone())).collect();
            let now = DateTime::from_timestamp_micros(now_us).unwrap_or_default();
            let window = Window::ALL[w];
            let snap = snapshot(&files, &feedback);
            // Pieces left over from earlier refreshes (fewer files, other
            // feedback, an earlier `now`, another window) change nothing.
            let mut cache = PieceCache::default();
            let earlier = Snapshot::new(
                snap.files[..earlier_files.min(snap.files.len())].to_vec(),
                Arc::new(Feedback::from_records(
                    feedback.iter().skip(1).map(|(id, s)| FeedbackRecord::new(id.clone(), 1.0 - s)),
                )),
            );
            let before = now - Duration::microseconds(earlier_by);
            overview_in(&earlier, window, before, &mut cache);
            overview_in(&snap, Window::ALL[(w + 1) % 3], now, &mut cache);
            let ov = overview_in(&snap, window, now, &mut cache);
            prop_assert_eq!(&serde_json::to_value(&ov).ok(), &serde_json::to_value(overview(&snap, window, now)).ok());
            let again = overview_in(&snap, window, now, &mut cache);
            prop_assert_eq!(cache.stats().0, 0, "nothing new: every piece reused");
            prop_assert_eq!(&serde_json::to_value(&again).ok(), &serde_json::to_value(&ov).ok());
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
        fn a_kept_cache_equals_a_fresh_one_over_any_sequence_of_refreshes(
            files in prop::collection::vec(
                prop::collection::vec((0i64..200_000_000, 0u8..6, 0usize..2, prop::option::of(0u8..4)), 1..25),
                1..8,
            ),
            steps in prop::collection::vec((any::<u8>(), 0i64..150_000_000, 0usize..3), 1..6),
        ) {
            // Calls of the last minutes before `base`, in small files:
            // intervals made of several pieces in every window.
            let base = 1_800_000_000_000_000i64 + 123_456;
            let files: Vec<Arc<FileCalls>> = files
                .iter()
                .enumerate()
                .map(|(i, calls)| {
                    let calls: Vec<Call> = calls
                        .iter()
                        .enumerate()
                        .map(|(j, (ago, lat, v, ttft))| Call {
                            ttft_ms: ttft.map(f64::from),
                            ..call(&format!("f{i}c{j}"), base - ago, VARIANTS[*v], Status::Ok, f64::from(*lat))
                        })
                        .collect();
                    file_of(&format!("f{i}"), &calls)
                })
                .collect();
            let mut cache = PieceCache::default();
            for (mask, later, w) in steps {
                let chosen: Vec<Arc<FileCalls>> = files
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask >> (i % 8) & 1 == 1)
                    .map(|(_, f)| f.clone())
                    .collect();
                let snap = Snapshot::new(chosen, Arc::default());
                let now = DateTime::from_timestamp_micros(base + later).unwrap_or_default();
                let kept = overview_in(&snap, Window::ALL[w], now, &mut cache);
                let fresh = overview(&snap, Window::ALL[w], now);
                prop_assert_eq!(serde_json::to_value(&kept).ok(), serde_json::to_value(&fresh).ok());
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
