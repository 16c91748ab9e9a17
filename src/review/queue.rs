//! The queue's journal: one folder, shared by every process that reviews
//! (serve's HTTP routes, `review next` in a terminal, `review sample`).
//!
//! # Files
//!
//! ```text
//! <log root>/review/journal.jsonl   one event a line (JSON), oldest first
//! <log root>/review/.queue.lock     advisory lock held for each operation
//! ```
//!
//! Events: `{"event":"enqueue","item":{..}}`, `{"event":"lease",..}`,
//! `{"event":"release","request_id","lease_id"}`,
//! `{"event":"decide",..decision}`. The state is the replay of the lines in
//! order.
//!
//! # Operations
//!
//! Every operation takes the lock (waiting), reads the lines appended since
//! this handle last looked (the whole file when it was replaced by a
//! compaction: another inode), checks the request against that state,
//! appends its events as one `write` and fsyncs, then releases the lock.
//! Returning `Ok` is the acknowledgement: the event survives a crash. A
//! failed append is truncated away so no partial line stays.
//!
//! A torn last line (a process killed mid-write, which only the lock holder
//! can be) is terminated with `\n` by the next operation and skipped, with a
//! warning, on every replay (the feedback journal's repair, reused).
//!
//! # Compaction
//!
//! [`ReviewQueue::compact`] rewrites the journal as one `enqueue` per item,
//! its `decide` if any and its unexpired lease, dropping released and
//! expired leases and skipped lines: a durable write to a temporary name,
//! fsync, rename over `journal.jsonl`, fsync of the folder. A crash leaves
//! the old journal or the new one, both with the same state.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Decision, ItemStatus, ItemView, Lease, ReviewError, ReviewItem, Verdict, check_reviewer,
};
use crate::durable;

const JOURNAL: &str = "journal.jsonl";
const LOCK: &str = ".queue.lock";

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    Enqueue {
        item: Box<ReviewItem>,
    },
    Lease(Lease),
    Release {
        request_id: String,
        lease_id: String,
    },
    Decide(Decision),
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    item: ReviewItem,
    lease: Option<Lease>,
    decision: Option<Decision>,
}

/// The replayed state: items in the order they were queued.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct State {
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    /// Lines that did not parse (torn writes).
    pub(crate) skipped: usize,
}

impl State {
    /// Applies one event. Events that do not fit the state (a lease of an
    /// unknown item) cannot be written by this module and are ignored.
    pub(crate) fn apply(&mut self, event: Event) {
        match event {
            Event::Enqueue { item } => {
                if !self.index.contains_key(&item.request_id) {
                    self.index
                        .insert(item.request_id.clone(), self.entries.len());
                    self.entries.push(Entry {
                        item: *item,
                        lease: None,
                        decision: None,
                    });
                }
            }
            Event::Lease(l) => {
                if let Some(e) = self.get_mut(&l.request_id) {
                    e.lease = Some(l);
                }
            }
            Event::Release {
                request_id,
                lease_id,
            } => {
                if let Some(e) = self.get_mut(&request_id)
                    && e.lease.as_ref().is_some_and(|l| l.lease_id == lease_id)
                {
                    e.lease = None;
                }
            }
            Event::Decide(d) => {
                if let Some(e) = self.get_mut(&d.request_id)
                    && e.decision.is_none()
                {
                    e.lease = None;
                    e.decision = Some(d);
                }
            }
        }
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut Entry> {
        self.index.get(id).map(|&i| &mut self.entries[i])
    }

    fn get(&self, id: &str) -> Option<&Entry> {
        self.index.get(id).map(|&i| &self.entries[i])
    }

    pub(crate) fn contains(&self, request_id: &str) -> bool {
        self.index.contains_key(request_id)
    }

    /// Every item as listed at `now`.
    pub(crate) fn views(&self, now: DateTime<Utc>) -> Vec<ItemView> {
        self.entries.iter().map(|e| view(e, now)).collect()
    }

    /// Replays journal bytes (complete lines only); returns the events read.
    pub(crate) fn replay(&mut self, bytes: &[u8], path: &Path) {
        for line in bytes.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Event>(line) {
                Ok(ev) => self.apply(ev),
                Err(e) => {
                    self.skipped += 1;
                    tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable review journal line (torn write?)");
                }
            }
        }
    }

