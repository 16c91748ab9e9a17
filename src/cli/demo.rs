//! `promptgate demo [DIR]`: the whole loop on this machine in one command.
//!
//! Scaffold -> model (Ollama when one answers, else the built-in mock-llm)
//! -> dataset snapshot and eval -> a worse prompt on a branch and `check` on
//! it -> `serve` -> that branch live as a canary -> traffic -> the serve
//! analyzer's automatic rollback commit -> traffic stable again.
//!
//! Thin orchestration: every step is an existing command. The short ones
//! (`dataset snapshot`, `eval`, `check`) and `serve` run as child processes
//! of this binary, so their output is exactly what a user would see running
//! them; the mock LLM and the traffic client run in this process.
//!
//! Shutdown: `serve` runs with `--stop-on-stdin-eof` and its stdin is a pipe
//! held only by this process. Closing it (on Ctrl-C / SIGTERM, at the end)
//! makes serve drain and flush exactly as on SIGTERM, and if this process
//! dies without cleaning up (SIGKILL) the pipe closes all the same, so serve
//! never outlives the demo. Short-lived children are killed and reaped when
//! the demo is interrupted.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::watch;

use super::ExitStatus;
use crate::mock_llm::{self, MockConfig, MockServer};
use crate::repo::{GitRepo, Oid};

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
}

/// Why the demo stopped before its end.
enum Halt {
    /// A step could not run (exit 2).
    Failed {
        step: &'static str,
        err: anyhow::Error,
    },
    /// Ctrl-C / SIGTERM during a step.
    Interrupted { step: &'static str },
}

/// Set to true once by SIGINT / SIGTERM.
type Stop = watch::Receiver<bool>;

/// The error of a step that stopped its own children on the signal.
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

fn halt(step: &'static str, err: anyhow::Error) -> Halt {
    if err.is::<Interrupted>() {
        Halt::Interrupted { step }
    } else {
        Halt::Failed { step, err }
    }
}

/// Runs `fut` as step `step` unless a stop signal comes first; the future
/// is then dropped (it owns no child process: those steps use
/// [`cooperative`]).
async fn guarded<T>(
    stop: &Stop,
    step: &'static str,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> Result<T, Halt> {
    let mut stop = stop.clone();
    tokio::select! {
        r = fut => r.map_err(|err| halt(step, err)),
        _ = stop.wait_for(|s| *s) => Err(Halt::Interrupted { step }),
    }
}

/// Runs a step that watches the stop signal itself (it kills and reaps its
/// child before returning [`Interrupted`]), so it is never dropped midway.
async fn cooperative<T>(
    step: &'static str,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> Result<T, Halt> {
    fut.await.map_err(|err| halt(step, err))
}

fn say(text: &str) {
    // A closed stdout must not stop the demo half-way (children to stop).
    let _ = super::out(&format!("{text}\n"));
}

fn heading(n: u32, title: &str) {
    say(&format!("\n[{n}/7] {title}"));
}

fn detail(text: &str) {
    for line in text.lines() {
        say(&format!("      {line}"));
    }
}

fn look(text: &str) {
    say(&format!("      look: {text}"));
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
        let outcome = demo.steps(&args, &stop).await;
        let outcome = match outcome {
            Ok(()) if !args.exit_after_rollback => demo.hold(&stop).await,
            other => other,
        };
        let stopped = demo.shutdown().await;
        match outcome {
            Ok(()) => {
                say(&format!("\n{stopped}"));
                say(&format!(
                    "The demo repository stays in {}.",
                    demo.root.display()
                ));
                Ok(ExitStatus::Success)
            }
            Err(Halt::Interrupted { step }) => {
                say(&format!("\ninterrupted during step `{step}`; {stopped}"));
                eprintln!("error: demo step `{step}` did not finish: interrupted");
                Ok(ExitStatus::Error)
            }
            Err(Halt::Failed { step, err }) => {
                say(&format!("\n{stopped}"));
                eprintln!("error: demo step `{step}` could not run: {err:#}");
                Ok(ExitStatus::Error)
            }
        }
    })
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
        let root = guarded(stop, "scaffold", async { scaffold(args.dir.clone()) }).await?;
        self.root = root.clone();

        heading(2, "Pick the model");
        let mock = guarded(stop, "model", pick_model(&root, args.mock)).await?;
        self.mock = mock;

        heading(3, "Snapshot the dataset and run the eval");
        cooperative("eval", dataset_and_eval(&root, stop)).await?;

        heading(4, "Open a prompt change as a branch and check it");
        cooperative("check", branch_and_check(&root, stop)).await?;

        heading(5, "Start the proxy (promptgate serve)");
        let serve = guarded(stop, "serve", ServeChild::start(&root)).await?;
        let addr = serve.addr;
        self.serve = Some(serve);
        let traffic =
            Traffic::start(addr, &root).map_err(|err| Halt::Failed { step: "serve", err })?;
        guarded(stop, "serve", async {
            traffic.wait_for_requests(20).await;
            if traffic.counts.failed.load(Ordering::Relaxed) == traffic.counts.sent() {
                bail!("serve answered none of the first requests; see .promptgate/logs/serve.log");
            }
            detail(&format!(
                "traffic started (4 clients, {USERS} users, the dataset's countries): {}",
                traffic.counts.line()
            ));
            Ok(())
        })
        .await?;

        heading(
            6,
            "Put the branch live as a canary and wait for the analyzer",
        );
        let canary_commit = guarded(stop, "canary", put_canary_live(&root, addr)).await?;
        let rollback = guarded(
            stop,
            "rollback",
            wait_for_rollback(
                &root,
                canary_commit,
                &traffic,
                Duration::from_secs(args.timeout_s),
            ),
        )
        .await?;
        traffic.stop().await;

        heading(7, "Traffic is stable again");
        guarded(stop, "stable again", stable_again(&root, addr, rollback)).await?;
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

