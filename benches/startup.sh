#!/usr/bin/env bash
# Whole-process time of `promptgate validate` and `promptgate render` on a
# fresh scaffold (start-up cost users feel on every command and in CI).
# Usage: benches/startup.sh   (installs hyperfine from Debian if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine; }
cargo build --release --quiet
bin="$PWD/target/release/promptgate"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" init "$work/repo" >/dev/null
cd "$work/repo"
hyperfine --warmup 5 --runs 50 -N \
  "$bin validate" \
  "$bin validate --ref HEAD" \
  "$bin render capital --var country=Chile" \
  "$bin --version"
