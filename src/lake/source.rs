//! Log sources: local log roots and `s3://bucket/prefix` URLs, resolved to
//! local log roots every reader understands.
//!
//! A store's objects are fetched into a temporary folder laid out like a log
//! root (`requests/date=.../`, `feedback/date=.../`), so `canary`, `drift` and
//! `logs query` read all replicas of the fleet through the code that reads
//! local roots, with its ordering, supersession and feedback rules. Only the
//! partitions that may hold the asked dates are listed and fetched.

use std::future::Future;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use futures_util::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use super::store::{self, Patience, StoreUrl, is_store_url};
use super::{FEEDBACK_DIR, LakeError, REQUESTS_DIR, Result};
use crate::spec::config::StoreOptions;

/// Objects fetched at once.
const FETCH_CONCURRENCY: usize = 16;

/// One `--logs` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSource {
    /// A log root, partition folder or Parquet file on this machine.
    Local(PathBuf),
    /// A prefix in an S3-compatible bucket holding `requests/` and `feedback/`.
    Store(StoreUrl),
}

impl LogSource {
    pub fn parse(arg: &Path) -> Result<LogSource> {
        match arg.to_str() {
            Some(s) if is_store_url(s) => Ok(LogSource::Store(StoreUrl::parse(s)?)),
            _ => Ok(LogSource::Local(arg.to_path_buf())),
        }
    }
}

/// Whether any of `sources` names an object store.
pub fn any_store(sources: &[PathBuf]) -> bool {
    sources.iter().any(|p| p.to_str().is_some_and(is_store_url))
}

/// Local log roots standing for a list of sources; fetched objects live as
/// long as the view.
#[derive(Debug)]
pub struct LocalView {
    roots: Vec<PathBuf>,
    /// Objects fetched from stores.
    pub fetched: usize,
    /// Objects a cached view already held (see [`LocalView::open_cached`]).
    pub reused: usize,
    _temp: Option<tempfile::TempDir>,
}

impl LocalView {
    /// Resolves `sources`; a store's request partitions dated before `since`
    /// are skipped (feedback is fetched whole: it may rate older calls).
    pub fn open(
        sources: &[PathBuf],
        opts: &StoreOptions,
        since: Option<NaiveDate>,
    ) -> Result<LocalView> {
        Self::open_in(sources, opts, since, None)
    }

    /// [`LocalView::open`] for a reader that comes back (serve's analyzer,
    /// every `interval_s`): a store's objects are kept under `cache` between
    /// views and fetched again only when new or of another size (objects
    /// are written once under unique names), and cached files the listing
    /// no longer names (older partitions, objects gone) are deleted, so the
    /// cache holds the window and a round downloads only what is new.
    pub fn open_cached(
        sources: &[PathBuf],
        opts: &StoreOptions,
        since: Option<NaiveDate>,
        cache: &Path,
    ) -> Result<LocalView> {
        Self::open_in(sources, opts, since, Some(cache))
    }

    fn open_in(
        sources: &[PathBuf],
        opts: &StoreOptions,
        since: Option<NaiveDate>,
        cache: Option<&Path>,
    ) -> Result<LocalView> {
        let parsed = sources
            .iter()
            .map(|s| LogSource::parse(s))
            .collect::<Result<Vec<_>>>()?;
        if !parsed.iter().any(|s| matches!(s, LogSource::Store(_))) {
            return Ok(LocalView {
                roots: sources.to_vec(),
                fetched: 0,
                reused: 0,
                _temp: None,
            });
        }
        let temp = tempfile::Builder::new()
            .prefix("promptgate-lake-")
            .tempdir()
            .map_err(LakeError::io(std::env::temp_dir()))?;
        let mut roots = Vec::new();
        let mut store_roots = Vec::new();
        let (mut fetched, mut reused) = (0, 0);
        for (i, src) in parsed.iter().enumerate() {
            if let LogSource::Store(url) = src {
                let root = match cache {
                    Some(c) => c.join(format!(
                        "store-{:016x}",
                        crate::drift::features::id_hash(&url.to_string())
                    )),
                    None => temp.path().join(format!("store-{i}")),
                };
                let client = store::open(url, opts, Patience::Reader)?;
                let count = block_on(fetch_prefix(
                    client,
                    url.clone(),
                    root.clone(),
                    since,
                    cache.is_some(),
                ))??;
                fetched += count.fetched;
                reused += count.reused;
                store_roots.push(root);
            }
        }
        let mut store_roots_in_order = store_roots.iter();
        // Local roots after every store: a file uploaded in between is in
        // the store listing or still here, never in neither unless its
        // local copy went too (then the next read sees it).
        for (i, src) in parsed.into_iter().enumerate() {
            match src {
                LogSource::Store(_) => roots.extend(store_roots_in_order.next().cloned()),
                LogSource::Local(p) => match super::upload::read_replica(&p) {
                    Some(replica) => {
                        let mirror = temp.path().join(format!("local-{i}"));
                        mirror_not_uploaded(&p, &replica, &store_roots, &mirror, since)?;
                        roots.push(mirror);
                    }
                    None => roots.push(p),
                },
            }
        }
        Ok(LocalView {
            roots,
            fetched,
            reused,
            _temp: Some(temp),
        })
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }
}

