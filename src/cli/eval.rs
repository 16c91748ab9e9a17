//! `promptgate eval SUITE`: offline evaluation of a suite's prompt at a ref
//! on its pinned dataset snapshot; per-case results to Parquet.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::ExitStatus;
use crate::eval::call::{CachedCaller, ModelCaller};
use crate::eval::provider_caller::ProviderCaller;
use crate::eval::results::{self, Summary};
use crate::eval::runner::{self, RunOptions};
use crate::project::{LoadOptions, Project};
use crate::repo::{FileSource, GitRepo};
use crate::settings::STATE_DIR;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Suite name (file name under evals/ without .yaml).
    pub suite: String,
    /// Git ref to evaluate (prompts, suite and dataset snapshot as of it).
    #[arg(long = "ref", default_value = "HEAD", conflicts_with = "worktree")]
    pub git_ref: String,
    /// Evaluate the working tree instead of a commit.
    #[arg(long)]
    pub worktree: bool,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Ignore the response cache (and do not fill it).
    #[arg(long)]
    pub no_cache: bool,
    /// Run every case N times (overrides the suite's `repeat`).
    #[arg(long)]
    pub repeat: Option<u32>,
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Print the summary as JSON (no progress bar).
    #[arg(long)]
    pub json: bool,
}

/// Everything a finished run produced.
pub struct Outcome {
    pub summary: Summary,
}

/// Loads, runs and records one suite; shared with `check`.
pub fn evaluate(
    root: &std::path::Path,
    source: &dyn FileSource,
    suite: &str,
    concurrency: usize,
    use_cache: bool,
    repeat: Option<u32>,
    progress: bool,
) -> anyhow::Result<Outcome> {
    let project = Project::load(source, &LoadOptions { resolve_ref: None })
        .with_context(|| format!("loading the repository ({})", source.describe()))?;
    let mut prepared = runner::prepare(&project, source, suite)?;
    if let Some(r) = repeat {
        prepared.repeat = r.max(1);
    }
    let provider = ProviderCaller::new(&project.config)?;
    let caller: Arc<dyn ModelCaller> = if use_cache {
        Arc::new(CachedCaller::new(
            provider,
            root.join(STATE_DIR).join("cache/responses"),
        ))
    } else {
        Arc::new(provider)
    };
    let bar = progress.then(|| progress_bar(suite, prepared.case_count()));
    let tick = bar.clone();
    let opts = RunOptions {
        concurrency,
        on_case: Some(Box::new(move || {
            if let Some(b) = &tick {
                b.inc(1);
            }
        })),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let started = std::time::Instant::now();
    let cases = runtime.block_on(runner::run(&prepared, caller, &opts))?;
    let duration = started.elapsed();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let summary = results::record(&root.join(STATE_DIR), &prepared, &cases, duration)?;
    Ok(Outcome { summary })
}

/// A progress bar on stderr counting the cases of one run.
pub(crate) fn progress_bar(label: &str, cases: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(cases as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} cases {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    let location = super::location(args.repo.as_deref(), &args.git_ref, args.worktree)?;
    let git = GitRepo::open(&location.root)?;
    let files = location.files(&git)?;
    let progress = !args.json && std::io::stderr().is_terminal();
    let outcome = evaluate(
        &location.root,
        &files,
        &args.suite,
        args.concurrency,
        !args.no_cache,
        args.repeat,
        progress,
    )?;
    let s = &outcome.summary;
    if args.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(s)?))?;
    } else {
        super::out(&render_summary(s))?;
    }
    Ok(if s.gates_pass() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1} ms"))
        .unwrap_or_else(|| "-".into())
}

/// The summary's line of counts and rates.
pub(crate) fn cases_line(s: &Summary) -> String {
    format!(
        "cases {}  passed {}  failed {}  errors {}  pass rate {:.1}%  mean score {:.3}",
        s.cases,
        s.passed,
        s.failed,
        s.errors,
        s.pass_rate * 100.0,
        s.mean_score
    )
}

pub(crate) fn render_summary(s: &Summary) -> String {
    let mut out = format!(
        "suite {} | prompt {} (blob {}) | dataset {} | model {}\n",
        s.suite,
        s.prompt_id,
        &s.prompt_version[..s.prompt_version.len().min(12)],
        s.dataset,
        s.model
    );
    out.push_str(&cases_line(s));
    out.push('\n');
    out.push_str(&format!(
        "latency p50 {}  p95 {}  tokens in {} out {}  cost {:.6} ({:.4} per 1k calls)  cache hits {}\n",
        ms(s.latency_p50_ms),
        ms(s.latency_p95_ms),
        s.input_tokens,
        s.output_tokens,
        s.cost_total,
        s.cost_per_1k,
        s.cache_hits
    ));
    out.push_str(&format!(
        "calls took {:.2} s ({:.0} cases/s)\n",
        s.duration_ms / 1000.0,
        s.cases_per_s
    ));
    for g in &s.gates {
        out.push_str(&format!(
            "gate {:<15} {} {:<10} actual {:<10} {}\n",
            g.gate,
            g.op,
            g.threshold,
            g.actual
                .map(|a| format!("{a:.4}"))
                .unwrap_or_else(|| "-".into()),
            if g.pass { "PASS" } else { "FAIL" }
        ));
    }
    if let Some(f) = &s.results_file {
        out.push_str(&format!("results: {f}\n"));
    }
    out
}
