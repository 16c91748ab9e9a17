//! `promptgate check` on pull requests that change a dataset (real git
//! repositories, `mock-llm`: a mock, not a model). Its rules answer the
//! scaffold's prompt right for the scaffold's countries and with the
//! largest city, not the capital, for four countries the grown dataset
//! adds; a fixed prompt asking for the official capital gets them right.

use std::process::Output;

use promptgate::mock_llm::{MockConfig, MockServer, parse_rules};

use crate::support::{Scaffold, stderr, stdout};

const GOOD: &str = "content: What is the capital of {{ country }}?";
const FIXED: &str = "content: What is the official capital city of {{ country }}?";

/// Rows the grown dataset adds: (key, country, capital, the wrong answer
/// the scaffold's prompt gets; None: it gets the capital).
const NEW_ROWS: &[(&str, &str, &str, Option<&str>)] = &[
    ("au", "Australia", "Canberra", Some("Sydney")),
    ("br", "Brazil", "Brasilia", Some("Rio de Janeiro")),
    ("ca", "Canada", "Ottawa", Some("Toronto")),
    ("ke", "Kenya", "Nairobi", None),
    ("tr", "Turkey", "Ankara", Some("Istanbul")),
];

fn all_countries() -> Vec<(String, String)> {
    super::scaffold_capitals()
        .into_iter()
        .chain(
            NEW_ROWS
                .iter()
                .map(|(_, c, e, _)| (c.to_string(), e.to_string())),
        )
        .collect()
}

async fn mock() -> MockServer {
    let mut rules = String::new();
    for (country, city) in all_countries() {
        rules.push_str(&format!(
            "- pattern: \"official capital city of {country}\\\\?\"\n  answer: \"{city}\"\n"
        ));
    }
    for (_, country, _, wrong) in NEW_ROWS {
        if let Some(w) = wrong {
            rules.push_str(&format!(
                "- pattern: \"capital of {country}\\\\?\"\n  answer: \"{w}\"\n"
            ));
        }
    }
    for (country, city) in all_countries() {
        rules.push_str(&format!(
            "- pattern: \"capital of {country}\\\\?\"\n  answer: \"{city}\"\n"
        ));
    }
    MockServer::start(MockConfig {
        rules: parse_rules(&rules).unwrap(),
        quality: 1.0,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// The scaffold pointed at the mock (and the suite's extra YAML), committed.
fn repo_for(mock: &MockServer, suite_extra: &str) -> (Scaffold, String) {
    let s = Scaffold::new();
    s.edit("promptgate.yaml", "http://127.0.0.1:11434", &mock.url());
    if !suite_extra.is_empty() {
        let suite = s.read("evals/capitals.yaml");
        s.write("evals/capitals.yaml", &format!("{suite}{suite_extra}"));
    }
    let base = s.commit("Point the provider at mock-llm");
    (s, base)
}

/// Appends the new rows to rows.jsonl (not snapshotted).
fn add_rows(s: &Scaffold) {
    let mut rows = s.read("datasets/capitals/rows.jsonl");
    for (id, country, city, _) in NEW_ROWS {
        rows.push_str(&format!(
            "{{\"id\": \"{id}\", \"country\": \"{country}\", \"expected\": \"{city}\"}}\n"
        ));
    }
    s.write("datasets/capitals/rows.jsonl", &rows);
}

/// The new rows as snapshot v2 with the suite moved to it (not committed).
fn grow_to_v2(s: &Scaffold) {
    add_rows(s);
    let o = s.run(&["dataset", "snapshot", "capitals"]);
    assert!(o.status.success(), "{}", stderr(&o));
    s.edit("evals/capitals.yaml", "capitals@v1", "capitals@v2");
}

fn check(s: &Scaffold, base: &str, extra: &[&str]) -> Output {
    let mut args = vec!["check", "--base", base, "--head", "HEAD"];
    args.extend_from_slice(extra);
    s.run(&args)
}

fn check_json(s: &Scaffold, base: &str) -> (Option<i32>, serde_json::Value) {
    let o = check(s, base, &["--json"]);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(&o), stderr(&o)));
    (o.status.code(), v)
}

fn gate<'a>(suite: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    suite["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == name)
        .unwrap_or_else(|| panic!("no gate {name}: {suite:#}"))
}

