//! `promptgate eval` end to end against `mock-llm` (labelled a
//! mock in every answer) and, in CI, against a real llama.cpp server.

use std::process::Command;

use promptgate::mock_llm::{MockConfig, MockServer, parse_rules};

use crate::support::{Scaffold, python_with_pyarrow, stderr, test_llm_url};

/// Answers the scaffold's capital questions; `wrong` lists countries whose
/// answer is wrong.
fn capital_rules(wrong: &[&str]) -> String {
    let mut rules = String::new();
    for line in Scaffold::new().read("datasets/capitals/rows.jsonl").lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let country = row["country"].as_str().unwrap();
        let city = if wrong.contains(&country) {
            "Springfield"
        } else {
            row["expected"].as_str().unwrap()
        };
        rules.push_str(&format!(
            "- pattern: \"capital of {country}\\\\?\"\n  answer: \"{city}\"\n"
        ));
    }
    rules
}

/// A scaffold whose provider is `url` (kind `kind`), committed.
pub(crate) fn scaffold_for(kind: &str, url: &str, model: &str) -> Scaffold {
    let s = Scaffold::new();
    s.edit("promptgate.yaml", "kind: ollama", &format!("kind: {kind}"));
    s.edit("promptgate.yaml", "http://127.0.0.1:11434", url);
    s.edit(
        "promptgate.yaml",
        "name: llama3.2:1b",
        &format!("name: \"{model}\""),
    );
    s.commit("Point the provider at the test server");
    s
}

fn eval_json(s: &Scaffold, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut args = vec!["eval", "capitals", "--json"];
    args.extend_from_slice(extra);
    let o = s.run(&args);
    let v = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    (o.status.code(), v, stderr(&o))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_scores_cases_caches_and_writes_parquet() {
    let rules = parse_rules(&capital_rules(&["Spain", "Japan"])).unwrap();
    let mock = MockServer::start(MockConfig {
        rules,
        ..Default::default()
    })
    .await
    .unwrap();
    let s = scaffold_for("ollama", &mock.url(), "mock-model");
    let (code, v, err) = eval_json(&s, &[]);
    // 10 of 12 right: above the suite's 0.8 floor.
    assert_eq!(code, Some(0), "{err}\n{v:#}");
    assert_eq!(v["cases"], 12);
    assert_eq!(v["passed"], 10);
    assert_eq!(v["errors"], 0);
    assert_eq!(v["cache_hits"], 0);
    assert_eq!(v["gates"][0]["gate"], "pass_rate");
    assert_eq!(v["gates"][0]["pass"], true);
    assert!(v["latency_p95_ms"].as_f64().unwrap() >= 0.0);
    // The calls' wall time and the rate derived from it.
    let duration_ms = v["duration_ms"].as_f64().unwrap();
    assert!(duration_ms > 0.0, "{v:#}");
    let rate = v["cases_per_s"].as_f64().unwrap();
    assert!(
        (rate - 12.0 / (duration_ms / 1000.0)).abs() < 1e-6 * rate,
        "{v:#}"
    );
    assert!(
        v["cost_total"].as_f64().unwrap() > 0.0,
        "per-second price gives a cost"
    );
    let results = v["results_file"].as_str().unwrap().to_string();
    // Results are for people to read: the mode of an ordinary new file, not
    // a temporary file's 0600 (regression).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::File::create(&plain).unwrap();
        let results_mode = mode(std::path::Path::new(&results));
        assert_eq!(results_mode, mode(&plain) & 0o644, "{results_mode:o}");
    }

    // Unchanged suite with the model gone: every answer from the cache.
    drop(mock);
    let (code, v2, err) = eval_json(&s, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v2["cache_hits"], 12);
    assert_eq!(v2["passed"], 10);
    // --no-cache must call the model, which is gone.
    let (code, _, err) = eval_json(&s, &["--no-cache"]);
    assert_eq!(code, Some(2), "{err}");

    // The results file, read by an independent reader.
    if let Some(py) = python_with_pyarrow() {
        let o = Command::new(py)
            .args(["scripts/check_parquet.py", &results, "--expect-rows", "12"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // And by the parquet crate: per-assertion columns, the failed rows.
    let file = std::fs::File::open(&results).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batch = reader.map(|b| b.unwrap()).next().unwrap();
    let schema = batch.schema();
    for col in [
        "run_id",
        "prompt_version",
        "commit",
        "dataset",
        "row_key",
        "messages",
        "output",
        "pass",
        "latency_ms",
        "cost",
        "assert_icontains_score",
        "assert_icontains_pass",
        "assert_max_length_pass",
    ] {
        assert!(schema.field_with_name(col).is_ok(), "missing column {col}");
    }
    let keys = batch
        .column_by_name("row_key")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .unwrap();
    let pass = batch
        .column_by_name("pass")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::BooleanArray>()
        .unwrap();
    let failed: Vec<&str> = (0..batch.num_rows())
        .filter(|i| !pass.value(*i))
        .map(|i| keys.value(i))
        .collect();
    assert_eq!(failed, vec!["es", "jp"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_cases_do_not_abort_but_an_unreachable_provider_does() {
    // Every answer wrong: the run completes, the gate fails with exit 1.
    let rules = parse_rules("- pattern: \".*\"\n  answer: \"no idea\"\n").unwrap();
    let mock = MockServer::start(MockConfig {
        rules,
        ..Default::default()
    })
    .await
    .unwrap();
    let s = scaffold_for("openai", &mock.url(), "mock-model");
    let (code, v, err) = eval_json(&s, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(v["cases"], 12);
    assert_eq!(v["passed"], 0);
    assert_eq!(v["gates"][0]["pass"], false);

    // Nothing listens here: exit 2 with a clear message, no results file.
    let dead = scaffold_for("openai", "http://127.0.0.1:9", "mock-model");
    let (code, _, err) = eval_json(&dead, &["--no-cache"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unreachable"), "{err}");
    assert!(err.contains("127.0.0.1:9"), "{err}");
}

/// A real LLM (SmolLM2-135M behind llama.cpp's OpenAI-compatible server,
/// started by scripts/test.sh). Measured: 10 of 12 capitals right,
/// deterministic at temperature 0; the floor leaves one answer of slack.
#[test]
fn eval_against_a_real_llm() {
    let Some(url) = test_llm_url() else {
        return;
    };
    let s = scaffold_for("openai", &url, "smollm2");
    // The model answers in a sentence; only the city matters here.
    s.edit("evals/capitals.yaml", "    max: 60\n", "    max: 200\n");
    s.commit("Allow sentence answers");
    let (code, v, err) = eval_json(&s, &["--no-cache", "--concurrency", "1"]);
    assert!(code == Some(0) || code == Some(1), "{err}");
    assert_eq!(v["cases"], 12, "{err}\n{v:#}");
    assert_eq!(v["errors"], 0, "{v:#}");
    let passed = v["passed"].as_u64().unwrap();
    assert!(passed >= 9, "real model passed only {passed}/12: {v:#}");
    assert!(
        v["input_tokens"].as_u64().unwrap() > 0,
        "usage from the server"
    );
}
