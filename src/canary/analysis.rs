//! Canary vs stable on the request log: a pure function of the rollout, the
//! window start and the rows (with their feedback), so the proxy's analyzer
//! task, `canary status` and `canary analyze` reach the same decision from
//! the same rows, whenever and however often they look.
//!
//! Per prompt with canary traffic and per check of `analysis.checks`, the
//! rows of the window are replayed in time order and the always-valid
//! sequential test ([`crate::stats::sequential`]) looks after every
//! observation once both arms have `min_requests` observations of the metric.
//! Because the replay looks at every observation, the decision does not
//! depend on when or how often the analysis ran.
//!
//! Every metric is compared as "badness" (larger is worse), canary minus
//! stable, against the check's allowance:
//!
//! | metric | observation | limit |
//! |---|---|---|
//! | online_pass_rate | 1 - online_pass (rows with a verdict) | max_drop (points) |
//! | feedback_score | -score (rows with feedback; latest score) | max_drop |
//! | error_rate | 1 when status is not ok (client disconnects excluded) | max_increase |
//! | latency_p95_ms | 1 when latency > t (ok rows), vs 5% | t = stable p95 · (1 + pct/100) or + max_increase |
//! | cost_per_call | cost | max_increase, or pct of the stable mean |
//!
//! Rollback when any (prompt, check) is worse than allowed; promote when
//! every check of every prompt is shown not worse; else continue. Each test
//! runs at `alpha / (prompts · checks)` (Bonferroni), so the chance of any
//! false rollback stays at most `alpha`.

#[cfg(test)]
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::CanaryError;
#[cfg(test)]
use crate::logstore::{FeedbackRecord, RequestLogRow, Variant, join_feedback};
use crate::spec::rollout::{Metric, MetricCheck, OnRegression, OnSuccess, Rollout};
use crate::stats::quantile;
use crate::stats::sequential::{Arm, Kind, Moments, SequentialTest, TestConfig};

/// The quantile latency checks compare.
const LATENCY_QUANTILE: f64 = 0.95;

/// What the statistics say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// rollout.yaml has no canary.
    NoCanary,
    /// Not enough evidence either way yet.
    Continue,
    /// The canary is worse than allowed on some check.
    Rollback,
    /// The canary is shown not worse than allowed on every check.
    Promote,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::NoCanary => "no canary",
            Decision::Continue => "continue",
            Decision::Rollback => "rollback",
            Decision::Promote => "promote",
        }
    }
}

/// What to do about the decision, given `on_regression`, `on_success` and
/// `steps` of the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Action {
    None,
    Rollback,
    /// `on_regression: alert`: report only.
    Alert,
    Promote,
    /// The current step is healthy: the weight moves to the next step.
    AdvanceStep {
        from: f64,
        to: f64,
    },
    /// Healthy, but `on_success: hold`.
    Hold,
}

impl Action {
    pub fn describe(&self) -> String {
        match self {
            Action::None => "none".into(),
            Action::Rollback => "rollback".into(),
            Action::Alert => "alert (on_regression: alert)".into(),
            Action::Promote => "promote".into(),
            Action::AdvanceStep { from, to } => format!("advance weight {from}% -> {to}%"),
            Action::Hold => "hold (on_success: hold)".into(),
        }
    }
}

/// The verdict of one check on one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// An arm has fewer than `min_requests` observations of the metric.
    NotEnoughData,
    Inconclusive,
    /// Worse than allowed, at level alpha.
    Worse,
    /// Not worse than allowed, at level alpha.
    NotWorse,
}

/// One arm of one check, in the metric's natural units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ArmSummary {
    /// Observations of the metric.
    pub n: u64,
    /// Pass rate, mean score, error rate, p95 latency (ms) or mean cost.
    pub value: Option<f64>,
}

/// The evidence of one check on one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub metric: Metric,
    /// The configured limit, e.g. `max_drop 0.03`.
    pub limit: String,
    pub stable: ArmSummary,
    pub canary: ArmSummary,
    /// What the sequential test compares (larger is worse): e.g.
    /// `failure rate`, `share of requests slower than 812.0 ms`.
    pub tested: String,
    /// Allowed worsening of the tested quantity.
    pub margin: f64,
    /// Canary minus stable of the tested quantity (latest look); for latency,
    /// the canary's share above the threshold minus 5%.
    pub difference: Option<f64>,
    /// Confidence sequence of the difference at level `alpha`.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// Always-valid p-values (running minimum) of "not worse than allowed"
    /// (small = worse) and "worse than allowed" (small = not worse).
    pub p_worse: f64,
    pub p_not_worse: f64,
    /// Largest `ln Λ` of the "worse" test so far, and the threshold `ln(1/alpha)`.
    pub statistic: f64,
    pub threshold: f64,
    /// Per-test level after the Bonferroni split.
    pub alpha: f64,
    pub looks: u64,
    pub status: CheckStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptReport {
    pub prompt_id: String,
    pub stable_requests: u64,
    pub canary_requests: u64,
    pub checks: Vec<CheckReport>,
}