/// Runs `fut` to completion on a runtime of its own, on a thread of its
/// own, so that callers inside and outside a runtime can both wait for it.
pub(crate) fn block_on<T: Send>(fut: impl Future<Output = T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(LakeError::io("tokio runtime"))?;
            Ok(rt.block_on(fut))
        })
        .join()
        .unwrap_or_else(|_| {
            Err(LakeError::Io {
                path: PathBuf::from("object store reader"),
                source: std::io::Error::other("the reader thread panicked"),
            })
        })
    })
}

/// Links (or copies) into `mirror` the files of the uploading log root
/// `local` (replica `replica`) that no store root among `stores` holds:
/// request files whose object (`<replica>-<name>` in the same partition) was
/// not fetched, and all feedback (readers keep one record per feedback id).
/// A file that was uploaded and deleted meanwhile is skipped.
fn mirror_not_uploaded(
    local: &Path,
    replica: &str,
    stores: &[PathBuf],
    mirror: &Path,
    since: Option<NaiveDate>,
) -> Result<()> {
    let requests = local.join(REQUESTS_DIR);
    std::fs::create_dir_all(mirror.join(REQUESTS_DIR)).map_err(LakeError::io(mirror))?;
    for (date, dir) in crate::logstore::partition_dirs(&requests)? {
        if since.is_some_and(|s| date < s) {
            continue;
        }
        let partition = crate::logstore::partition_name(date);
        for path in crate::logstore::partition_files(&dir)?.live {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let object = format!("{replica}-{name}");
            if stores
                .iter()
                .any(|s| s.join(REQUESTS_DIR).join(&partition).join(&object).exists())
            {
                continue;
            }
            link_or_copy(
                &path,
                &mirror.join(REQUESTS_DIR).join(&partition).join(name),
            )?;
        }
    }
    let feedback = local.join(FEEDBACK_DIR);
    for (date, dir) in crate::logstore::partition_dirs(&feedback)? {
        let partition = crate::logstore::partition_name(date);
        for path in crate::logstore::partition_files(&dir)?.live {
            if let Some(name) = path.file_name() {
                link_or_copy(
                    &path,
                    &mirror.join(FEEDBACK_DIR).join(&partition).join(name),
                )?;
            }
        }
    }
    // Journals: the live one and rotated ones awaiting conversion.
    for entry in crate::logstore::entries(&feedback)? {
        let name = entry.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.ends_with(".jsonl") && !n.starts_with('.'))
        {
            link_or_copy(&entry.path(), &mirror.join(FEEDBACK_DIR).join(name))?;
        }
    }
    Ok(())
}

/// A hard link at `to` of `from` (its folders made), or a copy across file
/// systems; nothing when `from` is gone.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(LakeError::io(parent))?;
    }
    let done = std::fs::hard_link(from, to).or_else(|_| std::fs::copy(from, to).map(|_| ()));
    match done {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LakeError::io(from)(e)),
    }
}

/// The date of a key's `date=YYYY-MM-DD` segment.
pub(crate) fn key_date(key: &ObjectPath) -> Option<NaiveDate> {
    key.parts()
        .find_map(|p| crate::logstore::partition_date(p.as_ref()))
}

/// Whether a key's file name is one readers consider (`*.parquet`, not hidden).
pub(crate) fn is_data_key(key: &ObjectPath) -> bool {
    key.filename()
        .is_some_and(|n| n.ends_with(".parquet") && !n.starts_with('.'))
}

/// Objects downloaded and objects a cache already held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FetchCount {
    fetched: usize,
    reused: usize,
}

