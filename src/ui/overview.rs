//! The overview's figures: per prompt and variant over a window (1 h,
//! 24 h, 7 d), the current figures of the whole window and a time series
//! of equal intervals. Percentiles are exact nearest-rank values (the
//! smallest value with at least `q` of the calls at or below it), so an
//! independent reader of the same Parquet files finds the same numbers.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::cache::{Group, Snapshot, Status};

/// A window the overview offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Window {
    Hour,
    Day,
    Week,
}

impl Window {
    pub const ALL: [Window; 3] = [Window::Hour, Window::Day, Window::Week];

    pub fn parse(s: &str) -> Option<Window> {
        match s {
            "1h" => Some(Window::Hour),
            "24h" => Some(Window::Day),
            "7d" => Some(Window::Week),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Hour => "1h",
            Window::Day => "24h",
            Window::Week => "7d",
        }
    }

    pub fn duration(self) -> Duration {
        match self {
            Window::Hour => Duration::hours(1),
            Window::Day => Duration::hours(24),
            Window::Week => Duration::days(7),
        }
    }

    /// Intervals of the time series: 1 min, 30 min, 2 h.
    pub fn buckets(self) -> usize {
        match self {
            Window::Hour => 60,
            Window::Day => 48,
            Window::Week => 84,
        }
    }
}

/// The figures of a set of calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub requests: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub error_rate: Option<f64>,
    pub timeout_rate: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p95_ms: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: f64,
    /// Calls with an online verdict, and the share that passed.
    pub online_scored: u64,
    pub online_pass_rate: Option<f64>,
    /// Calls with feedback, and the mean of their latest scores.
    pub feedback_count: u64,
    pub feedback_mean: Option<f64>,
}

/// Accumulates calls into [`Figures`].
#[derive(Debug, Default)]
struct Acc {
    requests: u64,
    errors: u64,
    timeouts: u64,
    latency: Vec<f64>,
    ttft: Vec<f64>,
    input_tokens: u64,
    output_tokens: u64,
    cost: f64,
    online_scored: u64,
    online_passed: u64,
    feedback: Vec<f64>,
}

impl Acc {
    fn finish(mut self) -> Figures {
        let rate = |k: u64, n: u64| (n > 0).then(|| k as f64 / n as f64);
        let lat = percentiles(&mut self.latency, &[0.5, 0.95, 0.99]);
        let ttft = percentiles(&mut self.ttft, &[0.5, 0.95]);
        Figures {
            requests: self.requests,
            errors: self.errors,
            timeouts: self.timeouts,
            error_rate: rate(self.errors, self.requests),
            timeout_rate: rate(self.timeouts, self.requests),
            latency_p50_ms: lat[0],
            latency_p95_ms: lat[1],
            latency_p99_ms: lat[2],
            ttft_p50_ms: ttft[0],
            ttft_p95_ms: ttft[1],
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost: self.cost,
            online_scored: self.online_scored,
            online_pass_rate: rate(self.online_passed, self.online_scored),
            feedback_count: self.feedback.len() as u64,
            feedback_mean: (!self.feedback.is_empty())
                .then(|| self.feedback.iter().sum::<f64>() / self.feedback.len() as f64),
        }
    }
}

/// Nearest-rank percentiles of `values` (reordered in place).
pub fn percentiles(values: &mut [f64], qs: &[f64]) -> Vec<Option<f64>> {
    let n = values.len();
    qs.iter()
        .map(|q| {
            if n == 0 {
                return None;
            }
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            let (_, v, _) = values.select_nth_unstable_by(rank, f64::total_cmp);
            Some(*v)
        })
        .collect()
}

/// One prompt and variant over the window.
#[derive(Debug, Clone, Serialize)]
pub struct GroupOverview {
    pub prompt: String,
    pub variant: String,
    pub current: Figures,
    /// One entry per interval, oldest first.
    pub series: Vec<Figures>,
}

/// The overview of every prompt and variant with calls in the window.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub window: Window,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Start of each interval of the series.
    pub bucket_starts: Vec<DateTime<Utc>>,
    pub groups: Vec<GroupOverview>,
    pub total: Figures,
}