    /// The events that rebuild this state (compaction).
    fn events(&self, now: DateTime<Utc>) -> Vec<Event> {
        let mut out = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            out.push(Event::Enqueue {
                item: Box::new(e.item.clone()),
            });
            if let Some(d) = &e.decision {
                out.push(Event::Decide(d.clone()));
            } else if let Some(l) = e.lease.as_ref().filter(|l| l.expires > now) {
                out.push(Event::Lease(l.clone()));
            }
        }
        out
    }
}

fn active(lease: Option<&Lease>, now: DateTime<Utc>) -> Option<&Lease> {
    lease.filter(|l| l.expires > now)
}

fn view(e: &Entry, now: DateTime<Utc>) -> ItemView {
    let lease = active(e.lease.as_ref(), now).cloned();
    let status = if e.decision.is_some() {
        ItemStatus::Decided
    } else if lease.is_some() {
        ItemStatus::Leased
    } else {
        ItemStatus::Pending
    };
    ItemView {
        status,
        item: e.item.clone(),
        lease,
        decision: e.decision.clone(),
    }
}

/// Counts by status and by decision kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    pub items: usize,
    pub pending: usize,
    pub leased: usize,
    pub decided: usize,
    pub accepted: usize,
    pub corrected: usize,
    pub labelled: usize,
    pub discarded: usize,
    /// Decisions per reviewer.
    pub reviewers: std::collections::BTreeMap<String, usize>,
    /// Items per reason (the strategy part).
    pub reasons: std::collections::BTreeMap<String, usize>,
    /// Journal lines skipped (torn writes).
    pub skipped_lines: usize,
}

struct Cache {
    /// (device, inode) of the journal the state was read from.
    file_id: Option<(u64, u64)>,
    offset: u64,
    state: State,
}

/// A handle on one queue folder; cheap to clone, safe to share between
/// threads and, through the file lock, between processes.
#[derive(Clone)]
pub struct ReviewQueue {
    dir: PathBuf,
    cache: Arc<Mutex<Cache>>,
}

impl std::fmt::Debug for ReviewQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReviewQueue")
            .field("dir", &self.dir)
            .finish()
    }
}

impl ReviewQueue {
    /// The queue in `dir` (created when missing).
    pub fn open(dir: &Path) -> Result<ReviewQueue, ReviewError> {
        std::fs::create_dir_all(dir).map_err(ReviewError::io(dir))?;
        let q = ReviewQueue {
            dir: dir.to_path_buf(),
            cache: Arc::new(Mutex::new(Cache {
                file_id: None,
                offset: 0,
                state: State::default(),
            })),
        };
        q.locked(|_, _| Ok((Vec::new(), ())))?;
        Ok(q)
    }

    /// The queue of a log root: `<root>/review`.
    pub fn for_log_root(root: &Path) -> Result<ReviewQueue, ReviewError> {
        ReviewQueue::open(&root.join(super::REVIEW_DIR))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }

