//! `promptgate drift`: inputs, outputs, operations and feedback of a current
//! window of the request log against a reference window, per prompt (and
//! pass-through model), over one or several replicas' log roots. Prints the
//! table (or `--json`), writes the HTML report (`--html`); exit 1 when drift
//! is found, 2 when it could not run (including "not enough data").

use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;

use super::ExitStatus;
use crate::drift::{self, DriftJob, Status};
use crate::repo::GitRepo;
use crate::settings::{Overrides, Scope, Settings};
use crate::spec::drift::{DriftConfig, WindowSpec};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Log roots to read (repeatable, one per replica; also partition
    /// folders or files); default: the repository's `logging.dir`.
    #[arg(long = "logs", value_name = "PATH", num_args = 1..)]
    pub logs: Vec<PathBuf>,
    /// Only this prompt id (or `model:<name>` for pass-through calls);
    /// repeatable. Default: `drift.prompts`, else every group with calls.
    #[arg(long = "prompt", value_name = "ID")]
    pub prompts: Vec<String>,
    /// Reference window: first:N (the stable version's first N calls),
    /// last:N, last:24h, A..B (dates or RFC 3339 times, end excluded),
    /// commit:SHA, dataset:NAME@vN or eval:SUITE (inputs only).
    /// Default: `drift.reference` (first:2000).
    #[arg(long, conflicts_with = "reference_commit")]
    pub reference: Option<WindowSpec>,
    /// The calls served from this commit are the reference.
    #[arg(long, value_name = "SHA")]
    pub reference_commit: Option<String>,
    /// Current window (same forms). Default: `drift.current` (last:2000).
    #[arg(long)]
    pub current: Option<WindowSpec>,
    /// Branch whose rollout.yaml names the stable ref; default:
    /// `server.control_ref` of promptgate.yaml.
    #[arg(long)]
    pub control_ref: Option<String>,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write the HTML report (one self-contained file) here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also list constant features in the table.
    #[arg(long)]
    pub all: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    let overrides = Overrides {
        repo: args.repo.clone(),
        control_ref: args.control_ref.clone(),
        log_roots: args.logs.clone(),
        ..Overrides::default()
    };
    let resolved = Settings::resolve(&Scope::Production, overrides.with_env())?;
    let git = GitRepo::open(resolved.root())?;
    let mut settings: DriftConfig = resolved.config.drift.clone().unwrap_or_default();
    if let Some(r) = &args.reference {
        settings.reference = r.clone();
    }
    if let Some(c) = &args.reference_commit {
        settings.reference = format!("commit:{c}")
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--reference-commit: {e}"))?;
    }
    if let Some(c) = &args.current {
        settings.current = c.clone();
    }
    if settings.current.inputs_only() {
        anyhow::bail!(
            "--current {}: a dataset has inputs only; the current window must be calls from the logs",
            settings.current
        );
    }
    // Roots named on the command line must exist (the reader says which
    // does not); by default the store (when configured) and the log folder.
    let sources = if resolved.log_roots_given {
        resolved.log_roots.clone()
    } else {
        crate::lake::source::default_sources(&resolved.config.logging, &resolved.log_dir)
    };
    // Stores are fetched into a temporary log root for the readers.
    let view = crate::lake::source::LocalView::open(
        &sources,
        &resolved.config.logging.store_options,
        None,
    )
    .context("reading the log lake")?;
    let now = Utc::now();
    let job = DriftJob {
        settings,
        control_ref: resolved.control_ref.clone(),
        stable_commit: None,
        logs: view.roots().to_vec(),
        groups: args.prompts.clone(),
        now,
    };
    let bar = progress_bar(args.json);
    let started = std::time::Instant::now();
    let report = drift::job::run(&git, &job, &|p| {
        if let Some(b) = &bar {
            b.set_length(p.files as u64);
            b.set_position(p.files_done as u64);
            b.set_message(if p.pass == 1 { "keys" } else { "features" });
        }
    })
    .context("drift")?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "drift: read and analysed"
    );

    if let Some(path) = &args.html {
        let html = crate::report::drift_html::render(
            &report,
            &now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        std::fs::write(path, html).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        let mut text = report.render(args.all);
        if let Some(path) = &args.html {
            text.push_str(&format!("HTML report: {}\n", path.display()));
        }
        super::out(&text)?;
    }
    Ok(match report.status {
        Status::Drift => ExitStatus::Failure,
        Status::NotEnoughData => {
            let short: Vec<String> = report
                .groups
                .iter()
                .filter(|g| g.status == Status::NotEnoughData)
                .map(|g| {
                    format!(
                        "`{}` ({} vs {} calls)",
                        g.group, g.reference_calls, g.current_calls
                    )
                })
                .collect();
            tracing::warn!(
                "not enough data (min_rows {}): {}",
                report.min_rows,
                short.join(", ")
            );
            let _ = writeln_stderr(&format!(
                "not enough data: fewer than {} calls in a window for {}",
                report.min_rows,
                short.join(", ")
            ));
            ExitStatus::Error
        }
        Status::NoDrift => ExitStatus::Success,
    })
}

fn writeln_stderr(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    writeln!(std::io::stderr().lock(), "{text}")
}

fn progress_bar(quiet: bool) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg:>9} {bar:30} {pos}/{len} files")
    {
        bar.set_style(style);
    }
    Some(bar)
}
