//! Drift of inputs, outputs, operations and feedback between a reference
//! and a current window of the request log, per prompt (and per model for
//! pass-through traffic), with honest statistics: a test per feature, its
//! effect size, and Benjamini-Hochberg q-values across the features of a
//! prompt. Drift is never a regression verdict: nothing here rolls back.
//!
//! One path for `promptgate drift` and (later) serve's analyzer:
//!
//! ```text
//! let extractor = Extractor::new(&config)?;                   // refusal phrases
//! let query = LogQuery { logs, reference, current, .. };      // windows resolved: resolve()
//! let windows = read_windows(&config, &extractor, &query, &|_| {})?;   // Parquet, 2 passes
//! let report = analyze(&config, &windows.reference, &windows.current);   // pure
//! review::candidates(&report, n) -> review queue when `on_drift: review`
//! ```
//!
//! [`analyze_rows`] does the same from rows in memory (tests, small logs).
//! Modules: [`features`] (what a call contributes), [`text`] (words,
//! language, refusals, n-grams), [`read`] (windows from Parquet),
//! [`analysis`] (tests and verdicts), [`review`] (the `on_drift: review` hook).

pub(crate) mod analysis;
pub(crate) mod features;
pub(crate) mod job;
pub(crate) mod read;
pub(crate) mod review;
pub(crate) mod text;

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

pub use analysis::{
    Chart, DriftReport, FeatureReport, GroupReport, GroupWindow, Status, TestKind, Verdict,
    WindowSet, analyze,
};
pub use features::{Extractor, FeatureData, GroupKind, OutputSpec, WindowFeatures};
pub use job::DriftJob;
pub use read::{LogQuery, LogWindows, Progress, Selector, model_group, read_windows};

use crate::logstore::{FeedbackRecord, LogStoreError, RequestLogRow, Variant};
use crate::spec::drift::{DriftConfig, WindowSpec};

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("{}: no such log folder or file", path.display())]
    MissingLogs { path: PathBuf },
    #[error("no request log files under {}", show_paths(roots))]
    NoLogFiles { roots: Vec<PathBuf> },
    #[error(
        "`{group}` has no calls in the logs under {} (groups with calls: {known})",
        show_paths(roots)
    )]
    NoTraffic {
        group: String,
        roots: Vec<PathBuf>,
        known: String,
    },
    #[error(
        "the {which} window `{spec}` holds no calls in the logs under {} ({data})",
        show_paths(roots)
    )]
    EmptyWindow {
        which: &'static str,
        spec: String,
        roots: Vec<PathBuf>,
        data: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot read Parquet: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error(transparent)]
    Logs(LogStoreError),
    #[error("promptgate.yaml: drift: {0}")]
    Config(String),
    #[error("the {which} window `{spec}`: {message}")]
    Window {
        which: &'static str,
        spec: String,
        message: String,
    },
    #[error("the stable ref `{git_ref}`: {message}")]
    Stable { git_ref: String, message: String },
    #[error(transparent)]
    Repo(#[from] crate::repo::RepoError),
    #[error("a log reader thread panicked")]
    Worker,
}

fn show_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a window spec needs from the repository to become a [`Selector`].
#[derive(Debug, Clone, Default)]
pub struct StableState {
    /// Prompt id -> git blob id of its file at the stable ref.
    pub versions: BTreeMap<String, String>,
    /// The stable ref's commit.
    pub commit: Option<String>,
}

/// Resolves a log window spec at `now`; None for dataset windows (inputs
/// only, read by the caller from the dataset).
pub fn resolve(spec: &WindowSpec, now: DateTime<Utc>, stable: &StableState) -> Option<Selector> {
    Some(match spec {
        WindowSpec::First(n) => Selector::First {
            n: *n,
            versions: stable.versions.clone(),
            stable_commit: stable.commit.clone(),
        },
        WindowSpec::Last(n) => Selector::Last(*n),
        WindowSpec::LastFor(d) => Selector::Range {
            from: Some(
                (now - chrono::Duration::from_std(*d).unwrap_or(chrono::Duration::MAX))
                    .timestamp_micros(),
            ),
            until: None,
        },
        WindowSpec::Range { from, until } => Selector::Range {
            from: from.map(|t| t.timestamp_micros()),
            until: until.map(|t| t.timestamp_micros()),
        },
        WindowSpec::Commit(c) => Selector::Commit(c.clone()),
        WindowSpec::Dataset(_) | WindowSpec::Eval(_) => return None,
    })
}

/// The group a logged call belongs to.
pub fn group_of(row: &RequestLogRow) -> String {
    match &row.prompt_id {
        Some(p) => p.clone(),
        None => model_group(&row.model),
    }
}

