//! Dashboard speed over a large request log, through the real binary.
//!
//! 1. Writes N calls (default 1,000,000) spread over the last 7 days with
//!    `RequestLogger` (the drift benches' generator: one prompt, numbers and
//!    texts of realistic sizes, feedback on some calls) and compacts them
//!    (one merged file per day); cached under target/ui-bench/ while the
//!    calls still fall in the 7-day window.
//! 2. `promptgate ui --logs DIR`: the 7-day overview page (HTML with its
//!    eleven charts), cold (first request of a fresh process; three
//!    processes) and warm (`W` requests after that): p50, p95, max. The
//!    dashboard keeps no finished pages: each warm request recomputes the
//!    overview from its cached columns.
//! 3. `promptgate serve` in front of `mock-llm` (a MOCK) with that log folder
//!    as its `logging.dir`: one client's back-to-back requests, alternating
//!    between the proxy and the mock called directly, in P pairs of 4 s
//!    blocks: one block with no dashboard, one with a dashboard loading the
//!    7-day overview every second (which goes first alternates). A block's
//!    added latency is the proxy's latency minus the mock's own; the
//!    dashboard's effect is the busy-minus-quiet difference per pair,
//!    relative to the quiet figure, with a 95% t-interval over the pairs.
//!
//! Run: `cargo bench --bench ui_overview -- [N] [W] [P]` (defaults
//! 1,000,000, 50, 30); `UI_BENCH_BIN=path` measures another build of
//! promptgate. Figures go to benches/README.md.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[path = "drift_support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use promptgate::logstore::{self, RequestLogger};
use promptgate::spec::config::LoggingConfig;
use support::{Generator, Shape};

/// The binary measured: this build's, or another one (an older build, to
/// compare in one sitting) named by `UI_BENCH_BIN`.
fn bin() -> String {
    std::env::var("UI_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_promptgate").to_string())
}

fn write_logs(dir: &Path, n: usize) {
    let stamp = dir.join(".complete-ui-v2");
    let fresh = std::fs::read_to_string(&stamp)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .is_some_and(|t| Utc::now().timestamp() - t < 6 * 3600);
    if fresh {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("feedback")).unwrap();
    let started = Instant::now();
    let now = Utc::now();
    let span = chrono::Duration::days(7) - chrono::Duration::minutes(10);
    let step = chrono::Duration::microseconds(span.num_microseconds().unwrap() / n as i64);
    let mut journal =
        std::io::BufWriter::new(std::fs::File::create(dir.join("feedback/journal.jsonl")).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg = LoggingConfig {
            flush_rows: 50_000,
            flush_interval_ms: 60_000,
            ..LoggingConfig::default()
        };
        let (logger, _) = RequestLogger::start(dir, &cfg).unwrap();
        let mut g = Generator::new(7, Shape::default(), "ui", now - span).with_step(step);
        for _ in 0..n {
            let c = g.call();
            if let Some(f) = &c.feedback {
                serde_json::to_writer(&mut journal, f).unwrap();
                journal.write_all(b"\n").unwrap();
            }
            assert!(logger.log(c.row).await);
        }
        logger.shutdown().await.unwrap();
    });
    journal.flush().unwrap();
    drop(journal);
    let report = logstore::compact(dir).unwrap();
    println!(
        "wrote {n} calls over 7 days to {} in {:.0} s (compacted {} rows)",
        dir.display(),
        started.elapsed().as_secs_f64(),
        report.rows_merged
    );
    // Today's calls stay in `part-*` files (compaction leaves the current
    // day alone): name them, so that only the proxy's are forgotten later.
    let mut generated = Vec::new();
    walk_parts(&dir.join("requests"), &mut |p| {
        generated.push(p.to_string_lossy().into_owned())
    });
    std::fs::write(dir.join(GENERATED_PARTS), generated.join("\n")).unwrap();
    std::fs::write(stamp, Utc::now().timestamp().to_string()).unwrap();
}

/// Lists the `part-*` request files the generator left (one path a line).
const GENERATED_PARTS: &str = ".generated-parts";

fn walk_parts(d: &Path, found: &mut dyn FnMut(&Path)) {
    for e in std::fs::read_dir(d).unwrap().map(Result::unwrap) {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            walk_parts(&p, found);
        } else if name.starts_with("part-") && name.ends_with(".parquet") {
            found(&p);
        }
    }
}

/// Deletes the request files an earlier run's proxy wrote beside the
/// generated calls, so that every run starts from the same logs.
fn forget_proxy_files(dir: &Path) {
    let listed = std::fs::read_to_string(dir.join(GENERATED_PARTS)).unwrap();
    let generated: std::collections::HashSet<&str> = listed.lines().collect();
    let mut removed = 0;
    walk_parts(&dir.join("requests"), &mut |p| {
        if !generated.contains(p.to_string_lossy().as_ref()) {
            std::fs::remove_file(p).unwrap();
            removed += 1;
        }
    });
    if removed > 0 {
        println!("removed {removed} request files an earlier run's proxy wrote");
    }
}

