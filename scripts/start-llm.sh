#!/usr/bin/env bash
# Starts the real small LLM (SmolLM2-135M-Instruct via llama-cpp-python's
# OpenAI-compatible server) on 127.0.0.1:PORT in the background and waits until
# GET /v1/models answers. Run scripts/setup-llm.sh first.
#   usage: scripts/start-llm.sh PORT [extra llama_cpp.server args...]
# Log: $PROMPTGATE_CACHE/llm-PORT.log, PID: $PROMPTGATE_CACHE/llm-PORT.pid
# Env: PROMPTGATE_CACHE, PROMPTGATE_LLM_THREADS (default 1: steadier when tests/cargo share the 2 cores),
#      PROMPTGATE_LLM_CHAT_FORMAT (default chatml; auto = GGUF template), PROMPTGATE_LLM_WAIT (s, default 120)
set -euo pipefail

PORT="${1:?usage: start-llm.sh PORT [extra server args...]}"
shift
case "$PORT" in *[!0-9]*|'') echo "[start-llm] bad port: $PORT" >&2; exit 2 ;; esac

CACHE="${PROMPTGATE_CACHE:-$HOME/.cache/promptgate-ci}"
VPY="$CACHE/venv/bin/python"
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
LOG="$CACHE/llm-$PORT.log"
PIDF="$CACHE/llm-$PORT.pid"
THREADS="${PROMPTGATE_LLM_THREADS:-1}"
CHAT_FORMAT="${PROMPTGATE_LLM_CHAT_FORMAT:-chatml}"
WAIT="${PROMPTGATE_LLM_WAIT:-120}"
URL="http://127.0.0.1:$PORT/v1/models"

[ -x "$VPY" ] || { echo "[start-llm] no venv at $CACHE/venv: run scripts/setup-llm.sh" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "[start-llm] no model at $MODEL: run scripts/setup-llm.sh" >&2; exit 1; }

answers() { curl -fsS -m 2 -o /dev/null "$URL" 2>/dev/null; }

if [ -f "$PIDF" ] && tr '\0' ' ' <"/proc/$(cat "$PIDF")/cmdline" 2>/dev/null | grep -q 'llama_cpp.server'; then
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

# "auto" = no --chat_format: llama-cpp-python then uses the GGUF's embedded
# tokenizer.chat_template (for SmolLM2 that is ChatML too).
FMT_ARGS=()
[ "$CHAT_FORMAT" = auto ] || FMT_ARGS=(--chat_format "$CHAT_FORMAT")

# Own session (setsid) so it outlives this script and the caller's job control.
setsid "$VPY" -m llama_cpp.server \
  --model "$MODEL" --model_alias smollm2 \
  --host 127.0.0.1 --port "$PORT" \
  --n_ctx 2048 --n_threads "$THREADS" --n_threads_batch "$THREADS" \
  "${FMT_ARGS[@]}" "$@" \
  </dev/null >"$LOG" 2>&1 &
PID=$!
echo "$PID" >"$PIDF"

deadline=$(( $(date +%s) + WAIT ))
until answers; do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "[start-llm] server exited before answering; log tail ($LOG):" >&2
    tail -n 30 "$LOG" >&2
    rm -f "$PIDF"
    exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "[start-llm] server did not answer $URL within ${WAIT}s; log tail ($LOG):" >&2
    tail -n 30 "$LOG" >&2
    kill "$PID" 2>/dev/null || true
    rm -f "$PIDF"
    exit 1
  fi
  sleep 0.5
done
echo "[start-llm] up on http://127.0.0.1:$PORT/v1 (pid $PID, model smollm2, chat_format $CHAT_FORMAT, log $LOG)"
