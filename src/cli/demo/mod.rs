//! `promptgate demo [DIR]`: the whole loop on this machine in one command.
//!
//! Scaffold -> model (Ollama when one answers, else the built-in mock-llm)
//! -> dataset snapshot and eval -> a worse prompt on a branch and `check` on
//! it -> `serve` -> that branch live as a canary -> traffic -> the serve
//! analyzer's automatic rollback commit -> traffic stable again.
//!
//! Thin orchestration: every step is an existing command. The short ones
//! (`dataset snapshot`, `eval`, `check`) and `serve` run as child processes
//! of this binary ([`supervise`]), and the demo reads what they report as
//! typed values (`--json`, serve's `/status`), never their human output;
//! the mock LLM and the traffic client ([`traffic`]) run in this process.
//!
//! `--improve` runs the improvement loop instead ([`improve`]): feedback,
//! the review queue, scripted reviews over HTTP, dataset v2 on a branch,
//! its dataset-only check, a prompt fix checked on v2, its canary and the
//! analyzer's promotion.
//!
//! Files: this one is the step script; [`steps`] the steps, [`supervise`]
//! the children and the stop signal, [`traffic`] the simulated users,
//! [`http`] the HTTP client and serve's `/status`, [`repo`] the commits,
//! [`fixtures`] what the demo writes, [`output`] what it prints.

mod fixtures;
mod http;
mod improve;
mod output;
mod repo;
mod steps;
mod supervise;
mod traffic;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::sync::watch;

use super::ExitStatus;
use crate::mock_llm::MockServer;
use output::{heading, say};
use supervise::{Halt, ServeChild, Stop, cooperative, guarded};

/// Where a local Ollama listens by default.
const OLLAMA: &str = "127.0.0.1:11434";
/// The scaffold's suite, prompt and dataset the demo drives.
const SUITE: &str = "capitals";
const PROMPT_FILE: &str = "prompts/capital.yaml";
const BRANCH: &str = "demo/worse-prompt";
const MAIN: &str = "refs/heads/main";
/// Percent of traffic the canary gets: high, so the demo decides in seconds.
const CANARY_WEIGHT: u32 = 30;
/// Distinct simulated users (sticky routing hashes them to a variant).
const USERS: u64 = 60;
/// Requests checked after the rollback, all of which must be stable.
const AFTER_ROLLBACK: usize = 30;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder for the demo repository (default: a new temporary folder,
    /// kept afterwards and printed).
    pub dir: Option<PathBuf>,
    /// Use the built-in mock-llm even when an Ollama answers on
    /// 127.0.0.1:11434.
    #[arg(long)]
    pub mock: bool,
    /// Exit (0) once the rollback is shown, instead of serving until Ctrl-C.
    #[arg(long)]
    pub exit_after_rollback: bool,
    /// Longest wait for the automatic rollback, in seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_s: u64,
    /// Show the improvement loop instead, on the mock-llm: feedback ->
    /// review queue -> scripted reviews -> dataset v2 on a branch -> its
    /// check -> a prompt fix checked on v2 -> canary -> promotion. Exits
    /// once the promotion is committed.
    #[arg(long)]
    pub improve: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let (stop_tx, stop) = watch::channel(false);
        tokio::spawn(async move {
            super::serve::shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let mut demo = Demo {
            root: PathBuf::new(),
            mock: None,
            serve: None,
        };
        let outcome = if args.improve {
            demo.improve_steps(&args, &stop).await
        } else {
            match demo.steps(&args, &stop).await {
                Ok(()) if !args.exit_after_rollback => demo.hold(&stop).await,
                other => other,
            }
        };
        let stopped = demo.shutdown().await;
        Ok(report(outcome, &stopped, &demo.root))
    })
}

/// Says how the demo ended; its exit status.
fn report(outcome: Result<(), Halt>, stopped: &str, root: &std::path::Path) -> ExitStatus {
    match outcome {
        Ok(()) => {
            say(&format!("\n{stopped}"));
            say(&format!("The demo repository stays in {}.", root.display()));
            ExitStatus::Success
        }
        Err(Halt::Interrupted { step }) => {
            say(&format!("\ninterrupted during step `{step}`; {stopped}"));
            eprintln!("error: demo step `{step}` did not finish: interrupted");
            ExitStatus::Error
        }
        Err(Halt::Failed { step, err }) => {
            say(&format!("\n{stopped}"));
            eprintln!("error: demo step `{step}` could not run: {err:#}");
            ExitStatus::Error
        }
    }
}

/// What the demo started and must stop.
struct Demo {
    root: PathBuf,
    mock: Option<MockServer>,
    serve: Option<ServeChild>,
}

