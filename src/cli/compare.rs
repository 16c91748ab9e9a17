//! `promptgate compare SUITE`: candidates (models x prompt versions x param
//! values) on the suite's pinned dataset; the cost-quality plane, the
//! Pareto frontier and the cheapest candidate shown to be as good as the
//! best (see `compare`). Exit 0 when it ran, 2 when it could not.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::ExitStatus;
use crate::compare::CompareReport;
use crate::compare::candidates::parse_param;
use crate::compare::run::{self, CompareOptions, ExecOptions, cost_text};
use crate::repo::GitRepo;
use crate::report::compare as report;
use crate::settings::STATE_DIR;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Suite name (file name under evals/ without .yaml).
    pub suite: String,
    /// A model to try (key under `models`; repeatable). Replaces the
    /// suite's `compare.models`.
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// A git ref to read the suite's prompt from (repeatable).
    #[arg(long = "prompt-ref")]
    pub prompt_refs: Vec<String>,
    /// A prompt file to try, relative to the repository root (repeatable).
    #[arg(long = "prompt-file")]
    pub prompt_files: Vec<String>,
    /// NAME=V1,V2: values of a param to try (repeatable), e.g. max_tokens=64,256.
    #[arg(long = "param", value_parser = parse_param)]
    pub params: Vec<(String, Vec<serde_json::Value>)>,
    /// Run every case N times (overrides the suite's `repeat`).
    #[arg(long)]
    pub repeat: Option<u32>,
    /// Largest pass-rate drop from the best that counts as as good (0.03 = 3 points).
    #[arg(long)]
    pub margin: Option<f64>,
    /// Confidence of the non-inferiority tests (default: the suite's regression gate's, else 0.95).
    #[arg(long)]
    pub confidence: Option<f64>,
    /// Git ref the suite, dataset and config are read from.
    #[arg(long = "ref", default_value = "HEAD", conflicts_with = "worktree")]
    pub git_ref: String,
    /// Read the suite from the working tree instead of a commit.
    #[arg(long)]
    pub worktree: bool,
    /// Print the report as JSON (no progress bar).
    #[arg(long)]
    pub json: bool,
    /// Also write the markdown report to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Also write the HTML report (SVG charts, self-contained) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Ignore the response cache (and do not fill it).
    #[arg(long)]
    pub no_cache: bool,
    #[arg(long)]
    pub repo: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    let location = super::location(args.repo.as_deref(), &args.git_ref, args.worktree)?;
    let git = GitRepo::open(&location.root)?;
    let files = location.files(&git)?;
    let opts = CompareOptions {
        suite: args.suite.clone(),
        models: args.models.clone(),
        prompt_refs: args.prompt_refs.clone(),
        prompt_files: args.prompt_files.clone(),
        params: args.params.clone(),
        repeat: args.repeat,
        margin: args.margin,
        confidence: args.confidence,
    };
    let plan = run::plan(&git, &files, &opts)?;
    drop(files);
    drop(git);
    let progress = !args.json && std::io::stderr().is_terminal();
    let on_case: Option<Arc<dyn Fn() + Send + Sync>> = progress.then(|| {
        let bar = super::eval::progress_bar(&args.suite, plan.case_count())
            .with_finish(indicatif::ProgressFinish::AndClear);
        Arc::new(move || bar.inc(1)) as Arc<dyn Fn() + Send + Sync>
    });
    let state_dir = location.root.join(STATE_DIR);
    let exec = ExecOptions {
        concurrency: args.concurrency,
        use_cache: !args.no_cache,
        state_dir: &state_dir,
        on_case,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(run::execute(plan, &exec))?;
    if let Some(path) = &args.markdown {
        crate::durable::write(path, report::markdown(&report).as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        crate::durable::write(path, report::html(&report).as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        super::out(&table(&report))?;
    }
    Ok(ExitStatus::Success)
}

/// The terminal table: one line per candidate, then the verdicts.
fn table(r: &CompareReport) -> String {
    let width = r
        .candidates
        .iter()
        .map(|c| c.figures.label.chars().count())
        .max()
        .unwrap_or(9)
        .max(9);
    let mut out = format!(
        "suite {} | dataset {} | {} rows x {} repeat(s) | margin {:.1} pts | confidence {:.0}%\n\n",
        r.suite,
        r.dataset,
        r.rows,
        r.repeat,
        r.margin * 100.0,
        r.confidence * 100.0
    );
    out.push_str(&format!(
        "{:<width$}  {:>7}  {:>15}  {:>6}  {:>10}  {:>8}  {:>8}  {:>7}  {:>7}  {:>6}  {}\n",
        "candidate",
        "pass",
        "interval",
        "score",
        "cost/1k",
        "p50",
        "p95",
        "tok in",
        "tok out",
        "errors",
        "frontier"
    ));
    for c in &r.candidates {
        let f = &c.figures;
        let ms = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.0}ms"));
        out.push_str(&format!(
            "{:<width$}  {:>6.1}%  {:>6.1}% … {:>5.1}%  {:>6.3}  {:>10}  {:>8}  {:>8}  {:>7.1}  {:>7.1}  {:>5.1}%  {}\n",
            f.label,
            f.pass_rate * 100.0,
            f.pass_rate_interval.low * 100.0,
            f.pass_rate_interval.high * 100.0,
            f.mean_score,
            cost_text(f.cost_per_1k),
            ms(f.latency_p50_ms),
            ms(f.latency_p95_ms),
            f.input_tokens,
            f.output_tokens,
            f.error_rate * 100.0,
            if c.on_frontier { "yes" } else { "-" }
        ));
    }
    out.push('\n');
    for c in &r.candidates {
        out.push_str(&format!("  {}\n", run::versus_text(r, c)));
    }
    out.push_str(&format!(
        "\nrecommendation: {}\nmodel calls {} ({} from the response cache)\n",
        r.recommendation, r.model_calls, r.cache_hits
    ));
    out
}
