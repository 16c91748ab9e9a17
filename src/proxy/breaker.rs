//! Per-upstream circuit breaker: fail fast (503) while an upstream is down
//! instead of piling requests onto it, and find out with a single probe
//! when it is back.
//!
//! States: **closed** admits every call and counts consecutive failures;
//! `failure_threshold` of them open it. **Open** refuses every call for
//! `open_for`. After that it is **half-open**: exactly one call (the probe)
//! is admitted; its success closes the breaker, its failure re-opens it,
//! and a probe dropped without a verdict (client went away, request
//! cancelled) frees the slot for the next caller.
//!
//! Every transition starts a new *epoch*; a permit only counts in the epoch
//! it was issued in, so a slow call admitted while closed cannot close a
//! breaker that opened meanwhile, nor re-open a freshly closed one.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::spec::config::CircuitBreakerConfig;

/// Source of the current time, injectable so tests can step through the
/// open period without sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to (tests).
#[cfg(test)]
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    offset: Mutex<Duration>,
}

#[cfg(test)]
impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

#[cfg(test)]
impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock {
            base: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }

    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + *self.offset.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker (at least 1).
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before probing.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig::from(&CircuitBreakerConfig::default())
    }
}

impl BreakerConfig {
    fn checked(self) -> BreakerConfig {
        BreakerConfig {
            // A threshold of 0 would open on no failure at all.
            failure_threshold: self.failure_threshold.max(1),
            ..self
        }
    }
}

impl From<&CircuitBreakerConfig> for BreakerConfig {
    fn from(c: &CircuitBreakerConfig) -> Self {
        BreakerConfig {
            failure_threshold: c.failure_threshold,
            open_for: Duration::from_millis(c.open_ms),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// Numeric value for a Prometheus gauge: 0 closed, 1 half-open, 2 open.
    pub fn as_gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

/// A call was refused: the upstream is considered down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker open; retry after {retry_after:?}")]
pub struct BreakerOpen {
    /// Hint for a `Retry-After` header: the rest of the open period, or
    /// (half-open, probe in flight) a short wait for the probe's verdict.
    pub retry_after: Duration,
}

/// How long half-open callers are told to wait for the probe's verdict.
const PROBE_RETRY_HINT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_in_flight: bool },
}

#[derive(Debug)]
struct Inner {
    /// Under the lock with the phase: a reload may change it.
    cfg: BreakerConfig,
    phase: Phase,
    epoch: u64,
}

#[derive(Debug)]
struct Shared {
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

/// The breaker of one upstream. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

impl CircuitBreaker {
    pub fn new(cfg: BreakerConfig) -> CircuitBreaker {
        CircuitBreaker::with_clock(cfg, Arc::new(SystemClock))
    }

    pub fn with_clock(cfg: BreakerConfig, clock: Arc<dyn Clock>) -> CircuitBreaker {
        CircuitBreaker {
            shared: Arc::new(Shared {
                clock,
                inner: Mutex::new(Inner {
                    cfg: cfg.checked(),
                    phase: Phase::Closed { failures: 0 },
                    epoch: 0,
                }),
            }),
        }
    }

    #[cfg(test)]
    pub fn config(&self) -> BreakerConfig {
        self.shared.lock().cfg
    }

    /// Applies new settings (a reload) without resetting the state: the
    /// failures counted so far count against the new threshold, an open
    /// breaker stays open until its current period ends.
    pub fn reconfigure(&self, cfg: BreakerConfig) {
        self.shared.lock().cfg = cfg.checked();
    }

    /// Ask to make one call. Report its outcome on the permit.
    pub fn try_acquire(&self) -> Result<BreakerPermit, BreakerOpen> {
        let now = self.shared.clock.now();
        let mut inner = self.shared.lock();
        let probe = match inner.phase {
            Phase::Closed { .. } => false,
            Phase::Open { until } if now < until => {
                return Err(BreakerOpen {
                    retry_after: until - now,
                });
            }
            Phase::Open { .. } => {
                inner.transition(Phase::HalfOpen {
                    probe_in_flight: true,
                });
                true
            }
            Phase::HalfOpen {
                probe_in_flight: true,
            } => {
                return Err(BreakerOpen {
                    retry_after: PROBE_RETRY_HINT.min(inner.cfg.open_for),
                });
            }
            Phase::HalfOpen {
                probe_in_flight: false,
            } => {
                // Same epoch: the previous probe was dropped without a verdict.
                inner.phase = Phase::HalfOpen {
                    probe_in_flight: true,
                };
                true
            }
        };
        Ok(BreakerPermit {
            shared: self.shared.clone(),
            epoch: inner.epoch,
            probe,
            reported: false,
        })
    }

    /// The current state; an open breaker whose period has elapsed reads
    /// as half-open (it becomes so on the next `try_acquire`).
    pub fn state(&self) -> BreakerState {
        let now = self.shared.clock.now();
        match self.shared.lock().phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { until } if now < until => BreakerState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(&self, inner: &mut Inner) {
        let until = self.clock.now() + inner.cfg.open_for;
        inner.transition(Phase::Open { until });
    }
}

impl Inner {
    fn transition(&mut self, phase: Phase) {
        self.phase = phase;
        self.epoch += 1;
    }
}

/// Leave to make one call. Consume it with [`success`](Self::success) or
/// [`failure`](Self::failure); dropping it counts as neither, but frees the
/// half-open probe slot so the breaker is never stuck waiting for a verdict.
#[derive(Debug)]
#[must_use = "report the call's outcome with success() or failure()"]
pub struct BreakerPermit {
    shared: Arc<Shared>,
    epoch: u64,
    probe: bool,
    reported: bool,
}

impl BreakerPermit {
    /// Whether this call is the half-open probe.
    #[cfg(test)]
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    pub fn success(mut self) {
        self.reported = true;
        let mut inner = self.shared.lock();
        if inner.epoch != self.epoch {
            return;
        }
        match inner.phase {
            Phase::Closed { .. } => inner.phase = Phase::Closed { failures: 0 },
            Phase::HalfOpen { .. } if self.probe => {
                inner.transition(Phase::Closed { failures: 0 });
            }
            _ => {}
        }
    }

    pub fn failure(mut self) {
        self.reported = true;
        let mut inner = self.shared.lock();
        if inner.epoch != self.epoch {
            return;
        }
        match inner.phase {
            Phase::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if failures >= inner.cfg.failure_threshold {
                    self.shared.open(&mut inner);
                } else {
                    inner.phase = Phase::Closed { failures };
                }
            }
            Phase::HalfOpen { .. } if self.probe => self.shared.open(&mut inner),
            _ => {}
        }
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        if self.reported || !self.probe {
            return;
        }
        let mut inner = self.shared.lock();
        if inner.epoch == self.epoch
            && let Phase::HalfOpen { .. } = inner.phase
        {
            inner.phase = Phase::HalfOpen {
                probe_in_flight: false,
            };
        }
    }
}

#[cfg(test)]
mod tests;
