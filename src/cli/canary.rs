//! `promptgate canary status|analyze`: the canary vs stable comparison over
//! the request logs of one or several replicas, and (`analyze --apply`) the
//! rollback, promotion or step commit, optionally pushed. Meant for a
//! scheduled CI job; exit 1 when a rollback is decided (or applied).

use std::path::PathBuf;

use anyhow::Context;

use super::ExitStatus;
use crate::canary::{self, Acted, CanaryReport, Decision};
use crate::lake::source;
use crate::repo::GitRepo;
use crate::settings::{Overrides, Scope, Settings};
use crate::spec::config::StoreOptions;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: CanaryCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CanaryCommand {
    /// Print the canary vs stable comparison table.
    Status(CommonArgs),
    /// Decide rollback / promote / continue; `--apply` commits the decision.
    Analyze(AnalyzeArgs),
}

#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Log roots to read (repeatable, one per replica; also partition
    /// folders or files); default: the one `serve` writes to (`logging.dir`
    /// of the control ref's promptgate.yaml, or $PROMPTGATE_LOG_DIR).
    #[arg(long = "logs", value_name = "PATH", num_args = 1..)]
    pub logs: Vec<PathBuf>,
    /// Branch whose rollout.yaml is live; default: $PROMPTGATE_CONTROL_REF,
    /// else `server.control_ref` of HEAD's committed promptgate.yaml
    /// (`HEAD`, the checked-out branch).
    #[arg(long)]
    pub control_ref: Option<String>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Commit the rollback, promotion or step advance on the control branch.
    #[arg(long)]
    pub apply: bool,
    /// After --apply, push the moved branches to `analysis.push.remote`
    /// (default `origin`).
    #[arg(long, requires = "apply")]
    pub push: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    match args.command {
        CanaryCommand::Status(a) => run_inner(a, false, false),
        CanaryCommand::Analyze(a) => run_inner(a.common, a.apply, a.push),
    }
}

#[derive(serde::Serialize)]
struct Output<'a> {
    control: &'a canary::ControlBranch,
    origin: Option<&'a canary::CanaryOrigin>,
    report: &'a CanaryReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<&'a canary::Applied>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pushed: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    notes: &'a [String],
}

fn run_inner(args: CommonArgs, apply: bool, push: bool) -> anyhow::Result<ExitStatus> {
    let overrides = Overrides {
        repo: args.repo.clone(),
        control_ref: args.control_ref.clone(),
        log_roots: args.logs.clone(),
        ..Overrides::default()
    };
    let settings = Settings::resolve(&Scope::Production, overrides.with_env())?;
    let git = GitRepo::open(settings.root())?;
    let control_ref = &settings.control_ref;
    let state = canary::load(&git, control_ref)
        .with_context(|| format!("reading the rollout on {control_ref}"))?;
    // The default log folder may not exist yet (no traffic): no rows. A
    // folder named on the command line must exist.
    let sources = if settings.log_roots_given {
        settings.readable_log_roots()
    } else {
        crate::lake::source::default_sources(&settings.config.logging, &settings.log_dir)
    };
    // The view holds the files fetched from a store: the analysis reads them.
    let (_view, evidence) = read_logs(&sources, &state, &settings.config.logging.store_options)?;
    let report = state.analyze(&evidence)?;

    let acted = if apply {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let root = settings.root().to_path_buf();
        runtime
            .block_on(canary::act(root, &state, &report, push))
            .context("applying the decision")?
    } else {
        Acted::default()
    };
    let out = Output {
        control: &state.control,
        origin: state.origin.as_ref(),
        report: &report,
        applied: acted.applied.as_ref(),
        pushed: &acted.pushed,
        notes: &acted.notes,
    };
    if args.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&out)?))?;
    } else {
        super::out(&render(&out))?;
    }
    if let Some(e) = acted.push_error {
        // The commit stands (printed above); pushing it is left to retry.
        anyhow::bail!("pushing: {e}");
    }
    Ok(match report.decision {
        Decision::Rollback => ExitStatus::Failure,
        _ => ExitStatus::Success,
    })
}

fn render(out: &Output<'_>) -> String {
    let mut text = out.report.render();
    if let Some(o) = out.origin {
        text.push_str(&format!(
            "canary introduced by {} \"{}\"\n",
            &o.introduced_by[..12.min(o.introduced_by.len())],
            o.introduced_subject
        ));
    }
    if let Some(a) = out.applied {
        match &a.commit {
            Some(c) => text.push_str(&format!(
                "applied: {} on {}: commit {} ({})\n",
                a.action.describe(),
                out.control.refname,
                &c[..12],
                a.method
            )),
            None => text.push_str(&format!("applied: {}\n", a.method)),
        }
        for n in &a.notes {
            text.push_str(&format!("note: {n}\n"));
        }
    }
    for p in out.pushed {
        text.push_str(&format!("pushed {p}\n"));
    }
    for n in out.notes {
        text.push_str(&format!("{n}\n"));
    }
    text
}

fn read_logs(
    logs: &[PathBuf],
    state: &canary::CanaryState,
    store: &StoreOptions,
) -> anyhow::Result<(source::LocalView, canary::Evidence)> {
    for l in logs {
        anyhow::ensure!(
            l.exists() || source::any_store(std::slice::from_ref(l)),
            "{}: no such log folder or file",
            l.display()
        );
    }
    // Only the partitions of the analysis window are fetched from a store.
    let view = source::LocalView::open(logs, store, Some(state.since().date_naive()))
        .context("reading the log lake")?;
    let evidence = state
        .read_evidence(view.roots())
        .context("reading the request logs")?;
    Ok((view, evidence))
}