/// Computes the overview of the calls in `[now - window, now)`.
pub fn overview(snapshot: &Snapshot, window: Window, now: DateTime<Utc>) -> Overview {
    let since = now - window.duration();
    let (from, until) = (since.timestamp_micros(), now.timestamp_micros());
    let nb = window.buckets();
    let width = ((until - from) / nb as i64).max(1);
    let mut groups: BTreeMap<Group, (Acc, Vec<Acc>)> = BTreeMap::new();
    let mut total = Acc::default();
    let feedback = &snapshot.feedback;
    let with_feedback = !feedback.is_empty();
    for file in &snapshot.files {
        // A group's key is moved into the map the first time the file
        // shows it, then looked up by reference (no clone per call).
        let mut local: Vec<Option<Group>> = file.groups.iter().cloned().map(Some).collect();
        for c in &file.calls {
            if c.ts < from || c.ts >= until {
                continue;
            }
            let g = &file.groups[usize::from(c.group)];
            let entry = match local.get_mut(usize::from(c.group)).and_then(Option::take) {
                Some(g) => groups
                    .entry(g)
                    .or_insert_with(|| (Acc::default(), (0..nb).map(|_| Acc::default()).collect())),
                None => match groups.get_mut(g) {
                    Some(e) => e,
                    None => continue,
                },
            };
            let b = (((c.ts - from) / width) as usize).min(nb - 1);
            let score = if with_feedback {
                feedback.latest_by_hash(c.id_hash)
            } else {
                None
            };
            for acc in [&mut entry.0, &mut entry.1[b], &mut total] {
                acc.requests += 1;
                match c.status {
                    Status::Error => acc.errors += 1,
                    Status::Timeout => acc.timeouts += 1,
                    _ => {}
                }
                acc.latency.push(c.latency_ms);
                if let Some(t) = c.ttft_ms {
                    acc.ttft.push(t);
                }
                acc.input_tokens += c.input_tokens;
                acc.output_tokens += c.output_tokens;
                acc.cost += c.cost;
                if let Some(p) = c.online_pass {
                    acc.online_scored += 1;
                    acc.online_passed += u64::from(p);
                }
                if let Some(s) = score {
                    acc.feedback.push(s);
                }
            }
        }
    }
    let bucket_starts = (0..nb)
        .map(|i| DateTime::from_timestamp_micros(from + width * i as i64).unwrap_or(since))
        .collect();
    Overview {
        window,
        since,
        until: now,
        bucket_starts,
        groups: groups
            .into_iter()
            .map(|(g, (cur, series))| GroupOverview {
                prompt: g.prompt,
                variant: g.variant,
                current: cur.finish(),
                series: series.into_iter().map(Acc::finish).collect(),
            })
            .collect(),
        total: total.finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v = vec![5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(
            percentiles(&mut v, &[0.0, 0.2, 0.5, 0.95, 1.0]),
            vec![Some(1.0), Some(1.0), Some(3.0), Some(5.0), Some(5.0)]
        );
        assert_eq!(percentiles(&mut [], &[0.5]), vec![None]);
    }

    use std::sync::Arc;

    use crate::logstore::FeedbackRecord;
    use crate::ui::cache::{CallSummary, Feedback, FileCalls, Group, Snapshot, Status};

    fn call(id: &str, ts: i64, group: u16, status: Status, latency_ms: f64) -> CallSummary {
        CallSummary {
            request_id: id.into(),
            id_hash: crate::drift::features::id_hash(id),
            ts,
            group,
            status,
            latency_ms,
            ttft_ms: None,
            input_tokens: 10,
            output_tokens: 5,
            cost: 0.25,
            online_pass: Some(status == Status::Ok),
        }
    }

    #[test]
    fn figures_per_group_and_interval_from_the_window_only() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let us = |minutes_ago: i64| (now - Duration::minutes(minutes_ago)).timestamp_micros();
        let groups = vec![
            Group {
                prompt: "a".into(),
                variant: "stable".into(),
            },
            Group {
                prompt: "a".into(),
                variant: "canary".into(),
            },
        ];
        let file = FileCalls {
            path: "f".into(),
            groups,
            calls: vec![
                call("old", us(61), 0, Status::Ok, 1.0),
                call("s1", us(59), 0, Status::Ok, 10.0),
                call("s2", us(30), 0, Status::Error, 20.0),
                call("s3", us(0) - 1, 0, Status::Timeout, 30.0),
                call("c1", us(1), 1, Status::Ok, 5.0),
            ],
        };
        let feedback = Feedback::from_records(
            [("s1", 1.0), ("s2", 0.0), ("old", 0.0)]
                .map(|(id, score)| FeedbackRecord::new(id, score)),
        );
        let snap = Snapshot {
            files: vec![Arc::new(file)],
            feedback: Arc::new(feedback),
            files_read: 1,
        };
        let ov = overview(&snap, Window::Hour, now);
        assert_eq!(ov.total.requests, 4, "the call 61 minutes ago is outside");
        let stable = ov.groups.iter().find(|g| g.variant == "stable");
        let cur = &stable.map(|g| g.current.clone()).unwrap_or_default();
        assert_eq!(cur.requests, 3);
        assert_eq!((cur.errors, cur.timeouts), (1, 1));
        assert_eq!(cur.latency_p50_ms, Some(20.0));
        assert_eq!(cur.latency_p99_ms, Some(30.0));
        assert_eq!(cur.online_pass_rate, Some(1.0 / 3.0));
        assert_eq!((cur.feedback_count, cur.feedback_mean), (2, Some(0.5)));
        assert_eq!(cur.cost, 0.75);
        let series = &stable.map(|g| g.series.clone()).unwrap_or_default();
        assert_eq!(series.len(), 60);
        let per_minute: Vec<u64> = series.iter().map(|f| f.requests).collect();
        assert_eq!(
            (
                per_minute[1],
                per_minute[29],
                per_minute[30],
                per_minute[59]
            ),
            (1, 0, 1, 1)
        );
        assert_eq!(per_minute.iter().sum::<u64>(), 3);
    }

    proptest! {
        #[test]
        fn percentile_is_the_smallest_value_covering_q(
            mut v in prop::collection::vec(-1e6f64..1e6, 1..200),
            q in 0.0f64..=1.0,
        ) {
            let p = percentiles(&mut v, &[q])[0].unwrap_or(f64::NAN);
            let n = v.len() as f64;
            let at_or_below = v.iter().filter(|x| **x <= p).count() as f64;
            let below = v.iter().filter(|x| **x < p).count() as f64;
            prop_assert!(at_or_below >= (q * n).ceil().max(1.0));
            prop_assert!(below < (q * n).ceil().max(1.0));
        }
    }
}
