//! Tests of the log store against real files in temp dirs, read back with
//! the parquet crate and with pyarrow (scripts/read_logs.py).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

use super::compact::{CrashPoint, Kind, compact_partition};
use super::files;
use super::row::{request_schema, rows_to_batch};
use super::writer::write_partition_file;
use super::*;
use crate::spec::config::{LoggingConfig, OnFull, Redaction};

fn day(d: u32, micros: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, d, 12, 0, 0).unwrap() + chrono::Duration::microseconds(micros)
}

fn row(i: usize, ts: DateTime<Utc>) -> RequestLogRow {
    let mut r = RequestLogRow::new(format!("req-{i:06}"), ts);
    r.prompt_id = (!i.is_multiple_of(3)).then(|| format!("p{}", i % 2));
    r.commit = "c0ffee".into();
    r.variant = if i.is_multiple_of(2) {
        Variant::Stable
    } else {
        Variant::Canary
    };
    r.model = "small".into();
    r.upstream_model = "llama3.2:1b".into();
    r.output = format!("answer {i}");
    r.latency_ms = i as f64 + 0.5;
    r.input_tokens = i as u64;
    r
}

fn cfg(flush_rows: usize, interval_ms: u64, capacity: usize, on_full: OnFull) -> LoggingConfig {
    LoggingConfig {
        flush_rows,
        flush_interval_ms: interval_ms,
        channel_capacity: capacity,
        on_full,
        ..LoggingConfig::default()
    }
}

fn read_all(dir: &Path) -> Vec<RequestLogRow> {
    read_requests(&[dir], &RequestFilter::default()).unwrap()
}

fn ids(rows: &[RequestLogRow]) -> Vec<String> {
    let mut v: Vec<String> = rows.iter().map(|r| r.request_id.clone()).collect();
    v.sort();
    v
}

/// Every file (any name) under `dir/sub`, recursively.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    all_files(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect()
}

async fn wait_until(mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 5 s");
}

/// The integration tests' quiet-skip helpers, one copy for both test binaries.
#[path = "../../tests/it/support/external.rs"]
mod external;

/// scripts/read_logs.py on `dir`: (files, live rows); panics on unreadable files.
fn pyarrow_count(dir: &Path) -> Option<(u64, u64)> {
    let py = external::python_with_pyarrow()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/read_logs.py");
    let o = std::process::Command::new(py)
        .arg(script)
        .arg(dir)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "read_logs.py failed: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    Some((
        v["files"].as_u64().unwrap(),
        v["live_rows"].as_u64().unwrap(),
    ))
}

// ---------------------------------------------------------------- writer

#[tokio::test]
async fn every_logged_row_is_read_back_once_partitioned_by_utc_date() {
    let tmp = tempfile::tempdir().unwrap();
    let (logger, report) =
        RequestLogger::start(tmp.path(), &cfg(7, 60_000, 1024, OnFull::Block)).unwrap();
    assert!(report.is_empty());
    let n: usize = 50;
    for i in 0..n {
        let ts = if i.is_multiple_of(2) {
            day(1, i as i64)
        } else {
            day(2, i as i64)
        };
        assert!(logger.log(row(i, ts)).await);
    }
    let stats = logger.shutdown().await.unwrap();
    assert_eq!(stats.rows_written, n as u64);
    assert_eq!(stats.rows_dropped, 0);
    let rows = read_all(tmp.path());
    assert_eq!(rows.len(), n);
    let expected: Vec<RequestLogRow> = (0..n)
        .map(|i| {
            row(
                i,
                if i.is_multiple_of(2) {
                    day(1, i as i64)
                } else {
                    day(2, i as i64)
                },
            )
        })
        .collect();
    let mut sorted = expected.clone();
    sorted.sort_by(|a, b| a.ts.cmp(&b.ts).then(a.request_id.cmp(&b.request_id)));
    assert_eq!(rows, sorted, "typed fields survive the round trip");
    let parts: Vec<String> = files::partition_dirs(&tmp.path().join(REQUESTS_DIR))
        .unwrap()
        .into_iter()
        .map(|(_, p)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(parts, ["date=2024-03-01", "date=2024-03-02"]);
    for (d, part) in files::partition_dirs(&tmp.path().join(REQUESTS_DIR)).unwrap() {
        for r in read_requests(&[&part], &RequestFilter::default()).unwrap() {
            assert_eq!(r.ts.date_naive(), d);
        }
    }
    for f in parquet_files(tmp.path()) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("part-") && !name.starts_with('.'),
            "{name}"
        );
    }
    if let Some((_, live)) = pyarrow_count(tmp.path()) {
        assert_eq!(live, n as u64);
    }
}