/// Builds one window's features from rows in memory, with the same text
/// and language samples as [`read_windows`] (the draw is a hash of the
/// request id). `feedback` is joined by request id; the latest record wins.
pub fn window_from_rows(
    settings: &DriftConfig,
    extractor: &Extractor,
    outputs: &BTreeMap<String, OutputSpec>,
    spec: &str,
    rows: &[&RequestLogRow],
    feedback: &[FeedbackRecord],
) -> WindowSet {
    let mut latest: BTreeMap<&str, &FeedbackRecord> = BTreeMap::new();
    for f in feedback {
        match latest.get(f.request_id.as_str()) {
            Some(prev) if prev.ts > f.ts => {}
            _ => {
                latest.insert(&f.request_id, f);
            }
        }
    }
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for r in rows {
        *counts.entry(group_of(r)).or_insert(0) += 1;
    }
    let default_spec = OutputSpec::default();
    let mut set = WindowSet {
        spec: spec.to_string(),
        inputs_only: false,
        groups: BTreeMap::new(),
    };
    for r in rows {
        let name = group_of(r);
        let n = counts.get(&name).copied().unwrap_or(1) as f64;
        let kind = if r.prompt_id.is_some() {
            GroupKind::Prompt
        } else {
            GroupKind::Model
        };
        let out = outputs.get(&name).unwrap_or(&default_spec);
        let g = set
            .groups
            .entry(name.clone())
            .or_insert_with(|| GroupWindow {
                kind,
                output_json: out.json,
                features: WindowFeatures::new(),
            });
        let u = features::unit(features::id_hash(&r.request_id));
        let fb = latest
            .get(r.request_id.as_str())
            .map(|f| features::FeedbackView {
                score: f.score,
                label: f.label.as_deref(),
            });
        g.features.push_time(r.ts.timestamp_micros());
        g.features.push_columns(&features::ColumnsView {
            status: r.status.as_str(),
            latency_ms: r.latency_ms,
            ttft_ms: r.ttft_ms,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cost: r.cost,
            upstream_model: &r.upstream_model,
            online_pass: r.online_pass,
            feedback: fb,
        });
        if u < (settings.sample_rows as f64 / n).min(1.0) {
            let lang = (settings.language_rows.min(settings.sample_rows) as f64 / n).min(1.0);
            g.features.push_text(
                extractor,
                kind,
                out,
                &features::TextView {
                    request_id: &r.request_id,
                    status: r.status.as_str(),
                    variables: &r.variables,
                    messages: &r.messages,
                    output: &r.output,
                    online_scores: &r.online_scores,
                    history_turns: None,
                    detect_language: u < lang,
                },
            );
        }
    }
    set
}

/// [`analyze`] over rows in memory: `reference` and `current` are the calls
/// of each window (canary calls included only if the caller includes them).
pub fn analyze_rows(
    settings: &DriftConfig,
    extractor: &Extractor,
    outputs: &BTreeMap<String, OutputSpec>,
    reference: &[RequestLogRow],
    current: &[RequestLogRow],
    feedback: &[FeedbackRecord],
) -> DriftReport {
    let r: Vec<&RequestLogRow> = reference.iter().collect();
    let c: Vec<&RequestLogRow> = current.iter().collect();
    let rs = window_from_rows(settings, extractor, outputs, "reference", &r, feedback);
    let cs = window_from_rows(settings, extractor, outputs, "current", &c, feedback);
    analyze(settings, &rs, &cs)
}

/// Whether a call is stable or pass-through traffic (windows other than
/// `commit:` leave canary calls out).
pub fn is_stable_traffic(row: &RequestLogRow) -> bool {
    row.variant != Variant::Canary
}

impl DriftReport {
    /// The table of `promptgate drift`: per group, a line per feature.
    pub fn render(&self, all: bool) -> String {
        let mut out = format!(
            "drift: reference {} vs current {} (fdr {}, min {} calls per window)\n",
            self.reference, self.current, self.fdr, self.min_rows
        );
        for g in &self.groups {
            out.push_str(&format!(
                "\n{} `{}`: {} — {} vs {} calls (text sample {} vs {})\n",
                g.kind,
                g.group,
                g.status.as_str(),
                g.reference_calls,
                g.current_calls,
                g.reference_sampled,
                g.current_sampled
            ));
            if g.features.is_empty() {
                continue;
            }
            let rows: Vec<[String; 7]> = g
                .features
                .iter()
                .filter(|f| all || !matches!(f.verdict, Verdict::Constant))
                .map(|f| {
                    [
                        f.name.clone(),
                        f.reference.clone(),
                        f.current.clone(),
                        f.effect.map_or("-".into(), |e| {
                            format!("{} {}", short_effect(f.effect_name), analysis::fmt_num(e))
                        }),
                        f.p_value.map_or("-".into(), fmt_p),
                        f.q_value.map_or("-".into(), fmt_p),
                        f.verdict.as_str().to_string(),
                    ]
                })
                .collect();
            let header = [
                "feature",
                "reference",
                "current",
                "effect",
                "p",
                "q",
                "verdict",
            ];
            let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: Vec<&str>| -> String {
                let mut s = String::from("  ");
                for (i, c) in cells.iter().enumerate() {
                    s.push_str(c);
                    if i + 1 < cells.len() {
                        s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
                    }
                }
                s.push('\n');
                s
            };
            out.push_str(&line(header.to_vec()));
            for r in &rows {
                out.push_str(&line(r.iter().map(String::as_str).collect()));
            }
        }
        let drifted: usize = self.groups.iter().map(|g| g.drifted.len()).sum();
        out.push_str(&format!(
            "\n{}: {} drifted feature(s) in {} group(s)\n",
            self.status.as_str(),
            drifted,
            self.groups.iter().filter(|g| !g.drifted.is_empty()).count()
        ));
        out
    }
}

fn short_effect(name: &str) -> &'static str {
    match name {
        "wasserstein_norm" => "W",
        "jensen_shannon" => "JS",
        "cohen_h" => "h",
        "auc" => "AUC",
        _ => "",
    }
}

fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}
