//! How the eval reaches a model: a [`ModelCaller`] (the provider in
//! production, anything in tests) and the response cache in front of it.
//!
//! Cache: one JSON file per response under
//! `.promptgate/cache/responses/<aa>/<sha256>.json`, keyed by the sha256 of
//! (model key, upstream model name, provider URL, rendered messages, params).
//! Entries are renamed into place whole ([`crate::durable::write_cache_entry`]),
//! so a crashed run never leaves a half-written entry that a later run
//! would trust; they are not fsynced (a lost entry is a miss).

use std::path::PathBuf;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::template::ChatMessage;

/// One model call as the eval sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCall {
    /// Key under `models` in promptgate.yaml.
    pub model: String,
    /// What identifies the model at the upstream (name and provider URL);
    /// part of the cache key so changing either invalidates cached answers.
    pub upstream: String,
    pub messages: Vec<ChatMessage>,
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Which repeat of the case this is. Part of the cache key, never sent:
    /// repeats must be independent draws, not cache hits of the first.
    pub draw: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelReply {
    pub content: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub latency_ms: f64,
    pub cost: f64,
    /// Served from the response cache (never stored in the cache itself).
    #[serde(skip)]
    pub cached: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CallFailure {
    /// The provider cannot be reached at all: the run stops.
    #[error("{0}")]
    Unreachable(String),
    /// This call failed (timeout, 5xx after retries, 4xx): the case records it.
    #[error("{0}")]
    Case(String),
}

pub trait ModelCaller: Send + Sync {
    fn call<'a>(&'a self, call: &'a ModelCall) -> BoxFuture<'a, Result<ModelReply, CallFailure>>;
}

/// A response cache in front of another caller.
pub struct CachedCaller<C> {
    inner: C,
    dir: PathBuf,
}

impl<C: ModelCaller> CachedCaller<C> {
    pub fn new(inner: C, dir: impl Into<PathBuf>) -> Self {
        CachedCaller {
            inner,
            dir: dir.into(),
        }
    }

    fn path_of(&self, call: &ModelCall) -> PathBuf {
        let key = cache_key(call);
        self.dir.join(&key[..2]).join(format!("{key}.json"))
    }

    /// The cached reply, if any. A corrupt entry counts as a miss.
    pub fn lookup(&self, call: &ModelCall) -> Option<ModelReply> {
        let bytes = std::fs::read(self.path_of(call)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes the entry on the blocking pool: a cold run writes one small
    /// file per call, and doing that on the runtime's threads stalled every
    /// other call behind the file system.
    async fn store(&self, call: &ModelCall, reply: &ModelReply) {
        let path = self.path_of(call);
        let reply = reply.clone();
        let write = move || {
            crate::durable::write_cache_entry(&path, |f| {
                serde_json::to_writer(f, &reply).map_err(std::io::Error::from)
            })
            .map_err(|e| format!("{}: {e}", path.display()))
        };
        let written = match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::spawn_blocking(write)
                .await
                .unwrap_or_else(|e| Err(e.to_string())),
            Err(_) => write(),
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not write the response cache");
        }
    }
}

impl<C: ModelCaller> ModelCaller for CachedCaller<C> {
    fn call<'a>(&'a self, call: &'a ModelCall) -> BoxFuture<'a, Result<ModelReply, CallFailure>> {
        Box::pin(async move {
            if let Some(mut hit) = self.lookup(call) {
                hit.cached = true;
                return Ok(hit);
            }
            let reply = self.inner.call(call).await?;
            self.store(call, &reply).await;
            Ok(reply)
        })
    }
}

/// sha256 over a canonical JSON of the call (maps are sorted by serde_json).
pub fn cache_key(call: &ModelCall) -> String {
    let canonical = serde_json::json!({
        "model": call.model,
        "upstream": call.upstream,
        "messages": call.messages,
        "params": call.params,
        "draw": call.draw,
    });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(content: &str, temp: f64) -> ModelCall {
        let mut params = serde_json::Map::new();
        params.insert("temperature".into(), temp.into());
        ModelCall {
            model: "small".into(),
            upstream: "llama3.2:1b@http://127.0.0.1:11434".into(),
            messages: vec![ChatMessage {
                role: "user".into(),
                content: content.into(),
            }],
            params,
            draw: 0,
        }
    }

    #[test]
    fn key_changes_with_every_part_of_the_call() {
        let base = cache_key(&call("hi", 0.0));
        assert_eq!(base, cache_key(&call("hi", 0.0)));
        assert_ne!(base, cache_key(&call("hi!", 0.0)));
        assert_ne!(base, cache_key(&call("hi", 0.5)));
        let mut other = call("hi", 0.0);
        other.upstream = "llama3.2:3b@http://127.0.0.1:11434".into();
        assert_ne!(base, cache_key(&other));
        other = call("hi", 0.0);
        other.model = "big".into();
        assert_ne!(base, cache_key(&other));
        other = call("hi", 0.0);
        other.draw = 1;
        assert_ne!(base, cache_key(&other));
    }
}