// ---------------------------------------------------------------------------
// Steps 1-4: repository, model, eval, check
// ---------------------------------------------------------------------------

fn scaffold(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let root = match dir {
        Some(d) => d,
        None => tempfile::Builder::new()
            .prefix("promptgate-demo-")
            .tempdir()
            .context("creating a temporary folder")?
            .keep(),
    };
    let commit = super::init::scaffold(&root, false)?;
    // Absolute, so the commands printed work from any folder.
    let root = root.canonicalize().unwrap_or(root);
    detail(&format!(
        "created {} (git repository, branch main, commit {})",
        root.display(),
        &commit[..12]
    ));
    look(&format!(
        "cd {} && git log --oneline && cat promptgate.yaml prompts/capital.yaml evals/capitals.yaml",
        root.display()
    ));
    Ok(root)
}

/// Commits `text` as `path` on `branch` (a full name) from its current
/// commit; the working tree follows when the branch is checked out.
fn commit_file(
    git: &GitRepo,
    branch: &str,
    path: &str,
    text: &str,
    message: &str,
) -> anyhow::Result<Oid> {
    let sig = git.signature()?;
    Ok(git
        .commit_file(branch, path, text.as_bytes(), message, &sig)?
        .commit)
}

/// The model names of an Ollama answering on 127.0.0.1:11434, if one does.
async fn ollama_models() -> Option<Vec<String>> {
    let client = http_client(Duration::from_millis(800)).ok()?;
    let resp = client
        .get(format!("http://{OLLAMA}/api/tags"))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body: Value = resp.json().await.ok()?;
    let models = body.get("models")?.as_array()?;
    Some(
        models
            .iter()
            .filter_map(|m| m.get("name").and_then(Value::as_str).map(String::from))
            .collect(),
    )
}

fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    // reqwest is built without a bundled crypto provider (plain http here,
    // but the builder needs one installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("building the HTTP client")
}

