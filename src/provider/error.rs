//! The one error type of the provider layer.
//!
//! Invariants: every variant names the provider (its key in `promptgate.yaml`)
//! and, where a request was made, the URL; a status error carries the HTTP
//! status and a short snippet of the upstream body. No message ever contains
//! an API key: upstream bodies and transport messages are scrubbed of the key
//! before they are stored (see [`scrub`]).

use std::time::Duration;

/// Longest upstream body snippet kept in an error, in characters.
pub const BODY_SNIPPET_CHARS: usize = 300;

/// Which deadline expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    Connect,
    FirstToken,
    Total,
}

impl std::fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::FirstToken => "first-token",
            TimeoutPhase::Total => "total",
        })
    }
}

/// A coarse class of error, for metrics labels and retry decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Config,
    Connect,
    Timeout,
    Status4xx,
    Status5xx,
    Transport,
    Decode,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Status4xx => "status_4xx",
            ErrorKind::Status5xx => "status_5xx",
            ErrorKind::Transport => "transport",
            ErrorKind::Decode => "decode",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The configuration cannot make a client (unknown model, unset key variable, ...).
    #[error("{0}")]
    Config(String),
    #[error("provider `{provider}`: cannot connect to {url}: {message}")]
    Connect {
        provider: String,
        url: String,
        message: String,
    },
    #[error("provider `{provider}`: {url}: {phase} timeout after {ms} ms")]
    Timeout {
        provider: String,
        url: String,
        phase: TimeoutPhase,
        ms: u64,
    },
    #[error("provider `{provider}`: {url} returned HTTP {status}: {body}")]
    Status {
        provider: String,
        url: String,
        status: u16,
        /// Scrubbed, truncated upstream body.
        body: String,
        /// The upstream's `Retry-After`, when it sent one in seconds.
        retry_after: Option<Duration>,
    },
    /// The connection failed after the request was sent (reset, body cut short).
    #[error("provider `{provider}`: {url}: {message}")]
    Transport {
        provider: String,
        url: String,
        message: String,
    },
    #[error("provider `{provider}`: {url}: cannot decode the response: {message}")]
    Decode {
        provider: String,
        url: String,
        message: String,
    },
}

impl ProviderError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProviderError::Config(_) => ErrorKind::Config,
            ProviderError::Connect { .. } => ErrorKind::Connect,
            ProviderError::Timeout { .. } => ErrorKind::Timeout,
            ProviderError::Status { status, .. } if *status >= 500 => ErrorKind::Status5xx,
            ProviderError::Status { .. } => ErrorKind::Status4xx,
            ProviderError::Transport { .. } => ErrorKind::Transport,
            ProviderError::Decode { .. } => ErrorKind::Decode,
        }
    }

    /// The HTTP status, for a status error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProviderError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether another attempt may succeed: connect failures (including a
    /// connect timeout), 429 and 5xx. Never other 4xx, never a first-token or
    /// total timeout (the upstream may still be generating; a retry doubles
    /// the cost), never a decode error.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Connect { .. } => true,
            ProviderError::Timeout { phase, .. } => *phase == TimeoutPhase::Connect,
            ProviderError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// The upstream's requested delay before a retry, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Removes every occurrence of `secret` from `text` and truncates it to
/// [`BODY_SNIPPET_CHARS`] characters.
pub fn scrub(text: &str, secret: Option<&str>) -> String {
    let cleaned = match secret {
        Some(s) if !s.is_empty() && text.contains(s) => text.replace(s, "[redacted]"),
        _ => text.to_string(),
    };
    let cleaned = cleaned.trim();
    match cleaned.char_indices().nth(BODY_SNIPPET_CHARS) {
        Some((i, _)) => format!("{}…", &cleaned[..i]),
        None => cleaned.to_string(),
    }
}

/// The full chain of a transport error (reqwest hides the cause in `source`).
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut src = err.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_secret_and_truncates() {
        let s = scrub("bad key sk-123 given", Some("sk-123"));
        assert_eq!(s, "bad key [redacted] given");
        let long = "x".repeat(1000);
        assert_eq!(scrub(&long, None).chars().count(), BODY_SNIPPET_CHARS + 1);
    }

    #[test]
    fn retryable_classes() {
        let st = |status| ProviderError::Status {
            provider: "p".into(),
            url: "u".into(),
            status,
            body: String::new(),
            retry_after: None,
        };
        assert!(st(429).is_retryable());
        assert!(st(503).is_retryable());
        assert!(!st(400).is_retryable());
        assert!(!st(401).is_retryable());
        assert_eq!(st(404).kind(), ErrorKind::Status4xx);
        assert_eq!(st(502).kind(), ErrorKind::Status5xx);
    }
}

/// Why an upstream's answer (a body or a stream) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body is not JSON.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// The upstream answered with an error object.
    #[error("upstream error: {0}")]
    Upstream(serde_json::Value),
    #[error("upstream error in stream: {0}")]
    UpstreamInStream(serde_json::Value),
    /// A required field is absent.
    #[error("no `{0}` in the response")]
    Missing(&'static str),
    /// A stream event (`NDJSON line`, `SSE data`) that is not JSON.
    #[error("invalid {what}: {source}")]
    Event {
        what: &'static str,
        source: serde_json::Error,
    },
    /// The body ended before the stream's final event (`done: true`, `[DONE]`).
    #[error("the stream ended before `{0}`")]
    EndedEarly(&'static str),
}
