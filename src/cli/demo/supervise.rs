//! The demo's children and its stop signal: short-lived `promptgate`
//! commands run to completion (their JSON read back typed), `serve` kept
//! running until the demo ends, and Ctrl-C / SIGTERM turned into an orderly
//! stop of whichever step is running.
//!
//! Shutdown: `serve` runs with `--stop-on-stdin-eof` and its stdin is a pipe
//! held only by this process. Closing it (on Ctrl-C / SIGTERM, at the end)
//! makes serve drain and flush exactly as on SIGTERM, and if this process
//! dies without cleaning up (SIGKILL) the pipe closes all the same, so serve
//! never outlives the demo. Short-lived children are killed and reaped when
//! the demo is interrupted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::watch;

use super::output::{detail, look};

/// Set to true once by SIGINT / SIGTERM.
pub(super) type Stop = watch::Receiver<bool>;

/// Why the demo stopped before its end.
pub(super) enum Halt {
    /// A step could not run (exit 2).
    Failed {
        step: &'static str,
        err: anyhow::Error,
    },
    /// Ctrl-C / SIGTERM during a step.
    Interrupted { step: &'static str },
}

/// The error of a step that stopped its own children on the signal.
#[derive(Debug)]
pub(super) struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

fn halt(step: &'static str, err: anyhow::Error) -> Halt {
    if err.is::<Interrupted>() {
        Halt::Interrupted { step }
    } else {
        Halt::Failed { step, err }
    }
}

/// Runs `fut` as step `step` unless a stop signal comes first; the future
/// is then dropped (it owns no child process: those steps use
/// [`cooperative`]).
pub(super) async fn guarded<T>(
    stop: &Stop,
    step: &'static str,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> Result<T, Halt> {
    let mut stop = stop.clone();
    tokio::select! {
        r = fut => r.map_err(|err| halt(step, err)),
        _ = stop.wait_for(|s| *s) => Err(Halt::Interrupted { step }),
    }
}

/// Runs a step that watches the stop signal itself (it kills and reaps its
/// child before returning [`Interrupted`]), so it is never dropped midway.
pub(super) async fn cooperative<T>(
    step: &'static str,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> Result<T, Halt> {
    fut.await.map_err(|err| halt(step, err))
}

/// Output of a finished short-lived child.
pub(super) struct Finished {
    code: Option<i32>,
    pub(super) stdout: String,
    stderr: String,
    what: String,
}

impl Finished {
    /// The exit code of a command that ran: 0, or 1 (it found a failure).
    /// Exit code 2 (or a signal) means it could not run: an error.
    pub(super) fn ran(&self) -> anyhow::Result<i32> {
        match self.code {
            Some(c @ (0 | 1)) => Ok(c),
            other => bail!(
                "`promptgate {}` could not run (exit {}):\n{}{}",
                self.what,
                other.map_or_else(|| "by signal".to_string(), |c| c.to_string()),
                self.stdout,
                self.stderr
            ),
        }
    }

    /// The `--json` output, typed.
    pub(super) fn json<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_str(&self.stdout)
            .with_context(|| format!("reading the JSON of `promptgate {}`", self.what))
    }
}

/// Runs `promptgate ARGS --repo ROOT` to completion; on the stop signal
/// kills and reaps the child and returns [`Interrupted`].
pub(super) async fn promptgate(
    root: &Path,
    args: &[&str],
    stop: &Stop,
) -> anyhow::Result<Finished> {
    if *stop.borrow() {
        return Err(Interrupted.into());
    }
    let what = args.join(" ");
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut child = Command::new(exe)
        .args(args)
        .arg("--repo")
        .arg(root)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting promptgate {what}"))?;
    detail(&format!(
        "$ promptgate {what}   (pid {})",
        child.id().unwrap_or(0)
    ));
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let mut stop = stop.clone();
    tokio::select! {
        (stdout, stderr) = async { tokio::join!(read_all(&mut out), read_all(&mut err)) } => {
            let status = child.wait().await?;
            Ok(Finished { code: status.code(), stdout, stderr, what })
        }
        _ = stop.wait_for(|s| *s) => {
            let _ = child.kill().await;
            Err(Interrupted.into())
        }
    }
}

