//! Live reload: watch the git refs, rebuild the state aside, swap it.
//!
//! Invariants (see also [`super::state`]):
//! - All fallible work (git reads, parsing, validation, template
//!   compilation, model clients) happens in [`super::state::build`] on the
//!   blocking pool; the swap itself cannot fail. A refused state leaves the
//!   old one serving and is reported (log, counter, `/status` with the
//!   offending commit).
//! - Reloads are serialized; a burst of changes becomes one reload (the
//!   watcher waits for [`QUIET`] without events, at most [`MAX_DELAY`]).
//! - The watcher watches directories, never files: git and editors replace
//!   files by rename, which would orphan a watch on the file itself.
//! - A check that finds the same commits as the serving state does not
//!   rebuild (working-tree edits and index updates are not reloads).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::Utc;
use tokio::sync::mpsc;

use super::state::{self, Breakers, BuildError, ServingState, TemplateCache};
use super::status::{ReloadCounts, ReloadResult};
use crate::repo::GitRepo;

/// Quiet time that ends a burst of file events.
pub const QUIET: Duration = Duration::from_millis(100);
/// Longest a reload waits for a burst to end.
pub const MAX_DELAY: Duration = Duration::from_millis(1000);

/// The last reload attempt and the counts, for `/status`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadStatus {
    pub last: Option<ReloadResult>,
    pub counts: ReloadCounts,
}

/// What one reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    Swapped { generation: u64 },
    Unchanged,
    Refused(BuildError),
}

/// Called after every reload attempt that built (or failed to build) a
/// state: with the new state once it is swapped in, None when refused.
pub type ReloadHook = Box<dyn Fn(Option<&ServingState>) + Send + Sync>;

/// Owns the swappable state and everything needed to rebuild it.
pub struct Reloader {
    root: PathBuf,
    control_ref: String,
    current: ArcSwap<ServingState>,
    cache: Arc<Mutex<TemplateCache>>,
    breakers: Arc<Breakers>,
    /// Serializes reloads.
    lock: tokio::sync::Mutex<()>,
    status: Mutex<ReloadStatus>,
    on_reload: Option<ReloadHook>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("root", &self.root)
            .field("control_ref", &self.control_ref)
            .finish()
    }
}

impl Reloader {
    /// Builds the first state (blocking); fails if it is invalid.
    pub fn start(
        root: &Path,
        control_ref: &str,
        breakers: Arc<Breakers>,
        on_reload: Option<ReloadHook>,
    ) -> Result<Reloader, BuildError> {
        let mut cache = TemplateCache::default();
        let first = state::build(root, control_ref, 1, &mut cache, &breakers)?;
        Ok(Reloader {
            root: root.to_path_buf(),
            control_ref: control_ref.to_string(),
            current: ArcSwap::from_pointee(first),
            cache: Arc::new(Mutex::new(cache)),
            breakers,
            lock: tokio::sync::Mutex::new(()),
            status: Mutex::new(ReloadStatus {
                last: None,
                counts: ReloadCounts::default(),
            }),
            on_reload,
        })
    }

    /// The state to serve one request from.
    pub fn current(&self) -> Arc<ServingState> {
        self.current.load_full()
    }

    /// The circuit breakers of every upstream seen.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Rebuilds the state if the commits it is built from moved (always,
    /// when `force`), and swaps it in if it is valid.
    pub async fn reload(&self, force: bool) -> ReloadOutcome {
        let _serial = self.lock.lock().await;
        let cur = self.current();
        let root = self.root.clone();
        let control_ref = self.control_ref.clone();
        let cache = self.cache.clone();
        let breakers = self.breakers.clone();
        let next_gen = cur.generation + 1;
        let old_fp = cur.fingerprint();
        let t0 = std::time::Instant::now();
        let built = tokio::task::spawn_blocking(move || {
            if !force {
                let repo = GitRepo::open(&root).map_err(|e| BuildError::at(None, e.into()))?;
                if state::fingerprint(&repo, &control_ref).is_ok_and(|fp| fp == old_fp) {
                    return Ok(None);
                }
            }
            let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
            state::build(&root, &control_ref, next_gen, &mut cache, &breakers).map(Some)
        })
        .await
        .unwrap_or_else(|e| Err(BuildError::at(None, e.into())));
        let build_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let mut swapped = None;
        let outcome = match built {
            Ok(None) => {
                status.counts.unchanged += 1;
                return ReloadOutcome::Unchanged;
            }
            Ok(Some(new)) => {
                let commit = new.control_commit.clone();
                self.current.store(Arc::new(new));
                swapped = Some(self.current());
                status.counts.ok += 1;
                status.last = Some(ReloadResult {
                    ok: true,
                    at: Utc::now(),
                    commit: Some(commit.clone()),
                    error: None,
                    generation: next_gen,
                    build_ms,
                });
                tracing::info!(commit = %commit, generation = next_gen, "reloaded");
                ReloadOutcome::Swapped {
                    generation: next_gen,
                }
            }
            Err(e) => {
                status.counts.failed += 1;
                status.last = Some(ReloadResult {
                    ok: false,
                    at: Utc::now(),
                    commit: e.commit.clone(),
                    error: Some(e.to_string()),
                    generation: cur.generation,
                    build_ms,
                });
                tracing::error!(commit = ?e.commit, error = %e, "reload refused; the previous state keeps serving");
                ReloadOutcome::Refused(e)
            }
        };
        drop(status);
        if let Some(hook) = &self.on_reload {
            hook(swapped.as_deref());
        }
        outcome
    }

    /// Starts watching the repository; reloads run on a tokio task until
    /// the returned watcher is dropped.
    pub fn watch(self: &Arc<Self>) -> Result<RefWatcher, notify::Error> {
        use notify::{EventKind, RecursiveMode, Watcher};
        let (tx, rx) = mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                match res {
                    // Our own reads (git2 opening refs) must not trigger reloads.
                    Ok(ev) if matches!(ev.kind, EventKind::Access(_)) => {}
                    Ok(_) => {
                        let _ = tx.send(());
                    }
                    Err(e) => tracing::warn!(error = %e, "file watcher error"),
                }
            })?;
        let repo = GitRepo::open(&self.root).map_err(|e| notify::Error::generic(&e.to_string()))?;
        let git_dir = repo.git_dir().to_path_buf();
        // rollout.yaml's folder (the working tree root), the git folder
        // (HEAD, packed-refs) and every ref below refs/.
        watcher.watch(&self.root, RecursiveMode::NonRecursive)?;
        watcher.watch(&git_dir, RecursiveMode::NonRecursive)?;
        // A linked worktree keeps its HEAD in its own folder but the
        // branches (refs/, packed-refs) in the common one.
        let common = repo.inner().commondir().to_path_buf();
        if common != git_dir {
            watcher.watch(&common, RecursiveMode::NonRecursive)?;
        }
        watcher.watch(&common.join("refs"), RecursiveMode::Recursive)?;
        let task = tokio::spawn(debounce_loop(self.clone(), rx));
        Ok(RefWatcher {
            _watcher: watcher,
            task,
        })
    }
}

async fn debounce_loop(reloader: Arc<Reloader>, mut rx: mpsc::UnboundedReceiver<()>) {
    while rx.recv().await.is_some() {
        let start = tokio::time::Instant::now();
        loop {
            let left = MAX_DELAY.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(QUIET.min(left), rx.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        reloader.reload(false).await;
    }
}

/// A running watcher; dropping it stops watching.
pub struct RefWatcher {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RefWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
