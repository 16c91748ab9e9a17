//! Settings: which `promptgate.yaml` a command reads, then the environment,
//! then flags, resolved once into one [`Settings`] before any work starts
//! (two stages: the raw [`Overrides`] of flags and environment, resolved
//! against the file by [`Settings::resolve`]).
//!
//! Which file, by what the command is about ([`Scope`]):
//! - [`Scope::Production`]: what runs in production (`serve`, `canary`,
//!   `logs`, and every command reading the request logs). `server.control_ref`
//!   comes from HEAD's committed promptgate.yaml (default `HEAD`, the branch
//!   checked out); everything else from the control ref's, as committed. A
//!   working-tree edit never moves where `serve` writes or where the readers
//!   look.
//! - [`Scope::Commit`]: one commit's files (`render --ref`, `eval --ref`).
//! - [`Scope::WorkTree`]: work in progress (`validate`, `render --worktree`,
//!   `eval --worktree`).
//!
//! Then the environment ([`ENV_CONTROL_REF`], [`ENV_LISTEN`], [`ENV_LOG_DIR`]),
//! then flags, each over the one before. A log folder from the file or the
//! environment is relative to the repository root; one on the command line
//! to the current folder, as any path there.
//!
//! Reload (`serve`): [`Settings::with_config`] applies the same overrides to
//! a newer promptgate.yaml; [`Settings::pending_restart`] lists what only a
//! restart can change ([`RESTART_ONLY`]).
//!
//! A new command about production gets its settings and log roots in one
//! call:
//!
//! ```ignore
//! let settings = Settings::production(args.repo, args.logs)?; // --repo, --logs PATH...
//! let roots = settings.readable_log_roots();                  // what to read
//! ```
//!
//! ([`log_roots`] when it needs nothing else and should work outside a
//! repository when roots are given.)

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::project::{CONFIG_FILE, render_all};
use crate::repo::{FileSource, GitRepo, GitTree, RepoError, WorkTree};
use crate::spec::config::Config;
use crate::spec::{Diagnostic, FileKind, SourceFile};

/// Overrides `server.control_ref`.
pub const ENV_CONTROL_REF: &str = "PROMPTGATE_CONTROL_REF";
/// Overrides `server.listen`.
pub const ENV_LISTEN: &str = "PROMPTGATE_LISTEN";
/// Overrides `logging.dir` (relative to the repository root, like it).
pub const ENV_LOG_DIR: &str = "PROMPTGATE_LOG_DIR";

/// The settings `serve` reads once, at start-up: a committed change of one
/// of them waits for a restart (shown at `/status`). Every other `logging`
/// and `server` setting reloads with the prompts.
pub const RESTART_ONLY: [&str; 4] = [
    "server.listen",
    "server.control_ref",
    "logging.dir",
    "logging.channel_capacity",
];

/// State that is not configuration (results, the response cache), under
/// the repository root.
pub const STATE_DIR: &str = ".promptgate";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("reading the current folder: {0}")]
    CurrentDir(std::io::Error),
    #[error("{}: a bare repository has no working tree", .0.display())]
    Bare(PathBuf),
    #[error("{at} has no {CONFIG_FILE}")]
    NoConfig { at: String },
    #[error("{CONFIG_FILE} at {at}:\n{}", render_all(.diagnostics))]
    Invalid {
        at: String,
        diagnostics: Vec<Diagnostic>,
    },
}

/// Which promptgate.yaml a command reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The control ref as committed: what runs in production.
    Production,
    /// The files of one commit (any revision git understands).
    Commit(String),
    /// The working tree: work in progress.
    WorkTree,
}

/// Stage one: what the command line and the environment say. Unset fields
/// fall back to promptgate.yaml.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--repo`: a folder inside the repository (default: the current one).
    pub repo: Option<PathBuf>,
    /// `--control-ref`, else [`ENV_CONTROL_REF`].
    pub control_ref: Option<String>,
    /// `--listen`, else [`ENV_LISTEN`].
    pub listen: Option<String>,
    /// [`ENV_LOG_DIR`]: where `serve` writes, relative to the repository root.
    pub log_dir: Option<String>,
    /// Log roots a reader reads (`--logs`, `--dir`; one per replica),
    /// relative to the current folder. Empty: the log folder.
    pub log_roots: Vec<PathBuf>,
}

impl Overrides {
    /// Fills what the flags left unset from the process environment.
    pub fn with_env(self) -> Overrides {
        self.with_env_from(|name| std::env::var(name).ok())
    }

    /// Like [`with_env`](Self::with_env) with `var` as the environment; an
    /// empty value counts as unset.
    pub fn with_env_from(mut self, var: impl Fn(&str) -> Option<String>) -> Overrides {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        self.control_ref = self.control_ref.or_else(|| var(ENV_CONTROL_REF));
        self.listen = self.listen.or_else(|| var(ENV_LISTEN));
        self.log_dir = self.log_dir.or_else(|| var(ENV_LOG_DIR));
        self
    }
}