#[tokio::test]
async fn rows_encoded_in_chunks_across_midnight_land_in_their_own_dates() {
    use super::writer::CHUNK_ROWS;
    let tmp = tempfile::tempdir().unwrap();
    let (logger, _) =
        RequestLogger::start(tmp.path(), &cfg(100_000, 3_600_000, 8192, OnFull::Block)).unwrap();
    // Two and a half chunks; the middle one straddles midnight, so one
    // chunk holds rows of both dates.
    let n = CHUNK_ROWS * 5 / 2;
    let midnight = Utc.with_ymd_and_hms(2024, 3, 2, 0, 0, 0).unwrap();
    let ts = |i: usize| {
        midnight + chrono::Duration::microseconds(i as i64 - (CHUNK_ROWS * 3 / 2) as i64)
    };
    for i in 0..n {
        logger.log(row(i, ts(i))).await;
    }
    wait_until(|| logger.stats().buffered_rows == n as u64).await;
    assert_eq!(
        logger.stats().rows_written,
        0,
        "nothing is written before a flush"
    );
    logger.flush().await.unwrap();
    let s = logger.stats();
    assert_eq!(
        (s.rows_written, s.files_written, s.buffered_rows),
        (n as u64, 2, 0)
    );
    let rows = read_all(tmp.path());
    assert_eq!(rows.len(), n);
    for r in &rows {
        let i: usize = r.request_id["req-".len()..].parse().unwrap();
        assert_eq!(r.ts, ts(i), "{}", r.request_id);
        assert_eq!(r.output, format!("answer {i}"));
    }
    let files = parquet_files(tmp.path());
    let before: Vec<_> = files
        .iter()
        .filter(|p| p.to_string_lossy().contains("date=2024-03-01"))
        .collect();
    let after: Vec<_> = files
        .iter()
        .filter(|p| p.to_string_lossy().contains("date=2024-03-02"))
        .collect();
    assert_eq!((before.len(), after.len()), (1, 1), "{files:?}");
    logger.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_writer_flushes_when_flush_rows_are_buffered() {
    let tmp = tempfile::tempdir().unwrap();
    // An interval that never fires during the test: only the row count flushes.
    let (logger, _) =
        RequestLogger::start(tmp.path(), &cfg(10, 3_600_000, 1024, OnFull::Block)).unwrap();
    for i in 0..25 {
        logger.log(row(i, day(1, i as i64))).await;
    }
    wait_until(|| logger.stats().rows_written == 20).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let s = logger.stats();
    assert_eq!(
        (s.rows_written, s.files_written, s.buffered_rows),
        (20, 2, 5)
    );
    assert_eq!(read_all(tmp.path()).len(), 20);
    logger.shutdown().await.unwrap();
    assert_eq!(read_all(tmp.path()).len(), 25);
}

#[tokio::test]
async fn the_writer_flushes_after_the_interval_without_enough_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (logger, _) =
        RequestLogger::start(tmp.path(), &cfg(1_000_000, 50, 1024, OnFull::Block)).unwrap();
    for i in 0..3 {
        logger.log(row(i, day(1, i as i64))).await;
    }
    wait_until(|| logger.stats().rows_written == 3).await;
    assert_eq!(logger.stats().files_written, 1);
    assert_eq!(read_all(tmp.path()).len(), 3);
    logger.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_writes_every_queued_row_and_later_rows_are_counted_as_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let (logger, _) =
        RequestLogger::start(tmp.path(), &cfg(1_000_000, 3_600_000, 4096, OnFull::Block)).unwrap();
    for i in 0..1000 {
        logger.log(row(i, day(1, i as i64))).await;
    }
    let stats = logger.shutdown().await.unwrap();
    assert_eq!(stats.rows_written, 1000);
    assert_eq!(read_all(tmp.path()).len(), 1000);
    assert!(!logger.log(row(1000, day(1, 0))).await);
    assert_eq!(logger.stats().rows_dropped, 1);
    logger.shutdown().await.unwrap();
}

