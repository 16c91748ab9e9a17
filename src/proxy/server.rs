//! Starting and stopping the proxy: from the resolved settings
//! ([`crate::settings`], the control ref's promptgate.yaml), start the
//! request logger and feedback journal, build the first state, watch the
//! refs, serve, and drain on shutdown. Each reload applies the new state's
//! `logging` and `server` settings to the writer and the breakers; those
//! only a restart changes are reported at `/status`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use super::analyzer::{self, AnalyzerHandles, AnalyzerOptions, AnalyzerTarget};
use super::app::{App, InFlight};
use super::auto_review::{self, AutoReview, AutoReviewHandles};
use super::breaker::BreakerConfig;
use super::drift_task::{self, DriftHandles, DriftOptions, DriftTarget};
use super::fetch::{self, FetchHandles, FetchOptions};
use super::metrics::Metrics;
use super::online::JudgePool;
use super::reload::{RefWatcher, Reloader};
use super::routes;
use super::state::{Breakers, BuildError, ServingState};
use super::ui_host;
use crate::logstore::{FeedbackJournal, LogStoreError, LoggerStats, RequestLogger};
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot serve{}: {}", .0.commit.as_ref().map(|c| format!(" commit {c}")).unwrap_or_default(), .0)]
    State(#[from] BuildError),
    #[error("request log: {0}")]
    Log(#[from] LogStoreError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("watching the repository: {0}")]
    Watch(#[from] notify::Error),
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    #[error("logging.store: {0}")]
    Lake(#[from] crate::lake::LakeError),
    #[error("review queue: {0}")]
    Review(#[from] crate::review::ReviewError),
}

/// What `serve` is started with.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Resolved for [`crate::settings::Scope::Production`]: the repository,
    /// the control ref, the log folder, the listen address.
    pub settings: Settings,
    pub grace: Duration,
    /// The canary analyzer task.
    pub analyzer: AnalyzerOptions,
    /// Follow a shared remote (`serve --fetch`).
    pub fetch: Option<FetchOptions>,
    /// The drift task and the review queue of `on_drift: review`.
    pub drift: DriftOptions,
}

/// How a server stopped.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownReport {
    pub log: LoggerStats,
    /// Calls still running when the grace period ended (0 = clean drain).
    pub abandoned: u64,
}

/// A bound, ready server.
pub struct Server {
    app: Arc<App>,
    listener: TcpListener,
    addr: SocketAddr,
    grace: Duration,
    _watcher: RefWatcher,
    /// The analyzer and fetch loops; aborted when the server stops.
    _tasks: Vec<AbortOnDrop>,
}

/// A background task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Server {
    /// Starts logging, builds the first state, starts watching and binds
    /// the listener. Fails if the first state is invalid.
    pub async fn bind(opts: ServeOptions) -> Result<Server, ServeError> {
        let settings = opts.settings.clone();
        let (root, control_ref) = (settings.root().to_path_buf(), settings.control_ref.clone());
        let (logger, journal) = open_logs(&settings)?;
        let (uploader, upload_task) = start_uploader(&settings, &logger, &journal)?;
        let metrics = Arc::new(Metrics::new());
        let breakers = Arc::new(Breakers::new(BreakerConfig::from(
            &settings.config.server.circuit_breaker,
        )));
        let on_reload = {
            let (metrics, logger, breakers) = (metrics.clone(), logger.clone(), breakers.clone());
            move |swapped: Option<&ServingState>| {
                metrics.record_reload(swapped.is_some());
                if let Some(state) = swapped {
                    apply_settings(state, &logger, &breakers);
                }
            }
        };
        let reloader = Arc::new(Reloader::start(
            &root,
            &control_ref,
            breakers.clone(),
            Some(Box::new(on_reload)),
        )?);
        // The control ref may have moved since the settings were read.
        apply_settings(&reloader.current(), &logger, &breakers);
        let watcher = reloader.watch()?;
        let listen = settings.listen.clone();
        let listener = TcpListener::bind(&listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: listen.clone(),
                source,
            })?;
        let addr = listener.local_addr()?;
        let review = crate::review::ReviewQueue::for_log_root(&settings.log_dir)?;
        let app = Arc::new(App {
            review,
            auto_review: Arc::new(AutoReview::new(metrics.clone())),
            reloader,
            logger,
            journal,
            settings,
            in_flight: Arc::new(InFlight::default()),
            started: Instant::now(),
            judges: JudgePool::new(metrics.clone()),
            metrics,
            tasks: Default::default(),
            uploader,
        });
        let mut tasks = spawn_tasks(&app, &opts);
        tasks.extend(upload_task.map(AbortOnDrop));
        Ok(Server {
            app,
            listener,
            addr,
            grace: opts.grace,
            _watcher: watcher,
            _tasks: tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets
    /// in-flight requests and streams finish within the grace period, and
    /// flushes every log row.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<ShutdownReport, ServeError> {
        let Server {
            app,
            listener,
            grace,
            _watcher,
            _tasks,
            ..
        } = self;
        // TCP_NODELAY: without it small responses wait for the peer's
        // delayed ACK (~40 ms per request).
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let signal = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        let router = routes::router(app.clone()).merge(ui_host::router(app.clone()));
        let serve = axum::serve(listener, router).with_graceful_shutdown(signal);
        let mut stop_rx2 = stop_rx.clone();
        let grace_over = async move {
            let _ = stop_rx2.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            r = serve => r?,
            () = grace_over => {
                tracing::warn!(in_flight = app.in_flight.get(), "grace period over; closing the remaining connections");
            }
        }
        // No commits or ref moves while draining.
        drop(_tasks);
        drop(_watcher);
        // Completion tasks queue the rows of calls that just ended.
        let abandoned =
            match tokio::time::timeout(Duration::from_secs(2), app.in_flight.drained()).await {
                Ok(()) => 0,
                Err(_) => app.in_flight.get(),
            };
        let log = app.logger.shutdown().await?;
        if let Some(u) = &app.uploader
            && let Err(e) = u.finish(3).await
        {
            // The files stay local; the next start uploads them.
            tracing::warn!(error = %e, "log files left for the next start to upload");
        }
        Ok(ShutdownReport { log, abandoned })
    }
}

/// The request logger and the feedback journal of the log folder `serve`
/// started with (leftovers of an earlier run recovered).
fn open_logs(settings: &Settings) -> Result<(RequestLogger, FeedbackJournal), ServeError> {
    let (logger, recovery) = RequestLogger::start(&settings.log_dir, &settings.config.logging)?;
    if !recovery.recovered.is_empty() || !recovery.quarantined.is_empty() {
        tracing::warn!(
            recovered = recovery.recovered.len(),
            quarantined = recovery.quarantined.len(),
            "request log: leftovers from an earlier run"
        );
    }
    let (journal, _) = FeedbackJournal::open(&settings.log_dir)?;
    Ok((logger, journal))
}

/// The uploader of `logging.store`, when one is set: it first uploads what
/// an earlier run left.
fn start_uploader(
    settings: &Settings,
    logger: &RequestLogger,
    journal: &FeedbackJournal,
) -> Result<
    (
        Option<crate::lake::upload::Uploader>,
        Option<tokio::task::JoinHandle<()>>,
    ),
    ServeError,
> {
    let logging = &settings.config.logging;
    let Some(url) = &logging.store else {
        return Ok((None, None));
    };
    let cfg = crate::lake::upload::UploaderConfig {
        url: crate::lake::store::StoreUrl::parse(url)?,
        options: logging.store_options.clone(),
        interval: Duration::from_millis(logging.flush_interval_ms.max(1)),
    };
    let (u, task) = crate::lake::upload::Uploader::start(
        &settings.log_dir,
        cfg,
        logger.clone(),
        journal.clone(),
    )?;
    tracing::info!(store = %url, replica = u.replica(), "uploading logs");
    Ok((Some(u), Some(task)))
}

/// The background tasks `opts` asks for, each with the handles it uses
/// and its own status in `app.tasks` (the analyzer, the drift task,
/// `--fetch`'s loop). A
/// new scheduled task is one more block here and one more
/// [`TaskStatus`](super::status::TaskStatus) in `app.tasks`.
fn spawn_tasks(app: &App, opts: &ServeOptions) -> Vec<AbortOnDrop> {
    let settings = &app.settings;
    let (root, control_ref) = (settings.root().to_path_buf(), settings.control_ref.clone());
    let mut tasks = Vec::new();
    if opts.analyzer.enabled {
        let target = AnalyzerTarget {
            root: root.clone(),
            control_ref: control_ref.clone(),
            log_dir: settings.log_dir.clone(),
            store: settings.config.logging.store.clone(),
            store_options: settings.config.logging.store_options.clone(),
        };
        let handles = AnalyzerHandles {
            reloader: app.reloader.clone(),
            logger: app.logger.clone(),
            metrics: app.metrics.clone(),
            status: app.tasks.analysis.clone(),
        };
        let task = analyzer::run(handles, target, opts.analyzer);
        tasks.push(AbortOnDrop(tokio::spawn(task)));
    }
    if opts.drift.enabled {
        let target = DriftTarget {
            root: root.clone(),
            control_ref: control_ref.clone(),
            log_roots: settings.log_roots.clone(),
        };
        let handles = DriftHandles {
            reloader: app.reloader.clone(),
            logger: app.logger.clone(),
            status: app.tasks.drift.clone(),
            review: opts.drift.review.clone(),
        };
        let task = drift_task::run(handles, target, opts.drift.interval);
        tasks.push(AbortOnDrop(tokio::spawn(task)));
    }
    // Always running: `review.auto_enqueue` may be switched on by a reload.
    let handles = AutoReviewHandles {
        shared: app.auto_review.clone(),
        queue: app.review.clone(),
        log_dir: settings.log_dir.clone(),
    };
    tasks.push(AbortOnDrop(tokio::spawn(auto_review::run(handles))));
    if let Some(f) = opts.fetch.clone() {
        let handles = FetchHandles {
            reloader: app.reloader.clone(),
            metrics: app.metrics.clone(),
            status: app.tasks.fetch.clone(),
        };
        let task = fetch::run(handles, root, control_ref, f);
        tasks.push(AbortOnDrop(tokio::spawn(task)));
    }
    tasks
}

/// Applies the `logging` and `server` settings of a state just swapped in
/// (or the first one) to what outlives states: the log writer and the
/// breakers. The limits and timeouts of requests are read from the state
/// itself, per request. Cannot fail: the state was validated when built.
fn apply_settings(state: &ServingState, logger: &RequestLogger, breakers: &Breakers) {
    logger.reconfigure(&state.config.logging);
    breakers.reconfigure(BreakerConfig::from(&state.config.server.circuit_breaker));
    if let Some(var) = &state.config.server.admin_token_env
        && !std::env::var(var).is_ok_and(|t| !t.is_empty())
    {
        tracing::warn!(variable = %var, "server.admin_token_env names an unset variable: /admin/* is open");
    }
}
