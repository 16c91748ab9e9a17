//! Prometheus metrics of the proxy, rendered in text exposition format 0.0.4.
//!
//! `record_request` runs once per proxied request, so its path is a read
//! lock on one of several shards (chosen by a hash of the prompt id) plus a
//! handful of relaxed atomic adds; the write lock is taken only the first
//! time a (prompt, variant) or status is seen. `render` runs per scrape and
//! may be slow-ish: it sorts series so the output is stable.
//!
//! Label values come from the server (prompt ids it resolved, variants,
//! statuses, upstream names), so their cardinality is bounded by the repo;
//! still, past [`MAX_SERIES`] (prompt, variant) pairs new pairs are folded
//! into one `prompt="_other_"` series so a bug cannot grow memory without
//! bound.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::status::OnlineCount;

/// Upper bounds (seconds) of the latency histogram buckets. LLM calls span
/// from a few ms (cache hits, small local models) to minutes (long
/// generations), so the buckets are roughly logarithmic over that range.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// Upper bounds (seconds) of the time-to-first-token buckets: TTFT is
/// dominated by prompt processing and queueing, denser below 2 s.
pub const TTFT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
];

/// Distinct (prompt, variant) pairs kept before new ones are folded into
/// [`OVERFLOW_PROMPT`].
pub const MAX_SERIES: usize = 4096;

/// Prompt label of the series that absorbs pairs beyond [`MAX_SERIES`].
pub const OVERFLOW_PROMPT: &str = "_other_";

const SHARDS: usize = 16;

/// One proxied request, as the server saw it when it finished.
#[derive(Debug, Clone, Copy)]
pub struct RequestSample<'a> {
    pub prompt: &'a str,
    pub variant: &'a str,
    pub status: &'a str,
    pub latency_ms: f64,
    /// Time to first token; `None` when the call failed before any token.
    pub ttft_ms: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: f64,
}

/// A value the server reads at scrape time (log queue depth, dropped rows,
/// breaker states, ...), rendered as a Prometheus gauge.
#[derive(Debug, Clone, PartialEq)]
pub struct GaugeSample {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// An f64 that can be added to atomically (compare-and-swap on its bits).
#[derive(Debug, Default)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn add(&self, v: f64) {
        // fetch_update retries on contention; the closure never returns None.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Cumulative-at-render histogram: each observation increments exactly one
/// bucket (the first bound >= value, or the overflow slot), and `render`
/// computes the running sums, so `_bucket{le="+Inf"}` always equals `_count`.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    /// `bounds.len() + 1` slots; the last counts values above every bound.
    counts: Box<[AtomicU64]>,
    sum: AtomicF64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicF64::default(),
        }
    }

    fn observe(&self, v: f64) {
        // NaN would poison the sum forever; a negative latency is a clock
        // artefact. Both are clamped rather than dropped so counts stay exact.
        let v = if v.is_nan() { 0.0 } else { v.max(0.0) };
        let idx = self.bounds.partition_point(|b| *b < v);
        self.counts[idx].fetch_add(1, Ordering::Relaxed);
        self.sum.add(v);
    }

    /// (cumulative bucket counts, count, sum). The count is the last
    /// cumulative value, so a scrape racing with `observe` is still
    /// self-consistent between buckets and `_count`.
    fn snapshot(&self) -> (Vec<u64>, u64, f64) {
        let mut acc = 0u64;
        let mut cum = Vec::with_capacity(self.counts.len());
        for c in self.counts.iter() {
            acc += c.load(Ordering::Relaxed);
            cum.push(acc);
        }
        (cum, acc, self.sum.get())
    }
}

/// Everything recorded for one (prompt, variant) pair.
#[derive(Debug)]
struct Series {
    /// Statuses are few (ok, error, timeout, client_closed, ...), so a short
    /// list beats a map; the write lock is taken once per new status.
    statuses: RwLock<Vec<(Box<str>, AtomicU64)>>,
    latency: Histogram,
    ttft: Histogram,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    cost: AtomicF64,
}

impl Series {
    fn new() -> Series {
        Series {
            statuses: RwLock::new(Vec::new()),
            latency: Histogram::new(LATENCY_BUCKETS),
            ttft: Histogram::new(TTFT_BUCKETS),
            input_tokens: AtomicU64::new(0),
            output_tokens: AtomicU64::new(0),
            cost: AtomicF64::default(),
        }
    }

    fn bump_status(&self, status: &str) {
        {
            let list = self.statuses.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, c)) = list.iter().find(|(s, _)| &**s == status) {
                c.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut list = self
            .statuses
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Another thread may have added it between the two locks.
        match list.iter().find(|(s, _)| &**s == status) {
            Some((_, c)) => {
                c.fetch_add(1, Ordering::Relaxed);
            }
            None => list.push((status.into(), AtomicU64::new(1))),
        }
    }

