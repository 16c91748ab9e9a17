//! HTTP plumbing shared by the dialects: the process-wide client, one
//! attempt of a POST with status and error mapping, the non-streaming and
//! streaming call shapes with their deadlines.
//!
//! Deadlines: `connect_ms` bounds the TCP/TLS connect (client setting);
//! `total_ms` bounds the whole call, retries and body included;
//! `first_token_ms` bounds, in a streaming call, the time from sending an
//! attempt until its first event. A non-streaming call has no first token
//! (servers send headers only when generation ends), so only the total
//! deadline applies.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::time::Instant;

use super::error::{ProviderError, TimeoutPhase, chain, scrub};
use super::retry::{RetryPolicy, retry};
use super::{CallOptions, ChatEvent, EventStream};

/// An API key. Its `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) Arc<str>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Whether a client must verify TLS certificates against the system's roots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Transport {
    /// `https://` upstreams: the platform verifier with the system's CA store.
    Tls,
    /// `http://` upstreams (Ollama or vLLM beside the app): no CA store is
    /// loaded. Reading the system's ~150 certificate files took longer than
    /// the rest of a 200-case eval's start-up, and the proxy pays it before
    /// it is healthy. A redirect from such an upstream to `https://` fails
    /// certificate verification instead of being followed.
    Plain,
}

impl Transport {
    pub(crate) fn for_url(url: &str) -> Self {
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        if scheme.eq_ignore_ascii_case("http") {
            Transport::Plain
        } else {
            Transport::Tls
        }
    }
}

/// The process-wide client for a connect timeout and transport. reqwest sets
/// the connect timeout per client, so models with different connect timeouts
/// get different clients; usually there is exactly one.
pub(crate) fn shared_client(
    connect_ms: u64,
    transport: Transport,
) -> Result<reqwest::Client, ProviderError> {
    static CLIENTS: OnceLock<Mutex<HashMap<(u64, Transport), reqwest::Client>>> = OnceLock::new();
    let map = CLIENTS.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = map.get(&(connect_ms, transport)) {
        return Ok(c.clone());
    }
    // reqwest is built without a bundled crypto provider; install ring once
    // (an error only means a provider is already installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_millis(connect_ms))
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("promptgate/", env!("CARGO_PKG_VERSION")));
    if transport == Transport::Plain {
        builder = builder.tls_certs_only(std::iter::empty());
    }
    let client = builder.build().map_err(|e| {
        ProviderError::Config(format!("cannot build the HTTP client: {}", chain(&e)))
    })?;
    map.insert((connect_ms, transport), client.clone());
    Ok(client)
}

/// Where one provider's chat requests go.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub provider: String,
    /// For messages; `target` is what requests use.
    pub url: String,
    /// Parsed once: reqwest parses a string URL on every request.
    pub target: reqwest::Url,
    pub api_key: Option<Secret>,
    pub client: reqwest::Client,
    pub connect_ms: u64,
    pub policy: RetryPolicy,
}

impl Endpoint {
    fn key(&self) -> Option<&str> {
        self.api_key.as_ref().map(|s| &*s.0)
    }

    pub fn timeout(&self, phase: TimeoutPhase, ms: u64) -> ProviderError {
        ProviderError::Timeout {
            provider: self.provider.clone(),
            url: self.url.clone(),
            phase,
            ms,
        }
    }

    pub fn decode(&self, message: impl fmt::Display) -> ProviderError {
        ProviderError::Decode {
            provider: self.provider.clone(),
            url: self.url.clone(),
            message: scrub(&message.to_string(), self.key()),
        }
    }

    pub fn transport(&self, err: &reqwest::Error) -> ProviderError {
        let message = scrub(&chain(err), self.key());
        if err.is_connect() {
            if err.is_timeout() {
                return self.timeout(TimeoutPhase::Connect, self.connect_ms);
            }
            ProviderError::Connect {
                provider: self.provider.clone(),
                url: self.url.clone(),
                message,
            }
        } else {
            ProviderError::Transport {
                provider: self.provider.clone(),
                url: self.url.clone(),
                message,
            }
        }
    }