async fn read_all<R: tokio::io::AsyncRead + Unpin>(r: &mut Option<R>) -> String {
    let mut buf = Vec::new();
    if let Some(r) = r {
        let _ = r.read_to_end(&mut buf).await;
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// A running `promptgate serve`.
pub(super) struct ServeChild {
    pub(super) child: Child,
    /// The write end of serve's stdin: dropping it stops serve.
    stdin: Option<ChildStdin>,
    pub(super) pid: u32,
    pub(super) addr: SocketAddr,
    pub(super) log: PathBuf,
    /// Copies serve's stderr into the log file until serve exits.
    tee: tokio::task::JoinHandle<()>,
}

impl ServeChild {
    /// Starts serve on a free port and waits for its documented ready line
    /// (`listening on http://ADDR`), copying its stderr to the log file.
    pub(super) async fn start(root: &Path) -> anyhow::Result<ServeChild> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let log = root.join(".promptgate/logs/serve.log");
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = tokio::fs::File::create(&log)
            .await
            .with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(exe)
            .args(["serve", "--listen", "127.0.0.1:0", "--stop-on-stdin-eof"])
            .arg("--repo")
            .arg(root)
            .current_dir(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting promptgate serve")?;
        let pid = child.id().unwrap_or(0);
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().context("serve's stderr")?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<String>();
        let tee = tokio::spawn(tee_stderr(stderr, file, ready_tx));
        detail(&format!(
            "$ promptgate serve --listen 127.0.0.1:0   (pid {pid}, stderr to {})",
            log.display()
        ));
        let addr = match tokio::time::timeout(Duration::from_secs(60), ready_rx).await {
            Ok(Ok(a)) => a,
            Ok(Err(_)) => {
                let _ = child.wait().await;
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("serve exited before listening:\n{said}");
            }
            Err(_) => {
                let _ = child.kill().await;
                bail!(
                    "serve did not start listening within 60 s (see {})",
                    log.display()
                );
            }
        };
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("serve's address `{addr}`"))?;
        detail(&format!("serve listening on http://{addr} (pid {pid})"));
        look(&format!(
            "curl -s http://{addr}/status ; curl -s http://{addr}/metrics ; tail -f {}",
            log.display()
        ));
        Ok(ServeChild {
            child,
            stdin,
            pid,
            addr,
            log,
            tee,
        })
    }

    /// Closes serve's stdin (serve drains and flushes, as on SIGTERM) and
    /// waits; kills it if it has not stopped in time.
    pub(super) async fn stop(mut self) -> String {
        drop(self.stdin.take());
        let how = match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(Ok(status)) => format!("serve (pid {}) stopped ({status})", self.pid),
            Ok(Err(e)) => format!("serve (pid {}): {e}", self.pid),
            Err(_) => {
                let _ = self.child.kill().await;
                format!(
                    "serve (pid {}) did not stop in 20 s and was killed",
                    self.pid
                )
            }
        };
        let _ = self.tee.await;
        how
    }
}

/// Copies serve's stderr line by line into `file`, sending the address of
/// the ready line once.
async fn tee_stderr(
    stderr: tokio::process::ChildStderr,
    mut file: tokio::fs::File,
    ready: tokio::sync::oneshot::Sender<String>,
) {
    let mut ready = Some(ready);
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let _ = file.write_all(format!("{line}\n").as_bytes()).await;
        let _ = file.flush().await;
        if let Some(addr) = line
            .split_once("listening on http://")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            && let Some(tx) = ready.take()
        {
            let _ = tx.send(addr.to_string());
        }
    }
}