/// The whole analysis: serde-serialisable for `--json`, the proxy's admin
/// API and commit messages; [`CanaryReport::render`] gives the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryReport {
    pub canary_ref: Option<String>,
    pub stable_ref: String,
    pub weight: Option<f64>,
    /// Rows at or after this time are analysed.
    pub since: DateTime<Utc>,
    pub alpha: f64,
    pub min_requests: u64,
    pub decision: Decision,
    pub action: Action,
    pub reason: String,
    pub prompts: Vec<PromptReport>,
}

/// How a call ended, as the checks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    /// The client went away: neither an error nor a latency.
    ClientClosed,
    /// Any other status.
    Error,
}

impl Outcome {
    pub(crate) fn of(status: &str) -> Outcome {
        match status {
            "ok" => Outcome::Ok,
            "client_closed" => Outcome::ClientClosed,
            _ => Outcome::Error,
        }
    }
}

/// What the checks read of one stable or canary row of the window: 32
/// bytes, so a window's replay holds these rather than whole rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Observation {
    pub latency_ms: f64,
    pub cost: f64,
    /// The latest feedback score (meaningful when [`Self::score`] is some).
    score: f64,
    flags: u8,
}

const CANARY: u8 = 1;
const CLIENT_CLOSED: u8 = 2;
const ERROR: u8 = 4;
const HAS_VERDICT: u8 = 8;
const PASSED: u8 = 16;
const HAS_SCORE: u8 = 32;

impl Observation {
    pub(crate) fn new(
        canary: bool,
        outcome: Outcome,
        latency_ms: f64,
        cost: f64,
        online_pass: Option<bool>,
        score: Option<f64>,
    ) -> Observation {
        let bit = |on: bool, b: u8| if on { b } else { 0 };
        Observation {
            latency_ms,
            cost,
            score: score.unwrap_or(0.0),
            flags: bit(canary, CANARY)
                | bit(outcome == Outcome::ClientClosed, CLIENT_CLOSED)
                | bit(outcome == Outcome::Error, ERROR)
                | bit(online_pass.is_some(), HAS_VERDICT)
                | bit(online_pass == Some(true), PASSED)
                | bit(score.is_some(), HAS_SCORE),
        }
    }

    #[cfg(test)]
    fn of(r: &RequestLogRow, score: Option<f64>) -> Observation {
        Observation::new(
            r.variant == Variant::Canary,
            Outcome::of(r.status.as_str()),
            r.latency_ms,
            r.cost,
            r.online_pass,
            score,
        )
    }

    pub(crate) fn canary(&self) -> bool {
        self.flags & CANARY != 0
    }

    fn outcome(&self) -> Outcome {
        if self.flags & CLIENT_CLOSED != 0 {
            Outcome::ClientClosed
        } else if self.flags & ERROR != 0 {
            Outcome::Error
        } else {
            Outcome::Ok
        }
    }

    fn online_pass(&self) -> Option<bool> {
        (self.flags & HAS_VERDICT != 0).then_some(self.flags & PASSED != 0)
    }

    fn score(&self) -> Option<f64> {
        (self.flags & HAS_SCORE != 0).then_some(self.score)
    }
}

/// One metric's stream of observations for one prompt, replayed in order.
struct Stream {
    check: MetricCheck,
    tested: String,
    margin: f64,
    kind: Kind,
    /// Known comparison value for one-sample tests (latency exceedance).
    known: Option<f64>,
    /// (is canary, badness) in time order.
    obs: Vec<(bool, f64)>,
    stable_value: Option<f64>,
    canary_value: Option<f64>,
    stable_n: u64,
    canary_n: u64,
}