    /// One attempt: send `body`, wait for headers until `until`, map a
    /// non-success status to [`ProviderError::Status`].
    async fn send_once(
        &self,
        body: Bytes,
        until: Instant,
        on_timeout: (TimeoutPhase, u64),
    ) -> Result<reqwest::Response, ProviderError> {
        let mut rb = self
            .client
            .post(self.target.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = self.key() {
            rb = rb.bearer_auth(key);
        }
        let resp = match tokio::time::timeout_at(until, rb.send()).await {
            Err(_) => return Err(self.timeout(on_timeout.0, on_timeout.1)),
            Ok(Err(e)) => return Err(self.transport(&e)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = match tokio::time::timeout_at(until, resp.bytes()).await {
            Ok(Ok(b)) => String::from_utf8_lossy(&b).into_owned(),
            _ => String::new(),
        };
        Err(ProviderError::Status {
            provider: self.provider.clone(),
            url: self.url.clone(),
            status: status.as_u16(),
            body: scrub(&text, self.key()),
            retry_after,
        })
    }

    /// A non-streaming call: retries around send + full body read; returns the body.
    pub async fn post_full(&self, body: Bytes, opts: CallOptions) -> Result<Bytes, ProviderError> {
        let total = opts.timeouts.total_ms;
        let deadline = Instant::now() + Duration::from_millis(total);
        retry(self.policy, deadline, |_| {
            let body = body.clone();
            async move {
                let resp = self
                    .send_once(body, deadline, (TimeoutPhase::Total, total))
                    .await?;
                match tokio::time::timeout_at(deadline, resp.bytes()).await {
                    Err(_) => Err(self.timeout(TimeoutPhase::Total, total)),
                    Ok(Err(e)) => Err(self.transport(&e)),
                    Ok(Ok(b)) => Ok(b),
                }
            }
        })
        .await
    }

    /// A pass-through call: retries around send until headers arrive (within
    /// the first-token deadline when `stream`, else the total one) and
    /// returns the response with its body unread.
    pub async fn post_raw(
        &self,
        body: Bytes,
        stream: bool,
        opts: CallOptions,
    ) -> Result<reqwest::Response, ProviderError> {
        let t = opts.timeouts;
        let deadline = Instant::now() + Duration::from_millis(t.total_ms);
        retry(self.policy, deadline, |_| {
            let body = body.clone();
            async move {
                let (until, phase) = if stream {
                    (
                        (Instant::now() + Duration::from_millis(t.first_token_ms)).min(deadline),
                        (TimeoutPhase::FirstToken, t.first_token_ms),
                    )
                } else {
                    (deadline, (TimeoutPhase::Total, t.total_ms))
                };
                self.send_once(body, until, phase).await
            }
        })
        .await
    }

    /// A streaming call: retries around send until headers arrive; then the
    /// body is decoded into events by `decoder` under the first-token and
    /// total deadlines.
    pub async fn post_stream(
        &self,
        body: Bytes,
        opts: CallOptions,
        make_decoder: impl Fn() -> Box<dyn EventDecoder>,
    ) -> Result<EventStream, ProviderError> {
        let t = opts.timeouts;
        let deadline = Instant::now() + Duration::from_millis(t.total_ms);
        let (resp, first_by) = retry(self.policy, deadline, |_| {
            let body = body.clone();
            async move {
                let first_by =
                    (Instant::now() + Duration::from_millis(t.first_token_ms)).min(deadline);
                let phase = if first_by < deadline {
                    (TimeoutPhase::FirstToken, t.first_token_ms)
                } else {
                    (TimeoutPhase::Total, t.total_ms)
                };
                let resp = self.send_once(body, first_by, phase).await?;
                Ok((resp, first_by))
            }
        })
        .await?;
        let state = StreamState {
            bytes: resp.bytes_stream().boxed(),
            decoder: make_decoder(),
            pending: VecDeque::new(),
            endpoint: self.clone(),
            first_by: Some(first_by),
            first_token_ms: t.first_token_ms,
            deadline,
            total_ms: t.total_ms,
            finished: false,
        };
        Ok(futures_util::stream::unfold(state, StreamState::next).boxed())
    }
}

/// Turns response bytes into events; one per dialect.
pub(crate) trait EventDecoder: Send {
    /// Events completed by `chunk`.
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<ChatEvent>, String>;
    /// Events at the end of the body; an error when the stream ended early.
    fn finish(&mut self) -> Result<Vec<ChatEvent>, String>;
}

struct StreamState {
    bytes: BoxStream<'static, reqwest::Result<Bytes>>,
    decoder: Box<dyn EventDecoder>,
    pending: VecDeque<ChatEvent>,
    endpoint: Endpoint,
    /// Deadline of the first event, until it arrives.
    first_by: Option<Instant>,
    first_token_ms: u64,
    deadline: Instant,
    total_ms: u64,
    finished: bool,
}

impl StreamState {
    async fn next(mut self) -> Option<(Result<ChatEvent, ProviderError>, StreamState)> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                self.first_by = None;
                if matches!(ev, ChatEvent::Done { .. }) {
                    // Nothing after Done is part of the answer.
                    self.finished = true;
                    self.pending.clear();
                }
                return Some((Ok(ev), self));
            }
            if self.finished {
                return None;
            }
            let (until, phase, ms) = match self.first_by {
                Some(f) if f < self.deadline => (f, TimeoutPhase::FirstToken, self.first_token_ms),
                _ => (self.deadline, TimeoutPhase::Total, self.total_ms),
            };
            let item = tokio::time::timeout_at(until, self.bytes.next()).await;
            let decoded = match item {
                Err(_) => {
                    self.finished = true;
                    let err = self.endpoint.timeout(phase, ms);
                    return Some((Err(err), self));
                }
                Ok(Some(Err(e))) => {
                    self.finished = true;
                    let err = self.endpoint.transport(&e);
                    return Some((Err(err), self));
                }
                Ok(Some(Ok(chunk))) => self.decoder.push(&chunk),
                Ok(None) => {
                    // The body is over: whatever the decoder still yields is
                    // the rest of the stream.
                    self.finished = true;
                    self.decoder.finish()
                }
            };
            match decoded {
                Ok(evs) => self.pending.extend(evs),
                Err(msg) => {
                    self.finished = true;
                    let err = self.endpoint.decode(msg);
                    return Some((Err(err), self));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Transport;

    #[test]
    fn only_plain_http_urls_skip_the_ca_store() {
        assert_eq!(
            Transport::for_url("http://127.0.0.1:11434/api/chat"),
            Transport::Plain
        );
        assert_eq!(Transport::for_url("HTTP://ollama:11434"), Transport::Plain);
        assert_eq!(
            Transport::for_url("https://api.openai.com/v1"),
            Transport::Tls
        );
        // Anything unexpected keeps certificate verification on.
        assert_eq!(Transport::for_url("httpx://host"), Transport::Tls);
        assert_eq!(Transport::for_url("host:8080"), Transport::Tls);
    }
}
