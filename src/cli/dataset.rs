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
use crate::dataset::{self, DatasetError, RowsStatus, SnapshotOutcome};
use crate::repo::WorkTree;

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
    };
    match result {
        Ok(status) => Ok(status),
        Err(err) => match err.downcast_ref::<DatasetError>() {
            Some(e) if e.is_invalid_data() => {
                eprintln!("error: {e}");
                Ok(ExitStatus::Failure)
            }
            _ => Err(err),
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
