//! `promptgate check` on real git repositories against `mock-llm`
//! (a mock, not a model: its rules answer the capital questions, and a
//! "degraded" prompt makes chosen countries get a wrong answer).

use std::process::{Command, Output};

use promptgate::mock_llm::{MockConfig, MockServer, parse_rules};

use crate::support::{Scaffold, bin, stderr, stdout, test_llm_url};

const GOOD: &str = "content: What is the capital of {{ country }}?";
const DEGRADED: &str = "content: What is the capital of {{ country }}? Be brief.";

/// Extra rows that make the scaffold's dataset 20 rows long.
const MORE_ROWS: &[(&str, &str, &str)] = &[
    ("pl", "Poland", "Warsaw"),
    ("se", "Sweden", "Stockholm"),
    ("no", "Norway", "Oslo"),
    ("fi", "Finland", "Helsinki"),
    ("ie", "Ireland", "Dublin"),
    ("ca", "Canada", "Ottawa"),
    ("au", "Australia", "Canberra"),
    ("ke", "Kenya", "Nairobi"),
];

/// (country, capital) of every row: the scaffold's and [`MORE_ROWS`].
fn countries() -> Vec<(String, String)> {
    super::scaffold_capitals()
        .into_iter()
        .chain(
            MORE_ROWS
                .iter()
                .map(|(_, c, e)| (c.to_string(), e.to_string())),
        )
        .collect()
}

/// Mock rules: the right capital for every country, except that the
/// degraded prompt's question about a country in `wrong` gets a wrong city.
pub(crate) fn rules(wrong: &[&str]) -> String {
    let mut out = String::new();
    for country in wrong {
        out.push_str(&format!(
            "- pattern: \"capital of {country}\\\\? Be brief\"\n  answer: \"Springfield\"\n"
        ));
    }
    for (country, city) in countries() {
        out.push_str(&format!(
            "- pattern: \"capital of {country}\\\\?\"\n  answer: \"{city}\"\n"
        ));
    }
    out
}

async fn mock(wrong: &[&str], quality: f64) -> MockServer {
    MockServer::start(MockConfig {
        rules: parse_rules(&rules(wrong)).unwrap(),
        quality,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// The scaffold with its provider pointed at the mock, committed; returns
/// the repository and that commit (the base of every PR below).
fn repo_for(mock: &MockServer) -> (Scaffold, String) {
    let s = Scaffold::new();
    s.edit("promptgate.yaml", "http://127.0.0.1:11434", &mock.url());
    let base = s.commit("Point the provider at mock-llm");
    (s, base)
}

/// Grows the dataset to 20 rows as snapshot v2 and points the suite at it.
fn twenty_rows(s: &Scaffold) -> String {
    let mut rows = s.read("datasets/capitals/rows.jsonl");
    for (id, country, city) in MORE_ROWS {
        rows.push_str(&format!(
            "{{\"id\": \"{id}\", \"country\": \"{country}\", \"expected\": \"{city}\"}}\n"
        ));
    }
    s.write("datasets/capitals/rows.jsonl", &rows);
    let o = s.run(&["dataset", "snapshot", "capitals"]);
    assert!(o.status.success(), "{}", stderr(&o));
    s.edit("evals/capitals.yaml", "capitals@v1", "capitals@v2");
    s.commit("Capitals dataset v2: 20 rows")
}

fn check(s: &Scaffold, base: &str, extra: &[&str]) -> Output {
    let mut args = vec!["check", "--base", base, "--head", "HEAD"];
    args.extend_from_slice(extra);
    s.run(&args)
}

fn check_json(s: &Scaffold, base: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let o = check(s, base, &args);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(&o), stderr(&o)));
    (o.status.code(), v)
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap().to_string())
        .collect()
}

fn gate<'a>(suite: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    suite["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == name)
        .unwrap_or_else(|| panic!("no gate {name}: {suite:#}"))
}

