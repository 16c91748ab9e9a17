//! The markdown of `promptgate check`, written for a pull-request comment:
//! a hidden marker (so the GitHub Action finds and updates its own comment
//! instead of adding one per push), a one-line verdict, then per suite a
//! table of base, head, delta and gate status, the cases that went from
//! pass to fail with both outputs side by side, the cases that got fixed,
//! and the flaky ones.
//!
//! Model outputs are untrusted text: they are escaped so they cannot break
//! the table or inject markup into the comment.

use std::fmt::Write;

use crate::eval::check::{CheckReport, SuiteReport, Verdict};
use crate::eval::compare::{CaseChange, CheckGate};
use crate::eval::dataset_change::DatasetChangeReport;
use crate::spec::eval::OnDatasetChange;
use crate::stats::noninferiority::DropTest;

/// The first line of every report; the Action looks for it.
pub const MARKER: &str = "<!-- promptgate-check -->";

/// Longest output shown in a table cell, in characters.
const MAX_OUTPUT_CHARS: usize = 240;
/// Most cases listed per section; the JSON has them all.
const MAX_CASES: usize = 25;

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// `main` (abc123def456), or just the short commit when the ref is a sha.
fn ref_text(r: &crate::eval::check::RefInfo) -> String {
    if r.commit.starts_with(&r.refname) {
        format!("`{}`", short(&r.commit))
    } else {
        format!("`{}` ({})", r.refname, short(&r.commit))
    }
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn pts(v: f64) -> String {
    format!("{:+.1} pts", v * 100.0)
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.0} ms"))
}

/// Escapes text for a table cell: no pipes, no raw HTML, one line.
fn cell(text: &str) -> String {
    let mut clipped: String = text.chars().take(MAX_OUTPUT_CHARS).collect();
    if text.chars().count() > MAX_OUTPUT_CHARS {
        clipped.push('…');
    }
    let escaped = clipped
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "&#124;")
        .replace('`', "&#96;")
        .replace("\r\n", "\n")
        .replace('\n', "<br>");
    if escaped.trim().is_empty() {
        "<em>(empty)</em>".into()
    } else {
        escaped
    }
}

fn status(pass: bool) -> &'static str {
    if pass { "✅ pass" } else { "❌ fail" }
}

fn gate_status(g: &CheckGate) -> &'static str {
    if g.warning {
        "⚠️ fail (warning)"
    } else {
        status(g.pass)
    }
}

/// The one-line verdict.
pub fn verdict_line(r: &CheckReport) -> String {
    match r.verdict {
        Verdict::NoChanges => {
            "✅ **promptgate check: no prompt changes** — nothing an eval reads (prompts, evals, datasets, models) changed; no suite was run.".into()
        }
        Verdict::Pass if warnings(r) > 0 => format!(
            "⚠️ **promptgate check passed with {} warning{}** — {} affected suite{} evaluated; the dataset changed and a gate fails on the new version without blocking (see below).",
            warnings(r),
            if warnings(r) == 1 { "" } else { "s" },
            r.suites.len(),
            if r.suites.len() == 1 { "" } else { "s" }
        ),
        Verdict::Pass => format!(
            "✅ **promptgate check passed** — {} affected suite{} evaluated, every gate passes.",
            r.suites.len(),
            if r.suites.len() == 1 { "" } else { "s" }
        ),
        Verdict::Fail => {
            let failed: Vec<String> = r
                .suites
                .iter()
                .filter(|s| !s.verdict.pass)
                .map(|s| format!("`{}`", s.suite))
                .collect();
            format!(
                "❌ **promptgate check failed** — {} of {} affected suite{} failed a gate: {}.",
                failed.len(),
                r.suites.len(),
                if r.suites.len() == 1 { "" } else { "s" },
                failed.join(", ")
            )
        }
    }
}

/// Failed gates reported as warnings, over every suite.
fn warnings(r: &CheckReport) -> usize {
    r.suites
        .iter()
        .flat_map(|s| &s.verdict.gates)
        .filter(|g| g.warning)
        .count()
}

/// The whole report.
pub fn render(r: &CheckReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{MARKER}");
    let _ = writeln!(out, "{}", verdict_line(r));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "base {} → head {} · {} changed file{}",
        ref_text(&r.base),
        ref_text(&r.head),
        r.changed_paths.len(),
        if r.changed_paths.len() == 1 { "" } else { "s" }
    );
    for s in &r.suites {
        suite(&mut out, s);
    }
    let _ = writeln!(out);
    if !r.unaffected.is_empty() {
        let names: Vec<String> = r.unaffected.iter().map(|n| format!("`{n}`")).collect();
        let _ = writeln!(out, "Not affected by this change: {}.", names.join(", "));
        let _ = writeln!(out);
    }
    if r.model_calls > 0 {
        let _ = writeln!(
            out,
            "Model calls: {} ({} served from the response cache).",
            r.model_calls, r.cache_hits
        );
    }
    out
}

