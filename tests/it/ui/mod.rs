//! The dashboard through the real binaries: `promptgate serve` in front of
//! `mock-llm` (a MOCK: it echoes the rendered user message) with real
//! traffic, the pages and their JSON over HTTP, and `promptgate ui` over
//! the same log folder. `browser` drives the pages in headless Chromium.

mod browser;
mod wired;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use promptgate::logstore::RequestLogRow;
use promptgate::mock_llm::{MockConfig, MockServer};
use serde_json::{Value, json};

use crate::support::serve::{Proxy, log_dir, log_rows, metrics, proxy_scaffold};
use crate::support::{Scaffold, bin, http};

pub const TOKEN: &str = "s3cret-dashboard-token";
/// A country whose echo is markup: it must show as text.
pub const HOSTILE: &str = "<script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">";
const COUNTRIES: &[&str] = &["France", "Japan", "Peru", "Kenya", "Norway", "Chile"];

/// A scaffold served through `mock` whose dashboard needs [`TOKEN`]
/// (`server.admin_token_env: PG_UI_TOKEN`).
pub fn scaffold(mock: &MockServer) -> Scaffold {
    proxy_scaffold("openai", &mock.url(), "  admin_token_env: PG_UI_TOKEN\n")
}

pub fn start(s: &Scaffold, args: &[&str]) -> Proxy {
    Proxy::start_with(&s.root(), args, &[("PG_UI_TOKEN", TOKEN)])
}

/// Sends one capital request per entry of `countries`; the request ids.
pub async fn traffic(p: &Proxy, countries: &[String], user_from: usize) -> Vec<String> {
    let url = format!("{}/v1/chat/completions", p.url);
    let client = http();
    let calls = countries.iter().enumerate().map(|(i, c)| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client
                .post(&url)
                .json(&json!({
                    "model": "prompt:capital",
                    "variables": {"country": c},
                    "user": format!("user-{}", user_from + i),
                }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.headers()["x-request-id"].to_str().unwrap().to_string()
        }
    });
    futures_util::future::join_all(calls).await
}

pub fn countries(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| COUNTRIES[i % COUNTRIES.len()].to_string())
        .collect()
}

