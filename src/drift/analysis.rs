//! The comparison: per group (prompt or pass-through model) and feature,
//! the test its data calls for, its effect size, its p-value and its
//! Benjamini-Hochberg q-value across all the group's features, and the
//! verdict. Pure: the same windows give the same report.
//!
//! | data | test | effect size (threshold) |
//! |---|---|---|
//! | numeric, > 10 distinct values | Kolmogorov-Smirnov | Wasserstein-1 / reference sd (`wasserstein`) |
//! | numeric, 3..=10 values; categorical | chi-square | Jensen-Shannon distance (`jensen_shannon`) |
//! | numeric with 2 values; yes/no | two-proportion z | Cohen's h (`cohen_h`) |
//! | text | held-out domain classifier, Mann-Whitney | AUC (`auc`) |
//!
//! A feature drifts when `q < fdr` and its effect reaches the threshold.
//! Fewer than `min_rows` observations in either window is "not enough
//! data" (no test); a feature with a single value in both windows is
//! "constant" (nothing to test). Neither enters the Benjamini-Hochberg set.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::features::{FeatureData, FeatureGroup, GroupKind, WindowFeatures};
use crate::spec::drift::{DriftConfig, Thresholds};
use crate::stats::categorical::{chi_square, two_proportion};
use crate::stats::domain::domain_classifier_scores;
use crate::stats::fdr::benjamini_hochberg;
use crate::stats::twosample::{distinct_sorted, ks_sorted, psi_sorted, quantile_sorted, sorted};

/// Numeric features with at most this many distinct values are compared
/// as categories (the KS p-value is very conservative with heavy ties).
pub const MAX_LEVELS_AS_CATEGORIES: usize = 10;
/// A string variable with more distinct values than this (both windows
/// together) is free text: its values are not compared as categories.
pub const MAX_VALUE_CATEGORIES: usize = 20;
/// Bins of the numeric histograms in the report.
const HISTOGRAM_BINS: usize = 24;
/// Bars of a categorical chart before the rest is summed as `(other)`.
const MAX_BARS: usize = 8;
/// The latency quantile whose exceedance is tested as `ops.latency_tail`.
const TAIL_QUANTILE: f64 = 0.95;
/// Seed of the domain classifier's train/test split.
const SPLIT_SEED: u64 = 0x5eed_d41f;

/// One window of every group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowSet {
    /// How the window was chosen, e.g. `last:2000`.
    pub spec: String,
    /// A dataset: inputs only, no model calls.
    pub inputs_only: bool,
    /// Groups by name: a prompt id, or `model:<name>` for pass-through calls.
    pub groups: BTreeMap<String, GroupWindow>,
}

/// One group's window.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupWindow {
    pub kind: GroupKind,
    /// Declared `output.format: json` (Some(true)), text (Some(false)) or
    /// unknown (None: JSON validity is reported when most reference outputs
    /// are JSON).
    pub output_json: Option<bool>,
    pub features: WindowFeatures,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    Ks,
    ChiSquare,
    TwoProportion,
    DomainClassifier,
    None,
}

impl TestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TestKind::Ks => "KS",
            TestKind::ChiSquare => "chi-square",
            TestKind::TwoProportion => "2-proportion",
            TestKind::DomainClassifier => "domain AUC",
            TestKind::None => "-",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// `q < fdr` and the effect reaches its threshold.
    Drift,
    /// Significant, but the effect is below the practical threshold.
    Small,
    /// Not significant.
    Ok,
    NotEnoughData,
    /// One value in both windows: nothing to compare.
    Constant,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Drift => "DRIFT",
            Verdict::Small => "small",
            Verdict::Ok => "ok",
            Verdict::NotEnoughData => "not enough data",
            Verdict::Constant => "constant",
        }
    }
}

/// Reference and current shares for a chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Chart {
    /// `edges` has one more entry than the share vectors.
    Histogram {
        edges: Vec<f64>,
        reference: Vec<f64>,
        current: Vec<f64>,
    },
    Bars {
        labels: Vec<String>,
        reference: Vec<f64>,
        current: Vec<f64>,
    },
    None,
}