/// Where a command's files come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// A commit, named by `git_ref` when resolved.
    Commit {
        git_ref: String,
        commit: String,
    },
    WorkTree,
}

/// The repository and which of its file trees a command reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The working tree root.
    pub root: PathBuf,
    pub origin: Origin,
    /// `server.control_ref` as overridden, else from HEAD's promptgate.yaml
    /// ([`Scope::Production`]) or from `origin`'s.
    control_ref: Option<String>,
}

impl Location {
    /// Resolves `scope` in the repository `overrides.repo` names. Cheap:
    /// reads HEAD's promptgate.yaml only for [`Scope::Production`] without
    /// an overridden control ref.
    pub fn resolve(scope: &Scope, overrides: &Overrides) -> Result<Location, SettingsError> {
        let root = repo_root(overrides.repo.as_deref())?;
        let git = GitRepo::open(&root)?;
        let commit = |git_ref: &str| -> Result<Origin, SettingsError> {
            Ok(Origin::Commit {
                git_ref: git_ref.to_string(),
                commit: git.resolve(git_ref)?.to_string(),
            })
        };
        let (origin, control_ref) = match scope {
            Scope::WorkTree => (Origin::WorkTree, overrides.control_ref.clone()),
            Scope::Commit(r) => (commit(r)?, overrides.control_ref.clone()),
            Scope::Production => {
                let control_ref = match &overrides.control_ref {
                    Some(r) => r.clone(),
                    None => {
                        read_config(&git.tree_at("HEAD")?, "HEAD")?
                            .server
                            .control_ref
                    }
                };
                (commit(&control_ref)?, Some(control_ref))
            }
        };
        Ok(Location {
            root,
            origin,
            control_ref,
        })
    }

    /// The files of the origin: what to load a project from.
    pub fn files<'r>(&self, git: &'r GitRepo) -> Result<Files<'r>, RepoError> {
        Ok(match &self.origin {
            Origin::Commit { commit, .. } => Files::Commit(git.tree_at(commit)?),
            Origin::WorkTree => Files::WorkTree(WorkTree::new(&self.root)),
        })
    }

    /// The origin in words: `working tree`, or `<ref> (commit <sha>)`.
    pub fn describe(&self) -> String {
        match &self.origin {
            Origin::Commit { git_ref, commit } => {
                format!("{git_ref} (commit {})", &commit[..12.min(commit.len())])
            }
            Origin::WorkTree => "working tree".to_string(),
        }
    }
}

/// The files a [`Location`] names.
pub enum Files<'r> {
    Commit(GitTree<'r>),
    WorkTree(WorkTree),
}

impl Files<'_> {
    fn source(&self) -> &dyn FileSource {
        match self {
            Files::Commit(t) => t,
            Files::WorkTree(w) => w,
        }
    }
}

impl FileSource for Files<'_> {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, RepoError> {
        self.source().read(path)
    }
    fn list(&self, dir: &str) -> Result<Vec<String>, RepoError> {
        self.source().list(dir)
    }
    fn blob_id(&self, path: &str) -> Result<Option<String>, RepoError> {
        self.source().blob_id(path)
    }
    fn commit(&self) -> Option<git2::Oid> {
        self.source().commit()
    }
}

/// Stage two: everything a command needs to know about its environment,
/// resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub location: Location,
    /// The promptgate.yaml that was read.
    pub config: Config,
    /// The branch whose rollout.yaml is live.
    pub control_ref: String,
    /// Where `serve` writes request logs and feedback (absolute).
    pub log_dir: PathBuf,
    /// What readers read: the roots given on the command line, else `log_dir`.
    pub log_roots: Vec<PathBuf>,
    /// Whether `log_roots` came from the command line (each must exist)
    /// rather than being the default `log_dir` (absent: no logs yet).
    pub log_roots_given: bool,
    /// `serve`'s listen address.
    pub listen: String,
    /// Results and caches: `<root>/.promptgate`.
    pub state_dir: PathBuf,
    overrides: Overrides,
}

/// A restart-only setting whose committed value differs from the running one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRestart {
    /// E.g. `logging.dir`.
    pub setting: String,
    pub running: String,
    pub committed: String,
}

impl Settings {
    /// Resolves the settings of a command about `scope`.
    pub fn resolve(scope: &Scope, overrides: Overrides) -> Result<Settings, SettingsError> {
        let location = Location::resolve(scope, &overrides)?;
        let git = GitRepo::open(&location.root)?;
        let config = read_config(&location.files(&git)?, &location.describe())?;
        Ok(Settings::derive(location, config, overrides))
    }