/// Analyses the canary of `rollout` over `rows` (any order; several
/// replicas' rows together) and `feedback`, counting rows at or after
/// `since` (when the canary, or its current step, was committed).
///
/// The materialising reference: production code reads the same rows with
/// [`super::evidence::scan`] and calls [`analyze_observations`]; tests
/// check that both give the same report.
#[cfg(test)]
pub fn analyze(
    rollout: &Rollout,
    since: DateTime<Utc>,
    rows: &[RequestLogRow],
    feedback: &[FeedbackRecord],
) -> Result<CanaryReport, CanaryError> {
    let Some(canary) = &rollout.canary else {
        return analyze_observations::<Observation>(rollout, since, BTreeMap::new());
    };
    let mut in_window: Vec<&RequestLogRow> = rows
        .iter()
        .filter(|r| r.ts >= since && matches!(r.variant, Variant::Stable | Variant::Canary))
        .filter(|r| {
            r.prompt_id
                .as_deref()
                .is_some_and(|p| canary.prompts.is_empty() || canary.prompts.iter().any(|c| c == p))
        })
        .collect();
    in_window.sort_by(|x, y| {
        x.ts.cmp(&y.ts)
            .then_with(|| x.request_id.cmp(&y.request_id))
    });
    let owned: Vec<RequestLogRow> = in_window.into_iter().cloned().collect();
    let joined = join_feedback(&owned, feedback);

    let mut by_prompt: BTreeMap<String, Vec<Observation>> = BTreeMap::new();
    for r in &joined.requests {
        if let Some(p) = &r.request.prompt_id {
            by_prompt
                .entry(p.clone())
                .or_default()
                .push(Observation::of(r.request, r.score()));
        }
    }
    analyze_observations(rollout, since, by_prompt)
}

/// [`analyze`] on the observations of each prompt's rows of the window
/// (stable and canary rows at or after `since` of the prompts the canary
/// covers), each prompt's in replay order: time, then request id.
#[cfg(test)]
pub(crate) fn analyze_observations<O: std::borrow::Borrow<Observation>>(
    rollout: &Rollout,
    since: DateTime<Utc>,
    mut by_prompt: BTreeMap<String, Vec<O>>,
) -> Result<CanaryReport, CanaryError> {
    if let Some(canary) = &rollout.canary {
        // Prompts with canary traffic (or named by the canary).
        for p in &canary.prompts {
            by_prompt.entry(p.clone()).or_default();
        }
        by_prompt.retain(|p, v| {
            !canary.prompts.is_empty() && canary.prompts.contains(p)
                || v.iter().any(|o| o.borrow().canary())
        });
    }
    let mut replay = Replay::new(rollout, since, by_prompt.len())?;
    for (prompt_id, rows) in &by_prompt {
        replay.prompt(prompt_id, rows);
    }
    Ok(replay.finish())
}

/// The analysis fed one prompt at a time (each prompt's tests are
/// independent once the number of prompts, which splits alpha, is known),
/// so a reader holds one prompt's rows, not the window's.
pub(crate) struct Replay<'r> {
    rollout: &'r Rollout,
    alpha_each: f64,
    report: CanaryReport,
}

