//! `promptgate dataset snapshot|list|diff`: Parquet snapshots of
//! `datasets/<name>/rows.jsonl`, their versions, and row diffs.
//!
//! Exit codes: 0 success (including "no change, no new version"); 1 invalid
//! data: a bad line in `rows.jsonl` (every one reported as
//! `datasets/<name>/rows.jsonl:LINE: column `C`: reason`, nothing written)
//! or a changed, missing or unrecorded snapshot file; 2 could not run
//! (unknown dataset, unreadable files, bad arguments).

use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

use super::ExitStatus;
use crate::dataset::grow::{GrowError, GrowOptions, ReviewedCall};
use crate::dataset::{self, DatasetError, RowsStatus, SnapshotOutcome};
use crate::repo::WorkTree;
use crate::review::{ReviewQueue, Verdict};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate rows.jsonl and write the next immutable Parquet snapshot.
    Snapshot(Common),
    /// List a dataset's versions and whether rows.jsonl has unsnapshotted changes.
    List(Common),
    /// Rows added, removed and changed between two versions (by key column).
    Diff(DiffArgs),
    /// Reviewed production calls -> rows with provenance -> snapshot v(n+1),
    /// committed on a new branch (a pull request like any other change).
    Grow(GrowArgs),
}

#[derive(Debug, clap::Args)]
pub struct GrowArgs {
    #[command(flatten)]
    pub common: Common,
    /// Take the rows from the review queue's decisions (the only source).
    #[arg(long, required = true)]
    pub from_reviews: bool,
    /// Review queue folders (repeatable, e.g. one per replica); default
    /// `<logging.dir>/review`.
    #[arg(long = "queue", value_name = "DIR")]
    pub queues: Vec<PathBuf>,
    /// The branch to create (default `dataset/NAME-vN`).
    #[arg(long)]
    pub branch: Option<String>,
    /// The ref the branch starts from.
    #[arg(long, default_value = "HEAD")]
    pub base: String,
    /// Commit the other rows when some reviews conflict.
    #[arg(long)]
    pub skip_conflicts: bool,
    /// Push the branch to `origin`.
    #[arg(long)]
    pub push: bool,
    /// Open a pull request with `gh` (implies --push).
    #[arg(long)]
    pub open_pr: bool,
}

#[derive(Debug, clap::Args)]
pub struct Common {
    /// Dataset name (the folder under datasets/).
    pub name: String,
    /// Repository folder (default: the one containing the current folder).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub common: Common,
    /// Old version (v1 or 1).
    pub from: String,
    /// New version (v2 or 2).
    pub to: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    let result = match args.command {
        Command::Snapshot(c) => snapshot(c),
        Command::List(c) => list(c),
        Command::Diff(d) => diff(d),
        Command::Grow(g) => grow(g),
    };
    match result {
        Ok(status) => Ok(status),
        Err(err) => match err.downcast_ref::<DatasetError>() {
            Some(e) if e.is_invalid_data() => {
                eprintln!("error: {e}");
                Ok(ExitStatus::Failure)
            }
            _ => match err.downcast_ref::<GrowError>() {
                Some(e) if e.is_invalid_data() => {
                    eprintln!("error: {e}");
                    Ok(ExitStatus::Failure)
                }
                _ => Err(err),
            },
        },
    }
}

fn snapshot(c: Common) -> anyhow::Result<ExitStatus> {
    let root = super::repo_root(c.repo.as_deref())?;
    let outcome = dataset::snapshot(&root, &c.name)?;
    if c.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&outcome)?))?;
        return Ok(ExitStatus::Success);
    }
    let text = match &outcome {
        SnapshotOutcome::Created(v) => format!(
            "{}@v{}: {} rows, content {}, written to datasets/{}/{} and recorded in dataset.lock\n",
            c.name,
            v.version,
            v.rows,
            &v.content_sha256[..12],
            c.name,
            v.file
        ),
        SnapshotOutcome::Unchanged(v) => format!(
            "{}: rows.jsonl has the same content as v{} ({} rows); no new version\n",
            c.name, v.version, v.rows
        ),
    };
    super::out(&text)?;
    Ok(ExitStatus::Success)
}