/// A child process killed when dropped, and the URL its `listening on`
/// line named.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(cmd: &mut Command) -> Server {
        // serve and ui print their `listening on` line on stderr, mock-llm
        // its banner on stdout: watch both.
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let out = BufReader::new(child.stdout.take().unwrap());
        let err = BufReader::new(child.stderr.take().unwrap());
        for lines in [
            Box::new(out.lines()) as Box<dyn Iterator<Item = std::io::Result<String>> + Send>,
            Box::new(err.lines()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let url = loop {
            let line = rx.recv().expect("ended before listening");
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        let url = if url.starts_with("http") {
            url
        } else {
            format!("http://{url}")
        };
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[rank]
}

async fn timed_get(client: &reqwest::Client, url: &str) -> f64 {
    let t = Instant::now();
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    let body = r.bytes().await.unwrap();
    assert!(!body.is_empty());
    t.elapsed().as_secs_f64() * 1000.0
}

fn overview_speed(dir: &Path, warm_n: usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for round in 0..3 {
        let ui = Server::start(Command::new(bin()).args([
            "ui",
            "--listen",
            "127.0.0.1:0",
            "--logs",
            dir.to_str().unwrap(),
        ]));
        let url = format!("{}/ui?window=7d", ui.url);
        cold.push(rt.block_on(timed_get(&client, &url)));
        if round == 0 {
            for _ in 0..warm_n {
                warm.push(rt.block_on(timed_get(&client, &url)));
            }
        }
    }
    println!(
        "overview 7d, cold (first request of a fresh `promptgate ui`, 3 processes): {}",
        cold.iter()
            .map(|c| format!("{c:.0} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "overview 7d, warm ({} requests): p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        warm.len(),
        pct(&mut warm, 0.5),
        pct(&mut warm, 0.95),
        pct(&mut warm, 1.0)
    );
}

fn scaffold(base: &Path, mock_url: &str, log_dir: &Path) -> PathBuf {
    let repo = base.join("repo");
    let _ = std::fs::remove_dir_all(&repo);
    let ok = Command::new(bin())
        .args(["init"])
        .arg(&repo)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::write(
        repo.join("promptgate.yaml"),
        format!(
            "version: 1\nproviders:\n  mock:\n    kind: openai\n    base_url: {mock_url}\nmodels:\n  small:\n    provider: mock\n    name: mock-model\n    params: {{temperature: 0}}\nlogging:\n  dir: {}\n  flush_interval_ms: 1000\n  on_full: block\nserver:\n  listen: 127.0.0.1:0\n",
            log_dir.display()
        ),
    )
    .unwrap();
    for args in [
        &["add", "-A"][..],
        &[
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
            "commit",
            "-qm",
            "bench: mock provider",
        ][..],
    ] {
        assert!(
            Command::new("git")
                .args(args)
                .current_dir(&repo)
                .status()
                .unwrap()
                .success()
        );
    }
    repo
}

/// One client's back-to-back requests for `d`, alternating between the
/// proxy and the mock called directly, so that both meet the same moment
/// of the machine; (proxy, direct) latencies in ms.
async fn hammer_pairs(
    client: &reqwest::Client,
    proxy: (&str, &serde_json::Value),
    direct: (&str, &serde_json::Value),
    d: Duration,
) -> (Vec<f64>, Vec<f64>) {
    let (mut p, mut q) = (Vec::new(), Vec::new());
    let end = Instant::now() + d;
    while Instant::now() < end {
        for ((url, body), out) in [(proxy, &mut p), (direct, &mut q)] {
            let t = Instant::now();
            let r = client.post(url).json(body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let _ = r.bytes().await.unwrap();
            out.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    (p, q)
}

/// The proxy's added latency in one block: mean, median and p99 of the
/// proxy's latencies minus those of the direct calls made between them.
#[derive(Debug, Clone, Copy)]
struct Added {
    mean: f64,
    p50: f64,
    p99: f64,
}

impl Added {
    fn of(mut proxy: Vec<f64>, mut direct: Vec<f64>) -> Added {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        Added {
            mean: mean(&proxy) - mean(&direct),
            p50: pct(&mut proxy, 0.5) - pct(&mut direct, 0.5),
            p99: pct(&mut proxy, 0.99) - pct(&mut direct, 0.99),
        }
    }
}

/// The change of a figure from the quiet to the busy block of each pair,
/// relative to its quiet mean: estimate and 95% t-interval over the pairs
/// (the quiet mean, averaged over every pair, is taken as known).
fn relative_change(quiet: &[f64], busy: &[f64]) -> (f64, f64, f64) {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let n = quiet.len() as f64;
    let base = quiet.iter().sum::<f64>() / n;
    let d: Vec<f64> = busy.iter().zip(quiet).map(|(b, q)| b - q).collect();
    let mean = d.iter().sum::<f64>() / n;
    let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let t = StudentsT::new(0.0, 1.0, n - 1.0)
        .unwrap()
        .inverse_cdf(0.975);
    let half = t * sd / n.sqrt();
    (mean / base, (mean - half) / base, (mean + half) / base)
}

fn proxy_under_refresh(base: &Path, log_dir: &Path, pairs: usize, block: Duration) {
    let mock = Server::start(Command::new(bin()).args(["mock-llm", "--listen", "127.0.0.1:0"]));
    let repo = scaffold(base, &mock.url, log_dir);
    let serve = Server::start(
        Command::new(bin())
            .args([
                "serve",
                "--no-analyzer",
                "--listen",
                "127.0.0.1:0",
                "--repo",
            ])
            .arg(&repo),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let proxy_url = format!("{}/v1/chat/completions", serve.url);
    let direct_url = format!("{}/v1/chat/completions", mock.url);
    let proxy_body =
        serde_json::json!({"model": "prompt:capital", "variables": {"country": "Chile"}});
    let direct_body = serde_json::json!({
        "model": "mock-model", "temperature": 0, "max_tokens": 32,
        "messages": [
            {"role": "system", "content": "You are a concise geography assistant. Answer with the city name only."},
            {"role": "user", "content": "What is the capital of Chile?"}
        ]
    });
    let proxy = (proxy_url.as_str(), &proxy_body);
    let direct = (direct_url.as_str(), &direct_body);
    let dash_url = format!("{}/ui?window=7d", serve.url);
    // Warm the dashboard's cache and both paths.
    rt.block_on(timed_get(&client, &dash_url));
    rt.block_on(hammer_pairs(&client, proxy, direct, Duration::from_secs(2)));
    let (mut quiet, mut busy) = (Vec::new(), Vec::new());
    let mut refresh_ms = Vec::new();
    let mut calls = 0;
    for pair in 0..pairs {
        // Quiet first in even pairs, busy first in odd ones: a drift of
        // the machine over a pair does not fall on one side only.
        for refreshing in [pair % 2 == 1, pair % 2 == 0] {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let refresher = refreshing.then(|| {
                let (client, url, stop) = (client.clone(), dash_url.clone(), stop.clone());
                rt.spawn(async move {
                    let mut times = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let t = Instant::now();
                        times.push(timed_get(&client, &url).await);
                        tokio::time::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()))
                            .await;
                    }
                    times
                })
            });
            let (p, d) = rt.block_on(hammer_pairs(&client, proxy, direct, block));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            calls += p.len();
            let added = Added::of(p, d);
            if let Some(h) = refresher {
                refresh_ms.extend(rt.block_on(h).unwrap());
                busy.push(added);
            } else {
                quiet.push(added);
            }
        }
    }
    let figure = |v: &[Added], f: fn(&Added) -> f64| v.iter().map(f).collect::<Vec<f64>>();
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "{pairs} pairs of {:.0} s blocks (one quiet, one with the 7-day overview loaded every second), {calls} proxy calls; {} refreshes, p50 {:.1} ms, max {:.1} ms",
        block.as_secs_f64(),
        refresh_ms.len(),
        pct(&mut refresh_ms, 0.5),
        pct(&mut refresh_ms, 1.0),
    );
    for (name, f) in [
        ("mean", (|a: &Added| a.mean) as fn(&Added) -> f64),
        ("p50", |a: &Added| a.p50),
        ("p99", |a: &Added| a.p99),
    ] {
        let (q, b) = (figure(&quiet, f), figure(&busy, f));
        let (est, lo, hi) = relative_change(&q, &b);
        println!(
            "proxy added latency, {name} per block: no dashboard {:.4} ms, refreshing {:.4} ms: {:+.1}% (95% CI {:+.1}% to {:+.1}%)",
            avg(&q),
            avg(&b),
            est * 100.0,
            lo * 100.0,
            hi * 100.0
        );
    }
}

fn main() {
    // reqwest is built without a bundled crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let warm_n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-bench");
    let logs = base.join(format!("logs-{n}"));
    write_logs(&logs, n);
    forget_proxy_files(&logs);
    overview_speed(&logs, warm_n);
    let pairs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(30);
    proxy_under_refresh(&base, &logs, pairs, Duration::from_secs(4));
}
