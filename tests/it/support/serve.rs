//! Fixtures for the proxy tests: a scaffold pointed at an upstream, the
//! real `promptgate serve` binary on a free port, commits on any branch,
//! and reading the request log back.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use promptgate::logstore::{RequestFilter, RequestLogRow, read_requests};
use serde_json::Value;

use crate::support::{Scaffold, bin, get_json, get_text, http};

/// A prompt that declares `input`: the last user message fills it.
pub const CHAT_PROMPT: &str = "id: chat
model: small
inputs:
  input:
    type: string
messages:
  - role: system
    content: You are terse.
  - role: user
    content: \"Q: {{ input }}\"
";

/// A scaffold whose provider is `url` (kind `kind`), with the `chat`
/// prompt, a 200 ms log flush, and `extra_server` YAML lines under
/// `server:`; committed on main.
pub fn proxy_scaffold(kind: &str, url: &str, extra_server: &str) -> Scaffold {
    let s = Scaffold::new();
    s.edit(
        "promptgate.yaml",
        "kind: ollama ",
        &format!("kind: {kind} "),
    );
    s.edit("promptgate.yaml", "http://127.0.0.1:11434", url);
    s.edit(
        "promptgate.yaml",
        "flush_interval_ms: 1000",
        "flush_interval_ms: 200",
    );
    s.edit(
        "promptgate.yaml",
        "  listen: 127.0.0.1:8787\n",
        &format!("  listen: 127.0.0.1:8787\n{extra_server}"),
    );
    s.write("prompts/chat.yaml", CHAT_PROMPT);
    s.commit("Serve through the test upstream");
    s
}

/// `promptgate serve` running on 127.0.0.1 (a free port).
pub struct Proxy {
    pub child: Child,
    pub url: String,
    pub stderr: Arc<Mutex<String>>,
}

impl Proxy {
    pub fn start(root: &Path) -> Proxy {
        Proxy::start_with(root, &[], &[])
    }

    /// Starts the binary with extra arguments and environment variables and
    /// waits for its `listening on` line.
    pub fn start_with(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Proxy {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--repo"])
            .arg(root)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("PROMPTGATE_LOG", "promptgate=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting promptgate serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let buf = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(url);
                }
                buf.lock().unwrap().push_str(&line);
                buf.lock().unwrap().push('\n');
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!("serve did not start:\n{}", stderr.lock().unwrap());
            }
        };
        Proxy { child, url, stderr }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {pid}");
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("serve did not exit after SIGTERM:\n{}", self.stderr());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The request log rows of the scaffold (its default `logging.dir`).
pub fn log_rows(root: &Path) -> Vec<RequestLogRow> {
    read_requests(&[log_dir(root)], &RequestFilter::default()).unwrap()
}

pub fn log_dir(root: &Path) -> PathBuf {
    root.join(".promptgate/logs")
}

/// Commits `files` (path -> content; paths at most one folder deep) on
/// `branch` on top of `from` (a ref or commit), without touching the
/// working tree or HEAD. Returns the new commit.
pub fn commit_on(
    root: &Path,
    branch: &str,
    from: &str,
    files: &[(&str, &str)],
    msg: &str,
) -> String {
    let repo = git2::Repository::open(root).unwrap();
    let parent = repo
        .revparse_single(from)
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let mut tree = parent.tree().unwrap();
    for (path, content) in files {
        let blob = repo.blob(content.as_bytes()).unwrap();
        let new_tree = match path.split_once('/') {
            None => {
                let mut b = repo.treebuilder(Some(&tree)).unwrap();
                b.insert(path, blob, 0o100644).unwrap();
                b.write().unwrap()
            }
            Some((dir, name)) => {
                let sub = tree.get_name(dir).map(|e| repo.find_tree(e.id()).unwrap());
                let mut sb = repo.treebuilder(sub.as_ref()).unwrap();
                sb.insert(name, blob, 0o100644).unwrap();
                let sub_id = sb.write().unwrap();
                let mut b = repo.treebuilder(Some(&tree)).unwrap();
                b.insert(dir, sub_id, 0o040000).unwrap();
                b.write().unwrap()
            }
        };
        tree = repo.find_tree(new_tree).unwrap();
    }
    let sig = git2::Signature::now("Test", "test@example.com").unwrap();
    let refname = format!("refs/heads/{branch}");
    repo.commit(Some(&refname), &sig, &sig, msg, &tree, &[&parent])
        .unwrap()
        .to_string()
}

/// Commits on main and moves the working tree with it (main is checked out).
pub fn commit_main(s: &Scaffold, files: &[(&str, &str)], msg: &str) -> String {
    for (p, c) in files {
        s.write(p, c);
    }
    s.commit(msg)
}

/// GET `/status` as JSON, checked to be the typed [`Status`] clients
/// deserialise (and to serialise back to the same JSON).
pub async fn status(p: &Proxy) -> Value {
    let v = get_json(&format!("{}/status", p.url)).await;
    let typed: promptgate::proxy::status::Status = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("/status is not a Status: {e}\n{v:#}"));
    assert_eq!(serde_json::to_value(&typed).unwrap(), v);
    v
}

/// GET `/metrics`: the Prometheus text.
pub async fn metrics(p: &Proxy) -> String {
    get_text(&format!("{}/metrics", p.url)).await
}

/// Polls `/status` every 20 ms until `cond` holds or `limit` passes;
/// returns the last status and whether `cond` held.
pub async fn wait_status(
    p: &Proxy,
    limit: Duration,
    cond: impl Fn(&Value) -> bool,
) -> (Value, bool) {
    let start = std::time::Instant::now();
    loop {
        let s = status(p).await;
        if cond(&s) {
            return (s, true);
        }
        if start.elapsed() > limit {
            return (s, false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POSTs a JSON body; returns status, headers and body text.
pub async fn post(url: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, String) {
    let r = http().post(url).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

pub fn header(h: &reqwest::header::HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}