/// Copies `url`'s `requests/` (dated `since` or later) and `feedback/`
/// objects under `root`, keeping their keys below the prefix as paths.
/// With `reuse`, `root` is a cache from an earlier call: a file of the
/// object's size stays, files of objects not listed now are deleted.
async fn fetch_prefix(
    client: std::sync::Arc<dyn ObjectStore>,
    url: StoreUrl,
    root: PathBuf,
    since: Option<NaiveDate>,
    reuse: bool,
) -> Result<FetchCount> {
    let mut wanted = Vec::new();
    for (dir, prune) in [(REQUESTS_DIR, true), (FEEDBACK_DIR, false)] {
        let prefix = url.key([dir]);
        let metas: Vec<_> = client
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(LakeError::store(&url))?;
        for m in metas {
            if !is_data_key(&m.location) {
                continue;
            }
            if prune
                && let (Some(s), Some(d)) = (since, key_date(&m.location))
                && d < s
            {
                continue;
            }
            wanted.push((m.location, m.size));
        }
    }
    // Create the folders first: the fetches then only write files.
    let local_of = |key: &ObjectPath| -> PathBuf {
        let rel = key.prefix_match(&url.prefix).into_iter().flatten();
        let mut p = root.clone();
        for part in rel {
            p.push(part.as_ref());
        }
        p
    };
    std::fs::create_dir_all(root.join(REQUESTS_DIR)).map_err(LakeError::io(&root))?;
    let listed = wanted.len();
    if reuse {
        let keep: std::collections::HashSet<PathBuf> =
            wanted.iter().map(|(key, _)| local_of(key)).collect();
        remove_unlisted(&root, &keep)?;
        wanted.retain(|(key, size)| {
            std::fs::metadata(local_of(key)).map_or(true, |m| m.len() != *size)
        });
    }
    for (key, _) in &wanted {
        if let Some(parent) = local_of(key).parent() {
            std::fs::create_dir_all(parent).map_err(LakeError::io(parent))?;
        }
    }
    let fetched = wanted.len();
    futures_util::stream::iter(wanted)
        .map(|(key, _)| {
            let client = client.clone();
            let path = local_of(&key);
            let url = &url;
            async move {
                let bytes = client
                    .get(&key)
                    .await
                    .map_err(LakeError::store(format!("{url} ({key})")))?
                    .bytes()
                    .await
                    .map_err(LakeError::store(format!("{url} ({key})")))?;
                // Whole or absent under its name: a cache read later never
                // meets a half-written file (a dot name is not read).
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                let part = path.with_file_name(format!(".{}.part", name.unwrap_or_default()));
                tokio::fs::write(&part, bytes)
                    .await
                    .map_err(LakeError::io(&part))?;
                tokio::fs::rename(&part, &path)
                    .await
                    .map_err(LakeError::io(&path))
            }
        })
        .buffer_unordered(FETCH_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(FetchCount {
        fetched,
        reused: listed - fetched,
    })
}

/// Deletes the files under `root`'s `requests/` and `feedback/` partitions
/// that are not in `keep` (objects no longer listed, partitions now before
/// the window, leftovers of an interrupted fetch).
fn remove_unlisted(root: &Path, keep: &std::collections::HashSet<PathBuf>) -> Result<()> {
    for kind in [REQUESTS_DIR, FEEDBACK_DIR] {
        for (_, dir) in crate::logstore::partition_dirs(&root.join(kind))? {
            for entry in crate::logstore::entries(&dir)? {
                let path = entry.path();
                if !keep.contains(&path) {
                    std::fs::remove_file(&path).map_err(LakeError::io(&path))?;
                }
            }
        }
    }
    Ok(())
}

/// What a reader reads when no `--logs` is given: the store (when
/// `logging.store` is set; this replica's uploaded files and every other
/// replica's) and then the local log folder (files not uploaded yet).
/// [`LocalView`] reads a local root that uploads (it holds `.replica`)
/// without the files the store listing already holds, so a file between
/// its upload and its local delete counts once.
pub fn default_sources(
    logging: &crate::spec::config::LoggingConfig,
    log_dir: &Path,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(url) = &logging.store {
        out.push(PathBuf::from(url));
    }
    // Absent: no traffic yet on this machine.
    if log_dir.exists() {
        out.push(log_dir.to_path_buf());
    }
    out
}