fn failing_keys(dc: &serde_json::Value) -> Vec<&str> {
    dc["new_failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_only_change_with_new_failing_rows_warns_and_passes() {
    let mock = mock().await;
    let (s, base) = repo_for(&mock, "");
    grow_to_v2(&s);
    s.commit("capitals v2: five reviewed rows");

    let o = check(&s, &base, &[]);
    let md = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{md}\n{}", stderr(&o));
    assert!(
        md.contains("promptgate check passed with 1 warning"),
        "{md}"
    );
    assert!(
        md.contains(
            "**Dataset change only:** `capitals@v1` → `capitals@v2` (5 rows added, 0 changed, 0 removed)"
        ),
        "{md}"
    );
    assert!(md.contains("compares the 12 rows common to both"), "{md}");
    assert!(
        md.contains("warning: gate `pass_rate` fails on capitals@v2: 76.5% (limit >= 80.0%)"),
        "{md}"
    );
    assert!(
        md.contains("**New rows the prompt fails** (4 of 5)"),
        "{md}"
    );
    assert!(
        md.contains(
            "| `au` | expected: Canberra | Sydney | `icontains`: output does not contain &quot;Canberra&quot;"
        ) || md.contains("| `au` | expected: Canberra | Sydney | `icontains`: output does not contain \"Canberra\""),
        "{md}"
    );
    assert!(md.contains("⚠️ fail (warning) min 80.0%"), "{md}");

    let (code, v) = check_json(&s, &base);
    assert_eq!(code, Some(0));
    assert_eq!(v["verdict"], "pass");
    let suite = &v["suites"][0];
    // The unchanged prompt on the old version (12 rows) and the new (17).
    assert_eq!(suite["base"]["dataset"], "capitals@v1");
    assert_eq!(suite["base"]["cases"], 12);
    assert_eq!(suite["base"]["passed"], 12);
    assert_eq!(suite["head"]["dataset"], "capitals@v2");
    assert_eq!(suite["head"]["cases"], 17);
    assert_eq!(suite["head"]["passed"], 13);
    let dc = &suite["dataset_change"];
    assert_eq!(dc["from"], "capitals@v1");
    assert_eq!(dc["to"], "capitals@v2");
    assert_eq!(dc["on_dataset_change"], "warn");
    assert_eq!(dc["rows_added"], 5);
    assert_eq!(dc["rows_common"], 12);
    assert_eq!(dc["new_passing"], 1);
    assert_eq!(failing_keys(dc), vec!["au", "br", "ca", "tr"]);
    let au = &dc["new_failures"][0];
    assert_eq!(au["change"], "added");
    assert_eq!(au["expected"], serde_json::json!({"expected": "Canberra"}));
    assert_eq!(au["output"], "Sydney");
    assert_eq!(au["failed_assertions"][0]["name"], "icontains");
    assert!(
        au["failed_assertions"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("Canberra"),
        "{au}"
    );
    // The absolute gate failed on v2 and warns; the regression gate ran on
    // the 12 common rows and passes.
    let pass_rate = gate(suite, "pass_rate");
    assert_eq!(pass_rate["pass"], false);
    assert_eq!(pass_rate["warning"], true);
    let regression = gate(suite, "regression");
    assert_eq!(regression["pass"], true);
    assert_eq!(suite["comparison"]["drop_test"]["rows"], 12);
    assert!(suite["regressed"].as_array().unwrap().is_empty());
    assert_eq!(dc["warnings"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_only_change_blocks_when_the_suite_says_so() {
    let mock = mock().await;
    let (s, base) = repo_for(&mock, "on_dataset_change: block\n");
    grow_to_v2(&s);
    s.commit("capitals v2: five reviewed rows");

    let (code, v) = check_json(&s, &base);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["verdict"], "fail");
    let suite = &v["suites"][0];
    let dc = &suite["dataset_change"];
    assert_eq!(dc["on_dataset_change"], "block");
    assert_eq!(failing_keys(dc), vec!["au", "br", "ca", "tr"]);
    assert!(dc["warnings"].as_array().unwrap().is_empty());
    let pass_rate = gate(suite, "pass_rate");
    assert_eq!(pass_rate["pass"], false);
    assert!(pass_rate.get("warning").is_none(), "{pass_rate}");
    let md = stdout(&check(&s, &base, &[]));
    assert!(md.contains("promptgate check failed"), "{md}");
    assert!(md.contains("absolute gates on `capitals@v2` block"), "{md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_fix_is_judged_on_the_new_version_as_usual() {
    let mock = mock().await;
    let (s, base) = repo_for(&mock, "");
    grow_to_v2(&s);
    let dataset_pr = s.commit("capitals v2: five reviewed rows");
    s.edit("prompts/capital.yaml", GOOD, FIXED);
    s.commit("capital: ask for the official capital");

    // The fix after the dataset PR merged: both sides on v2.
    let (code, v) = check_json(&s, &dataset_pr);
    assert_eq!(code, Some(0), "{v:#}");
    let suite = &v["suites"][0];
    assert!(suite.get("dataset_change").is_none(), "{suite:#}");
    assert_eq!(suite["base"]["dataset"], "capitals@v2");
    assert_eq!(suite["base"]["passed"], 13);
    assert_eq!(suite["head"]["passed"], 17);
    let mut fixed: Vec<&str> = suite["fixed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    fixed.sort();
    assert_eq!(fixed, vec!["au", "br", "ca", "tr"]);

    // Dataset and prompt in one PR: the usual gate on v2, and it says so.
    let (code, v) = check_json(&s, &base);
    assert_eq!(code, Some(0), "{v:#}");
    let suite = &v["suites"][0];
    assert!(suite.get("dataset_change").is_none(), "{suite:#}");
    assert_eq!(suite["base"]["dataset"], "capitals@v2");
    assert_eq!(suite["base"]["cases"], 17);
    assert_eq!(suite["base"]["passed"], 13);
    assert_eq!(suite["fixed"].as_array().unwrap().len(), 4);
    assert!(
        suite["note"]
            .as_str()
            .unwrap()
            .contains("the dataset and the prompt changed together"),
        "{suite:#}"
    );
    assert_eq!(gate(suite, "pass_rate")["pass"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_change_on_the_new_version_still_blocks_a_regression() {
    let mock = mock().await;
    let (s, base) = repo_for(&mock, "");
    grow_to_v2(&s);
    s.commit("capitals v2");
    // Fails every old row: the usual gate blocks even in warn mode, which
    // only concerns dataset-only changes.
    s.edit(
        "prompts/capital.yaml",
        GOOD,
        "content: Capital of {{ country }}, please.",
    );
    s.commit("a broken prompt");
    let (code, v) = check_json(&s, &base);
    assert_eq!(code, Some(1), "{v:#}");
    assert!(v["suites"][0].get("dataset_change").is_none());
    assert_eq!(gate(&v["suites"][0], "regression")["pass"], false);
}

#[test]
fn an_unsnapshotted_rows_edit_at_head_is_a_clear_error() {
    let s = Scaffold::new();
    let base = s.commit("nothing");
    add_rows(&s);
    s.commit("rows added by hand, no snapshot");
    let o = check(&s, &base, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("dataset `capitals` at head (HEAD)")
            && err.contains(
                "datasets/capitals/rows.jsonl was edited but not snapshotted: its rows are not those of the latest snapshot v1"
            )
            && err.contains("promptgate dataset snapshot capitals"),
        "{err}"
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn a_snapshot_missing_at_head_is_a_clear_error() {
    let s = Scaffold::new();
    let base = s.commit("nothing");
    grow_to_v2(&s);
    // The snapshot file was not committed (forgotten `git add`).
    std::fs::remove_file(s.path("datasets/capitals/snapshots/v2.parquet")).unwrap();
    s.commit("capitals v2 without its snapshot");
    let o = check(&s, &base, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    // The loader of head's repository names the lock's line.
    assert!(
        err.contains("head (HEAD) is not a valid promptgate repository")
            && err.contains("datasets/capitals/dataset.lock:15:9")
            && err.contains(
                "snapshot file `datasets/capitals/snapshots/v2.parquet` of v2 is missing"
            ),
        "{err}"
    );
    // Said once, not once per level of the error's chain.
    assert_eq!(err.matches("dataset.lock:15:9").count(), 1, "{err}");
}

#[test]
fn a_snapshot_edited_at_head_is_a_clear_error() {
    let s = Scaffold::new();
    let base = s.commit("nothing");
    grow_to_v2(&s);
    let path = s.path("datasets/capitals/snapshots/v1.parquet");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.push(0);
    std::fs::write(&path, bytes).unwrap();
    s.commit("capitals v2, and v1's file changed");
    let o = check(&s, &base, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("dataset `capitals` at head (HEAD)")
            && err.contains(
                "datasets/capitals/snapshots/v1.parquet (v1) was changed after it was recorded"
            ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suite_changed_beyond_its_dataset_version_gets_the_usual_gate() {
    let mock = mock().await;
    let (s, base) = repo_for(&mock, "");
    grow_to_v2(&s);
    // The suite's assertions changed too: not a dataset-only change, so
    // both sides run on v2 and the failing pass-rate gate blocks.
    s.edit("evals/capitals.yaml", "max: 60", "max: 80");
    s.commit("capitals v2 and a looser length limit");
    let (code, v) = check_json(&s, &base);
    assert_eq!(code, Some(1), "{v:#}");
    let suite = &v["suites"][0];
    assert!(suite.get("dataset_change").is_none(), "{suite:#}");
    assert_eq!(suite["base"]["cases"], 17);
    assert_eq!(gate(suite, "pass_rate")["pass"], false);
    assert!(gate(suite, "pass_rate").get("warning").is_none());
}