fn list(c: Common) -> anyhow::Result<ExitStatus> {
    let root = super::repo_root(c.repo.as_deref())?;
    let status = dataset::status(&WorkTree::new(&root), &c.name)?;
    if c.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&status)?))?;
        return Ok(ExitStatus::Success);
    }
    let mut text = format!("{} (key: {})\n", status.name, status.key);
    if status.versions.is_empty() {
        text.push_str("  no snapshots yet\n");
    }
    for v in &status.versions {
        text.push_str(&format!(
            "  v{:<3} {:>7} rows  content {}  {}  {}{}\n",
            v.locked.version,
            v.locked.rows,
            &v.locked.content_sha256[..12],
            v.locked.created,
            v.locked.file,
            if v.intact { "" } else { "  CHANGED OR MISSING" }
        ));
    }
    for p in &status.problems {
        if matches!(p, dataset::IntegrityProblem::Unrecorded { .. }) {
            text.push_str(&format!("  warning: {p}\n"));
        }
    }
    text.push_str(&match status.rows_jsonl {
        RowsStatus::Missing => "rows.jsonl: missing\n".to_string(),
        RowsStatus::Invalid { errors } => format!(
            "rows.jsonl: {errors} invalid line(s); `promptgate dataset snapshot {}` lists them\n",
            c.name
        ),
        RowsStatus::Snapshotted { version } => {
            format!("rows.jsonl: no changes since v{version}\n")
        }
        RowsStatus::Changed { latest } => format!(
            "rows.jsonl: changes not yet snapshotted{}; run `promptgate dataset snapshot {}`\n",
            latest.map(|v| format!(" (since v{v})")).unwrap_or_default(),
            c.name
        ),
    });
    super::out(&text)?;
    Ok(ExitStatus::Success)
}

fn parse_version(s: &str) -> anyhow::Result<u32> {
    s.strip_prefix('v')
        .unwrap_or(s)
        .parse::<u32>()
        .ok()
        .filter(|v| *v > 0)
        .with_context(|| format!("`{s}` is not a version (v1, v2, ...)"))
}

fn diff(d: DiffArgs) -> anyhow::Result<ExitStatus> {
    let from = parse_version(&d.from)?;
    let to = parse_version(&d.to)?;
    let c = d.common;
    let root = super::repo_root(c.repo.as_deref())?;
    let diff = dataset::diff_versions(&WorkTree::new(&root), &c.name, from, to)?;
    if c.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&diff)?))?;
        return Ok(ExitStatus::Success);
    }
    let key_text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    let mut text = format!(
        "{} v{} -> v{}: {} added, {} removed, {} changed, {} unchanged\n",
        diff.name,
        diff.from,
        diff.to,
        diff.added.len(),
        diff.removed.len(),
        diff.changed.len(),
        diff.unchanged
    );
    for r in &diff.added {
        text.push_str(&format!(
            "+ {}  {}\n",
            key_text(r.get(&diff.key)),
            dataset::canonical_json(&Value::Object(r.clone()))
        ));
    }
    for r in &diff.removed {
        text.push_str(&format!(
            "- {}  {}\n",
            key_text(r.get(&diff.key)),
            dataset::canonical_json(&Value::Object(r.clone()))
        ));
    }
    for ch in &diff.changed {
        text.push_str(&format!("~ {}\n", key_text(Some(&ch.key))));
        for (col, change) in &ch.columns {
            text.push_str(&format!("    {col}: {} -> {}\n", change.old, change.new));
        }
    }
    super::out(&text)?;
    Ok(ExitStatus::Success)
}

/// The decided calls (accepted or corrected) of every queue.
fn reviewed_calls(queues: &[PathBuf]) -> anyhow::Result<(Vec<ReviewedCall>, usize)> {
    let mut calls = Vec::new();
    let mut other = 0;
    for dir in queues {
        let queue = ReviewQueue::open(dir)
            .with_context(|| format!("opening the review queue {}", dir.display()))?;
        for v in queue.list()? {
            let Some(d) = v.decision else { continue };
            let (expected, columns) = match d.verdict {
                Verdict::Accept => (None, serde_json::Map::new()),
                Verdict::Correct { expected, columns } => (expected, columns),
                Verdict::Label { .. } | Verdict::Discard => {
                    other += 1;
                    continue;
                }
            };
            let i = v.item;
            calls.push(ReviewedCall {
                request_id: i.request_id,
                suite: i.suite,
                prompt_id: i.prompt_id,
                prompt_version: i.prompt_version,
                variables: match i.variables {
                    Value::Object(m) => m,
                    _ => serde_json::Map::new(),
                },
                output: i.output,
                reviewer: d.reviewer,
                decided_at: d.ts,
                expected,
                columns,
                origin: dir.display().to_string(),
            });
        }
    }
    Ok((calls, other))
}

