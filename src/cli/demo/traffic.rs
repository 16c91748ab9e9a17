//! Simulated application traffic: a few workers sending the prompt for
//! the dataset's countries as varied users through serve, at a modest
//! pace, counting which variant answered (`x-promptgate-variant`). With
//! [`Feedback`] (`demo --improve`) each simulated user also knows the
//! right capital and rates every answer through `POST /v1/feedback`: 1 when
//! it names the capital, 0 when not.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use serde_json::json;

use super::USERS;
use crate::logstore::Variant;

/// Requests sent so far, by outcome.
#[derive(Default)]
pub(super) struct Counts {
    stable: AtomicU64,
    canary: AtomicU64,
    pub(super) failed: AtomicU64,
    /// Answers rated 1 / 0 by the simulated users (`--improve`).
    pub(super) liked: AtomicU64,
    pub(super) disliked: AtomicU64,
}

impl Counts {
    pub(super) fn sent(&self) -> u64 {
        self.stable.load(Ordering::Relaxed)
            + self.canary.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
    }

    pub(super) fn line(&self) -> String {
        let mut line = format!(
            "{} requests ({} stable, {} canary, {} failed)",
            self.sent(),
            self.stable.load(Ordering::Relaxed),
            self.canary.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed)
        );
        let (liked, disliked) = (
            self.liked.load(Ordering::Relaxed),
            self.disliked.load(Ordering::Relaxed),
        );
        if liked + disliked > 0 {
            line.push_str(&format!(
                ", feedback {liked} x 1 (right capital), {disliked} x 0 (wrong)"
            ));
        }
        line
    }
}

/// The simulated user of request `i`.
pub(super) fn user(i: u64) -> String {
    format!("user-{}", (i * 7) % USERS)
}

/// Sends the prompt for `country` as `user`; the variant that answered.
pub(super) async fn send_one(
    client: &reqwest::Client,
    addr: SocketAddr,
    country: &str,
    user: &str,
) -> anyhow::Result<Option<Variant>> {
    Ok(send(client, addr, country, user).await?.variant)
}

/// What serve answered to one request.
pub(super) struct Reply {
    pub(super) variant: Option<Variant>,
    pub(super) request_id: Option<String>,
    pub(super) answer: String,
}

/// The right capital of each country: what the simulated users know.
pub(super) type Feedback = Arc<HashMap<String, String>>;

/// Whether `answer` names `capital` (what the users' feedback says).
pub(super) fn names(answer: &str, capital: &str) -> bool {
    answer.to_lowercase().contains(&capital.to_lowercase())
}

/// Rates `reply` through `POST /v1/feedback`: 1 when it names the capital.
async fn rate(
    client: &reqwest::Client,
    addr: SocketAddr,
    reply: &Reply,
    capital: &str,
    user: &str,
) -> anyhow::Result<bool> {
    let Some(id) = &reply.request_id else {
        bail!("no x-request-id in the answer");
    };
    let right = names(&reply.answer, capital);
    let resp = client
        .post(format!("http://{addr}/v1/feedback"))
        .json(&json!({
            "request_id": id,
            "score": if right { 1.0 } else { 0.0 },
            "user": user,
            "comment": "simulated user (demo --improve)",
        }))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("feedback: HTTP {}", resp.status());
    }
    Ok(right)
}

/// Sends the prompt for `country` as `user`; the variant, request id and
/// answer.
pub(super) async fn send(
    client: &reqwest::Client,
    addr: SocketAddr,
    country: &str,
    user: &str,
) -> anyhow::Result<Reply> {
    let resp = client
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(&json!({
            "model": "prompt:capital",
            "variables": {"country": country},
            "user": user,
        }))
        .send()
        .await?;
    let variant = resp
        .headers()
        .get(crate::proxy::call::VARIANT)
        .and_then(|v| v.to_str().ok())
        .and_then(Variant::parse);
    let request_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = resp.status();
    let body = resp.bytes().await?;
    if !status.is_success() {
        bail!("HTTP {status}");
    }
    let answer = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.pointer("/choices/0/message/content")
                .and_then(|c| c.as_str())
                .map(str::to_string)
        })
        .unwrap_or_default();
    Ok(Reply {
        variant,
        request_id,
        answer,
    })
}

/// The running workers; dropping stops them.
pub(super) struct Traffic {
    pub(super) counts: Arc<Counts>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    pub(super) fn start(addr: SocketAddr, countries: Vec<String>) -> anyhow::Result<Traffic> {
        Traffic::start_with(addr, countries, None, Duration::from_millis(100))
    }

    /// Like [`Traffic::start`], each worker pausing `pause` between
    /// requests, and rating every answer when `feedback` is given.
    pub(super) fn start_with(
        addr: SocketAddr,
        countries: Vec<String>,
        feedback: Option<Feedback>,
        pause: Duration,
    ) -> anyhow::Result<Traffic> {
        let countries = Arc::new(countries);
        let client = super::http::client(Duration::from_secs(130))?;
        let counts = Arc::new(Counts::default());
        let next = Arc::new(AtomicU64::new(0));
        let workers = (0..4)
            .map(|_| {
                let (client, counts, next, countries, feedback) = (
                    client.clone(),
                    counts.clone(),
                    next.clone(),
                    countries.clone(),
                    feedback.clone(),
                );
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let country = &countries[(i % countries.len() as u64) as usize];
                        let who = user(i);
                        let reply = send(&client, addr, country, &who).await;
                        let counter = match &reply {
                            Ok(r) if r.variant == Some(Variant::Canary) => &counts.canary,
                            Ok(_) => &counts.stable,
                            Err(_) => &counts.failed,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        if let (Ok(reply), Some(capital)) =
                            (&reply, feedback.as_ref().and_then(|f| f.get(country)))
                        {
                            match rate(&client, addr, reply, capital, &who).await {
                                Ok(true) => counts.liked.fetch_add(1, Ordering::Relaxed),
                                Ok(false) => counts.disliked.fetch_add(1, Ordering::Relaxed),
                                Err(_) => counts.failed.fetch_add(1, Ordering::Relaxed),
                            };
                        }
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        Ok(Traffic { counts, workers })
    }

    pub(super) async fn wait_for_requests(&self, n: u64) {
        while self.counts.sent() < n {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(super) fn stop(&self) {
        for w in &self.workers {
            w.abort();
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop();
    }
}
