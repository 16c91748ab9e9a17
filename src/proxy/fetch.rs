//! `serve --fetch REMOTE`: replicas follow a shared remote. Every interval
//! the control branch is fetched, then the branches its rollout.yaml names
//! (stable, canary), and each local branch is fast-forwarded to the fetched
//! commit ([`GitRepo::follow_remote`], which holds the git invariants: never
//! forced, named branches before the control branch); the ref watcher (and
//! a direct reload) then serves the new state. A branch that diverged from
//! the remote is logged and counted
//! (`promptgate_fetch_total{result="non_fast_forward"}`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::metrics::{FETCHES, Metrics};
use super::reload::Reloader;
use super::status::{FetchRun, TaskStatus};
use crate::repo::{Followed, GitRepo, RepoError};

/// What `serve --fetch` follows and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// A configured remote name, or a URL / path.
    pub remote: String,
    pub interval: Duration,
}

/// What the fetch loop uses of the server.
#[derive(Debug, Clone)]
pub struct FetchHandles {
    /// Reloaded when a branch moved.
    pub reloader: Arc<Reloader>,
    pub metrics: Arc<Metrics>,
    /// Where each round is recorded, for `/status`.
    pub status: Arc<TaskStatus<FetchRun>>,
}

/// Fetch rounds until the task is aborted.
pub async fn run(handles: FetchHandles, root: PathBuf, control_ref: String, opts: FetchOptions) {
    loop {
        tokio::time::sleep(opts.interval).await;
        let (r, c, remote) = (root.clone(), control_ref.clone(), opts.remote.clone());
        let result = tokio::task::spawn_blocking(move || follow_remote(&r, &c, &remote))
            .await
            .unwrap_or_else(|e| {
                Err(RepoError::Path {
                    path: opts.remote.clone(),
                    message: format!("the fetch task failed: {e}"),
                })
            });
        let mut run = FetchRun {
            at: Utc::now(),
            remote: opts.remote.clone(),
            branches: Vec::new(),
            error: None,
        };
        match result {
            Ok(branches) => {
                for b in &branches {
                    handles.metrics.count_event(FETCHES, &[b.label()]);
                    if let Followed::NonFastForward {
                        branch,
                        local,
                        remote,
                    } = b
                    {
                        tracing::warn!(%branch, %local, %remote, "fetch: the local branch diverged from the remote; not moved");
                    }
                }
                if branches
                    .iter()
                    .any(|b| matches!(b, Followed::Updated { .. }))
                {
                    tracing::info!(remote = %opts.remote, "fetch: branches moved; reloading");
                    handles.reloader.reload(false).await;
                }
                run.branches = branches;
            }
            Err(e) => {
                handles.metrics.count_event(FETCHES, &["error"]);
                tracing::warn!(remote = %opts.remote, error = %e, "fetch failed");
                run.error = Some(e.to_string());
            }
        }
        handles.status.store(run);
    }
}

/// One round: fetch the control branch and the branches its rollout names,
/// fast-forward the local ones (control last).
pub fn follow_remote(
    root: &std::path::Path,
    control_ref: &str,
    remote: &str,
) -> Result<Vec<Followed>, RepoError> {
    let git = GitRepo::open(root)?;
    let control = git.branch_refname(control_ref)?;
    git.follow_remote(
        remote,
        &control,
        |git, commit| match crate::canary::rollout_at(git, &commit.to_string()) {
            Ok(Some(rollout)) => std::iter::once(rollout.stable)
                .chain(rollout.canary.map(|c| c.git_ref))
                .collect(),
            _ => Vec::new(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::{Oid, Repository};

    /// Commits `file` with `content` on `branch` of `repo` (parent: the
    /// branch's commit, if any), without touching the working tree.
    fn commit(repo: &Repository, branch: &str, file: &str, content: &str) -> Oid {
        let parent = repo
            .revparse_single(branch)
            .ok()
            .map(|o| o.peel_to_commit().unwrap());
        let blob = repo.blob(content.as_bytes()).unwrap();
        let mut b = git2::build::TreeUpdateBuilder::new();
        b.upsert(file, blob, git2::FileMode::Blob);
        let base = match &parent {
            Some(p) => p.tree().unwrap(),
            None => repo
                .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
                .unwrap(),
        };
        let tree = repo
            .find_tree(b.create_updated(repo, &base).unwrap())
            .unwrap();
        let sig = git2::Signature::now("T", "t@example.com").unwrap();
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        repo.commit(Some(branch), &sig, &sig, content, &tree, &parents)
            .unwrap()
    }

    fn at(repo: &Repository, r: &str) -> Oid {
        repo.revparse_single(r).unwrap().id()
    }

    #[test]
    fn follows_fast_forwards_only_and_names_divergence() {
        let tmp = tempfile::tempdir().unwrap();
        let upstream = Repository::init(tmp.path().join("up")).unwrap();
        commit(
            &upstream,
            "refs/heads/main",
            "rollout.yaml",
            "stable: refs/heads/main\n",
        );
        commit(&upstream, "refs/heads/prompt/x", "p.txt", "canary\n");
        upstream.set_head("refs/heads/main").unwrap();
        let local_dir = tmp.path().join("local");
        let remote = tmp.path().join("up");
        let local = Repository::clone(remote.to_str().unwrap(), &local_dir).unwrap();
        let remote = remote.to_str().unwrap();

        // Nothing new.
        let out = follow_remote(&local_dir, "main", remote).unwrap();
        assert_eq!(
            out,
            vec![Followed::Unchanged {
                branch: "refs/heads/main".into()
            }]
        );

        // The remote moves on and names a canary branch the clone lacks:
        // the branch is created, main fast-forwarded with its checkout.
        let rollout =
            "stable: refs/heads/main\ncanary:\n  ref: refs/heads/prompt/x\n  weight: 10\n";
        let new = commit(&upstream, "refs/heads/main", "rollout.yaml", rollout);
        let out = follow_remote(&local_dir, "HEAD", remote).unwrap();
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            matches!(&out[0], Followed::Updated { branch, from: None, .. } if branch == "refs/heads/prompt/x")
        );
        assert!(
            matches!(&out[1], Followed::Updated { branch, from: Some(_), .. } if branch == "refs/heads/main")
        );
        assert_eq!(at(&local, "refs/heads/main"), new);
        assert_eq!(
            at(&local, "refs/heads/prompt/x"),
            at(&upstream, "refs/heads/prompt/x")
        );
        assert_eq!(
            std::fs::read_to_string(local_dir.join("rollout.yaml")).unwrap(),
            rollout
        );

        // A local commit not pushed yet stays.
        let ahead = commit(&local, "refs/heads/main", "note.txt", "local\n");
        let out = follow_remote(&local_dir, "main", remote).unwrap();
        assert!(
            out.contains(&Followed::LocalAhead {
                branch: "refs/heads/main".into()
            }),
            "{out:?}"
        );
        assert_eq!(at(&local, "refs/heads/main"), ahead);

        // Diverged: never forced.
        let theirs = commit(&upstream, "refs/heads/main", "other.txt", "remote\n");
        let out = follow_remote(&local_dir, "main", remote).unwrap();
        assert!(
            out.contains(&Followed::NonFastForward {
                branch: "refs/heads/main".into(),
                local: ahead.to_string(),
                remote: theirs.to_string(),
            }),
            "{out:?}"
        );
        assert_eq!(at(&local, "refs/heads/main"), ahead);
    }
}
