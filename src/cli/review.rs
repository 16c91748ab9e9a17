//! `promptgate review sample|next|list|stats|compact`: the review queue of
//! production calls (`<logging.dir>/review`, or `--queue DIR`).
//!
//! Exit codes: 0 done (also "queue empty"); 1 a decision was refused (an
//! unknown item, a decided item, an item another reviewer holds, a column
//! the dataset does not have); 2 could not run.

use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::Utc;
use serde_json::{Map, Value};

use super::ExitStatus;
use crate::project::{LoadOptions, Project};
use crate::repo::WorkTree;
use crate::review::{
    DEFAULT_LEASE_SECS, ItemView, ReviewError, ReviewQueue, SampleOptions, Strategy, Verdict,
};
use crate::settings::Settings;
use crate::spec::drift::WindowSpec;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Pick calls of a suite's prompt from the request logs into the queue.
    Sample(SampleArgs),
    /// Lease the next item, show the call, and record a decision on it.
    Next(NextArgs),
    /// Every item with its status and decision.
    List(QueueArgs),
    /// Counts by status, decision, reviewer and reason.
    Stats(QueueArgs),
    /// Rewrite the journal with only the current state.
    Compact(QueueArgs),
}

#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// The queue folder (default: `<logging.dir>/review`).
    #[arg(long, value_name = "DIR")]
    pub queue: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    #[command(flatten)]
    pub queue: QueueArgs,
    /// The eval suite whose prompt's calls are sampled (and whose dataset
    /// the reviewed calls grow).
    #[arg(long)]
    pub suite: String,
    #[arg(long, value_enum, default_value = "low_feedback")]
    pub strategy: Strategy,
    /// At most this many new items.
    #[arg(long, default_value_t = 50)]
    pub n: usize,
    /// Calls considered: last:N, last:24h, A..B, commit:SHA, first:N
    /// (drift's window syntax). Default: every call.
    #[arg(long)]
    pub window: Option<WindowSpec>,
    /// low_feedback: the highest latest score that counts as low.
    #[arg(long, default_value_t = 0.5)]
    pub max_score: f64,
    /// Log roots to read (repeatable, one per replica); default `logging.dir`.
    #[arg(long = "logs", value_name = "PATH", num_args = 1..)]
    pub logs: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct NextArgs {
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Who decides (default: $USER).
    #[arg(long, env = "PROMPTGATE_REVIEWER")]
    pub reviewer: Option<String>,
    /// Decide this item instead of the next one.
    #[arg(long, value_name = "REQUEST_ID")]
    pub item: Option<String>,
    /// Only items sampled for this suite.
    #[arg(long)]
    pub suite: Option<String>,
    /// The output is right: it becomes the expected answer.
    #[arg(long, group = "verdict")]
    pub accept: bool,
    /// The output is wrong; this is the expected answer.
    #[arg(long, value_name = "TEXT", group = "verdict")]
    pub expected: Option<String>,
    /// A value of a column the suite's assertions read (COLUMN=VALUE,
    /// repeatable; VALUE is JSON or else text). A correction.
    #[arg(long = "column", value_name = "COLUMN=VALUE")]
    pub columns: Vec<String>,
    /// Label the call (no dataset row).
    #[arg(long, value_name = "LABEL", group = "verdict")]
    pub label: Option<String>,
    /// Not useful (no dataset row).
    #[arg(long, group = "verdict")]
    pub discard: bool,
    /// Lease length in seconds.
    #[arg(long, default_value_t = DEFAULT_LEASE_SECS)]
    pub lease_secs: i64,
}

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    let result = match args.command {
        Command::Sample(a) => sample(a),
        Command::Next(a) => next(a),
        Command::List(a) => list(a),
        Command::Stats(a) => stats(a),
        Command::Compact(a) => compact(a),
    };
    match result {
        Err(err) => match err.downcast_ref::<ReviewError>() {
            Some(e) if e.client_status().is_some() => {
                eprintln!("error: {e}");
                Ok(ExitStatus::Failure)
            }
            _ => Err(err),
        },
        ok => ok,
    }
}

fn open_queue(q: &QueueArgs, logs: Vec<PathBuf>) -> anyhow::Result<(Settings, ReviewQueue)> {
    let settings = Settings::production(q.repo.clone(), logs)?;
    let dir = q
        .queue
        .clone()
        .unwrap_or_else(|| settings.log_dir.join(crate::review::REVIEW_DIR));
    let queue = ReviewQueue::open(&dir)
        .with_context(|| format!("opening the review queue {}", dir.display()))?;
    Ok((settings, queue))
}

fn load_project(settings: &Settings) -> anyhow::Result<Project> {
    Project::load(
        &WorkTree::new(settings.root()),
        &LoadOptions { resolve_ref: None },
    )
    .context("loading the repository")
}

