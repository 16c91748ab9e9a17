//! Commits promptgate makes on behalf of the user (canary rollback,
//! promotion, step advance, the demo's commits): built from trees in the
//! object database, so the working tree is never read, and published by a
//! compare-and-swap of the branch so a concurrent commit is never
//! overwritten. Also branches, pushes and fetches.
//!
//! When the branch is the one checked out, the files the commit changed are
//! checked out too (safe mode: a file with local edits is left alone and
//! reported), so `git status` does not show the tool's commit as a pending
//! reversal.

use std::path::Path;

use git2::{Oid, build::CheckoutBuilder};

use super::{GitRepo, RepoError};

/// What [`GitRepo::commit_on_branch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchCommit {
    pub commit: Oid,
    /// Whether the branch is checked out and its changed files were updated
    /// in the working tree and index.
    pub worktree_updated: bool,
    /// Why the working tree was not updated, when it is checked out.
    pub worktree_note: Option<String>,
}

/// An author (and committer) `name <email>` with the current time.
pub fn signature(name: &str, email: &str) -> Result<git2::Signature<'static>, RepoError> {
    Ok(git2::Signature::now(name, email)?)
}

impl GitRepo {
    /// The full name of the branch HEAD points to (`refs/heads/main`); None
    /// when HEAD is detached or unborn.
    pub fn head_branch(&self) -> Option<String> {
        let head = self.repo.find_reference("HEAD").ok()?;
        let target = head.symbolic_target().ok()??;
        target
            .starts_with("refs/heads/")
            .then(|| target.to_string())
    }

    /// A full branch name for `name`: `HEAD` is the checked-out branch, a
    /// `refs/...` name is kept, anything else is `refs/heads/<name>`.
    pub fn branch_refname(&self, name: &str) -> Result<String, RepoError> {
        if name == "HEAD" {
            return self.head_branch().ok_or_else(|| RepoError::BadRef {
                refname: name.to_string(),
                message: "HEAD is not on a branch (detached or unborn)".to_string(),
            });
        }
        Ok(if name.starts_with("refs/") {
            name.to_string()
        } else {
            format!("refs/heads/{name}")
        })
    }

    /// The tree of `base` with `path` replaced by (or added as) a blob of
    /// `content`.
    pub fn tree_with_file(&self, base: Oid, path: &str, content: &[u8]) -> Result<Oid, RepoError> {
        self.tree_with_files(base, &[(path.to_string(), content.to_vec())])
    }

    /// The tree of `base` with each `(path, content)` replaced or added.
    pub fn tree_with_files(
        &self,
        base: Oid,
        files: &[(String, Vec<u8>)],
    ) -> Result<Oid, RepoError> {
        let commit = self.repo.find_commit(base)?;
        let tree = commit.tree()?;
        let mut update = git2::build::TreeUpdateBuilder::new();
        for (path, content) in files {
            let blob = self.repo.blob(content)?;
            update.upsert(path.as_str(), blob, git2::FileMode::Blob);
        }
        Ok(update.create_updated(&self.repo, &tree)?)
    }

