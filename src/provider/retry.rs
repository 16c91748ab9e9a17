//! The one place where retries and backoff live.
//!
//! Policy: at most `max_retries` further attempts after the first, only for
//! errors that say [`ProviderError::is_retryable`] (connect errors, 429, 5xx).
//! The delay before retry `n` (0-based) is drawn uniformly from
//! `[0, min(max_delay, base_delay * 2^n)]` ("full jitter"), raised to the
//! upstream's `Retry-After` when it sent one (capped at `max_delay`). No
//! attempt starts after the overall deadline; the last error is returned.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::error::ProviderError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub fn new(max_retries: u32) -> Self {
        RetryPolicy {
            max_retries,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }

    /// Delay before retry number `retry` (0-based), with full jitter.
    pub fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let jittered = exp.mul_f64(rand::random::<f64>());
        match retry_after {
            Some(ra) => jittered.max(ra.min(self.max_delay)),
            None => jittered,
        }
    }
}

/// Runs `attempt` until it succeeds, fails with a non-retryable error, the
/// retries are used up, or the next attempt would start after `deadline`.
/// `attempt` receives the 0-based attempt number.
pub async fn retry<T, F, Fut>(
    policy: RetryPolicy,
    deadline: Instant,
    mut attempt: F,
) -> Result<T, ProviderError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut n = 0u32;
    loop {
        match attempt(n).await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && n < policy.max_retries => {
                let delay = policy.backoff(n, e.retry_after());
                if Instant::now() + delay >= deadline {
                    return Err(e);
                }
                tracing::debug!(error = %e, attempt = n, delay_ms = delay.as_millis() as u64, "retrying");
                tokio::time::sleep(delay).await;
                n += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded() {
        let p = RetryPolicy::new(3);
        for retry in 0..40 {
            let d = p.backoff(retry, None);
            assert!(d <= p.max_delay);
            assert!(d <= p.base_delay.saturating_mul(1 << retry.min(20)));
        }
        assert!(p.backoff(0, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        assert!(p.backoff(0, Some(Duration::from_secs(60))) <= p.max_delay);
    }
}
