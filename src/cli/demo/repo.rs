//! The demo's git writes, all through [`crate::repo`]: the commits a
//! person would make (pointing promptgate.yaml at the model, the prompt
//! change on its branch, the canary in rollout.yaml), and reading back the
//! commit the analyzer made.

use std::path::Path;

use anyhow::Context;

use super::fixtures::{WORSE_PROMPT, canary_rollout};
use super::{BRANCH, CANARY_WEIGHT, MAIN, PROMPT_FILE};
use crate::repo::{GitRepo, Oid};

/// Commits `text` as `path` on `branch` (a full name) from its current
/// commit; the working tree follows when the branch is checked out.
pub(super) fn commit_file(
    root: &Path,
    branch: &str,
    path: &str,
    text: &str,
    message: &str,
) -> anyhow::Result<Oid> {
    let git = GitRepo::open(root)?;
    let sig = git.signature()?;
    Ok(git
        .commit_file(branch, path, text.as_bytes(), message, &sig)?
        .commit)
}

/// `text` committed as promptgate.yaml on main.
pub(super) fn commit_config(root: &Path, text: &str, message: &str) -> anyhow::Result<Oid> {
    commit_file(root, MAIN, crate::project::CONFIG_FILE, text, message)
}

/// The worse prompt committed on the branch `BRANCH`, created from main
/// (main and the working tree stay as they are).
pub(super) fn open_prompt_change(root: &Path) -> anyhow::Result<Oid> {
    let branch = format!("refs/heads/{BRANCH}");
    {
        let git = GitRepo::open(root)?;
        let main = git.resolve(MAIN)?;
        git.create_branch(&branch, main, "demo: open a prompt change")
            .with_context(|| format!("creating {branch}"))?;
    }
    commit_file(
        root,
        &branch,
        PROMPT_FILE,
        WORSE_PROMPT,
        "capital: friendlier answers with some background",
    )
}

/// The rollout.yaml that puts the branch live, committed on main.
pub(super) fn commit_canary(root: &Path) -> anyhow::Result<Oid> {
    commit_file(
        root,
        MAIN,
        crate::project::ROLLOUT_FILE,
        &canary_rollout(),
        &format!("rollout: canary {BRANCH} at {CANARY_WEIGHT}%"),
    )
}

/// The subject and body of `commit`.
pub(super) fn message_of(root: &Path, commit: &str) -> anyhow::Result<(String, String)> {
    let msg = GitRepo::open(root)?
        .message(commit)
        .with_context(|| format!("reading commit {commit}"))?;
    let (subject, body) = msg.split_once('\n').unwrap_or((&msg, ""));
    Ok((subject.to_string(), body.trim().to_string()))
}
