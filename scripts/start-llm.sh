#!/usr/bin/env bash
# Starts the real small LLM (SmolLM2-135M-Instruct behind llama.cpp's
# OpenAI-compatible server, run in-process by xllamacpp: scripts/llm_server.py)
# on 127.0.0.1:PORT in the background, model name `smollm2`, and waits until
# GET /v1/models answers and the launcher has checked the chat template.
# Run scripts/setup-llm.sh first.
#   usage: scripts/start-llm.sh PORT
# Log: $PROMPTGATE_CACHE/llm-PORT.log, PID: $PROMPTGATE_CACHE/llm-PORT.pid
# Env: PROMPTGATE_CACHE, PROMPTGATE_LLM_THREADS (default 1: steadier when tests/cargo share the 2 cores),
#      PROMPTGATE_LLM_WAIT (s, default 120)
set -euo pipefail

PORT="${1:?usage: start-llm.sh PORT}"
case "$PORT" in *[!0-9]*|'') echo "[start-llm] bad port: $PORT" >&2; exit 2 ;; esac

CACHE="${PROMPTGATE_CACHE:-$HOME/.cache/promptgate-ci}"
VPY="$CACHE/venv/bin/python"
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
LAUNCHER="$(cd "$(dirname "$0")" && pwd)/llm_server.py"
LOG="$CACHE/llm-$PORT.log"
PIDF="$CACHE/llm-$PORT.pid"
THREADS="${PROMPTGATE_LLM_THREADS:-1}"
WAIT="${PROMPTGATE_LLM_WAIT:-120}"
URL="http://127.0.0.1:$PORT/v1/models"

[ -x "$VPY" ] || { echo "[start-llm] no venv at $CACHE/venv: run scripts/setup-llm.sh" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "[start-llm] no model at $MODEL: run scripts/setup-llm.sh" >&2; exit 1; }

answers() { curl -fsS -m 2 -o /dev/null "$URL" 2>/dev/null; }
ours() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q 'llm_server\.py'; }

if [ -f "$PIDF" ] && ours "$(cat "$PIDF")"; then
  if answers; then
    echo "[start-llm] already running on 127.0.0.1:$PORT (pid $(cat "$PIDF"))"
    exit 0
  fi
  echo "[start-llm] stale server pid $(cat "$PIDF") on port $PORT does not answer; stopping it" >&2
  "$(dirname "$0")/stop-llm.sh" "$PORT" || true
fi
if answers; then
  echo "[start-llm] something else already answers on 127.0.0.1:$PORT" >&2
  exit 1
fi

# Own session (setsid) so it outlives this script and the caller's job control.
setsid "$VPY" "$LAUNCHER" \
  --model "$MODEL" --alias smollm2 \
  --host 127.0.0.1 --port "$PORT" \
  --ctx 2048 --threads "$THREADS" \
  </dev/null >"$LOG" 2>&1 &
PID=$!
echo "$PID" >"$PIDF"

# The launcher prints its ready line after checking the chat template, which
# it can only do once the server answers.
ready() { answers && grep -q '^\[llm_server\] ready' "$LOG"; }
deadline=$(( $(date +%s) + WAIT ))
until ready; do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "[start-llm] server exited before it was ready; log tail ($LOG):" >&2
    tail -n 30 "$LOG" >&2
    rm -f "$PIDF"
    exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "[start-llm] server was not ready on $URL within ${WAIT}s; log tail ($LOG):" >&2
    tail -n 30 "$LOG" >&2
    kill "$PID" 2>/dev/null || true
    rm -f "$PIDF"
    exit 1
  fi
  sleep 0.2
done
echo "[start-llm] up on http://127.0.0.1:$PORT/v1 (pid $PID, model smollm2, threads $THREADS, log $LOG)"
