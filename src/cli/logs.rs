//! `promptgate logs compact|query`: maintenance and inspection of the
//! Parquet request logs under `logging.dir` of the control ref's committed
//! promptgate.yaml (the folder `serve` writes to, see [`crate::settings`]).

use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};

use super::ExitStatus;
use crate::lake::source::{LocalView, any_store, default_sources};
use crate::logstore::{self, RequestFilter};
use crate::settings::{self, Settings};
use crate::spec::config::StoreOptions;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: LogsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum LogsCommand {
    /// Merge the small Parquet files of each partition into one, convert the
    /// feedback journal to Parquet, recover leftover temporary files.
    Compact(CompactArgs),
    /// SQL over the log tables `requests` and `feedback` (DataFusion), or
    /// without SQL, print request log rows.
    Query(QueryArgs),
}

#[derive(Debug, clap::Args)]
pub struct CompactArgs {
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Log root to compact instead of the one `serve` writes to (`logging.dir`
    /// of the control ref's promptgate.yaml, or $PROMPTGATE_LOG_DIR).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// SQL over the tables `requests` and `feedback` (partition column
    /// `date`, `YYYY-MM-DD`: filter on it to skip whole partitions), e.g.
    /// "SELECT variant, count(*) FROM requests WHERE date >= '2026-01-01' GROUP BY variant".
    #[arg(value_name = "SQL", conflicts_with_all = ["prompt", "since", "until", "limit", "json"])]
    pub sql: Option<String>,
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Log roots, partition folders, files or `s3://bucket/prefix` URLs to
    /// read (repeatable, e.g. one per replica); default: `logging.store`
    /// (when set) and the folder `serve` writes to (`logging.dir` of the
    /// control ref's promptgate.yaml, or $PROMPTGATE_LOG_DIR).
    #[arg(long = "dir", visible_alias = "logs", value_name = "PATH_OR_URL")]
    pub dirs: Vec<PathBuf>,
    /// Output of a SQL query.
    #[cfg(feature = "sql")]
    #[arg(long, value_enum, default_value = "table", requires = "sql")]
    pub format: crate::lake::sql::OutputFormat,
    /// Only rows of this prompt id.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Rows at or after: RFC 3339 time, a UTC date `YYYY-MM-DD`, or an age
    /// such as `30m`, `6h`, `7d`.
    #[arg(long)]
    pub since: Option<String>,
    /// Rows before (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Only the most recent N rows (printed oldest first).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print rows as a JSON array.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitStatus> {
    match args.command {
        LogsCommand::Compact(a) => compact(a),
        LogsCommand::Query(a) => query(a),
    }
}

fn compact(args: CompactArgs) -> anyhow::Result<ExitStatus> {
    let dir = match args.dir {
        Some(d) => d,
        None => Settings::production(args.repo, Vec::new())?.log_dir,
    };
    if !dir.is_dir() {
        super::out(&format!("no logs under {}\n", dir.display()))?;
        return Ok(ExitStatus::Success);
    }
    let report =
        logstore::compact(&dir).with_context(|| format!("compacting {}", dir.display()))?;
    if args.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
        return Ok(ExitStatus::Success);
    }
    let mut text = String::new();
    match &report.recovery {
        Some(r) => text.push_str(&format!(
            "recovery: {} recovered, {} quarantined\n",
            r.recovered.len(),
            r.quarantined.len()
        )),
        None => text.push_str("recovery: skipped (a writer is running on this folder)\n"),
    }
    let f = &report.feedback;
    text.push_str(&format!(
        "feedback: {} journal(s) converted, {} record(s), {} file(s), {} torn line(s) skipped{}\n",
        f.journals_processed,
        f.records,
        f.files_written,
        f.skipped_lines,
        if f.rotated_live {
            ""
        } else {
            " (live journal not rotated)"
        }
    ));
    if report.uploading {
        text.push_str(
            "not merged: this folder uploads to logging.store (it holds .replica); its files go to the store as they are\n",
        );
    } else {
        text.push_str(&format!(
            "compacted {} partition(s): {} row(s) merged, {} file(s) removed\n",
            report.partitions_merged, report.rows_merged, report.files_removed
        ));
    }
    super::out(&text)?;
    Ok(ExitStatus::Success)
}

