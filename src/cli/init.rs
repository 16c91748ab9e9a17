//! `promptgate init [DIR]`: writes the scaffold (embedded from
//! `template-repo/`, so an installed binary needs no files), runs `git init`
//! and makes the first commit.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::ExitStatus;
use crate::repo::{self, FileSource};
use crate::spec::FileKind;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder to create the repository in (default: the current folder).
    pub dir: Option<PathBuf>,
    /// Write into a non-empty folder, overwriting scaffold files.
    #[arg(long)]
    pub force: bool,
}

macro_rules! scaffold {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../template-repo/", $path)))),*]
    };
}

/// Every file of the scaffold, by path inside the new repository.
pub const SCAFFOLD: &[(&str, &str)] = scaffold!(
    ".gitignore",
    ".github/workflows/promptgate.yml",
    "README.md",
    "promptgate.yaml",
    "rollout.yaml",
    "prompts/capital.yaml",
    "datasets/capitals/dataset.yaml",
    "datasets/capitals/rows.jsonl",
    "evals/capitals.yaml",
);

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    let dir = match args.dir {
        Some(d) => d,
        None => std::env::current_dir().context("reading the current folder")?,
    };
    let commit = scaffold(&dir, args.force)?;
    super::out(&format!(
        "Created a promptgate repository in {} (commit {}).\nNext: cd {} && promptgate validate\n",
        dir.display(),
        &commit[..12],
        dir.display()
    ))?;
    Ok(ExitStatus::Success)
}

/// Writes the scaffold into `dir`, initialises git, snapshots the datasets
/// and commits. Returns the commit id.
pub fn scaffold(dir: &Path, force: bool) -> anyhow::Result<String> {
    if dir.exists() {
        let non_empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some();
        if non_empty && !force {
            bail!(
                "{} is not empty; use --force to write the scaffold into it anyway",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = SCAFFOLD
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .chain(FileKind::ALL.iter().map(|k| {
            (
                format!("schema/{}", k.schema_file()),
                k.schema_text().to_string(),
            )
        }));
    for (rel, text) in files {
        crate::durable::write(&dir.join(&rel), text.as_bytes())?;
    }
    let git = match repo::GitRepo::open(dir) {
        Ok(g) => g,
        Err(_) => repo::init_repo(dir)?,
    };
    snapshot_datasets(dir)?;
    let sig = git.signature()?;
    let commit = git.commit_all("Scaffold promptgate repository", &sig)?;
    Ok(commit.to_string())
}

/// Snapshots every dataset of the scaffold, so the first commit holds
/// `snapshots/v1.parquet` and `dataset.lock` for each.
fn snapshot_datasets(dir: &Path) -> anyhow::Result<()> {
    let names = repo::WorkTree::new(dir).list(crate::project::DATASETS_DIR)?;
    for name in names {
        if dir
            .join(crate::project::DATASETS_DIR)
            .join(&name)
            .join("dataset.yaml")
            .is_file()
        {
            crate::dataset::snapshot(dir, &name)
                .with_context(|| format!("snapshotting dataset `{name}`"))?;
        }
    }
    Ok(())
}
