//! The steps of the demo, each an existing command or a commit a person
//! would make, reading what the commands report as typed values: `eval
//! --json`, `check --json`, serve's `/status`, and the analyzer's
//! rollback record in it (`analysis.last_applied`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::fixtures::{countries, mock_rules, read_dataset};
use super::http::{client, ollama_models, status, wait_for_status};
use super::output::{detail, look, say, spinner};
use super::repo::{commit_canary, commit_config, message_of, open_prompt_change};
use super::supervise::{Stop, promptgate};
use super::traffic::{Traffic, send_one, user};
use super::{AFTER_ROLLBACK, BRANCH, CANARY_WEIGHT, OLLAMA, SUITE};
use crate::canary::analysis::Action;
use crate::eval::check::Verdict;
use crate::eval::results::Summary;
use crate::logstore::Variant;
use crate::mock_llm::{self, MockConfig, MockServer};
use crate::proxy::status::AnalysisRun;

/// How long serve gets to show a commit it must reload.
const RELOAD_WAIT: Duration = Duration::from_secs(60);

/// Step 1: the scaffold in `dir` (default: a new temporary folder, kept).
pub(super) fn scaffold(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let root = match dir {
        Some(d) => d,
        None => tempfile::Builder::new()
            .prefix("promptgate-demo-")
            .tempdir()
            .context("creating a temporary folder")?
            .keep(),
    };
    let commit = crate::cli::init::scaffold(&root, false)?;
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

/// Step 2: an Ollama when one answers (and has a model), else the built-in
/// mock, started here, with promptgate.yaml pointed at it.
pub(super) async fn pick_model(
    root: &Path,
    force_mock: bool,
) -> anyhow::Result<Option<MockServer>> {
    let config_path = crate::project::CONFIG_FILE;
    let config = std::fs::read_to_string(root.join(config_path))
        .with_context(|| format!("reading {config_path}"))?;
    let models = if force_mock {
        None
    } else {
        ollama_models().await
    };
    if let Some(models) = models {
        if use_ollama(root, &config, &models)? {
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
    start_mock(root, &config).await.map(Some)
}

/// Points promptgate.yaml at the local Ollama's model; false when it has none.
fn use_ollama(root: &Path, config: &str, models: &[String]) -> anyhow::Result<bool> {
    let scaffold_model = "llama3.2:1b";
    if models.iter().any(|m| m == scaffold_model) {
        detail(&format!(
            "using the Ollama at {OLLAMA} (model {scaffold_model}, as promptgate.yaml says)"
        ));
        look(&format!("curl -s http://{OLLAMA}/api/tags"));
        return Ok(true);
    }
    let Some(first) = models.first() else {
        return Ok(false);
    };
    let text = config.replacen(
        &format!("name: {scaffold_model}"),
        &format!("name: {first}"),
        1,
    );
    commit_config(
        root,
        &text,
        &format!("demo: use the local Ollama's model {first}"),
    )?;
    detail(&format!(
        "using the Ollama at {OLLAMA} with its model {first} (committed to promptgate.yaml)"
    ));
    Ok(true)
}

/// The mock-llm with rules for the dataset, and promptgate.yaml's
/// provider pointed at it (committed on main).
async fn start_mock(root: &Path, config: &str) -> anyhow::Result<MockServer> {
    start_mock_with(root, config, &mock_rules(&read_dataset(root)?)).await
}

/// The mock-llm answering by `rules_yaml`, and promptgate.yaml's provider
/// pointed at it (committed on main).
pub(super) async fn start_mock_with(
    root: &Path,
    config: &str,
    rules_yaml: &str,
) -> anyhow::Result<MockServer> {
    let config_path = crate::project::CONFIG_FILE;
    let rules_path = root.join(".promptgate/demo/mock-rules.yaml");
    if let Some(dir) = rules_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::durable::write(&rules_path, rules_yaml.as_bytes())?;
    let mock = MockServer::start(MockConfig {
        rules: mock_llm::parse_rules(rules_yaml)?,
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
    commit_config(
        root,
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
    Ok(mock)
}

/// Step 3: `dataset snapshot`, then `eval --json`.
pub(super) async fn dataset_and_eval(root: &Path, stop: &Stop) -> anyhow::Result<()> {
    let snap = promptgate(root, &["dataset", "snapshot", SUITE], stop).await?;
    if snap.ran()? != 0 {
        bail!(
            "`promptgate dataset snapshot {SUITE}` failed:\n{}",
            snap.stdout
        );
    }
    detail(snap.stdout.trim_end());
    let eval = promptgate(root, &["eval", SUITE, "--json"], stop).await?;
    let code = eval.ran()?;
    let summary: Summary = eval.json()?;
    detail(&crate::cli::eval::cases_line(&summary));
    match &summary.results_file {
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

/// What the demo reads of `check --json`.
#[derive(Deserialize)]
struct CheckView {
    verdict: Verdict,
    suites: Vec<CheckedSuite>,
}

#[derive(Deserialize)]
struct CheckedSuite {
    suite: String,
    base: Option<Summary>,
    head: Summary,
}

/// Step 4: the worse prompt committed on `demo/worse-prompt`, then `check
/// --base main --head BRANCH --json`, the markdown to a file.
pub(super) async fn branch_and_check(root: &Path, stop: &Stop) -> anyhow::Result<()> {
    let commit = open_prompt_change(root)?;
    detail(&format!(
        "committed a changed {} on branch {BRANCH} ({}): chattier instructions",
        super::PROMPT_FILE,
        &commit.to_string()[..12]
    ));
    let (code, report, md) = run_check::<CheckView>(root, BRANCH, "check.md", stop).await?;
    detail(&format!("verdict: {}", verdict_text(&report)));
    if code == 1 {
        detail("check exited 1: the gate failed, this change would be blocked in review");
    } else {
        detail("check exited 0: the gate passed (the canary analysis below still judges it live)");
    }
    detail(&format!("the PR comment (markdown): {}", md.display()));
    look(&format!("git -C {} diff main {BRANCH}", root.display()));
    Ok(())
}

/// `check --base main --head HEAD --json --markdown .promptgate/demo/MD`:
/// its exit code (0 or 1), its JSON typed, and the markdown's path.
pub(super) async fn run_check<T: serde::de::DeserializeOwned>(
    root: &Path,
    head: &str,
    md: &str,
    stop: &Stop,
) -> anyhow::Result<(i32, T, PathBuf)> {
    let md_path = root.join(format!(".promptgate/demo/{md}"));
    let md_arg = md_path.to_string_lossy().into_owned();
    let args = [
        "check",
        "--base",
        "main",
        "--head",
        head,
        "--json",
        "--markdown",
        &md_arg,
    ];
    let run = promptgate(root, &args, stop).await?;
    let code = run.ran()?;
    Ok((code, run.json()?, md_path))
}

fn verdict_text(r: &CheckView) -> String {
    let verdict = match r.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::NoChanges => "no prompt changes",
    };
    let rate = |s: &Summary| format!("{:.1}%", s.pass_rate * 100.0);
    let suites: Vec<String> = r
        .suites
        .iter()
        .map(|s| {
            let base = s.base.as_ref().map_or_else(|| "-".to_string(), rate);
            format!(
                "suite {}: pass rate {base} at main, {} at {BRANCH}",
                s.suite,
                rate(&s.head)
            )
        })
        .collect();
    match suites.is_empty() {
        true => verdict.to_string(),
        false => format!("{verdict} ({})", suites.join("; ")),
    }
}

/// Step 5 (after serve started): traffic until a few requests went through.
pub(super) async fn start_traffic(root: &Path, addr: SocketAddr) -> anyhow::Result<Traffic> {
    let traffic = Traffic::start(addr, countries(root)?)?;
    traffic.wait_for_requests(20).await;
    let counts = &traffic.counts;
    if counts.failed.load(std::sync::atomic::Ordering::Relaxed) == counts.sent() {
        bail!("serve answered none of the first requests; see .promptgate/logs/serve.log");
    }
    detail(&format!(
        "traffic started (4 clients, {} users, the dataset's countries): {}",
        super::USERS,
        counts.line()
    ));
    Ok(traffic)
}

/// Step 6a: commits the canary on main and waits until serve serves it.
pub(super) async fn put_canary_live(root: &Path, addr: SocketAddr) -> anyhow::Result<String> {
    let commit = commit_canary(root)?.to_string();
    detail(&format!(
        "committed rollout.yaml on main ({}): canary refs/heads/{BRANCH} at {CANARY_WEIGHT}%, \
         analysis min_requests 30, checks online_pass_rate and error_rate",
        &commit[..12]
    ));
    wait_for_status(addr, RELOAD_WAIT, "the canary commit", |s| {
        (s.control_commit == commit && s.canary.is_some()).then_some(())
    })
    .await?;
    detail("serve reloaded: the canary takes its share of traffic now");
    look(&format!(
        "curl -s http://{addr}/metrics | grep -i canary ; promptgate canary status --repo {}",
        root.display()
    ));
    Ok(commit)
}

/// The rollback serve's analyzer committed.
pub(super) struct Rollback {
    commit: String,
}

/// The commit of the analyzer's last committing round when it took `want`
/// (a rollback or a promotion); an error when it took the other one.
fn decision_of(run: Option<&AnalysisRun>, want: Action) -> anyhow::Result<Option<String>> {
    let Some(applied) = run.and_then(|r| r.applied.as_ref()) else {
        return Ok(None);
    };
    match (applied.action, &applied.commit) {
        (action, Some(commit)) if action == want => Ok(Some(commit.clone())),
        (action @ (Action::Promote | Action::Rollback), _) if action != want => bail!(
            "the analyzer decided {} instead of {} ({})",
            action.describe(),
            want.describe(),
            applied.method
        ),
        _ => Ok(None),
    }
}

/// Step 6b: waits, while traffic flows, until serve's `/status` shows the
/// analyzer's rollback commit; prints it as `git log -1` would.
pub(super) async fn wait_for_rollback(
    root: &Path,
    addr: SocketAddr,
    traffic: &Traffic,
    timeout: Duration,
) -> anyhow::Result<Rollback> {
    let commit = wait_for_decision(root, addr, traffic, timeout, Action::Rollback).await?;
    Ok(Rollback { commit })
}

/// Waits, while traffic flows, until serve's `/status` shows the
/// analyzer's commit of `want`; prints it as `git log -1` would.
pub(super) async fn wait_for_decision(
    root: &Path,
    addr: SocketAddr,
    traffic: &Traffic,
    timeout: Duration,
    want: Action,
) -> anyhow::Result<String> {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        detail("waiting for serve's analyzer to decide (traffic flowing)...");
    }
    let bar = spinner("waiting for serve's analyzer to decide");
    let started = tokio::time::Instant::now();
    let client = client(Duration::from_secs(5))?;
    let found = loop {
        if let Ok(s) = status(&client, addr).await {
            match decision_of(s.analysis.last_applied.as_ref(), want) {
                Ok(Some(c)) => break c,
                Ok(None) => {}
                Err(e) => {
                    bar.finish_and_clear();
                    return Err(e);
                }
            }
        }
        if started.elapsed() > timeout {
            bar.finish_and_clear();
            bail!(
                "no {} commit within {} s ({}); see .promptgate/logs/serve.log",
                want.describe(),
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
    print_commit(root, &found)?;
    Ok(found)
}

/// `commit` as `git log -1` shows it.
pub(super) fn print_commit(root: &Path, commit: &str) -> anyhow::Result<()> {
    let (subject, body) = message_of(root, commit)?;
    say(&format!(
        "\n      $ git log -1\n      commit {commit}\n          {subject}\n"
    ));
    for line in body.lines() {
        say(format!("          {line}").trim_end());
    }
    say("");
    look(&format!(
        "git -C {root} log --oneline -4 ; git -C {root} show {} -- rollout.yaml",
        &commit[..12],
        root = root.display(),
    ));
    Ok(())
}

/// Step 7: waits for serve to serve the rollback, then checks that fresh
/// traffic from the same users is all served by stable.
pub(super) async fn stable_again(
    root: &Path,
    addr: SocketAddr,
    rollback: Rollback,
) -> anyhow::Result<()> {
    wait_for_status(addr, RELOAD_WAIT, "the rollback commit", |s| {
        (s.control_commit == rollback.commit && s.canary.is_none()).then_some(())
    })
    .await?;
    let countries = countries(root)?;
    let client = client(Duration::from_secs(130))?;
    let mut stable = 0;
    let mut other = Vec::new();
    for i in 0..AFTER_ROLLBACK {
        let country = &countries[i % countries.len()];
        match send_one(&client, addr, country, &user(i as u64)).await? {
            Some(Variant::Stable) => stable += 1,
            v => other.push(v.map_or("none", Variant::as_str)),
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
    use crate::canary::Applied;

    fn run(action: Action, commit: Option<&str>) -> AnalysisRun {
        AnalysisRun {
            at: chrono::Utc::now(),
            control_commit: Some("c".into()),
            rows: 10,
            store_objects_fetched: 0,
            store_objects_reused: 0,
            report: None,
            applied: Some(Applied {
                action,
                commit: commit.map(str::to_string),
                method: "revert of c".into(),
                moved: Vec::new(),
                worktree_updated: false,
                notes: Vec::new(),
            }),
            pushed: Vec::new(),
            notes: Vec::new(),
            error: None,
        }
    }

    fn rollback_of(r: Option<&AnalysisRun>) -> anyhow::Result<Option<String>> {
        decision_of(r, Action::Rollback)
    }

    #[test]
    fn the_rollback_record_is_the_analyzers_committed_rollback() {
        assert!(rollback_of(None).unwrap().is_none());
        let r = rollback_of(Some(&run(Action::Rollback, Some("abc")))).unwrap();
        assert_eq!(r.unwrap(), "abc");
        let step = run(
            Action::AdvanceStep {
                from: 5.0,
                to: 25.0,
            },
            Some("d"),
        );
        assert!(rollback_of(Some(&step)).unwrap().is_none());
        assert!(rollback_of(Some(&run(Action::Promote, Some("e")))).is_err());
        // Waiting for a promotion: the promotion's commit, a rollback an error.
        let p = decision_of(Some(&run(Action::Promote, Some("e"))), Action::Promote).unwrap();
        assert_eq!(p.as_deref(), Some("e"));
        assert!(decision_of(Some(&run(Action::Rollback, Some("f"))), Action::Promote).is_err());
    }
}