/// Step 2: an Ollama when one answers (and has a model), else the built-in
/// mock, started here, with promptgate.yaml pointed at it.
async fn pick_model(root: &Path, force_mock: bool) -> anyhow::Result<Option<MockServer>> {
    let git = GitRepo::open(root)?;
    let config_path = crate::project::CONFIG_FILE;
    let config = std::fs::read_to_string(root.join(config_path))
        .with_context(|| format!("reading {config_path}"))?;
    let models = if force_mock {
        None
    } else {
        ollama_models().await
    };
    if let Some(models) = models {
        let scaffold_model = "llama3.2:1b";
        if models.iter().any(|m| m == scaffold_model) {
            detail(&format!(
                "using the Ollama at {OLLAMA} (model {scaffold_model}, as promptgate.yaml says)"
            ));
            look(&format!("curl -s http://{OLLAMA}/api/tags"));
            return Ok(None);
        }
        if let Some(first) = models.first() {
            let text = config.replacen(
                &format!("name: {scaffold_model}"),
                &format!("name: {first}"),
                1,
            );
            commit_file(
                &git,
                MAIN,
                config_path,
                &text,
                &format!("demo: use the local Ollama's model {first}"),
            )?;
            detail(&format!(
                "using the Ollama at {OLLAMA} with its model {first} (committed to promptgate.yaml)"
            ));
            return Ok(None);
        }
        detail(&format!("the Ollama at {OLLAMA} has no model pulled"));
    }
    if force_mock {
        say("      --mock: using the built-in mock-llm (a mock, not a real model)");
    } else {
        say(&format!(
            "      no Ollama at {OLLAMA}; using the built-in mock-llm (a mock, not a real model)"
        ));
    }
    let rules_yaml = mock_rules(&read_dataset(root)?);
    let rules_path = root.join(".promptgate/demo/mock-rules.yaml");
    if let Some(dir) = rules_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::durable::write(&rules_path, rules_yaml.as_bytes())?;
    let mock = MockServer::start(MockConfig {
        rules: mock_llm::parse_rules(&rules_yaml)?,
        ..MockConfig::default()
    })
    .await
    .context("starting the mock-llm")?;
    let text = config.replacen(
        &format!("base_url: http://{OLLAMA}"),
        &format!("base_url: {}", mock.url()),
        1,
    );
    if text == config {
        bail!("{config_path}: no `base_url: http://{OLLAMA}` to point at the mock-llm");
    }
    commit_file(
        &git,
        MAIN,
        config_path,
        &text,
        "demo: point promptgate.yaml at the built-in mock-llm (a mock, not a real model)",
    )?;
    detail(&format!(
        "mock-llm listening on {} (in this process); rules: {}",
        mock.url(),
        rules_path.display()
    ));
    detail("promptgate.yaml's provider `local` now points at it (committed on main)");
    look(&format!(
        "the same mock by hand: promptgate mock-llm --listen 127.0.0.1:11435 --rules {}",
        rules_path.display()
    ));
    Ok(Some(mock))
}

/// One row of the scaffold's capitals dataset.
#[derive(Debug, Clone, serde::Deserialize)]
struct Capital {
    country: String,
    expected: String,
}

