//! The dashboard's pages are computed below the proxy's priority.
//!
//! `serve` answers `/ui` in the process that forwards the application's
//! calls, and on a small machine a refresh of the 7-day overview over a
//! million calls keeps both cores busy for tens of milliseconds: the
//! proxy's added latency must not pay for it. Each page is computed on a
//! thread of its own whose nice value is raised (on Linux a nice value
//! belongs to a thread, and the threads it starts inherit it), so the
//! scheduler gives the request path the cores first; the runtime's own
//! threads are never lowered.

/// Nice value of the dashboard's threads (0 = normal, 19 = lowest).
const DASHBOARD_NICE: i32 = 10;

/// Runs `f` on a new thread at the dashboard's priority and waits for it
/// without blocking the runtime. Err: the thread could not start or `f`
/// panicked.
pub(crate) async fn below_requests<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("promptgate-ui".into())
        .spawn(move || {
            lower_this_thread();
            let _ = tx.send(f());
        })
        .map_err(|e| format!("starting the page's thread: {e}"))?;
    rx.await
        .map_err(|_| "the page's computation failed".to_string())
}

/// Raises the calling thread's nice value to [`DASHBOARD_NICE`] (never
/// lowers it: a process started at a higher one keeps it). Best effort: a
/// refused change leaves the thread as it was.
fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let tid = Some(rustix::thread::gettid());
        let now = getpriority_process(tid).unwrap_or(0);
        if now < DASHBOARD_NICE
            && let Err(e) = setpriority_process(tid, DASHBOARD_NICE)
        {
            tracing::debug!(error = %e, "could not lower the dashboard thread's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    fn nice_of_this_thread() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_page_runs_on_its_own_lowered_thread_and_the_caller_keeps_its_priority() {
        let before = nice_of_this_thread();
        let (name, nice) = below_requests(|| {
            let name = std::thread::current().name().map(str::to_string);
            (name, nice_of_this_thread())
        })
        .await
        .unwrap();
        assert_eq!(name.as_deref(), Some("promptgate-ui"));
        assert!(nice >= DASHBOARD_NICE, "{nice}");
        assert_eq!(nice_of_this_thread(), before);
    }

    #[tokio::test]
    async fn a_panicking_page_is_an_error_not_a_hang() {
        let r: Result<(), String> = below_requests(|| panic!("boom")).await;
        assert!(r.is_err());
    }
}