    /// The settings of a command about production (`serve`, `canary`,
    /// `logs` and every reader of the request logs): the control ref's
    /// promptgate.yaml, the process environment, and these flags.
    pub fn production(
        repo: Option<PathBuf>,
        log_roots: Vec<PathBuf>,
    ) -> Result<Settings, SettingsError> {
        let overrides = Overrides {
            repo,
            log_roots,
            ..Overrides::default()
        };
        Settings::resolve(&Scope::Production, overrides.with_env())
    }

    fn derive(location: Location, config: Config, overrides: Overrides) -> Settings {
        let root = &location.root;
        let control_ref = location
            .control_ref
            .clone()
            .unwrap_or_else(|| config.server.control_ref.clone());
        let log_dir = root.join(overrides.log_dir.as_deref().unwrap_or(&config.logging.dir));
        let log_roots_given = !overrides.log_roots.is_empty();
        let log_roots = if log_roots_given {
            overrides.log_roots.clone()
        } else {
            vec![log_dir.clone()]
        };
        Settings {
            control_ref,
            log_roots,
            log_roots_given,
            listen: overrides
                .listen
                .clone()
                .unwrap_or_else(|| config.server.listen.clone()),
            state_dir: root.join(STATE_DIR),
            log_dir,
            config,
            overrides,
            location,
        }
    }

    pub fn root(&self) -> &Path {
        &self.location.root
    }

    /// The same flags and environment over another promptgate.yaml from the
    /// same place (`serve` after a reload): `server.control_ref` is then
    /// that file's.
    pub fn with_config(&self, config: Config) -> Settings {
        let location = Location {
            control_ref: self.overrides.control_ref.clone(),
            ..self.location.clone()
        };
        Settings::derive(location, config, self.overrides.clone())
    }

    /// The log roots to read that exist: the default log folder is skipped
    /// while absent (no traffic yet), roots named on the command line are
    /// kept for the reader to report.
    pub fn readable_log_roots(&self) -> Vec<PathBuf> {
        if self.log_roots_given {
            self.log_roots.clone()
        } else {
            self.log_roots
                .iter()
                .filter(|p| p.exists())
                .cloned()
                .collect()
        }
    }

    /// The values of the [`RESTART_ONLY`] settings, in its order.
    fn restart_only_values(&self) -> [String; 4] {
        [
            self.listen.clone(),
            self.control_ref.clone(),
            self.log_dir.display().to_string(),
            self.config.logging.channel_capacity.to_string(),
        ]
    }

    /// The [`RESTART_ONLY`] settings whose value under `committed` differs
    /// from the running one: committed, not yet in force.
    pub fn pending_restart(&self, committed: &Config) -> Vec<PendingRestart> {
        let next = self.with_config(committed.clone());
        RESTART_ONLY
            .iter()
            .zip(self.restart_only_values())
            .zip(next.restart_only_values())
            .filter(|((_, running), committed)| running != committed)
            .map(|((setting, running), committed)| PendingRestart {
                setting: setting.to_string(),
                running,
                committed,
            })
            .collect()
    }
}

/// The log roots a reader of the request logs reads: `given` (the command
/// line's, one per replica) as they are, else the log folder of the
/// production settings when it exists. Needs a repository only when
/// nothing is given.
pub fn log_roots(
    repo: Option<PathBuf>,
    given: Vec<PathBuf>,
) -> Result<Vec<PathBuf>, SettingsError> {
    if !given.is_empty() {
        return Ok(given);
    }
    Ok(Settings::production(repo, Vec::new())?.readable_log_roots())
}

/// The repository root for `--repo` (default: discovered from the current
/// folder).
pub fn repo_root(repo: Option<&Path>) -> Result<PathBuf, SettingsError> {
    let start = match repo {
        Some(p) => p.to_path_buf(),
        None => std::env::current_dir().map_err(SettingsError::CurrentDir)?,
    };
    let git = GitRepo::discover(&start)?;
    git.workdir()
        .map(Path::to_path_buf)
        .ok_or(SettingsError::Bare(start))
}

