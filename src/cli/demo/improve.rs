//! `promptgate demo --improve`: the improvement loop on the built-in
//! mock-llm (a mock, not a model), each step an existing command or the
//! HTTP API a person or an application would use.
//!
//! The mock answers the scaffold's prompt with the largest city instead of
//! the capital for six countries the dataset lacks; simulated users rate
//! every answer (`POST /v1/feedback`, 0 for a wrong capital) -> `review
//! sample --strategy low_feedback` queues the badly rated calls -> a
//! scripted reviewer corrects them through serve's review endpoints ->
//! `dataset grow --from-reviews` commits v2 on a branch -> `eval` on v2
//! shows the new failures -> `check` of that dataset-only branch lists them
//! and warns -> the branch is merged -> a prompt asking for the official
//! capital, on its own branch, passes `check` on v2 -> it goes live as a
//! canary and serve's analyzer promotes it by a commit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::json;

use super::fixtures::read_dataset;
use super::http::{client, wait_for_status};
use super::output::{detail, heading_of, look, say};
use super::repo::commit_file;
use super::supervise::{Stop, promptgate};
use super::traffic::{Feedback, Traffic, names};
use super::{MAIN, PROMPT_FILE, SUITE};
use crate::canary::analysis::Action;
use crate::eval::check::Verdict;
use crate::eval::results::Summary;
use crate::repo::GitRepo;

/// Steps of `--improve`.
pub(super) const STEPS: u32 = 9;
/// The prompt fix's branch.
pub(super) const FIX_BRANCH: &str = "demo/capital-fix";
/// The dataset branch `dataset grow` makes.
pub(super) const DATASET_BRANCH: &str = "dataset/capitals-v2";
/// Who decides in the queue: a script, and it says so.
pub(super) const REVIEWER: &str = "demo-script";
/// Requests (with feedback) before the review queue is sampled.
const FIRST_TRAFFIC: u64 = 72;
/// Canary share of traffic while the fix is judged live.
const CANARY_WEIGHT: u32 = 50;
const RELOAD_WAIT: Duration = Duration::from_secs(60);

/// Countries the scaffold's dataset lacks: (country, capital, the largest
/// city the mock wrongly answers with for the scaffold's prompt).
pub(super) const NEW_COUNTRIES: &[(&str, &str, &str)] = &[
    ("Australia", "Canberra", "Sydney"),
    ("Brazil", "Brasilia", "Rio de Janeiro"),
    ("Canada", "Ottawa", "Toronto"),
    ("Nigeria", "Abuja", "Lagos"),
    ("Switzerland", "Bern", "Zurich"),
    ("Turkey", "Ankara", "Istanbul"),
];

/// The fix: ask for the official capital (the seat of government).
pub(super) const OLD_QUESTION: &str = "What is the capital of {{ country }}?";
pub(super) const FIXED_QUESTION: &str =
    "What is the official capital city (the seat of government) of {{ country }}?";

/// Every country the users ask about and its capital.
fn capitals(root: &Path) -> anyhow::Result<Vec<(String, String)>> {
    Ok(read_dataset(root)?
        .into_iter()
        .map(|r| (r.country, r.expected))
        .chain(
            NEW_COUNTRIES
                .iter()
                .map(|(c, cap, _)| (c.to_string(), cap.to_string())),
        )
        .collect())
}

/// Mock rules: the fixed question gets the capital for every country; the
/// scaffold's question gets the largest city for the new countries and the
/// capital for the dataset's.
pub(super) fn improve_rules(capitals: &[(String, String)]) -> String {
    let mut rules = Vec::new();
    for (country, capital) in capitals {
        rules.push(json!({
            "pattern": format!("official capital city \\(the seat of government\\) of {}\\?", regex::escape(country)),
            "answer": capital,
        }));
    }
    for (country, _, wrong) in NEW_COUNTRIES {
        rules.push(json!({
            "pattern": format!("capital of {}\\?", regex::escape(country)),
            "answer": wrong,
        }));
    }
    for (country, capital) in capitals {
        rules.push(json!({
            "pattern": format!("capital of {}\\?", regex::escape(country)),
            "answer": capital,
        }));
    }
    let mut out = String::from(
        "# Written by `promptgate demo --improve` (a mock, not a real model): the scaffold's\n\
         # question gets the largest city for six countries; the fixed question the capital.\n",
    );
    out.push_str(&serde_yaml_ng::to_string(&rules).unwrap_or_default());
    out
}

