//! The dashboard's HTTP routes under `/ui`, for any [`Host`]: pages, the
//! JSON of the overview, the login form and the two state-changing forms
//! (enqueue a call for review, submit a review).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::cache::LogCache;
use super::calls::{self, CallFilter};
use super::overview::{self, Window};
use super::pages::{render, urlencode};
use super::{AnalysisView, CostPlane, Host, ReviewDecision, ReviewQueue, UiError, token_matches};
use crate::logstore::Redactor;
use crate::report::svg::{self, Size};
use minijinja::value::Serde;

/// Cookie the login form sets: the admin token itself, HttpOnly and
/// SameSite=Strict, limited to `/ui`.
const COOKIE: &str = "promptgate_ui";

/// No script runs on any page (there is none), nothing is fetched from
/// elsewhere, forms post only here, and no other site may frame a page.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Everything the pages share.
pub struct Dashboard {
    pub(crate) cache: LogCache,
    pub(crate) host: Arc<dyn Host>,
    pub(crate) review: Option<Arc<dyn ReviewQueue>>,
    pub(crate) cost: Option<Arc<dyn CostPlane>>,
    /// Shown in the header: `serve` or `read-only over N log roots`.
    pub(crate) mode: String,
    /// Analyzer rounds seen so far, by time (the confidence sequence).
    rounds: Mutex<BTreeMap<String, AnalysisView>>,
    /// The overview's pieces, kept between refreshes (one at a time: a
    /// refresh beside another waits, then reuses what the other computed).
    pieces: Mutex<overview::PieceCache>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("roots", &self.cache.roots())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    pub fn new(
        roots: Vec<std::path::PathBuf>,
        host: Arc<dyn Host>,
        mode: impl Into<String>,
    ) -> Dashboard {
        Dashboard {
            cache: LogCache::new(roots),
            host,
            review: None,
            cost: None,
            mode: mode.into(),
            rounds: Mutex::new(BTreeMap::new()),
            pieces: Mutex::new(overview::PieceCache::default()),
        }
    }

    /// Plugs in the review queue (the call page's button, the review page).
    pub fn with_review(mut self, queue: Arc<dyn ReviewQueue>) -> Dashboard {
        self.review = Some(queue);
        self
    }

    /// Plugs in the production cost/quality plane.
    pub fn with_cost(mut self, plane: Arc<dyn CostPlane>) -> Dashboard {
        self.cost = Some(plane);
        self
    }

    fn redactor(&self) -> Redactor {
        Redactor::new(self.host.redaction())
    }
}