fn read_dataset(root: &Path) -> anyhow::Result<Vec<Capital>> {
    let path = root.join(format!("datasets/{SUITE}/rows.jsonl"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let rows = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<Vec<Capital>, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    if rows.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(rows)
}

/// The worse prompt opened as a change: chattier instructions, so answers
/// grow long and hedge, which the suite's online assertions (`max_length`,
/// `not_contains "I'm sorry"`) catch.
const WORSE_PROMPT: &str = "\
# yaml-language-server: $schema=../schema/prompt.schema.json
id: capital
description: Answers with the capital city of a country, with some background.
model: small
params:
  temperature: 0
  max_tokens: 160
inputs:
  country:
    type: string
    required: true
    description: Country name in English.
messages:
  - role: system
    content: You are a friendly geography tutor. Explain your answer with some background.
  - role: user
    content: Tell me about {{ country }}. Which city is its capital?
";

/// Mock rules answering both prompts on every dataset row: the scaffold's
/// prompt gets the city; the worse prompt gets a long, hedging answer for
/// three rows in four (still naming the city) and the city for the rest.
fn mock_rules(rows: &[Capital]) -> String {
    let mut rules = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let country = regex::escape(&r.country);
        let worse = match i % 4 {
            0 => format!("{}.", r.expected),
            1 => format!(
                "I'm sorry, I can only give a short answer: the capital of {} is {}.",
                r.country, r.expected
            ),
            _ => format!(
                "{} is a country with a long history, and its capital, {}, is also its largest and best-known city.",
                r.country, r.expected
            ),
        };
        rules.push(json!({
            "pattern": format!("^Tell me about {country}\\. Which city is its capital\\?$"),
            "answer": worse,
        }));
        rules.push(json!({
            "pattern": format!("capital of {country}\\?"),
            "answer": r.expected,
        }));
    }
    let mut out = String::from(
        "# Written by `promptgate demo`: answers for the capitals dataset (a mock, not a real model).\n",
    );
    out.push_str(&serde_yaml_ng::to_string(&rules).unwrap_or_default());
    out
}

/// Output of a finished short-lived child.
struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `promptgate ARGS` to completion; on the stop signal kills and
/// reaps the child and returns [`Interrupted`].
async fn promptgate(root: &Path, args: &[&str], stop: &Stop) -> anyhow::Result<Finished> {
    if *stop.borrow() {
        return Err(Interrupted.into());
    }
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut child = Command::new(exe)
        .args(args)
        .arg("--repo")
        .arg(root)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting promptgate {}", args.join(" ")))?;
    detail(&format!(
        "$ promptgate {}   (pid {})",
        args.join(" "),
        child.id().unwrap_or(0)
    ));
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let mut stop = stop.clone();
    tokio::select! {
        (stdout, stderr) = async { tokio::join!(read_all(&mut out), read_all(&mut err)) } => {
            let status = child.wait().await?;
            Ok(Finished {
                code: status.code(),
                stdout,
                stderr,
            })
        }
        _ = stop.wait_for(|s| *s) => {
            let _ = child.kill().await;
            Err(Interrupted.into())
        }
    }
}

async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: &mut Option<R>) -> String {
    let mut buf = Vec::new();
    if let Some(r) = r {
        let _ = r.read_to_end(&mut buf).await;
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Exit code 2 (or a signal) means the command could not run.
fn ran(f: &Finished, what: &str) -> anyhow::Result<i32> {
    match f.code {
        Some(c @ (0 | 1)) => Ok(c),
        other => bail!(
            "`promptgate {what}` could not run (exit {}):\n{}{}",
            other.map_or_else(|| "by signal".to_string(), |c| c.to_string()),
            f.stdout,
            f.stderr
        ),
    }
}

/// Step 3.
async fn dataset_and_eval(root: &Path, stop: &Stop) -> anyhow::Result<()> {
    let snap = promptgate(root, &["dataset", "snapshot", SUITE], stop).await?;
    if ran(&snap, "dataset snapshot")? != 0 {
        bail!(
            "`promptgate dataset snapshot {SUITE}` failed:\n{}",
            snap.stdout
        );
    }
    detail(snap.stdout.trim_end());
    let eval = promptgate(root, &["eval", SUITE], stop).await?;
    let code = ran(&eval, "eval")?;
    let summary = eval
        .stdout
        .lines()
        .find(|l| l.starts_with("cases "))
        .unwrap_or("(no summary line)");
    detail(summary);
    let results = eval
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("results: "))
        .map(str::to_string);
    match &results {
        Some(p) => detail(&format!("per-case results (Parquet): {p}")),
        None => detail("no results file reported"),
    }
    if code == 1 {
        detail("a gate of the suite failed on main (the model may be weak); the demo goes on");
    }
    look(&format!(
        "promptgate eval {SUITE} --repo {}   (cached: no model calls the second time)",
        root.display()
    ));
    Ok(())
}

/// Step 4: the worse prompt committed on `demo/worse-prompt` (main and the
/// working tree stay as they are), then `check --base main --head BRANCH`.
async fn branch_and_check(root: &Path, stop: &Stop) -> anyhow::Result<()> {
    let branch = format!("refs/heads/{BRANCH}");
    {
        let git = GitRepo::open(root)?;
        let main = git.resolve(MAIN)?;
        git.create_branch(&branch, main, "demo: open a prompt change")
            .with_context(|| format!("creating {branch}"))?;
        let commit = commit_file(
            &git,
            &branch,
            PROMPT_FILE,
            WORSE_PROMPT,
            "capital: friendlier answers with some background",
        )?;
        detail(&format!(
            "committed a changed {PROMPT_FILE} on branch {BRANCH} ({}): chattier instructions",
            &commit.to_string()[..12]
        ));
    }
    let md = root.join(".promptgate/demo/check.md");
    let md_arg = md.to_string_lossy().into_owned();
    let check = promptgate(
        root,
        &[
            "check",
            "--base",
            "main",
            "--head",
            BRANCH,
            "--markdown",
            &md_arg,
        ],
        stop,
    )
    .await?;
    let code = ran(&check, "check")?;
    let verdict = check
        .stdout
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with("<!--"))
        .unwrap_or("(no verdict line)");
    detail(&format!("verdict: {verdict}"));
    if code == 1 {
        detail("check exited 1: the gate failed, this change would be blocked in review");
    } else {
        detail("check exited 0: the gate passed (the canary analysis below still judges it live)");
    }
    detail(&format!("the PR comment (markdown): {}", md.display()));
    look(&format!("git -C {} diff main {BRANCH}", root.display()));
    Ok(())
}