#[tokio::test]
async fn drop_mode_with_a_stalled_writer_counts_exactly_the_missing_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (logger, _) = RequestLogger::start(tmp.path(), &cfg(16, 20, 8, OnFull::Drop)).unwrap();
    let stall = logger.stall();
    let n = 200;
    let mut accepted = 0;
    for i in 0..n {
        // Never waits in drop mode, even with a stalled writer.
        let r = tokio::time::timeout(Duration::from_secs(1), logger.log(row(i, day(1, i as i64))))
            .await
            .expect("log() must not block in drop mode");
        accepted += usize::from(r);
    }
    assert!(accepted < n, "a stalled writer must make rows drop");
    drop(stall);
    let stats = logger.shutdown().await.unwrap();
    let read = read_all(tmp.path()).len();
    assert_eq!(read, accepted);
    assert_eq!(stats.rows_dropped as usize, n - read);
}

#[tokio::test]
async fn block_mode_waits_for_room_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (logger, _) = RequestLogger::start(tmp.path(), &cfg(16, 20, 4, OnFull::Block)).unwrap();
    let stall = logger.stall();
    let l = logger.clone();
    let producer = tokio::spawn(async move {
        for i in 0..100 {
            assert!(l.log(row(i, day(1, i as i64))).await);
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !producer.is_finished(),
        "the producer must wait while the writer is stalled"
    );
    assert!(logger.stats().queue_depth >= 4);
    drop(stall);
    producer.await.unwrap();
    let stats = logger.shutdown().await.unwrap();
    assert_eq!((stats.rows_written, stats.rows_dropped), (100, 0));
    assert_eq!(read_all(tmp.path()).len(), 100);
}

#[tokio::test]
async fn a_failed_write_is_counted_and_retried_without_losing_or_duplicating_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (logger, _) =
        RequestLogger::start(tmp.path(), &cfg(1_000_000, 3_600_000, 64, OnFull::Block)).unwrap();
    // A file where the partition folder must go makes every write fail.
    let blocker = tmp.path().join(REQUESTS_DIR);
    std::fs::write(&blocker, b"not a folder").unwrap();
    // A chunk already encoded plus some staged rows, over two dates.
    let n = super::writer::CHUNK_ROWS + 5;
    for i in 0..n {
        logger.log(row(i, day(1 + (i % 2) as u32, i as i64))).await;
    }
    assert!(logger.flush().await.is_err());
    let s = logger.stats();
    assert!(s.write_errors >= 1);
    assert_eq!((s.rows_written, s.buffered_rows), (0, n as u64));
    // Rows that arrive meanwhile start new files.
    for i in n..n + 3 {
        logger.log(row(i, day(1, i as i64))).await;
    }
    std::fs::remove_file(&blocker).unwrap();
    logger.flush().await.unwrap();
    let s = logger.stats();
    assert_eq!((s.rows_written, s.rows_dropped), ((n + 3) as u64, 0));
    logger.shutdown().await.unwrap();
    let back = ids(&read_all(tmp.path()));
    let unique: std::collections::BTreeSet<_> = back.iter().collect();
    assert_eq!((back.len(), unique.len()), (n + 3, n + 3));
}

#[tokio::test]
async fn redaction_applies_to_logged_text_when_configured() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg(10, 50, 64, OnFull::Block);
    c.redact = Redaction {
        emails: true,
        phones: true,
    };
    let (logger, _) = RequestLogger::start(tmp.path(), &c).unwrap();
    let mut r = row(1, day(1, 0));
    r.output = "write to jane@example.com".into();
    r.variables = r#"{"input": "call +44 20 7946 0958", "n": 123456789012}"#.into();
    logger.log(r).await;
    logger.shutdown().await.unwrap();
    let back = &read_all(tmp.path())[0];
    assert_eq!(back.output, "write to [email]");
    let v: serde_json::Value = serde_json::from_str(&back.variables).unwrap();
    assert_eq!(v["input"], "call [phone]");
    assert_eq!(v["n"], 123456789012u64);
}