fn sample(a: SampleArgs) -> anyhow::Result<ExitStatus> {
    let (settings, queue) = open_queue(&a.queue, a.logs.clone())?;
    let project = load_project(&settings)?;
    let suite = project.eval(&a.suite)?;
    let roots: Vec<PathBuf> = settings
        .log_roots
        .iter()
        .filter(|r| r.exists())
        .cloned()
        .collect();
    if roots.is_empty() {
        bail!(
            "no request logs under {} (serve writes them; or pass --logs)",
            settings.log_dir.display()
        );
    }
    let opts = SampleOptions {
        suite: a.suite.clone(),
        prompt_id: suite.suite.prompt.clone(),
        logs: roots,
        strategy: a.strategy,
        n: a.n,
        window: a.window.clone(),
        max_score: a.max_score,
        now: Utc::now(),
    };
    let outcome = crate::review::sample(&queue, &opts)?;
    if a.queue.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&outcome)?))?;
    } else {
        super::out(&format!(
            "review sample {} ({}): {} call(s) of `{}` in {} file(s), {} picked, {} already queued, {} queued now in {}\n",
            a.suite,
            a.strategy.as_str(),
            outcome.calls_scanned,
            opts.prompt_id,
            outcome.files,
            outcome.candidates,
            outcome.already_queued,
            outcome.enqueued.len(),
            queue.dir().display()
        ))?;
    }
    Ok(ExitStatus::Success)
}

fn verdict(a: &NextArgs) -> anyhow::Result<Option<Verdict>> {
    let mut columns = Map::new();
    for c in &a.columns {
        let (k, v) = c
            .split_once('=')
            .with_context(|| format!("--column {c}: expected COLUMN=VALUE"))?;
        let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        columns.insert(k.to_string(), v);
    }
    Ok(if a.accept {
        Some(Verdict::Accept)
    } else if a.discard {
        Some(Verdict::Discard)
    } else if let Some(l) = &a.label {
        Some(Verdict::Label { label: l.clone() })
    } else if a.expected.is_some() || !columns.is_empty() {
        Some(Verdict::Correct {
            expected: a.expected.clone(),
            columns,
        })
    } else {
        None
    })
}

/// Refuses correction columns the suite's dataset does not have.
fn check_columns(project: &Project, item: &ItemView, verdict: &Verdict) -> anyhow::Result<()> {
    let Verdict::Correct { columns, .. } = verdict else {
        return Ok(());
    };
    let Some(suite) = item
        .item
        .suite
        .as_deref()
        .and_then(|s| project.evals.get(s))
    else {
        return Ok(());
    };
    let Some(ds) = project.datasets.get(&suite.dataset.name) else {
        return Ok(());
    };
    if let Some(bad) = columns.keys().find(|c| !ds.spec.columns.contains_key(*c)) {
        return Err(ReviewError::Invalid(crate::logstore::FieldError {
            field: "columns",
            message: format!(
                "dataset `{}` has no column `{bad}` (columns: {})",
                ds.name,
                ds.spec
                    .columns
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
        .into());
    }
    Ok(())
}

fn next(a: NextArgs) -> anyhow::Result<ExitStatus> {
    let (settings, queue) = open_queue(&a.queue, Vec::new())?;
    let reviewer = a
        .reviewer
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .context("who reviews? pass --reviewer NAME")?;
    let ttl = chrono::Duration::seconds(a.lease_secs.max(1));
    let verdict = verdict(&a)?;
    let item = match &a.item {
        Some(id) => {
            let lease = queue.lease(id, &reviewer, ttl)?;
            let mut v = queue.get(id)?;
            v.lease = Some(lease);
            v
        }
        None => match queue.lease_next(&reviewer, ttl, a.suite.as_deref())? {
            Some(v) => v,
            None => {
                super::out("review queue: nothing pending\n")?;
                return Ok(ExitStatus::Success);
            }
        },
    };
    let Some(verdict) = verdict else {
        if a.queue.json {
            super::out(&format!("{}\n", serde_json::to_string_pretty(&item)?))?;
        } else {
            super::out(&render_item(&item))?;
            super::out(&format!(
                "\nleased to {reviewer} until {}; decide with `promptgate review next --item {} --accept | --expected TEXT | --column C=V | --label L | --discard`\n",
                item.lease
                    .as_ref()
                    .map(|l| l.expires.to_rfc3339())
                    .unwrap_or_default(),
                item.item.request_id
            ))?;
        }
        return Ok(ExitStatus::Success);
    };
    if let Err(e) = check_columns(&load_project(&settings)?, &item, &verdict) {
        let _ = queue.release(&item.item.request_id, &reviewer);
        return Err(e);
    }
    let decision = queue.decide(&item.item.request_id, &reviewer, verdict)?;
    if a.queue.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&decision)?))?;
    } else {
        super::out(&render_item(&item))?;
        super::out(&format!(
            "\ndecided: {} by {} at {}\n",
            decision.verdict.kind(),
            decision.reviewer,
            decision.ts.to_rfc3339()
        ))?;
    }
    Ok(ExitStatus::Success)
}

