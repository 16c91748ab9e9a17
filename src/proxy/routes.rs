//! The HTTP routes: the client APIs (OpenAI, Ollama), feedback, health,
//! status, admin.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::app::{App, authorize};
use super::call;
use super::error::{ApiError, json_response};
use super::metrics::GaugeSample;
use super::reload::ReloadOutcome;
use super::routing::user_hash;
use super::state::{RefState, ServingState};
use super::status::{
    CanaryRef, DriftSnapshot, LoggingStatus, OnlineStatus, ServedRef, ServerStatus, SettingsStatus,
    Status, status_name,
};
use crate::logstore::{FeedbackRecord, LogStoreError};
use crate::provider::ChatApi;

/// All routes of the proxy.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .merge(super::test_hooks::routes())
        .merge(super::review_routes::routes())
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/models", get(openai_models))
        .route("/api/chat", post(ollama_chat))
        .route("/api/generate", post(ollama_generate))
        .route("/api/tags", get(ollama_tags))
        .route(
            "/api/version",
            get(|| async {
                json_ok(json!({"version": concat!("promptgate-", env!("CARGO_PKG_VERSION"))}))
            }),
        )
        .route("/v1/feedback", post(feedback))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(status_route))
        .route("/admin/reload", post(admin_reload))
        .route("/metrics", get(metrics))
        // The limit is `server.max_body_bytes` of the serving state, which
        // reloads: bodies are read by [`read_body`].
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

fn json_ok(v: Value) -> Response {
    json_response(StatusCode::OK, v.to_string().into_bytes())
}

/// The body, or the JSON error of a body that could not be read (413 when
/// over `server.max_body_bytes` as the serving state has it: no upstream
/// call is made).
async fn read_body(app: &App, body: Body, api: ChatApi) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let limit = app.reloader.current().config.server.max_body_bytes;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            let err = if e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::too_large(limit)
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    format!("failed to read the request body: {e}"),
                )
            };
            Err(err.in_api(api))
        }
    }
}

async fn openai_chat(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    match read_body(&app, body, ChatApi::OpenAi).await {
        Ok(b) => call::chat(app, ChatApi::OpenAi, headers, b).await,
        Err(e) => e.into_response(),
    }
}

async fn ollama_chat(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    match read_body(&app, body, ChatApi::OllamaChat).await {
        Ok(b) => call::chat(app, ChatApi::OllamaChat, headers, b).await,
        Err(e) => e.into_response(),
    }
}

async fn ollama_generate(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    match read_body(&app, body, ChatApi::OllamaGenerate).await {
        Ok(b) => call::chat(app, ChatApi::OllamaGenerate, headers, b).await,
        Err(e) => e.into_response(),
    }
}

/// Names a client may use as `model`: `prompt:<id>` for every served
/// prompt, then the model aliases of promptgate.yaml.
fn model_names(app: &App) -> Vec<String> {
    let state = app.reloader.current();
    let mut names: Vec<String> = state
        .prompt_ids()
        .into_iter()
        .map(|id| format!("prompt:{id}"))
        .collect();
    names.extend(state.models.keys().cloned());
    names
}

async fn openai_models(State(app): State<Arc<App>>) -> Response {
    let data: Vec<Value> = model_names(&app)
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "promptgate"}))
        .collect();
    json_ok(json!({"object": "list", "data": data}))
}

async fn ollama_tags(State(app): State<Arc<App>>) -> Response {
    let models: Vec<Value> = model_names(&app)
        .into_iter()
        .map(|name| {
            json!({
                "name": name, "model": name, "modified_at": "1970-01-01T00:00:00Z",
                "size": 0, "digest": "",
                "details": {"format": "", "family": "promptgate", "parameter_size": "", "quantization_level": ""},
            })
        })
        .collect();
    json_ok(json!({ "models": models }))
}

