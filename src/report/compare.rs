//! The reports of `promptgate compare`: markdown (fits a pull-request
//! comment) and one self-contained HTML file (inline CSS and SVG, no
//! script, nothing fetched) with the cost-quality plane (cost on a log
//! axis, pass rate with interval bars, the frontier drawn, points
//! labelled), a latency-quality view and the table. Rendering only: every
//! number comes from [`crate::compare`].

use std::fmt::Write;

use super::svg::{self, Point, Scale, Size, escape};
use crate::compare::CompareReport;
use crate::compare::production::ProductionPoint;
use crate::compare::run::{CandidateReport, cost_text, versus_text};

const FRONTIER_COLOR: &str = "#2a7a3b";
const OTHER_COLOR: &str = "#8a8f98";
const RECOMMENDED_COLOR: &str = "#d9822b";

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.0} ms"))
}

/// Escapes a label for a markdown table cell.
fn md_cell(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "&#124;")
        .replace('\n', " ")
}

/// What a candidate is, in one cell: frontier, best, recommended.
fn role(r: &CompareReport, c: &CandidateReport) -> String {
    let mut tags = Vec::new();
    if r.recommended.as_deref() == Some(c.figures.label.as_str()) {
        tags.push("recommended");
    }
    if r.best.as_deref() == Some(c.figures.label.as_str()) {
        tags.push("best");
    }
    if c.on_frontier {
        tags.push("frontier");
    }
    tags.join(", ")
}

/// The verdict against the best, short: "as good (p = 0.010)".
fn versus_cell(c: &CandidateReport) -> String {
    use crate::compare::run::p_text;
    match (&c.versus_best, &c.versus_best_error) {
        (_, Some(_)) => "not tested".into(),
        (None, None) => "–".into(),
        (Some(v), None) if v.non_inferior => format!("as good ({})", p_text(v.p_holm)),
        (Some(v), None) if v.worse => format!("worse ({})", p_text(v.p_worse_holm)),
        (Some(v), None) => format!("not shown ({})", p_text(v.p_holm)),
    }
}

/// The candidates table, one model for the markdown and the HTML report:
/// headers and per candidate plain-text cells, escaped by the renderer.
struct CandidateTable {
    headers: Vec<String>,
    rows: Vec<CandidateRow>,
}

struct CandidateRow {
    recommended: bool,
    /// The first cell is the candidate's label.
    cells: Vec<String>,
}

/// `with_origin`: also the model and prompt columns (the HTML has room,
/// a PR comment has not).
fn candidate_table(r: &CompareReport, with_origin: bool) -> CandidateTable {
    let mut headers = vec!["candidate".to_string()];
    if with_origin {
        headers.extend(["model".into(), "prompt".into()]);
    }
    headers.push(format!(
        "pass rate ({:.0}% CI)",
        (2.0 * r.confidence - 1.0) * 100.0
    ));
    headers.extend(
        [
            "mean score",
            "cost / 1k calls",
            "p50",
            "p95",
            "tokens in / out",
            "errors",
            "vs best",
            "",
        ]
        .map(String::from),
    );
    let rows = r
        .candidates
        .iter()
        .map(|c| {
            let f = &c.figures;
            let mut cells = vec![f.label.clone()];
            if with_origin {
                cells.extend([f.model.clone(), f.prompt.clone()]);
            }
            cells.extend([
                format!(
                    "{} ({} … {})",
                    pct(f.pass_rate),
                    pct(f.pass_rate_interval.low),
                    pct(f.pass_rate_interval.high)
                ),
                format!("{:.3}", f.mean_score),
                cost_text(f.cost_per_1k),
                ms(f.latency_p50_ms),
                ms(f.latency_p95_ms),
                format!("{:.0} / {:.0}", f.input_tokens, f.output_tokens),
                pct(f.error_rate),
                versus_cell(c),
                role(r, c),
            ]);
            CandidateRow {
                recommended: r.recommended.as_deref() == Some(f.label.as_str()),
                cells,
            }
        })
        .collect();
    CandidateTable { headers, rows }
}