    /// The file `path` in the tree `tree` (None when absent or not a file).
    pub fn read_in_tree(&self, tree: Oid, path: &str) -> Result<Option<Vec<u8>>, RepoError> {
        let tree = self.repo.find_tree(tree)?;
        let entry = match tree.get_path(Path::new(path)) {
            Ok(e) => e,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if entry.kind() != Some(git2::ObjectType::Blob) {
            return Ok(None);
        }
        Ok(Some(self.repo.find_blob(entry.id())?.content().to_vec()))
    }

    /// Creates the branch `branch` (a full name) at `at`; fails when it exists.
    pub fn create_branch(&self, branch: &str, at: Oid, log_message: &str) -> Result<(), RepoError> {
        self.repo.reference(branch, at, false, log_message)?;
        Ok(())
    }

    /// Commits `content` as `path` on `branch` (a full name) on top of its
    /// current commit, as [`GitRepo::commit_on_branch`] does.
    pub fn commit_file(
        &self,
        branch: &str,
        path: &str,
        content: &[u8],
        message: &str,
        author: &git2::Signature<'_>,
    ) -> Result<BranchCommit, RepoError> {
        let head = self.resolve(branch)?;
        let tree = self.tree_with_file(head, path, content)?;
        self.commit_on_branch(branch, head, tree, message, author)
    }

    /// The tree of `onto` with `commit` reverted, like `git revert`; None
    /// when the revert does not apply cleanly (conflicts). Merge commits are
    /// reverted against their first parent.
    pub fn revert_tree(&self, commit: Oid, onto: Oid) -> Result<Option<Oid>, RepoError> {
        let c = self.repo.find_commit(commit)?;
        let ours = self.repo.find_commit(onto)?;
        let mainline = if c.parent_count() > 1 { 1 } else { 0 };
        let mut index = self.repo.revert_commit(&c, &ours, mainline, None)?;
        if index.has_conflicts() {
            return Ok(None);
        }
        Ok(Some(index.write_tree_to(&self.repo)?))
    }

    /// Commits `tree` with parent `parent` and moves `branch` (a full name)
    /// from `parent` to it; fails if the branch is no longer at `parent`.
    pub fn commit_on_branch(
        &self,
        branch: &str,
        parent: Oid,
        tree: Oid,
        message: &str,
        author: &git2::Signature<'_>,
    ) -> Result<BranchCommit, RepoError> {
        let parent_commit = self.repo.find_commit(parent)?;
        let tree_obj = self.repo.find_tree(tree)?;
        let commit =
            self.repo
                .commit(None, author, author, message, &tree_obj, &[&parent_commit])?;
        let (worktree_updated, worktree_note) = self.sync_checkout(branch, parent, commit)?;
        self.repo
            .reference_matching(branch, commit, true, parent, &first_line(message))?;
        Ok(BranchCommit {
            commit,
            worktree_updated,
            worktree_note,
        })
    }

    /// Moves `branch` from its current commit to `to`, which must descend
    /// from it (a fast-forward).
    pub fn fast_forward(&self, branch: &str, to: Oid) -> Result<BranchCommit, RepoError> {
        let current = self.resolve(branch)?;
        if current != to && !self.repo.graph_descendant_of(to, current)? {
            return Err(RepoError::BadRef {
                refname: branch.to_string(),
                message: format!("cannot fast-forward: {to} does not descend from {current}"),
            });
        }
        let (worktree_updated, worktree_note) = self.sync_checkout(branch, current, to)?;
        self.repo
            .reference_matching(branch, to, true, current, "promptgate: fast-forward")?;
        Ok(BranchCommit {
            commit: to,
            worktree_updated,
            worktree_note,
        })
    }

    /// When `branch` is checked out, updates the files that differ between
    /// `from` and `to` in the working tree and index (before the branch
    /// moves, so the safe checkout compares against the current HEAD).
    fn sync_checkout(
        &self,
        branch: &str,
        from: Oid,
        to: Oid,
    ) -> Result<(bool, Option<String>), RepoError> {
        if self.repo.is_bare() || self.head_branch().as_deref() != Some(branch) {
            return Ok((false, None));
        }
        let old = self.repo.find_commit(from)?.tree()?;
        let new = self.repo.find_commit(to)?.tree()?;
        let diff = self.repo.diff_tree_to_tree(Some(&old), Some(&new), None)?;
        let mut opts = CheckoutBuilder::new();
        opts.safe();
        let mut any = false;
        for delta in diff.deltas() {
            for f in [delta.old_file(), delta.new_file()] {
                if let Some(p) = f.path() {
                    opts.path(p);
                    any = true;
                }
            }
        }
        if !any {
            return Ok((true, None));
        }
        match self.repo.checkout_tree(new.as_object(), Some(&mut opts)) {
            Ok(()) => Ok((true, None)),
            // Local edits to a file the commit changes: keep the user's
            // work; the commit is made all the same.
            Err(e) => Ok((false, Some(e.message().to_string()))),
        }
    }

    /// Pushes `refspecs` (`src:dst`) to `remote`: a configured remote name,
    /// or a URL / path. A rejected update is an error.
    pub fn push(&self, remote: &str, refspecs: &[String]) -> Result<(), RepoError> {
        let mut r = self.remote(remote)?;
        let rejected = std::cell::RefCell::new(Vec::new());
        let mut callbacks = git2::RemoteCallbacks::new();
        callbacks.push_update_reference(|name, status| {
            if let Some(msg) = status {
                rejected.borrow_mut().push(format!("{name}: {msg}"));
            }
            Ok(())
        });
        let mut opts = git2::PushOptions::new();
        opts.remote_callbacks(callbacks);
        r.push(refspecs, Some(&mut opts))?;
        drop(opts);
        let rejected = rejected.into_inner();
        if rejected.is_empty() {
            Ok(())
        } else {
            Err(RepoError::Path {
                path: remote.to_string(),
                message: format!("push rejected: {}", rejected.join("; ")),
            })
        }
    }
}

impl GitRepo {
    /// A configured remote by name, or an anonymous one for a URL / path.
    fn remote(&self, remote: &str) -> Result<git2::Remote<'_>, RepoError> {
        match self.repo.find_remote(remote) {
            Ok(r) => Ok(r),
            Err(_) if looks_like_location(remote) => Ok(self.repo.remote_anonymous(remote)?),
            Err(e) => Err(e.into()),
        }
    }

