//! The review queue over HTTP (the dashboard's page and scripts use it):
//!
//! | route | does |
//! |---|---|
//! | `GET /v1/review/items[?status=pending\|leased\|decided]` | items with lease and decision |
//! | `GET /v1/review/items/{id}` | one item |
//! | `GET /v1/review/stats` | counts |
//! | `POST /v1/review/next` `{reviewer, suite?, lease_secs?}` | lease the next item (204: none) |
//! | `POST /v1/review/items/{id}/lease` `{reviewer, lease_secs?}` | lease one item |
//! | `POST /v1/review/items/{id}/release` `{reviewer}` | give it back |
//! | `POST /v1/review/items/{id}/decision` `{reviewer, kind, expected?, columns?, label?}` | decide; 200 only once fsynced |
//!
//! Behind the admin token when one is configured. Errors are JSON: 404
//! unknown item, 409 decided or held by another reviewer, 400/422 a bad body.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::app::{App, authorize};
use super::error::{ApiError, json_response};
use crate::review::{DEFAULT_LEASE_SECS, ItemStatus, ReviewError, ReviewQueue, Verdict};

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/review/items", get(list))
        .route("/v1/review/items/{id}", get(item))
        .route("/v1/review/stats", get(stats))
        .route("/v1/review/next", post(next))
        .route("/v1/review/items/{id}/lease", post(lease))
        .route("/v1/review/items/{id}/release", post(release))
        .route("/v1/review/items/{id}/decision", post(decision))
}

fn error(e: ReviewError) -> Response {
    let status = e
        .client_status()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = match status {
        StatusCode::NOT_FOUND => "unknown_item",
        StatusCode::CONFLICT => "conflict",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_decision",
        _ => "storage",
    };
    let mut err = ApiError::new(status, code, e.to_string());
    if let ReviewError::Invalid(f) = &e {
        err.field = Some(f.field.to_string());
    }
    if status.is_server_error() {
        tracing::error!(error = %e, "review queue");
    }
    err.into_response()
}

/// Runs a queue operation (it may fsync) off the async threads.
async fn run<T: Send + 'static>(
    app: &App,
    headers: &HeaderMap,
    op: impl FnOnce(&ReviewQueue) -> Result<T, ReviewError> + Send + 'static,
) -> Result<T, Response> {
    authorize(app, headers).map_err(|r| *r)?;
    let queue = app.review.clone();
    match tokio::task::spawn_blocking(move || op(&queue)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(e)),
        Err(e) => Err(
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
                .into_response(),
        ),
    }
}

/// [`run`], answering 200 with the result as JSON.
async fn blocking<T: serde::Serialize + Send + 'static>(
    app: &App,
    headers: &HeaderMap,
    op: impl FnOnce(&ReviewQueue) -> Result<T, ReviewError> + Send + 'static,
) -> Response {
    match run(app, headers, op).await {
        Ok(v) => json_response(StatusCode::OK, serde_json::to_vec(&v).unwrap_or_default()),
        Err(r) => r,
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ApiError::field(path, e.inner().to_string())
    })
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<ItemStatus>,
}

async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    blocking(&app, &headers, move |queue| {
        let mut items = queue.list()?;
        if let Some(s) = q.status {
            items.retain(|i| i.status == s);
        }
        Ok(items)
    })
    .await
}

async fn item(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    blocking(&app, &headers, move |queue| queue.get(&id)).await
}

async fn stats(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    blocking(&app, &headers, |queue| queue.stats()).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseBody {
    reviewer: String,
    #[serde(default)]
    suite: Option<String>,
    #[serde(default)]
    lease_secs: Option<i64>,
}

fn ttl(secs: Option<i64>) -> chrono::Duration {
    chrono::Duration::seconds(secs.unwrap_or(DEFAULT_LEASE_SECS).clamp(1, 24 * 3600))
}

async fn next(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let b: LeaseBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    match run(&app, &headers, move |queue| {
        queue.lease_next(&b.reviewer, ttl(b.lease_secs), b.suite.as_deref())
    })
    .await
    {
        Ok(Some(v)) => json_response(StatusCode::OK, serde_json::to_vec(&v).unwrap_or_default()),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

async fn lease(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let b: LeaseBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    blocking(&app, &headers, move |queue| {
        queue.lease(&id, &b.reviewer, ttl(b.lease_secs))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    reviewer: String,
}

async fn release(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let b: ReleaseBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    blocking(&app, &headers, move |queue| {
        queue.release(&id, &b.reviewer)?;
        Ok(json!({"released": id}))
    })
    .await
}

async fn decision(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    // `flatten` and `deny_unknown_fields` do not combine: the reviewer is
    // taken out first and the rest is the verdict, which denies unknown fields.
    let mut map: serde_json::Map<String, serde_json::Value> = match parse(&body) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let reviewer = match map.remove("reviewer") {
        Some(serde_json::Value::String(r)) => r,
        _ => {
            return ApiError::field("reviewer", "a string naming the reviewer is required")
                .into_response();
        }
    };
    let verdict: Verdict = match parse(&serde_json::to_vec(&map).unwrap_or_default()) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    blocking(&app, &headers, move |queue| {
        queue.decide(&id, &reviewer, verdict)
    })
    .await
}