impl<'r> Replay<'r> {
    /// An analysis of `prompts` prompts: those named by the canary, else
    /// those with canary rows in the window.
    pub(crate) fn new(
        rollout: &'r Rollout,
        since: DateTime<Utc>,
        prompts: usize,
    ) -> Result<Replay<'r>, CanaryError> {
        let a = &rollout.analysis;
        for (i, c) in a.checks.iter().enumerate() {
            check_limits(i, c)?;
        }
        let tests = (prompts * a.checks.len()).max(1);
        Ok(Replay {
            rollout,
            alpha_each: a.alpha / tests as f64,
            report: CanaryReport {
                canary_ref: rollout.canary.as_ref().map(|c| c.git_ref.clone()),
                stable_ref: rollout.stable.clone(),
                weight: rollout.canary.as_ref().map(|c| c.weight),
                since,
                alpha: a.alpha,
                min_requests: a.min_requests,
                decision: Decision::NoCanary,
                action: Action::None,
                reason: String::new(),
                prompts: Vec::new(),
            },
        })
    }

    /// Replays one prompt's rows (in replay order) through every check.
    pub(crate) fn prompt<O: std::borrow::Borrow<Observation>>(
        &mut self,
        prompt_id: &str,
        rows: &[O],
    ) {
        let a = &self.rollout.analysis;
        let canary_requests = rows.iter().filter(|o| o.borrow().canary()).count() as u64;
        let mut pr = PromptReport {
            prompt_id: prompt_id.to_string(),
            stable_requests: rows.len() as u64 - canary_requests,
            canary_requests,
            checks: Vec::new(),
        };
        for check in &a.checks {
            let stream = build_stream(*check, rows);
            pr.checks.push(run_stream(
                stream,
                TestConfig {
                    alpha: self.alpha_each,
                    margin: 0.0,
                    scale: a.mixture_scale,
                    min_n: a.min_requests,
                    kind: Kind::Proportion,
                },
            ));
        }
        self.report.prompts.push(pr);
    }

    /// The decision over every prompt replayed.
    pub(crate) fn finish(self) -> CanaryReport {
        let Replay {
            rollout,
            mut report,
            ..
        } = self;
        let a = &rollout.analysis;
        if rollout.canary.is_none() {
            report.reason = "rollout.yaml has no canary".into();
            return report;
        }
        report.prompts.sort_by(|x, y| x.prompt_id.cmp(&y.prompt_id));
        let all: Vec<&CheckReport> = report.prompts.iter().flat_map(|p| &p.checks).collect();
        let worse: Vec<String> = report
            .prompts
            .iter()
            .flat_map(|p| {
                p.checks
                    .iter()
                    .filter(|c| c.status == CheckStatus::Worse)
                    .map(move |c| {
                        format!(
                            "{}: {} worse than {}",
                            p.prompt_id,
                            c.metric.as_str(),
                            c.limit
                        )
                    })
            })
            .collect();
        (report.decision, report.reason) = if !worse.is_empty() {
            (Decision::Rollback, worse.join("; "))
        } else if a.checks.is_empty() {
            (
                Decision::Continue,
                "analysis.checks is empty: nothing to test".into(),
            )
        } else if report.prompts.iter().all(|p| p.canary_requests == 0) {
            (
                Decision::Continue,
                "no canary traffic in the window yet".into(),
            )
        } else if all.iter().all(|c| c.status == CheckStatus::NotWorse) {
            (
                Decision::Promote,
                "every check shows the canary not worse than allowed".into(),
            )
        } else {
            let waiting = all
                .iter()
                .filter(|c| c.status == CheckStatus::NotEnoughData)
                .count();
            let open = all
                .iter()
                .filter(|c| c.status == CheckStatus::Inconclusive)
                .count();
            (
                Decision::Continue,
                format!("{waiting} check(s) below min_requests, {open} inconclusive"),
            )
        };
        report.action = plan(rollout, report.decision);
        report
    }
}

/// The action the rollout's settings attach to a decision.
pub fn plan(rollout: &Rollout, decision: Decision) -> Action {
    let a = &rollout.analysis;
    match decision {
        Decision::NoCanary | Decision::Continue => Action::None,
        Decision::Rollback => match a.on_regression {
            OnRegression::Rollback => Action::Rollback,
            OnRegression::Alert => Action::Alert,
        },
        Decision::Promote => {
            let Some(c) = &rollout.canary else {
                return Action::None;
            };
            if let Some(next) = c.steps.iter().copied().find(|s| *s > c.weight) {
                return Action::AdvanceStep {
                    from: c.weight,
                    to: next,
                };
            }
            match a.on_success {
                OnSuccess::Promote => Action::Promote,
                OnSuccess::Hold => Action::Hold,
            }
        }
    }
}

fn check_limits(index: usize, c: &MetricCheck) -> Result<(), CanaryError> {
    let set = [
        c.max_drop.is_some(),
        c.max_increase.is_some(),
        c.max_increase_pct.is_some(),
    ];
    let ok = set.iter().filter(|s| **s).count() == 1
        && match c.metric {
            Metric::OnlinePassRate | Metric::FeedbackScore => c.max_drop.is_some(),
            Metric::ErrorRate => c.max_increase.is_some(),
            Metric::LatencyP95Ms | Metric::CostPerCall => c.max_drop.is_none(),
        };
    if ok {
        return Ok(());
    }
    let allowed = match c.metric {
        Metric::OnlinePassRate | Metric::FeedbackScore => "max_drop",
        Metric::ErrorRate => "max_increase",
        Metric::LatencyP95Ms | Metric::CostPerCall => "max_increase or max_increase_pct",
    };
    Err(CanaryError::BadCheck {
        index,
        message: format!("{} takes exactly one limit: {allowed}", c.metric.as_str()),
    })
}

fn limit_text(c: &MetricCheck) -> String {
    match (c.max_drop, c.max_increase, c.max_increase_pct) {
        (Some(v), _, _) => format!("max_drop {v}"),
        (_, Some(v), _) => format!("max_increase {v}"),
        (_, _, Some(v)) => format!("max_increase_pct {v}"),
        _ => String::new(),
    }
}

