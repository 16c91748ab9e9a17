//! `promptgate serve`: the proxy. Resolves the settings (the control ref's
//! committed promptgate.yaml, the environment, flags: `crate::settings`),
//! starts the server (`promptgate::proxy`), prints one `listening on` line
//! to stderr when ready, and runs until SIGTERM or Ctrl-C, then drains and
//! flushes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::ExitStatus;
use crate::proxy::{AnalyzerOptions, DriftOptions, FetchOptions, ServeOptions, Server};
use crate::review::{DriftReviewQueue, ReviewQueue};
use crate::settings::{Overrides, Scope, Settings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Repository (default: discovered from the current folder).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Address to listen on (default: $PROMPTGATE_LISTEN, else server.listen
    /// of the control ref's promptgate.yaml; port 0 picks a free port,
    /// printed on the `listening on` line).
    #[arg(long)]
    pub listen: Option<String>,
    /// Time in-flight requests get to finish after SIGTERM, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub grace_ms: u64,
    /// Run the canary analysis every N ms instead of `analysis.interval_s`
    /// of rollout.yaml.
    #[arg(long, value_name = "N")]
    pub analysis_interval_ms: Option<u64>,
    /// No analyzer task (when a scheduled `promptgate canary analyze` over
    /// every replica's logs decides instead).
    #[arg(long, conflicts_with = "analysis_interval_ms")]
    pub no_analyzer: bool,
    /// Run drift every N ms instead of `drift.schedule` of promptgate.yaml
    /// (only while promptgate.yaml has a `drift:` section).
    #[arg(long, value_name = "N")]
    pub drift_interval_ms: Option<u64>,
    /// No drift task (when a scheduled `promptgate drift` over every
    /// replica's logs runs instead).
    #[arg(long, conflicts_with = "drift_interval_ms")]
    pub no_drift: bool,
    /// Follow REMOTE (a remote name, URL or path): fetch the control branch
    /// and the branches rollout.yaml names, and fast-forward the local ones.
    #[arg(long, value_name = "REMOTE")]
    pub fetch: Option<String>,
    /// How often `--fetch` fetches, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 5_000, requires = "fetch")]
    pub fetch_interval_ms: u64,
    /// Also stop (drain and flush, as on SIGTERM) when stdin reaches end of
    /// file. `promptgate demo` holds the other end of the pipe, so serve
    /// stops with the demo even when the demo is killed.
    #[arg(long, hide = true)]
    pub stop_on_stdin_eof: bool,
}

/// Resolves when stdin reaches end of file (or fails). A plain thread, not
/// tokio's stdin: a pending read there would hold up runtime shutdown.
fn stdin_closed() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 512];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(());
    });
    rx
}

/// Installs the SIGTERM and SIGINT handlers now and returns the future that
/// resolves on either. Registering eagerly matters: a handler registered on
/// the future's first poll leaves a window after the `listening on` line in
/// which SIGTERM still kills the process outright, unflushed rows and all.
/// Must be called inside the runtime.
pub(crate) fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    let overrides = Overrides {
        repo: args.repo.clone(),
        listen: args.listen.clone(),
        ..Overrides::default()
    };
    let settings = Settings::resolve(&Scope::Production, overrides.with_env())?;
    let root = settings.root().to_path_buf();
    // `on_drift: review` enqueues into the queue `promptgate review` reads
    // (`<logging.dir>/review`), from this server's own log roots.
    let review = DriftReviewQueue {
        queue: ReviewQueue::for_log_root(&settings.log_dir).with_context(|| {
            format!(
                "opening the review queue under {}",
                settings.log_dir.display()
            )
        })?,
        logs: settings.log_roots.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let shutdown = shutdown_signal();
        let server = Server::bind(ServeOptions {
            settings,
            grace: Duration::from_millis(args.grace_ms),
            analyzer: AnalyzerOptions {
                enabled: !args.no_analyzer,
                interval: args.analysis_interval_ms.map(Duration::from_millis),
            },
            drift: DriftOptions {
                enabled: !args.no_drift,
                interval: args.drift_interval_ms.map(Duration::from_millis),
                review: Arc::new(review),
            },
            fetch: args.fetch.map(|remote| FetchOptions {
                remote,
                interval: Duration::from_millis(args.fetch_interval_ms),
            }),
        })
        .await?;
        let addr = server.local_addr();
        let state = server.app().reloader.current();
        eprintln!(
            "promptgate serve listening on http://{addr} (repo {}, control {} at {}, stable {}{})",
            root.display(),
            state.control_ref,
            &state.control_commit[..12.min(state.control_commit.len())],
            state.stable.git_ref,
            state
                .canary
                .as_ref()
                .map(|c| format!(", canary {} at {}%", c.state.git_ref, c.rule.weight))
                .unwrap_or_default(),
        );
        drop(state);
        let stdin_eof = args.stop_on_stdin_eof.then(stdin_closed);
        let stop = async move {
            match stdin_eof {
                Some(eof) => {
                    tokio::select! {
                        _ = shutdown => {}
                        _ = eof => {}
                    }
                }
                None => shutdown.await,
            }
        };
        let report = server.run(stop).await?;
        eprintln!(
            "promptgate serve stopped: {} row(s) written, {} dropped, {} call(s) abandoned",
            report.log.rows_written, report.log.rows_dropped, report.abandoned
        );
        Ok(ExitStatus::Success)
    })
}
