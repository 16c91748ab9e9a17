//! `promptgate report --logs DIR --window SPEC`: the cost-quality plane from
//! the request log per prompt version, variant and model (online pass rate
//! and mean feedback against cost per call), as a table, `--json`, or a
//! self-contained HTML file (`--html`). Windows are written as for `drift`
//! (`last:24h`, `last:5000`, `2026-11-01..2026-11-08`, `commit:SHA`).

use std::path::PathBuf;

use anyhow::{Context, bail};

use super::ExitStatus;
use crate::compare::production::{self, ProductionPoint};
use crate::drift::{Selector, StableState};
use crate::logstore::{RequestFilter, read_feedback};
use crate::report::compare as report;
use crate::settings::Settings;
use crate::spec::drift::WindowSpec;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Log roots (one per replica), partition folders or files (repeatable;
    /// default: the repository's `logging.dir`).
    #[arg(long = "logs")]
    pub logs: Vec<PathBuf>,
    /// Which calls: `last:24h`, `last:N`, `FROM..UNTIL` (dates or RFC 3339), `commit:SHA`.
    #[arg(long, default_value = "last:7d")]
    pub window: WindowSpec,
    /// Print the plane as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the HTML report (SVG charts, self-contained) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    #[arg(long)]
    pub repo: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    // Named roots need no repository: a machine may hold only the logs.
    let logs = if args.logs.is_empty() {
        vec![Settings::production(args.repo.clone(), Vec::new())?.log_dir]
    } else {
        args.logs.clone()
    };
    for l in &logs {
        if !l.exists() {
            bail!("{}: no such log folder or file", l.display());
        }
    }
    let selector = crate::drift::resolve(&args.window, chrono::Utc::now(), &StableState::default())
        .with_context(|| format!("--window {}: not a window of the request log", args.window))?;
    let micros = |t: Option<i64>| t.and_then(chrono::DateTime::from_timestamp_micros);
    let filter = match &selector {
        Selector::Range { from, until } => RequestFilter {
            since: micros(*from),
            until: micros(*until),
            prompt_id: None,
        },
        _ => RequestFilter::default(),
    };
    let calls = match &selector {
        Selector::Last(n) => production::Calls::Last(*n as usize),
        Selector::Commit(c) => production::Calls::Commit(c.clone()),
        Selector::First { .. } => {
            bail!(
                "--window {}: `first:N` needs the stable version; use last:N, a period or a range",
                args.window
            )
        }
        Selector::Range { .. } => production::Calls::All,
    };
    let feedback = read_feedback(&logs).context("reading feedback")?;
    let (calls, points) = production::read_plane(&logs, &filter, &calls, &feedback)
        .context("reading the request log")?;
    if let Some(path) = &args.html {
        crate::durable::write(
            path,
            report::production_html(&args.window.to_string(), &points).as_bytes(),
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        let body = serde_json::json!({
            "window": args.window.to_string(),
            "calls": calls,
            "points": points,
        });
        super::out(&format!("{}\n", serde_json::to_string_pretty(&body)?))?;
    } else {
        super::out(&table(&args.window.to_string(), calls, &points))?;
    }
    Ok(ExitStatus::Success)
}

fn table(window: &str, calls: usize, points: &[ProductionPoint]) -> String {
    let opt = |v: Option<f64>, scale: f64, unit: &str| {
        v.map_or_else(|| "-".into(), |v| format!("{:.1}{unit}", v * scale))
    };
    let mut out = format!("window {window}: {calls} calls\n\n");
    let width = points
        .iter()
        .map(|p| p.label().chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    out.push_str(&format!(
        "{:<width$}  {:>7}  {:>8}  {:>8}  {:>10}  {:>7}  {:>8}  {}\n",
        "point", "calls", "online", "feedback", "cost/1k", "errors", "p95", "frontier"
    ));
    for p in points {
        out.push_str(&format!(
            "{:<width$}  {:>7}  {:>8}  {:>8}  {:>10}  {:>6.1}%  {:>8}  {}\n",
            p.label(),
            p.calls,
            opt(p.online_pass_rate, 100.0, "%"),
            p.mean_feedback
                .map_or_else(|| "-".into(), |v| format!("{v:.2}")),
            crate::compare::run::cost_text(p.cost_per_1k),
            p.error_rate * 100.0,
            opt(p.latency_p95_ms, 1.0, "ms"),
            if p.on_frontier { "yes" } else { "-" }
        ));
    }
    out
}
