//! Speed of `promptgate drift` as a whole process (the release binary, as a
//! user runs it), and side by side with Evidently's data-drift preset.
//!
//! 1. Writes N reference calls (one day) and N current calls (the next day)
//!    of one prompt with `RequestLogger`, compacts them (`logs compact`
//!    layout: one merged file per day) and converts the feedback journal to
//!    Parquet; cached under target/drift-bench/ between runs.
//! 2. Times `promptgate drift` over them, all features, with wall time and
//!    peak RSS from `/usr/bin/time`.
//! 3. With `EVIDENTLY_PYTHON` set (benches/drift_speed.sh installs Evidently
//!    into a venv): the same on M calls per window, then Evidently's
//!    DataDriftPreset on the same M rows' numeric and categorical features
//!    (a CSV export of the generated calls), timed in the same run.
//!
//! Run: `benches/drift_speed.sh` (or `cargo bench --bench drift_speed --
//! [N] [M]`, default 1000000 and 100000). Figures go to benches/README.md.
//! With `DRIFT_BASELINE_BIN` set to another build of promptgate (an older
//! commit's), step 2 times it too, on the same files, runs alternating, so
//! before and after are measured in one sitting.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[path = "drift_support/mod.rs"]
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use promptgate::drift::{self, FeatureData, GroupKind, GroupWindow, WindowFeatures, WindowSet};
use promptgate::logstore::{self, RequestLogger};
use promptgate::spec::config::LoggingConfig;
use promptgate::spec::drift::DriftConfig;
use support::{Generator, Shape};

const REFERENCE_DAY: &str = "2026-11-01T00:00:00Z";
const CURRENT_DAY: &str = "2026-11-02T00:00:00Z";

