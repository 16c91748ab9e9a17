//! What every handler shares: the reloadable state, the request logger, the
//! feedback journal, the settings `serve` started with, and the in-flight
//! counter graceful shutdown waits on. Limits and other reloadable
//! settings live in the serving state ([`super::state::ServingState::config`]).
//!
//! Only handlers take the whole [`App`]. Background tasks (the analyzer,
//! the fetch loop) take the few handles they use and write their rounds to
//! a [`TaskStatus`](super::status::TaskStatus) the `/status` route reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;

use super::error::ApiError;

use super::metrics::Metrics;
use super::online::JudgePool;
use super::reload::Reloader;
use super::status::TaskStatuses;
use crate::logstore::{FeedbackJournal, RequestLogger};
use crate::settings::Settings;

/// The handlers' shared state.
#[derive(Debug)]
pub struct App {
    pub reloader: Arc<Reloader>,
    pub logger: RequestLogger,
    pub journal: FeedbackJournal,
    /// As resolved at start-up: what needs a restart to change (listen
    /// address, log folder, control ref) is in force from here.
    pub settings: Settings,
    pub in_flight: Arc<InFlight>,
    pub started: std::time::Instant,
    pub metrics: Arc<Metrics>,
    /// The background tasks' rounds ([`super::analyzer`], [`super::fetch`]).
    pub tasks: TaskStatuses,
    /// Where online judge calls run ([`super::online`]).
    pub judges: JudgePool,
    /// Moves finished log files to `logging.store` ([`crate::lake::upload`]).
    pub uploader: Option<crate::lake::upload::Uploader>,
    /// The review queue of the log folder ([`super::review_routes`]).
    pub review: crate::review::ReviewQueue,
    /// `review.auto_enqueue`: low feedback into the queue ([`super::auto_review`]).
    pub auto_review: Arc<super::auto_review::AutoReview>,
}

/// Counts calls not yet finished (their log row not yet queued).
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicU64,
    zero: Notify,
}

impl InFlight {
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.clone())
    }

    pub fn get(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until no call is in flight.
    pub async fn drained(&self) {
        loop {
            let notified = self.zero.notified();
            if self.get() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One call in flight; dropping it ends the call.
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.zero.notify_waiters();
        }
    }
}

/// The admin token in force: the variable `server.admin_token_env` of the
/// serving state names, when set and not empty.
pub(crate) fn admin_token(app: &App) -> Option<String> {
    app.reloader
        .current()
        .config
        .server
        .admin_token_env
        .as_ref()
        .and_then(|var| std::env::var(var).ok())
        .filter(|t| !t.is_empty())
}

/// Checks the bearer token of `/admin/*` when one is configured: the
/// variable `server.admin_token_env` of the serving state names, when set.
pub(super) fn authorize(app: &App, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(token) = admin_token(app) else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Constant-time comparison: the token's prefix must not leak by timing.
    let ok = given.is_some_and(|g| crate::ui::token_matches(g, &token));
    if ok {
        Ok(())
    } else {
        let mut r = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "admin endpoints need `Authorization: Bearer <token>` (server.admin_token_env)",
        )
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
        Err(Box::new(r))
    }
}