/// Waits until the log holds `n` rows; returns them.
pub fn wait_rows(root: &Path, n: usize) -> Vec<RequestLogRow> {
    let start = Instant::now();
    loop {
        let rows = if log_dir(root).join("requests").is_dir() {
            log_rows(root)
        } else {
            Vec::new()
        };
        if rows.len() >= n {
            return rows;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} of {n} rows logged",
            rows.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Nearest-rank percentile, as the dashboard computes it.
pub fn nearest_rank(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[rank]
}

/// The value of one Prometheus sample line starting with `prefix`, summed
/// over the lines that match.
pub fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn get(url: &str, auth: bool) -> reqwest::Response {
    let client = crate::support::http_no_redirect();
    let mut req = client.get(url);
    if auth {
        req = req.bearer_auth(TOKEN);
    }
    req.send().await.unwrap()
}

async fn page(url: &str) -> String {
    let r = get(url, true).await;
    let (status, headers) = (r.status(), r.headers().clone());
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{url}: {body}");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    body
}

/// `promptgate ui` on a free port; its base URL.
pub struct UiServer {
    child: Child,
    pub url: String,
}

impl UiServer {
    pub fn start(args: &[&str]) -> UiServer {
        let mut child = Command::new(bin())
            .arg("ui")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("promptgate ui ended before listening")
                .unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        UiServer { child, url }
    }
}

impl Drop for UiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_the_logged_figures_escaped_and_only_with_the_token() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let s = scaffold(&m);
    let mut p = start(&s, &["--no-analyzer"]);
    let mut sent = countries(24);
    sent.push(HOSTILE.to_string());
    sent.push("Contact ops@example.com about France".to_string());
    let ids = traffic(&p, &sent, 0).await;
    let rows = wait_rows(&s.root(), sent.len());
    assert_eq!(rows.len(), sent.len());

    // Without the token: pages send the browser to the login form, the
    // JSON answers 401.
    let r = get(&format!("{}/ui/calls", p.url), false).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/login?next=/ui/calls");
    let r = get(&format!("{}/ui/api/overview", p.url), false).await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let r = get(&format!("{}/ui/login", p.url), false).await;
    assert_eq!(r.status(), 200);

    // The overview's figures are the log's, its live figures /metrics'.
    let r = get(&format!("{}/ui/api/overview?window=1h", p.url), true).await;
    assert_eq!(r.status(), 200);
    let ov: Value = r.json().await.unwrap();
    let groups = ov["overview"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{ov:#}");
    let (g, cur) = (&groups[0], &groups[0]["current"]);
    assert_eq!(
        (g["prompt"].as_str(), g["variant"].as_str()),
        (Some("capital"), Some("stable"))
    );
    assert_eq!(cur["requests"], rows.len() as u64);
    let latencies: Vec<f64> = rows.iter().map(|r| r.latency_ms).collect();
    for (field, q) in [
        ("latency_p50_ms", 0.5),
        ("latency_p95_ms", 0.95),
        ("latency_p99_ms", 0.99),
    ] {
        assert_eq!(
            cur[field].as_f64(),
            Some(nearest_rank(&latencies, q)),
            "{field}"
        );
    }
    let tokens_in: u64 = rows.iter().map(|r| r.input_tokens).sum();
    assert_eq!(cur["input_tokens"], tokens_in);
    let cost: f64 = rows.iter().map(|r| r.cost).sum();
    assert!((cur["cost"].as_f64().unwrap() - cost).abs() < 1e-12);
    let series_total: u64 = g["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(
        series_total,
        rows.len() as u64,
        "the series covers every call"
    );
    let text = metrics(&p).await;
    let live = &ov["live"][0];
    assert_eq!(
        live["requests"].as_f64(),
        Some(metric_sum(
            &text,
            "promptgate_requests_total{prompt=\"capital\",variant=\"stable\""
        ))
    );
    assert_eq!(
        live["input_tokens"].as_f64(),
        Some(metric_sum(
            &text,
            "promptgate_input_tokens_total{prompt=\"capital\",variant=\"stable\"}"
        ))
    );
    // A second refresh reads no file again, and with nothing logged since
    // it reuses every piece it keeps.
    let again: Value = get(&format!("{}/ui/api/overview?window=1h", p.url), true)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["files_read"], 0, "{again}");
    assert_eq!(again["pieces_computed"], 0, "{again:#}");
    assert!(again["pieces_kept"].as_u64() > Some(0), "{again:#}");
    assert_eq!(again["overview"]["groups"], ov["overview"]["groups"]);

    // Every page answers; the table lists every call.
    let overview = page(&format!("{}/ui?window=1h", p.url)).await;
    assert!(overview.contains("<svg"), "charts drawn on the server");
    assert!(!overview.contains("<script"), "no script on the pages");
    let calls = page(&format!("{}/ui/calls?prompt=capital&window=1h", p.url)).await;
    assert!(
        calls.contains(&format!("{} calls match", sent.len())),
        "{calls}"
    );
    for id in &ids {
        assert!(calls.contains(id.as_str()), "{id}");
    }
    let rollout = page(&format!("{}/ui/rollout", p.url)).await;
    assert!(rollout.contains("refs&#x2f;heads&#x2f;main"), "{rollout}");
    page(&format!("{}/ui/drift?window=1h", p.url)).await;

    // The hostile answer renders as text.
    let hostile_id = &ids[24];
    let call = page(&format!("{}/ui/calls/{hostile_id}", p.url)).await;
    assert!(
        call.contains("&lt;script&gt;window.__xss=1&lt;&#x2f;script&gt;"),
        "{call}"
    );
    assert!(!call.contains("<script>window"));
    assert!(!call.contains("<img src=x"));
    // Redaction is off in this scaffold: serve shows the address as logged.
    let plain = page(&format!("{}/ui/calls/{}", p.url, ids[25])).await;
    assert!(plain.contains("ops@example.com"), "{plain}");
    let r = get(&format!("{}/ui/calls/no-such-call", p.url), true).await;
    assert_eq!(r.status(), 404);

    // State-changing requests need the token and the same origin.
    let client = crate::support::http_no_redirect();
    let enqueue = format!("{}/ui/calls/{hostile_id}/review", p.url);
    let host = p.url.trim_start_matches("http://").to_string();
    let r = client
        .post(&enqueue)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("reason=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(&enqueue)
        .bearer_auth(TOKEN)
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("reason=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .post(&enqueue)
        .bearer_auth(TOKEN)
        .header("origin", format!("http://{host}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("reason=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "the call is queued");
    assert_eq!(r.headers()["location"], "/ui/review");
    // The review page shows the hostile answer as text too.
    let review = page(&format!("{}/ui/review", p.url)).await;
    assert!(review.contains(hostile_id.as_str()), "{review}");
    assert!(!review.contains("<script>window"));

    // Signing in sets a cookie the pages accept; a wrong token does not.
    let login = format!("{}/ui/login", p.url);
    let r = client
        .post(&login)
        .header("origin", format!("http://{host}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=wrong&next=%2Fui%2Fcalls")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers().get("set-cookie").is_none());
    let r = client
        .post(&login)
        .header("origin", format!("http://{host}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}&next=%2Fui%2Fcalls"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/calls");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let r = client
        .get(format!("{}/ui/calls", p.url))
        .header("cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(p.terminate(), Some(0));

    // `promptgate ui` over the same folder: the same figures, no live ones,
    // and the e-mail address redacted when asked.
    let logs = log_dir(&s.root());
    let ui = UiServer::start(&["--logs", logs.to_str().unwrap(), "--redact-emails"]);
    let read_only: Value = get(&format!("{}/ui/api/overview?window=1h", ui.url), false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read_only["overview"]["groups"], ov["overview"]["groups"]);
    assert!(read_only["live"].is_null());
    let call = page(&format!("{}/ui/calls/{}", ui.url, ids[25])).await;
    assert!(call.contains("Contact [email] about France"), "{call}");
    assert!(!call.contains("ops@example.com"));
}

#[test]
fn ui_refuses_a_missing_log_folder_and_an_unset_token_variable() {
    let o = Command::new(bin())
        .args(["ui", "--logs", "/no/such/folder", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--logs /no/such/folder: no such folder"));
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(bin())
        .args(["ui", "--logs"])
        .arg(dir.path())
        .args([
            "--admin-token-env",
            "PG_UNSET_TOKEN_VAR",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("PG_UNSET_TOKEN_VAR")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("PG_UNSET_TOKEN_VAR"));
}