// ---------------------------------------------------------------------------
// Step 5: serve as a child process
// ---------------------------------------------------------------------------

/// A running `promptgate serve`.
struct ServeChild {
    child: Child,
    /// The write end of serve's stdin: dropping it stops serve.
    stdin: Option<ChildStdin>,
    pid: u32,
    addr: SocketAddr,
    log: PathBuf,
    /// Copies serve's stderr into the log file until serve exits.
    tee: tokio::task::JoinHandle<()>,
}

impl ServeChild {
    async fn start(root: &Path) -> anyhow::Result<ServeChild> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let log = root.join(".promptgate/logs/serve.log");
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut file = tokio::fs::File::create(&log)
            .await
            .with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(exe)
            .args(["serve", "--listen", "127.0.0.1:0", "--stop-on-stdin-eof"])
            .arg("--repo")
            .arg(root)
            .current_dir(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting promptgate serve")?;
        let pid = child.id().unwrap_or(0);
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().context("serve's stderr")?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<String>();
        let tee = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = file.write_all(format!("{line}\n").as_bytes()).await;
                let _ = file.flush().await;
                if let Some(addr) = line
                    .split_once("listening on http://")
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        detail(&format!(
            "$ promptgate serve --listen 127.0.0.1:0   (pid {pid}, stderr to {})",
            log.display()
        ));
        let addr = match tokio::time::timeout(Duration::from_secs(60), ready_rx).await {
            Ok(Ok(a)) => a,
            Ok(Err(_)) => {
                let _ = child.wait().await;
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("serve exited before listening:\n{said}");
            }
            Err(_) => {
                let _ = child.kill().await;
                bail!(
                    "serve did not start listening within 60 s (see {})",
                    log.display()
                );
            }
        };
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("serve's address `{addr}`"))?;
        detail(&format!("serve listening on http://{addr} (pid {pid})"));
        look(&format!(
            "curl -s http://{addr}/status ; curl -s http://{addr}/metrics ; tail -f {}",
            log.display()
        ));
        Ok(ServeChild {
            child,
            stdin,
            pid,
            addr,
            log,
            tee,
        })
    }

    /// Closes serve's stdin (serve drains and flushes, as on SIGTERM) and
    /// waits; kills it if it has not stopped in time.
    async fn stop(mut self) -> String {
        drop(self.stdin.take());
        let how = match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(Ok(status)) => format!("serve (pid {}) stopped ({status})", self.pid),
            Ok(Err(e)) => format!("serve (pid {}): {e}", self.pid),
            Err(_) => {
                let _ = self.child.kill().await;
                format!(
                    "serve (pid {}) did not stop in 20 s and was killed",
                    self.pid
                )
            }
        };
        let _ = self.tee.await;
        how
    }
}

