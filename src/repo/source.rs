//! A tree of files to read: a commit, or the working tree.

use std::path::{Component, Path, PathBuf};

use git2::{Oid, Repository};

use super::RepoError;

/// Read access to a tree of files by `/`-separated relative path.
pub trait FileSource {
    /// The file's bytes, or None when it does not exist.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, RepoError>;
    /// Names of the entries of a folder (files and folders), sorted; empty
    /// when the folder does not exist.
    fn list(&self, dir: &str) -> Result<Vec<String>, RepoError>;
    /// A content id of the file: the git blob id, also computed for working
    /// tree files so both kinds of source agree on unchanged files.
    fn blob_id(&self, path: &str) -> Result<Option<String>, RepoError>;
    /// The commit this source was read from; None for the working tree.
    fn commit(&self) -> Option<Oid>;
    /// Short description for messages: the commit or "working tree".
    fn describe(&self) -> String {
        match self.commit() {
            Some(c) => format!("commit {}", &c.to_string()[..12]),
            None => "working tree".to_string(),
        }
    }

    fn read_string(&self, path: &str) -> Result<Option<String>, RepoError> {
        match self.read(path)? {
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| RepoError::Path {
                    path: path.to_string(),
                    message: "not valid UTF-8".to_string(),
                }),
            None => Ok(None),
        }
    }
}

/// Rejects absolute paths and `..`, so a name taken from a file can never
/// reach outside the tree.
fn checked(path: &str) -> Result<&Path, RepoError> {
    let p = Path::new(path);
    let ok = p
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(p)
    } else {
        Err(RepoError::Path {
            path: path.to_string(),
            message: "path escapes the repository".to_string(),
        })
    }
}

/// The files of one commit.
pub struct GitTree<'r> {
    repo: &'r Repository,
    commit: Oid,
    tree: git2::Tree<'r>,
}

impl<'r> GitTree<'r> {
    pub fn new(repo: &'r Repository, commit: Oid) -> Result<GitTree<'r>, RepoError> {
        let tree = repo.find_commit(commit)?.tree()?;
        Ok(GitTree { repo, commit, tree })
    }

    fn entry(&self, path: &str) -> Result<Option<git2::TreeEntry<'static>>, RepoError> {
        if path.is_empty() || path == "." {
            return Ok(None);
        }
        match self.tree.get_path(checked(path)?) {
            Ok(e) => Ok(Some(e.to_owned())),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl FileSource for GitTree<'_> {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, RepoError> {
        match self.entry(path)? {
            Some(e) if e.kind() == Some(git2::ObjectType::Blob) => {
                Ok(Some(self.repo.find_blob(e.id())?.content().to_vec()))
            }
            _ => Ok(None),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, RepoError> {
        let tree = if dir.is_empty() || dir == "." {
            self.tree.clone()
        } else {
            match self.entry(dir)? {
                Some(e) if e.kind() == Some(git2::ObjectType::Tree) => {
                    self.repo.find_tree(e.id())?
                }
                _ => return Ok(Vec::new()),
            }
        };
        let mut names: Vec<String> = tree
            .iter()
            .filter_map(|e| e.name().ok().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    fn blob_id(&self, path: &str) -> Result<Option<String>, RepoError> {
        Ok(self
            .entry(path)?
            .filter(|e| e.kind() == Some(git2::ObjectType::Blob))
            .map(|e| e.id().to_string()))
    }

    fn commit(&self) -> Option<Oid> {
        Some(self.commit)
    }
}

/// The files on disk under a root folder.
pub struct WorkTree {
    root: PathBuf,
}

impl WorkTree {
    pub fn new(root: impl Into<PathBuf>) -> WorkTree {
        WorkTree { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl FileSource for WorkTree {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, RepoError> {
        let full = self.root.join(checked(path)?);
        match std::fs::read(&full) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(_) if full.is_dir() => Ok(None),
            Err(source) => Err(RepoError::Io { path: full, source }),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, RepoError> {
        let full = self.root.join(checked(dir)?);
        let entries = match std::fs::read_dir(&full) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(RepoError::Io { path: full, source }),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| RepoError::Io {
                path: full.clone(),
                source,
            })?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn blob_id(&self, path: &str) -> Result<Option<String>, RepoError> {
        match self.read(path)? {
            Some(bytes) => Ok(Some(
                Oid::hash_object(git2::ObjectType::Blob, &bytes)?.to_string(),
            )),
            None => Ok(None),
        }
    }

    fn commit(&self) -> Option<Oid> {
        None
    }
}
