#!/usr/bin/env bash
# Stops the LLM server started by scripts/start-llm.sh PORT (by its PID file).
#   usage: scripts/stop-llm.sh PORT
set -euo pipefail

PORT="${1:?usage: stop-llm.sh PORT}"
CACHE="${PROMPTGATE_CACHE:-$HOME/.cache/promptgate-ci}"
PIDF="$CACHE/llm-$PORT.pid"

if ! [ -f "$PIDF" ]; then
  echo "[stop-llm] no pid file for port $PORT ($PIDF); nothing to stop"
  exit 0
fi
PID="$(cat "$PIDF")"
if ! kill -0 "$PID" 2>/dev/null; then
  echo "[stop-llm] pid $PID (port $PORT) is not running"
  rm -f "$PIDF"
  exit 0
fi
# Guard against a recycled PID: only signal our launcher (scripts/llm_server.py).
if ! tr '\0' ' ' <"/proc/$PID/cmdline" 2>/dev/null | grep -q 'llm_server\.py'; then
  echo "[stop-llm] pid $PID is not scripts/llm_server.py; removing stale pid file" >&2
  rm -f "$PIDF"
  exit 0
fi
kill -TERM "$PID" 2>/dev/null || true
for _ in $(seq 1 50); do           # up to 10 s for a clean exit
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.2
done
if kill -0 "$PID" 2>/dev/null; then
  echo "[stop-llm] pid $PID did not exit on TERM; sending KILL" >&2
  kill -KILL "$PID" 2>/dev/null || true
fi
rm -f "$PIDF"
echo "[stop-llm] stopped server on port $PORT (pid $PID)"