// ---------------------------------------------------------------------------
// Traffic
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Counts {
    stable: AtomicU64,
    canary: AtomicU64,
    failed: AtomicU64,
}

impl Counts {
    fn sent(&self) -> u64 {
        self.stable.load(Ordering::Relaxed)
            + self.canary.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
    }

    fn line(&self) -> String {
        format!(
            "{} requests ({} stable, {} canary, {} failed)",
            self.sent(),
            self.stable.load(Ordering::Relaxed),
            self.canary.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed)
        )
    }
}

/// Simulated application traffic: a few workers sending the prompt for
/// the dataset's countries as varied users, at a modest pace.
struct Traffic {
    counts: Arc<Counts>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

/// What one request through serve said.
struct Served {
    variant: Option<String>,
}

async fn send_one(
    client: &reqwest::Client,
    addr: SocketAddr,
    country: &str,
    user: &str,
) -> anyhow::Result<Served> {
    let resp = client
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(&json!({
            "model": "prompt:capital",
            "variables": {"country": country},
            "user": user,
        }))
        .send()
        .await?;
    let variant = resp
        .headers()
        .get(crate::proxy::call::VARIANT)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let status = resp.status();
    let _ = resp.bytes().await?;
    if !status.is_success() {
        bail!("HTTP {status}");
    }
    Ok(Served { variant })
}

impl Traffic {
    fn start(addr: SocketAddr, root: &Path) -> anyhow::Result<Traffic> {
        let countries: Arc<Vec<String>> =
            Arc::new(read_dataset(root)?.into_iter().map(|r| r.country).collect());
        let client = http_client(Duration::from_secs(130))?;
        let counts = Arc::new(Counts::default());
        let next = Arc::new(AtomicU64::new(0));
        let workers = (0..4)
            .map(|_| {
                let (client, counts, next, countries) = (
                    client.clone(),
                    counts.clone(),
                    next.clone(),
                    countries.clone(),
                );
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let country = &countries[(i % countries.len() as u64) as usize];
                        let user = format!("user-{}", (i * 7) % USERS);
                        let counter = match send_one(&client, addr, country, &user).await {
                            Ok(s) if s.variant.as_deref() == Some("canary") => &counts.canary,
                            Ok(_) => &counts.stable,
                            Err(_) => &counts.failed,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                })
            })
            .collect();
        Ok(Traffic { counts, workers })
    }

