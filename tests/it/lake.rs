//! The log lake against a real S3-compatible server: moto in server mode
//! (`scripts/setup-lake.sh`), started on 127.0.0.1 by each test, written to
//! by real `promptgate serve` replicas in front of `mock-llm` (a MOCK LLM),
//! and read back by promptgate (`canary analyze`, `logs query`) and by an
//! independent reader (pyarrow's S3FileSystem, `scripts/read_lake.py`).
//!
//! Every test collects the `x-request-id` of each acknowledged call (HTTP
//! 200) and checks that the bucket holds each exactly once.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use promptgate::mock_llm::{MockConfig, MockServer};
use serde_json::{Value, json};

use crate::support::serve::{Proxy, commit_main, commit_on, header, proxy_scaffold};
use crate::support::{Scaffold, bin, python_with, stderr, stdout};

const BUCKET: &str = "lake";
const PREFIX: &str = "fleet";
const KEY_ID: &str = "promptgate-test";
const SECRET: &str = "promptgate-test-secret";
const CANARY_BRANCH: &str = "prompt/capital-v2";
const COUNTRIES: &[&str] = &["France", "Japan", "Peru", "Kenya", "Norway", "Chile"];

/// moto's S3 server on a free port of 127.0.0.1, with one bucket.
struct S3 {
    child: Child,
    endpoint: String,
    python: String,
}

impl S3 {
    /// None (after a SKIP line) when moto is not installed.
    fn start() -> Option<S3> {
        let python = python_with("moto.server")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto");
        let s3 = S3 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            python,
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // moto accepts an unsigned bucket creation.
        let created = std::process::Command::new("curl")
            .args(["-sf", "-X", "PUT", &format!("{}/{BUCKET}", s3.endpoint)])
            .status();
        if !created.is_ok_and(|s| s.success()) {
            s3.python_create_bucket();
        }
        Some(s3)
    }

