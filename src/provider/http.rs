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
use http::header;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyDataStream, BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use super::error::{ProviderError, TimeoutPhase, chain, scrub};
use super::retry::{RetryPolicy, retry};
use super::{CallOptions, ChatEvent, EventDecoder, EventStream};

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

/// The process-wide reqwest client for a connect timeout and transport.
/// reqwest sets the connect timeout per client, so models with different
/// connect timeouts get different clients; usually there is exactly one.
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
        .pool_idle_timeout(POOL_IDLE)
        .user_agent(USER_AGENT);
    if transport == Transport::Plain {
        builder = builder.tls_certs_only(std::iter::empty());
    }
    let client = builder.build().map_err(|e| {
        ProviderError::Config(format!("cannot build the HTTP client: {}", chain(&e)))
    })?;
    map.insert((connect_ms, transport), client.clone());
    Ok(client)
}

const USER_AGENT: &str = concat!("promptgate/", env!("CARGO_PKG_VERSION"));
const POOL_IDLE: Duration = Duration::from_secs(90);

type DirectClient = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// The process-wide hyper client for plain-HTTP upstreams with a connect timeout.
fn shared_direct_client(connect_ms: u64) -> Arc<DirectClient> {
    static CLIENTS: OnceLock<Mutex<HashMap<u64, Arc<DirectClient>>>> = OnceLock::new();
    let map = CLIENTS.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(connect_ms)
        .or_insert_with(|| {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(Duration::from_millis(connect_ms)));
            Arc::new(
                hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(POOL_IDLE)
                    .pool_timer(TokioTimer::new())
                    .build(connector),
            )
        })
        .clone()
}

/// The body of an upstream response, whichever client fetched it.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;
/// A successful upstream response with its body unread.
pub type UpstreamResponse = http::Response<UpstreamBody>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How requests reach one endpoint.
#[derive(Debug, Clone)]
pub(crate) enum Upstream {
    /// A plain-HTTP upstream (Ollama, vLLM, llama.cpp beside the app) that no
    /// proxy variable intercepts: hyper's pooled client, without reqwest's
    /// redirect and retry layers, which parsed the URL again and cost ~5% of
    /// the proxy's CPU per request. A redirect is an error status here.
    Direct {
        client: Arc<DirectClient>,
        uri: http::Uri,
    },
    /// Everything else (TLS, `HTTP(S)_PROXY`/`ALL_PROXY`, redirects): reqwest.
    Reqwest {
        client: reqwest::Client,
        url: reqwest::Url,
    },
}

impl Upstream {
    /// The client for `url` under the process's proxy variables; `provider`
    /// names it in errors.
    pub(crate) fn for_url(
        provider: &str,
        url: &str,
        connect_ms: u64,
    ) -> Result<Self, ProviderError> {
        Self::with_proxies(provider, url, connect_ms, &Matcher::from_env())
    }

    fn with_proxies(
        provider: &str,
        url: &str,
        connect_ms: u64,
        proxies: &Matcher,
    ) -> Result<Self, ProviderError> {
        let bad = |e: &dyn fmt::Display| {
            ProviderError::Config(format!(
                "provider `{provider}`: base_url gives `{url}`: {e}"
            ))
        };
        let transport = Transport::for_url(url);
        if transport == Transport::Plain {
            let uri: http::Uri = url.parse().map_err(|e| bad(&e))?;
            if proxies.intercept(&uri).is_none() {
                return Ok(Upstream::Direct {
                    client: shared_direct_client(connect_ms),
                    uri,
                });
            }
        }
        Ok(Upstream::Reqwest {
            client: shared_client(connect_ms, transport)?,
            url: reqwest::Url::parse(url).map_err(|e| bad(&e))?,
        })
    }
}

/// Why a request got no response headers.
struct SendError {
    message: String,
    connect: bool,
    timeout: bool,
}

impl SendError {
    /// A request that could not even be built.
    fn unsent(message: impl Into<String>) -> Self {
        SendError {
            message: message.into(),
            connect: false,
            timeout: false,
        }
    }

    fn of_reqwest(e: &reqwest::Error) -> Self {
        SendError {
            message: chain(e),
            connect: e.is_connect(),
            timeout: e.is_timeout(),
        }
    }

    fn of_hyper(e: &hyper_util::client::legacy::Error) -> Self {
        // The connector reports its connect timeout as an io::Error of kind TimedOut.
        let mut timeout = false;
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(s) = src {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                timeout |= io.kind() == std::io::ErrorKind::TimedOut;
            }
            src = s.source();
        }
        SendError {
            message: chain(e),
            connect: e.is_connect(),
            timeout,
        }
    }
}

