//! Following a remote's branches (`serve --fetch`): each branch is fetched
//! into `refs/promptgate/fetched/`, outside the user's branches and
//! remote-tracking refs, and the local branch is moved to the fetched
//! commit only when that is a fast-forward.
//!
//! Invariants: a local branch only ever moves forward (never forced); a
//! branch that diverged from the remote is left alone and reported
//! ([`Followed::NonFastForward`]); a local branch ahead of the remote (a
//! commit not pushed yet) is left as it is. The branches named at the
//! control commit move before the control branch, so the control commit
//! never names a ref the replica does not have yet.

use git2::Oid;
use serde::{Deserialize, Serialize};

use super::{GitRepo, RepoError};

const FETCHED: &str = "refs/promptgate/fetched/";

/// What happened to one local branch in a fetch round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Followed {
    /// Created or fast-forwarded.
    Updated {
        branch: String,
        from: Option<String>,
        to: String,
    },
    Unchanged {
        branch: String,
    },
    /// The local branch has commits the remote does not (not pushed yet).
    LocalAhead {
        branch: String,
    },
    /// Local and remote diverged; the local branch is left alone.
    NonFastForward {
        branch: String,
        local: String,
        remote: String,
    },
}

impl Followed {
    /// The metric label: `updated`, `unchanged` or `non_fast_forward`.
    pub fn label(&self) -> &'static str {
        match self {
            Followed::Updated { .. } => "updated",
            Followed::Unchanged { .. } | Followed::LocalAhead { .. } => "unchanged",
            Followed::NonFastForward { .. } => "non_fast_forward",
        }
    }
}

/// Where the fetched commit of `branch` (a full `refs/heads/` name) is kept.
fn fetched_ref(branch: &str) -> String {
    format!(
        "{FETCHED}{}",
        branch.strip_prefix("refs/heads/").unwrap_or(branch)
    )
}

/// The branch a ref names, if it is a branch: `main` and `refs/heads/main`
/// are; tags, other `refs/` and commit ids never move.
pub fn branch_named(r: &str) -> Option<String> {
    if r.starts_with("refs/heads/") {
        Some(r.to_string())
    } else if r.starts_with("refs/") || (r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        None
    } else {
        Some(format!("refs/heads/{r}"))
    }
}

impl GitRepo {
    /// Fetches `branch` (a full name) from `remote` into
    /// `refs/promptgate/fetched/` and returns the fetched commit.
    pub fn fetch_branch(&self, remote: &str, branch: &str) -> Result<Oid, RepoError> {
        let kept = fetched_ref(branch);
        self.fetch(remote, &[format!("+{branch}:{kept}")])?;
        self.resolve(&kept)
    }

    /// One round: fetches `control` (a full branch name) from `remote`, then
    /// the branches among the refs `named_at` finds at the fetched control
    /// commit, and fast-forwards the local branches, control last. A named
    /// branch the remote lacks is logged and skipped.
    pub fn follow_remote(
        &self,
        remote: &str,
        control: &str,
        named_at: impl FnOnce(&GitRepo, Oid) -> Vec<String>,
    ) -> Result<Vec<Followed>, RepoError> {
        let remote_control = self.fetch_branch(remote, control)?;
        let mut branches: Vec<String> = Vec::new();
        for b in named_at(self, remote_control)
            .iter()
            .filter_map(|r| branch_named(r))
        {
            if b != control && !branches.contains(&b) {
                branches.push(b);
            }
        }
        let mut out = Vec::new();
        for b in &branches {
            // A branch the remote does not have (yet) is not an error of the
            // round: the control branch still follows.
            match self.fetch_branch(remote, b) {
                Ok(to) => out.push(self.follow(b, to)?),
                Err(e) => tracing::warn!(branch = %b, error = %e, "fetch: branch not fetched"),
            }
        }
        out.push(self.follow(control, remote_control)?);
        Ok(out)
    }

    /// Moves `branch` forward to `to` when that is a fast-forward, creates
    /// it when it does not exist, and otherwise leaves it alone.
    pub fn follow(&self, branch: &str, to: Oid) -> Result<Followed, RepoError> {
        let name = branch.to_string();
        let Ok(local) = self.resolve(branch) else {
            self.repo
                .reference(branch, to, false, "promptgate: fetched")?;
            return Ok(Followed::Updated {
                branch: name,
                from: None,
                to: to.to_string(),
            });
        };
        if local == to {
            return Ok(Followed::Unchanged { branch: name });
        }
        if self.descends_from(to, local)? {
            self.fast_forward(branch, to)?;
            return Ok(Followed::Updated {
                branch: name,
                from: Some(local.to_string()),
                to: to.to_string(),
            });
        }
        if self.descends_from(local, to)? {
            return Ok(Followed::LocalAhead { branch: name });
        }
        Ok(Followed::NonFastForward {
            branch: name,
            local: local.to_string(),
            remote: to.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_that_are_not_branches_are_not_followed() {
        assert_eq!(branch_named("main").as_deref(), Some("refs/heads/main"));
        assert_eq!(
            branch_named("refs/heads/a/b").as_deref(),
            Some("refs/heads/a/b")
        );
        assert_eq!(branch_named("refs/tags/v1"), None);
        assert_eq!(branch_named(&"a".repeat(40)), None);
    }
}