    fn python_create_bucket(&self) {
        let o = Command::new(&self.python)
            .args([
                "-c",
                &format!(
                    "import boto3; boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='{KEY_ID}', aws_secret_access_key='{SECRET}').create_bucket(Bucket='{BUCKET}')",
                    self.endpoint
                ),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "creating the bucket: {}", stderr(&o));
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    fn url(&self) -> String {
        format!("s3://{BUCKET}/{PREFIX}")
    }

    /// What pyarrow finds in the bucket; `download` also copies it there.
    fn read(&self, download: Option<&Path>) -> Lake {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/read_lake.py");
        let mut cmd = Command::new(&self.python);
        cmd.args([script, &self.endpoint, &format!("{BUCKET}/{PREFIX}")]);
        if let Some(d) = download {
            cmd.arg("--download").arg(d);
        }
        let o = with_credentials(&mut cmd).output().unwrap();
        assert!(
            o.status.success(),
            "read_lake.py: {}{}",
            stdout(&o),
            stderr(&o)
        );
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        let mut ids = BTreeMap::new();
        for id in v["request_ids"].as_array().unwrap() {
            *ids.entry(id.as_str().unwrap().to_string()).or_insert(0) += 1;
        }
        Lake {
            files: v["files"].as_u64().unwrap(),
            rows: v["rows"].as_u64().unwrap(),
            ids,
            replicas: v["replicas"].as_object().unwrap().len(),
        }
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Lake {
    files: u64,
    rows: u64,
    /// Occurrences of each request id.
    ids: BTreeMap<String, u32>,
    /// Distinct replica names among the objects.
    replicas: usize,
}

impl Lake {
    /// Every acknowledged id exactly once, nothing else.
    fn assert_exactly(&self, acked: &[String]) {
        let dup: Vec<_> = self.ids.iter().filter(|(_, n)| **n > 1).collect();
        assert!(dup.is_empty(), "duplicated rows in the bucket: {dup:?}");
        let missing: Vec<_> = acked
            .iter()
            .filter(|id| !self.ids.contains_key(*id))
            .collect();
        assert!(
            missing.is_empty(),
            "{} acknowledged row(s) missing from the bucket, e.g. {:?}",
            missing.len(),
            missing.first()
        );
        assert_eq!(self.rows as usize, acked.len(), "rows in the bucket");
    }
}

fn with_credentials(cmd: &mut Command) -> &mut Command {
    cmd.env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
}

const ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", KEY_ID),
    ("AWS_SECRET_ACCESS_KEY", SECRET),
    ("AWS_REGION", "us-east-1"),
];

/// `promptgate ARGS` in `dir` with the store's credentials.
fn promptgate(dir: &Path, args: &[&str]) -> Output {
    with_credentials(Command::new(bin()).args(args).current_dir(dir))
        .env_remove("PROMPTGATE_LOG")
        .output()
        .unwrap()
}

/// A scaffold served through `mock`, logging to the store, with a canary
/// (capital v2, asking more) live at 50%.
fn lake_scaffold(mock: &MockServer, s3: &S3, max_backlog_mb: u64) -> Scaffold {
    let s = proxy_scaffold("openai", &mock.url(), "");
    s.edit(
        "promptgate.yaml",
        "  flush_interval_ms: 200\n",
        &format!(
            "  flush_interval_ms: 200\n  store: {}\n  store_options:\n    endpoint: {}\n    path_style: true\n    max_backlog_mb: {max_backlog_mb}\n",
            s3.url(),
            s3.endpoint
        ),
    );
    s.commit("log to the lake");
    let base = s.read("prompts/capital.yaml");
    let v2 = base.replace(
        "What is the capital of {{ country }}?",
        "What is the capital of {{ country }}? Tell me about its history, culture and food.",
    );
    commit_on(
        &s.root(),
        CANARY_BRANCH,
        "main",
        &[("prompts/capital.yaml", &v2)],
        "capital v2",
    );
    commit_main(
        &s,
        &[(
            "rollout.yaml",
            &format!(
                "stable: refs/heads/main
canary:
  ref: refs/heads/{CANARY_BRANCH}
  weight: 50
  prompts: [capital]
analysis:
  min_requests: 20
  checks:
    - metric: online_pass_rate
      max_drop: 0.05
  on_regression: rollback
  on_success: hold
"
            ),
        )],
        "canary: capital v2 at 50%",
    );
    s
}

/// A replica: its own log folder, no analyzer (the fleet's `canary
/// analyze` decides).
fn replica(s: &Scaffold, name: &str) -> Proxy {
    let dir = format!(".promptgate/logs-{name}");
    let mut env = ENV.to_vec();
    env.push(("PROMPTGATE_LOG_DIR", &dir));
    Proxy::start_with(&s.root(), &["--no-analyzer"], &env)
}

/// `n` capital calls to `url`, `concurrency` at a time; the request ids of
/// the acknowledged ones (HTTP 200) and the number of others.
async fn load(url: &str, from: usize, n: usize, concurrency: usize) -> (Vec<String>, usize) {
    use futures_util::StreamExt;
    let client = crate::support::http();
    let endpoint = format!("{url}/v1/chat/completions");
    let results: Vec<Option<String>> = futures_util::stream::iter(from..from + n)
        .map(|i| {
            let (client, endpoint) = (client.clone(), endpoint.clone());
            async move {
                let r = client
                    .post(&endpoint)
                    .json(&json!({
                        "model": "prompt:capital",
                        "variables": {"country": COUNTRIES[i % COUNTRIES.len()]},
                        "user": format!("user-{i}"),
                    }))
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .ok()?;
                (r.status() == 200).then(|| header(r.headers(), "x-request-id"))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let failed = results.iter().filter(|r| r.is_none()).count();
    (results.into_iter().flatten().collect(), failed)
}

/// Parquet files still in the replicas' local log folders
/// (`.promptgate/logs*`; the analyzer's store cache is elsewhere).
fn local_parquet(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = std::fs::read_dir(root.join(".promptgate"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("logs"))
        .map(|e| e.path())
        .collect();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

async fn metric(p: &Proxy, name: &str) -> f64 {
    let text = crate::support::serve::metrics(p).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// The canary report of `canary analyze --json --logs LOGS`.
fn analyze(s: &Scaffold, logs: &[&str]) -> Value {
    let mut args = vec!["canary", "analyze", "--json", "--logs"];
    args.extend_from_slice(logs);
    let o = promptgate(&s.root(), &args);
    assert!(
        o.status.code().is_some_and(|c| c <= 1),
        "canary analyze {logs:?}: {}",
        stderr(&o)
    );
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    v["report"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_write_one_bucket_and_every_reader_counts_every_row() {
    let Some(s3) = S3::start() else { return };
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let s = lake_scaffold(&mock, &s3, 1024);
    let mut replicas: Vec<Proxy> = ["a", "b", "c"].iter().map(|n| replica(&s, n)).collect();

    // Load on all three at once.
    let urls: Vec<String> = replicas.iter().map(|p| p.url.clone()).collect();
    let runs = urls
        .iter()
        .enumerate()
        .map(|(i, u)| load(u, i * 1000, 150, 8));
    let mut acked = Vec::new();
    for (ids, failed) in futures_util::future::join_all(runs).await {
        assert_eq!(failed, 0);
        acked.extend(ids);
    }
    assert_eq!(acked.len(), 450);
    for p in &mut replicas {
        assert_eq!(p.terminate(), Some(0), "{}", p.stderr());
    }
    assert!(
        local_parquet(&s.root()).is_empty(),
        "{:?}",
        local_parquet(&s.root())
    );

    // The independent reader: every acknowledged row once, from 3 replicas.
    let local = tempfile::tempdir().unwrap();
    let lake = s3.read(Some(local.path()));
    lake.assert_exactly(&acked);
    assert_eq!(lake.replicas, 3, "{lake:?}");
    assert!(lake.files >= 3);

    // Same decision and counts from the bucket as from the same files on disk.
    let from_store = analyze(&s, &[&s3.url()]);
    let from_disk = analyze(&s, &[local.path().to_str().unwrap()]);
    assert_eq!(from_store, from_disk);
    assert_eq!(from_store["decision"], "rollback", "{from_store:#}");
    let capital = &from_store["prompts"][0];
    let n =
        capital["stable_requests"].as_u64().unwrap() + capital["canary_requests"].as_u64().unwrap();
    assert_eq!(n, 450, "{from_store:#}");
}

/// Waits until `name` in `/metrics` satisfies `ok`; returns the value.
async fn wait_metric(p: &Proxy, name: &str, ok: impl Fn(f64) -> bool, within: Duration) -> f64 {
    let start = Instant::now();
    loop {
        let v = metric(p, name).await;
        if ok(v) {
            return v;
        }
        assert!(
            start.elapsed() < within,
            "{name} = {v} after {within:?}:\n{}",
            p.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_store_down_for_30_s_under_load_loses_and_duplicates_no_row() {
    let Some(s3) = S3::start() else { return };
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let s = lake_scaffold(&mock, &s3, 1024);
    let mut p = replica(&s, "a");
    let mut acked = Vec::new();
    let (ids, failed) = load(&p.url, 0, 40, 8).await;
    assert_eq!(failed, 0);
    acked.extend(ids);
    wait_metric(
        &p,
        "promptgate_lake_uploaded_files",
        |v| v > 0.0,
        Duration::from_secs(30),
    )
    .await;

    // The store stops answering (SIGSTOP): requests are still served.
    s3.signal("-STOP");
    let stopped = Instant::now();
    let mut sent = 1000;
    while stopped.elapsed() < Duration::from_secs(30) {
        let (ids, failed) = load(&p.url, sent, 40, 8).await;
        assert_eq!(failed, 0, "requests fail while the store is down");
        acked.extend(ids);
        sent += 40;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let backlog = metric(&p, "promptgate_lake_backlog_files").await;
    assert!(backlog > 0.0, "no backlog while the store was down");
    assert!(metric(&p, "promptgate_lake_upload_errors").await > 0.0);
    assert!(!local_parquet(&s.root()).is_empty());
    s3.signal("-CONT");

    // It drains, with traffic continuing.
    let (ids, failed) = load(&p.url, sent, 40, 8).await;
    assert_eq!(failed, 0);
    acked.extend(ids);
    wait_metric(
        &p,
        "promptgate_lake_backlog_files",
        |v| v == 0.0,
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(p.terminate(), Some(0), "{}", p.stderr());
    assert!(local_parquet(&s.root()).is_empty());
    s3.read(None).assert_exactly(&acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_while_uploading_ten_times_leaves_each_row_once_and_no_partial_object() {
    let Some(s3) = S3::start() else { return };
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let s = lake_scaffold(&mock, &s3, 1024);
    let mut acked = Vec::new();
    for round in 0..10u64 {
        // The same log folder each time: the leftovers of the killed run
        // are uploaded by the next.
        let mut p = replica(&s, "a");
        let (ids, failed) = load(&p.url, round as usize * 1000, 60, 8).await;
        assert_eq!(failed, 0);
        // Rows count as acknowledged once in a finished local file (a
        // crash loses at most the flush interval, by design).
        let n = ids.len() as f64;
        wait_metric(
            &p,
            "promptgate_log_rows_written",
            |v| v >= n,
            Duration::from_secs(30),
        )
        .await;
        acked.extend(ids);
        // Kill at a different point of the 200 ms upload cycle each round.
        tokio::time::sleep(Duration::from_millis(round * 23 % 200)).await;
        p.child.kill().unwrap();
        p.child.wait().unwrap();
    }
    let mut p = replica(&s, "a");
    wait_metric(
        &p,
        "promptgate_lake_backlog_files",
        |v| v == 0.0,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(p.terminate(), Some(0), "{}", p.stderr());
    // read() fails on any object pyarrow cannot read whole.
    let lake = s3.read(None);
    lake.assert_exactly(&acked);
    assert_eq!(lake.replicas, 1, "one log folder, one replica name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logs_query_runs_sql_over_the_bucket_and_local_roots_alike() {
    let Some(s3) = S3::start() else { return };
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let s = lake_scaffold(&mock, &s3, 1024);
    let mut p = replica(&s, "a");
    let (acked, failed) = load(&p.url, 0, 60, 8).await;
    assert_eq!(failed, 0);
    assert_eq!(p.terminate(), Some(0), "{}", p.stderr());
    let local = tempfile::tempdir().unwrap();
    s3.read(Some(local.path()));

    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let sql = format!(
        "SELECT variant, count(*) AS n, count(DISTINCT request_id) AS ids FROM requests \
         WHERE date = '{today}' GROUP BY variant ORDER BY variant"
    );
    let query = |logs: &str, format: &str| {
        let o = promptgate(
            &s.root(),
            &["logs", "query", &sql, "--logs", logs, "--format", format],
        );
        assert!(o.status.success(), "logs query: {}", stderr(&o));
        stdout(&o)
    };
    let from_store = query(&s3.url(), "json");
    assert_eq!(from_store, query(local.path().to_str().unwrap(), "json"));
    let rows: Vec<Value> = serde_json::from_str(&from_store).unwrap();
    let total: u64 = rows.iter().map(|r| r["n"].as_u64().unwrap()).sum();
    assert_eq!(total as usize, acked.len(), "{from_store}");
    assert!(rows.iter().all(|r| r["n"] == r["ids"]), "{from_store}");
    // A date with no partition: nothing (pruned), not an error.
    let none = promptgate(
        &s.root(),
        &[
            "logs",
            "query",
            "SELECT count(*) AS n FROM requests WHERE date = '1999-01-01'",
            "--logs",
            &s3.url(),
            "--format",
            "csv",
        ],
    );
    assert!(none.status.success(), "{}", stderr(&none));
    assert_eq!(stdout(&none), "n\n0\n");
    // Bad SQL: exit 2 naming the problem.
    let bad = promptgate(
        &s.root(),
        &[
            "logs",
            "query",
            "SELECT nope FROM requests",
            "--logs",
            &s3.url(),
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("nope"), "{}", stderr(&bad));
}

/// serve's analyzer with `logging.store` reads the bucket (every replica's
/// uploaded files) plus its own files not uploaded yet, each file once:
/// before, it read only its local folder, which the uploader empties, so
/// its rounds counted only the rows not uploaded yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serves_analyzer_with_a_store_counts_the_uploaded_rows_of_every_replica() {
    let Some(s3) = S3::start() else { return };
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let s = lake_scaffold(&mock, &s3, 1024);
    // Report only: a round that acted would end the canary and its rows.
    let rollout = s
        .read("rollout.yaml")
        .replace("on_regression: rollback", "on_regression: alert");
    commit_main(&s, &[("rollout.yaml", &rollout)], "canary: alert only");
    let other = replica(&s, "b");
    let mut env = ENV.to_vec();
    env.push(("PROMPTGATE_LOG_DIR", ".promptgate/logs-a"));
    let mut p = Proxy::start_with(&s.root(), &["--analysis-interval-ms", "150"], &env);

    let (mut acked, failed) = load(&p.url, 0, 60, 8).await;
    assert_eq!(failed, 0);
    let (ids, failed) = load(&other.url, 1000, 60, 8).await;
    assert_eq!(failed, 0);
    acked.extend(ids);
    for r in [&p, &other] {
        wait_metric(
            r,
            "promptgate_lake_uploaded_files",
            |v| v > 0.0,
            Duration::from_secs(30),
        )
        .await;
        wait_metric(
            r,
            "promptgate_lake_backlog_files",
            |v| v == 0.0,
            Duration::from_secs(30),
        )
        .await;
    }
    // The last flush may follow the last round: wait for its upload too.
    let start = Instant::now();
    loop {
        let local: Vec<String> = local_parquet(&s.root())
            .into_iter()
            .filter(|f| f.contains("/requests/"))
            .collect();
        if local.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "uploaded files are still local: {local:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Rounds while uploads happen never count a row twice; a round after
    // them counts every row of both replicas.
    let start = Instant::now();
    let last = loop {
        let st = crate::support::serve::status(&p).await;
        let rows = st["analysis"]["last"]["rows"].as_u64().unwrap_or(0);
        assert!(rows <= 120, "a round counted {rows} rows of 120: {st:#}");
        if rows == 120 {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no round counted the 120 uploaded rows: {st:#}\n{}",
            p.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Rounds keep the store's objects (under the log root's cache): once
    // nothing new is uploaded, a round downloads nothing and reads the same.
    let held = last["analysis"]["last"]["store_objects_reused"]
        .as_u64()
        .unwrap()
        + last["analysis"]["last"]["store_objects_fetched"]
            .as_u64()
            .unwrap();
    assert!(held > 0, "{last:#}");
    let runs = last["analysis"]["runs"].as_u64().unwrap();
    let start = Instant::now();
    let quiet = loop {
        let st = crate::support::serve::status(&p).await;
        if st["analysis"]["runs"].as_u64().unwrap() > runs + 1 {
            break st;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{st:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let round = &quiet["analysis"]["last"];
    assert_eq!(round["store_objects_fetched"], 0, "{quiet:#}");
    assert_eq!(
        round["store_objects_reused"].as_u64(),
        Some(held),
        "{quiet:#}"
    );
    assert_eq!(round["rows"], 120, "{quiet:#}");
    assert!(
        s.root().join(".promptgate/cache/store").is_dir(),
        "the cache lives in the state folder"
    );

    let report = &last["analysis"]["last"]["report"];
    let capital = &report["prompts"][0];
    let n =
        capital["stable_requests"].as_u64().unwrap() + capital["canary_requests"].as_u64().unwrap();
    assert_eq!(n, 120, "{report:#}");
    assert!(last["analysis"]["last"]["error"].is_null(), "{last:#}");

    // The same evidence as the fleet's `canary analyze` over the bucket.
    let fleet = analyze(&s, &[&s3.url()]);
    assert_eq!(fleet["prompts"], report["prompts"], "{fleet:#}");
    assert_eq!(p.terminate(), Some(0), "{}", p.stderr());
    s3.read(None).assert_exactly(&acked);
}

/// A file between its upload and its local delete (a crash there) is read
/// once by a reader of the store and the replica's folder together, and
/// `logs compact` of that folder does not merge it into a file of a new
/// name that would be uploaded too: after the replica's next start, every
/// row is in the bucket once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_uploaded_but_still_local_is_counted_and_stored_once_even_after_compact() {
    let Some(s3) = S3::start() else { return };
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let s = lake_scaffold(&mock, &s3, 1024);
    let mut p = replica(&s, "a");
    // Two batches, two uploaded files (of one partition).
    let mut acked = Vec::new();
    for batch in 0..2 {
        let (ids, failed) = load(&p.url, batch * 1000, 20, 8).await;
        assert_eq!(failed, 0);
        acked.extend(ids);
        wait_metric(
            &p,
            "promptgate_lake_uploaded_files",
            |v| v >= (batch + 1) as f64,
            Duration::from_secs(30),
        )
        .await;
    }
    assert_eq!(p.terminate(), Some(0), "{}", p.stderr());
    s3.read(None).assert_exactly(&acked);

    // Put the uploaded request files back as if the local deletes had not
    // happened yet (a crash right after the PUTs).
    let bucket = tempfile::tempdir().unwrap();
    s3.read(Some(bucket.path()));
    let logs = s.root().join(".promptgate/logs-a");
    let replica_name = std::fs::read_to_string(logs.join(".replica")).unwrap();
    let prefix = format!("{}-", replica_name.trim());
    let mut restored = 0;
    for part in std::fs::read_dir(bucket.path().join("requests"))
        .unwrap()
        .flatten()
    {
        for e in std::fs::read_dir(part.path()).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(local_name) = name.strip_prefix(&prefix) else {
                continue;
            };
            let to = logs.join("requests").join(part.file_name());
            std::fs::create_dir_all(&to).unwrap();
            std::fs::copy(e.path(), to.join(local_name)).unwrap();
            restored += 1;
        }
    }
    assert!(
        restored > 1,
        "{restored} object(s) of replica {replica_name}: compaction merges two or more"
    );

    // Readers of the store and the folder count each row once.
    let both = analyze(&s, &[&s3.url(), logs.to_str().unwrap()]);
    let capital = &both["prompts"][0];
    let n =
        capital["stable_requests"].as_u64().unwrap() + capital["canary_requests"].as_u64().unwrap();
    assert_eq!(n, acked.len() as u64, "{both:#}");

    // A manual compaction leaves the uploading folder's files as they are.
    let o = promptgate(
        &s.root(),
        &["logs", "compact", "--dir", logs.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The next start re-uploads them under the same keys and deletes them.
    let mut p = replica(&s, "a");
    wait_metric(
        &p,
        "promptgate_lake_uploaded_files",
        |v| v >= restored as f64,
        Duration::from_secs(30),
    )
    .await;
    wait_metric(
        &p,
        "promptgate_lake_backlog_files",
        |v| v == 0.0,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(p.terminate(), Some(0), "{}", p.stderr());
    s3.read(None).assert_exactly(&acked);
    assert!(stdout(&o).contains("not merged"), "{}", stdout(&o));
}
