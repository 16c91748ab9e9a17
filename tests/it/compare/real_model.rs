//! `promptgate compare` on the real model (SmolLM2 through llama.cpp, set
//! up by scripts/test.sh): two prompt variants (the suite's and a terse
//! one on a branch) x two `max_tokens` settings on the capitals suite.

use crate::support::{stderr, stdout, test_llm_url};

#[test]
fn two_prompts_by_two_max_tokens_on_the_real_model() {
    let Some(url) = test_llm_url() else {
        return;
    };
    let s = crate::eval::run_suite::scaffold_for("openai", &url, "smollm2");
    // The model answers in a sentence; only the city matters here.
    s.edit("evals/capitals.yaml", "    max: 60\n", "    max: 200\n");
    const SYSTEM: &str =
        "content: You are a concise geography assistant. Answer with the city name only.";
    s.edit(
        "prompts/capital.yaml",
        SYSTEM,
        "content: Reply with one word.",
    );
    let terse = s.commit("A terser prompt");
    let git = git2::Repository::open(s.root()).unwrap();
    let commit = git
        .find_commit(git2::Oid::from_str(&terse).unwrap())
        .unwrap();
    git.branch("prompt/terse", &commit, false).unwrap();
    s.edit(
        "prompts/capital.yaml",
        "content: Reply with one word.",
        SYSTEM,
    );
    s.commit("Back to the suite's prompt");

    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("compare.md");
    let html = dir.path().join("compare.html");
    let o = s.run(&[
        "compare",
        "capitals",
        "--prompt-ref",
        "HEAD",
        "--prompt-ref",
        "prompt/terse",
        "--param",
        "max_tokens=4,32",
        "--json",
        "--markdown",
        md.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cands = r["candidates"].as_array().unwrap();
    assert_eq!(cands.len(), 4, "{r:#}");
    for c in cands {
        // The self-hosted model is priced per second of measured latency.
        assert!(c["cost_per_1k"].as_f64().unwrap() > 0.0, "{c:#}");
        assert!(c["latency_p95_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(c["error_rate"], 0.0, "{c:#}");
    }
    // Four tokens cannot hold a sentence: the short setting never writes
    // more than its limit.
    for label in ["HEAD · max_tokens=4", "prompt/terse · max_tokens=4"] {
        let c = cands.iter().find(|c| c["label"] == label).unwrap();
        assert!(c["output_tokens"].as_f64().unwrap() <= 4.0, "{c:#}");
    }
    let best = r["best"].as_str().unwrap();
    assert!(cands.iter().any(|c| c["label"] == best));
    assert!(!r["frontier"].as_array().unwrap().is_empty());
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("**Recommendation:**"));
    eprintln!("{text}");
    if let Ok(out) = std::env::var("PROMPTGATE_COMPARE_EXAMPLE_DIR") {
        std::fs::copy(&md, std::path::Path::new(&out).join("compare.md")).unwrap();
        std::fs::copy(&html, std::path::Path::new(&out).join("compare.html")).unwrap();
    }
}