/// The rollout putting the fix live: half the traffic, judged on feedback.
pub(super) fn fix_rollout() -> String {
    format!(
        "\
# yaml-language-server: $schema=schema/rollout.schema.json
# Written by `promptgate demo --improve`: the prompt fix {FIX_BRANCH} goes live as a canary.
stable: refs/heads/main
canary:
  ref: refs/heads/{FIX_BRANCH}
  weight: {CANARY_WEIGHT}            # percent of traffic
  prompts: [capital]
  sticky: user
analysis:
  # Small, so the demo decides in seconds (production: a few hundred).
  min_requests: 30
  interval_s: 1
  checks:
    - metric: feedback_score
      max_drop: 0.05
  on_regression: rollback
  on_success: promote
"
    )
}

/// What the demo reads of `check --json` for the dataset and the fix.
#[derive(Deserialize)]
struct CheckView {
    verdict: Verdict,
    suites: Vec<SuiteView>,
}

#[derive(Deserialize)]
struct SuiteView {
    base: Option<Summary>,
    head: Summary,
    #[serde(default)]
    dataset_change: Option<DatasetChangeView>,
    #[serde(default)]
    fixed: Vec<KeyView>,
}

#[derive(Deserialize)]
struct KeyView {
    key: String,
}

#[derive(Deserialize)]
struct DatasetChangeView {
    from: String,
    to: String,
    rows_added: usize,
    new_failures: Vec<NewFailureView>,
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct NewFailureView {
    key: String,
    expected: serde_json::Map<String, serde_json::Value>,
    output: String,
}

#[derive(Deserialize)]
struct SampleView {
    calls_scanned: u64,
    candidates: usize,
    enqueued: Vec<String>,
}

/// What the reviewer reads of `POST /v1/review/next`.
#[derive(Deserialize)]
struct NextView {
    item: ItemView,
}

#[derive(Deserialize)]
struct ItemView {
    request_id: String,
    variables: serde_json::Value,
    output: String,
}

#[derive(Deserialize)]
struct GrowView {
    to_version: Option<u32>,
    branch: Option<String>,
    commit: Option<String>,
    added: Vec<serde_json::Value>,
    duplicates: Vec<serde_json::Value>,
}

/// What `--improve` ran, for the test and the last lines.
pub(super) struct Improved {
    pub(super) promotion: String,
}

pub(super) fn head(n: u32, title: &str) {
    heading_of(n, STEPS, title);
}

/// Step 2 of `--improve`: the mock with the loop's rules.
pub(super) async fn start_mock(root: &Path) -> anyhow::Result<crate::mock_llm::MockServer> {
    say("      --improve: using the built-in mock-llm (a mock, not a real model)");
    let config = std::fs::read_to_string(root.join(crate::project::CONFIG_FILE))
        .context("reading promptgate.yaml")?;
    let mock =
        super::steps::start_mock_with(root, &config, &improve_rules(&capitals(root)?)).await?;
    detail(&format!(
        "its rules answer `{OLD_QUESTION}` with the largest city, not the capital, for {}",
        NEW_COUNTRIES
            .iter()
            .map(|(c, _, _)| *c)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(mock)
}

fn feedback(root: &Path) -> anyhow::Result<Feedback> {
    Ok(Arc::new(
        capitals(root)?.into_iter().collect::<HashMap<_, _>>(),
    ))
}

fn countries(root: &Path) -> anyhow::Result<Vec<String>> {
    Ok(capitals(root)?.into_iter().map(|(c, _)| c).collect())
}

/// Users asking about every country and rating each answer, quickly (the
/// mock answers at once).
fn rating_traffic(root: &Path, addr: SocketAddr) -> anyhow::Result<Traffic> {
    Traffic::start_with(
        addr,
        countries(root)?,
        Some(feedback(root)?),
        Duration::from_millis(5),
    )
}

/// Step 3 (after serve started): traffic with feedback until
/// [`FIRST_TRAFFIC`] requests were rated, and their rows are on disk.
pub(super) async fn traffic_with_feedback(root: &Path, addr: SocketAddr) -> anyhow::Result<()> {
    let traffic = rating_traffic(root, addr)?;
    traffic.wait_for_requests(FIRST_TRAFFIC).await;
    traffic.stop();
    let sent = traffic.counts.sent();
    detail(&format!(
        "simulated users (4 clients, {} countries) asked serve and rated each answer with POST /v1/feedback: {}",
        countries(root)?.len(),
        traffic.counts.line()
    ));
    // `review sample` reads the Parquet logs: wait for the flush.
    let failed = traffic
        .counts
        .failed
        .load(std::sync::atomic::Ordering::Relaxed);
    wait_for_status(addr, RELOAD_WAIT, "the request rows on disk", |s| {
        (s.log.rows_written + failed >= sent && s.log.buffered_rows == 0).then_some(())
    })
    .await?;
    look(&format!(
        "ls {root}/.promptgate/logs/requests ; promptgate logs query --repo {root} \"SELECT output, count(*) FROM requests GROUP BY output\"",
        root = root.display()
    ));
    Ok(())
}

/// Step 4: `review sample --strategy low_feedback`.
pub(super) async fn sample(root: &Path, stop: &Stop) -> anyhow::Result<()> {
    let args = [
        "review",
        "sample",
        "--suite",
        SUITE,
        "--strategy",
        "low_feedback",
        "--n",
        "50",
        "--json",
    ];
    let run = promptgate(root, &args, stop).await?;
    if run.ran()? != 0 {
        bail!("`promptgate review sample` failed:\n{}", run.stdout);
    }
    let outcome: SampleView = run.json()?;
    detail(&format!(
        "{} call(s) of prompt `capital` scanned, {} rated 0.5 or lower, {} queued",
        outcome.calls_scanned,
        outcome.candidates,
        outcome.enqueued.len()
    ));
    if outcome.enqueued.is_empty() {
        bail!("no call was queued: the simulated users rated no answer low");
    }
    look(&format!(
        "promptgate review list --repo {} ; {}/.promptgate/logs/review/journal.jsonl",
        root.display(),
        root.display()
    ));
    Ok(())
}

/// Step 5: the scripted reviewer takes each queued call through serve's
/// endpoints and corrects the capital (or accepts a right answer).
pub(super) async fn review(root: &Path, addr: SocketAddr) -> anyhow::Result<()> {
    say(&format!(
        "      scripted reviews (the script `{REVIEWER}` plays the person; it knows every capital):"
    ));
    let capitals: HashMap<String, String> = capitals(root)?.into_iter().collect();
    let http = client(Duration::from_secs(30))?;
    let (mut corrected, mut accepted) = (0, 0);
    loop {
        let resp = http
            .post(format!("http://{addr}/v1/review/next"))
            .json(&json!({"reviewer": REVIEWER, "suite": SUITE}))
            .send()
            .await?;
        if resp.status() == reqwest::StatusCode::NO_CONTENT {
            break;
        }
        if !resp.status().is_success() {
            bail!(
                "POST /v1/review/next: HTTP {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        let view: NextView = resp.json().await?;
        let item = &view.item;
        let country = item
            .variables
            .get("country")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let Some(capital) = capitals.get(country) else {
            bail!(
                "review item {}: unknown country `{country}`",
                item.request_id
            );
        };
        let body = if names(&item.output, capital) {
            accepted += 1;
            json!({"reviewer": REVIEWER, "kind": "accept"})
        } else {
            corrected += 1;
            json!({"reviewer": REVIEWER, "kind": "correct", "expected": capital})
        };
        let resp = http
            .post(format!(
                "http://{addr}/v1/review/items/{}/decision",
                item.request_id
            ))
            .json(&body)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "POST /v1/review/items/{}/decision: HTTP {}: {}",
                item.request_id,
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        if corrected + accepted <= 6 {
            detail(&format!(
                "  {}: {country}: answered {:?}, {}",
                &item.request_id,
                item.output,
                if body["kind"] == "accept" {
                    "accepted".to_string()
                } else {
                    format!("corrected to {capital:?}")
                }
            ));
        }
    }
    detail(&format!(
        "{corrected} corrected, {accepted} accepted, through POST /v1/review/next and POST /v1/review/items/ID/decision"
    ));
    look(&format!(
        "curl -s http://{addr}/v1/review/stats ; promptgate review list --repo {}",
        root.display()
    ));
    Ok(())
}

/// Step 6: `dataset grow --from-reviews`, then `eval` on v2 at the branch.
pub(super) async fn grow_and_eval(root: &Path, stop: &Stop) -> anyhow::Result<()> {
    let run = promptgate(
        root,
        &["dataset", "grow", SUITE, "--from-reviews", "--json"],
        stop,
    )
    .await?;
    if run.ran()? != 0 {
        bail!("`promptgate dataset grow` failed:\n{}", run.stdout);
    }
    let grown: GrowView = run.json()?;
    let branch = grown.branch.unwrap_or_default();
    if branch != DATASET_BRANCH {
        bail!("dataset grow made branch `{branch}`, expected {DATASET_BRANCH}");
    }
    detail(&format!(
        "v{} on branch {branch} (commit {}): {} reviewed row(s) added, {} duplicate call(s) skipped",
        grown.to_version.unwrap_or_default(),
        grown
            .commit
            .as_deref()
            .map_or("?", |c| &c[..c.len().min(12)]),
        grown.added.len(),
        grown.duplicates.len()
    ));
    let eval = promptgate(
        root,
        &["eval", SUITE, "--ref", DATASET_BRANCH, "--json"],
        stop,
    )
    .await?;
    eval.ran()?;
    let summary: Summary = eval.json()?;
    detail(&format!(
        "eval on {}: {} (the reviewed rows are the failures)",
        summary.dataset,
        crate::cli::eval::cases_line(&summary)
    ));
    look(&format!(
        "git -C {root} show --stat {DATASET_BRANCH} ; git -C {root} diff main {DATASET_BRANCH} -- datasets/{SUITE}/rows.jsonl",
        root = root.display()
    ));
    Ok(())
}

/// `check` of `head` against main, saying where its markdown is.
async fn check(root: &Path, head: &str, md: &str, stop: &Stop) -> anyhow::Result<(i32, CheckView)> {
    let (code, view, md_path) = super::steps::run_check(root, head, md, stop).await?;
    detail(&format!(
        "check exited {code}; the PR comment (markdown): {}",
        md_path.display()
    ));
    Ok((code, view))
}

/// Step 7: `check` of the dataset branch (dataset only: new failures
/// listed, the pass-rate gate warns), then the branch merged into main.
pub(super) async fn check_dataset(root: &Path, stop: &Stop) -> anyhow::Result<()> {
    let (code, view) = check(root, DATASET_BRANCH, "check-dataset.md", stop).await?;
    let Some(dc) = view.suites.first().and_then(|s| s.dataset_change.as_ref()) else {
        bail!("check did not see a dataset-only change on {DATASET_BRANCH}");
    };
    detail(&format!(
        "dataset only: {} -> {} ({} rows added); the unchanged prompt fails {} of them:",
        dc.from,
        dc.to,
        dc.rows_added,
        dc.new_failures.len()
    ));
    for f in &dc.new_failures {
        let expected: Vec<String> = f
            .expected
            .iter()
            .map(|(k, v)| format!("{k} {}", v.as_str().map_or(v.to_string(), str::to_string)))
            .collect();
        detail(&format!(
            "  row {}: {}, output {:?}",
            f.key,
            expected.join(", "),
            f.output
        ));
    }
    for w in &dc.warnings {
        detail(&format!("warning (not blocking): {w}"));
    }
    if code != 0 || view.verdict != Verdict::Pass {
        bail!("check of the dataset-only branch blocked (exit {code})");
    }
    // Merged as a reviewer would after reading the comment.
    let git = GitRepo::open(root)?;
    let to = git.resolve(&format!("refs/heads/{DATASET_BRANCH}"))?;
    git.fast_forward(MAIN, to)
        .with_context(|| format!("merging {DATASET_BRANCH} into main"))?;
    detail(&format!(
        "merged {DATASET_BRANCH} into main (fast-forward to {}): the suite now pins v2",
        &to.to_string()[..12]
    ));
    look(&format!(
        "cat {}/.promptgate/demo/check-dataset.md ; promptgate dataset diff {SUITE} v1 v2 --repo {}",
        root.display(),
        root.display()
    ));
    Ok(())
}

/// Step 8: the prompt fix on its branch, checked on v2.
pub(super) async fn fix_and_check(root: &Path, stop: &Stop) -> anyhow::Result<()> {
    let git = GitRepo::open(root)?;
    let main = git.resolve(MAIN)?;
    let branch = format!("refs/heads/{FIX_BRANCH}");
    git.create_branch(&branch, main, "demo: open the prompt fix")
        .with_context(|| format!("creating {branch}"))?;
    let text = std::fs::read_to_string(root.join(PROMPT_FILE))
        .with_context(|| format!("reading {PROMPT_FILE}"))?;
    let fixed = text.replacen(OLD_QUESTION, FIXED_QUESTION, 1);
    if fixed == text {
        bail!("{PROMPT_FILE}: no `{OLD_QUESTION}` to fix");
    }
    let commit = commit_file(
        root,
        &branch,
        PROMPT_FILE,
        &fixed,
        "capital: ask for the official capital (the seat of government)",
    )?;
    detail(&format!(
        "committed the fix on {FIX_BRANCH} ({}): `{FIXED_QUESTION}`",
        &commit.to_string()[..12]
    ));
    let (code, view) = check(root, FIX_BRANCH, "check-fix.md", stop).await?;
    let Some(s) = view.suites.first() else {
        bail!("check of {FIX_BRANCH} evaluated no suite");
    };
    let rate = |s: &Summary| format!("{:.1}% on {}", s.pass_rate * 100.0, s.dataset);
    detail(&format!(
        "pass rate {} at main -> {} at {FIX_BRANCH}; fixed rows: {}",
        s.base.as_ref().map_or_else(|| "-".to_string(), rate),
        rate(&s.head),
        s.fixed
            .iter()
            .map(|k| k.key.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if code != 0 || view.verdict != Verdict::Pass {
        bail!("check of the prompt fix failed (exit {code})");
    }
    look(&format!("git -C {} diff main {FIX_BRANCH}", root.display()));
    Ok(())
}

/// Step 9: the fix live as a canary with traffic and feedback, until
/// serve's analyzer commits the promotion.
pub(super) async fn canary_until_promoted(
    root: &Path,
    addr: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<Improved> {
    let commit = commit_file(
        root,
        MAIN,
        crate::project::ROLLOUT_FILE,
        &fix_rollout(),
        &format!("rollout: canary {FIX_BRANCH} at {CANARY_WEIGHT}%"),
    )?
    .to_string();
    detail(&format!(
        "committed rollout.yaml on main ({}): canary refs/heads/{FIX_BRANCH} at {CANARY_WEIGHT}%, \
         check feedback_score (max drop 0.05), on_success: promote",
        &commit[..12]
    ));
    wait_for_status(addr, RELOAD_WAIT, "the canary commit", |s| {
        (s.control_commit == commit && s.canary.is_some()).then_some(())
    })
    .await?;
    let traffic = rating_traffic(root, addr)?;
    let promotion =
        super::steps::wait_for_decision(root, addr, &traffic, timeout, Action::Promote).await?;
    traffic.stop();
    Ok(Improved { promotion })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::tests::answer;
    use super::*;
    use crate::mock_llm;

    /// The scaffold's question gets the largest city for the new countries
    /// only; the fixed question gets every capital. Both rendered from the
    /// questions the demo writes into the prompt.
    #[test]
    fn rules_answer_the_old_question_wrong_only_for_the_new_countries() {
        let mut capitals: Vec<(String, String)> = vec![("France".into(), "Paris".into())];
        capitals.extend(
            NEW_COUNTRIES
                .iter()
                .map(|(c, cap, _)| (c.to_string(), cap.to_string())),
        );
        let rules = mock_llm::parse_rules(&improve_rules(&capitals)).unwrap();
        let ask =
            |q: &str, country: &str| answer(&rules, &q.replace("{{ country }}", country)).unwrap();
        assert_eq!(ask(OLD_QUESTION, "France"), "Paris");
        assert_eq!(ask(FIXED_QUESTION, "France"), "Paris");
        for (country, capital, wrong) in NEW_COUNTRIES {
            assert_eq!(ask(OLD_QUESTION, country), *wrong);
            assert!(!names(wrong, capital));
            assert_eq!(ask(FIXED_QUESTION, country), *capital);
        }
        assert!(
            crate::cli::init::SCAFFOLD
                .iter()
                .any(|(p, t)| *p == PROMPT_FILE && t.contains(OLD_QUESTION))
        );
    }

    #[test]
    fn the_fix_rollout_promotes_on_feedback() {
        let r: crate::spec::rollout::Rollout =
            crate::spec::SourceFile::new(crate::project::ROLLOUT_FILE, fix_rollout())
                .parse(crate::spec::FileKind::Rollout)
                .unwrap();
        let c = r.canary.unwrap();
        assert_eq!(c.git_ref, format!("refs/heads/{FIX_BRANCH}"));
        assert_eq!(
            r.analysis.on_success,
            crate::spec::rollout::OnSuccess::Promote
        );
    }
}
