//! HTTP from the demo to its servers: one client builder, serve's typed
//! `/status` ([`crate::proxy::status::Status`], the struct the route
//! serialises), and the model list of a local Ollama.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use super::OLLAMA;
use crate::proxy::status::Status;

pub(super) fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    // reqwest is built without a bundled crypto provider (plain http here,
    // but the builder needs one installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("building the HTTP client")
}

/// The model names of an Ollama answering on 127.0.0.1:11434, if one does.
pub(super) async fn ollama_models() -> Option<Vec<String>> {
    let client = client(Duration::from_millis(800)).ok()?;
    let resp = client
        .get(format!("http://{OLLAMA}/api/tags"))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body: Value = resp.json().await.ok()?;
    let models = body.get("models")?.as_array()?;
    Some(
        models
            .iter()
            .filter_map(|m| m.get("name").and_then(Value::as_str).map(String::from))
            .collect(),
    )
}

/// Serve's `/status`.
pub(super) async fn status(client: &reqwest::Client, addr: SocketAddr) -> anyhow::Result<Status> {
    Ok(client
        .get(format!("http://{addr}/status"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Polls serve's `/status` until `ready` gives a value (or `limit` passes).
pub(super) async fn wait_for_status<T>(
    addr: SocketAddr,
    limit: Duration,
    what: &str,
    ready: impl Fn(&Status) -> Option<T>,
) -> anyhow::Result<T> {
    let client = client(Duration::from_secs(5))?;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(s) = status(&client, addr).await
            && let Some(t) = ready(&s)
        {
            return Ok(t);
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "serve did not show {what} within {} s; see .promptgate/logs/serve.log",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