    async fn wait_for_requests(&self, n: u64) {
        while self.counts.sent() < n {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(&self) {
        for w in &self.workers {
            w.abort();
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        for w in &self.workers {
            w.abort();
        }
    }
}

// ---------------------------------------------------------------------------
// Step 6-7: canary, rollback, stable again
// ---------------------------------------------------------------------------

/// The rollout.yaml that puts the branch live: 30% of traffic, sticky per
/// user, and an analysis that decides after a few dozen requests.
fn canary_rollout() -> String {
    format!(
        "\
# yaml-language-server: $schema=schema/rollout.schema.json
# Written by `promptgate demo`: the branch {BRANCH} goes live as a canary.
stable: refs/heads/main
canary:
  ref: refs/heads/{BRANCH}
  weight: {CANARY_WEIGHT}            # percent of traffic
  prompts: [capital]
  sticky: user          # same user -> same variant
analysis:
  # Small, so the demo decides in seconds (production: a few hundred).
  min_requests: 30
  interval_s: 1
  checks:
    - metric: online_pass_rate
      max_drop: 0.03
    - metric: error_rate
      max_increase: 0.01
  on_regression: rollback
  on_success: hold
"
    )
}

fn spinner(message: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("      {spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

async fn status(client: &reqwest::Client, addr: SocketAddr) -> anyhow::Result<Value> {
    Ok(client
        .get(format!("http://{addr}/status"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Polls serve's /status until `ready` holds (or 60 s pass).
async fn wait_for_status(
    addr: SocketAddr,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> anyhow::Result<()> {
    let client = http_client(Duration::from_secs(5))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = status(&client, addr).await
            && ready(&s)
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("serve did not reload within 60 s ({what}); see .promptgate/logs/serve.log");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Commits the canary on main and waits until serve has reloaded it.
async fn put_canary_live(root: &Path, addr: SocketAddr) -> anyhow::Result<Oid> {
    let commit = {
        let git = GitRepo::open(root)?;
        commit_file(
            &git,
            MAIN,
            crate::project::ROLLOUT_FILE,
            &canary_rollout(),
            &format!("rollout: canary {BRANCH} at {CANARY_WEIGHT}%"),
        )?
    };
    detail(&format!(
        "committed rollout.yaml on main ({}): canary refs/heads/{BRANCH} at {CANARY_WEIGHT}%, \
         analysis min_requests 30, checks online_pass_rate and error_rate",
        &commit.to_string()[..12]
    ));
    let sha = commit.to_string();
    wait_for_status(addr, "the canary commit", |s| {
        s["control_commit"] == sha.as_str() && !s["canary"].is_null()
    })
    .await?;
    detail("serve reloaded: the canary takes its share of traffic now");
    look(&format!(
        "curl -s http://{addr}/metrics | grep -i canary ; promptgate canary status --repo {}",
        root.display()
    ));
    Ok(commit)
}

/// A rollback commit on main after the canary commit.
struct Rollback {
    commit: Oid,
    subject: String,
    body: String,
}

/// Waits, while traffic flows, until the serve analyzer commits the
/// rollback on main.
async fn wait_for_rollback(
    root: &Path,
    canary: Oid,
    traffic: &Traffic,
    timeout: Duration,
) -> anyhow::Result<Rollback> {
    let plain = !std::io::stderr().is_terminal();
    if plain {
        detail("waiting for serve's analyzer to decide (traffic flowing)...");
    }
    let bar = spinner("waiting for serve's analyzer to decide");
    let started = tokio::time::Instant::now();
    let mut seen = canary;
    let found = loop {
        let git = GitRepo::open(root)?;
        let head = git.resolve(MAIN)?;
        if head != seen {
            // Walk back from main to the last commit seen: the analyzer may
            // also have advanced a step before rolling back.
            let mut hit = None;
            for c in git.commits_since(seen, head)? {
                let msg = c.message;
                if msg.contains("rollback") || msg.contains("roll back") {
                    let (subject, body) = msg.split_once('\n').unwrap_or((&msg, ""));
                    hit = Some(Rollback {
                        commit: c.id,
                        subject: subject.to_string(),
                        body: body.trim().to_string(),
                    });
                    break;
                }
                if msg.contains("promote") {
                    bar.finish_and_clear();
                    bail!(
                        "the analyzer promoted the canary instead of rolling it back: {}",
                        msg.lines().next().unwrap_or_default()
                    );
                }
            }
            seen = head;
            if let Some(r) = hit {
                break r;
            }
        }
        if started.elapsed() > timeout {
            bar.finish_and_clear();
            bail!(
                "no rollback commit within {} s ({}); see .promptgate/logs/serve.log",
                timeout.as_secs(),
                traffic.counts.line()
            );
        }
        bar.set_message(format!(
            "waiting for serve's analyzer to decide: {}",
            traffic.counts.line()
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    bar.finish_and_clear();
    detail(&format!(
        "after {:.1} s and {}, serve's analyzer committed on main:",
        started.elapsed().as_secs_f64(),
        traffic.counts.line()
    ));
    say(&format!(
        "\n      $ git log -1\n      commit {}\n          {}\n",
        found.commit, found.subject
    ));
    for line in found.body.lines() {
        say(format!("          {line}").trim_end());
    }
    say("");
    look(&format!(
        "git -C {} log --oneline -4 ; git -C {} show {} -- rollout.yaml",
        root.display(),
        root.display(),
        &found.commit.to_string()[..12]
    ));
    Ok(found)
}

/// Waits for serve to reload the rollback, then checks that fresh traffic
/// from the same users is all served by stable.
async fn stable_again(root: &Path, addr: SocketAddr, rollback: Rollback) -> anyhow::Result<()> {
    let sha = rollback.commit.to_string();
    wait_for_status(addr, "the rollback commit", |s| {
        s["control_commit"] == sha.as_str() && s["canary"].is_null()
    })
    .await?;
    let countries: Vec<String> = read_dataset(root)?.into_iter().map(|r| r.country).collect();
    let client = http_client(Duration::from_secs(130))?;
    let mut stable = 0;
    let mut other = Vec::new();
    for i in 0..AFTER_ROLLBACK {
        let user = format!("user-{}", (i as u64 * 7) % USERS);
        let served = send_one(&client, addr, &countries[i % countries.len()], &user).await?;
        match served.variant.as_deref() {
            Some("stable") => stable += 1,
            v => other.push(v.unwrap_or("none").to_string()),
        }
    }
    if !other.is_empty() {
        bail!(
            "after the rollback {} of {AFTER_ROLLBACK} requests were not served by stable: {other:?}",
            other.len()
        );
    }
    detail(&format!(
        "serve reloaded the rollback: {stable} of {AFTER_ROLLBACK} new requests (the same users) \
         were served by stable (x-promptgate-variant: stable)"
    ));
    look(&format!("curl -s http://{addr}/status"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(rules: &[mock_llm::Rule], message: &str) -> Option<String> {
        rules.iter().find_map(|r| {
            r.pattern.captures(message).map(|c| {
                let mut s = String::new();
                c.expand(&r.answer, &mut s);
                s
            })
        })
    }

    /// The rules answer the scaffold's prompt with the city and the worse
    /// prompt, for most rows, with answers the suite's online assertions
    /// fail; both rendered from the prompt files the demo uses.
    #[test]
    fn mock_rules_answer_both_prompts_of_the_scaffold_dataset() {
        let rows_text = super::super::init::SCAFFOLD
            .iter()
            .find(|(p, _)| *p == "datasets/capitals/rows.jsonl")
            .map(|(_, t)| *t)
            .unwrap();
        let rows: Vec<Capital> = rows_text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let rules = mock_llm::parse_rules(&mock_rules(&rows)).unwrap();
        let mut failing = 0;
        for r in &rows {
            let good = answer(&rules, &format!("What is the capital of {}?", r.country));
            assert_eq!(good.as_deref(), Some(r.expected.as_str()));
            let worse = answer(
                &rules,
                &format!("Tell me about {}. Which city is its capital?", r.country),
            )
            .unwrap();
            assert!(worse.contains(&r.expected));
            if worse.len() > 60 || worse.contains("I'm sorry") {
                failing += 1;
            }
        }
        assert!(failing * 2 > rows.len(), "{failing} of {}", rows.len());
    }

    #[test]
    fn canary_rollout_is_a_valid_rollout_naming_the_branch() {
        let text = canary_rollout();
        let r: crate::spec::rollout::Rollout =
            crate::spec::SourceFile::new(crate::project::ROLLOUT_FILE, &text)
                .parse(crate::spec::FileKind::Rollout)
                .unwrap();
        let c = r.canary.unwrap();
        assert_eq!(c.git_ref, format!("refs/heads/{BRANCH}"));
        assert_eq!(c.weight, f64::from(CANARY_WEIGHT));
        assert_eq!(r.analysis.min_requests, 30);
    }

    #[test]
    fn worse_prompt_asks_what_the_rules_expect() {
        let p: crate::spec::prompt::Prompt = serde_yaml_ng::from_str(WORSE_PROMPT).unwrap();
        assert_eq!(p.id, "capital");
        assert!(WORSE_PROMPT.contains("Tell me about {{ country }}. Which city is its capital?"));
        assert!(
            super::super::init::SCAFFOLD
                .iter()
                .any(|(p, t)| *p == PROMPT_FILE
                    && t.contains("What is the capital of {{ country }}?"))
        );
    }
}