#[tokio::test]
async fn reconfigured_settings_apply_to_the_running_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let (logger, _) =
        RequestLogger::start(tmp.path(), &cfg(1_000_000, 3_600_000, 4, OnFull::Block)).unwrap();
    logger.log(row(0, day(1, 0))).await;
    wait_until(|| logger.stats().buffered_rows == 1).await;
    // An hour's interval: the row waits. A 20 ms one writes it.
    let mut c = cfg(1_000_000, 20, 4, OnFull::Drop);
    c.redact = Redaction {
        emails: true,
        phones: false,
    };
    logger.reconfigure(&c);
    wait_until(|| logger.stats().rows_written == 1).await;
    // Rows staged from now on are redacted.
    let mut r = row(1, day(1, 1));
    r.output = "mail jane@example.com".into();
    logger.log(r).await;
    wait_until(|| logger.stats().rows_written == 2).await;
    // `on_full: drop` now: a stalled writer makes rows drop instead of waiting.
    let stall = logger.stall();
    let mut accepted = 0;
    for i in 2..40 {
        let r = tokio::time::timeout(Duration::from_secs(1), logger.log(row(i, day(1, 2))))
            .await
            .expect("log() must not block after on_full: drop");
        accepted += usize::from(r);
    }
    assert!(accepted < 38, "the stalled writer must make rows drop");
    drop(stall);
    logger.shutdown().await.unwrap();
    let back = read_all(tmp.path());
    assert_eq!(back.len(), 2 + accepted);
    assert!(back.iter().any(|r| r.output == "mail [email]"));
}

#[tokio::test]
async fn a_second_writer_on_the_same_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (logger, _) = RequestLogger::start(tmp.path(), &LoggingConfig::default()).unwrap();
    let err = RequestLogger::start(tmp.path(), &LoggingConfig::default()).unwrap_err();
    assert!(matches!(err, LogStoreError::Locked { .. }), "{err}");
    logger.shutdown().await.unwrap();
}

// -------------------------------------------------------------- recovery

/// A complete Parquet file of `rows` as bytes, with its final name recorded.
fn parquet_bytes(rows: &[RequestLogRow], final_name: Option<&str>) -> Vec<u8> {
    let mut bytes = Vec::new();
    let kv = final_name
        .map(|n| files::base_metadata(REQUESTS_DIR, n))
        .unwrap_or_default();
    files::encode(
        &mut bytes,
        request_schema(),
        &[rows_to_batch(rows).unwrap()],
        kv,
    )
    .unwrap();
    bytes
}

#[tokio::test]
async fn start_up_recovers_complete_temporaries_and_quarantines_truncated_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let part = tmp.path().join("requests/date=2024-03-01");
    std::fs::create_dir_all(&part).unwrap();
    let complete: Vec<_> = (0..4).map(|i| row(i, day(1, i as i64))).collect();
    let bytes = parquet_bytes(&complete, Some("part-20240301T120000000000Z-aaaa.parquet"));
    std::fs::write(part.join(".tmp-complete.parquet"), &bytes).unwrap();
    let other: Vec<_> = (10..12).map(|i| row(i, day(1, i as i64))).collect();
    std::fs::write(part.join(".tmp-nometa"), parquet_bytes(&other, None)).unwrap();
    let cut = parquet_bytes(&[row(20, day(1, 0))], Some("part-x.parquet"));
    std::fs::write(part.join(".tmp-truncated.parquet"), &cut[..cut.len() - 9]).unwrap();
    std::fs::write(part.join(".tmp-empty"), b"").unwrap();
    std::fs::write(part.join("notes.txt"), b"not parquet").unwrap();

    let (logger, report) = RequestLogger::start(tmp.path(), &LoggingConfig::default()).unwrap();
    logger.shutdown().await.unwrap();
    assert_eq!(report.recovered.len(), 2, "{report:?}");
    assert_eq!(report.quarantined.len(), 2, "{report:?}");
    assert!(
        part.join("part-20240301T120000000000Z-aaaa.parquet")
            .exists()
    );
    for q in &report.quarantined {
        assert!(
            q.starts_with(tmp.path().join(QUARANTINE_DIR)),
            "{}",
            q.display()
        );
    }
    let left: Vec<String> = all_files(&tmp.path().join(REQUESTS_DIR))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(left.iter().all(|n| !n.starts_with(".tmp-")), "{left:?}");
    for f in parquet_files(&tmp.path().join(REQUESTS_DIR)) {
        files::read_parquet(&f).unwrap();
    }
    assert_eq!(ids(&read_all(tmp.path())), ids(&[complete, other].concat()));
    if let Some((files, live)) = pyarrow_count(&tmp.path().join(REQUESTS_DIR)) {
        assert_eq!((files, live), (2, 6));
    }
}

