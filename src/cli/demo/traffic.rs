//! Simulated application traffic: a few workers sending the prompt for
//! the dataset's countries as varied users through serve, at a modest
//! pace, counting which variant answered (`x-promptgate-variant`).

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
}

impl Counts {
    pub(super) fn sent(&self) -> u64 {
        self.stable.load(Ordering::Relaxed)
            + self.canary.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
    }

    pub(super) fn line(&self) -> String {
        format!(
            "{} requests ({} stable, {} canary, {} failed)",
            self.sent(),
            self.stable.load(Ordering::Relaxed),
            self.canary.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed)
        )
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
    let status = resp.status();
    let _ = resp.bytes().await?;
    if !status.is_success() {
        bail!("HTTP {status}");
    }
    Ok(variant)
}

/// The running workers; dropping stops them.
pub(super) struct Traffic {
    pub(super) counts: Arc<Counts>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    pub(super) fn start(addr: SocketAddr, countries: Vec<String>) -> anyhow::Result<Traffic> {
        let countries = Arc::new(countries);
        let client = super::http::client(Duration::from_secs(130))?;
        let counts = Arc::new(Counts::default());
        let next = Arc::new(AtomicU64::new(0));
        let workers = (0..4)
            .map(|_| {
                let (client, counts, next, countries) = (
                    client.clone(),
                    counts.clone(),
                    next.clone(),
                    countries.clone(),
                );
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let country = &countries[(i % countries.len() as u64) as usize];
                        let counter = match send_one(&client, addr, country, &user(i)).await {
                            Ok(Some(Variant::Canary)) => &counts.canary,
                            Ok(_) => &counts.stable,
                            Err(_) => &counts.failed,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
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
