//! `promptgate demo`: the whole loop end to end (scaffold, mock-llm, eval,
//! check on a branch, serve, canary, the serve analyzer's rollback), and
//! that stopping the demo by a signal leaves no process behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use promptgate::logstore::{self, RequestFilter, Variant};
use promptgate::repo::GitRepo;

use crate::support::{bin, external_tool, python_with_pyarrow, run_in, stdout};

const MOCK_LINE: &str = "using the built-in mock-llm (a mock, not a real model)";

/// `--mock` when something answers on Ollama's port: the demo must run on
/// the mock here, whatever the machine has.
fn demo_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["demo".to_string(), dir.display().to_string()];
    if std::net::TcpStream::connect_timeout(
        &"127.0.0.1:11434".parse().unwrap(),
        Duration::from_millis(300),
    )
    .is_ok()
    {
        args.push("--mock".into());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn demo_runs_the_loop_until_the_analyzer_rolls_the_canary_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let args = demo_args(&dir, &["--exit-after-rollback", "--timeout-s", "240"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run_in(tmp.path(), &args);
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "demo failed:\n{out}\n{}",
        crate::support::stderr(&o)
    );
    assert!(out.contains(MOCK_LINE), "{out}");
    for step in 1..=7 {
        assert!(out.contains(&format!("[{step}/7]")), "step {step}:\n{out}");
    }

    // The eval ran on main and its per-case Parquet exists.
    let results = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("per-case results (Parquet): "))
        .unwrap_or_else(|| panic!("no results path:\n{out}"));
    assert!(Path::new(results).is_file(), "{results}");

    // The check of the branch failed, and the demo said so.
    assert!(out.contains("check exited 1"), "{out}");
    let md = std::fs::read_to_string(dir.join(".promptgate/demo/check.md")).unwrap();
    assert!(md.contains("check failed"), "{md}");

    // git log on main: ... -> the canary commit -> its revert with evidence.
    let git = GitRepo::open(&dir).unwrap();
    let repo = git.inner();
    let head = repo
        .find_commit(git.resolve("refs/heads/main").unwrap())
        .unwrap();
    let revert_msg = head.message().unwrap().to_string();
    let canary = head.parent(0).unwrap();
    assert_eq!(
        canary.summary().unwrap(),
        Some("rollout: canary demo/worse-prompt at 30%")
    );
    assert!(
        revert_msg.starts_with("Revert \"rollout: canary demo/worse-prompt at 30%\""),
        "{revert_msg}"
    );
    assert!(
        revert_msg.contains(&format!("This reverts commit {}", canary.id())),
        "{revert_msg}"
    );
    for evidence in [
        "online_pass_rate",
        "WORSE",
        "decision: rollback",
        "n canary",
    ] {
        assert!(revert_msg.contains(evidence), "{evidence}: {revert_msg}");
    }
    // The revert restored the rollout from before the canary, in the commit
    // and in the checked-out files.
    let before = canary.parent(0).unwrap();
    let rollout_at = |c: &git2::Commit| {
        let entry = c
            .tree()
            .unwrap()
            .get_path(Path::new("rollout.yaml"))
            .unwrap();
        let blob = repo.find_blob(entry.id()).unwrap();
        String::from_utf8(blob.content().to_vec()).unwrap()
    };
    assert_eq!(rollout_at(&head), rollout_at(&before));
    assert!(rollout_at(&canary).contains("canary:"));
    assert_eq!(
        std::fs::read_to_string(dir.join("rollout.yaml")).unwrap(),
        rollout_at(&head)
    );
    // The branch with the worse prompt is still there for review.
    assert!(git.resolve("refs/heads/demo/worse-prompt").is_ok());
    assert!(out.contains(&head.id().to_string()), "{out}");

    // The request log: stable and canary rows, the canary's online scores
    // worse; after the revert every row is stable.
    let logs = dir.join(".promptgate/logs");
    let rows = logstore::read_requests(&[&logs], &RequestFilter::default()).unwrap();
    let canary_rows: Vec<_> = rows
        .iter()
        .filter(|r| r.variant == Variant::Canary)
        .collect();
    let stable_rows: Vec<_> = rows
        .iter()
        .filter(|r| r.variant == Variant::Stable)
        .collect();
    assert!(!canary_rows.is_empty() && !stable_rows.is_empty());
    let pass_rate = |rs: &[&logstore::RequestLogRow]| {
        let scored: Vec<bool> = rs.iter().filter_map(|r| r.online_pass).collect();
        assert!(!scored.is_empty());
        scored.iter().filter(|p| **p).count() as f64 / scored.len() as f64
    };
    assert!(pass_rate(&canary_rows) < pass_rate(&stable_rows));
    let revert_commit = head.id().to_string();
    let after: Vec<_> = rows.iter().filter(|r| r.commit == revert_commit).collect();
    assert!(
        after.len() >= 30,
        "{} rows served after the revert",
        after.len()
    );
    assert!(after.iter().all(|r| r.variant == Variant::Stable));

    // The same files through an independent reader.
    if let Some(py) = python_with_pyarrow() {
        let script = r#"
import sys, collections, pyarrow.dataset as ds
t = ds.dataset(sys.argv[1], format="parquet", partitioning="hive").to_table(columns=["variant"])
print(dict(collections.Counter(t.column("variant").to_pylist())))
"#;
        let o = Command::new(py)
            .args(["-c", script])
            .arg(logs.join("requests"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", crate::support::stderr(&o));
        let counts = stdout(&o);
        assert!(
            counts.contains(&format!("'canary': {}", canary_rows.len()))
                && counts.contains(&format!("'stable': {}", stable_rows.len())),
            "{counts}"
        );
    }
}

/// The text of `path` at `rev`.
fn file_at(git: &GitRepo, rev: &str, path: &str) -> String {
    let repo = git.inner();
    let commit = repo.find_commit(git.resolve(rev).unwrap()).unwrap();
    let entry = commit.tree().unwrap().get_path(Path::new(path)).unwrap();
    let blob = repo.find_blob(entry.id()).unwrap();
    String::from_utf8(blob.content().to_vec()).unwrap()
}

/// `demo --improve`: feedback -> review queue -> scripted reviews over
/// HTTP -> dataset v2 on a branch -> its dataset-only check -> the prompt
/// fix checked on v2 -> canary -> the analyzer's promotion commit.
#[test]
fn demo_improve_runs_the_loop_until_the_fix_is_promoted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let o = run_in(
        tmp.path(),
        &[
            "demo",
            &dir.display().to_string(),
            "--improve",
            "--timeout-s",
            "240",
        ],
    );
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "demo failed:\n{out}\n{}",
        crate::support::stderr(&o)
    );
    assert!(
        out.contains("--improve: using the built-in mock-llm (a mock, not a real model)"),
        "{out}"
    );
    assert!(out.contains("scripted reviews"), "{out}");
    for step in 1..=9 {
        assert!(out.contains(&format!("[{step}/9]")), "step {step}:\n{out}");
    }
    let git = GitRepo::open(&dir).unwrap();

    // v2 on the dataset branch: six reviewed rows with provenance, the
    // suite moved, v1 untouched.
    let tree = git.tree_at("refs/heads/dataset/capitals-v2").unwrap();
    let suite = file_at(
        &git,
        "refs/heads/dataset/capitals-v2",
        "evals/capitals.yaml",
    );
    assert!(suite.contains("dataset: capitals@v2"), "{suite}");
    let v2 = promptgate::dataset::read_snapshot(&tree, &"capitals@v2".parse().unwrap()).unwrap();
    assert_eq!(v2.rows.len(), 18);
    let reviewed: Vec<_> = v2
        .rows
        .iter()
        .filter(|r| r.get("reviewer").and_then(|v| v.as_str()) == Some("demo-script"))
        .collect();
    assert_eq!(reviewed.len(), 6);
    let mut expected: Vec<&str> = reviewed
        .iter()
        .map(|r| r["expected"].as_str().unwrap())
        .collect();
    expected.sort();
    assert_eq!(
        expected,
        vec!["Abuja", "Ankara", "Bern", "Brasilia", "Canberra", "Ottawa"]
    );
    assert!(reviewed.iter().all(|r| {
        r["source_request_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    }));
    let v1 = promptgate::dataset::read_snapshot(&tree, &"capitals@v1".parse().unwrap()).unwrap();
    assert_eq!(v1.rows.len(), 12);

    // The dataset-only check listed the six rows and warned; the fix's
    // check passed on v2 and fixed them.
    let md = std::fs::read_to_string(dir.join(".promptgate/demo/check-dataset.md")).unwrap();
    assert!(md.contains("passed with 1 warning"), "{md}");
    assert!(
        md.contains("**Dataset change only:** `capitals@v1` → `capitals@v2` (6 rows added"),
        "{md}"
    );
    assert!(
        md.contains("**New rows the prompt fails** (6 of 6)"),
        "{md}"
    );
    assert!(md.contains("expected: Canberra | Sydney |"), "{md}");
    // The provenance columns grow added leave the old rows common.
    assert!(md.contains("compares the 12 rows common to both"), "{md}");
    let md = std::fs::read_to_string(dir.join(".promptgate/demo/check-fix.md")).unwrap();
    assert!(md.contains("promptgate check passed"), "{md}");
    assert!(md.contains("dataset `capitals@v2`"), "{md}");
    assert!(md.contains("**Fixed** (6 cases)"), "{md}");

    // main: the dataset merged, the canary commit, then the promotion of
    // the fix's commit by serve's analyzer.
    let repo = git.inner();
    let main = repo
        .find_commit(git.resolve("refs/heads/main").unwrap())
        .unwrap();
    let msg = main.message().unwrap();
    assert!(
        msg.starts_with("promptgate: promote canary refs/heads/demo/capital-fix"),
        "{msg}"
    );
    assert!(
        msg.contains("feedback_score") && msg.contains("decision: promote"),
        "{msg}"
    );
    assert_eq!(
        main.parent(0).unwrap().summary().unwrap(),
        Some("rollout: canary demo/capital-fix at 50%")
    );
    let fix = git
        .resolve("refs/heads/demo/capital-fix")
        .unwrap()
        .to_string();
    let rollout = file_at(&git, "refs/heads/main", "rollout.yaml");
    assert!(rollout.contains(&format!("stable: \"{fix}\"")), "{rollout}");
    assert!(!rollout.contains("canary:"), "{rollout}");
    let suite = file_at(&git, "refs/heads/main", "evals/capitals.yaml");
    assert!(suite.contains("dataset: capitals@v2"), "{suite}");
    let prompt = file_at(&git, &fix, "prompts/capital.yaml");
    assert!(prompt.contains("official capital city"), "{prompt}");

    // The v2 snapshot through an independent reader: provenance columns.
    if let Some(py) = python_with_pyarrow() {
        let script = r#"
import sys, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
rows = [r for r in t.to_pylist() if r["reviewer"] == "demo-script"]
print(len(t), len(rows), sorted(r["expected"] for r in rows)[0], all(r["source_request_id"] for r in rows))
"#;
        let o = Command::new(py)
            .args(["-c", script])
            .arg(dir.join("datasets/capitals/snapshots/v2.parquet"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", crate::support::stderr(&o));
        assert_eq!(stdout(&o).trim(), "18 6 Abuja True");
    }
}

/// A demo running in the background in a temp folder, its stdout lines
/// on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: String,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Running {
    /// None (after a SKIP line) without /proc, which the checks read.
    fn start() -> Option<Running> {
        if !external_tool(Path::new("/proc/self/stat").exists(), "no /proc") {
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("demo");
        let mut child = Command::new(bin())
            .args(demo_args(&dir, &[]))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Some(Running {
            child,
            lines,
            seen: String::new(),
            dir,
            _tmp: tmp,
        })
    }

    /// Reads lines until one contains `needle` (panics after 4 minutes or
    /// at the end of the output).
    fn wait_for(&mut self, needle: &str) {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(240)) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line.contains(needle) {
                        return;
                    }
                }
                Err(_) => panic!("no `{needle}` in the demo's output:\n{}", self.seen),
            }
        }
    }

    /// Sends `sig` (`-INT`, `-TERM`, `-KILL`) and waits for the exit (at
    /// most 2 minutes) and the rest of the output; returns the exit code.
    fn signal(&mut self, sig: &str) -> Option<i32> {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
        for _ in 0..1200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                }
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("the demo did not exit after {sig}:\n{}", self.seen);
    }

    /// SIGINT / SIGTERM: the demo says which step it stopped and exits 2.
    fn interrupt(&mut self, sig: &str) {
        let code = self.signal(sig);
        assert_eq!(code, Some(2), "{}", self.seen);
        assert!(
            self.seen.contains("interrupted during step"),
            "{}",
            self.seen
        );
    }

    /// Every `(pid N)` the demo printed: the children it started.
    fn child_pids(&self) -> Vec<u32> {
        self.seen
            .split("(pid ")
            .skip(1)
            .filter_map(|s| s.split(')').next()?.parse().ok())
            .collect()
    }

    /// Neither a child it printed nor any process naming its folder runs.
    fn assert_nothing_left(&self) {
        let pids = self.child_pids();
        assert!(!pids.is_empty(), "no child pid printed:\n{}", self.seen);
        for pid in pids {
            assert!(!running(pid), "child {pid} still runs:\n{}", self.seen);
        }
        let left = live_processes_naming(&self.dir);
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether the process of `/proc/PID` runs: it exists and is not a zombie
/// (which no longer runs and only waits for its new parent to reap it).
fn runs(proc_dir: &Path) -> bool {
    std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next())
            .is_some_and(|s| s != "Z")
    })
}

