//! `promptgate validate`: every file against its schema, then every
//! cross-reference; all problems in one run, compiler style.

use std::path::PathBuf;

use anyhow::Context;

use super::ExitStatus;
use crate::dataset::{IntegrityProblem, verify_snapshots};
use crate::project::{LoadOptions, Project, render_all};
use crate::repo::{FileSource, GitRepo};
use crate::settings::{Location, Overrides, Scope};
use crate::spec::{Diagnostic, Severity};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Repository folder (default: the one containing the current folder).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Validate the files at this git ref instead of the working tree.
    #[arg(long = "ref")]
    pub git_ref: Option<String>,
    /// Print diagnostics as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    // Where the files come from, resolved as every command does; the
    // files themselves (promptgate.yaml included) are what is checked.
    let scope = match &args.git_ref {
        Some(r) => Scope::Commit(r.clone()),
        None => Scope::WorkTree,
    };
    let overrides = Overrides {
        repo: args.repo.clone(),
        ..Overrides::default()
    };
    let location = Location::resolve(&scope, &overrides.with_env())?;
    let git = GitRepo::open(&location.root)?;
    let resolve = |r: &str| git.resolve(r).is_ok();
    let opts = LoadOptions {
        resolve_ref: Some(&resolve),
    };
    let files = location
        .files(&git)
        .with_context(|| format!("reading {}", location.root.display()))?;
    let source: &dyn FileSource = &files;
    let mut diags = Project::diagnose(source, &opts)?;
    if !diags.iter().any(Diagnostic::is_error) {
        diags.extend(snapshot_problems(source, &opts)?);
    }
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diags.len() - errors;
    if args.json {
        let out = serde_json::json!({
            "ok": errors == 0,
            "errors": errors,
            "warnings": warnings,
            "diagnostics": diags,
        });
        super::out(&format!("{}\n", serde_json::to_string_pretty(&out)?))?;
    } else {
        if !diags.is_empty() {
            eprintln!("{}\n", render_all(&diags));
        }
        let what = source.describe();
        if errors == 0 {
            super::out(&format!("ok: {what} is valid ({warnings} warning(s))\n"))?;
        } else {
            eprintln!("{errors} error(s), {warnings} warning(s) in {what}");
        }
    }
    Ok(if errors == 0 {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// Snapshot files whose bytes no longer match `dataset.lock`: an eval would
/// refuse them later, so validate says so now, at the lock line that pins them.
fn snapshot_problems(
    source: &dyn FileSource,
    opts: &LoadOptions<'_>,
) -> anyhow::Result<Vec<Diagnostic>> {
    let project = Project::load(source, opts)?;
    let mut out = Vec::new();
    for (name, dataset) in &project.datasets {
        let lock_file = format!("{}/{name}/dataset.lock", crate::project::DATASETS_DIR);
        let lock_text = source.read_string(&lock_file)?.unwrap_or_default();
        for problem in verify_snapshots(source, name, &dataset.lock)? {
            let (line, field) = match &problem {
                IntegrityProblem::Changed {
                    version,
                    expected_sha256,
                    ..
                } => (
                    line_containing(&lock_text, expected_sha256),
                    format!("versions[v{version}].file_sha256"),
                ),
                IntegrityProblem::Missing { version, .. } => (
                    line_containing(&lock_text, &format!("version: {version}")),
                    format!("versions[v{version}].file"),
                ),
                IntegrityProblem::Unrecorded { .. } => (1, "versions".to_string()),
            };
            out.push(Diagnostic {
                severity: Severity::Error,
                file: lock_file.clone(),
                line,
                column: 1,
                field,
                message: problem.to_string(),
                source_line: lock_text.lines().nth(line - 1).map(str::to_string),
            });
        }
    }
    Ok(out)
}

fn line_containing(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or(1, |i| i + 1)
}