/// The `/ui` routes over `dash`.
pub fn router(dash: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/ui", get(overview_page))
        .route("/ui/", get(overview_page))
        .route("/ui/api/overview", get(overview_json))
        .route("/ui/calls", get(calls_page))
        .route("/ui/calls/{id}", get(call_page))
        .route("/ui/calls/{id}/review", axum::routing::post(enqueue))
        .route("/ui/rollout", get(rollout_page))
        .route("/ui/drift", get(drift_page))
        .route("/ui/cost", get(cost_page))
        .route("/ui/review", get(review_page))
        .route("/ui/review/{id}", axum::routing::post(submit_review))
        .route("/ui/login", get(login_page).post(login))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(dash)
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

type Page = Result<Response, Response>;

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// An error as a page (or JSON under `/ui/api`).
fn error_page(dash: &Dashboard, status: StatusCode, message: &str) -> Response {
    let body = render(
        "message.html",
        "",
        "error",
        &dash.mode,
        minijinja::context! { title => "Error", message, kind => "error" },
    )
    .unwrap_or_else(|_| message.to_string());
    (status, html(body)).into_response()
}

fn ui_error(dash: &Dashboard, e: UiError) -> Response {
    let status = match e {
        UiError::NoSuchCall(_) => StatusCode::NOT_FOUND,
        UiError::BadRequest(_) => StatusCode::BAD_REQUEST,
        UiError::Unavailable(_) => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
        tracing::error!(error = %e, "dashboard page failed");
    }
    error_page(dash, status, &e.to_string())
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
        .into_response()
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// Whether the request carries the admin token (bearer or cookie); true
/// when none is configured.
fn authorized(dash: &Dashboard, headers: &HeaderMap) -> bool {
    let Some(token) = dash.host.admin_token().filter(|t| !t.is_empty()) else {
        return true;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    bearer
        .into_iter()
        .chain(cookie_token(headers))
        .any(|given| token_matches(&given, &token))
}

/// Whether a state-changing request comes from a page of this server:
/// its `Origin` names the `Host` it was sent to. Browsers send `Origin`
/// on every cross-origin POST and on same-origin form posts.
fn same_origin(headers: &HeaderMap) -> bool {
    let (Some(origin), Some(host)) = (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

/// The gate of every route but the login form: pages send a browser to
/// the login form, the JSON API answers 401, and state-changing requests
/// also need a same-origin `Origin`.
// The refusal is the handler's whole response, returned once per request.
#[allow(clippy::result_large_err)]
fn gate(
    dash: &Dashboard,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), Response> {
    if !authorized(dash, headers) {
        if path.starts_with("/ui/api/") || method != Method::GET {
            let mut r = json_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the dashboard needs the admin token (Authorization: Bearer <token>, or sign in at /ui/login)",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Err(r);
        }
        let next = urlencode(path);
        return Err(Redirect::to(&format!("/ui/login?next={next}")).into_response());
    }
    if method != Method::GET && !same_origin(headers) {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "state-changing requests must come from the dashboard's own pages (Origin must match Host)",
        ));
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverviewQuery {
    #[serde(default)]
    window: Option<String>,
    /// Seconds between automatic reloads of the page.
    #[serde(default)]
    refresh: Option<u32>,
}

fn window_of(s: Option<&str>) -> Result<Window, UiError> {
    match s.filter(|s| !s.is_empty()) {
        None => Ok(Window::Day),
        Some(w) => Window::parse(w)
            .ok_or_else(|| UiError::BadRequest(format!("window `{w}`: expected 1h, 24h or 7d"))),
    }
}

/// An overview and what its refresh did.
struct Computed {
    overview: overview::Overview,
    files: usize,
    files_read: usize,
    /// Pieces (one file's calls of a group in an interval) computed by
    /// this refresh, and kept for the next.
    pieces_computed: usize,
    pieces_kept: usize,
}

fn compute_overview(dash: &Dashboard, window: Window) -> Result<Computed, UiError> {
    let mut pieces = dash.pieces.lock().unwrap_or_else(PoisonError::into_inner);
    let now = Utc::now();
    let snapshot = dash.cache.refresh(now - window.duration())?;
    let overview = overview::overview_in(&snapshot, window, now, &mut pieces);
    let (pieces_computed, pieces_kept) = pieces.stats();
    Ok(Computed {
        overview,
        files: snapshot.files.len(),
        files_read: snapshot.files_read,
        pieces_computed,
        pieces_kept,
    })
}

const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One line chart per figure, one line per prompt and variant.
fn overview_charts(ov: &overview::Overview) -> Vec<String> {
    type Pick = fn(&overview::Figures) -> Option<f64>;
    let figures: &[(&str, Pick)] = &[
        ("requests", |f| Some(f.requests as f64)),
        ("error rate", |f| f.error_rate),
        ("timeout rate", |f| f.timeout_rate),
        ("latency p50 (ms)", |f| f.latency_p50_ms),
        ("latency p95 (ms)", |f| f.latency_p95_ms),
        ("latency p99 (ms)", |f| f.latency_p99_ms),
        ("time to first token p50 (ms)", |f| f.ttft_p50_ms),
        ("tokens (in + out)", |f| {
            Some((f.input_tokens + f.output_tokens) as f64)
        }),
        ("cost", |f| Some(f.cost)),
        ("online pass rate", |f| f.online_pass_rate),
        ("mean feedback", |f| f.feedback_mean),
    ];
    let fmt = |t: DateTime<Utc>| match ov.window {
        Window::Hour => t.format("%H:%M").to_string(),
        _ => t.format("%m-%d %H:%M").to_string(),
    };
    let x_range = Some((ov.since.timestamp() as f64, ov.until.timestamp() as f64));
    let (first, last) = (fmt(ov.since), fmt(ov.until));
    figures
        .iter()
        .map(|(title, pick)| {
            let series: Vec<svg::Series> = ov
                .groups
                .iter()
                .enumerate()
                .map(|(i, g)| svg::Series {
                    name: format!("{} {}", g.prompt, g.variant),
                    color: COLORS[i % COLORS.len()].to_string(),
                    points: g
                        .series
                        .iter()
                        .zip(&ov.bucket_starts)
                        .map(|(f, t)| {
                            let y = if f.requests == 0 { None } else { pick(f) };
                            (t.timestamp() as f64, y)
                        })
                        .collect(),
                })
                .collect();
            svg::line_chart(
                title,
                x_range,
                (&first, &last),
                &series,
                Size {
                    width: 420.0,
                    height: 210.0,
                },
            )
        })
        .collect()
}

async fn overview_page(
    State(dash): State<Arc<Dashboard>>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<OverviewQuery>,
) -> Page {
    gate(&dash, &method, "/ui", &headers)?;
    let window = window_of(q.window.as_deref()).map_err(|e| ui_error(&dash, e))?;
    let d = dash.clone();
    let body = super::priority::below_requests(move || -> Result<String, UiError> {
        let Computed {
            overview: ov,
            files,
            files_read,
            ..
        } = compute_overview(&d, window)?;
        let charts = overview_charts(&ov);
        let live = d.host.live();
        render(
            "overview.html",
            "overview",
            "overview",
            &d.mode,
            minijinja::context! {
                window => window.as_str(),
                windows => Window::ALL.iter().map(|w| w.as_str()).collect::<Vec<_>>(),
                since => ov.since.format("%Y-%m-%d %H:%M:%S").to_string(),
                until => ov.until.format("%Y-%m-%d %H:%M:%S").to_string(),
                groups => Serde(ov.groups),
                files, files_read, charts, live => Serde(live),
                refresh => q.refresh.filter(|r| *r > 0),
            },
        )
    })
    .await
    .map_err(|e| ui_error(&dash, UiError::Unavailable(e.to_string())))?
    .map_err(|e| ui_error(&dash, e))?;
    Ok(html(body))
}

/// `GET /ui/api/overview?window=`: the overview's figures as JSON.
async fn overview_json(
    State(dash): State<Arc<Dashboard>>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<OverviewQuery>,
) -> Page {
    gate(&dash, &method, "/ui/api/overview", &headers)?;
    let window = window_of(q.window.as_deref())
        .map_err(|e| json_error(StatusCode::BAD_REQUEST, "window", &e.to_string()))?;
    let d = dash.clone();
    let result = super::priority::below_requests(move || {
        compute_overview(&d, window).map(|c| {
            json!({
                "overview": c.overview,
                "files": c.files,
                "files_read": c.files_read,
                "pieces_computed": c.pieces_computed,
                "pieces_kept": c.pieces_kept,
                "live": d.host.live(),
            })
        })
    })
    .await
    .map_err(|e| json_error(StatusCode::INTERNAL_SERVER_ERROR, "task", &e.to_string()))?
    .map_err(|e| json_error(StatusCode::INTERNAL_SERVER_ERROR, "logs", &e.to_string()))?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        result.to_string(),
    )
        .into_response())
}

async fn calls_page(
    State(dash): State<Arc<Dashboard>>,
    method: Method,
    headers: HeaderMap,
    Query(f): Query<CallFilter>,
) -> Page {
    gate(&dash, &method, "/ui/calls", &headers)?;
    let window = window_of(f.window.as_deref().or(Some("7d"))).map_err(|e| ui_error(&dash, e))?;
    let d = dash.clone();
    let body = super::priority::below_requests(move || -> Result<String, UiError> {
        let since = Utc::now() - window.duration();
        let snapshot = d.cache.refresh(since)?;
        let (rows, matched) = calls::table(&snapshot, &f, since.timestamp_micros());
        let prompts: BTreeSet<&str> = snapshot
            .files
            .iter()
            .flat_map(|f| f.groups.iter().map(|g| g.prompt.as_str()))
            .collect();
        render(
            "calls.html",
            "calls",
            "calls",
            &d.mode,
            minijinja::context! {
                rows => Serde(rows), matched, prompts => Serde(prompts), filter => Serde(f),
                window => window.as_str(),
                windows => Window::ALL.iter().map(|w| w.as_str()).collect::<Vec<_>>(),
            },
        )
    })
    .await
    .map_err(|e| ui_error(&dash, UiError::Unavailable(e.to_string())))?
    .map_err(|e| ui_error(&dash, e))?;
    Ok(html(body))
}

/// Pretty-printed JSON text (as logged when it is not JSON).
fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_string())
}

async fn call_page(
    State(dash): State<Arc<Dashboard>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Page {
    gate(&dash, &method, &format!("/ui/calls/{id}"), &headers)?;
    let d = dash.clone();
    let body = super::priority::below_requests(move || -> Result<String, UiError> {
        let snapshot = d.cache.refresh(Utc::now() - Window::Week.duration())?;
        let (mut row, mut feedback) = calls::call(&snapshot, &id)?;
        let redactor = d.redactor();
        redactor.row(&mut row);
        for f in &mut feedback {
            for text in [&mut f.comment, &mut f.correction, &mut f.label]
                .into_iter()
                .flatten()
            {
                if let Some(r) = redactor.text(text) {
                    *text = r;
                }
            }
        }
        let messages: Vec<serde_json::Value> =
            serde_json::from_str(&row.messages).unwrap_or_default();
        let messages: Vec<_> = messages
            .iter()
            .map(|m| {
                let content = match m.get("content") {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                minijinja::context! {
                    role => m.get("role").and_then(|r| r.as_str()).unwrap_or("?"),
                    content,
                }
            })
            .collect();
        render(
            "call.html",
            "calls",
            "call",
            &d.mode,
            minijinja::context! {
                ts => row.ts.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                variables => pretty(&row.variables),
                messages,
                feedback => Serde(feedback),
                review => d.review.as_ref().is_some_and(|q| q.writable()),
                row => Serde(row),
            },
        )
    })
    .await
    .map_err(|e| ui_error(&dash, UiError::Unavailable(e.to_string())))?
    .map_err(|e| ui_error(&dash, e))?;
    Ok(html(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnqueueForm {
    #[serde(default)]
    reason: Option<String>,
}

async fn enqueue(
    State(dash): State<Arc<Dashboard>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<EnqueueForm>,
) -> Page {
    gate(&dash, &method, "/ui/calls", &headers)?;
    let Some(queue) = dash.review.clone() else {
        return Err(json_error(
            StatusCode::NOT_IMPLEMENTED,
            "no_review_queue",
            "this dashboard has no review queue",
        ));
    };
    let reason = form.reason.unwrap_or_else(|| "dashboard".into());
    // Reads the call's row and fsyncs the journal: off the async threads.
    let done = tokio::task::spawn_blocking(move || queue.enqueue(&id, &reason))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    match done {
        Ok(_) => Ok(Redirect::to("/ui/review").into_response()),
        Err(e) => Err(json_error(StatusCode::BAD_REQUEST, "enqueue", &e)),
    }
}

/// The analyzer's round as the page shows it, remembered by time.
fn remember_round(dash: &Dashboard, view: Option<&super::RolloutView>) -> Vec<AnalysisView> {
    let mut rounds = dash.rounds.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(v) = view {
        // Rounds without a canary say nothing about one: the page shows
        // the last analysis of a canary (and the rollback it led to).
        for r in v.rounds.iter().filter(|r| !r.checks.is_empty()) {
            rounds.insert(r.at.clone(), r.clone());
        }
    }
    // A long-running dashboard keeps the latest rounds only.
    while rounds.len() > 500 {
        rounds.pop_first();
    }
    rounds.values().cloned().collect()
}

async fn rollout_page(
    State(dash): State<Arc<Dashboard>>,
    method: Method,
    headers: HeaderMap,
) -> Page {
    gate(&dash, &method, "/ui/rollout", &headers)?;
    let d = dash.clone();
    let body = super::priority::below_requests(move || -> Result<String, UiError> {
        let rollout = d.host.rollout();
        let rounds = remember_round(&d, rollout.as_ref());
        let last = rounds.last().cloned();
        let mut charts = Vec::new();
        if let Some(last) = &last {
            let rows: Vec<(String, f64, Option<f64>, Option<f64>)> = last
                .checks
                .iter()
                .filter_map(|c| {
                    c.difference
                        .map(|d| (format!("{} {}", c.prompt, c.metric), d, c.ci_low, c.ci_high))
                })
                .collect();
            if !rows.is_empty() {
                charts.push(svg::interval_chart(
                    "canary − stable, with confidence intervals",
                    &rows,
                    0.0,
                    Size {
                        width: 520.0,
                        height: 80.0,
                    },
                ));
            }
            charts.extend(sequence_charts(&rounds));
        }
        render(
            "rollout.html",
            "rollout",
            "rollout",
            &d.mode,
            minijinja::context! { rollout => Serde(rollout), last => Serde(last), charts },
        )
    })
    .await
    .map_err(|e| ui_error(&dash, UiError::Unavailable(e.to_string())))?
    .map_err(|e| ui_error(&dash, e))?;
    Ok(html(body))
}

/// One round of one check: time (s), estimate, interval low and high.
type RoundPoint = (f64, Option<f64>, Option<f64>, Option<f64>);

/// Per check, its estimate and interval bounds over the rounds seen.
fn sequence_charts(rounds: &[AnalysisView]) -> Vec<String> {
    let mut by_check: BTreeMap<String, Vec<RoundPoint>> = BTreeMap::new();
    for r in rounds {
        let Ok(t) = DateTime::parse_from_rfc3339(&r.at) else {
            continue;
        };
        for c in &r.checks {
            by_check
                .entry(format!("{} {}", c.prompt, c.metric))
                .or_default()
                .push((t.timestamp() as f64, c.difference, c.ci_low, c.ci_high));
        }
    }
    by_check
        .into_iter()
        .filter(|(_, pts)| pts.len() > 1)
        .map(|(name, pts)| {
            let line =
                |label: &str, color: &str, pick: fn(&RoundPoint) -> Option<f64>| svg::Series {
                    name: label.to_string(),
                    color: color.to_string(),
                    points: pts.iter().map(|p| (p.0, pick(p))).collect(),
                };
            svg::line_chart(
                &format!("{name}: confidence sequence"),
                None,
                ("first round", "last round"),
                &[
                    line("estimate", "#333", |p| p.1),
                    line("low", "#1f77b4", |p| p.2),
                    line("high", "#d62728", |p| p.3),
                ],
                Size {
                    width: 420.0,
                    height: 200.0,
                },
            )
        })
        .collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DriftQuery {
    #[serde(default)]
    window: Option<String>,
}

/// The drift of the last window against the window before it, with the
/// default drift settings, over the logs.
async fn drift_page(
    State(dash): State<Arc<Dashboard>>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<DriftQuery>,
) -> Page {
    gate(&dash, &method, "/ui/drift", &headers)?;
    let window = window_of(q.window.as_deref()).map_err(|e| ui_error(&dash, e))?;
    let d = dash.clone();
    let body = super::priority::below_requests(move || -> Result<String, UiError> {
        use crate::logstore::{RequestFilter, read_requests};
        let now = Utc::now();
        let (mid, start) = (now - window.duration(), now - window.duration() * 2);
        let roots: Vec<_> = d.cache.roots().iter().filter(|r| r.exists()).collect();
        let rows = read_requests(
            &roots,
            &RequestFilter {
                since: Some(start),
                until: Some(now),
                prompt_id: None,
            },
        )?;
        let (reference, current): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .filter(crate::drift::is_stable_traffic)
            .partition(|r| r.ts < mid);
        let feedback = crate::logstore::read_feedback(
            &d.cache
                .roots()
                .iter()
                .map(|r| r.join(crate::logstore::FEEDBACK_DIR))
                .filter(|p| p.is_dir())
                .collect::<Vec<_>>(),
        )?;
        let settings = crate::spec::drift::DriftConfig::default();
        let extractor = crate::drift::Extractor::new(&settings).map_err(UiError::Unavailable)?;
        let mut report = crate::drift::analyze_rows(
            &settings,
            &extractor,
            &BTreeMap::new(),
            &reference,
            &current,
            &feedback,
        );
        report.reference = format!("{} .. {}", start.format("%Y-%m-%d %H:%M"), mid.format("%Y-%m-%d %H:%M"));
        report.current = format!("{} .. {}", mid.format("%Y-%m-%d %H:%M"), now.format("%Y-%m-%d %H:%M"));
        let body = format!(
            "<style>{}</style>{}",
            crate::report::drift_html::CSS.replace("body{", ".drift-report{"),
            crate::report::drift_html::body(&report, &now.to_rfc3339())
        );
        render(
            "message.html",
            "drift",
            "drift",
            &d.mode,
            minijinja::context! {
                title => format!("Drift: last {} against the {} before", window.as_str(), window.as_str()),
                message => "Stable and pass-through calls; default drift settings (promptgate drift for a configured run).",
                kind => "muted",
                body,
            },
        )
    })
    .await
    .map_err(|e| ui_error(&dash, UiError::Unavailable(e.to_string())))?
    .map_err(|e| ui_error(&dash, e))?;
    Ok(html(body))
}

async fn cost_page(State(dash): State<Arc<Dashboard>>, method: Method, headers: HeaderMap) -> Page {
    gate(&dash, &method, "/ui/cost", &headers)?;
    let Some(plane) = dash.cost.clone() else {
        return Err(ui_error(
            &dash,
            UiError::Unavailable("the cost-vs-quality plane is not available in this build".into()),
        ));
    };
    let d = dash.clone();
    let body = super::priority::below_requests(move || -> Result<String, UiError> {
        let points = plane.plane(d.cache.roots()).map_err(UiError::Unavailable)?;
        let svg_points: Vec<svg::Point> = points
            .iter()
            .map(|p| svg::Point {
                x: p.cost_per_call,
                y: p.quality,
                y_interval: None,
                label: p.label.clone(),
                color: if p.on_frontier { "#d62728" } else { "#1f77b4" }.to_string(),
            })
            .collect();
        let mut frontier: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.on_frontier)
            .map(|p| (p.cost_per_call, p.quality))
            .collect();
        frontier.sort_by(|a, b| a.0.total_cmp(&b.0));
        let chart = svg::scatter(
            "cost per call vs quality",
            ("cost per call", svg::Scale::Log),
            "quality",
            &svg_points,
            Some(&frontier),
            Size {
                width: 560.0,
                height: 360.0,
            },
        );
        render(
            "cost.html",
            "cost",
            "cost vs quality",
            &d.mode,
            minijinja::context! { points => Serde(points), chart },
        )
    })
    .await
    .map_err(|e| ui_error(&dash, UiError::Unavailable(e.to_string())))?
    .map_err(|e| ui_error(&dash, e))?;
    Ok(html(body))
}

async fn review_page(
    State(dash): State<Arc<Dashboard>>,
    method: Method,
    headers: HeaderMap,
) -> Page {
    gate(&dash, &method, "/ui/review", &headers)?;
    let Some(queue) = dash.review.clone() else {
        return Err(ui_error(
            &dash,
            UiError::Unavailable(
                "no review queue here (`promptgate ui` lists one when a log root holds `review/`)"
                    .into(),
            ),
        ));
    };
    let redactor = dash.redactor();
    let mut items = queue
        .items()
        .map_err(|e| ui_error(&dash, UiError::Unavailable(e)))?;
    for i in &mut items {
        if let Some(r) = redactor.text(&i.output) {
            i.output = r;
        }
    }
    render(
        "review.html",
        "review",
        "review",
        &dash.mode,
        minijinja::context! { items => Serde(items), writable => queue.writable() },
    )
    .map(html)
    .map_err(|e| ui_error(&dash, e))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewForm {
    decision: String,
    #[serde(default)]
    text: Option<String>,
}

async fn submit_review(
    State(dash): State<Arc<Dashboard>>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ReviewForm>,
) -> Page {
    gate(&dash, &method, "/ui/review", &headers)?;
    let Some(queue) = dash.review.clone() else {
        return Err(json_error(
            StatusCode::NOT_IMPLEMENTED,
            "no_review_queue",
            "this dashboard has no review queue",
        ));
    };
    let text = form.text.unwrap_or_default();
    let decision = match form.decision.as_str() {
        "accept" => ReviewDecision::Accept,
        "discard" => ReviewDecision::Discard,
        "correct" if !text.trim().is_empty() => ReviewDecision::Correct(text),
        "label" if !text.trim().is_empty() => ReviewDecision::Label(text),
        "correct" | "label" => {
            return Err(json_error(
                StatusCode::BAD_REQUEST,
                "text",
                "field `text`: a correction or label needs text",
            ));
        }
        other => {
            return Err(json_error(
                StatusCode::BAD_REQUEST,
                "decision",
                &format!(
                    "field `decision`: `{other}` (expected accept, correct, label or discard)"
                ),
            ));
        }
    };
    let done = tokio::task::spawn_blocking(move || queue.submit(&id, decision))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    match done {
        Ok(()) => Ok(Redirect::to("/ui/review").into_response()),
        Err(e) => Err(json_error(StatusCode::BAD_REQUEST, "review", &e)),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    failed: Option<u8>,
}

/// Only paths of the dashboard itself are followed after signing in.
fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with("/ui") && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or("/ui")
        .to_string()
}

async fn login_page(State(dash): State<Arc<Dashboard>>, Query(q): Query<LoginQuery>) -> Page {
    render(
        "login.html",
        "",
        "sign in",
        &dash.mode,
        minijinja::context! { next => safe_next(q.next.as_deref()), failed => q.failed.is_some() },
    )
    .map(html)
    .map_err(|e| ui_error(&dash, e))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginForm {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

async fn login(
    State(dash): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Page {
    if !same_origin(&headers) {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "sign in from the dashboard's own login page",
        ));
    }
    let next = safe_next(form.next.as_deref());
    let ok = dash
        .host
        .admin_token()
        .is_none_or(|t| token_matches(&form.token, &t));
    if !ok {
        return Ok(
            Redirect::to(&format!("/ui/login?failed=1&next={}", urlencode(&next))).into_response(),
        );
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict",
        form.token
    );
    let mut r = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_needs_origin_matching_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(!same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
    }

    #[test]
    fn login_follows_only_dashboard_paths() {
        assert_eq!(safe_next(Some("/ui/calls")), "/ui/calls");
        assert_eq!(safe_next(Some("https://evil.example/ui")), "/ui");
        assert_eq!(safe_next(Some("//evil.example/ui")), "/ui");
        assert_eq!(safe_next(None), "/ui");
    }

    #[test]
    fn cookie_token_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; promptgate_ui=s3cret; b=2"),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("s3cret"));
    }
}