fn build_stream<O: std::borrow::Borrow<Observation>>(check: MetricCheck, rows: &[O]) -> Stream {
    let mut s = Stream {
        check,
        tested: String::new(),
        margin: 0.0,
        kind: Kind::Proportion,
        known: None,
        obs: Vec::new(),
        stable_value: None,
        canary_value: None,
        stable_n: 0,
        canary_n: 0,
    };
    let rows = || rows.iter().map(std::borrow::Borrow::borrow);
    let values = |f: &dyn Fn(&Observation) -> Option<f64>| -> Vec<(bool, f64)> {
        rows()
            .filter_map(|o| f(o).map(|v| (o.canary(), v)))
            .collect()
    };
    let side_mean = |obs: &[(bool, f64)], c: bool| {
        let m = Moments::from_values(obs.iter().filter(|o| o.0 == c).map(|o| o.1));
        (m.n > 0).then_some(m.mean)
    };
    match check.metric {
        Metric::OnlinePassRate => {
            s.tested = "failure rate (1 - online pass rate)".into();
            s.margin = check.max_drop.unwrap_or(0.0);
            s.obs = values(&|o| o.online_pass().map(|p| if p { 0.0 } else { 1.0 }));
            s.stable_value = side_mean(&s.obs, false).map(|f| 1.0 - f);
            s.canary_value = side_mean(&s.obs, true).map(|f| 1.0 - f);
        }
        Metric::FeedbackScore => {
            s.tested = "negated mean feedback score".into();
            s.kind = Kind::Mean;
            s.margin = check.max_drop.unwrap_or(0.0);
            s.obs = values(&|o| o.score().map(|v| -v));
            s.stable_value = side_mean(&s.obs, false).map(|v| -v);
            s.canary_value = side_mean(&s.obs, true).map(|v| -v);
        }
        Metric::ErrorRate => {
            s.tested = "error rate".into();
            s.margin = check.max_increase.unwrap_or(0.0);
            s.obs = values(&|o| match o.outcome() {
                Outcome::ClientClosed => None,
                Outcome::Error => Some(1.0),
                Outcome::Ok => Some(0.0),
            });
            s.stable_value = side_mean(&s.obs, false);
            s.canary_value = side_mean(&s.obs, true);
        }
        Metric::LatencyP95Ms => {
            let ok = |o: &Observation| o.outcome() == Outcome::Ok;
            let lat = |c: bool| -> Vec<f64> {
                rows()
                    .filter(|o| ok(o) && o.canary() == c)
                    .map(|o| o.latency_ms)
                    .collect()
            };
            let (sl, cl) = (lat(false), lat(true));
            s.stable_value = quantile(&sl, LATENCY_QUANTILE);
            s.canary_value = quantile(&cl, LATENCY_QUANTILE);
            // The threshold comes from the whole window's stable rows (the
            // larger arm); its own sampling error is ignored.
            let threshold =
                s.stable_value
                    .map(|p| match (check.max_increase, check.max_increase_pct) {
                        (Some(ms), _) => p + ms,
                        (_, Some(pct)) => p * (1.0 + pct / 100.0),
                        _ => p,
                    });
            s.known = Some(1.0 - LATENCY_QUANTILE);
            s.tested = match threshold {
                Some(t) => format!("share of canary requests slower than {t:.1} ms, vs 5%"),
                None => "share of slow canary requests (no stable latency yet)".into(),
            };
            // Stable rows count toward min_requests but are not observations
            // of the one-sample test.
            s.stable_n = sl.len() as u64;
            drop(sl);
            if let Some(t) = threshold {
                s.obs = rows()
                    .filter(|o| ok(o) && o.canary())
                    .map(|o| (true, if o.latency_ms > t { 1.0 } else { 0.0 }))
                    .collect();
            }
        }
        Metric::CostPerCall => {
            s.tested = "mean cost per call".into();
            s.kind = Kind::Mean;
            s.obs = values(&|o| Some(o.cost));
            s.stable_value = side_mean(&s.obs, false);
            s.canary_value = side_mean(&s.obs, true);
            s.margin = match (check.max_increase, check.max_increase_pct) {
                (Some(v), _) => v,
                (_, Some(pct)) => s.stable_value.unwrap_or(0.0).abs() * pct / 100.0,
                _ => 0.0,
            };
        }
    }
    if s.known.is_none() {
        s.stable_n = s.obs.iter().filter(|o| !o.0).count() as u64;
    }
    s.canary_n = s.obs.iter().filter(|o| o.0).count() as u64;
    s
}