fn day(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Writes `n` calls per window under `dir` (and the features CSVs when
/// `csv` is set), unless a previous run finished it.
fn write_logs(dir: &Path, n: usize, csv: bool) {
    // v3: files carry the write-time length columns.
    let done = dir.join(".complete-v3");
    if done.exists() {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let mut journal = std::io::BufWriter::new(
        std::fs::File::create({
            std::fs::create_dir_all(dir.join("feedback")).unwrap();
            dir.join("feedback/journal.jsonl")
        })
        .unwrap(),
    );
    rt.block_on(async {
        let cfg = LoggingConfig {
            flush_rows: 50_000,
            flush_interval_ms: 60_000,
            ..LoggingConfig::default()
        };
        let (logger, _) = RequestLogger::start(dir, &cfg).unwrap();
        for (start, seed, prefix) in [(REFERENCE_DAY, 1u64, "ref"), (CURRENT_DAY, 2, "cur")] {
            let mut csv_out = csv.then(|| {
                let mut f = std::io::BufWriter::new(
                    std::fs::File::create(dir.join(format!("{prefix}.csv"))).unwrap(),
                );
                writeln!(f, "latency_ms,ttft_ms,cost,input_tokens,output_tokens,question_chars,question_words,answer_chars,answer_words,history_turns,feedback_score,question_language,product,status,json_valid,refusal,upstream_model,feedback_label").unwrap();
                f
            });
            // Every window within its day.
            let step = chrono::Duration::microseconds(86_400_000_000 / n as i64);
            let mut g = Generator::new(seed, Shape::default(), prefix, day(start)).with_step(step);
            for _ in 0..n {
                let c = g.call();
                if let Some(f) = &c.feedback {
                    serde_json::to_writer(&mut journal, f).unwrap();
                    journal.write_all(b"\n").unwrap();
                }
                if let Some(out) = csv_out.as_mut() {
                    let r = &c.row;
                    writeln!(
                        out,
                        "{:.3},{},{:.8},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                        r.latency_ms,
                        r.ttft_ms.map_or(String::new(), |t| format!("{t:.3}")),
                        r.cost,
                        r.input_tokens,
                        r.output_tokens,
                        c.question.chars().count(),
                        c.question.split_whitespace().count(),
                        c.answer.chars().count(),
                        c.answer.split_whitespace().count(),
                        c.history_turns,
                        c.feedback.as_ref().map_or(String::new(), |f| f.score.to_string()),
                        c.language,
                        c.product,
                        r.status.as_str(),
                        c.json_valid,
                        c.refusal,
                        r.upstream_model,
                        c.feedback.as_ref().and_then(|f| f.label.clone()).unwrap_or_default(),
                    )
                    .unwrap();
                }
                assert!(logger.log(c.row).await);
            }
        }
        logger.shutdown().await.unwrap();
    });
    journal.flush().unwrap();
    drop(journal);
    let report = logstore::compact(dir).unwrap();
    println!(
        "wrote {} calls per window to {} in {:.0} s (compacted {} rows)",
        n,
        dir.display(),
        started.elapsed().as_secs_f64(),
        report.rows_merged
    );
    std::fs::write(done, "").unwrap();
}

/// A scaffolded repository to run `promptgate drift` in.
fn repo(base: &Path) -> PathBuf {
    let root = base.join("repo");
    if !root.exists() {
        let o = Command::new(env!("CARGO_BIN_EXE_promptgate"))
            .args(["init", "repo"])
            .current_dir(base)
            .env("GIT_AUTHOR_NAME", "bench")
            .env("GIT_AUTHOR_EMAIL", "bench@localhost")
            .env("GIT_COMMITTER_NAME", "bench")
            .env("GIT_COMMITTER_EMAIL", "bench@localhost")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    root
}

/// Wall seconds and peak RSS (MiB) of `promptgate drift` over `logs`.
fn time_drift(repo: &Path, logs: &Path) -> (f64, f64, String) {
    time_drift_with(Path::new(env!("CARGO_BIN_EXE_promptgate")), repo, logs)
}

/// [`time_drift`] with the binary `bin`.
fn time_drift_with(bin: &Path, repo: &Path, logs: &Path) -> (f64, f64, String) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "TIME %e %M"])
        .arg(bin)
        .args(["drift", "--repo"])
        .arg(repo)
        .arg("--logs")
        .arg(logs)
        .args([
            "--reference",
            "2026-11-01..2026-11-02",
            "--current",
            "2026-11-02..",
        ])
        .output()
        .expect("running /usr/bin/time promptgate drift");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = stderr
        .lines()
        .find(|l| l.starts_with("TIME "))
        .unwrap_or_else(|| panic!("{stderr}"));
    let parts: Vec<&str> = line.split_whitespace().collect();
    let secs: f64 = parts[1].parse().unwrap();
    let kib: f64 = parts[2].parse().unwrap();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "drift failed: {stderr}\n{table}"
    );
    (secs, kib / 1024.0, table)
}

const NUMERIC: [&str; 11] = [
    "latency_ms",
    "ttft_ms",
    "cost",
    "input_tokens",
    "output_tokens",
    "question_chars",
    "question_words",
    "answer_chars",
    "answer_words",
    "history_turns",
    "feedback_score",
];

/// Categorical columns of the CSV export (after the numeric ones).
const CATEGORICAL_COLUMNS: usize = 7;

