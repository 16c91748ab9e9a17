//! `rollout.yaml`: which git refs serve as stable and canary, and the rules
//! that judge the canary.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// Ref served to everyone not in the canary.
    pub stable: String,
    #[serde(default)]
    pub canary: Option<Canary>,
    #[serde(default)]
    pub analysis: Analysis,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StickyKey {
    /// The request's `user` field (or the header named by `sticky_header`).
    #[default]
    User,
    /// No stickiness: every request draws uniformly.
    None,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Percent of traffic, 0..=100.
    pub weight: f64,
    /// Prompts the canary applies to; empty means all.
    #[serde(default)]
    pub prompts: Vec<String>,
    #[serde(default)]
    pub sticky: StickyKey,
    /// Header carrying the user id when the body has no `user` field.
    #[serde(default)]
    pub sticky_header: Option<String>,
    /// Progressive weights; the weight advances to the next step when healthy.
    #[serde(default)]
    pub steps: Vec<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Analysis {
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    #[serde(default)]
    pub checks: Vec<MetricCheck>,
    #[serde(default)]
    pub on_regression: OnRegression,
    #[serde(default)]
    pub on_success: OnSuccess,
    /// Significance level of the sequential test.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    #[serde(default = "default_interval_s")]
    pub interval_s: u64,
    /// Tuning parameter of the sequential test: the standard deviation of
    /// the mixture prior over the effect, in standard deviations of the
    /// metric. The test is most sensitive to effects of about this size.
    #[serde(default = "default_mixture_scale")]
    pub mixture_scale: f64,
    /// Author (and committer) of rollback / promotion commits; default: the
    /// repository's git identity, else `promptgate <promptgate@localhost>`.
    #[serde(default)]
    pub author: Option<Author>,
    /// How a promotion moves stable to the canary's commit.
    #[serde(default)]
    pub promote_mode: PromoteMode,
    /// Where `canary analyze --apply --push` (and the proxy) push the
    /// control branch after an action.
    #[serde(default)]
    pub push: Option<PushTarget>,
    /// URL POSTed with the analysis (JSON) when a regression is only alerted.
    #[serde(default)]
    pub webhook: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Author {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PromoteMode {
    /// Edit rollout.yaml: `stable` becomes the canary's commit id.
    #[default]
    Rollout,
    /// Fast-forward the stable branch to the canary's commit (stable must be
    /// a branch other than the control branch, and an ancestor of the canary).
    FastForward,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PushTarget {
    /// Remote name (`origin`) or URL / path of a repository.
    pub remote: String,
    /// Remote branch to update; default: the same name as the control branch.
    #[serde(default)]
    pub branch: Option<String>,
}

fn default_min_requests() -> u64 {
    200
}
fn default_alpha() -> f64 {
    0.05
}
fn default_interval_s() -> u64 {
    10
}
fn default_mixture_scale() -> f64 {
    0.2
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            min_requests: default_min_requests(),
            checks: Vec::new(),
            on_regression: OnRegression::default(),
            on_success: OnSuccess::default(),
            alpha: default_alpha(),
            interval_s: default_interval_s(),
            mixture_scale: default_mixture_scale(),
            author: None,
            promote_mode: PromoteMode::default(),
            push: None,
            webhook: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    OnlinePassRate,
    FeedbackScore,
    ErrorRate,
    LatencyP95Ms,
    CostPerCall,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::OnlinePassRate => "online_pass_rate",
            Metric::FeedbackScore => "feedback_score",
            Metric::ErrorRate => "error_rate",
            Metric::LatencyP95Ms => "latency_p95_ms",
            Metric::CostPerCall => "cost_per_call",
        }
    }
}

/// One comparison of canary vs stable; exactly one limit is set.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricCheck {
    pub metric: Metric,
    #[serde(default)]
    pub max_drop: Option<f64>,
    #[serde(default)]
    pub max_increase: Option<f64>,
    #[serde(default)]
    pub max_increase_pct: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnRegression {
    #[default]
    Rollback,
    Alert,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnSuccess {
    Promote,
    #[default]
    Hold,
}
