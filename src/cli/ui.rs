//! `promptgate ui`: the dashboard's pages, read-only, over log roots (one
//! per replica), for a machine that holds the logs and runs no proxy. With
//! `--repo` the rollout page shows what `rollout.yaml` names at the control
//! ref and its history. The cost page draws the plane of the logs; a log
//! root's review queue is listed read-only. Prints one `listening on` line
//! to stderr when ready; runs until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::ExitStatus;
use crate::project::ROLLOUT_FILE;
use crate::repo::GitRepo;
use crate::spec::config::Redaction;
use crate::ui::{
    Dashboard, HistoryEntry, ProductionPlane, ReadOnlyQueues, RolloutView, ServedView, StaticHost,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Log roots to read (repeatable: one per replica).
    #[arg(long = "logs", value_name = "DIR", num_args = 1.., required = true)]
    pub logs: Vec<PathBuf>,
    /// Address to listen on (port 0 picks a free port, printed on the
    /// `listening on` line).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: String,
    /// Environment variable holding the admin token every page then needs.
    #[arg(long, value_name = "VAR")]
    pub admin_token_env: Option<String>,
    /// Show e-mail addresses in logged text as `[email]`.
    #[arg(long)]
    pub redact_emails: bool,
    /// Show phone numbers in logged text as `[phone]`.
    #[arg(long)]
    pub redact_phones: bool,
    /// Repository whose rollout the rollout page shows.
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// The ref rollout.yaml is read from (with `--repo`).
    #[arg(long, default_value = "HEAD", requires = "repo")]
    pub control_ref: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    for dir in &args.logs {
        anyhow::ensure!(dir.exists(), "--logs {}: no such folder", dir.display());
    }
    let token = match &args.admin_token_env {
        Some(var) => Some(
            std::env::var(var)
                .ok()
                .filter(|t| !t.is_empty())
                .with_context(|| format!("--admin-token-env {var}: the variable is not set"))?,
        ),
        None => None,
    };
    let rollout = match &args.repo {
        Some(repo) => Some(rollout_view(repo, &args.control_ref)?),
        None => None,
    };
    let host = StaticHost {
        token,
        redaction: Redaction {
            emails: args.redact_emails,
            phones: args.redact_phones,
        },
        rollout,
    };
    let mode = format!(
        "read-only over {} log root{}",
        args.logs.len(),
        if args.logs.len() == 1 { "" } else { "s" }
    );
    let mut dash = Dashboard::new(args.logs.clone(), Arc::new(host), mode)
        .with_cost(Arc::new(ProductionPlane));
    if let Some(queues) = ReadOnlyQueues::find(&args.logs).map_err(anyhow::Error::msg)? {
        for dir in queues.dirs() {
            tracing::info!(dir = %dir.display(), "review queue shown read-only");
        }
        dash = dash.with_review(Arc::new(queues));
    }
    let dash = Arc::new(dash);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        eprintln!("listening on http://{addr} (pages under /ui)");
        axum::serve(listener, crate::ui::router(dash))
            .with_graceful_shutdown(super::serve::shutdown_signal())
            .await
            .context("serving")?;
        Ok(ExitStatus::Success)
    })
}

/// What rollout.yaml at `control_ref` names, with the commits' subjects and
/// the file's history (promotions and rollbacks are commits to it).
fn rollout_view(repo: &std::path::Path, control_ref: &str) -> anyhow::Result<RolloutView> {
    let git = GitRepo::discover(repo).with_context(|| format!("--repo {}", repo.display()))?;
    let control_commit = git.resolve(control_ref)?.to_string();
    let rollout = crate::canary::rollout_at(&git, &control_commit)?
        .with_context(|| format!("no {ROLLOUT_FILE} at {control_ref}"))?;
    let served = |git_ref: &str| ServedView {
        git_ref: git_ref.to_string(),
        commit: git
            .resolve(git_ref)
            .map(|c| c.to_string())
            .unwrap_or_default(),
        subject: git
            .message(git_ref)
            .ok()
            .and_then(|m| m.lines().next().map(str::to_string))
            .unwrap_or_default(),
    };
    let history = git
        .file_history(control_ref, ROLLOUT_FILE)?
        .into_iter()
        .map(HistoryEntry::from)
        .collect();
    Ok(RolloutView {
        control_ref: control_ref.to_string(),
        control_commit,
        stable: served(&rollout.stable),
        canary: rollout.canary.as_ref().map(|c| served(&c.git_ref)),
        weight: rollout.canary.as_ref().map(|c| c.weight),
        rounds: Vec::new(),
        history,
    })
}
