//! The HTML report of `promptgate drift --html FILE`: one self-contained
//! file (inline CSS and SVG, no script, nothing fetched), per group the
//! feature table and, per drifted feature, the reference and current
//! distributions side by side on one scale.

use std::fmt::Write;

use super::svg::{self, Size, escape};
use crate::drift::{Chart, DriftReport, FeatureReport, Verdict};

const REFERENCE_COLOR: &str = "#4a78b5";
const CURRENT_COLOR: &str = "#d9822b";

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Drift => "drift",
        Verdict::Small => "small",
        Verdict::NotEnoughData => "nodata",
        _ => "ok",
    }
}

fn num(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(p) if p != 0.0 && p.abs() < 1e-4 => format!("{p:.1e}"),
        Some(p) => format!("{p:.4}"),
    }
}

/// The pair of charts of one feature, on a shared scale.
pub fn feature_charts(f: &FeatureReport) -> String {
    let size = Size {
        width: 380.0,
        height: 200.0,
    };
    match &f.chart {
        Chart::Histogram {
            edges,
            reference,
            current,
        } => {
            let y_max = reference
                .iter()
                .chain(current)
                .copied()
                .fold(0.0f64, f64::max);
            format!(
                "{}{}",
                svg::histogram("reference", edges, reference, y_max, REFERENCE_COLOR, size),
                svg::histogram("current", edges, current, y_max, CURRENT_COLOR, size)
            )
        }
        Chart::Bars {
            labels,
            reference,
            current,
        } => {
            let x_max = reference
                .iter()
                .chain(current)
                .copied()
                .fold(0.0f64, f64::max);
            format!(
                "{}{}",
                svg::bar_chart("reference", labels, reference, x_max, REFERENCE_COLOR, size),
                svg::bar_chart("current", labels, current, x_max, CURRENT_COLOR, size)
            )
        }
        Chart::None => String::new(),
    }
}

/// The whole report as one HTML document.
pub fn render(report: &DriftReport, generated_at: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>promptgate drift: {}</title><style>{}</style></head><body>{}</body></html>\n",
        escape(report.status.as_str()),
        CSS,
        body(report, generated_at)
    )
}

/// The report's content (headings, tables, charts) without the document
/// around it, for a page that has its own (the dashboard's drift page).
pub fn body(report: &DriftReport, generated_at: &str) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<h1>Drift: <span class=\"{}\">{}</span></h1><p>Reference <code>{}</code> vs current <code>{}</code>. A feature drifts when its Benjamini-Hochberg q-value is below {} <em>and</em> its effect reaches the threshold (W {} · JS {} · |h| {} · AUC {}). At least {} calls per window. Generated {}.</p>",
        if report.drifted() { "drift" } else { "ok" },
        escape(report.status.as_str()),
        escape(&report.reference),
        escape(&report.current),
        report.fdr,
        report.thresholds.wasserstein,
        report.thresholds.jensen_shannon,
        report.thresholds.cohen_h,
        report.thresholds.auc,
        report.min_rows,
        escape(generated_at)
    );
    for g in &report.groups {
        let _ = write!(
            h,
            "<section><h2>{} <code>{}</code>: <span class=\"{}\">{}</span></h2><p>{} reference calls{}, {} current calls{}; text features on {} and {} of them.</p>",
            escape(g.kind),
            escape(&g.group),
            if g.drifted.is_empty() { "ok" } else { "drift" },
            escape(g.status.as_str()),
            g.reference_calls,
            g.reference_range
                .as_ref()
                .map_or(String::new(), |(a, b)| format!(
                    " ({} – {})",
                    escape(a),
                    escape(b)
                )),
            g.current_calls,
            g.current_range
                .as_ref()
                .map_or(String::new(), |(a, b)| format!(
                    " ({} – {})",
                    escape(a),
                    escape(b)
                )),
            g.reference_sampled,
            g.current_sampled
        );
        for f in g.features.iter().filter(|f| f.verdict == Verdict::Drift) {
            let _ = write!(
                h,
                "<div class=\"feature\"><h3>{}</h3><p>{} · effect {} = {} (threshold {}) · p {} · q {}</p><div class=\"pair\">{}</div></div>",
                escape(&f.name),
                escape(f.test.as_str()),
                escape(f.effect_name),
                num(f.effect),
                f.threshold,
                num(f.p_value),
                num(f.q_value),
                feature_charts(f)
            );
        }
        if !g.features.is_empty() {
            h.push_str("<table><thead><tr><th>feature</th><th>test</th><th>reference</th><th>current</th><th>effect</th><th>p</th><th>q</th><th>verdict</th></tr></thead><tbody>");
            for f in &g.features {
                let _ = write!(
                    h,
                    "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    verdict_class(f.verdict),
                    escape(&f.name),
                    escape(f.test.as_str()),
                    escape(&f.reference),
                    escape(&f.current),
                    escape(f.effect_name),
                    num(f.effect),
                    num(f.p_value),
                    num(f.q_value),
                    escape(f.verdict.as_str())
                );
            }
            h.push_str("</tbody></table>");
        }
        h.push_str("</section>");
    }
    h
}

pub(crate) const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}\
code{background:#f3f3f3;padding:0 .2em}table{border-collapse:collapse;width:100%;font-size:13px}\
th,td{border-bottom:1px solid #ddd;padding:3px 6px;text-align:left}\
tr.drift td{background:#fde8e6}tr.small td{color:#8a6d00}tr.nodata td{color:#999}\
span.drift{color:#b3261e}span.ok{color:#1e7b34}.pair{display:flex;gap:12px;flex-wrap:wrap}\
.feature{margin:1em 0;padding:.5em;border:1px solid #eee}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::{DriftReport, GroupReport, Status, TestKind};
    use crate::spec::drift::Thresholds;

    #[test]
    fn a_drifted_feature_gets_two_charts_and_text_is_escaped() {
        let f = FeatureReport {
            name: "input.<q>.chars".into(),
            group: crate::drift::features::FeatureGroup::Input,
            test: TestKind::Ks,
            reference: "median 5".into(),
            current: "median 9".into(),
            reference_n: 100,
            current_n: 100,
            effect_name: "wasserstein_norm",
            effect: Some(0.4),
            threshold: 0.1,
            psi: None,
            p_value: Some(1e-9),
            q_value: Some(2e-9),
            verdict: Verdict::Drift,
            chart: Chart::Histogram {
                edges: vec![0.0, 1.0, 2.0],
                reference: vec![0.7, 0.3],
                current: vec![0.2, 0.8],
            },
        };
        let report = DriftReport {
            reference: "first:100".into(),
            current: "last:100".into(),
            fdr: 0.05,
            min_rows: 50,
            thresholds: Thresholds::default(),
            status: Status::Drift,
            groups: vec![GroupReport {
                group: "faq".into(),
                kind: "prompt",
                status: Status::Drift,
                reference_calls: 100,
                current_calls: 100,
                reference_sampled: 100,
                current_sampled: 100,
                reference_range: None,
                current_range: None,
                features: vec![f],
                drifted: vec!["input.<q>.chars".into()],
                current_sample_ids: vec![],
            }],
        };
        let html = render(&report, "now");
        assert_eq!(html.matches("<svg").count(), 2);
        assert!(html.contains("input.&lt;q&gt;.chars"));
        assert!(!html.contains("<q>"));
        assert!(!html.contains("<script"));
        assert!(
            !html.contains("http://")
                || html.matches("http://").count()
                    == html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
        );
    }
}