fn gate_text(g: &CheckGate, drop_test: Option<&DropTest>) -> String {
    match g.gate.as_str() {
        "pass_rate" => format!("{} min {}", gate_status(g), pct(g.threshold)),
        "regression" => {
            let mut t = format!("{} max drop {:.1} pts", status(g.pass), g.threshold * 100.0);
            if let (Some(shown), Some(d)) = (g.significant, drop_test) {
                let _ = write!(
                    t,
                    " ({}, p = {:.3})",
                    if shown { "exceeded" } else { "not shown" },
                    d.p_value
                );
            }
            t
        }
        _ => format!("{} {} {}", gate_status(g), g.op, g.threshold),
    }
}

fn gates_for(s: &SuiteReport, names: &[&str]) -> String {
    let drop_test = s
        .verdict
        .comparison
        .as_ref()
        .and_then(|c| c.drop_test.as_ref());
    let texts: Vec<String> = s
        .verdict
        .gates
        .iter()
        .filter(|g| names.contains(&g.gate.as_str()))
        .map(|g| gate_text(g, drop_test))
        .collect();
    texts.join("<br>")
}

/// The suite's cost and quality in one line, base -> head: "cost per 1k
/// calls 0.0500 → 0.0300 (-40%) · pass rate -0.5 pts: as good and 40%
/// cheaper". "As good" needs the drop's upper bound at the gate's
/// confidence within the regression gate's allowance (non-inferiority
/// shown), not merely a drop the gate did not block.
pub fn cost_quality_line(s: &SuiteReport) -> Option<String> {
    let b = s.base.as_ref()?;
    let h = &s.head;
    let c = s.verdict.comparison.as_ref()?;
    let change = (b.cost_per_1k > 0.0).then(|| (h.cost_per_1k / b.cost_per_1k - 1.0) * 100.0);
    let mut line = format!(
        "**Cost vs quality:** cost per 1k calls {:.4} → {:.4}{} · pass rate {}",
        b.cost_per_1k,
        h.cost_per_1k,
        change.map_or_else(String::new, |p| format!(" ({p:+.0}%)")),
        pts(h.pass_rate - b.pass_rate)
    );
    let as_good = c
        .drop_test
        .as_ref()
        .filter(|t| t.margin > 0.0 && t.interval.high <= t.margin);
    let cheaper = change.filter(|p| *p <= -0.5);
    match (as_good, cheaper) {
        (Some(t), Some(p)) => {
            let _ = write!(
                line,
                ": as good (drop at most {:.1} pts at {:.0}%, allowance {:.1}) and {:.0}% cheaper",
                t.interval.high.max(0.0) * 100.0,
                t.confidence * 100.0,
                t.margin * 100.0,
                -p
            );
        }
        (Some(t), None) => {
            let _ = write!(
                line,
                ": as good (drop at most {:.1} pts at {:.0}%, allowance {:.1})",
                t.interval.high.max(0.0) * 100.0,
                t.confidence * 100.0,
                t.margin * 100.0
            );
        }
        (None, _) => {}
    }
    Some(line)
}

