//! `promptgate validate`: every file against its schema, then every
//! cross-reference; all problems in one run, compiler style.

use std::path::PathBuf;

use anyhow::Context;

use super::ExitStatus;
use crate::project::{LoadOptions, Project, render_all};
use crate::repo::{FileSource, GitRepo, WorkTree};
use crate::spec::Severity;

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
    let root = super::repo_root(args.repo.as_deref())?;
    let git = GitRepo::open(&root)?;
    let resolve = |r: &str| git.resolve(r).is_ok();
    let opts = LoadOptions {
        resolve_ref: Some(&resolve),
    };
    let worktree;
    let tree;
    let source: &dyn FileSource = match &args.git_ref {
        Some(r) => {
            tree = git
                .tree_at(r)
                .with_context(|| format!("reading {}", root.display()))?;
            &tree
        }
        None => {
            worktree = WorkTree::new(&root);
            &worktree
        }
    };
    let diags = Project::diagnose(source, &opts)?;
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