    /// Fetches `refspecs` (`[+]src:dst`) from `remote`: a configured remote
    /// name, or a URL / path.
    pub fn fetch(&self, remote: &str, refspecs: &[String]) -> Result<(), RepoError> {
        let mut r = self.remote(remote)?;
        r.fetch(refspecs, None, None)?;
        Ok(())
    }

    /// Whether `commit` descends from `ancestor` (false when equal).
    pub fn descends_from(&self, commit: Oid, ancestor: Oid) -> Result<bool, RepoError> {
        Ok(self.repo.graph_descendant_of(commit, ancestor)?)
    }
}

fn looks_like_location(remote: &str) -> bool {
    remote.contains("://") || remote.contains('/') || Path::new(remote).exists()
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::super::{GitRepo, init_repo};

    fn repo_with_main() -> (tempfile::TempDir, GitRepo) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "one\n").unwrap();
        let git = init_repo(dir.path()).unwrap();
        let sig = super::signature("T", "t@example.com").unwrap();
        git.commit_all("first", &sig).unwrap();
        (dir, git)
    }

    #[test]
    fn commit_file_on_a_new_branch_leaves_main_and_the_working_tree_alone() {
        let (dir, git) = repo_with_main();
        let main = git.resolve("refs/heads/main").unwrap();
        git.create_branch("refs/heads/x", main, "test").unwrap();
        assert!(git.create_branch("refs/heads/x", main, "test").is_err());
        let sig = git.signature().unwrap();
        let done = git
            .commit_file("refs/heads/x", "a.txt", b"two\n", "edit\n\nbody", &sig)
            .unwrap();
        assert!(!done.worktree_updated, "x is not checked out");
        assert_eq!(git.resolve("refs/heads/x").unwrap(), done.commit);
        assert_eq!(git.resolve("refs/heads/main").unwrap(), main);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
            "one\n"
        );
        let message = git.message(&done.commit.to_string()).unwrap();
        assert_eq!(message, "edit\n\nbody");
        let tree = git.tree_with_file(main, "b.txt", b"new").unwrap();
        assert_eq!(
            git.read_in_tree(tree, "a.txt").unwrap().as_deref(),
            Some(&b"one\n"[..])
        );
        assert_eq!(
            git.read_in_tree(tree, "b.txt").unwrap().as_deref(),
            Some(&b"new"[..])
        );
        assert_eq!(git.read_in_tree(tree, "missing.txt").unwrap(), None);
    }

    #[test]
    fn commit_file_on_the_checked_out_branch_updates_the_working_tree() {
        let (dir, git) = repo_with_main();
        let sig = git.signature().unwrap();
        let done = git
            .commit_file("refs/heads/main", "a.txt", b"two\n", "edit", &sig)
            .unwrap();
        assert!(done.worktree_updated);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
            "two\n"
        );
    }
}