    /// Runs `op` on the current state under the lock; appends (and fsyncs)
    /// the events it returns, then applies them.
    fn locked<T>(
        &self,
        op: impl FnOnce(&State, DateTime<Utc>) -> Result<(Vec<Event>, T), ReviewError>,
    ) -> Result<T, ReviewError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let lock_path = self.dir.join(LOCK);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(ReviewError::io(&lock_path))?;
        lock.lock().map_err(ReviewError::io(&lock_path))?;
        let path = self.journal_path();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(ReviewError::io(&path))?;
        crate::logstore::repair_tail(&mut file, &path)?;
        let meta = file.metadata().map_err(ReviewError::io(&path))?;
        let id = (meta.dev(), meta.ino());
        if cache.file_id != Some(id) || meta.len() < cache.offset {
            cache.file_id = Some(id);
            cache.offset = 0;
            cache.state = State::default();
        }
        if meta.len() > cache.offset {
            let mut bytes = Vec::with_capacity((meta.len() - cache.offset) as usize);
            file.seek(SeekFrom::Start(cache.offset))
                .map_err(ReviewError::io(&path))?;
            file.read_to_end(&mut bytes)
                .map_err(ReviewError::io(&path))?;
            cache.state.replay(&bytes, &path);
            cache.offset += bytes.len() as u64;
        }
        let now = Utc::now();
        let (events, out) = op(&cache.state, now)?;
        if !events.is_empty() {
            let mut buf = Vec::new();
            for ev in &events {
                serde_json::to_writer(&mut buf, ev).map_err(|e| ReviewError::Io {
                    path: path.clone(),
                    source: e.into(),
                })?;
                buf.push(b'\n');
            }
            let before = cache.offset;
            let res = file.write_all(&buf).and_then(|()| file.sync_data());
            if let Err(e) = res {
                // Leave no partial line for the next append to extend.
                let _ = file.set_len(before);
                return Err(ReviewError::Io { path, source: e });
            }
            cache.offset += buf.len() as u64;
            for ev in events {
                cache.state.apply(ev);
            }
        }
        drop(lock);
        Ok(out)
    }

    /// Adds the items not queued yet; returns how many were new.
    pub fn enqueue(&self, items: Vec<ReviewItem>) -> Result<usize, ReviewError> {
        self.locked(|state, _| {
            let mut seen = std::collections::HashSet::new();
            let events: Vec<Event> = items
                .into_iter()
                .filter(|i| !state.contains(&i.request_id) && seen.insert(i.request_id.clone()))
                .map(|item| Event::Enqueue {
                    item: Box::new(item),
                })
                .collect();
            let n = events.len();
            Ok((events, n))
        })
    }

    /// Whether the call is queued already.
    pub fn contains(&self, request_id: &str) -> Result<bool, ReviewError> {
        self.locked(|s, _| Ok((Vec::new(), s.contains(request_id))))
    }

    /// Leases the next item for `reviewer`: the one they already hold, else
    /// the oldest pending item (optionally of one suite). `None`: nothing to do.
    pub fn lease_next(
        &self,
        reviewer: &str,
        ttl: Duration,
        suite: Option<&str>,
    ) -> Result<Option<ItemView>, ReviewError> {
        check_reviewer(reviewer)?;
        self.locked(|state, now| {
            let mine = state.entries.iter().find(|e| {
                e.decision.is_none()
                    && active(e.lease.as_ref(), now).is_some_and(|l| l.reviewer == reviewer)
            });
            let pick = mine.or_else(|| {
                state.entries.iter().find(|e| {
                    e.decision.is_none()
                        && active(e.lease.as_ref(), now).is_none()
                        && suite.is_none_or(|s| e.item.suite.as_deref() == Some(s))
                })
            });
            let Some(entry) = pick else {
                return Ok((Vec::new(), None));
            };
            let lease = new_lease(&entry.item.request_id, reviewer, now, ttl);
            let mut v = view(entry, now);
            v.status = ItemStatus::Leased;
            v.lease = Some(lease.clone());
            Ok((vec![Event::Lease(lease)], Some(v)))
        })
    }

    /// Leases one given item for `reviewer` (renewing their own lease).
    pub fn lease(
        &self,
        request_id: &str,
        reviewer: &str,
        ttl: Duration,
    ) -> Result<Lease, ReviewError> {
        check_reviewer(reviewer)?;
        self.locked(|state, now| {
            let entry = state
                .get(request_id)
                .ok_or_else(|| ReviewError::UnknownItem(request_id.to_string()))?;
            refuse_decided(entry)?;
            refuse_other(entry, reviewer, now)?;
            let lease = new_lease(request_id, reviewer, now, ttl);
            Ok((vec![Event::Lease(lease.clone())], lease))
        })
    }

    /// Gives a held item back before its lease expires.
    pub fn release(&self, request_id: &str, reviewer: &str) -> Result<(), ReviewError> {
        self.locked(|state, now| {
            let entry = state
                .get(request_id)
                .ok_or_else(|| ReviewError::UnknownItem(request_id.to_string()))?;
            refuse_other(entry, reviewer, now)?;
            let events = active(entry.lease.as_ref(), now)
                .map(|l| Event::Release {
                    request_id: request_id.to_string(),
                    lease_id: l.lease_id.clone(),
                })
                .into_iter()
                .collect();
            Ok((events, ()))
        })
    }

    /// Records a decision. Refused for an unknown item, a decided item, or
    /// an item another reviewer holds; nothing is written then.
    pub fn decide(
        &self,
        request_id: &str,
        reviewer: &str,
        verdict: Verdict,
    ) -> Result<Decision, ReviewError> {
        check_reviewer(reviewer)?;
        verdict.validate()?;
        self.locked(|state, now| {
            let entry = state
                .get(request_id)
                .ok_or_else(|| ReviewError::UnknownItem(request_id.to_string()))?;
            refuse_decided(entry)?;
            refuse_other(entry, reviewer, now)?;
            let d = Decision {
                request_id: request_id.to_string(),
                verdict,
                reviewer: reviewer.to_string(),
                ts: crate::logstore::RequestLogRow::new("", now).ts,
            };
            Ok((vec![Event::Decide(d.clone())], d))
        })
    }

    /// Every item, in queue order.
    pub fn list(&self) -> Result<Vec<ItemView>, ReviewError> {
        self.locked(|s, now| Ok((Vec::new(), s.views(now))))
    }

    /// One item.
    pub fn get(&self, request_id: &str) -> Result<ItemView, ReviewError> {
        self.locked(|s, now| {
            let e = s
                .get(request_id)
                .ok_or_else(|| ReviewError::UnknownItem(request_id.to_string()))?;
            Ok((Vec::new(), view(e, now)))
        })
    }

    pub fn stats(&self) -> Result<QueueStats, ReviewError> {
        self.locked(|s, now| {
            let mut st = QueueStats {
                skipped_lines: s.skipped,
                ..QueueStats::default()
            };
            for v in s.views(now) {
                st.items += 1;
                let reason = v.item.reason.split(':').next().unwrap_or_default();
                *st.reasons.entry(reason.to_string()).or_default() += 1;
                match v.status {
                    ItemStatus::Pending => st.pending += 1,
                    ItemStatus::Leased => st.leased += 1,
                    ItemStatus::Decided => st.decided += 1,
                }
                if let Some(d) = &v.decision {
                    *st.reviewers.entry(d.reviewer.clone()).or_default() += 1;
                    match d.verdict {
                        Verdict::Accept => st.accepted += 1,
                        Verdict::Correct { .. } => st.corrected += 1,
                        Verdict::Label { .. } => st.labelled += 1,
                        Verdict::Discard => st.discarded += 1,
                    }
                }
            }
            Ok((Vec::new(), st))
        })
    }

    /// Rewrites the journal with only the current state (see the module
    /// docs); returns the number of lines written.
    pub fn compact(&self) -> Result<usize, ReviewError> {
        let dir = self.dir.clone();
        self.locked(|state, now| {
            let mut buf = Vec::new();
            let events = state.events(now);
            for ev in &events {
                serde_json::to_writer(&mut buf, ev).map_err(|e| ReviewError::Io {
                    path: dir.join(JOURNAL),
                    source: e.into(),
                })?;
                buf.push(b'\n');
            }
            durable::write(&dir.join(JOURNAL), &buf).map_err(|e| ReviewError::Io {
                path: e.path,
                source: e.source,
            })?;
            Ok((Vec::new(), events.len()))
        })
    }
}