/// `--since`/`--until`: RFC 3339, a UTC date, or an age before `now`.
fn parse_time(s: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = match num.parse() {
        Ok(n) if n >= 0 => n,
        _ => bail!("`{s}` is not a time: use RFC 3339, YYYY-MM-DD, or an age like 30m, 6h, 7d"),
    };
    let age = match unit {
        "s" => chrono::Duration::seconds(n),
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => bail!("`{s}`: unknown unit `{unit}` (s, m, h, d)"),
    };
    Ok(now - age)
}

/// What `logs query` reads and how to reach a store: `--logs` as given,
/// else `logging.store` and the log folder (absent: no logs yet).
fn sources(args: &QueryArgs) -> anyhow::Result<(Vec<PathBuf>, StoreOptions)> {
    if args.dirs.is_empty() {
        let s = Settings::production(args.repo.clone(), Vec::new())?;
        let sources = default_sources(&s.config.logging, &s.log_dir);
        return Ok((sources, s.config.logging.store_options.clone()));
    }
    // Outside a repository, a store is reached through the environment.
    let store = Settings::production(args.repo.clone(), Vec::new())
        .map(|s| s.config.logging.store_options.clone())
        .unwrap_or_default();
    for d in &args.dirs {
        anyhow::ensure!(
            d.exists() || any_store(std::slice::from_ref(d)),
            "{}: no such log folder or file",
            d.display()
        );
    }
    Ok((
        settings::log_roots(args.repo.clone(), args.dirs.clone())?,
        store,
    ))
}

#[cfg(feature = "sql")]
fn sql_query(args: &QueryArgs, sql: &str) -> anyhow::Result<ExitStatus> {
    use std::io::Write;
    let (sources, store) = sources(args)?;
    let (schema, batches) = crate::lake::sql::query(&sources, &store, sql)?;
    let bytes = crate::lake::sql::render(&schema, &batches, args.format)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&bytes)?;
    stdout.flush()?;
    Ok(ExitStatus::Success)
}

#[cfg(not(feature = "sql"))]
fn sql_query(_args: &QueryArgs, _sql: &str) -> anyhow::Result<ExitStatus> {
    bail!(
        "this promptgate was built without the `sql` feature (DataFusion): rebuild with `--features sql`, or read the lake with DuckDB (README: Log lake)"
    )
}

fn query(args: QueryArgs) -> anyhow::Result<ExitStatus> {
    if let Some(sql) = &args.sql {
        return sql_query(&args, sql);
    }
    let now = Utc::now();
    let filter = RequestFilter {
        since: args
            .since
            .as_deref()
            .map(|s| parse_time(s, now))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|s| parse_time(s, now))
            .transpose()?,
        prompt_id: args.prompt.clone(),
    };
    let (sources, store) = sources(&args)?;
    let view = LocalView::open(&sources, &store, filter.since.map(|s| s.date_naive()))
        .context("reading the log lake")?;
    let mut rows =
        logstore::read_requests(view.roots(), &filter).context("reading request logs")?;
    if let Some(n) = args.limit {
        let skip = rows.len().saturating_sub(n);
        rows.drain(..skip);
    }
    if args.json {
        super::out(&format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
        return Ok(ExitStatus::Success);
    }
    let mut text = String::new();
    for r in &rows {
        text.push_str(&format!(
            "{}  {}  {}  {}  {}  {}  {:.1}ms  {}/{} tok  {:.6}\n",
            r.ts.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            r.request_id,
            r.prompt_id.as_deref().unwrap_or("-"),
            r.variant.as_str(),
            r.status.as_str(),
            r.http_status,
            r.latency_ms,
            r.input_tokens,
            r.output_tokens,
            r.cost
        ));
    }
    text.push_str(&format!("{} row(s)\n", rows.len()));
    super::out(&text)?;
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_documented_form() {
        let now = DateTime::parse_from_rfc3339("2024-05-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_time("2024-05-01", now).unwrap().to_rfc3339(),
            "2024-05-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("6h", now).unwrap().to_rfc3339(),
            "2024-05-10T06:00:00+00:00"
        );
        assert_eq!(
            parse_time("2024-05-09T10:00:00+02:00", now)
                .unwrap()
                .to_rfc3339(),
            "2024-05-09T08:00:00+00:00"
        );
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("5w", now).is_err());
    }
}
