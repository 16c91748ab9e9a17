//! The cost-quality plane from production: the request log of a window,
//! grouped by prompt (or pass-through model), prompt version, variant and
//! model. Quality is the online pass rate (the online assertions the proxy
//! scored, over the calls it scored) and the mean feedback score (joined
//! by request id, the latest record wins); cost is the mean logged cost of
//! a call. A canary and its stable version sit on one picture.
//!
//! The frontier is drawn per group name (a prompt's versions and models
//! compete with each other, not with another prompt's), on (cost per call,
//! online pass rate), over the points that have online scores.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::frontier;
use crate::logstore::{FeedbackRecord, RequestLogRow, RequestStatus};

/// One point of the plane.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProductionPoint {
    /// Prompt id, or `model:<name>` for pass-through calls.
    pub group: String,
    /// Git blob id of the prompt file (None for pass-through calls).
    pub prompt_version: Option<String>,
    /// `stable`, `canary` or `none`.
    pub variant: String,
    pub model: String,
    pub calls: u64,
    /// Calls the proxy scored online, and the share that passed.
    pub online_scored: u64,
    pub online_pass_rate: Option<f64>,
    pub feedback_count: u64,
    pub mean_feedback: Option<f64>,
    pub cost_per_call: f64,
    pub cost_per_1k: f64,
    pub error_rate: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub on_frontier: bool,
}

impl ProductionPoint {
    /// A short label: group, variant, version prefix, model.
    pub fn label(&self) -> String {
        let version = self
            .prompt_version
            .as_deref()
            .map(|v| format!(" @{}", &v[..v.len().min(7)]))
            .unwrap_or_default();
        format!("{} {}{version} ({})", self.group, self.variant, self.model)
    }
}

#[derive(Default)]
struct Acc {
    calls: u64,
    scored: u64,
    passed: u64,
    feedback: Vec<f64>,
    cost: f64,
    errors: u64,
    latencies: Vec<f64>,
}

/// The plane of `rows` with `feedback` joined.
pub fn plane(rows: &[RequestLogRow], feedback: &[FeedbackRecord]) -> Vec<ProductionPoint> {
    let mut latest: HashMap<&str, &FeedbackRecord> = HashMap::new();
    for f in feedback {
        match latest.get(f.request_id.as_str()) {
            Some(prev) if prev.ts > f.ts => {}
            _ => {
                latest.insert(&f.request_id, f);
            }
        }
    }
    type Key = (String, Option<String>, String, String);
    let mut groups: BTreeMap<Key, Acc> = BTreeMap::new();
    for r in rows {
        let key = (
            crate::drift::group_of(r),
            r.prompt_version.clone(),
            r.variant.as_str().to_string(),
            r.model.clone(),
        );
        let a = groups.entry(key).or_default();
        a.calls += 1;
        if let Some(p) = r.online_pass {
            a.scored += 1;
            a.passed += u64::from(p);
        }
        if let Some(f) = latest.get(r.request_id.as_str()) {
            a.feedback.push(f.score);
        }
        a.cost += r.cost;
        if r.status == RequestStatus::Ok {
            a.latencies.push(r.latency_ms);
        } else {
            a.errors += 1;
        }
    }
    let mut points: Vec<ProductionPoint> = groups
        .into_iter()
        .map(|((group, prompt_version, variant, model), a)| {
            let n = a.calls.max(1) as f64;
            ProductionPoint {
                group,
                prompt_version,
                variant,
                model,
                calls: a.calls,
                online_scored: a.scored,
                online_pass_rate: (a.scored > 0).then(|| a.passed as f64 / a.scored as f64),
                feedback_count: a.feedback.len() as u64,
                mean_feedback: crate::stats::mean(&a.feedback),
                cost_per_call: a.cost / n,
                cost_per_1k: a.cost / n * 1000.0,
                error_rate: a.errors as f64 / n,
                latency_p50_ms: crate::stats::quantile(&a.latencies, 0.5),
                latency_p95_ms: crate::stats::quantile(&a.latencies, 0.95),
                on_frontier: false,
            }
        })
        .collect();
    let names: Vec<String> = points.iter().map(|p| p.group.clone()).collect();
    for name in names.iter().collect::<std::collections::BTreeSet<_>>() {
        let members: Vec<usize> = (0..points.len())
            .filter(|&i| &points[i].group == name && points[i].online_pass_rate.is_some())
            .collect();
        let xy: Vec<(f64, f64)> = members
            .iter()
            .map(|&i| {
                (
                    points[i].cost_per_call,
                    points[i].online_pass_rate.unwrap_or(f64::NAN),
                )
            })
            .collect();
        for k in frontier::pareto(&xy) {
            points[members[k]].on_frontier = true;
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logstore::Variant;

    fn row(
        id: &str,
        variant: Variant,
        version: &str,
        cost: f64,
        pass: Option<bool>,
    ) -> RequestLogRow {
        let mut r = RequestLogRow::new(id, chrono::Utc::now());
        r.prompt_id = Some("capital".into());
        r.prompt_version = Some(version.into());
        r.variant = variant;
        r.cost = cost;
        r.online_pass = pass;
        r
    }

    #[test]
    fn a_canary_and_its_stable_version_are_two_points_with_feedback_joined() {
        let rows = vec![
            row("a", Variant::Stable, "v1", 0.02, Some(true)),
            row("b", Variant::Stable, "v1", 0.04, Some(false)),
            row("c", Variant::Canary, "v2", 0.01, Some(true)),
            row("d", Variant::Canary, "v2", 0.01, None),
        ];
        let fb = |id: &str, ts: i64, score: f64| {
            let mut f = FeedbackRecord::new(id, score);
            f.ts = chrono::DateTime::from_timestamp(ts, 0).unwrap();
            f
        };
        let feedback = vec![fb("a", 1, 0.0), fb("a", 2, 1.0), fb("c", 1, 0.5)];
        let p = plane(&rows, &feedback);
        assert_eq!(p.len(), 2);
        // Ordered by group, then version.
        let (stable, canary) = (&p[0], &p[1]);
        assert_eq!(
            (stable.variant.as_str(), canary.variant.as_str()),
            ("stable", "canary")
        );
        assert_eq!(stable.online_pass_rate, Some(0.5));
        assert!((stable.cost_per_call - 0.03).abs() < 1e-12);
        // The latest feedback record wins.
        assert_eq!(stable.mean_feedback, Some(1.0));
        assert_eq!(
            (canary.online_scored, canary.online_pass_rate),
            (1, Some(1.0))
        );
        // Cheaper and better: the canary dominates.
        assert!(canary.on_frontier && !stable.on_frontier);
    }
}
