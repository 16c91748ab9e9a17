use std::sync::Arc;

use chrono::Duration;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;
use crate::canary::analysis::analyze;
use crate::logstore::{
    FeedbackJournal, FeedbackRecord, RequestLogRow, RequestStatus, Variant, read_requests,
    request_schema, rows_to_batch,
};
use crate::spec::rollout::{Analysis, Canary, MetricCheck};

fn t0() -> DateTime<Utc> {
    // 23:55 UTC: the rows straddle midnight, so two date partitions.
    DateTime::from_timestamp(1_800_000_000 - 1_800_000_000 % 86_400 + 86_100, 0).unwrap()
}

/// A request id of one of the shapes the order key encodes differently.
fn request_id(rng: &mut StdRng) -> String {
    match rng.random_range(0..6) {
        // Few short ids: duplicates across files and replicas.
        0 => format!("r{}", rng.random_range(0..40)),
        1 => format!("req-{:09}", rng.random_range(0..1_000_000)),
        2 => format!("a-request-id-longer-than-16-{}", rng.random_range(0..50)),
        3 => uuid::Uuid::from_u128(rng.random())
            .hyphenated()
            .to_string()
            .to_uppercase(),
        _ => uuid::Uuid::from_u128(rng.random()).to_string(),
    }
}

fn random_row(rng: &mut StdRng, ids: &[String]) -> RequestLogRow {
    // Many ties in time: whole seconds plus 0..3 µs over ten minutes.
    let ts = t0()
        + Duration::seconds(rng.random_range(0..600))
        + Duration::microseconds(rng.random_range(0..3));
    let id = if !ids.is_empty() && rng.random_bool(0.1) {
        ids[rng.random_range(0..ids.len())].clone()
    } else {
        request_id(rng)
    };
    let mut r = RequestLogRow::new(id, ts);
    r.prompt_id = [Some("p"), Some("q"), Some("r"), None][rng.random_range(0..4)].map(String::from);
    let canary = r.prompt_id.as_deref() != Some("r") && rng.random_bool(0.3);
    r.variant = if canary {
        Variant::Canary
    } else if rng.random_bool(0.1) {
        Variant::None
    } else {
        Variant::Stable
    };
    r.status = [
        RequestStatus::Ok,
        RequestStatus::Ok,
        RequestStatus::Ok,
        RequestStatus::Error,
        RequestStatus::ClientClosed,
        RequestStatus::Timeout,
    ][rng.random_range(0..6)]
    .clone();
    r.latency_ms = (rng.random_range(50.0..400.0f64) * 10.0).round() / 10.0;
    r.cost = rng.random_range(0.0..0.01);
    r.online_pass = [None, Some(true), Some(false)][rng.random_range(0..3)];
    r
}

/// Writes `rows` as one file per call, in the row's date partition under
/// `root`, in row groups of `group` rows.
fn write_file(root: &Path, name: &str, rows: &[RequestLogRow], group: usize) {
    let batch = rows_to_batch(rows).unwrap();
    write_batch(root, name, rows[0].ts.date_naive(), &batch, group);
}