/// The comparison of one feature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureReport {
    pub name: String,
    pub group: FeatureGroup,
    pub test: TestKind,
    /// Short summaries of each window, e.g. `median 42 · p95 120`.
    pub reference: String,
    pub current: String,
    pub reference_n: u64,
    pub current_n: u64,
    /// `wasserstein_norm`, `jensen_shannon`, `cohen_h` or `auc`.
    pub effect_name: &'static str,
    pub effect: Option<f64>,
    pub threshold: f64,
    /// PSI over reference deciles, numeric features only (informative).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<f64>,
    pub p_value: Option<f64>,
    pub q_value: Option<f64>,
    pub verdict: Verdict,
    pub chart: Chart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    NoDrift,
    NotEnoughData,
    Drift,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::NoDrift => "no drift",
            Status::NotEnoughData => "not enough data",
            Status::Drift => "DRIFT",
        }
    }
}

/// The comparison of one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupReport {
    pub group: String,
    /// `prompt` or `model` (pass-through).
    pub kind: &'static str,
    pub status: Status,
    pub reference_calls: u64,
    pub current_calls: u64,
    /// Calls whose text was read (the text sample).
    pub reference_sampled: u64,
    pub current_sampled: u64,
    /// Time range of each window, RFC 3339.
    pub reference_range: Option<(String, String)>,
    pub current_range: Option<(String, String)>,
    pub features: Vec<FeatureReport>,
    /// Names of the drifted features.
    pub drifted: Vec<String>,
    /// Request ids of current-window calls (review candidates).
    #[serde(skip)]
    pub current_sample_ids: Vec<String>,
}

/// The whole comparison: serde-serialisable for `--json`, serve's status
/// and the webhook; [`DriftReport::render`] gives the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftReport {
    pub reference: String,
    pub current: String,
    pub fdr: f64,
    pub min_rows: u64,
    pub thresholds: Thresholds,
    /// The worst status of any group.
    pub status: Status,
    pub groups: Vec<GroupReport>,
}

impl DriftReport {
    pub fn drifted(&self) -> bool {
        self.status == Status::Drift
    }
}