/// Where one provider's chat requests go.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub provider: String,
    /// For messages; `upstream` holds the parsed form requests use.
    pub url: String,
    pub upstream: Upstream,
    pub api_key: Option<Secret>,
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

    /// A failure while reading a response body.
    pub fn body_error(&self, err: &(dyn std::error::Error + 'static)) -> ProviderError {
        ProviderError::Transport {
            provider: self.provider.clone(),
            url: self.url.clone(),
            message: scrub(&chain(err), self.key()),
        }
    }

    fn send_error(&self, err: SendError) -> ProviderError {
        if err.connect && err.timeout {
            return self.timeout(TimeoutPhase::Connect, self.connect_ms);
        }
        let message = scrub(&err.message, self.key());
        let (provider, url) = (self.provider.clone(), self.url.clone());
        if err.connect {
            ProviderError::Connect {
                provider,
                url,
                message,
            }
        } else {
            ProviderError::Transport {
                provider,
                url,
                message,
            }
        }
    }

    /// POSTs `body` and returns the response once its headers arrive.
    async fn send(&self, body: Bytes) -> Result<UpstreamResponse, SendError> {
        match &self.upstream {
            Upstream::Direct { client, uri } => {
                let mut req = http::Request::post(uri.clone())
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::USER_AGENT, USER_AGENT)
                    .body(Full::new(body))
                    .map_err(|e| SendError::unsent(e.to_string()))?;
                if let Some(key) = self.key() {
                    let mut v =
                        http::HeaderValue::try_from(format!("Bearer {key}")).map_err(|_| {
                            SendError::unsent("the API key is not a valid header value")
                        })?;
                    v.set_sensitive(true);
                    req.headers_mut().insert(header::AUTHORIZATION, v);
                }
                let resp = client
                    .request(req)
                    .await
                    .map_err(|e| SendError::of_hyper(&e))?;
                Ok(resp.map(|b| b.map_err(BoxError::from).boxed_unsync()))
            }
            Upstream::Reqwest { client, url } => {
                let mut rb = client
                    .post(url.clone())
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body);
                if let Some(key) = self.key() {
                    rb = rb.bearer_auth(key);
                }
                let resp = rb.send().await.map_err(|e| SendError::of_reqwest(&e))?;
                let resp = http::Response::<reqwest::Body>::from(resp);
                Ok(resp.map(|b| b.map_err(BoxError::from).boxed_unsync()))
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
    ) -> Result<UpstreamResponse, ProviderError> {
        let resp = match tokio::time::timeout_at(until, self.send(body)).await {
            Err(_) => return Err(self.timeout(on_timeout.0, on_timeout.1)),
            Ok(Err(e)) => return Err(self.send_error(e)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = match tokio::time::timeout_at(until, read_body(resp.into_body())).await {
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
                match tokio::time::timeout_at(deadline, read_body(resp.into_body())).await {
                    Err(_) => Err(self.timeout(TimeoutPhase::Total, total)),
                    Ok(Err(e)) => Err(self.body_error(&*e)),
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
    ) -> Result<UpstreamResponse, ProviderError> {
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
            bytes: BodyDataStream::new(resp.into_body()),
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

/// The whole of a response body.
pub async fn read_body(body: UpstreamBody) -> Result<Bytes, BoxError> {
    Ok(body.collect().await?.to_bytes())
}

struct StreamState {
    bytes: BodyDataStream<UpstreamBody>,
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
                    let err = self.endpoint.body_error(&*e);
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
    use super::{Matcher, Transport, Upstream};

    fn is_direct(url: &str, proxies: &Matcher) -> bool {
        let upstream = Upstream::with_proxies("p", url, 1000, proxies).unwrap();
        matches!(upstream, Upstream::Direct { .. })
    }

    #[test]
    fn plain_http_goes_direct_unless_a_proxy_variable_covers_it() {
        let none = Matcher::builder().build();
        assert!(is_direct("http://127.0.0.1:11434/api/chat", &none));
        assert!(!is_direct(
            "https://api.openai.com/v1/chat/completions",
            &none
        ));
        let proxied = Matcher::builder()
            .http("http://proxy.internal:3128")
            .no("localhost,127.0.0.1")
            .build();
        assert!(!is_direct(
            "http://ollama.internal:11434/api/chat",
            &proxied
        ));
        assert!(is_direct("http://127.0.0.1:11434/api/chat", &proxied));
        let err = Upstream::with_proxies("p", "http://exa mple/v1", 1000, &none).unwrap_err();
        assert!(err.to_string().contains("provider `p`"), "{err}");
    }

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
