//! Helpers for the provider tests: configs, and a tiny scriptable HTTP
//! server that records what it receives and counts attempts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use promptgate::provider::ModelClient;
use promptgate::spec::config::Config;
use serde_json::Value;

/// A `promptgate.yaml` with one provider `up` of `kind` at `base_url` and one
/// model `m` (upstream name `test-model`), `price` 1 per input token and 2
/// per output token (per million: 1e6 / 2e6), `extra_provider` and
/// `extra_model` YAML lines appended to each.
pub fn config(kind: &str, base_url: &str, extra_provider: &str, extra_model: &str) -> Config {
    let yaml = format!(
        "version: 1
providers:
  up:
    kind: {kind}
    base_url: {base_url}
{extra_provider}
models:
  m:
    provider: up
    name: test-model
    price: {{input_per_mtok: 1000000, output_per_mtok: 2000000}}
{extra_model}
"
    );
    serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

pub fn client(kind: &str, base_url: &str) -> ModelClient {
    ModelClient::from_config(&config(kind, base_url, "", ""), "m").unwrap()
}

pub fn user(text: &str) -> Vec<Value> {
    vec![serde_json::json!({"role": "user", "content": text})]
}

pub fn params(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// What the test server answers to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Sleep before sending headers.
    pub delay: Duration,
    /// Sleep after the headers, before the body.
    pub body_delay: Duration,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.into(),
            delay: Duration::ZERO,
            body_delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }
    pub fn typed(content_type: &'static str, body: impl Into<String>) -> Reply {
        Reply {
            content_type,
            ..Reply::json(200, body)
        }
    }
}

type Handler = dyn Fn(usize, &Value, &HeaderMap) -> Reply + Send + Sync;

/// A recording server; stops when dropped.
pub struct TestServer {
    pub url: String,
    pub hits: Arc<AtomicUsize>,
    pub bodies: Arc<Mutex<Vec<Value>>>,
    pub headers: Arc<Mutex<Vec<HeaderMap>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    pub fn last_body(&self) -> Value {
        self.bodies.lock().unwrap().last().cloned().unwrap()
    }
    pub fn last_headers(&self) -> HeaderMap {
        self.headers.lock().unwrap().last().cloned().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a server on 127.0.0.1:0 answering every POST/GET with `handler(attempt, body, headers)`.
pub async fn serve(
    handler: impl Fn(usize, &Value, &HeaderMap) -> Reply + Send + Sync + 'static,
) -> TestServer {
    let handler: Arc<Handler> = Arc::new(handler);
    let hits = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let headers = Arc::new(Mutex::new(Vec::new()));
    let (h2, b2, hd2) = (hits.clone(), bodies.clone(), headers.clone());
    let app = axum::Router::new().fallback(move |hm: HeaderMap, body: Bytes| {
        let (handler, hits, bodies, headers) =
            (handler.clone(), h2.clone(), b2.clone(), hd2.clone());
        async move {
            let n = hits.fetch_add(1, Ordering::SeqCst);
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let reply = handler(n, &v, &hm);
            bodies.lock().unwrap().push(v);
            headers.lock().unwrap().push(hm);
            tokio::time::sleep(reply.delay).await;
            let text = reply.body.clone();
            let body_delay = reply.body_delay;
            let body = if body_delay.is_zero() {
                Body::from(text)
            } else {
                Body::from_stream(futures_util::stream::once(async move {
                    tokio::time::sleep(body_delay).await;
                    Ok::<_, std::convert::Infallible>(Bytes::from(text))
                }))
            };
            let mut r = Response::builder()
                .status(StatusCode::from_u16(reply.status).unwrap())
                .header("content-type", reply.content_type);
            for (k, v) in &reply.headers {
                r = r.header(*k, v);
            }
            r.body(body).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    TestServer {
        url,
        hits,
        bodies,
        headers,
        task,
    }
}

/// Reads a fixture under tests/fixtures/.
pub fn fixture(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
