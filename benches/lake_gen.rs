//! Writes a synthetic log lake for `benches/lake_query.sh`: ROWS request
//! rows (default 10,000,000) through the real request logger into DIR (a
//! log root: `requests/date=.../part-*.parquet`), spread over the 7 days
//! before now, 4 prompts, stable/canary at 90/10, 2% errors, lognormal-ish
//! latency, token-priced cost. Deterministic (seeded).
//!
//! `cargo bench --bench lake_gen -- DIR [ROWS]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use chrono::{Duration, Utc};
use promptgate::logstore::{RequestLogRow, RequestLogger, RequestStatus, Variant};
use promptgate::spec::config::LoggingConfig;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const PROMPTS: [&str; 4] = ["capital", "summarize", "classify", "translate"];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let dir = std::path::PathBuf::from(args.first().expect("usage: lake_gen DIR [ROWS]"));
    let rows: u64 = args.get(1).map_or(10_000_000, |n| n.parse().expect("ROWS"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = std::time::Instant::now();
    rt.block_on(async {
        let cfg = LoggingConfig {
            flush_rows: 250_000,
            flush_interval_ms: 3_600_000,
            ..LoggingConfig::default()
        };
        let (logger, _) = RequestLogger::start(&dir, &cfg).unwrap();
        let mut rng = StdRng::seed_from_u64(18);
        let span_us = Duration::days(7).num_microseconds().unwrap();
        let start = Utc::now() - Duration::days(7);
        for i in 0..rows {
            let ts = start + Duration::microseconds((i as i64) * (span_us / rows as i64));
            let mut r = RequestLogRow::new(format!("req-{i:09}"), ts);
            let canary = rng.random_bool(0.1);
            r.prompt_id = Some(PROMPTS[(i % 4) as usize].to_string());
            r.variant = if canary {
                Variant::Canary
            } else {
                Variant::Stable
            };
            r.commit = if canary {
                "c".repeat(40)
            } else {
                "a".repeat(40)
            };
            r.model = "small".into();
            r.upstream_model = "mock".into();
            let error = rng.random_bool(0.02);
            r.status = if error {
                RequestStatus::Error
            } else {
                RequestStatus::Ok
            };
            r.http_status = if error { 502 } else { 200 };
            let u: f64 = rng.random();
            r.latency_ms = 80.0 * (1.0 + 4.0 * u * u * u) + if canary { 10.0 } else { 0.0 };
            r.input_tokens = 50 + (i % 200);
            r.output_tokens = 20 + (i % 80);
            r.cost = (r.input_tokens as f64 * 0.15 + r.output_tokens as f64 * 0.6) / 1e6;
            r.online_pass = Some(rng.random_bool(if canary { 0.93 } else { 0.95 }));
            assert!(logger.log(r).await);
        }
        logger.shutdown().await.unwrap();
    });
    println!(
        "wrote {rows} rows under {} in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
}
