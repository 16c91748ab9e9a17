//! `promptgate compare` on the real model (SmolLM2 through llama.cpp, set
//! up by scripts/test.sh): two prompt variants (the suite's and a terse
//! one on a branch) x two `max_tokens` settings on the capitals suite.

use crate::support::{Scaffold, stderr, stdout, test_llm_url};

#[test]
fn two_prompts_by_two_max_tokens_on_the_real_model() {
    let Some(url) = test_llm_url() else {
        return;
    };
    let s = Scaffold::new();
    s.edit("promptgate.yaml", "kind: ollama", "kind: openai");
    s.edit("promptgate.yaml", "http://127.0.0.1:11434", &url);
    let main = s.commit("Point the provider at the test LLM");
    let git = git2::Repository::open(s.root()).unwrap();
    let head = git.head().unwrap().peel_to_commit().unwrap();
    git.branch("prompt/terse", &head, false).unwrap();
    git.set_head("refs/heads/prompt/terse").unwrap();
    git.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
        .unwrap();
    s.edit(
        "prompts/capital.yaml",
        "content: You are a concise geography assistant. Answer with the city name only.",
        "content: Reply with one word.",
    );
    s.commit("A terser prompt");
    git.set_head("refs/heads/main")
        .or_else(|_| git.set_head("refs/heads/master"))
        .unwrap();
    git.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
        .unwrap();
    assert_eq!(s.head_commit(), main);

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
