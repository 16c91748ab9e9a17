//! `promptgate log PROMPT`: the versions of a prompt from git history.

use std::path::PathBuf;

use super::ExitStatus;
use crate::project::PROMPTS_DIR;
use crate::repo::GitRepo;
use crate::spec::prompt::is_valid_id;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Prompt id.
    pub prompt: String,
    /// History reachable from this ref.
    #[arg(long = "ref", default_value = "HEAD")]
    pub git_ref: String,
    #[arg(long)]
    pub repo: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    if !is_valid_id(&args.prompt) {
        anyhow::bail!(
            "`{}` is not a prompt id (lowercase letters, digits, '-' and '_')",
            args.prompt
        );
    }
    let root = super::repo_root(args.repo.as_deref())?;
    let git = GitRepo::open(&root)?;
    let path = format!("{PROMPTS_DIR}/{}.yaml", args.prompt);
    let versions = git.file_history(&args.git_ref, &path)?;
    if versions.is_empty() {
        anyhow::bail!(
            "prompt `{}` has no history at `{}` ({path} was never committed)",
            args.prompt,
            args.git_ref
        );
    }
    if args.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&versions)?))?;
        return Ok(ExitStatus::Success);
    }
    let mut text = String::new();
    for v in &versions {
        let date = chrono::DateTime::from_timestamp(v.time, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default();
        text.push_str(&format!(
            "{}  {}  blob {}  {}  {}\n",
            &v.commit[..12],
            date,
            &v.blob[..12],
            v.author,
            v.subject
        ));
    }
    super::out(&text)?;
    Ok(ExitStatus::Success)
}