/// Replaces what changes from run to run (commits, timings, costs) so the
/// markdown can be compared with a snapshot.
fn normalise(md: &str) -> String {
    let subs = [
        (r"\b[0-9a-f]{40}\b", "<commit>"),
        (r"\b[0-9a-f]{12}\b", "<sha>"),
        (r"[+-]?\d+ ms", "<ms>"),
        (r"[+-]?\d+\.\d{4}\b", "<cost>"),
        // The cost change of the "Cost vs quality" line (priced on latency).
        (r"\([+-]\d+%\)", "(<pct>)"),
    ];
    subs.iter().fold(md.to_string(), |text, (re, to)| {
        regex::Regex::new(re)
            .unwrap()
            .replace_all(&text, *to)
            .into_owned()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_prompt_fails_and_names_the_regressed_cases() {
    let wrong = ["Spain", "Japan", "Russia", "China", "Egypt", "Greece"];
    let mock = mock(&wrong, 1.0).await;
    let (s, base) = repo_for(&mock);
    s.edit("prompts/capital.yaml", GOOD, DEGRADED);
    s.commit("Shorter answers");

    let o = check(&s, &base, &[]);
    let md = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{md}\n{}", stderr(&o));
    assert!(md.starts_with("<!-- promptgate-check -->\n"), "{md}");
    assert!(md.contains("promptgate check failed"), "{md}");
    assert!(md.contains("Went from pass to fail** (6 cases)"), "{md}");
    // Both outputs side by side, for a regressed case.
    assert!(md.contains("| `es` | Madrid | Springfield |"), "{md}");
    assert!(md.contains("prompt `prompts/capital.yaml` changed"), "{md}");
    insta::assert_snapshot!("check_degraded_markdown", normalise(&md));

    // The same check as JSON (served from the cache this time).
    let (code, v) = check_json(&s, &base, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(v["verdict"], "fail");
    let suite = &v["suites"][0];
    assert_eq!(suite["suite"], "capitals");
    let mut regressed = keys(&suite["regressed"]);
    regressed.sort();
    assert_eq!(regressed, vec!["cn", "eg", "es", "gr", "jp", "ru"]);
    // Dataset (key) order: `cn` first.
    assert_eq!(suite["regressed"][0]["base"]["output"], "Beijing");
    assert_eq!(suite["regressed"][0]["head"]["output"], "Springfield");
    assert!(keys(&suite["fixed"]).is_empty());
    assert_eq!(suite["base"]["passed"], 12);
    assert_eq!(suite["head"]["passed"], 6);
    let cmp = &suite["comparison"]["pass_rate"];
    assert_eq!(cmp["broke"], 6);
    assert!((cmp["delta"].as_f64().unwrap() + 0.5).abs() < 1e-9, "{cmp}");
    // 6 broken, 0 fixed: exact McNemar p = 1/64.
    assert!((cmp["p_worse"].as_f64().unwrap() - 1.0 / 64.0).abs() < 1e-9);
    assert_eq!(gate(suite, "regression")["pass"], false);
    assert_eq!(gate(suite, "regression")["significant"], true);
    // The gate's own test: Tango's score test of drop > 5 points, b = 6
    // broke, c = 0 fixed of 12 rows: Z = (5.4 - 1/2) / sqrt(12 * 0.4725).
    let t = &suite["comparison"]["drop_test"];
    assert_eq!(t["method"], "tango_score");
    assert_eq!(t["hypothesis"], "drop larger than 5.0 points");
    assert_eq!(t["alternative"], "drop_above");
    assert_eq!(t["rejected"], true);
    assert!((t["estimate"].as_f64().unwrap() - 0.5).abs() < 1e-9, "{t}");
    assert!(
        (t["statistic"].as_f64().unwrap() - 2.0578).abs() < 1e-3,
        "{t}"
    );
    let low = t["interval"]["low"].as_f64().unwrap();
    assert!(low > 0.05 && low < 0.5, "{t}");
    assert_eq!(gate(suite, "pass_rate")["pass"], false);
    assert_eq!(v["model_calls"], 24);
    assert_eq!(v["cache_hits"], 24);
    assert_eq!(v["base"]["commit"], base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_improved_prompt_passes_and_lists_the_fixed_cases() {
    let mock = mock(&["Spain", "Japan", "Italy"], 1.0).await;
    let (s, _) = repo_for(&mock);
    s.edit("prompts/capital.yaml", GOOD, DEGRADED);
    let base = s.commit("A worse prompt on main");
    s.edit("prompts/capital.yaml", DEGRADED, GOOD);
    s.commit("Back to the full question");

    let o = check(&s, &base, &[]);
    let md = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{md}\n{}", stderr(&o));
    assert!(md.contains("promptgate check passed"), "{md}");
    assert!(md.contains("**Fixed** (3 cases)"), "{md}");
    assert!(md.contains("| `jp` | Springfield | Tokyo |"), "{md}");
    assert!(!md.contains("Went from pass to fail"), "{md}");
}

#[test]
fn a_readme_only_change_passes_with_no_prompt_changes() {
    // Nothing is evaluated, so no provider is needed at all.
    let s = Scaffold::new();
    let base = s.commit("nothing");
    s.edit("README.md", "# Prompts under promptgate", "# Our prompts");
    s.commit("Reword the README");
    let o = check(&s, &base, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let md = stdout(&o);
    assert!(md.contains("no prompt changes"), "{md}");
    let (code, v) = check_json(&s, &base, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(v["verdict"], "no_changes");
    assert_eq!(v["changed_paths"], serde_json::json!(["README.md"]));
    assert_eq!(v["model_calls"], 0);
}

#[test]
fn a_broken_suite_cannot_run_and_exits_2() {
    let s = Scaffold::new();
    let base = s.commit("nothing");
    s.edit(
        "evals/capitals.yaml",
        "dataset: capitals@v1",
        "dataset: capitals@v1\nrepeats: 3",
    );
    s.commit("A typo in the suite");
    let o = check(&s, &base, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("evals/capitals.yaml:5"), "{err}");
    assert!(err.contains("repeats"), "{err}");
    assert!(stdout(&o).is_empty());

    // A suite named on the command line that does not exist: exit 2 too.
    let o = check(&s, &base, &["--suite", "nope"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn an_unreachable_provider_exits_2_with_the_reason() {
    let s = Scaffold::new();
    s.edit(
        "promptgate.yaml",
        "http://127.0.0.1:11434",
        "http://127.0.0.1:9",
    );
    let base = s.commit("A provider nobody listens on");
    s.edit("prompts/capital.yaml", GOOD, DEGRADED);
    s.commit("change");
    let o = check(&s, &base, &["--no-cache"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("unreachable") && err.contains("127.0.0.1:9"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_regressions_in_twenty_rows_are_not_significant_and_pass() {
    let mock = mock(&["France", "Kenya"], 1.0).await;
    let (s, _) = repo_for(&mock);
    let base = twenty_rows(&s);
    s.edit("prompts/capital.yaml", GOOD, DEGRADED);
    s.commit("Shorter answers");

    let (code, v) = check_json(&s, &base, &[]);
    let suite = &v["suites"][0];
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(suite["dataset"], "capitals@v2");
    assert_eq!(suite["head"]["cases"], 20);
    let mut regressed = keys(&suite["regressed"]);
    regressed.sort();
    assert_eq!(regressed, vec!["fr", "ke"]);
    let g = gate(suite, "regression");
    // A 10-point observed drop is over the 5-point allowance, but 2 broken
    // rows of 20 do not show that the true drop exceeds it (Tango's score
    // test, p = 0.313), so not blocking.
    assert_eq!(g["pass"], true, "{g}");
    assert_eq!(g["significant"], false);
    let note = g["note"].as_str().unwrap();
    assert!(
        note.starts_with(
            "drop larger than 5.0 points: p = 0.313 >= 0.050 (not shown, so not blocking)"
        ),
        "{g}"
    );
    assert!(note.contains("observed drop 10.0 pts, 90% CI"), "{g}");
    let p = suite["comparison"]["drop_test"]["p_value"]
        .as_f64()
        .unwrap();
    assert!((p - 0.3128).abs() < 1e-3, "{p}");

    let md = stdout(&check(&s, &base, &[]));
    assert!(
        md.contains("max drop 5.0 pts (not shown, p = 0.313)"),
        "{md}"
    );
    insta::assert_snapshot!("check_not_significant_markdown", normalise(&md));

    // The suite can ask for the observed drop alone to decide.
    s.edit(
        "evals/capitals.yaml",
        "confidence: 0.95",
        "confidence: 0.95\n    require_significance: false",
    );
    s.commit("Strict regression gate");
    let (code, v) = check_json(&s, &base, &[]);
    assert_eq!(code, Some(1), "{v:#}");
    let g = gate(&v["suites"][0], "regression");
    assert_eq!(g["pass"], false);
    assert!(
        g["note"]
            .as_str()
            .unwrap()
            .contains("significance not required: the observed drop exceeds 5.0 pts, blocking"),
        "{g}"
    );

    // `max_drop: 0` asks "significantly worse at all?": McNemar's statistic
    // (b - c - 1/2) / sqrt(b + c) = 1.5 / sqrt(2), p = 0.144: not shown.
    s.edit("evals/capitals.yaml", "max_drop: 0.05", "max_drop: 0");
    s.edit(
        "evals/capitals.yaml",
        "\n    require_significance: false",
        "",
    );
    s.commit("Any shown drop blocks");
    let (code, v) = check_json(&s, &base, &[]);
    assert_eq!(code, Some(0), "{v:#}");
    let g = gate(&v["suites"][0], "regression");
    assert!(
        g["note"]
            .as_str()
            .unwrap()
            .starts_with("drop larger than 0.0 points: p = 0.144"),
        "{g}"
    );

    // A confidence of 0.5 or less would test nothing: refused, with the place.
    s.edit("evals/capitals.yaml", "confidence: 0.95", "confidence: 0.5");
    s.commit("No confidence at all");
    let o = check(&s, &base, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("evals/capitals.yaml:") && err.contains("0.5"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_report_flaky_cases_and_pair_rows() {
    // quality 0.6: each draw keeps the right answer with probability 0.6;
    // repeats ask for different sampling seeds, so they are different draws.
    let mock = mock(&[], 0.6).await;
    let (s, base) = repo_for(&mock);
    s.edit("prompts/capital.yaml", GOOD, DEGRADED);
    s.commit("Shorter answers");

    let (code, v) = check_json(&s, &base, &["--repeat", "4"]);
    assert!(code == Some(0) || code == Some(1), "{v:#}");
    let suite = &v["suites"][0];
    assert_eq!(suite["repeat"], 4);
    assert_eq!(suite["head"]["cases"], 48);
    assert_eq!(suite["base"]["cases"], 48);
    let cmp = &suite["comparison"]["pass_rate"];
    // The paired unit is the row, not the repeat.
    assert_eq!(cmp["cases"], 12);
    let flaky = suite["flaky"].as_array().unwrap();
    assert!(!flaky.is_empty(), "no flaky case at quality 0.6: {suite:#}");
    for f in flaky {
        let frac = |s: &str| -> (u32, u32) {
            let (a, b) = s.split_once('/').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        };
        let head = frac(f["head"].as_str().unwrap());
        let base = frac(f["base"].as_str().unwrap());
        assert_eq!((head.1, base.1), (4, 4));
        let mixed = |(p, n): (u32, u32)| p > 0 && p < n;
        assert!(mixed(head) || mixed(base), "{f}");
    }
    let o = check(&s, &base, &["--repeat", "4"]);
    let md = stdout(&o);
    assert!(md.contains("× 4 repeats"), "{md}");
    assert!(md.contains("**Flaky**"), "{md}");
    assert!(
        md.contains("paired score test on per-row pass fractions"),
        "{md}"
    );
    assert_eq!(suite["comparison"]["drop_test"]["method"], "row_score");
    insta::assert_snapshot!("check_repeats_markdown", normalise(&md));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_head_commit_reuses_the_cached_base_side() {
    let mock = mock(&["Spain"], 1.0).await;
    let (s, base) = repo_for(&mock);
    s.edit("prompts/capital.yaml", GOOD, DEGRADED);
    s.commit("Shorter answers");
    let (_, first) = check_json(&s, &base, &[]);
    assert_eq!(first["suites"][0]["base"]["cache_hits"], 0);
    assert_eq!(first["suites"][0]["head"]["cache_hits"], 0);
    assert_eq!(first["cache_hits"], 0);

    // A second push to the PR: only the head prompt changes again.
    s.edit(
        "prompts/capital.yaml",
        "You are a concise geography assistant.",
        "You are a terse geography assistant.",
    );
    s.commit("Terser");
    let (_, second) = check_json(&s, &base, &[]);
    let suite = &second["suites"][0];
    assert_eq!(suite["base"]["cache_hits"], 12, "{suite:#}");
    assert_eq!(suite["head"]["cache_hits"], 0, "{suite:#}");
    assert_eq!(second["model_calls"], 24);
    assert_eq!(second["cache_hits"], 12);
    let md = stdout(&check(&s, &base, &[]));
    assert!(
        md.contains("Model calls: 24 (24 served from the response cache)."),
        "{md}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_is_appended_to_the_github_step_summary() {
    let mock = mock(&["Spain"], 1.0).await;
    let (s, base) = repo_for(&mock);
    s.edit("prompts/capital.yaml", GOOD, DEGRADED);
    s.commit("Shorter answers");
    let dir = tempfile::tempdir().unwrap();
    let summary = dir.path().join("summary.md");
    std::fs::write(&summary, "## an earlier step\n").unwrap();
    let md_file = dir.path().join("check.md");
    let o = Command::new(bin())
        .args([
            "check",
            "--base",
            &base,
            "--head",
            "HEAD",
            "--json",
            "--markdown",
        ])
        .arg(&md_file)
        .current_dir(s.root())
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let written = std::fs::read_to_string(&md_file).unwrap();
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(
        text.starts_with("## an earlier step\n<!-- promptgate-check -->\n"),
        "{text}"
    );
    assert!(text.ends_with(&format!("{written}\n")), "{text}");
    assert!(
        written.contains("| `es` | Madrid | Springfield |"),
        "{written}"
    );
    // --json still prints JSON on stdout.
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_model_entry_affects_the_suite_and_unrelated_config_does_not() {
    let mock = mock(&[], 1.0).await;
    let (s, base) = repo_for(&mock);
    s.edit(
        "promptgate.yaml",
        "listen: 127.0.0.1:8787",
        "listen: 127.0.0.1:8788",
    );
    s.commit("Move the proxy");
    let (code, v) = check_json(&s, &base, &[]);
    assert_eq!(
        (code, &v["verdict"]),
        (Some(0), &serde_json::json!("no_changes"))
    );
    assert_eq!(v["unaffected"], serde_json::json!(["capitals"]));

    s.edit(
        "promptgate.yaml",
        "temperature: 0\n      seed: 42",
        "temperature: 0\n      seed: 7",
    );
    s.commit("Another seed");
    let (code, v) = check_json(&s, &base, &[]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["verdict"], "pass");
    assert_eq!(
        v["suites"][0]["reasons"],
        serde_json::json!(["model `small` changed in promptgate.yaml"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_prompt_is_judged_by_the_absolute_gates_only() {
    let mock = mock(&[], 1.0).await;
    let (s, base) = repo_for(&mock);
    let prompt = s
        .read("prompts/capital.yaml")
        .replace("id: capital", "id: capital2");
    s.write("prompts/capital2.yaml", &prompt);
    let suite = s
        .read("evals/capitals.yaml")
        .replace("prompt: capital", "prompt: capital2");
    s.write("evals/capitals2.yaml", &suite);
    s.commit("A second prompt");
    let (code, v) = check_json(&s, &base, &[]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["unaffected"], serde_json::json!(["capitals"]));
    let suite = &v["suites"][0];
    assert_eq!(suite["suite"], "capitals2");
    assert!(suite["base"].is_null());
    assert!(suite["comparison"].is_null());
    assert!(
        suite["note"]
            .as_str()
            .unwrap()
            .contains("does not exist at base")
    );
    assert_eq!(gate(suite, "pass_rate")["pass"], true);
    assert!(
        gate(suite, "regression")["note"]
            .as_str()
            .unwrap()
            .contains("not applicable")
    );
    let md = stdout(&check(&s, &base, &[]));
    assert!(
        md.contains("> prompt `capital2` does not exist at base"),
        "{md}"
    );
    assert!(
        md.contains("Not affected by this change: `capitals`."),
        "{md}"
    );
}

/// A real LLM (SmolLM2-135M behind llama.cpp's OpenAI-compatible server,
/// started by scripts/test.sh) on both sides of a prompt change: the whole
/// path runs, every case is answered, and the report pairs all twelve rows.
#[test]
fn check_against_a_real_llm() {
    let Some(url) = test_llm_url() else {
        return;
    };
    let s = crate::eval::run_suite::scaffold_for("openai", &url, "smollm2");
    // The model answers in a sentence; only the city matters here.
    s.edit("evals/capitals.yaml", "    max: 60\n", "    max: 200\n");
    let base = s.commit("Allow sentence answers");
    s.edit(
        "prompts/capital.yaml",
        "Answer with the city name only.",
        "Answer with one word.",
    );
    s.commit("One-word answers");
    let (code, v) = check_json(&s, &base, &["--no-cache", "--concurrency", "1"]);
    assert!(code == Some(0) || code == Some(1), "{v:#}");
    let suite = &v["suites"][0];
    for side in ["base", "head"] {
        assert_eq!(suite[side]["cases"], 12, "{v:#}");
        assert_eq!(suite[side]["errors"], 0, "{v:#}");
        assert!(suite[side]["input_tokens"].as_u64().unwrap() > 0);
    }
    assert_eq!(suite["comparison"]["pass_rate"]["cases"], 12);
    assert_eq!(v["model_calls"], 24);
    assert_eq!(v["cache_hits"], 0);
}