#[test]
fn readers_skip_temporaries_hidden_and_foreign_files() {
    let tmp = tempfile::tempdir().unwrap();
    let part = tmp.path().join("requests/date=2024-03-01");
    write_partition_file(tmp.path(), day(1, 0).date_naive(), &[row(1, day(1, 0))]).unwrap();
    std::fs::write(part.join(".tmp-x.parquet"), b"garbage").unwrap();
    std::fs::write(part.join("README.md"), b"hi").unwrap();
    std::fs::create_dir_all(tmp.path().join(QUARANTINE_DIR)).unwrap();
    std::fs::write(tmp.path().join("quarantine/bad.parquet"), b"garbage").unwrap();
    assert_eq!(read_all(tmp.path()).len(), 1);
}

#[test]
fn several_replica_folders_are_read_together_and_filters_apply() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    write_partition_file(
        a.path(),
        day(1, 0).date_naive(),
        &[row(1, day(1, 0)), row(2, day(1, 5))],
    )
    .unwrap();
    write_partition_file(
        b.path(),
        day(2, 0).date_naive(),
        &[row(3, day(2, 0)), row(4, day(2, 7))],
    )
    .unwrap();
    let all = read_requests(&[a.path(), b.path(), a.path()], &RequestFilter::default()).unwrap();
    assert_eq!(
        ids(&all),
        ["req-000001", "req-000002", "req-000003", "req-000004"]
    );
    let f = RequestFilter {
        since: Some(day(1, 3)),
        until: Some(day(2, 7)),
        prompt_id: None,
    };
    assert_eq!(
        ids(&read_requests(&[a.path(), b.path()], &f).unwrap()),
        ["req-000002", "req-000003"]
    );
    let f = RequestFilter {
        prompt_id: Some("p1".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(&read_requests(&[a.path(), b.path()], &f).unwrap()),
        ["req-000001"]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Reading by request id (id column first, then only the matching rows)
    /// gives exactly the full rows a whole read gives for those ids, across
    /// replicas, files and dates; ids that are not logged are absent.
    #[test]
    fn rows_read_by_id_are_the_full_rows_of_those_ids(
        wanted in proptest::collection::btree_set(0usize..60, 0..12),
        split in 1usize..59,
    ) {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let rows: Vec<RequestLogRow> = (0..50)
            .map(|i| row(i, day(1 + (i % 3) as u32, i as i64)))
            .collect();
        for (dir, part) in [(a.path(), &rows[..split.min(50)]), (b.path(), &rows[split.min(50)..])] {
            for d in 1..=3 {
                let of_day: Vec<RequestLogRow> = part
                    .iter()
                    .filter(|r| r.ts.date_naive() == day(d, 0).date_naive())
                    .cloned()
                    .collect();
                if !of_day.is_empty() {
                    write_partition_file(dir, day(d, 0).date_naive(), &of_day).unwrap();
                }
            }
        }
        let names: Vec<String> = wanted.iter().map(|i| format!("req-{i:06}")).collect();
        let set: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        let got = read_requests_by_id(&[a.path(), b.path()], &set).unwrap();
        let expected: Vec<RequestLogRow> = read_requests(&[a.path(), b.path()], &RequestFilter::default())
            .unwrap()
            .into_iter()
            .filter(|r| set.contains(r.request_id.as_str()))
            .collect();
        prop_assert_eq!(got.len(), wanted.iter().filter(|&&i| i < 50).count());
        prop_assert_eq!(got, expected);
    }
}

// ------------------------------------------------------------ compaction

#[test]
fn compaction_leaves_one_file_per_partition_with_the_same_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for f in 0..12 {
        let d = 1 + (f % 3) as u32;
        let rows: Vec<_> = (0..5)
            .map(|i| row(f * 10 + i, day(d, (f * 10 + i) as i64)))
            .collect();
        write_partition_file(tmp.path(), day(d, 0).date_naive(), &rows).unwrap();
        all.extend(rows);
    }
    let before = read_all(tmp.path());
    let report = compact(tmp.path()).unwrap();
    assert_eq!(
        (
            report.partitions_merged,
            report.files_removed,
            report.rows_merged
        ),
        (3, 12, 60)
    );
    assert_eq!(read_all(tmp.path()), before);
    for (_, p) in files::partition_dirs(&tmp.path().join(REQUESTS_DIR)).unwrap() {
        let names: Vec<_> = parquet_files(&p);
        assert_eq!(names.len(), 1, "{names:?}");
    }
    let again = compact(tmp.path()).unwrap();
    assert_eq!((again.partitions_merged, again.files_removed), (0, 0));
    if let Some((files, live)) = pyarrow_count(tmp.path()) {
        assert_eq!((files, live), (3, 60));
    }
}

