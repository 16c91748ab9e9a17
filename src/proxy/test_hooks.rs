//! TEST HOOKS, for the integration tests only. They exist only when the
//! server starts with `PROMPTGATE_TEST_HOOKS=1` in its environment; without
//! it the routes below are not mounted at all (404), whatever the config.
//!
//! `POST /admin/test/stall-log-writer` with `{"stalled": true|false}`: the
//! request log writer stops taking rows from its channel (a stalled disk)
//! until called again with `false`. The back-pressure tests use it to fill
//! the channel and check `on_full: drop` and `block` end to end. Leaving the
//! writer stalled also stalls a graceful shutdown, which waits for the rows.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};

use super::app::App;
use crate::logstore::StallGuard;

/// Environment variable that mounts the test hooks when it is `1`.
pub const ENV: &str = "PROMPTGATE_TEST_HOOKS";

/// The stall in force; one server per process, so one slot.
static STALL: Mutex<Option<StallGuard>> = Mutex::new(None);

pub fn enabled() -> bool {
    std::env::var_os(ENV).is_some_and(|v| v == "1")
}

/// The hook routes when [`enabled`], else an empty router.
pub fn routes() -> Router<Arc<App>> {
    if !enabled() {
        return Router::new();
    }
    tracing::warn!("{ENV}=1: test hooks mounted under /admin/test/ (never in production)");
    Router::new().route("/admin/test/stall-log-writer", post(stall_log_writer))
}

async fn stall_log_writer(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let stalled = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("stalled").and_then(Value::as_bool));
    let Some(stalled) = stalled else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"message": "expected {\"stalled\": true|false}", "field": "stalled"}})),
        )
            .into_response();
    };
    let mut slot = STALL.lock().unwrap_or_else(PoisonError::into_inner);
    // Replacing a live guard would drop it after the new one is made and
    // so un-stall the writer: keep the one in force.
    if !stalled {
        slot.take();
    } else if slot.is_none() {
        *slot = Some(app.logger.stall());
    }
    axum::Json(json!({"stalled": stalled})).into_response()
}
