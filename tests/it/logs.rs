//! `promptgate logs compact` and `promptgate logs query` on a scaffolded
//! repository whose log folder (`logging.dir`) was filled by the library's
//! request logger, as the proxy does.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use promptgate::logstore::{
    FeedbackJournal, FeedbackRecord, RequestLogRow, RequestLogger, Variant,
};
use promptgate::spec::config::LoggingConfig;

use crate::support::{Scaffold, stderr, stdout};

fn ts(day: u32, sec: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, day, 10, 0, sec).unwrap()
}

fn row(i: usize, at: DateTime<Utc>, prompt: Option<&str>) -> RequestLogRow {
    let mut r = RequestLogRow::new(format!("req-{i:04}"), at);
    r.prompt_id = prompt.map(str::to_string);
    r.commit = "abc123".into();
    r.variant = if prompt.is_some() {
        Variant::Stable
    } else {
        Variant::None
    };
    r.model = "small".into();
    r.upstream_model = "llama3.2:1b".into();
    r.latency_ms = 12.5;
    r
}

/// Logs `rows` through the real writer, one flush (file) per `per_file` rows.
fn log_rows(dir: &Path, rows: Vec<RequestLogRow>, per_file: usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cfg = LoggingConfig {
            flush_rows: per_file,
            flush_interval_ms: 3_600_000,
            ..LoggingConfig::default()
        };
        let (logger, _) = RequestLogger::start(dir, &cfg).unwrap();
        for chunk in rows.chunks(per_file) {
            for r in chunk {
                assert!(logger.log(r.clone()).await);
            }
            logger.flush().await.unwrap();
        }
        logger.shutdown().await.unwrap();
    });
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(parquet_files(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out
}

fn query(s: &Scaffold, args: &[&str]) -> Vec<serde_json::Value> {
    let mut full = vec!["logs", "query", "--json"];
    full.extend_from_slice(args);
    let o = s.run(&full);
    assert!(o.status.success(), "logs query failed: {}", stderr(&o));
    serde_json::from_str::<Vec<serde_json::Value>>(&stdout(&o)).unwrap()
}

fn ids(rows: &[serde_json::Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn logs_query_and_compact_on_a_scaffold_repo() {
    let s = Scaffold::new();
    // Nothing logged yet: not an error.
    let o = s.run(&["logs", "query"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("0 row(s)"));

    let dir = s.path(".promptgate/logs");
    let mut rows = Vec::new();
    for i in 0..30 {
        let prompt = if i % 3 == 0 {
            None
        } else {
            Some(if i % 2 == 0 { "summarize" } else { "classify" })
        };
        rows.push(row(i, ts(1 + (i % 2) as u32, i as u32), prompt));
    }
    log_rows(&dir, rows, 5);
    let files_before = parquet_files(&dir.join("requests"));
    assert!(files_before.len() >= 6, "{files_before:?}");

    let all = query(&s, &[]);
    assert_eq!(all.len(), 30);
    assert_eq!(all[0]["ts"], "2024-03-01T10:00:00Z");
    let summarize = query(&s, &["--prompt", "summarize"]);
    assert!(summarize.iter().all(|r| r["prompt_id"] == "summarize"));
    assert_eq!(summarize.len(), 10);
    let since = query(&s, &["--since", "2024-03-02"]);
    assert_eq!(since.len(), 15);
    let last = query(&s, &["--limit", "4"]);
    assert_eq!(ids(&last), ids(&all[26..]));

    // Feedback journal present too: compaction converts it.
    let (journal, _) = FeedbackJournal::open(&dir).unwrap();
    journal
        .append(&FeedbackRecord::new("req-0001", 1.0))
        .unwrap();
    drop(journal);

    let o = s.run(&["logs", "compact", "--json"]);
    assert!(o.status.success(), "logs compact failed: {}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["partitions_merged"], 2);
    assert_eq!(report["rows_merged"], 30);
    assert_eq!(report["feedback"]["records"], 1);
    assert_eq!(
        parquet_files(&dir.join("requests")).len(),
        2,
        "one file per partition"
    );
    assert_eq!(
        ids(&query(&s, &[])),
        ids(&all),
        "same rows after compaction"
    );

    let o = s.run(&["logs", "compact"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("compacted 0 partition(s)"),
        "{}",
        stdout(&o)
    );

    let text = s.run(&["logs", "query", "--prompt", "classify", "--limit", "2"]);
    let out = stdout(&text);
    assert!(
        out.contains("classify") && out.contains("2 row(s)"),
        "{out}"
    );

    let bad = s.run(&["logs", "query", "--since", "last tuesday"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("is not a time"), "{}", stderr(&bad));

    // The independent reader agrees.
    if let Some(py) = crate::support::python_with_pyarrow() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/read_logs.py");
        let o = std::process::Command::new(py)
            .arg(script)
            .arg(dir.join("requests"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            (v["files"].as_u64(), v["live_rows"].as_u64()),
            (Some(2), Some(30))
        );
    }
}

#[test]
fn logs_query_reads_several_replica_folders() {
    let s = Scaffold::new();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    log_rows(
        a.path(),
        (0..3)
            .map(|i| row(i, ts(1, i as u32), Some("summarize")))
            .collect(),
        10,
    );
    log_rows(
        b.path(),
        (3..5)
            .map(|i| row(i, ts(1, i as u32), Some("summarize")))
            .collect(),
        10,
    );
    let rows = query(
        &s,
        &[
            "--dir",
            a.path().to_str().unwrap(),
            "--dir",
            b.path().to_str().unwrap(),
        ],
    );
    assert_eq!(
        ids(&rows),
        ["req-0000", "req-0001", "req-0002", "req-0003", "req-0004"]
    );
}
