#!/usr/bin/env bash
# Installs the S3-compatible server the log lake tests run against: moto in
# server mode (PyPI `moto[server]`, pinned), into the test venv that
# scripts/setup-llm.sh made ($PROMPTGATE_CACHE/venv, default
# ~/.cache/promptgate-ci/venv), so tests start it with $PROMPTGATE_PYTHON
# -m moto.server on 127.0.0.1. Pure Python wheels: seconds, nothing compiled.
# Idempotent: a second run only checks the stamp.
# `--bench` also installs DuckDB for benches/lake_query.sh.
set -euo pipefail

MOTO_VERSION=5.2.5
DUCKDB_VERSION=1.4.4

CACHE="${PROMPTGATE_CACHE:-$HOME/.cache/promptgate-ci}"
VPY="$CACHE/venv/bin/python"
log() { printf '[setup-lake] %s\n' "$*"; }

[ -x "$VPY" ] || { log "no venv at $CACHE/venv: run scripts/setup-llm.sh first" >&2; exit 1; }

want="moto=$MOTO_VERSION"
pkgs=("moto[server]==$MOTO_VERSION")
if [ "${1:-}" = "--bench" ]; then
  want="$want duckdb=$DUCKDB_VERSION"
  pkgs+=("duckdb==$DUCKDB_VERSION")
fi
MARKER="$CACHE/venv/.promptgate-lake-stamp"
if [ -f "$MARKER" ] && grep -q "^$want" "$MARKER"; then
  log "ok: $(cat "$MARKER")"
  exit 0
fi
log "installing ${pkgs[*]}"
"$VPY" -m pip install --quiet --disable-pip-version-check "${pkgs[@]}"
"$VPY" -c 'import moto.server, boto3' || { log "moto did not import" >&2; exit 1; }
echo "$want" >"$MARKER"
log "ok: $want"