fn running(pid: u32) -> bool {
    runs(&Path::new("/proc").join(pid.to_string()))
}

/// Running processes whose command line names `dir`.
fn live_processes_naming(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = entry.path();
        let Ok(cmdline) = std::fs::read(p.join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) && runs(&p) {
            out.push(format!("{}: {cmdline}", p.display()));
        }
    }
    out
}

#[test]
fn ctrl_c_while_waiting_for_the_analyzer_stops_serve_and_leaves_nothing() {
    let Some(mut run) = Running::start() else {
        return;
    };
    run.wait_for("serve listening on http://");
    run.wait_for("[6/7]");
    run.interrupt("-INT");
    // serve drained and flushed: it said so, and its rows are readable.
    assert!(
        run.seen.contains("stopped (exit status: 0)"),
        "{}",
        run.seen
    );
    let logs = run.dir.join(".promptgate/logs");
    let rows = logstore::read_requests(&[logs], &RequestFilter::default()).unwrap();
    assert!(!rows.is_empty());
    run.assert_nothing_left();
}

#[test]
fn sigterm_during_the_check_leaves_nothing() {
    let Some(mut run) = Running::start() else {
        return;
    };
    run.wait_for("$ promptgate check");
    run.interrupt("-TERM");
    run.assert_nothing_left();
}

#[test]
fn a_killed_demo_takes_serve_down_with_it() {
    let Some(mut run) = Running::start() else {
        return;
    };
    run.wait_for("serve listening on http://");
    let serve = *run.child_pids().last().unwrap();
    assert!(running(serve));
    // SIGKILL: the demo cleans nothing up; serve sees its stdin close.
    assert_eq!(run.signal("-KILL"), None);
    for _ in 0..600 {
        if !running(serve) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!running(serve), "serve {serve} outlived the killed demo");
    let left = live_processes_naming(&run.dir);
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn without_exit_after_rollback_serve_runs_until_ctrl_c_then_exit_0() {
    let Some(mut run) = Running::start() else {
        return;
    };
    run.wait_for("Ctrl-C stops it");
    let addr = run
        .seen
        .split("serve keeps running at http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();
    // serve still answers after the demo's own steps are done.
    let health = std::net::TcpStream::connect(&addr);
    assert!(health.is_ok(), "{addr}: {health:?}");
    drop(health);
    assert_eq!(run.signal("-INT"), Some(0), "{}", run.seen);
    assert!(
        run.seen.contains("stopped (exit status: 0)"),
        "{}",
        run.seen
    );
    run.assert_nothing_left();
}