fn new_lease(request_id: &str, reviewer: &str, now: DateTime<Utc>, ttl: Duration) -> Lease {
    Lease {
        lease_id: uuid::Uuid::now_v7().to_string(),
        request_id: request_id.to_string(),
        reviewer: reviewer.to_string(),
        expires: now + ttl,
    }
}

fn refuse_decided(entry: &Entry) -> Result<(), ReviewError> {
    match &entry.decision {
        Some(d) => Err(ReviewError::AlreadyDecided {
            request_id: d.request_id.clone(),
            kind: d.verdict.kind(),
            reviewer: d.reviewer.clone(),
            ts: d.ts,
        }),
        None => Ok(()),
    }
}

fn refuse_other(entry: &Entry, reviewer: &str, now: DateTime<Utc>) -> Result<(), ReviewError> {
    match active(entry.lease.as_ref(), now) {
        Some(l) if l.reviewer != reviewer => Err(ReviewError::LeasedByOther {
            request_id: l.request_id.clone(),
            reviewer: l.reviewer.clone(),
            expires: l.expires,
        }),
        _ => Ok(()),
    }
}

/// Replays a journal file on its own (tests, tools); a missing file is empty.
#[cfg(test)]
pub(crate) fn replay_file(path: &Path) -> Result<State, ReviewError> {
    let mut bytes = Vec::new();
    match std::fs::File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes).map_err(ReviewError::io(path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ReviewError::io(path)(e)),
    }
    let mut s = State::default();
    s.replay(&bytes, path);
    Ok(s)
}