fn read_config(files: &dyn FileSource, at: &str) -> Result<Config, SettingsError> {
    let text = files
        .read_string(CONFIG_FILE)?
        .ok_or_else(|| SettingsError::NoConfig { at: at.to_string() })?;
    SourceFile::new(CONFIG_FILE, text)
        .parse(FileKind::Config)
        .map_err(|diagnostics| SettingsError::Invalid {
            at: at.to_string(),
            diagnostics,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "version: 1
providers: {p: {kind: ollama, base_url: 'http://127.0.0.1:9'}}
models: {m: {provider: p, name: n}}
logging: {dir: committed-logs, flush_interval_ms: 1000}
server: {listen: '127.0.0.1:8787'}
";

    /// A repository with CONFIG committed on `main`, checked out.
    fn repo() -> (tempfile::TempDir, GitRepo) {
        let dir = tempfile::tempdir().unwrap();
        let git = crate::repo::init_repo(dir.path()).unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), CONFIG).unwrap();
        let sig = git2::Signature::now("T", "t@example.com").unwrap();
        git.commit_all("config", &sig).unwrap();
        (dir, git)
    }

    fn overrides(dir: &Path) -> Overrides {
        Overrides {
            repo: Some(dir.to_path_buf()),
            ..Overrides::default()
        }
    }

    #[test]
    fn production_reads_the_committed_file_and_the_work_tree_its_own() {
        let (dir, _git) = repo();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            CONFIG.replace("committed-logs", "edited-logs"),
        )
        .unwrap();
        let prod = Settings::resolve(&Scope::Production, overrides(dir.path())).unwrap();
        assert_eq!(prod.log_dir, prod.root().join("committed-logs"));
        assert_eq!(prod.control_ref, "HEAD");
        assert!(matches!(prod.location.origin, Origin::Commit { .. }));
        let work = Settings::resolve(&Scope::WorkTree, overrides(dir.path())).unwrap();
        assert_eq!(work.log_dir, work.root().join("edited-logs"));
        let head = Settings::resolve(&Scope::Commit("HEAD".into()), overrides(dir.path())).unwrap();
        assert_eq!(head.log_dir, prod.log_dir);
    }

    #[test]
    fn flags_win_over_the_environment_which_wins_over_the_file() {
        let (dir, _git) = repo();
        let env = |name: &str| match name {
            ENV_LISTEN => Some("0.0.0.0:1".to_string()),
            ENV_LOG_DIR => Some("env-logs".to_string()),
            ENV_CONTROL_REF => Some(String::new()),
            _ => None,
        };
        let from_env = overrides(dir.path()).with_env_from(env);
        let s = Settings::resolve(&Scope::Production, from_env).unwrap();
        assert_eq!(s.listen, "0.0.0.0:1");
        assert_eq!(s.log_dir, s.root().join("env-logs"));
        // An empty variable is unset.
        assert_eq!(s.control_ref, "HEAD");
        let flags = Overrides {
            listen: Some("127.0.0.1:0".into()),
            log_roots: vec![PathBuf::from("/elsewhere")],
            ..overrides(dir.path())
        }
        .with_env_from(env);
        let s = Settings::resolve(&Scope::Production, flags).unwrap();
        assert_eq!(s.listen, "127.0.0.1:0");
        assert_eq!(s.log_roots, vec![PathBuf::from("/elsewhere")]);
        assert!(s.log_roots_given);
    }

    #[test]
    fn restart_only_changes_are_pending_and_reloadable_ones_are_not() {
        let (dir, _git) = repo();
        let s = Settings::resolve(&Scope::Production, overrides(dir.path())).unwrap();
        let parse = |text: &str| -> Config { serde_yaml_ng::from_str(text).unwrap() };
        let reloadable = parse(&CONFIG.replace("flush_interval_ms: 1000", "flush_interval_ms: 50"));
        assert!(s.pending_restart(&reloadable).is_empty());
        let moved = parse(
            &CONFIG
                .replace("committed-logs", "new-logs")
                .replace("8787", "9999"),
        );
        let pending = s.pending_restart(&moved);
        let names: Vec<&str> = pending.iter().map(|p| p.setting.as_str()).collect();
        assert_eq!(names, ["server.listen", "logging.dir"]);
        assert!(pending[1].committed.ends_with("new-logs"), "{pending:?}");
        // An overridden setting does not wait for the file.
        let pinned = Settings::resolve(
            &Scope::Production,
            Overrides {
                listen: Some("127.0.0.1:0".into()),
                ..overrides(dir.path())
            },
        )
        .unwrap();
        let names: Vec<String> = pinned
            .pending_restart(&moved)
            .into_iter()
            .map(|p| p.setting)
            .collect();
        assert_eq!(names, ["logging.dir"]);
    }

    #[test]
    fn a_missing_or_invalid_file_names_where_it_was_read() {
        let (dir, _git) = repo();
        std::fs::write(dir.path().join(CONFIG_FILE), "version: 1\nbogus: 1\n").unwrap();
        let err = Settings::resolve(&Scope::WorkTree, overrides(dir.path())).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("promptgate.yaml at working tree"), "{text}");
        assert!(text.contains("bogus"), "{text}");
        std::fs::remove_file(dir.path().join(CONFIG_FILE)).unwrap();
        let err = Settings::resolve(&Scope::WorkTree, overrides(dir.path())).unwrap_err();
        assert_eq!(err.to_string(), "working tree has no promptgate.yaml");
        // The committed file is still there.
        assert!(Settings::resolve(&Scope::Production, overrides(dir.path())).is_ok());
    }
}