/// The markdown report.
pub fn markdown(r: &CompareReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### promptgate compare `{}`", r.suite);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "dataset `{}` · {} rows × {} repeat{} · {} candidates · margin {:.1} pts · confidence {:.0}% (Holm-corrected)",
        r.dataset,
        r.rows,
        r.repeat,
        if r.repeat == 1 { "" } else { "s" },
        r.candidates.len(),
        r.margin * 100.0,
        r.confidence * 100.0
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "**Recommendation:** {}.", r.recommendation);
    let _ = writeln!(out);
    let table = candidate_table(r, false);
    let _ = writeln!(out, "| {} |", table.headers.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(table.headers.len()));
    for row in &table.rows {
        let cells: Vec<String> = row
            .cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("`{}`", md_cell(c))
                } else {
                    md_cell(c)
                }
            })
            .collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    let _ = writeln!(out);
    for c in &r.candidates {
        let _ = writeln!(out, "- {}", md_cell(&versus_text(r, c)));
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Pareto frontier (cost, pass rate): {}. Model calls: {} ({} served from the response cache).",
        r.frontier
            .iter()
            .map(|l| format!("`{}`", md_cell(l)))
            .collect::<Vec<_>>()
            .join(" → "),
        r.model_calls,
        r.cache_hits
    );
    out
}

fn color(r: &CompareReport, c: &CandidateReport) -> &'static str {
    if r.recommended.as_deref() == Some(c.figures.label.as_str()) {
        RECOMMENDED_COLOR
    } else if c.on_frontier {
        FRONTIER_COLOR
    } else {
        OTHER_COLOR
    }
}

/// The cost-quality plane: one point per candidate, the frontier drawn.
pub fn cost_quality_svg(r: &CompareReport) -> String {
    let points: Vec<Point> = r
        .candidates
        .iter()
        .map(|c| Point {
            x: c.figures.cost_per_1k,
            y: c.figures.pass_rate,
            y_interval: Some((
                c.figures.pass_rate_interval.low,
                c.figures.pass_rate_interval.high,
            )),
            label: c.figures.label.clone(),
            color: color(r, c).into(),
        })
        .collect();
    let line: Vec<(f64, f64)> = r
        .frontier
        .iter()
        .filter_map(|l| r.candidates.iter().find(|c| &c.figures.label == l))
        .map(|c| (c.figures.cost_per_1k, c.figures.pass_rate))
        .collect();
    svg::scatter(
        "cost vs pass rate",
        ("cost per 1k calls (log)", Scale::Log),
        "pass rate",
        &points,
        Some(&line),
        Size {
            width: 640.0,
            height: 380.0,
        },
    )
}

/// Latency p95 against pass rate.
pub fn latency_quality_svg(r: &CompareReport) -> String {
    let points: Vec<Point> = r
        .candidates
        .iter()
        .map(|c| Point {
            x: c.figures.latency_p95_ms.unwrap_or(f64::NAN),
            y: c.figures.pass_rate,
            y_interval: Some((
                c.figures.pass_rate_interval.low,
                c.figures.pass_rate_interval.high,
            )),
            label: c.figures.label.clone(),
            color: color(r, c).into(),
        })
        .collect();
    svg::scatter(
        "latency p95 vs pass rate",
        ("latency p95 (ms)", Scale::Linear),
        "pass rate",
        &points,
        None,
        Size {
            width: 640.0,
            height: 320.0,
        },
    )
}