fn suite(out: &mut String, s: &SuiteReport) {
    let h = &s.head;
    let b = s.base.as_ref();
    let c = s.verdict.comparison.as_ref();
    let _ = writeln!(out);
    let warned = s.verdict.gates.iter().any(|g| g.warning);
    let _ = writeln!(
        out,
        "### {} `{}`",
        match (s.verdict.pass, warned) {
            (false, _) => "❌",
            (true, true) => "⚠️",
            (true, false) => "✅",
        },
        s.suite
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "prompt `{}` · dataset `{}` · model `{}` · {} case{} × {} repeat{} · why: {}",
        s.prompt_id,
        s.dataset,
        h.model,
        h.cases / s.repeat.max(1) as usize,
        if h.cases / s.repeat.max(1) as usize == 1 {
            ""
        } else {
            "s"
        },
        s.repeat,
        if s.repeat == 1 { "" } else { "s" },
        s.reasons.join("; ")
    );
    if let Some(note) = &s.note {
        let _ = writeln!(out);
        let _ = writeln!(out, "> {note}");
    }
    if let Some(dc) = &s.dataset_change {
        dataset_change(out, dc);
    }
    // Base and head ran on different rows: their costs do not compare.
    if let Some(line) = cost_quality_line(s).filter(|_| s.dataset_change.is_none()) {
        let _ = writeln!(out);
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "| metric | base | head | delta | gate |");
    let _ = writeln!(out, "|---|---:|---:|---:|---|");
    let dash = || "–".to_string();
    // The interval of the test the regression gate uses (a delta is minus
    // a drop), so the table and the gate cannot disagree.
    let pass_delta = c.map_or_else(dash, |c| match &c.drop_test {
        Some(t) => format!(
            "{} ({:.0}% CI {:+.1} … {:+.1})",
            pts(c.pass_rate.delta),
            t.interval.level * 100.0,
            -t.interval.high * 100.0,
            -t.interval.low * 100.0,
        ),
        None => pts(c.pass_rate.delta),
    });
    // On a dataset-only change the delta is the common rows' (the sides'
    // pass rates are over different rows).
    let pass_delta = match (&s.dataset_change, c) {
        (Some(dc), Some(_)) => format!("{pass_delta} on the {} common rows", dc.rows_common),
        _ => pass_delta,
    };
    let ms_delta = |d: Option<f64>| d.map_or_else(dash, |d| format!("{d:+.0} ms"));
    let rows = [
        [
            "pass rate".to_string(),
            b.map_or_else(dash, |b| {
                format!("{} ({}/{})", pct(b.pass_rate), b.passed, b.cases)
            }),
            format!("{} ({}/{})", pct(h.pass_rate), h.passed, h.cases),
            pass_delta,
            gates_for(s, &["pass_rate", "regression"]),
        ],
        [
            "mean score".to_string(),
            b.map_or_else(dash, |b| format!("{:.3}", b.mean_score)),
            format!("{:.3}", h.mean_score),
            c.map_or_else(dash, |c| format!("{:+.3}", c.score.delta)),
            String::new(),
        ],
        [
            "cost per 1k calls".to_string(),
            b.map_or_else(dash, |b| format!("{:.4}", b.cost_per_1k)),
            format!("{:.4}", h.cost_per_1k),
            c.map_or_else(dash, |c| format!("{:+.4}", c.cost_per_1k_delta)),
            gates_for(s, &["cost_per_1k"]),
        ],
        [
            "latency p50".to_string(),
            b.map_or_else(dash, |b| opt_ms(b.latency_p50_ms)),
            opt_ms(h.latency_p50_ms),
            ms_delta(c.and_then(|c| c.latency_p50_delta_ms)),
            String::new(),
        ],
        [
            "latency p95".to_string(),
            b.map_or_else(dash, |b| opt_ms(b.latency_p95_ms)),
            opt_ms(h.latency_p95_ms),
            ms_delta(c.and_then(|c| c.latency_p95_delta_ms)),
            gates_for(s, &["latency_p95_ms"]),
        ],
        [
            "errors".to_string(),
            b.map_or_else(dash, |b| b.errors.to_string()),
            h.errors.to_string(),
            c.map_or_else(dash, |c| pts(c.error_rate_delta)),
            String::new(),
        ],
    ];
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | ").trim_end());
    }
    let notes: Vec<&String> = s
        .verdict
        .gates
        .iter()
        .filter_map(|g| g.note.as_ref())
        .collect();
    if !notes.is_empty() || c.is_some() {
        let _ = writeln!(out);
    }
    for g in s.verdict.gates.iter().filter(|g| g.note.is_some()) {
        let _ = writeln!(
            out,
            "- `{}`: {}",
            g.gate,
            g.note.as_deref().unwrap_or_default()
        );
    }
    if let Some(t) = c.and_then(|c| c.drop_test.as_ref()) {
        let _ = writeln!(
            out,
            "- statistics: {} paired rows{}; {} of H0: drop ≤ {:.1} pts; the {:.0}% CI holds the drops it does not reject, its lower end is the {:.0}% lower bound the gate compares with the allowance.",
            t.rows,
            if s.repeat > 1 {
                " (each row's pass fraction over its repeats)"
            } else {
                ""
            },
            t.method.describe(),
            t.margin * 100.0,
            t.interval.level * 100.0,
            t.confidence * 100.0,
        );
    }
    changes(
        out,
        "Went from pass to fail",
        &s.verdict.regressed,
        s.repeat > 1,
        true,
    );
    changes(out, "Fixed", &s.verdict.fixed, s.repeat > 1, false);
    if !s.verdict.flaky.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "**Flaky** ({} case{} whose outcome differs across repeats)",
            s.verdict.flaky.len(),
            if s.verdict.flaky.len() == 1 { "" } else { "s" }
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "| case | base passes | head passes |");
        let _ = writeln!(out, "|---|---:|---:|");
        for f in s.verdict.flaky.iter().take(MAX_CASES) {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                cell(&f.key),
                f.base.as_deref().unwrap_or("–"),
                f.head
            );
        }
        more(out, s.verdict.flaky.len());
    }
}