    fn record(&self, r: &RequestSample<'_>) {
        self.bump_status(r.status);
        self.latency.observe(r.latency_ms / 1000.0);
        if let Some(t) = r.ttft_ms {
            self.ttft.observe(t / 1000.0);
        }
        self.input_tokens
            .fetch_add(r.input_tokens, Ordering::Relaxed);
        self.output_tokens
            .fetch_add(r.output_tokens, Ordering::Relaxed);
        if r.cost.is_finite() && r.cost > 0.0 {
            self.cost.add(r.cost);
        }
    }
}

/// A per-series counter family: name, help, value getter.
type CounterColumn = (&'static str, &'static str, fn(&Series) -> f64);

/// prompt -> variant -> series. Nested maps so a lookup borrows `&str`
/// keys and allocates nothing.
type Shard = HashMap<Box<str>, HashMap<Box<str>, Arc<Series>>>;

/// The proxy's metrics registry; share it as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    hasher: RandomState,
    shards: Box<[RwLock<Shard>]>,
    series_count: AtomicU64,
    upstream_errors: Mutex<BTreeMap<(String, String), u64>>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// Counters of [`EVENT_COUNTERS`], by name, then label values.
    events: Mutex<BTreeMap<&'static str, BTreeMap<Vec<String>, u64>>>,
}

/// Online verdicts: `prompt`, `variant`, `result` (`pass` | `fail`).
pub const ONLINE_PASS: &str = "promptgate_online_pass_total";
/// Sampled online judge verdicts: `prompt`, `variant`, `assertion`,
/// `result` (`pass` | `fail` | `error` | `skipped`).
pub const ONLINE_JUDGE: &str = "promptgate_online_judge_total";
/// Canary analyses: `prompt`, `decision`.
pub const CANARY_DECISIONS: &str = "promptgate_canary_decisions_total";
/// Fetch rounds of `serve --fetch`: `result`.
pub const FETCHES: &str = "promptgate_fetch_total";
/// Low feedback handled by `review.auto_enqueue`: `result`.
pub const REVIEW_AUTO: &str = "promptgate_review_auto_total";