fn grow(g: GrowArgs) -> anyhow::Result<ExitStatus> {
    let c = &g.common;
    let settings = crate::settings::Settings::production(c.repo.clone(), Vec::new())?;
    let queues = if g.queues.is_empty() {
        vec![settings.log_dir.join(crate::review::REVIEW_DIR)]
    } else {
        g.queues.clone()
    };
    let (calls, labelled) = reviewed_calls(&queues)?;
    let git = crate::repo::GitRepo::open(settings.root())?;
    let mut report = dataset::grow::grow(
        &git,
        &calls,
        &GrowOptions {
            name: c.name.clone(),
            base: g.base.clone(),
            branch: g.branch.clone(),
            skip_conflicts: g.skip_conflicts,
        },
    )?;
    report.ignored += labelled;
    let branch = report.branch.clone().unwrap_or_default();
    let mut notes = Vec::new();
    if g.push || g.open_pr {
        git.push(
            "origin",
            &[format!("refs/heads/{branch}:refs/heads/{branch}")],
        )
        .with_context(|| format!("pushing {branch} to origin"))?;
        notes.push(format!("pushed {branch} to origin"));
    }
    if g.open_pr {
        notes.push(open_pr(&branch, &report)?);
    }
    if c.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
        return Ok(ExitStatus::Success);
    }
    let mut text = format!(
        "{}: v{} -> v{} with {} reviewed row(s) on branch {} (commit {})\n",
        report.name,
        report.from_version,
        report.to_version.unwrap_or_default(),
        report.added.len(),
        branch,
        report
            .commit
            .as_deref()
            .map_or("", |c| &c[..c.len().min(12)])
    );
    for r in &report.added {
        text.push_str(&format!(
            "  + {}  {} by {} (request {}, suite {})\n",
            r.key, r.kind, r.reviewer, r.request_id, r.suite
        ));
    }
    for (id, why) in &report.duplicates {
        text.push_str(&format!("  = {id}: skipped, {why}\n"));
    }
    for cf in &report.conflicts {
        text.push_str(&format!(
            "  ! {}: conflict left out: {} ({})\n",
            cf.key,
            cf.message,
            cf.sources.join(" vs ")
        ));
    }
    if report.provenance_declared {
        text.push_str("  dataset.yaml: provenance columns declared (source_request_id, source_prompt_version, reviewer, reviewed_at)\n");
    }
    if !report.suites_moved.is_empty() {
        text.push_str(&format!(
            "  suites moved to v{}: {}\n",
            report.to_version.unwrap_or_default(),
            report.suites_moved.join(", ")
        ));
    }
    if report.ignored > 0 {
        text.push_str(&format!(
            "  {} decided item(s) not for this dataset or labelled/discarded\n",
            report.ignored
        ));
    }
    for n in notes {
        text.push_str(&format!("  {n}\n"));
    }
    text.push_str(&format!(
        "next: `git switch {branch}` and `promptgate check --base HEAD~1 --head HEAD` shows which new rows the current prompt fails\n"
    ));
    super::out(&text)?;
    Ok(ExitStatus::Success)
}

/// Opens the pull request with `gh` when it is installed; says so when not.
fn open_pr(branch: &str, report: &dataset::grow::GrowReport) -> anyhow::Result<String> {
    let title = format!(
        "dataset {}: v{} from {} reviewed call(s)",
        report.name,
        report.to_version.unwrap_or_default(),
        report.added.len()
    );
    let body = report
        .added
        .iter()
        .map(|r| {
            format!(
                "- `{}`: request `{}`, {} by {}",
                r.key, r.request_id, r.kind, r.reviewer
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    match std::process::Command::new("gh")
        .args([
            "pr", "create", "--head", branch, "--title", &title, "--body", &body,
        ])
        .output()
    {
        Ok(o) if o.status.success() => Ok(format!(
            "pull request: {}",
            String::from_utf8_lossy(&o.stdout).trim()
        )),
        Ok(o) => anyhow::bail!(
            "gh pr create failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(format!(
            "--open-pr: `gh` is not installed; open the pull request for {branch} by hand"
        )),
        Err(e) => Err(e).context("running gh"),
    }
}