fn run_stream(stream: Stream, mut cfg: TestConfig) -> CheckReport {
    cfg.margin = stream.margin;
    cfg.kind = stream.kind;
    // The one-sample latency test has no stable observations to wait for.
    let stable_ready = stream.stable_n >= cfg.min_n;
    let mut test = SequentialTest::new(cfg);
    let (mut a, mut b) = (Moments::default(), Moments::default());
    for (is_canary, v) in &stream.obs {
        if *is_canary {
            b.push(*v);
        } else {
            a.push(*v);
        }
        let stable = match stream.known {
            Some(k) if stable_ready => Arm::Known(k),
            Some(_) => continue,
            None => Arm::Sample(a),
        };
        test.look(&stable, &Arm::Sample(b));
    }
    let st = *test.state();
    let status = if stream.stable_n < cfg.min_n || stream.canary_n < cfg.min_n {
        CheckStatus::NotEnoughData
    } else if test.worse() {
        CheckStatus::Worse
    } else if test.not_worse() {
        CheckStatus::NotWorse
    } else {
        CheckStatus::Inconclusive
    };
    let finite = |v: f64| v.is_finite().then_some(v);
    CheckReport {
        metric: stream.check.metric,
        limit: limit_text(&stream.check),
        stable: ArmSummary {
            n: stream.stable_n,
            value: stream.stable_value,
        },
        canary: ArmSummary {
            n: stream.canary_n,
            value: stream.canary_value,
        },
        tested: stream.tested,
        margin: stream.margin,
        difference: finite(st.estimate),
        ci_low: finite(st.ci_low),
        ci_high: finite(st.ci_high),
        p_worse: st.p_worse,
        p_not_worse: st.p_not_worse,
        statistic: if st.looks == 0 {
            0.0
        } else {
            st.max_log_lr_worse.max(-1e9)
        },
        threshold: st.threshold,
        alpha: cfg.alpha,
        looks: st.looks,
        status,
    }
}

impl CanaryReport {
    /// The comparison table, plain text.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "canary {} ({}% of traffic) vs stable {}, since {}",
            self.canary_ref.as_deref().unwrap_or("-"),
            self.weight.map_or("-".into(), |w| w.to_string()),
            self.stable_ref,
            self.since.format("%Y-%m-%d %H:%M:%S UTC"),
        );
        let _ = writeln!(
            out,
            "always-valid mixture SPRT, alpha {} (split over {} test(s)), min_requests {}",
            self.alpha,
            self.prompts
                .iter()
                .map(|p| p.checks.len())
                .sum::<usize>()
                .max(1),
            self.min_requests
        );
        for p in &self.prompts {
            let _ = writeln!(
                out,
                "\nprompt {}: {} stable, {} canary request(s)",
                p.prompt_id, p.stable_requests, p.canary_requests
            );
            let header = [
                "metric",
                "limit",
                "stable",
                "canary",
                "n stable",
                "n canary",
                "diff (+ worse)",
                "CI",
                "p worse",
                "p ok",
                "ln LR / thr",
                "status",
            ];
            let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
            for c in &p.checks {
                let num = |v: Option<f64>| v.map_or("-".into(), fmt_num);
                table.push(vec![
                    c.metric.as_str().into(),
                    c.limit.clone(),
                    num(c.stable.value),
                    num(c.canary.value),
                    c.stable.n.to_string(),
                    c.canary.n.to_string(),
                    num(c.difference),
                    match (c.ci_low, c.ci_high) {
                        (Some(l), Some(h)) => format!("[{}, {}]", fmt_num(l), fmt_num(h)),
                        _ => "-".into(),
                    },
                    format!("{:.3}", c.p_worse),
                    format!("{:.3}", c.p_not_worse),
                    format!("{:.2} / {:.2}", c.statistic, c.threshold),
                    status_text(c.status).into(),
                ]);
            }
            out.push_str(&render_table(&table));
        }
        let _ = writeln!(
            out,
            "\ndecision: {} — {}\naction: {}",
            self.decision.as_str(),
            self.reason,
            self.action.describe()
        );
        out
    }
}

fn status_text(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::NotEnoughData => "waiting (min_requests)",
        CheckStatus::Inconclusive => "inconclusive",
        CheckStatus::Worse => "WORSE",
        CheckStatus::NotWorse => "ok",
    }
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 || (v.abs() >= 0.001 && v.abs() < 1e6) {
        format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{v:.3e}")
    }
}

fn render_table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