impl Demo {
    async fn steps(&mut self, args: &Args, stop: &Stop) -> Result<(), Halt> {
        heading(1, "Scaffold a promptgate repository");
        let root = guarded(stop, "scaffold", async {
            steps::scaffold(args.dir.clone())
        })
        .await?;
        self.root = root.clone();

        heading(2, "Pick the model");
        self.mock = guarded(stop, "model", steps::pick_model(&root, args.mock)).await?;

        heading(3, "Snapshot the dataset and run the eval");
        cooperative("eval", steps::dataset_and_eval(&root, stop)).await?;

        heading(4, "Open a prompt change as a branch and check it");
        cooperative("check", steps::branch_and_check(&root, stop)).await?;

        heading(5, "Start the proxy (promptgate serve)");
        let serve = guarded(stop, "serve", ServeChild::start(&root)).await?;
        let addr = serve.addr;
        self.serve = Some(serve);
        let traffic = guarded(stop, "serve", steps::start_traffic(&root, addr)).await?;

        heading(
            6,
            "Put the branch live as a canary and wait for the analyzer",
        );
        guarded(stop, "canary", steps::put_canary_live(&root, addr)).await?;
        let timeout = Duration::from_secs(args.timeout_s);
        let rollback = guarded(
            stop,
            "rollback",
            steps::wait_for_rollback(&root, addr, &traffic, timeout),
        )
        .await?;
        traffic.stop();

        heading(7, "Traffic is stable again");
        guarded(
            stop,
            "stable again",
            steps::stable_again(&root, addr, rollback),
        )
        .await?;
        say(&format!(
            "\nDone: the regressing canary was rolled back by a git commit, without anyone watching.\n\
             Look at:\n\
             \x20 git -C {root} log --stat -3          the canary commit and its revert\n\
             \x20 {root}/.promptgate/logs/requests     request logs (Parquet, one row per call)\n\
             \x20 {root}/.promptgate/logs/serve.log    what serve said (reloads, the analyzer)\n\
             \x20 promptgate canary status --repo {root}",
            root = root.display()
        ));
        Ok(())
    }

    /// `--improve`: the improvement loop, on the mock (see [`improve`]).
    async fn improve_steps(&mut self, args: &Args, stop: &Stop) -> Result<(), Halt> {
        use improve::head;
        head(1, "Scaffold a promptgate repository");
        let root = guarded(stop, "scaffold", async {
            steps::scaffold(args.dir.clone())
        })
        .await?;
        self.root = root.clone();

        head(2, "The model: the built-in mock-llm");
        self.mock = Some(guarded(stop, "model", improve::start_mock(&root)).await?);

        head(3, "Serve, traffic, and the users' feedback");
        let serve = guarded(stop, "serve", ServeChild::start(&root)).await?;
        let addr = serve.addr;
        self.serve = Some(serve);
        guarded(stop, "traffic", improve::traffic_with_feedback(&root, addr)).await?;

        head(4, "Queue the badly rated calls for review");
        cooperative("review sample", improve::sample(&root, stop)).await?;

        head(5, "Review them (scripted) through serve's HTTP endpoints");
        guarded(stop, "review", improve::review(&root, addr)).await?;

        head(6, "Grow the dataset to v2 on a branch, and eval on v2");
        cooperative("dataset grow", improve::grow_and_eval(&root, stop)).await?;

        head(7, "Check the dataset-only pull request, then merge it");
        cooperative("dataset check", improve::check_dataset(&root, stop)).await?;

        head(8, "Fix the prompt on a branch and check it on v2");
        cooperative("fix check", improve::fix_and_check(&root, stop)).await?;

        head(9, "Put the fix live as a canary and wait for the analyzer");
        let timeout = Duration::from_secs(args.timeout_s);
        let done = guarded(
            stop,
            "promotion",
            improve::canary_until_promoted(&root, addr, timeout),
        )
        .await?;
        say(&format!(
            "\nDone: low feedback became reviewed rows of dataset v2, the prompt fix passed check on v2,\n\
             and serve's analyzer promoted it live ({}).\n\
             Look at:\n\
             \x20 git -C {root} log --oneline --graph --all   the dataset branch, the fix, the canary and its promotion\n\
             \x20 {root}/.promptgate/demo/check-dataset.md     the dataset-only check (new rows the old prompt fails)\n\
             \x20 {root}/.promptgate/demo/check-fix.md         the fix's check on v2\n\
             \x20 {root}/.promptgate/logs/review/journal.jsonl the review queue and its decisions\n\
             \x20 promptgate dataset list {SUITE} --repo {root}",
            &done.promotion[..done.promotion.len().min(12)],
            root = root.display()
        ));
        Ok(())
    }

    /// Keeps serve running until Ctrl-C (or until serve exits by itself).
    async fn hold(&mut self, stop: &Stop) -> Result<(), Halt> {
        let Some(serve) = self.serve.as_mut() else {
            return Ok(());
        };
        say(&format!(
            "\nserve keeps running at http://{addr} (pid {pid}); try\n\
             \x20 curl -s http://{addr}/metrics | grep promptgate_\n\
             \x20 curl -s http://{addr}/v1/chat/completions -H 'content-type: application/json' \\\n\
             \x20   -d '{{\"model\": \"prompt:capital\", \"variables\": {{\"country\": \"Japan\"}}}}'\n\
             Ctrl-C stops it.",
            addr = serve.addr,
            pid = serve.pid,
        ));
        let mut stop = stop.clone();
        tokio::select! {
            _ = stop.wait_for(|s| *s) => Ok(()),
            status = serve.child.wait() => Err(Halt::Failed {
                step: "serve",
                err: anyhow!(
                    "serve exited by itself ({}); see {}",
                    status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                    serve.log.display()
                ),
            }),
        }
    }

    /// Stops serve (drain + flush) and the mock; says what was stopped.
    async fn shutdown(&mut self) -> String {
        let mut parts = Vec::new();
        if let Some(serve) = self.serve.take() {
            parts.push(serve.stop().await);
        }
        if let Some(m) = self.mock.take() {
            let url = m.url();
            drop(m);
            parts.push(format!("stopped the mock-llm at {url}"));
        }
        if parts.is_empty() {
            "nothing left running.".to_string()
        } else {
            format!("{}.", parts.join("; "))
        }
    }
}
