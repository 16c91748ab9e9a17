//! Speed of the review loop's two bulk steps, in one process:
//!
//! 1. `review sample` (low_feedback, n 50) over N logged calls of one
//!    prompt (default 1,000,000) written by `RequestLogger`, 1% of them with
//!    a low score in the feedback journal. Cached under
//!    target/review-bench/ between runs; only the sampling is timed.
//! 2. `dataset grow` of M reviewed calls (default 10,000): a queue journal
//!    of M decided items (read back with `ReviewQueue::list`, timed) and
//!    `grow` onto a fresh repository with the scaffold's `capitals` dataset
//!    (timed: inverse mapping, keys, duplicates, Parquet v2, the commit).
//!
//! Run: `cargo bench --bench review_speed -- [N] [M]`. Figures go to
//! benches/README.md.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use chrono::{Duration, Utc};
use promptgate::dataset::grow::{GrowOptions, ReviewedCall};
use promptgate::logstore::{FeedbackRecord, RequestLogRow, RequestLogger};
use promptgate::review::{ReviewQueue, SampleOptions, Strategy};
use promptgate::spec::config::LoggingConfig;
use serde_json::json;

fn write_logs(root: &Path, n: usize) {
    // The marker holds the number of calls: another N writes them again.
    let done = root.join("done");
    if std::fs::read_to_string(&done).is_ok_and(|d| d == n.to_string()) {
        return;
    }
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Utc::now() - Duration::hours(2);
    let t = Instant::now();
    let mut low = Vec::new();
    rt.block_on(async {
        let (logger, _) = RequestLogger::start(root, &LoggingConfig::default()).unwrap();
        for i in 0..n {
            let mut r = RequestLogRow::new(format!("req-{i:08}"), start + Duration::milliseconds(i as i64 * 5));
            r.prompt_id = Some("capital".into());
            r.prompt_version = Some("0123456789abcdef0123456789abcdef01234567".into());
            r.commit = "fedcba9876543210fedcba9876543210fedcba98".into();
            r.model = "small".into();
            r.upstream_model = "llama3.2:1b".into();
            r.variables = format!("{{\"country\":\"Country {}\"}}", i % 5000);
            r.messages = format!(
                "[{{\"role\":\"system\",\"content\":\"You are a concise geography assistant.\"}},{{\"role\":\"user\",\"content\":\"What is the capital of Country {}?\"}}]",
                i % 5000
            );
            r.output = format!("The capital is City {}.", i % 4999);
            r.latency_ms = 20.0 + (i % 50) as f64;
            if i % 100 == 7 {
                low.push(r.request_id.clone());
            }
            assert!(logger.log(r).await);
        }
        logger.shutdown().await.unwrap();
    });
    let fdir = root.join("feedback");
    std::fs::create_dir_all(&fdir).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(fdir.join("journal.jsonl")).unwrap());
    for (k, id) in low.iter().enumerate() {
        let rec = FeedbackRecord::new(id.clone(), (k % 3) as f64 * 0.2);
        writeln!(f, "{}", serde_json::to_string(&rec).unwrap()).unwrap();
    }
    f.flush().unwrap();
    std::fs::write(&done, n.to_string()).unwrap();
    println!(
        "wrote {n} calls and {} feedback records in {:.1} s",
        low.len(),
        t.elapsed().as_secs_f64()
    );
}

fn bench_sample(n: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/review-bench/logs");
    write_logs(&root, n);
    let queue_dir = tempfile::tempdir().unwrap();
    let queue = ReviewQueue::open(queue_dir.path()).unwrap();
    let opts = SampleOptions {
        suite: "capitals".into(),
        prompt_id: "capital".into(),
        logs: vec![root.clone()],
        strategy: Strategy::LowFeedback,
        n: 50,
        window: None,
        max_score: 0.5,
        now: Utc::now(),
    };
    let t = Instant::now();
    let out = promptgate::review::sample(&queue, &opts).unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(out.enqueued.len(), 50);
    println!(
        "review sample: {} calls in {} file(s), {} low-feedback candidates, 50 queued: {secs:.3} s",
        out.calls_scanned, out.files, out.candidates
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn bench_grow(m: usize) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("template-repo"),
        &root,
    );
    promptgate::dataset::snapshot(&root, "capitals").unwrap();
    let git = promptgate::repo::init_repo(&root).unwrap();
    let sig = git2::Signature::now("bench", "bench@localhost").unwrap();
    git.commit_all("scaffold", &sig).unwrap();

    // A queue journal of m decided items, in the documented line format.
    let qdir = dir.path().join("review");
    std::fs::create_dir_all(&qdir).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(qdir.join("journal.jsonl")).unwrap());
    for i in 0..m {
        let mut row = RequestLogRow::new(format!("req-{i:08}"), Utc::now());
        row.prompt_id = Some("capital".into());
        row.prompt_version = Some("0123456789abcdef0123456789abcdef01234567".into());
        row.variables = format!("{{\"country\":\"Country {i}\"}}");
        row.output = format!("City {i}");
        let item = promptgate::review::ReviewItem::from_row(
            &row,
            &[],
            Some("capitals"),
            "low_feedback".into(),
        );
        writeln!(f, "{}", json!({"event": "enqueue", "item": item})).unwrap();
        let mut d = json!({"event": "decide", "request_id": row.request_id, "reviewer": "ann", "ts": Utc::now()});
        if i % 2 == 0 {
            d["kind"] = json!("accept");
        } else {
            d["kind"] = json!("correct");
            d["expected"] = json!(format!("Capital {i}"));
        }
        writeln!(f, "{d}").unwrap();
    }
    f.flush().unwrap();
    drop(f);

    let t = Instant::now();
    let items = ReviewQueue::open(&qdir).unwrap().list().unwrap();
    let read = t.elapsed().as_secs_f64();
    let calls: Vec<ReviewedCall> = items
        .into_iter()
        .map(|v| {
            let d = v.decision.unwrap();
            let (expected, columns) = match d.verdict {
                promptgate::review::Verdict::Correct { expected, columns } => (expected, columns),
                _ => (None, Default::default()),
            };
            ReviewedCall {
                request_id: v.item.request_id,
                suite: v.item.suite,
                prompt_id: v.item.prompt_id,
                prompt_version: v.item.prompt_version,
                variables: v.item.variables.as_object().cloned().unwrap_or_default(),
                output: v.item.output,
                reviewer: d.reviewer,
                decided_at: d.ts,
                expected,
                columns,
                origin: "bench".into(),
            }
        })
        .collect();
    let t = Instant::now();
    let report = promptgate::dataset::grow::grow(
        &git,
        &calls,
        &GrowOptions {
            name: "capitals".into(),
            base: "HEAD".into(),
            branch: None,
            skip_conflicts: false,
        },
    )
    .unwrap();
    let grow = t.elapsed().as_secs_f64();
    assert_eq!(report.added.len(), m);
    println!(
        "dataset grow: {m} reviewed calls -> v{}: queue read {read:.3} s + grow {grow:.3} s = {:.3} s",
        report.to_version.unwrap(),
        read + grow
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(1_000_000);
    let m = args.get(1).copied().unwrap_or(10_000);
    bench_grow(m);
    bench_sample(n);
}