fn opt_string(
    body: &mut Map<String, Value>,
    key: &'static str,
) -> Result<Option<String>, ApiError> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::field(key, "must be a string")),
    }
}

/// `POST /v1/feedback`: validated, then appended to the journal and
/// fsynced before the 2xx.
async fn feedback(State(app): State<Arc<App>>, body: Body) -> Response {
    let body = read_body(&app, body, ChatApi::OpenAi).await;
    let record = match body.and_then(|b| feedback_record(&b)) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let feedback_id = record.feedback_id.clone();
    let request_id = record.request_id.clone();
    let low = record.clone();
    match app.journal.append_async(record).await {
        Ok(()) => {
            // Stored first: the queue is fed from what was acknowledged.
            let config = &app.reloader.current().config;
            app.auto_review.on_feedback(
                config.review.auto_enqueue.as_ref(),
                config.logging.flush_interval_ms,
                &low,
            );
            json_ok(
                json!({"feedback_id": feedback_id, "request_id": request_id, "status": "stored"}),
            )
        }
        Err(LogStoreError::Invalid(e)) => ApiError::field(e.field, e.message).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "feedback not stored");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage",
                format!("feedback not stored: {e}"),
            )
            .into_response()
        }
    }
}

/// Parses and validates a feedback body; the error names the field.
fn feedback_record(body: &[u8]) -> Result<FeedbackRecord, ApiError> {
    let mut m: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not a JSON object: {e}"),
        )
    })?;
    let request_id = opt_string(&mut m, "request_id")?
        .ok_or_else(|| ApiError::field("request_id", "is required"))?;
    let score = match m.remove("score") {
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| ApiError::field("score", "must be a number"))?,
        None | Some(Value::Null) => return Err(ApiError::field("score", "is required")),
        Some(_) => return Err(ApiError::field("score", "must be a number")),
    };
    let mut record = FeedbackRecord::new(request_id, score);
    record.label = opt_string(&mut m, "label")?;
    record.correction = opt_string(&mut m, "correction")?;
    record.comment = opt_string(&mut m, "comment")?;
    record.user_hash = opt_string(&mut m, "user")?.as_deref().map(user_hash);
    if let Some(k) = m.keys().next() {
        return Err(ApiError::field(
            k.clone(),
            "unknown field (expected request_id, score, label, correction, comment, user)",
        ));
    }
    record
        .validate()
        .map_err(|e| ApiError::field(e.field, e.message))?;
    Ok(record)
}

/// `GET /status`: what is serving, the last reload, the log writer, the
/// background tasks, the settings.
pub fn status(app: &App) -> Status {
    let state = app.reloader.current();
    let reload = app.reloader.status();
    let canary = state.canary.as_ref().map(|c| CanaryRef {
        git_ref: c.state.git_ref.to_string(),
        commit: c.state.commit.to_string(),
        weight: c.rule.weight,
        applies_to: c.rule.prompts.clone(),
        sticky: c.rule.sticky,
        sticky_header: c.sticky_header.as_ref().map(|h| h.as_str().to_string()),
        prompts: sorted_ids(&c.state),
    });
    Status {
        generation: state.generation,
        control_ref: state.control_ref.clone(),
        control_commit: state.control_commit.clone(),
        built_at: state.built_at,
        stable: ServedRef {
            git_ref: state.stable.git_ref.to_string(),
            commit: state.stable.commit.to_string(),
            prompts: sorted_ids(&state.stable),
        },
        canary,
        models: state.models.keys().cloned().collect(),
        last_reload: reload.last,
        reloads: reload.counts,
        in_flight: app.in_flight.get(),
        log: app.logger.stats(),
        uptime_s: app.started.elapsed().as_secs_f64(),
        online: online_status(&state, app),
        analysis: app.tasks.analysis.get(),
        fetch: app.tasks.fetch.get(),
        drift: app.tasks.drift.get(),
        settings: settings_status(&state, app),
    }
}