/// The call as a person reads it.
fn render_item(v: &ItemView) -> String {
    let i = &v.item;
    let mut s = format!(
        "request {}  ({})\n  prompt {} version {} commit {} variant {}\n  served {}\n  picked because: {}\n",
        i.request_id,
        serde_json::to_string(&v.status)
            .unwrap_or_default()
            .trim_matches('"'),
        i.prompt_id.as_deref().unwrap_or("-"),
        i.prompt_version
            .as_deref()
            .map(|p| &p[..p.len().min(12)])
            .unwrap_or("-"),
        &i.commit[..i.commit.len().min(12)],
        i.variant,
        i.call_ts.to_rfc3339(),
        i.reason
    );
    if let Value::Object(vars) = &i.variables {
        s.push_str("variables:\n");
        for (k, val) in vars {
            s.push_str(&format!("  {k} = {val}\n"));
        }
    }
    if let Value::Array(msgs) = &i.messages {
        s.push_str("messages:\n");
        for m in msgs {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("?");
            let content = m.get("content").map(|c| match c {
                Value::String(t) => t.clone(),
                other => other.to_string(),
            });
            s.push_str(&format!("  [{role}] {}\n", content.unwrap_or_default()));
        }
    }
    s.push_str(&format!("output:\n  {}\n", i.output.replace('\n', "\n  ")));
    for f in &i.feedback {
        s.push_str(&format!(
            "feedback: score {}{}{}{}\n",
            f.score,
            f.label
                .as_deref()
                .map(|l| format!(", label {l}"))
                .unwrap_or_default(),
            f.comment
                .as_deref()
                .map(|l| format!(", \"{l}\""))
                .unwrap_or_default(),
            f.correction
                .as_deref()
                .map(|l| format!(", correction \"{l}\""))
                .unwrap_or_default(),
        ));
    }
    if i.online_scores.as_object().is_some_and(|o| !o.is_empty()) {
        s.push_str(&format!("online scores: {}\n", i.online_scores));
    }
    if let Some(d) = &v.decision {
        s.push_str(&format!(
            "decision: {} by {} at {}\n",
            d.verdict.kind(),
            d.reviewer,
            d.ts.to_rfc3339()
        ));
    }
    s
}

fn list(a: QueueArgs) -> anyhow::Result<ExitStatus> {
    let (_, queue) = open_queue(&a, Vec::new())?;
    let items = queue.list()?;
    if a.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&items)?))?;
        return Ok(ExitStatus::Success);
    }
    let mut s = format!("{} item(s) in {}\n", items.len(), queue.dir().display());
    for v in &items {
        let status = serde_json::to_string(&v.status).unwrap_or_default();
        let who = match (&v.decision, &v.lease) {
            (Some(d), _) => format!("{} by {}", d.verdict.kind(), d.reviewer),
            (None, Some(l)) => format!(
                "held by {} until {}",
                l.reviewer,
                l.expires.format("%H:%M:%S")
            ),
            _ => String::new(),
        };
        s.push_str(&format!(
            "  {:<38} {:<9} {:<14} {:<30} {}\n",
            v.item.request_id,
            status.trim_matches('"'),
            v.item.suite.as_deref().unwrap_or("-"),
            v.item.reason.chars().take(30).collect::<String>(),
            who
        ));
    }
    super::out(&s)?;
    Ok(ExitStatus::Success)
}

fn stats(a: QueueArgs) -> anyhow::Result<ExitStatus> {
    let (_, queue) = open_queue(&a, Vec::new())?;
    let st = queue.stats()?;
    if a.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&st)?))?;
        return Ok(ExitStatus::Success);
    }
    let mut s = format!(
        "{} item(s): {} pending, {} leased, {} decided ({} accepted, {} corrected, {} labelled, {} discarded)\n",
        st.items,
        st.pending,
        st.leased,
        st.decided,
        st.accepted,
        st.corrected,
        st.labelled,
        st.discarded
    );
    for (r, n) in &st.reviewers {
        s.push_str(&format!("  reviewer {r}: {n}\n"));
    }
    for (r, n) in &st.reasons {
        s.push_str(&format!("  picked by {r}: {n}\n"));
    }
    if st.skipped_lines > 0 {
        s.push_str(&format!(
            "  {} torn journal line(s) skipped\n",
            st.skipped_lines
        ));
    }
    super::out(&s)?;
    Ok(ExitStatus::Success)
}

fn compact(a: QueueArgs) -> anyhow::Result<ExitStatus> {
    let (_, queue) = open_queue(&a, Vec::new())?;
    let n = queue.compact()?;
    super::out(&format!(
        "{}: rewritten with {n} line(s)\n",
        queue.journal_path().display()
    ))?;
    Ok(ExitStatus::Success)
}