fn crash_point() -> impl Strategy<Value = Option<CrashPoint>> {
    prop_oneof![
        Just(None),
        any::<bool>().prop_map(|complete| Some(CrashPoint::DuringMergedWrite { complete })),
        (0usize..10).prop_map(|n| Some(CrashPoint::AfterRemoving(n))),
    ]
}

/// Interrupted compaction, then a restart (recovery), optionally new files,
/// then a second interrupted compaction, then a full one.
fn run_interrupted(
    files_spec: &[(u32, usize)],
    crash1: Option<CrashPoint>,
    extra: &[(u32, usize)],
    crash2: Option<CrashPoint>,
) -> std::result::Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut next = 0;
    let mut add = |spec: &[(u32, usize)]| {
        for &(d, n) in spec {
            let rows: Vec<_> = (0..n)
                .map(|i| row(next + i, day(d, (next + i) as i64)))
                .collect();
            next += n;
            write_partition_file(dir, day(d, 0).date_naive(), &rows).unwrap();
        }
    };
    add(files_spec);
    let expected = ids(&read_all(dir));
    let check = |stage: &str| -> std::result::Result<(), TestCaseError> {
        prop_assert_eq!(&ids(&read_all(dir)), &expected, "{}", stage);
        Ok(())
    };
    let parts = |dir: &Path| files::partition_dirs(&dir.join(REQUESTS_DIR)).unwrap();
    for (_, p) in parts(dir) {
        compact_partition(&p, Kind::Requests, crash1).unwrap();
    }
    check("after the first interrupted compaction")?;
    recover::recover_locked(dir).unwrap();
    check("after recovery")?;
    add(extra);
    let expected = ids(&read_all(dir));
    let total = expected.len();
    for (_, p) in parts(dir) {
        compact_partition(&p, Kind::Requests, crash2).unwrap();
    }
    recover::recover_locked(dir).unwrap();
    let got = ids(&read_all(dir));
    prop_assert_eq!(&got, &expected, "after the second interrupted compaction");
    compact(dir).unwrap();
    let got = ids(&read_all(dir));
    prop_assert_eq!(got.len(), total);
    prop_assert_eq!(&got, &expected, "after a full compaction");
    for (_, p) in parts(dir) {
        prop_assert_eq!(parquet_files(&p).len(), 1);
    }
    let no_temporaries = all_files(&dir.join(REQUESTS_DIR)).iter().all(|p| {
        !p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".tmp-")
    });
    prop_assert!(no_temporaries, "a temporary was left under requests/");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Compaction never loses or duplicates a row, whatever step a crash
    /// interrupts, with new files arriving between runs.
    #[test]
    fn compaction_never_loses_or_duplicates_rows(
        files_spec in prop::collection::vec((1u32..=3, 1usize..5), 1..8),
        crash1 in crash_point(),
        extra in prop::collection::vec((1u32..=3, 1usize..4), 0..3),
        crash2 in crash_point(),
    ) {
        run_interrupted(&files_spec, crash1, &extra, crash2)?;
    }
}

// -------------------------------------------------------------- feedback

fn fb(request: &str, score: f64, ts: DateTime<Utc>) -> FeedbackRecord {
    let mut f = FeedbackRecord::new(request, score);
    f.ts = ts;
    f
}