fn sorted_ids(r: &RefState) -> Vec<String> {
    let mut ids: Vec<String> = r.prompts.keys().cloned().collect();
    ids.sort();
    ids
}

/// The `logging` and `server` settings in force, and the committed changes
/// that wait for a restart.
fn settings_status(state: &ServingState, app: &App) -> SettingsStatus {
    let running = &app.settings;
    let (logging, server) = (&state.config.logging, &state.config.server);
    SettingsStatus {
        commit: state.control_commit.clone(),
        control_ref: running.control_ref.clone(),
        listen: running.listen.clone(),
        log_dir: running.log_dir.clone(),
        logging: LoggingStatus {
            flush_interval_ms: logging.flush_interval_ms,
            flush_rows: logging.flush_rows,
            channel_capacity: running.config.logging.channel_capacity,
            on_full: logging.on_full,
            redact: logging.redact,
        },
        server: ServerStatus {
            max_body_bytes: server.max_body_bytes,
            request_timeout_ms: server.request_timeout_ms,
            circuit_breaker: server.circuit_breaker,
            admin_token_env: server.admin_token_env.clone(),
        },
        review: state.config.review.clone(),
        pending_restart: running.pending_restart(&state.config),
    }
}

/// The online assertions of every served prompt (by variant) and the
/// verdicts counted so far.
fn online_status(state: &ServingState, app: &App) -> OnlineStatus {
    let refs = std::iter::once(("stable", &state.stable))
        .chain(state.canary.as_ref().map(|c| ("canary", &c.state)));
    let assertions = refs
        .map(|(variant, r)| {
            let by_prompt = r
                .prompts
                .iter()
                .map(|(id, p)| {
                    let keys = p.online.keys().into_iter().map(str::to_string).collect();
                    (id.clone(), keys)
                })
                .collect();
            (variant.to_string(), by_prompt)
        })
        .collect();
    OnlineStatus {
        assertions,
        counts: app.metrics.online_counts(),
    }
}

async fn status_route(State(app): State<Arc<App>>) -> Response {
    match serde_json::to_vec(&status(&app)) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "status",
            format!("serialising the status: {e}"),
        )
        .into_response(),
    }
}

/// `POST /admin/reload`: rebuilds the state now, even if no ref moved.
async fn admin_reload(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&app, &headers) {
        return *r;
    }
    match app.reloader.reload(true).await {
        ReloadOutcome::Swapped { generation } => json_ok(json!({"reloaded": true, "generation": generation})),
        ReloadOutcome::Unchanged => json_ok(json!({"reloaded": false, "generation": app.reloader.current().generation})),
        ReloadOutcome::Refused(e) => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"reloaded": false, "error": {"message": e.to_string(), "commit": e.commit, "code": "invalid_state"}, "generation": app.reloader.current().generation})
                .to_string()
                .into_bytes(),
        ),
    }
}

