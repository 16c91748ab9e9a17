//! The command line: clap types and one file per subcommand, each with its
//! `Args` and a `run()` that returns an [`ExitStatus`]. Errors reach this
//! edge as `anyhow` with context and are printed once, here.

// The one part of the crate that talks to the terminal (Cargo.toml denies
// printing everywhere else).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod canary;
mod check;
mod compare;
mod dataset;
mod demo;
mod drift;
mod eval;
pub(crate) mod init;
mod log;
mod logs;
mod mock_llm;
mod render;
mod report;
mod review;
mod serve;
mod ui;
mod validate;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// What the process reports to its caller (CI acts on these codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything passed.
    Success,
    /// The command ran and found a failure: invalid files, a failed gate.
    Failure,
    /// The command could not run: bad arguments, unreadable config, an
    /// unreachable provider.
    Error,
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> Self {
        match s {
            ExitStatus::Success => ExitCode::from(0),
            ExitStatus::Failure => ExitCode::from(1),
            ExitStatus::Error => ExitCode::from(2),
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "promptgate",
    version,
    about = "Git-native LLMOps: versioned prompts and datasets, PR quality gates, a canary proxy with automatic rollback"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scaffold a working promptgate repository (git init + first commit).
    Init(init::Args),
    /// Check every file against its schema and all cross-references.
    Validate(validate::Args),
    /// Render a prompt's messages with the given variables.
    Render(render::Args),
    /// List the versions of a prompt from git history.
    Log(log::Args),
    /// Dataset snapshots (Parquet), versions and row diffs.
    Dataset(dataset::Args),
    /// Evaluate a suite at a ref on its pinned dataset; results to Parquet.
    Eval(eval::Args),
    /// Pull-request gate: evaluate affected suites at base and head, compare case by case, apply the gates.
    Check(check::Args),
    /// Cost vs quality: candidates (models x prompt versions x params) on one dataset; Pareto frontier, cheapest non-inferior.
    Compare(compare::Args),
    /// Run a deterministic mock LLM server (Ollama + OpenAI wire formats).
    MockLlm(mock_llm::Args),
    /// Request and feedback logs: compact, query.
    Logs(logs::Args),
    /// The whole loop on this machine: scaffold, eval, PR check, serve, a
    /// canary and its automatic rollback.
    Demo(demo::Args),
    /// The proxy: serve the prompts of the refs rollout.yaml names, log every call.
    Serve(serve::Args),
    /// Canary vs stable analysis; `analyze --apply` commits rollback / promotion.
    Canary(canary::Args),
    /// Drift of inputs, outputs, operations and feedback between two windows of the request log.
    Drift(drift::Args),
    /// The cost-quality plane from the request log per prompt version, variant and model.
    Report(report::Args),
    /// The review queue: sample production calls, accept / correct / label / discard them.
    Review(review::Args),
    /// The dashboard's pages, read-only, over log roots (serve has them at /ui).
    Ui(ui::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Init(args) => init::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Render(args) => render::run(args),
        Command::Log(args) => log::run(args),
        Command::Dataset(args) => dataset::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Check(args) => check::run(args),
        Command::Compare(args) => compare::run(args),
        Command::MockLlm(args) => mock_llm::run(args),
        Command::Logs(args) => logs::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Canary(args) => canary::run(args),
        Command::Drift(args) => drift::run(args),
        Command::Report(args) => report::run(args),
        Command::Review(args) => review::run(args),
        Command::Ui(args) => ui::run(args),
    };
    match result {
        Ok(status) => status.into(),
        Err(err) => {
            // A closed pipe (`promptgate log | head`) is not an error.
            if err
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::from(0);
            }
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: {}", error_text(&err));
            ExitStatus::Error.into()
        }
    }
}

/// The error and its causes, each said once. The library's errors quote
/// their source in their own message (`"{path}: {source}"`) and name it as
/// their source too, so anyhow's `{:#}` would print every such cause twice:
/// a cause whose text already ends the message adds nothing.
fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PROMPTGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Where a command that reads a commit (`--ref REF`) or the work in
/// progress (`--worktree`) of the repository `--repo` reads from.
pub(crate) fn location(
    repo: Option<&std::path::Path>,
    git_ref: &str,
    worktree: bool,
) -> anyhow::Result<crate::settings::Location> {
    use crate::settings::{Location, Overrides, Scope};
    let scope = if worktree {
        Scope::WorkTree
    } else {
        Scope::Commit(git_ref.to_string())
    };
    let overrides = Overrides {
        repo: repo.map(std::path::Path::to_path_buf),
        ..Overrides::default()
    };
    Ok(Location::resolve(&scope, &overrides.with_env())?)
}

/// Writes to stdout, turning a closed pipe into an error the edge ignores.
pub(crate) fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// The repository root for `--repo` (default: discovered from the current folder).
pub(crate) fn repo_root(repo: Option<&std::path::Path>) -> anyhow::Result<std::path::PathBuf> {
    Ok(crate::settings::repo_root(repo)?)
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Quoting {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn a_cause_quoted_by_its_error_is_said_once_and_context_is_kept() {
        let io = std::io::Error::other("disk full");
        let err = anyhow::Error::new(Quoting {
            path: "a.yaml",
            source: io,
        })
        .context("saving");
        assert_eq!(error_text(&err), "saving: a.yaml: disk full");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&plain), "outer: inner");
    }
}