#[test]
fn validation_errors_name_the_field() {
    let ok = FeedbackRecord::new("req-1", 0.5);
    assert!(ok.validate().is_ok());
    let field = |f: FeedbackRecord| f.validate().unwrap_err().field;
    assert_eq!(field(FeedbackRecord::new("req-1", 1.5)), "score");
    assert_eq!(field(FeedbackRecord::new("req-1", -0.1)), "score");
    assert_eq!(field(FeedbackRecord::new("req-1", f64::NAN)), "score");
    assert_eq!(field(FeedbackRecord::new("  ", 1.0)), "request_id");
    let mut f = FeedbackRecord::new("r", 1.0);
    f.label = Some("bad\nlabel".into());
    assert_eq!(field(f), "label");
    let mut f = FeedbackRecord::new("r", 1.0);
    f.comment = Some("x".repeat(10_000));
    assert_eq!(field(f), "comment");
    let mut f = FeedbackRecord::new("r", 1.0);
    f.correction = Some("x".repeat(70_000));
    assert_eq!(field(f), "correction");
    let mut f = FeedbackRecord::new("r", 1.0);
    f.user_hash = Some(String::new());
    assert_eq!(field(f), "user_hash");
    let msg = FeedbackRecord::new("r", 2.0)
        .validate()
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("score: "), "{msg}");

    let tmp = tempfile::tempdir().unwrap();
    let (j, _) = FeedbackJournal::open(tmp.path()).unwrap();
    let err = j.append(&FeedbackRecord::new("r", 9.0)).unwrap_err();
    assert!(
        matches!(
            err,
            LogStoreError::Invalid(FieldError { field: "score", .. })
        ),
        "{err}"
    );
    assert!(read_feedback(&[tmp.path()]).unwrap().is_empty());
}

#[test]
fn appended_feedback_is_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (j, report) = FeedbackJournal::open(tmp.path()).unwrap();
    assert!(!report.torn_tail_repaired);
    let mut a = fb("req-1", 1.0, day(1, 0));
    a.label = Some("helpful".into());
    a.correction = Some("better answer".into());
    a.comment = Some("thanks".into());
    a.user_hash = Some("u-abc".into());
    let b = fb("req-2", 0.0, day(1, 1));
    j.append(&a).unwrap();
    j.append(&b).unwrap();
    assert_eq!(read_feedback(&[tmp.path()]).unwrap(), vec![a, b]);
    assert!(matches!(
        FeedbackJournal::open(tmp.path()),
        Err(LogStoreError::Locked { .. })
    ));
}

#[test]
fn a_torn_last_line_is_skipped_and_the_next_append_starts_a_fresh_line() {
    let tmp = tempfile::tempdir().unwrap();
    let journal_path;
    let first = fb("req-1", 1.0, day(1, 0));
    {
        let (j, _) = FeedbackJournal::open(tmp.path()).unwrap();
        j.append(&first).unwrap();
        journal_path = j.journal_path();
    }
    // A crash in the middle of the second append.
    let mut torn = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal_path)
        .unwrap();
    std::io::Write::write_all(
        &mut torn,
        br#"{"feedback_id":"0190","request_id":"req-2","sco"#,
    )
    .unwrap();
    drop(torn);
    assert_eq!(read_feedback(&[tmp.path()]).unwrap(), vec![first.clone()]);
    let (j, report) = FeedbackJournal::open(tmp.path()).unwrap();
    assert!(report.torn_tail_repaired);
    let third = fb("req-3", 0.5, day(1, 2));
    j.append(&third).unwrap();
    assert_eq!(
        read_feedback(&[tmp.path()]).unwrap(),
        vec![first.clone(), third.clone()]
    );
    let r = j.compact().unwrap();
    assert_eq!((r.records, r.skipped_lines), (2, 1));
    assert_eq!(read_feedback(&[tmp.path()]).unwrap(), vec![first, third]);
}

