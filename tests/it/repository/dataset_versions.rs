//! `promptgate dataset snapshot|list|diff` and reading pinned versions,
//! against a scaffold made by `promptgate init`.

use std::path::Path;
use std::process::Output;

use promptgate::dataset::{DatasetError, read_snapshot};
use promptgate::repo::{GitRepo, WorkTree};
use promptgate::spec::dataset::DatasetRef;
use serde_json::Value;

use crate::support::{Scaffold, run_in, stderr, stdout};

const DS: &str = "datasets/capitals";

fn rows_path(root: &Path) -> std::path::PathBuf {
    root.join(DS).join("rows.jsonl")
}

fn edit_rows(root: &Path, f: impl FnOnce(String) -> String) {
    let p = rows_path(root);
    let text = std::fs::read_to_string(&p).expect("read rows");
    std::fs::write(&p, f(text)).expect("write rows");
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

fn snapshot_files(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join(DS).join("snapshots"))
        .expect("snapshots dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn init_commits_v1_and_validates() {
    let scaffold = Scaffold::new();
    let root = scaffold.root();
    assert_eq!(snapshot_files(&root), ["v1.parquet"]);
    let out = run_in(&root, &["validate"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // Committed: the tree at HEAD has both files.
    let git = GitRepo::open(&root).expect("open");
    let tree = git.tree_at("HEAD").expect("tree");
    let snap = read_snapshot(&tree, &"capitals@v1".parse::<DatasetRef>().expect("ref"))
        .expect("read v1 at HEAD");
    assert_eq!(snap.rows.len(), 12);
    assert_eq!(snap.rows[0]["id"], "at", "rows are in key order");
    assert_eq!(snap.schema.key, "id");
}

#[test]
fn snapshot_creates_versions_and_same_content_makes_none() {
    let scaffold = Scaffold::new();
    let root = scaffold.root();

    // Same content (reordered keys, extra whitespace, reordered rows): no new version.
    edit_rows(&root, |t| {
        let mut lines: Vec<String> = t
            .lines()
            .map(|l| {
                let v: serde_json::Map<String, Value> = serde_json::from_str(l).expect("row");
                let mut fields: Vec<String> = v
                    .iter()
                    .map(|(k, v)| format!("  {} :  {}", Value::String(k.clone()), v))
                    .collect();
                fields.reverse();
                format!("{{ {} }}", fields.join(" , "))
            })
            .collect();
        lines.reverse();
        lines.join("\n") + "\n\n"
    });
    let out = run_in(&root, &["dataset", "snapshot", "capitals"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("no new version"), "{}", stdout(&out));
    assert_eq!(snapshot_files(&root), ["v1.parquet"]);

    edit_rows(&root, |t| {
        t + "{\"id\": \"no\", \"country\": \"Norway\", \"expected\": \"Oslo\"}\n"
    });
    let out = run_in(&root, &["dataset", "snapshot", "capitals", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["outcome"], "created");
    assert_eq!(v["version"], 2);
    assert_eq!(v["rows"], 13);
    assert_eq!(v["file"], "snapshots/v2.parquet");
    assert_eq!(snapshot_files(&root), ["v1.parquet", "v2.parquet"]);

    let out = run_in(&root, &["dataset", "snapshot", "capitals", "--json"]);
    assert_eq!(json(&out)["outcome"], "unchanged");

    let out = run_in(&root, &["dataset", "list", "capitals", "--json"]);
    let v = json(&out);
    assert_eq!(v["versions"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["versions"][1]["intact"], true);
    assert_eq!(v["rows_jsonl"]["state"], "snapshotted");

    edit_rows(&root, |t| t.replace("Oslo", "Oslo!"));
    let out = run_in(&root, &["dataset", "list", "capitals"]);
    assert!(
        stdout(&out).contains("changes not yet snapshotted (since v2)"),
        "{}",
        stdout(&out)
    );
    let out = run_in(&root, &["validate"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn bad_lines_exit_1_name_line_and_column_and_write_nothing() {
    let scaffold = Scaffold::new();
    let root = scaffold.root();
    let lock_before = std::fs::read(root.join(DS).join("dataset.lock")).expect("lock");
    edit_rows(&root, |t| {
        t + "{\"id\": \"no\", \"country\": 47, \"expected\": \"Oslo\"}\n\
             {\"id\": \"se\", \"country\": \"Sweden\", \"expected\": \"Stockholm\", \"pop\": 10}\n\
             {\"id\": \"fr\", \"country\": \"France again\", \"expected\": \"Paris\"}\n"
    });
    let out = run_in(&root, &["dataset", "snapshot", "capitals"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("datasets/capitals/rows.jsonl:13: column `country`: expected string"),
        "{err}"
    );
    assert!(
        err.contains("rows.jsonl:14: column `pop`: unknown column"),
        "{err}"
    );
    assert!(
        err.contains("rows.jsonl:15: column `id`: duplicate key `fr` (first used on line 1)"),
        "{err}"
    );
    assert_eq!(snapshot_files(&root), ["v1.parquet"]);
    assert_eq!(
        std::fs::read(root.join(DS).join("dataset.lock")).expect("lock"),
        lock_before
    );
}

#[test]
fn tampered_snapshot_is_refused() {
    let scaffold = Scaffold::new();
    let root = scaffold.root();
    let v1 = root.join(DS).join("snapshots/v1.parquet");
    let mut bytes = std::fs::read(&v1).expect("v1");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&v1, &bytes).expect("tamper");
    edit_rows(&root, |t| {
        t + "{\"id\": \"no\", \"country\": \"Norway\", \"expected\": \"Oslo\"}\n"
    });

    let out = run_in(&root, &["dataset", "snapshot", "capitals"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("datasets/capitals/snapshots/v1.parquet (v1) was changed"),
        "{err}"
    );
    assert_eq!(snapshot_files(&root), ["v1.parquet"], "nothing written");

    let e = read_snapshot(&WorkTree::new(&root), &"capitals@v1".parse().expect("ref"))
        .expect_err("tampered");
    assert!(matches!(e, DatasetError::Integrity(_)), "{e}");

    let out = run_in(&root, &["dataset", "list", "capitals"]);
    assert!(
        stdout(&out).contains("CHANGED OR MISSING"),
        "{}",
        stdout(&out)
    );

    // Missing is refused too.
    std::fs::remove_file(&v1).expect("rm");
    let out = run_in(&root, &["dataset", "snapshot", "capitals"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
}

#[test]
fn unrecorded_snapshot_file_is_refused() {
    let scaffold = Scaffold::new();
    let root = scaffold.root();
    let snaps = root.join(DS).join("snapshots");
    std::fs::copy(snaps.join("v1.parquet"), snaps.join("v2.parquet")).expect("copy");
    edit_rows(&root, |t| t.replace("Paris", "Paris, France"));
    let out = run_in(&root, &["dataset", "snapshot", "capitals"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("v2.parquet is not recorded"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn diff_shows_added_removed_changed() {
    let scaffold = Scaffold::new();
    let root = scaffold.root();
    edit_rows(&root, |t| {
        t.lines()
            .filter(|l| !l.contains("\"de\""))
            .map(|l| l.replace("\"Paris\"", "\"Paris, France\""))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n{\"id\": \"no\", \"country\": \"Norway\", \"expected\": \"Oslo\"}\n"
    });
    let out = run_in(&root, &["dataset", "snapshot", "capitals"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = run_in(
        &root,
        &["dataset", "diff", "capitals", "v1", "v2", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["added"][0]["id"], "no");
    assert_eq!(v["added"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["removed"][0]["id"], "de");
    assert_eq!(v["removed"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["changed"][0]["key"], "fr");
    assert_eq!(v["changed"][0]["columns"]["expected"]["old"], "Paris");
    assert_eq!(
        v["changed"][0]["columns"]["expected"]["new"],
        "Paris, France"
    );
    assert_eq!(v["unchanged"], 10);

    let out = run_in(&root, &["dataset", "diff", "capitals", "1", "2"]);
    let text = stdout(&out);
    assert!(
        text.contains("1 added, 1 removed, 1 changed, 10 unchanged"),
        "{text}"
    );
    assert!(
        text.contains("expected: \"Paris\" -> \"Paris, France\""),
        "{text}"
    );

    let out = run_in(&root, &["dataset", "diff", "capitals", "v1", "v9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no version v9"), "{}", stderr(&out));
}

#[test]
fn reading_at_an_old_commit_returns_the_old_rows() {
    let scaffold = Scaffold::new();
    let root = scaffold.root();
    let git = GitRepo::open(&root).expect("open");
    let first = git.resolve("HEAD").expect("head").to_string();

    // v2 changes a row and is committed; the working tree then moves on again.
    edit_rows(&root, |t| t.replace("\"Rome\"", "\"Roma\""));
    let out = run_in(&root, &["dataset", "snapshot", "capitals"]);
    assert!(out.status.success(), "{}", stderr(&out));
    scaffold.commit("capitals v2");
    edit_rows(&root, |t| t.replace("\"Roma\"", "\"Rome?\""));

    let v1: DatasetRef = "capitals@v1".parse().expect("ref");
    let v2: DatasetRef = "capitals@v2".parse().expect("ref");
    let old = git.tree_at(&first).expect("old tree");
    let rows_v1 = read_snapshot(&old, &v1).expect("v1 at old commit");
    let it = |s: &promptgate::dataset::Snapshot| {
        s.rows
            .iter()
            .find(|r| r["id"] == "it")
            .map(|r| r["expected"].clone())
    };
    assert_eq!(it(&rows_v1), Some(Value::from("Rome")));
    let e = read_snapshot(&old, &v2).expect_err("v2 did not exist then");
    assert!(e.to_string().contains("no version v2"), "{e}");

    let head = git.tree_at("HEAD").expect("head tree");
    let rows_v2 = read_snapshot(&head, &v2).expect("v2 at head");
    assert_eq!(it(&rows_v2), Some(Value::from("Roma")));
    // v1 at HEAD still reads exactly what v1 read at the old commit.
    assert_eq!(read_snapshot(&head, &v1).expect("v1 at head"), rows_v1);
}
