//! `promptgate check --base REF --head REF`: the pull-request gate. Finds the
//! suites the change affects, evaluates each on both sides, compares them
//! case by case and applies the suites' gates (see `eval::check`,
//! `eval::compare`). Exit 0: every gate passes or nothing relevant changed;
//! 1: a gate failed; 2: the check could not run.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;

use super::ExitStatus;
use crate::eval::check::{self, CheckOptions, ExecOptions, OnRun, Verdict};
use crate::repo::GitRepo;
use crate::report::markdown;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The commit the change is compared with (a pull request's base).
    #[arg(long)]
    pub base: String,
    /// The commit under review.
    #[arg(long, default_value = "HEAD")]
    pub head: String,
    /// Only check this suite (repeatable; default: every affected suite).
    #[arg(long = "suite")]
    pub suites: Vec<String>,
    /// Run every case N times on both sides (overrides the suites' `repeat`).
    #[arg(long)]
    pub repeat: Option<u32>,
    /// Print the report as JSON instead of markdown.
    #[arg(long)]
    pub json: bool,
    /// Also write the markdown report to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
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
    let root = super::repo_root(args.repo.as_deref())?;
    let git = GitRepo::open(&root)?;
    let plan = check::plan(
        &git,
        &CheckOptions {
            base: args.base.clone(),
            head: args.head.clone(),
            suites: args.suites.clone(),
            repeat: args.repeat,
        },
    )?;
    drop(git);
    let progress = !args.json && std::io::stderr().is_terminal();
    let bars = |label: &str, cases: usize| -> Option<Box<dyn Fn() + Send + Sync>> {
        let bar = super::eval::progress_bar(label, cases)
            .with_finish(indicatif::ProgressFinish::AndClear);
        Some(Box::new(move || bar.inc(1)))
    };
    let on_run: Option<&OnRun> = if progress { Some(&bars) } else { None };
    let opts = ExecOptions {
        concurrency: args.concurrency,
        use_cache: !args.no_cache,
        state_dir: root.join(".promptgate"),
        on_run,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(check::execute(plan, &opts))?;
    let md = markdown::render(&report);
    if let Some(path) = &args.markdown {
        crate::durable::write(path, md.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    // GitHub shows the step summary on the run's page.
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty()) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&summary)
            .with_context(|| format!("opening $GITHUB_STEP_SUMMARY ({})", summary.display()))?;
        f.write_all(format!("{md}\n").as_bytes())
            .context("appending to $GITHUB_STEP_SUMMARY")?;
    }
    if args.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        super::out(&md)?;
    }
    Ok(match report.verdict {
        Verdict::NoChanges | Verdict::Pass => ExitStatus::Success,
        Verdict::Fail => ExitStatus::Failure,
    })
}