#[test]
fn feedback_compaction_is_idempotent_and_crash_safe() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (j, _) = FeedbackJournal::open(dir).unwrap();
    let recs: Vec<_> = (0..6)
        .map(|i| fb(&format!("req-{i}"), 0.5, day(1 + (i % 2) as u32, i)))
        .collect();
    for r in &recs {
        j.append(r).unwrap();
    }
    let mut expected = recs.clone();
    expected.sort_by_key(|a| a.ts);
    let journal_text = std::fs::read(j.journal_path()).unwrap();

    let r = j.compact().unwrap();
    assert!(r.rotated_live);
    assert_eq!(
        (r.journals_processed, r.records, r.files_written),
        (1, 6, 2)
    );
    assert_eq!(std::fs::metadata(j.journal_path()).unwrap().len(), 0);
    assert_eq!(read_feedback(&[dir]).unwrap(), expected);

    // Again: nothing new, nothing duplicated.
    let r = j.compact().unwrap();
    assert_eq!((r.rotated_live, r.journals_processed), (false, 0));
    assert_eq!(read_feedback(&[dir]).unwrap(), expected);

    // A crash after the Parquet files were written but before the rotated
    // journal was deleted: the rotated journal is back.
    let fdir = dir.join(FEEDBACK_DIR);
    let stem = parquet_files(&fdir)[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("part-fb-")
        .to_string();
    std::fs::write(fdir.join(format!("{stem}.jsonl")), &journal_text).unwrap();
    assert_eq!(
        read_feedback(&[dir]).unwrap(),
        expected,
        "readers dedupe by feedback_id"
    );
    drop(j);
    let (j, report) = FeedbackJournal::open(dir).unwrap();
    let left = report.leftovers.unwrap();
    assert_eq!((left.journals_processed, left.files_written), (1, 2));
    assert_eq!(
        parquet_files(&fdir).len(),
        2,
        "the same files were rewritten"
    );
    assert_eq!(read_feedback(&[dir]).unwrap(), expected);

    // A crash right after rotation (nothing converted yet) loses nothing.
    let more = fb("req-9", 1.0, day(1, 99));
    j.append(&more).unwrap();
    drop(j);
    std::fs::rename(
        fdir.join("journal.jsonl"),
        fdir.join("journal-20990101T000000000000Z-x.jsonl"),
    )
    .unwrap();
    let mut with_more = expected.clone();
    with_more.push(more);
    with_more.sort_by_key(|a| a.ts);
    assert_eq!(read_feedback(&[dir]).unwrap(), with_more);
    let r = compact(dir).unwrap().feedback;
    assert_eq!(r.journals_processed, 1);
    assert_eq!(read_feedback(&[dir]).unwrap(), with_more);

    // Partition compaction merges the feedback files too.
    let mut extra = Vec::new();
    for i in 0..3 {
        let (j, _) = FeedbackJournal::open(dir).unwrap();
        let f = fb(&format!("x-{i}"), 0.25, day(1, 1000 + i));
        j.append(&f).unwrap();
        j.compact().unwrap();
        extra.push(f);
    }
    let before = read_feedback(&[dir]).unwrap();
    assert_eq!(before.len(), with_more.len() + 3);
    compact(dir).unwrap();
    assert_eq!(read_feedback(&[dir]).unwrap(), before);
    for (_, p) in files::partition_dirs(&fdir).unwrap() {
        assert_eq!(parquet_files(&p).len(), 1);
    }
    if let Some((files, live)) = pyarrow_count(&fdir) {
        assert_eq!((files, live as usize), (2, before.len()));
    }
}

#[test]
fn feedback_before_its_request_row_is_kept_and_joined_later() {
    let tmp = tempfile::tempdir().unwrap();
    let (j, _) = FeedbackJournal::open(tmp.path()).unwrap();
    let early = fb("req-000001", 0.0, day(1, 10));
    let revised = fb("req-000001", 1.0, day(1, 20));
    j.append(&early).unwrap();
    let feedback = read_feedback(&[tmp.path()]).unwrap();
    let join = join_feedback(&[], &feedback);
    assert_eq!(join.orphans.len(), 1, "no request row yet");
    j.append(&revised).unwrap();
    write_partition_file(
        tmp.path(),
        day(1, 0).date_naive(),
        &[row(1, day(1, 0)), row(2, day(1, 1))],
    )
    .unwrap();
    let requests = read_all(tmp.path());
    let feedback = read_feedback(&[tmp.path()]).unwrap();
    let join = join_feedback(&requests, &feedback);
    assert!(join.orphans.is_empty());
    assert_eq!(join.requests[0].feedback, vec![&early, &revised]);
    assert_eq!(join.requests[0].score(), Some(1.0));
    assert_eq!(join.requests[1].score(), None);
}