/// The features of a CSV export (the columns Evidently gets) as one window.
fn window_from_csv(path: &Path) -> WindowSet {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut features: BTreeMap<String, FeatureData> = BTreeMap::new();
    let mut calls = 0;
    for line in lines {
        calls += 1;
        for (name, value) in header.iter().zip(line.split(',')) {
            if value.is_empty() {
                continue;
            }
            if NUMERIC.contains(name) {
                if let FeatureData::Numeric(v) = features
                    .entry((*name).to_string())
                    .or_insert_with(|| FeatureData::Numeric(Vec::new()))
                {
                    v.push(value.parse().unwrap());
                }
            } else if let FeatureData::Categorical { counts, .. } = features
                .entry((*name).to_string())
                .or_insert_with(|| FeatureData::Categorical {
                    counts: BTreeMap::new(),
                    overflow: false,
                })
            {
                *counts.entry(value.to_string()).or_insert(0) += 1;
            }
        }
    }
    WindowSet {
        spec: path.display().to_string(),
        inputs_only: false,
        groups: [(
            "support".to_string(),
            GroupWindow {
                kind: GroupKind::Prompt,
                output_json: Some(true),
                features: WindowFeatures::from_features(calls, features),
            },
        )]
        .into_iter()
        .collect(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let m: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/drift-bench");
    std::fs::create_dir_all(&base).unwrap();
    let repo = repo(&base);

    let big = base.join(format!("logs-{n}"));
    write_logs(&big, n, false);
    let features = |table: &str| {
        table
            .lines()
            .filter(|l| l.starts_with("  ") && !l.trim_start().starts_with("feature"))
            .count()
    };
    let baseline = std::env::var_os("DRIFT_BASELINE_BIN").map(PathBuf::from);
    let mut runs = Vec::new();
    let mut baseline_runs = Vec::new();
    for _ in 0..3 {
        if let Some(bin) = &baseline {
            baseline_runs.push(time_drift_with(bin, &repo, &big));
        }
        runs.push(time_drift(&repo, &big));
    }
    for (who, runs) in [("baseline", &mut baseline_runs), ("promptgate", &mut runs)] {
        if runs.is_empty() {
            continue;
        }
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (secs, rss, table) = &runs[1];
        println!(
            "{who} drift, {n} + {n} calls of one prompt, {} features: median of 3 runs {secs:.2} s wall, peak RSS {rss:.0} MiB (runs: {})",
            features(table),
            runs.iter()
                .map(|r| format!("{:.2} s / {:.0} MiB", r.0, r.1))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let (Some(b), Some(a)) = (baseline_runs.get(1), runs.get(1)) {
        println!(
            "baseline / promptgate (medians): {:.2}x; same table: {}",
            b.0 / a.0,
            b.2 == a.2
        );
    }

    let Ok(python) = std::env::var("EVIDENTLY_PYTHON") else {
        println!(
            "EVIDENTLY_PYTHON not set: skipping the Evidently comparison (benches/drift_speed.sh sets it)"
        );
        return;
    };
    let small = base.join(format!("logs-{m}"));
    write_logs(&small, m, true);
    let (pg_secs, pg_rss, _) = time_drift(&repo, &small);
    // The statistics alone on exactly Evidently's table.
    let (r, c) = (
        window_from_csv(&small.join("ref.csv")),
        window_from_csv(&small.join("cur.csv")),
    );
    let settings = DriftConfig::default();
    let mut stats_runs: Vec<f64> = (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            let report = drift::analyze(&settings, &r, &c);
            assert_eq!(report.groups[0].current_calls, m as u64);
            t.elapsed().as_secs_f64()
        })
        .collect();
    stats_runs.sort_by(f64::total_cmp);
    let stats_secs = stats_runs[2];
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/drift_evidently.py");
    let out = Command::new("/usr/bin/time")
        .args(["-f", "TIME %e %M"])
        .arg(&python)
        .arg(&script)
        .arg(small.join("ref.csv"))
        .arg(small.join("cur.csv"))
        .output()
        .expect("running the Evidently script");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "evidently failed:\n{stdout}\n{stderr}"
    );
    let run_secs: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RUN_SECONDS "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    let time_line = stderr
        .lines()
        .find(|l| l.starts_with("TIME "))
        .unwrap_or("TIME 0 0");
    let parts: Vec<&str> = time_line.split_whitespace().collect();
    let ev_wall: f64 = parts[1].parse().unwrap_or(0.0);
    let ev_rss: f64 = parts[2].parse::<f64>().unwrap_or(0.0) / 1024.0;
    for l in stdout.lines().filter(|l| !l.starts_with("RUN_SECONDS")) {
        println!("evidently: {l}");
    }
    println!(
        "{m} + {m} calls, the same {} numeric and categorical columns: promptgate's tests (drift::analyze, median of 5) {:.3} s vs Evidently DataDriftPreset run() {run_secs:.2} s: {:.0}x",
        NUMERIC.len() + CATEGORICAL_COLUMNS,
        stats_secs,
        run_secs / stats_secs
    );
    println!(
        "{m} + {m} calls: promptgate drift whole process (read Parquet, every feature incl. text, language and content) {pg_secs:.2} s, {pg_rss:.0} MiB; Evidently whole process (Python start, CSV read, run) {ev_wall:.2} s, {ev_rss:.0} MiB: {:.1}x",
        ev_wall / pg_secs
    );
}