/// `GET /metrics`: Prometheus text; gauges are read at scrape time.
async fn metrics(State(app): State<Arc<App>>) -> Response {
    let log = app.logger.stats();
    let state = app.reloader.current();
    let g = |name: &'static str, help: &'static str, value: f64| GaugeSample {
        name,
        help,
        labels: Vec::new(),
        value,
    };
    let mut gauges = vec![
        g(
            "promptgate_log_queue_depth",
            "Request log rows waiting in the channel.",
            log.queue_depth as f64,
        ),
        g(
            "promptgate_log_queue_capacity",
            "Capacity of the request log channel.",
            log.queue_capacity as f64,
        ),
        g(
            "promptgate_log_buffered_rows",
            "Rows taken from the channel, not yet in a file.",
            log.buffered_rows as f64,
        ),
        g(
            "promptgate_log_rows_written",
            "Request log rows written to Parquet files.",
            log.rows_written as f64,
        ),
        g(
            "promptgate_log_rows_dropped",
            "Request log rows that never reached a file.",
            log.rows_dropped as f64,
        ),
        g(
            "promptgate_log_write_errors",
            "Failed request log file writes (retried).",
            log.write_errors as f64,
        ),
        g(
            "promptgate_in_flight",
            "Calls in flight (their log row not yet queued).",
            app.in_flight.get() as f64,
        ),
        g(
            "promptgate_state_generation",
            "Generation of the serving state (+1 per reload).",
            state.generation as f64,
        ),
        g(
            "promptgate_canary_weight",
            "Canary weight in percent (0 without a canary).",
            state.canary.as_ref().map_or(0.0, |c| c.rule.weight),
        ),
    ];
    if let Some(u) = &app.uploader {
        let up = u.stats();
        gauges.extend([
            g(
                "promptgate_lake_backlog_files",
                "Finished log files waiting for upload to logging.store.",
                up.backlog_files as f64,
            ),
            g(
                "promptgate_lake_backlog_bytes",
                "Bytes of finished log files waiting for upload.",
                up.backlog_bytes as f64,
            ),
            g(
                "promptgate_lake_uploaded_files",
                "Log files uploaded to logging.store (and deleted locally).",
                up.uploaded_files as f64,
            ),
            g(
                "promptgate_lake_upload_errors",
                "Failed upload rounds (each retried after a backoff).",
                up.upload_errors as f64,
            ),
            g(
                "promptgate_lake_writer_stalled",
                "1 while the upload backlog is over max_backlog_mb and the log writer waits.",
                f64::from(u8::from(up.writer_stalled)),
            ),
        ]);
    }
    for (upstream, b) in app.reloader.breakers().all() {
        gauges.push(GaugeSample {
            name: "promptgate_breaker_state",
            help: "Circuit breaker per upstream: 0 closed, 1 half-open, 2 open.",
            labels: vec![("upstream", upstream)],
            value: b.state().as_gauge(),
        });
    }
    gauges.extend(drift_gauges(&app.tasks.drift.get()));
    gauges.push(g(
        "promptgate_review_auto_pending",
        "Low-feedback calls waiting for the request log before review.auto_enqueue queues them.",
        app.auto_review.pending() as f64,
    ));
    gauges.push(g(
        "promptgate_review_auto_recent_calls",
        "Finished prompt calls kept in memory for review.auto_enqueue (bounded).",
        app.auto_review.recent_calls() as f64,
    ));
    let mut r = app.metrics.render(&gauges).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// The last drift round as gauges: per prompt, drift (1), none (0) or not
/// enough data (-1); per tested feature, its effect size.
fn drift_gauges(drift: &DriftSnapshot) -> Vec<GaugeSample> {
    let Some(run) = &drift.last else {
        return Vec::new();
    };
    let mut gauges = vec![GaugeSample {
        name: "promptgate_drift_last_run_timestamp_seconds",
        help: "When serve's drift task last ran (Unix time).",
        labels: Vec::new(),
        value: run.at.timestamp() as f64,
    }];
    for g in run.result.iter().flat_map(|r| &r.groups) {
        gauges.push(GaugeSample {
            name: "promptgate_drift",
            help: "Drift per prompt in the last drift round: 1 drift, 0 none, -1 not enough data.",
            labels: vec![("prompt", g.group.clone())],
            value: if !g.drifted.is_empty() {
                1.0
            } else if g.status == status_name(crate::drift::Status::NotEnoughData) {
                -1.0
            } else {
                0.0
            },
        });
        for f in &g.features {
            gauges.push(GaugeSample {
                name: "promptgate_drift_effect",
                help: "Effect size per prompt and feature in the last drift round (measure in `effect`).",
                labels: vec![
                    ("prompt", g.group.clone()),
                    ("feature", f.name.clone()),
                    ("effect", f.effect_name.clone()),
                ],
                value: f.effect,
            });
        }
    }
    gauges
}