/// Compares every group of `reference` with the same group of `current`.
pub fn analyze(settings: &DriftConfig, reference: &WindowSet, current: &WindowSet) -> DriftReport {
    let inputs_only = reference.inputs_only || current.inputs_only;
    // A dataset window names the one prompt it is compared for.
    let names: BTreeSet<&String> = if reference.inputs_only {
        reference.groups.keys().collect()
    } else if current.inputs_only {
        current.groups.keys().collect()
    } else {
        reference
            .groups
            .keys()
            .chain(current.groups.keys())
            .collect()
    };
    let groups: Vec<GroupReport> = names
        .into_iter()
        .map(|name| {
            analyze_group(
                settings,
                name,
                reference.groups.get(name),
                current.groups.get(name),
                inputs_only,
            )
        })
        .collect();
    let status = groups
        .iter()
        .map(|g| g.status)
        .max()
        .unwrap_or(Status::NotEnoughData);
    DriftReport {
        reference: reference.spec.clone(),
        current: current.spec.clone(),
        fdr: settings.fdr,
        min_rows: settings.min_rows,
        thresholds: settings.thresholds,
        status,
        groups,
    }
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn range(w: &WindowFeatures) -> Option<(String, String)> {
    Some((rfc3339(w.first_ts?), rfc3339(w.last_ts?)))
}

/// Compares one group's windows (either may be missing: no traffic).
pub fn analyze_group(
    settings: &DriftConfig,
    name: &str,
    reference: Option<&GroupWindow>,
    current: Option<&GroupWindow>,
    inputs_only: bool,
) -> GroupReport {
    let empty = WindowFeatures::new();
    let rf = reference.map_or(&empty, |g| &g.features);
    let cf = current.map_or(&empty, |g| &g.features);
    let kind = reference.or(current).map_or(GroupKind::Prompt, |g| g.kind);
    let output_json = reference.or(current).and_then(|g| g.output_json);
    let mut report = GroupReport {
        group: name.to_string(),
        kind: match kind {
            GroupKind::Prompt => "prompt",
            GroupKind::Model => "model",
        },
        status: Status::NotEnoughData,
        reference_calls: rf.calls,
        current_calls: cf.calls,
        reference_sampled: rf.sampled,
        current_sampled: cf.sampled,
        reference_range: range(rf),
        current_range: range(cf),
        features: Vec::new(),
        drifted: Vec::new(),
        current_sample_ids: cf.sample_ids.clone(),
    };
    if rf.calls < settings.min_rows || cf.calls < settings.min_rows {
        return report;
    }
    let (mut rmap, mut cmap) = (rf.all_features(), cf.all_features());
    let names: BTreeSet<String> = rmap.keys().chain(cmap.keys()).cloned().collect();
    let mut jobs: Vec<(String, FeatureData, FeatureData)> = Vec::new();
    for fname in names {
        let group = FeatureGroup::of(&fname);
        if inputs_only && group != FeatureGroup::Input {
            continue;
        }
        let (r, c) = match (rmap.remove(&fname), cmap.remove(&fname)) {
            (Some(r), Some(c)) => (r, c),
            (Some(r), None) => {
                let c = FeatureData::empty_of(&r);
                (r, c)
            }
            (None, Some(c)) => (FeatureData::empty_of(&c), c),
            (None, None) => continue,
        };
        if inputs_only && (r.is_empty() || c.is_empty()) {
            // Computed from calls only (tokens, history): a dataset has none.
            continue;
        }
        if fname == "output.json_valid" && !json_expected(output_json, &r) {
            continue;
        }
        jobs.push((fname, r, c));
    }
    // Features are independent: two threads (sorting a million-call
    // window's numeric features dominates).
    let jobs = &jobs;
    let mut features: Vec<FeatureReport> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2usize)
            .map(|w| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (fname, r, c) in jobs.iter().skip(w).step_by(2) {
                        out.extend(compare_feature(settings, fname, r, c));
                        if fname == "ops.latency_ms"
                            && let (FeatureData::Numeric(a), FeatureData::Numeric(b)) = (r, c)
                        {
                            out.push(latency_tail(settings, a, b));
                        }
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    features.sort_by(|a, b| a.name.cmp(&b.name));
    let tested: Vec<usize> = (0..features.len())
        .filter(|&i| features[i].p_value.is_some())
        .collect();
    let p: Vec<f64> = tested
        .iter()
        .map(|&i| features[i].p_value.unwrap_or(1.0))
        .collect();
    let q = benjamini_hochberg(&p);
    for (k, &i) in tested.iter().enumerate() {
        let f = &mut features[i];
        f.q_value = Some(q[k]);
        let big = f
            .effect
            .is_some_and(|e| reaches(f.effect_name, e, f.threshold));
        f.verdict = match (q[k] < settings.fdr, big) {
            (true, true) => Verdict::Drift,
            (true, false) => Verdict::Small,
            _ => Verdict::Ok,
        };
    }
    features.sort_by(|a, b| a.group.cmp(&b.group).then_with(|| a.name.cmp(&b.name)));
    report.drifted = features
        .iter()
        .filter(|f| f.verdict == Verdict::Drift)
        .map(|f| f.name.clone())
        .collect();
    report.status = if report.drifted.is_empty() {
        Status::NoDrift
    } else {
        Status::Drift
    };
    report.features = features;
    report
}

/// Whether JSON validity is a feature: declared JSON output, or (unknown)
/// most reference outputs parse as JSON.
fn json_expected(declared: Option<bool>, reference: &FeatureData) -> bool {
    match (declared, reference) {
        (Some(d), _) => d,
        (None, FeatureData::Binary { yes, n }) => *n > 0 && *yes * 2 >= *n,
        (None, _) => false,
    }
}

/// Whether an effect reaches its threshold (Cohen's h in either direction;
/// the AUC only upwards, as the classifier is trained to score current higher).
fn reaches(effect_name: &str, effect: f64, threshold: f64) -> bool {
    match effect_name {
        "cohen_h" => effect.abs() >= threshold,
        _ => effect >= threshold,
    }
}

fn base_report(
    name: &str,
    r: &FeatureData,
    c: &FeatureData,
    settings: &DriftConfig,
) -> FeatureReport {
    FeatureReport {
        name: name.to_string(),
        group: FeatureGroup::of(name),
        test: TestKind::None,
        reference: String::new(),
        current: String::new(),
        reference_n: r.len(),
        current_n: c.len(),
        effect_name: "",
        effect: None,
        threshold: 0.0,
        psi: None,
        p_value: None,
        q_value: None,
        verdict: Verdict::NotEnoughData,
        chart: Chart::None,
    }
    .with_min_rows(settings.min_rows)
}

impl FeatureReport {
    fn with_min_rows(mut self, min_rows: u64) -> FeatureReport {
        if self.reference_n >= min_rows && self.current_n >= min_rows {
            self.verdict = Verdict::Ok;
        }
        self
    }
}

/// Tests one feature; None for a feature that is not reported at all
/// (a high-cardinality variable's values).
pub fn compare_feature(
    settings: &DriftConfig,
    name: &str,
    r: &FeatureData,
    c: &FeatureData,
) -> Option<FeatureReport> {
    let th = &settings.thresholds;
    let mut f = base_report(name, r, c, settings);
    match (r, c) {
        (FeatureData::Numeric(a), FeatureData::Numeric(b)) => {
            let (a, b) = (sorted(a), sorted(b));
            let levels = distinct_sorted(&a, &b, MAX_LEVELS_AS_CATEGORIES);
            f.reference = numeric_summary(&a);
            f.current = numeric_summary(&b);
            if levels.len() <= 2 && !levels.is_empty() {
                // Two values: the share of the larger one.
                let top = levels[levels.len() - 1];
                let yes = |v: &[f64]| v.iter().filter(|x| **x == top).count() as u64;
                let mut f = proportion(
                    f,
                    yes(&a),
                    a.len() as u64,
                    yes(&b),
                    b.len() as u64,
                    th,
                    levels.len() == 1,
                );
                let label = fmt_num(top);
                if let Chart::Bars { labels, .. } = &mut f.chart {
                    *labels = vec![label.clone(), "other".into()];
                }
                f.reference = format!("{label}: {} · {}", f.reference, numeric_summary(&a));
                f.current = format!("{label}: {} · {}", f.current, numeric_summary(&b));
                return Some(f);
            }
            if levels.len() <= MAX_LEVELS_AS_CATEGORIES {
                let counts = |v: &[f64]| -> BTreeMap<String, u64> {
                    let mut m = BTreeMap::new();
                    for x in v {
                        *m.entry(fmt_num(*x)).or_insert(0) += 1;
                    }
                    m
                };
                let mut f = categories(f, &counts(&a), &counts(&b), th, false);
                f.reference = numeric_summary(&a);
                f.current = numeric_summary(&b);
                return Some(f);
            }
            f.test = TestKind::Ks;
            f.effect_name = "wasserstein_norm";
            f.threshold = th.wasserstein;
            f.chart = histogram(&a, &b);
            if f.verdict == Verdict::NotEnoughData {
                return Some(f);
            }
            if let Some(ks) = ks_sorted(&a, &b) {
                f.effect = Some(ks.wasserstein_norm);
                f.p_value = Some(ks.p_value);
                f.psi = psi_sorted(&a, &b, 10);
            }
            Some(f)
        }
        (
            FeatureData::Categorical {
                counts: a,
                overflow: oa,
            },
            FeatureData::Categorical {
                counts: b,
                overflow: ob,
            },
        ) => {
            let is_value = name.ends_with(".value");
            if is_value {
                let distinct: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                if *oa || *ob || distinct.len() > MAX_VALUE_CATEGORIES {
                    return None;
                }
            }
            Some(categories(f, a, b, th, true))
        }
        (FeatureData::Binary { yes: y1, n: n1 }, FeatureData::Binary { yes: y2, n: n2 }) => {
            let constant = (*y1 + *y2 == 0) || (*y1 + *y2 == *n1 + *n2);
            Some(proportion(f, *y1, *n1, *y2, *n2, th, constant))
        }
        (FeatureData::Text(a), FeatureData::Text(b)) => {
            f.test = TestKind::DomainClassifier;
            f.effect_name = "auc";
            f.threshold = th.auc;
            f.reference = format!("{} texts", a.len());
            f.current = format!("{} texts", b.len());
            if f.verdict == Verdict::NotEnoughData {
                return Some(f);
            }
            let all_empty = (0..a.len()).all(|i| a.get(i).is_empty())
                && (0..b.len()).all(|i| b.get(i).is_empty());
            if all_empty {
                f.verdict = Verdict::Constant;
                return Some(f);
            }
            if let Some((res, scores)) = domain_classifier_scores(a, b, SPLIT_SEED) {
                f.effect = Some(res.auc);
                f.p_value = Some(res.p_value);
                f.reference = format!("{} texts, {} held out", a.len(), res.test_reference);
                f.current = format!("{} texts, {} held out", b.len(), res.test_current);
                f.chart = histogram(&sorted(&scores.reference), &sorted(&scores.current));
            }
            Some(f)
        }
        _ => None,
    }
}

fn proportion(
    mut f: FeatureReport,
    y1: u64,
    n1: u64,
    y2: u64,
    n2: u64,
    th: &Thresholds,
    constant: bool,
) -> FeatureReport {
    f.test = TestKind::TwoProportion;
    f.effect_name = "cohen_h";
    f.threshold = th.cohen_h;
    let rate = |y: u64, n: u64| if n == 0 { 0.0 } else { y as f64 / n as f64 };
    f.reference = pct(rate(y1, n1));
    f.current = pct(rate(y2, n2));
    f.chart = Chart::Bars {
        labels: vec!["yes".into(), "no".into()],
        reference: vec![rate(y1, n1), 1.0 - rate(y1, n1)],
        current: vec![rate(y2, n2), 1.0 - rate(y2, n2)],
    };
    if f.verdict == Verdict::NotEnoughData {
        return f;
    }
    if constant {
        f.verdict = Verdict::Constant;
        return f;
    }
    if let Some(t) = two_proportion(y1, n1, y2, n2) {
        f.effect = Some(t.cohen_h);
        f.p_value = Some(t.p_value);
    }
    f
}

fn categories(
    mut f: FeatureReport,
    a: &BTreeMap<String, u64>,
    b: &BTreeMap<String, u64>,
    th: &Thresholds,
    summarise: bool,
) -> FeatureReport {
    f.test = TestKind::ChiSquare;
    f.effect_name = "jensen_shannon";
    f.threshold = th.jensen_shannon;
    let keys: Vec<&String> = a
        .keys()
        .chain(b.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let ra: Vec<u64> = keys
        .iter()
        .map(|k| a.get(*k).copied().unwrap_or(0))
        .collect();
    let rb: Vec<u64> = keys
        .iter()
        .map(|k| b.get(*k).copied().unwrap_or(0))
        .collect();
    if summarise {
        f.reference = top_shares(&keys, &ra);
        f.current = top_shares(&keys, &rb);
    }
    f.chart = bars(&keys, &ra, &rb);
    if f.verdict == Verdict::NotEnoughData {
        return f;
    }
    if keys.len() <= 1 {
        f.verdict = Verdict::Constant;
        return f;
    }
    if let Some(t) = chi_square(&ra, &rb) {
        f.effect = Some(t.jensen_shannon);
        f.p_value = Some(t.p_value);
    }
    f
}

/// `ops.latency_tail`: the share of calls slower than the pooled 95th
/// percentile. Under "no drift" both windows share it at about 5%; a slower
/// tail (p95 up) raises the current share. Pooling keeps the test exact
/// under exchangeability (Mood's median test at the 95th percentile).
fn latency_tail(settings: &DriftConfig, a: &[f64], b: &[f64]) -> FeatureReport {
    let mut pooled: Vec<f64> = a.iter().chain(b).copied().filter(|x| !x.is_nan()).collect();
    let cut = if pooled.is_empty() {
        0.0
    } else {
        let k = ((pooled.len() - 1) as f64 * TAIL_QUANTILE).floor() as usize;
        *pooled.select_nth_unstable_by(k, f64::total_cmp).1
    };
    let constant = pooled.iter().all(|x| *x == pooled[0]);
    let above = |v: &[f64]| v.iter().filter(|x| **x > cut).count() as u64;
    let name = "ops.latency_tail";
    let r = FeatureData::Binary {
        yes: above(a),
        n: a.len() as u64,
    };
    let c = FeatureData::Binary {
        yes: above(b),
        n: b.len() as u64,
    };
    let f = base_report(name, &r, &c, settings);
    let mut f = proportion(
        f,
        above(a),
        a.len() as u64,
        above(b),
        b.len() as u64,
        &settings.thresholds,
        constant,
    );
    let p95 = |v: &[f64]| crate::stats::quantile(v, TAIL_QUANTILE).map_or("-".into(), fmt_num);
    f.reference = format!("{} > {} (p95 {})", f.reference, fmt_num(cut), p95(a));
    f.current = format!("{} (p95 {})", f.current, p95(b));
    f
}

/// A number in a few significant digits.
pub fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if (x == x.trunc() && a < 1e9) || a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 0.01 {
        format!("{x:.3}")
    } else {
        format!("{x:.2e}")
    }
}

fn pct(rate: f64) -> String {
    if rate > 0.0 && rate < 0.001 {
        format!("{:.3}%", rate * 100.0)
    } else {
        format!("{:.1}%", rate * 100.0)
    }
}

fn numeric_summary(sorted: &[f64]) -> String {
    let q = |p: f64| quantile_sorted(sorted, p).map_or("-".into(), fmt_num);
    if sorted.is_empty() {
        return "-".into();
    }
    format!("median {} · p95 {}", q(0.5), q(0.95))
}

fn top_shares(keys: &[&String], counts: &[u64]) -> String {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return "-".into();
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&x, &y| counts[y].cmp(&counts[x]).then(x.cmp(&y)));
    order
        .iter()
        .take(2)
        .filter(|&&i| counts[i] > 0)
        .map(|&i| {
            format!(
                "{} {}",
                short_label(keys[i]),
                pct(counts[i] as f64 / total as f64)
            )
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// A category for a one-line summary: at most 24 characters.
fn short_label(label: &str) -> String {
    if label.chars().count() <= 24 {
        return label.to_string();
    }
    let mut s: String = label.chars().take(23).collect();
    s.push('…');
    s
}

fn bars(keys: &[&String], a: &[u64], b: &[u64]) -> Chart {
    let (ta, tb) = (
        a.iter().sum::<u64>().max(1) as f64,
        b.iter().sum::<u64>().max(1) as f64,
    );
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&x, &y| (a[y] + b[y]).cmp(&(a[x] + b[x])).then(x.cmp(&y)));
    let mut labels = Vec::new();
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for (k, &i) in order.iter().enumerate() {
        if k < MAX_BARS {
            labels.push(keys[i].clone());
            ra.push(a[i] as f64 / ta);
            rb.push(b[i] as f64 / tb);
        } else {
            if k == MAX_BARS {
                labels.push("(other)".into());
                ra.push(0.0);
                rb.push(0.0);
            }
            if let (Some(x), Some(y)) = (ra.last_mut(), rb.last_mut()) {
                *x += a[i] as f64 / ta;
                *y += b[i] as f64 / tb;
            }
        }
    }
    Chart::Bars {
        labels,
        reference: ra,
        current: rb,
    }
}

/// Shares of each sorted sample in bins from the lower of the two samples'
/// 0.5% quantiles to the higher of their 99.5% quantiles (values outside
/// fall in the end bins).
fn histogram(a: &[f64], b: &[f64]) -> Chart {
    if a.is_empty() && b.is_empty() {
        return Chart::None;
    }
    let q = |p: f64| {
        [quantile_sorted(a, p), quantile_sorted(b, p)]
            .into_iter()
            .flatten()
    };
    let lo = q(0.005).fold(f64::INFINITY, f64::min);
    let mut hi = q(0.995).fold(f64::NEG_INFINITY, f64::max);
    if hi <= lo {
        hi = lo + 1.0;
    }
    let width = (hi - lo) / HISTOGRAM_BINS as f64;
    let shares = |v: &[f64]| -> Vec<f64> {
        let mut counts = vec![0u64; HISTOGRAM_BINS];
        for x in v {
            let bin = (((x - lo) / width).floor().max(0.0) as usize).min(HISTOGRAM_BINS - 1);
            counts[bin] += 1;
        }
        let total = v.len().max(1) as f64;
        counts.into_iter().map(|c| c as f64 / total).collect()
    };
    Chart::Histogram {
        edges: (0..=HISTOGRAM_BINS)
            .map(|i| lo + width * i as f64)
            .collect(),
        reference: shares(a),
        current: shares(b),
    }
}

#[cfg(test)]
mod tests;
