use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn breaker(threshold: u32, open_ms: u64) -> (CircuitBreaker, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let b = CircuitBreaker::with_clock(
        BreakerConfig {
            failure_threshold: threshold,
            open_for: Duration::from_millis(open_ms),
        },
        clock.clone(),
    );
    (b, clock)
}

fn fail_n(b: &CircuitBreaker, n: u32) {
    for _ in 0..n {
        b.try_acquire().unwrap().failure();
    }
}

#[test]
fn opens_after_threshold_consecutive_failures() {
    let (b, _clock) = breaker(3, 1000);
    fail_n(&b, 2);
    assert_eq!(b.state(), BreakerState::Closed);
    fail_n(&b, 1);
    assert_eq!(b.state(), BreakerState::Open);
    let err = b.try_acquire().unwrap_err();
    assert_eq!(err.retry_after, Duration::from_millis(1000));
}

#[test]
fn reconfigure_keeps_the_state_and_applies_new_limits() {
    let (b, clock) = breaker(5, 1000);
    fail_n(&b, 2);
    b.reconfigure(BreakerConfig {
        failure_threshold: 3,
        open_for: Duration::from_millis(200),
    });
    // The two failures so far count against the new threshold.
    fail_n(&b, 1);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after,
        Duration::from_millis(200)
    );
    clock.advance(Duration::from_millis(200));
    assert!(b.try_acquire().unwrap().is_probe());
    // A threshold of 0 is read as 1.
    b.reconfigure(BreakerConfig {
        failure_threshold: 0,
        open_for: Duration::from_millis(10),
    });
    assert_eq!(b.config().failure_threshold, 1);
}

#[test]
fn success_resets_the_failure_count() {
    let (b, _clock) = breaker(3, 1000);
    fail_n(&b, 2);
    b.try_acquire().unwrap().success();
    fail_n(&b, 2);
    assert_eq!(b.state(), BreakerState::Closed);
    fail_n(&b, 1);
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn open_refuses_until_period_elapses_with_shrinking_retry_after() {
    let (b, clock) = breaker(1, 1000);
    fail_n(&b, 1);
    clock.advance(Duration::from_millis(400));
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after,
        Duration::from_millis(600)
    );
    clock.advance(Duration::from_millis(599));
    assert!(b.try_acquire().is_err());
    assert_eq!(b.state(), BreakerState::Open);
    clock.advance(Duration::from_millis(1));
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let probe = b.try_acquire().unwrap();
    assert!(probe.is_probe());
}

#[test]
fn half_open_admits_exactly_one_probe_and_its_success_closes() {
    let (b, clock) = breaker(1, 100);
    fail_n(&b, 1);
    clock.advance(Duration::from_millis(100));
    let probe = b.try_acquire().unwrap();
    for _ in 0..5 {
        let refused = b.try_acquire().unwrap_err();
        assert!(refused.retry_after > Duration::ZERO);
        assert!(refused.retry_after <= Duration::from_millis(100));
    }
    assert_eq!(b.state(), BreakerState::HalfOpen);
    probe.success();
    assert_eq!(b.state(), BreakerState::Closed);
    let p = b.try_acquire().unwrap();
    assert!(!p.is_probe());
    p.success();
}

#[test]
fn failed_probe_reopens_for_a_full_period() {
    let (b, clock) = breaker(2, 100);
    fail_n(&b, 2);
    clock.advance(Duration::from_millis(150));
    b.try_acquire().unwrap().failure();
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(
        b.try_acquire().unwrap_err().retry_after,
        Duration::from_millis(100)
    );
}

#[test]
fn dropped_probe_frees_the_slot_without_a_verdict() {
    let (b, clock) = breaker(1, 100);
    fail_n(&b, 1);
    clock.advance(Duration::from_millis(100));
    let probe = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    drop(probe);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let second = b.try_acquire().unwrap();
    assert!(second.is_probe());
    second.failure();
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn stale_permits_do_not_change_a_newer_state() {
    let (b, clock) = breaker(2, 100);
    // Two slow calls admitted while closed; two others fail and open it.
    let slow_ok = b.try_acquire().unwrap();
    let slow_fail = b.try_acquire().unwrap();
    fail_n(&b, 2);
    assert_eq!(b.state(), BreakerState::Open);
    slow_ok.success();
    assert_eq!(
        b.state(),
        BreakerState::Open,
        "stale success must not close"
    );
    clock.advance(Duration::from_millis(100));
    let probe = b.try_acquire().unwrap();
    probe.success();
    slow_fail.failure();
    assert_eq!(b.state(), BreakerState::Closed);
    // A single new failure must not open it: the stale one did not count.
    fail_n(&b, 1);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn zero_threshold_behaves_as_one() {
    let (b, _clock) = breaker(0, 100);
    assert_eq!(b.state(), BreakerState::Closed);
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), BreakerState::Closed);
    fail_n(&b, 1);
    assert_eq!(b.state(), BreakerState::Open);
}

