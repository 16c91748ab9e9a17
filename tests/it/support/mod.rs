//! Fixtures shared by the integration tests: the binary, a scaffolded
//! repository, an HTTP client; [`serve`] runs `promptgate serve`, [`logs`]
//! writes request logs through the real writer,
//! [`upstream`] plays an LLM server, [`external`] finds the optional tools.

#![allow(dead_code)]

pub mod external;
pub mod logs;
pub mod serve;
pub mod upstream;

pub use external::{external_tool, python_with, python_with_pyarrow, test_llm_url};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_promptgate")
}

/// Runs `promptgate ARGS` in `dir` with a fixed git identity.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env_remove("PROMPTGATE_LOG")
        .output()
        .expect("running promptgate")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A freshly scaffolded repository in a temp dir (`promptgate init`).
pub struct Scaffold {
    pub dir: tempfile::TempDir,
}

impl Scaffold {
    pub fn new() -> Scaffold {
        let dir = tempfile::tempdir().expect("tempdir");
        let o = run_in(dir.path(), &["init", "repo"]);
        assert!(o.status.success(), "init failed: {}", stderr(&o));
        Scaffold { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).expect("reading a scaffold file")
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("writing a scaffold file");
    }

    /// Replaces `from` by `to` in a file; the text must occur.
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert!(text.contains(from), "{rel} does not contain {from:?}");
        self.write(rel, &text.replacen(from, to, 1));
    }

    pub fn run(&self, args: &[&str]) -> Output {
        run_in(&self.root(), args)
    }

    /// The commit HEAD points to.
    pub fn head_commit(&self) -> String {
        git2::Repository::open(self.root())
            .expect("open repo")
            .head()
            .and_then(|h| h.peel_to_commit())
            .expect("HEAD commit")
            .id()
            .to_string()
    }

    /// Commits the whole working tree; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        let git = promptgate::repo::GitRepo::open(&self.root()).expect("open repo");
        let sig = git2::Signature::now("Test", "test@example.com").expect("signature");
        git.commit_all(message, &sig).expect("commit").to_string()
    }
}

/// GET `url`; the body as JSON.
pub async fn get_json(url: &str) -> serde_json::Value {
    http().get(url).send().await.unwrap().json().await.unwrap()
}

/// GET `url`; the body as text.
pub async fn get_text(url: &str) -> String {
    http().get(url).send().await.unwrap().text().await.unwrap()
}

/// POST `body` to `url`; the answer as JSON.
pub async fn post_json(url: &str, body: &serde_json::Value) -> serde_json::Value {
    http()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// An HTTP client for talking to the servers under test.
pub fn http() -> reqwest::Client {
    // reqwest is built without a bundled crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Like [`http`], but returns redirects as they are (the dashboard answers
/// form posts with 303).
pub fn http_no_redirect() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Accepts one HTTP request on a free port; returns its URL and a handle
/// yielding the request text.
pub fn one_shot_server() -> (String, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = std::io::Read::read(&mut sock, &mut chunk).unwrap_or(0);
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if n == 0 || complete_http(&text) {
                break;
            }
        }
        std::io::Write::write_all(
            &mut sock,
            b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
        )
        .unwrap();
        String::from_utf8_lossy(&buf).to_string()
    });
    (url, handle)
}

pub fn complete_http(text: &str) -> bool {
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    body.len() >= len
}