/// Counters recorded off the request path, with their labels and help.
const EVENT_COUNTERS: &[(&str, &[&str], &str)] = &[
    (
        ONLINE_PASS,
        &["prompt", "variant", "result"],
        "Responses scored by the online assertions, by prompt, variant and verdict.",
    ),
    (
        ONLINE_JUDGE,
        &["prompt", "variant", "assertion", "result"],
        "Sampled online llm_judge verdicts (skipped: no free judge slot).",
    ),
    (
        CANARY_DECISIONS,
        &["prompt", "decision"],
        "Canary analyses of the analyzer task, by prompt and decision.",
    ),
    (
        FETCHES,
        &["result"],
        "Refs followed from the remote by serve --fetch, by result (updated, unchanged, non_fast_forward, error).",
    ),
    (
        REVIEW_AUTO,
        &["result"],
        "Low feedback handled by review.auto_enqueue, by result (enqueued, duplicate, sampled_out, capped, overflow, not_found, not_reviewable, error).",
    ),
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::new())).collect(),
            series_count: AtomicU64::new(0),
            upstream_errors: Mutex::new(BTreeMap::new()),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            events: Mutex::new(BTreeMap::new()),
        }
    }

    fn shard_of(&self, prompt: &str) -> &RwLock<Shard> {
        &self.shards[(self.hasher.hash_one(prompt) as usize) % SHARDS]
    }

    /// Record into an existing series under the shard's read lock; false
    /// when the pair is new.
    fn record_existing(&self, prompt: &str, r: &RequestSample<'_>) -> bool {
        let shard = self
            .shard_of(prompt)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match shard.get(prompt).and_then(|v| v.get(r.variant)) {
            Some(s) => {
                s.record(r);
                true
            }
            None => false,
        }
    }

    /// Count one finished request: status counter, latency and TTFT
    /// histograms, token and cost counters.
    pub fn record_request(&self, r: &RequestSample<'_>) {
        if self.record_existing(r.prompt, r) {
            return;
        }
        let full = self.series_count.load(Ordering::Relaxed) as usize >= MAX_SERIES;
        let prompt = if full { OVERFLOW_PROMPT } else { r.prompt };
        if full && self.record_existing(prompt, r) {
            return;
        }
        let mut shard = self
            .shard_of(prompt)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let variants = shard.entry(prompt.into()).or_default();
        // Another thread may have created it between the two locks.
        if let Some(s) = variants.get(r.variant) {
            s.record(r);
            return;
        }
        let s = Series::new();
        s.record(r);
        variants.insert(r.variant.into(), Arc::new(s));
        self.series_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Count one failed upstream call; `kind` is e.g. `ProviderError::kind()`.
    pub fn record_upstream_error(&self, upstream: &str, kind: &str) {
        let mut map = self
            .upstream_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Look up by reference first so the common case allocates nothing.
        if let Some((_, n)) = map
            .iter_mut()
            .find(|((u, k), _)| u == upstream && k == kind)
        {
            *n += 1;
        } else {
            map.insert((upstream.to_string(), kind.to_string()), 1);
        }
    }

    /// Count one reload attempt of the serving state.
    pub fn record_reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds one to the event counter `name` (one of [`EVENT_COUNTERS`]) with
    /// these label values, in the order the counter declares its labels.
    pub fn count_event(&self, name: &'static str, labels: &[&str]) {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let by_labels = events.entry(name).or_default();
        if let Some(n) = by_labels
            .iter_mut()
            .find(|(k, _)| k.iter().map(String::as_str).eq(labels.iter().copied()))
            .map(|(_, n)| n)
        {
            *n += 1;
        } else {
            by_labels.insert(labels.iter().map(|l| l.to_string()).collect(), 1);
        }
    }

    /// Counts one response scored by the online assertions.
    pub fn record_online(&self, prompt: &str, variant: &str, pass: bool) {
        let result = if pass { "pass" } else { "fail" };
        self.count_event(ONLINE_PASS, &[prompt, variant, result]);
    }

    /// Online verdicts per prompt and variant, sorted.
    pub fn online_counts(&self) -> Vec<OnlineCount> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let mut by: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for (labels, n) in events.get(ONLINE_PASS).into_iter().flatten() {
            if let [prompt, variant, result] = labels.as_slice() {
                let e = by.entry((prompt.clone(), variant.clone())).or_default();
                e.0 += n;
                if result == "pass" {
                    e.1 += n;
                }
            }
        }
        by.into_iter()
            .map(|((prompt, variant), (evaluated, passed))| OnlineCount {
                prompt,
                variant,
                evaluated,
                passed,
                pass_rate: (evaluated > 0).then(|| passed as f64 / evaluated as f64),
            })
            .collect()
    }

    /// Per (prompt, variant): the live totals the dashboard shows beside
    /// the logs (the same counters `render` writes).
    pub fn live_totals(&self) -> Vec<crate::ui::LiveFigures> {
        let online = self.online_counts();
        self.all_series()
            .into_iter()
            .map(|(prompt, variant, s)| {
                let statuses = s.statuses.read().unwrap_or_else(PoisonError::into_inner);
                let count = |name: &str| {
                    statuses
                        .iter()
                        .filter(|(k, _)| &**k == name)
                        .map(|(_, c)| c.load(Ordering::Relaxed))
                        .sum::<u64>()
                };
                let requests = statuses
                    .iter()
                    .map(|(_, c)| c.load(Ordering::Relaxed))
                    .sum::<u64>();
                let (_, n, sum) = s.latency.snapshot();
                let o = online
                    .iter()
                    .find(|o| o.prompt == prompt && o.variant == variant);
                crate::ui::LiveFigures {
                    requests,
                    errors: count("error"),
                    timeouts: count("timeout"),
                    input_tokens: s.input_tokens.load(Ordering::Relaxed),
                    output_tokens: s.output_tokens.load(Ordering::Relaxed),
                    cost: s.cost.get(),
                    latency_mean_ms: (n > 0).then(|| sum * 1000.0 / n as f64),
                    online_scored: o.map_or(0, |o| o.evaluated),
                    online_passed: o.map_or(0, |o| o.passed),
                    prompt,
                    variant,
                }
            })
            .collect()
    }

    /// Every (prompt, variant) pair with its series, sorted for stable output.
    fn all_series(&self) -> Vec<(String, String, Arc<Series>)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(PoisonError::into_inner);
            for (p, variants) in shard.iter() {
                for (v, s) in variants {
                    out.push((p.to_string(), v.to_string(), s.clone()));
                }
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    /// The whole registry plus the caller's gauges in Prometheus text
    /// format 0.0.4. Gauges sharing a name are grouped under one HELP/TYPE
    /// header (the first sample's help text wins).
    pub fn render(&self, gauges: &[GaugeSample]) -> String {
        let series = self.all_series();
        let mut out = String::with_capacity(4096 + series.len() * 4096);

        header(
            &mut out,
            "promptgate_requests_total",
            "Requests served, by prompt, variant and final status.",
            "counter",
        );
        for (p, v, s) in &series {
            let mut statuses: Vec<(String, u64)> = s
                .statuses
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(st, c)| (st.to_string(), c.load(Ordering::Relaxed)))
                .collect();
            statuses.sort();
            for (st, n) in statuses {
                sample(
                    &mut out,
                    "promptgate_requests_total",
                    &[("prompt", p), ("variant", v), ("status", &st)],
                    n as f64,
                );
            }
        }

        header(
            &mut out,
            "promptgate_request_latency_seconds",
            "End-to-end latency of a request as the proxy saw it.",
            "histogram",
        );
        for (p, v, s) in &series {
            histogram(
                &mut out,
                "promptgate_request_latency_seconds",
                p,
                v,
                &s.latency,
            );
        }

        header(
            &mut out,
            "promptgate_ttft_seconds",
            "Time to first token from the upstream.",
            "histogram",
        );
        for (p, v, s) in &series {
            histogram(&mut out, "promptgate_ttft_seconds", p, v, &s.ttft);
        }

        let counters: [CounterColumn; 3] = [
            (
                "promptgate_input_tokens_total",
                "Prompt tokens sent upstream.",
                |s| s.input_tokens.load(Ordering::Relaxed) as f64,
            ),
            (
                "promptgate_output_tokens_total",
                "Completion tokens received from upstream.",
                |s| s.output_tokens.load(Ordering::Relaxed) as f64,
            ),
            (
                "promptgate_cost_total",
                "Cost of the calls from the models' price tables, in the config's currency.",
                |s| s.cost.get(),
            ),
        ];
        for (name, help, get) in counters {
            header(&mut out, name, help, "counter");
            for (p, v, s) in &series {
                sample(&mut out, name, &[("prompt", p), ("variant", v)], get(s));
            }
        }

        header(
            &mut out,
            "promptgate_upstream_errors_total",
            "Failed upstream calls, by upstream and error kind.",
            "counter",
        );
        {
            let map = self
                .upstream_errors
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for ((u, k), n) in map.iter() {
                sample(
                    &mut out,
                    "promptgate_upstream_errors_total",
                    &[("upstream", u), ("kind", k)],
                    *n as f64,
                );
            }
        }

        header(
            &mut out,
            "promptgate_reloads_total",
            "Reloads of the serving state, by result.",
            "counter",
        );
        for (result, n) in [("ok", &self.reloads_ok), ("failed", &self.reloads_failed)] {
            sample(
                &mut out,
                "promptgate_reloads_total",
                &[("result", result)],
                n.load(Ordering::Relaxed) as f64,
            );
        }

        {
            let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
            for (name, label_names, help) in EVENT_COUNTERS {
                header(&mut out, name, help, "counter");
                for (values, n) in events.get(name).into_iter().flatten() {
                    let labels: Vec<(&str, &str)> = label_names
                        .iter()
                        .copied()
                        .zip(values.iter().map(String::as_str))
                        .collect();
                    sample(&mut out, name, &labels, *n as f64);
                }
            }
        }

        // Group gauges by name, keeping first-appearance order, because the
        // format requires all samples of a metric to follow its header.
        let mut order: Vec<&'static str> = Vec::new();
        for g in gauges {
            if !order.contains(&g.name) {
                order.push(g.name);
            }
        }
        for name in order {
            let mut first = true;
            for g in gauges.iter().filter(|g| g.name == name) {
                if first {
                    header(&mut out, name, g.help, "gauge");
                    first = false;
                }
                let labels: Vec<(&str, &str)> =
                    g.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                sample(&mut out, name, &labels, g.value);
            }
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escape_help(out, help);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

fn histogram(out: &mut String, name: &str, prompt: &str, variant: &str, h: &Histogram) {
    let (cum, count, sum) = h.snapshot();
    let bucket = format!("{name}_bucket");
    let mut le = String::new();
    for (i, c) in cum.iter().enumerate() {
        le.clear();
        match h.bounds.get(i) {
            Some(b) => format_value(&mut le, *b),
            None => le.push_str("+Inf"),
        }
        sample(
            out,
            &bucket,
            &[("prompt", prompt), ("variant", variant), ("le", &le)],
            *c as f64,
        );
    }
    sample(
        out,
        &format!("{name}_sum"),
        &[("prompt", prompt), ("variant", variant)],
        sum,
    );
    sample(
        out,
        &format!("{name}_count"),
        &[("prompt", prompt), ("variant", variant)],
        count as f64,
    );
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label(out, v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    format_value(out, value);
    out.push('\n');
}

/// Label values escape backslash, double quote and line feed (format 0.0.4).
fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes only backslash and line feed.
fn escape_help(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Go-style float spelling: Rust prints infinities as `inf`, which
/// Prometheus rejects.
fn format_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests;