/// The HTML report.
pub fn html(r: &CompareReport) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>promptgate compare {}</title><style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}td:first-child,th:first-child{{text-align:left}}.rec{{background:#fdf1e4}}.legend span{{margin-right:1.5em}}</style></head><body>",
        escape(&r.suite)
    );
    let _ = write!(
        out,
        "<h1>promptgate compare <code>{}</code></h1><p>dataset <code>{}</code> · {} rows × {} repeat(s) · {} candidates · margin {:.1} points · confidence {:.0}% (Holm-corrected across candidates)</p>",
        escape(&r.suite),
        escape(&r.dataset),
        r.rows,
        r.repeat,
        r.candidates.len(),
        r.margin * 100.0,
        r.confidence * 100.0
    );
    let _ = write!(
        out,
        "<p><strong>Recommendation:</strong> {}.</p>",
        escape(&r.recommendation)
    );
    let _ = write!(
        out,
        "<p class=\"legend\"><span style=\"color:{RECOMMENDED_COLOR}\">● recommended</span><span style=\"color:{FRONTIER_COLOR}\">● on the frontier</span><span style=\"color:{OTHER_COLOR}\">● dominated</span>bars: {:.0}% interval of the pass rate; dashed line: the Pareto frontier</p>",
        (2.0 * r.confidence - 1.0) * 100.0
    );
    let _ = write!(
        out,
        "<figure id=\"cost-quality\">{}</figure><figure id=\"latency-quality\">{}</figure>",
        cost_quality_svg(r),
        latency_quality_svg(r)
    );
    let table = candidate_table(r, true);
    out.push_str("<table><thead><tr>");
    for h in &table.headers {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in &table.rows {
        out.push_str(if row.recommended {
            "<tr class=\"rec\">"
        } else {
            "<tr>"
        });
        for c in &row.cells {
            let _ = write!(out, "<td>{}</td>", escape(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table><ul>");
    for c in &r.candidates {
        let _ = write!(out, "<li>{}</li>", escape(&versus_text(r, c)));
    }
    let _ = writeln!(
        out,
        "</ul><p>Model calls: {} ({} served from the response cache).</p></body></html>",
        r.model_calls, r.cache_hits
    );
    out
}

/// The production plane (`promptgate report --html`): online pass rate and
/// mean feedback against cost per 1k calls, one point per prompt version,
/// variant and model; the frontier per prompt marked in the table.
pub fn production_html(window: &str, points: &[ProductionPoint]) -> String {
    let color = |p: &ProductionPoint| {
        if p.variant == "canary" {
            RECOMMENDED_COLOR
        } else if p.on_frontier {
            FRONTIER_COLOR
        } else {
            OTHER_COLOR
        }
    };
    let chart = |title: &str, y_label: &str, y: &dyn Fn(&ProductionPoint) -> Option<f64>| {
        let pts: Vec<Point> = points
            .iter()
            .filter_map(|p| {
                Some(Point {
                    x: p.cost_per_1k,
                    y: y(p)?,
                    y_interval: None,
                    label: p.label(),
                    color: color(p).into(),
                })
            })
            .collect();
        svg::scatter(
            title,
            ("cost per 1k calls (log)", Scale::Log),
            y_label,
            &pts,
            None,
            Size {
                width: 640.0,
                height: 340.0,
            },
        )
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>promptgate report {w}</title><style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}td:first-child,th:first-child{{text-align:left}}</style></head><body><h1>Cost vs quality in production</h1><p>window <code>{w}</code> · <span style=\"color:{RECOMMENDED_COLOR}\">● canary</span> <span style=\"color:{FRONTIER_COLOR}\">● on its prompt's frontier</span> <span style=\"color:{OTHER_COLOR}\">● other</span></p>",
        w = escape(window)
    );
    let _ = write!(
        out,
        "<figure id=\"online\">{}</figure><figure id=\"feedback\">{}</figure>",
        chart("online pass rate vs cost", "online pass rate", &|p| p
            .online_pass_rate),
        chart("mean feedback vs cost", "mean feedback", &|p| p
            .mean_feedback)
    );
    out.push_str("<table><thead><tr><th>prompt / model</th><th>variant</th><th>version</th><th>model</th><th>calls</th><th>online pass rate</th><th>mean feedback</th><th>cost / 1k calls</th><th>errors</th><th>latency p95</th><th>frontier</th></tr></thead><tbody>");
    for p in points {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.group),
            escape(&p.variant),
            escape(
                p.prompt_version
                    .as_deref()
                    .map_or("–", |v| &v[..v.len().min(12)])
            ),
            escape(&p.model),
            p.calls,
            p.online_pass_rate.map_or_else(|| "–".into(), pct),
            p.mean_feedback
                .map_or_else(|| "–".into(), |v| format!("{v:.2}")),
            cost_text(p.cost_per_1k),
            pct(p.error_rate),
            ms(p.latency_p95_ms),
            if p.on_frontier { "yes" } else { "" }
        );
    }
    out.push_str("</tbody></table></body></html>\n");
    out
}
