//! Alerts: the one sender of the canary's `on_regression: alert` and of
//! drift found by serve's drift task. An alert is a warning in the log
//! (`tracing::warn!`, with its kind) and, when a webhook is configured, a
//! JSON POST to it.
//!
//! Invariant: raising an alert never fails its caller. A webhook that
//! cannot be reached or answers with an error becomes a note (and a
//! warning), so the analysis that raised it is recorded all the same.

use serde::Serialize;

/// Why a webhook POST failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("{url}: cannot build the HTTP client: {message}")]
    Client { url: String, message: String },
    #[error("{url}: {source}")]
    Send {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: HTTP {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
}

/// POSTs `body` as JSON to `url` (10 s timeout); Ok on a 2xx answer.
pub async fn post_json<T: Serialize + ?Sized>(url: &str, body: &T) -> Result<(), AlertError> {
    use crate::provider::http::{Transport, shared_client};
    let client = shared_client(5_000, Transport::for_url(url)).map_err(|e| AlertError::Client {
        url: url.to_string(),
        message: e.to_string(),
    })?;
    let resp = client
        .post(url)
        .timeout(std::time::Duration::from_secs(10))
        .json(body)
        .send()
        .await
        .map_err(|source| AlertError::Send {
            url: url.to_string(),
            source,
        })?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(AlertError::Status {
            url: url.to_string(),
            status: resp.status(),
        })
    }
}

/// Raises an alert of `kind` (`canary_regression`, `drift`): a warning
/// with `summary`, then `body` POSTed to `webhook` when one is set.
/// Returns the notes to record: `ALERT: <summary>` and the webhook's
/// outcome.
pub async fn raise<T: Serialize + ?Sized>(
    kind: &str,
    summary: &str,
    webhook: Option<&str>,
    body: &T,
) -> Vec<String> {
    tracing::warn!(alert = kind, "{summary}");
    let mut notes = vec![format!("ALERT: {summary}")];
    if let Some(url) = webhook {
        notes.push(match post_json(url, body).await {
            Ok(()) => format!("webhook {url} notified"),
            Err(e) => {
                tracing::warn!(alert = kind, error = %e, "alert webhook failed");
                format!("webhook failed: {e}")
            }
        });
    }
    notes
}