fn write_batch(
    root: &Path,
    name: &str,
    date: chrono::NaiveDate,
    batch: &arrow_array::RecordBatch,
    group: usize,
) {
    let dir = root
        .join("requests")
        .join(crate::logstore::partition_name(date));
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::fs::File::create(dir.join(name)).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .build();
    let mut w = ArrowWriter::try_new(file, request_schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

fn all_checks() -> Vec<MetricCheck> {
    let c = |metric, max_drop, max_increase, max_increase_pct| MetricCheck {
        metric,
        max_drop,
        max_increase,
        max_increase_pct,
    };
    vec![
        c(Metric::OnlinePassRate, Some(0.03), None, None),
        c(Metric::FeedbackScore, Some(0.05), None, None),
        c(Metric::ErrorRate, None, Some(0.01), None),
        c(Metric::LatencyP95Ms, None, None, Some(20.0)),
        c(Metric::CostPerCall, None, Some(0.001), None),
    ]
}

fn rollout(prompts: Vec<String>, checks: Vec<MetricCheck>) -> Rollout {
    Rollout {
        stable: "refs/heads/main".into(),
        canary: Some(Canary {
            git_ref: "refs/heads/c".into(),
            weight: 30.0,
            prompts,
            sticky: Default::default(),
            sticky_header: None,
            steps: Vec::new(),
        }),
        analysis: Analysis {
            min_requests: 5,
            checks,
            ..Analysis::default()
        },
    }
}

/// Random rows in `files` files over `replicas` log roots (each file's
/// rows shuffled, so out of time order), and feedback in each root's journal.
fn random_lake(
    seed: u64,
    n: usize,
    files: usize,
    replicas: usize,
) -> (tempfile::TempDir, Vec<PathBuf>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let roots: Vec<PathBuf> = (0..replicas)
        .map(|i| tmp.path().join(format!("replica-{i}")))
        .collect();
    let mut ids = Vec::new();
    let mut buckets: Vec<Vec<RequestLogRow>> = vec![Vec::new(); files];
    for _ in 0..n {
        let r = random_row(&mut rng, &ids);
        ids.push(r.request_id.clone());
        let f = rng.random_range(0..files);
        buckets[f].push(r);
    }
    for (i, bucket) in buckets.iter().enumerate() {
        let root = &roots[i % replicas];
        // One file per date: a file lives in one partition.
        let mut by_date: BTreeMap<chrono::NaiveDate, Vec<RequestLogRow>> = BTreeMap::new();
        for r in bucket {
            by_date
                .entry(r.ts.date_naive())
                .or_default()
                .push(r.clone());
        }
        for (d, rows) in by_date {
            write_file(
                root,
                &format!("part-{i:03}-{d}.parquet"),
                &rows,
                rng.random_range(1..20),
            );
        }
    }
    for root in &roots {
        std::fs::create_dir_all(root.join("requests")).unwrap();
        let (journal, _) = FeedbackJournal::open(root).unwrap();
        for _ in 0..rng.random_range(0..n / 2 + 1) {
            let request_id = if !ids.is_empty() && rng.random_bool(0.8) {
                ids[rng.random_range(0..ids.len())].clone()
            } else {
                request_id(&mut rng)
            };
            let mut f = FeedbackRecord::new(request_id, f64::from(rng.random_range(0..=4u8)) / 4.0);
            f.ts = t0() + Duration::seconds(rng.random_range(0..3));
            journal.append(&f).unwrap();
        }
    }
    (tmp, roots)
}

/// The report of the materialising path: whole rows, then [`analyze`].
fn reference(ro: &Rollout, since: DateTime<Utc>, roots: &[PathBuf]) -> (usize, CanaryReport) {
    let filter = RequestFilter {
        since: Some(since),
        ..Default::default()
    };
    let rows = read_requests(roots, &filter).unwrap();
    let feedback = read_feedback(roots).unwrap();
    (rows.len(), analyze(ro, since, &rows, &feedback).unwrap())
}

use super::super::CanaryReport;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The scan gives the report of the materialising path: decision,
    /// counts, estimates, every check's verdict, to the last bit.
    #[test]
    fn the_scan_gives_the_report_of_whole_rows(
        seed in any::<u64>(),
        n in 0usize..400,
        files in 1usize..6,
        replicas in 1usize..4,
        since_s in 0i64..500,
        prompts in prop_oneof![Just(vec![]), Just(vec!["p".to_string()]), Just(vec!["q".to_string(), "z".to_string()])],
        checks in proptest::sample::subsequence(all_checks(), 0..=5),
        pass_rows in 1u64..300,
    ) {
        let (_tmp, roots) = random_lake(seed, n, files, replicas);
        let ro = rollout(prompts, checks);
        let since = t0() + Duration::seconds(since_s);
        let (rows, want) = reference(&ro, since, &roots);
        let evidence = scan(&ro, since, &roots).unwrap();
        prop_assert_eq!(evidence.rows, rows);
        // Any grouping of the prompts into passes: the same report.
        let got = evidence.analyze_in_passes(&ro, pass_rows).unwrap();
        // Debug text: NaN equals NaN there.
        prop_assert_eq!(format!("{got:#?}"), format!("{want:#?}"));
    }

    /// The order key sorts ids as their strings do, across its encodings.
    #[test]
    fn order_ids_sort_like_their_strings(seed in any::<u64>(), extra in "[a-zA-Z0-9\\-\u{0}é]{0,40}") {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut ids: Vec<String> = (0..30).map(|_| request_id(&mut rng)).collect();
        ids.push(extra.clone());
        ids.push(format!("{extra}\u{0}"));
        ids.push(uuid::Uuid::from_u128(rng.random()).simple().to_string());
        let mut long = Vec::new();
        let keys: Vec<OrderId> = ids.iter().map(|s| OrderId::new(s, &mut long)).collect();
        for (a, ka) in ids.iter().zip(&keys) {
            for (b, kb) in ids.iter().zip(&keys) {
                prop_assert_eq!(ka.cmp(kb, &long), a.cmp(b), "{:?} vs {:?}", a, b);
            }
        }
    }
}

#[test]
fn without_a_canary_nothing_is_read() {
    let mut ro = rollout(vec![], all_checks());
    ro.canary = None;
    // A source that does not exist would fail to list.
    let evidence = scan(&ro, t0(), &[PathBuf::from("/nonexistent/promptgate")]).unwrap();
    assert_eq!((evidence.rows, evidence.prompts.len()), (0, 0));
    assert_eq!(
        evidence.analyze(&ro).unwrap().decision,
        crate::canary::Decision::NoCanary
    );
}

#[test]
fn row_groups_before_the_window_are_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let rows: Vec<RequestLogRow> = (0..40)
        .map(|i| {
            let mut r = RequestLogRow::new(format!("r{i:02}"), t0() + Duration::seconds(i));
            r.prompt_id = Some("p".into());
            r.variant = if i % 2 == 0 {
                Variant::Canary
            } else {
                Variant::Stable
            };
            r
        })
        .collect();
    // The first row's variant is damaged: only a read of the first row
    // group (rows 0..10) sees it.
    let batch = rows_to_batch(&rows).unwrap();
    let mut columns = batch.columns().to_vec();
    let v = batch.schema().index_of("variant").unwrap();
    let mut variants: Vec<&str> = rows.iter().map(|r| r.variant.as_str()).collect();
    variants[0] = "bogus";
    columns[v] = Arc::new(arrow_array::StringArray::from(variants));
    let batch = arrow_array::RecordBatch::try_new(batch.schema(), columns).unwrap();
    write_batch(tmp.path(), "part-a.parquet", t0().date_naive(), &batch, 10);

    let ro = rollout(vec![], vec![all_checks()[2]]);
    let roots = vec![tmp.path().to_path_buf()];
    let evidence = scan(&ro, t0() + Duration::seconds(10), &roots).unwrap();
    assert_eq!(evidence.rows, 30);
    let group = evidence.read_group(&["p"]).unwrap();
    let p = &group["p"];
    assert_eq!(p.len(), 30);
    assert!(p.windows(2).all(|w| w[0].ts < w[1].ts));

    let err = scan(&ro, t0() + Duration::seconds(9), &roots)
        .unwrap_err()
        .to_string();
    // (The first pass already reads the damaged group.)
    assert!(
        err.contains("part-a.parquet") && err.contains("unknown variant `bogus`"),
        "{err}"
    );
}
