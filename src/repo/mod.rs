//! Git access through git2, the only module that uses it: read files and
//! folders at any ref without touching the working tree, the history of one
//! file, what changed between two refs, and every git write the tool makes
//! (commits, reverts, branches, fast-forwards, fetch and push: [`write`],
//! [`follow`]).
//!
//! [`FileSource`] abstracts "a tree of files": the working tree (for
//! `validate` before committing) or a commit (for everything that serves or
//! evaluates, which only ever reads committed state).

mod follow;
mod source;
mod write;

use std::path::{Path, PathBuf};

use git2::Repository;

pub(crate) use follow::Followed;
pub(crate) use git2::{Oid, Signature};
pub use source::WorkTree;
pub(crate) use source::{FileSource, GitTree};
pub(crate) use write::signature;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{path}: not inside a git repository ({source})")]
    NotARepo { path: PathBuf, source: git2::Error },
    #[error("ref `{refname}` does not resolve to a commit: {message}")]
    BadRef { refname: String, message: String },
    #[error("{path}: {message}")]
    Path { path: String, message: String },
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One version of a file in history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FileVersion {
    pub commit: String,
    /// Seconds since the epoch (committer time).
    pub time: i64,
    pub author: String,
    pub blob: String,
    pub subject: String,
}

/// A repository opened once and shared.
pub struct GitRepo {
    repo: Repository,
}

impl std::fmt::Debug for GitRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitRepo")
            .field("path", &self.repo.path())
            .finish()
    }
}

impl GitRepo {
    /// Finds the repository containing `path` (like `git` does).
    pub fn discover(path: &Path) -> Result<GitRepo, RepoError> {
        let repo = Repository::discover(path).map_err(|source| RepoError::NotARepo {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(GitRepo { repo })
    }

    pub fn open(path: &Path) -> Result<GitRepo, RepoError> {
        let repo = Repository::open(path).map_err(|source| RepoError::NotARepo {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(GitRepo { repo })
    }

    pub fn inner(&self) -> &Repository {
        &self.repo
    }

    /// The working tree root (None for a bare repository).
    pub fn workdir(&self) -> Option<&Path> {
        self.repo.workdir()
    }

    /// The `.git` directory, which holds the refs a watcher follows.
    pub fn git_dir(&self) -> &Path {
        self.repo.path()
    }

    /// Resolves any revision git understands (branch, tag, sha, `HEAD~1`,
    /// `refs/heads/x`) to a commit id.
    pub fn resolve(&self, refname: &str) -> Result<Oid, RepoError> {
        let obj = self
            .repo
            .revparse_single(refname)
            .map_err(|e| RepoError::BadRef {
                refname: refname.to_string(),
                message: e.message().to_string(),
            })?;
        let commit = obj.peel_to_commit().map_err(|e| RepoError::BadRef {
            refname: refname.to_string(),
            message: e.message().to_string(),
        })?;
        Ok(commit.id())
    }

    /// The files of `refname` as a [`FileSource`].
    pub fn tree_at(&self, refname: &str) -> Result<GitTree<'_>, RepoError> {
        let commit = self.resolve(refname)?;
        GitTree::new(&self.repo, commit)
    }

    /// Versions of one file, newest first: every commit reachable from
    /// `refname` whose blob of `path` differs from its first parent's.
    pub fn file_history(&self, refname: &str, path: &str) -> Result<Vec<FileVersion>, RepoError> {
        let head = self.resolve(refname)?;
        let mut walk = self.repo.revwalk()?;
        walk.push(head)?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
        walk.simplify_first_parent()?;
        let mut out = Vec::new();
        for oid in walk {
            let commit = self.repo.find_commit(oid?)?;
            let Some(blob) = blob_at(&commit, path)? else {
                continue;
            };
            let parent_blob = match commit.parents().next() {
                Some(p) => blob_at(&p, path)?,
                None => None,
            };
            if parent_blob == Some(blob) {
                continue;
            }
            let author = commit.author();
            out.push(FileVersion {
                commit: commit.id().to_string(),
                time: commit.time().seconds(),
                author: format!(
                    "{} <{}>",
                    author.name().unwrap_or("?"),
                    author.email().unwrap_or("?")
                ),
                blob: blob.to_string(),
                subject: commit.summary().ok().flatten().unwrap_or("").to_string(),
            });
        }
        Ok(out)
    }

    /// The message of `commit` (a commit id or ref).
    pub fn message(&self, commit: &str) -> Result<String, RepoError> {
        let c = self.repo.find_commit(self.resolve(commit)?)?;
        Ok(c.message().unwrap_or_default().to_string())
    }

    /// Paths (files) that differ between two refs, sorted.
    pub fn changed_paths(&self, base: &str, head: &str) -> Result<Vec<String>, RepoError> {
        let base = self.repo.find_commit(self.resolve(base)?)?.tree()?;
        let head = self.repo.find_commit(self.resolve(head)?)?.tree()?;
        let diff = self
            .repo
            .diff_tree_to_tree(Some(&base), Some(&head), None)?;
        let mut out = Vec::new();
        for delta in diff.deltas() {
            for file in [delta.old_file(), delta.new_file()] {
                if let Some(p) = file.path().and_then(|p| p.to_str()) {
                    out.push(p.replace('\\', "/"));
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Stages every file of the working tree (respecting .gitignore) and
    /// commits on HEAD. Returns the new commit.
    pub fn commit_all(
        &self,
        message: &str,
        author: &git2::Signature<'_>,
    ) -> Result<Oid, RepoError> {
        let mut index = self.repo.index()?;
        index.add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)?;
        index.update_all(["*"].iter(), None)?;
        index.write()?;
        let tree = self.repo.find_tree(index.write_tree()?)?;
        let parent = match self.repo.head() {
            Ok(h) => Some(h.peel_to_commit()?),
            Err(_) => None,
        };
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        Ok(self
            .repo
            .commit(Some("HEAD"), author, author, message, &tree, &parents)?)
    }

    /// The signature for commits made by promptgate: the repository's
    /// configured user, else a fixed tool identity.
    pub fn signature(&self) -> Result<git2::Signature<'static>, RepoError> {
        match self.repo.signature() {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Ok(git2::Signature::now("promptgate", "promptgate@localhost")?),
        }
    }
}

fn blob_at(commit: &git2::Commit<'_>, path: &str) -> Result<Option<Oid>, RepoError> {
    let tree = commit.tree()?;
    match tree.get_path(Path::new(path)) {
        Ok(entry) if entry.kind() == Some(git2::ObjectType::Blob) => Ok(Some(entry.id())),
        Ok(_) => Ok(None),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Initialises a repository at `dir` with `main` as the initial branch.
pub fn init_repo(dir: &Path) -> Result<GitRepo, RepoError> {
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = Repository::init_opts(dir, &opts).map_err(|source| RepoError::NotARepo {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(GitRepo { repo })
}