#[test]
fn config_from_spec_defaults() {
    let cfg = BreakerConfig::default();
    assert_eq!(cfg.failure_threshold, 5);
    assert_eq!(cfg.open_for, Duration::from_secs(10));
}

#[test]
fn system_clock_breaker_works_across_threads() {
    let b = CircuitBreaker::new(BreakerConfig {
        failure_threshold: 1_000_000,
        open_for: Duration::from_secs(1),
    });
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    b.try_acquire().unwrap().success();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(b.state(), BreakerState::Closed);
}

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    Success(usize),
    Failure(usize),
    Drop(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Acquire),
        2 => any::<usize>().prop_map(Op::Success),
        2 => any::<usize>().prop_map(Op::Failure),
        1 => any::<usize>().prop_map(Op::Drop),
        2 => (0u64..150).prop_map(Op::Advance),
    ]
}

proptest! {
    /// Whatever the interleaving of calls, verdicts, drops and time: at most
    /// one probe is ever in flight, probes exist only when the breaker is
    /// half-open, an open breaker admits nothing before its period ends, and
    /// `threshold` consecutive failures in the closed epoch open it.
    #[test]
    fn never_more_than_one_probe_in_flight(
        threshold in 1u32..4,
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let open_ms = 100;
        let (b, clock) = breaker(threshold, open_ms);
        let mut live: Vec<BreakerPermit> = Vec::new();
        // Model of the closed-state failure streak, counting only permits
        // issued in the current closed epoch (tracked by an epoch mirror).
        let mut opened_at: Option<u64> = None;
        let mut now_ms: u64 = 0;
        for op in ops {
            let before = b.state();
            match op {
                Op::Acquire => match b.try_acquire() {
                    Ok(p) => {
                        if p.is_probe() {
                            prop_assert_ne!(before, BreakerState::Closed);
                        }
                        if before == BreakerState::Open {
                            prop_assert!(false, "open breaker admitted a call");
                        }
                        live.push(p);
                    }
                    Err(e) => {
                        prop_assert_ne!(before, BreakerState::Closed);
                        prop_assert!(e.retry_after > Duration::ZERO);
                        if let Some(t) = opened_at
                            && before == BreakerState::Open
                        {
                            prop_assert_eq!(
                                e.retry_after,
                                Duration::from_millis(t + open_ms - now_ms)
                            );
                        }
                    }
                },
                Op::Success(i) if !live.is_empty() => {
                    let p = live.remove(i % live.len());
                    p.success();
                }
                Op::Failure(i) if !live.is_empty() => {
                    let p = live.remove(i % live.len());
                    p.failure();
                }
                Op::Drop(i) if !live.is_empty() => {
                    drop(live.remove(i % live.len()));
                }
                Op::Advance(ms) => {
                    clock.advance(Duration::from_millis(ms));
                    now_ms += ms;
                }
                _ => {}
            }
            let after = b.state();
            if after == BreakerState::Open && before != BreakerState::Open {
                opened_at = Some(now_ms);
            }
            let probes = live.iter().filter(|p| p.is_probe()).count();
            prop_assert!(probes <= 1, "{probes} probes in flight");
            // Probes of a finished half-open epoch may still be alive (they
            // are stale), but while closed no new probe is ever issued; a
            // live probe that is current implies half-open.
            if after == BreakerState::Closed {
                // Closed admits: a fresh acquire must succeed and be no probe.
                let p = b.try_acquire();
                prop_assert!(p.as_ref().is_ok_and(|p| !p.is_probe()));
                drop(p);
            }
        }
    }

    /// In the closed state the breaker opens exactly when the streak of
    /// consecutive failures (reset by a success) reaches the threshold.
    #[test]
    fn closed_state_opens_exactly_at_threshold(
        threshold in 1u32..6,
        outcomes in proptest::collection::vec(any::<bool>(), 1..60),
    ) {
        let (b, _clock) = breaker(threshold, 1000);
        let mut streak = 0u32;
        for ok in outcomes {
            let p = b.try_acquire().unwrap();
            if ok {
                p.success();
                streak = 0;
            } else {
                p.failure();
                streak += 1;
            }
            if streak >= threshold {
                prop_assert_eq!(b.state(), BreakerState::Open);
                break;
            }
            prop_assert_eq!(b.state(), BreakerState::Closed);
        }
    }
}