/// The dataset-only change: what changed, the rule, and the new rows the
/// unchanged prompt fails.
fn dataset_change(out: &mut String, dc: &DatasetChangeReport) {
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "**Dataset change only:** `{}` → `{}` ({} row{} added, {} changed, {} removed); the unchanged prompt ran on both versions. \
         The regression gate compares the {} row{} common to both; absolute gates on `{}` {} (`on_dataset_change: {}`).",
        dc.from,
        dc.to,
        dc.rows_added,
        if dc.rows_added == 1 { "" } else { "s" },
        dc.rows_changed,
        dc.rows_removed,
        dc.rows_common,
        if dc.rows_common == 1 { "" } else { "s" },
        dc.to,
        match dc.on_dataset_change {
            OnDatasetChange::Warn => "warn instead of blocking",
            OnDatasetChange::Block => "block",
        },
        dc.on_dataset_change.as_str(),
    );
    for w in &dc.warnings {
        let _ = writeln!(out);
        let _ = writeln!(out, "> ⚠️ warning: {w}");
    }
    let _ = writeln!(out);
    if dc.new_failures.is_empty() {
        let _ = writeln!(
            out,
            "The prompt passes all {} new or changed row{}.",
            dc.new_passing,
            if dc.new_passing == 1 { "" } else { "s" }
        );
        return;
    }
    let _ = writeln!(
        out,
        "**New rows the prompt fails** ({} of {}): what the next prompt change should fix",
        dc.new_failures.len(),
        dc.new_failures.len() + dc.new_passing
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "| row | expected | output | failed assertions |");
    let _ = writeln!(out, "|---|---|---|---|");
    for f in dc.new_failures.iter().take(MAX_CASES) {
        let expected: Vec<String> = f
            .expected
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s}"),
                v => format!("{k}: {v}"),
            })
            .collect();
        let output = match &f.error {
            Some(e) => format!("<em>error:</em> {}", cell(e)),
            None => cell(&f.output),
        };
        let failed: Vec<String> = f
            .failed_assertions
            .iter()
            .map(|a| format!("`{}`: {}", cell(&a.name), cell(&a.detail)))
            .collect();
        let _ = writeln!(
            out,
            "| `{}`{} | {} | {} | {} |",
            cell(&f.key),
            if f.change == "changed" {
                " (changed)"
            } else {
                ""
            },
            cell(&expected.join("; ")),
            output,
            failed.join("<br>")
        );
    }
    more(out, dc.new_failures.len());
}

/// The output to show for one side: a passing one for the side that passed
/// (`passed`), else the failing one (or its error).
fn shown_output(side: &crate::eval::compare::CaseSide, passed: bool) -> String {
    if passed && let Some(o) = &side.passing_output {
        return cell(o);
    }
    match &side.error {
        Some(e) => format!("<em>error:</em> {}", cell(e)),
        None => cell(&side.output),
    }
}

/// A table of changed rows; `regressed` says which side passed.
fn changes(out: &mut String, title: &str, list: &[CaseChange], repeats: bool, regressed: bool) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "**{title}** ({} case{})",
        list.len(),
        if list.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(out);
    if repeats {
        let _ = writeln!(out, "| case | passes | base output | head output |");
        let _ = writeln!(out, "|---|---|---|---|");
    } else {
        let _ = writeln!(out, "| case | base output | head output |");
        let _ = writeln!(out, "|---|---|---|");
    }
    for ch in list.iter().take(MAX_CASES) {
        let passes = format!(
            " {}/{} → {}/{} |",
            ch.base.passes, ch.base.repeats, ch.head.passes, ch.head.repeats
        );
        let _ = writeln!(
            out,
            "| `{}` |{} {} | {} |",
            cell(&ch.key),
            if repeats { passes.as_str() } else { "" },
            shown_output(&ch.base, regressed),
            shown_output(&ch.head, !regressed)
        );
    }
    more(out, list.len());
}

fn more(out: &mut String, n: usize) {
    if n > MAX_CASES {
        let _ = writeln!(
            out,
            "\n…and {} more (all of them are in the JSON report).",
            n - MAX_CASES
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_cannot_break_the_table_or_inject_markup() {
        let c = cell("a|b\n<script>x</script> `y`");
        assert_eq!(c, "a&#124;b<br>&lt;script&gt;x&lt;/script&gt; &#96;y&#96;");
        assert_eq!(cell("  "), "<em>(empty)</em>");
        let long = "x".repeat(MAX_OUTPUT_CHARS + 10);
        assert_eq!(cell(&long).chars().count(), MAX_OUTPUT_CHARS + 1);
    }
}
