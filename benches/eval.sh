#!/usr/bin/env bash
# Eval throughput against the built-in mock-llm (a MOCK, not a real model).
#  1. 10,000 cases, zero latency, concurrency 64: cases/s.
#  2. 5,000 cases with 50 ms latency at concurrency 8, 32, 128: cases/s vs
#     the ideal concurrency/latency (at 128 that is 39 rounds of 50 ms; with
#     1,000 cases the fixed cost of the process was a tenth of the run).
#  3. Whole-process time of `eval` on a 200-case suite (hyperfine).
# Usage: benches/eval.sh [--no-build] (builds the `dist` profile: LTO, ~15 min the first time)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null && command -v bc >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine bc; }
[[ "${1:-}" == "--no-build" ]] || cargo build --profile dist --quiet
bin="$PWD/target/dist/promptgate"
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

start_mock() { # port latency
  "$bin" mock-llm --listen "127.0.0.1:$1" --latency-ms "$2" >"$work/mock-$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do grep -q listening "$work/mock-$1.log" && return; sleep 0.1; done
  echo "mock-llm did not start" >&2; exit 1
}

make_repo() { # dir port rows
  "$bin" init "$1" >/dev/null
  sed -i "s#http://127.0.0.1:11434#http://127.0.0.1:$2#" "$1/promptgate.yaml"
  python3 - "$1/datasets/capitals/rows.jsonl" "$3" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write(json.dumps({"id": f"r{i:06d}", "country": f"Country {i}", "expected": f"Country {i}"}) + "\n")
PY
  sed -i "s/capitals@v1/capitals@v2/" "$1/evals/capitals.yaml"
  (cd "$1" && "$bin" dataset snapshot capitals >/dev/null && git add -A && git commit -qm "bench rows")
}

elapsed_eval() { # dir concurrency -> seconds
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$1" && "$bin" eval capitals --no-cache --json --concurrency "$2" >"$work/summary.json")
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

start_mock 18801 0
start_mock 18802 50
make_repo "$work/big" 18801 10000
make_repo "$work/lat" 18802 5000
make_repo "$work/small" 18801 200

s=$(elapsed_eval "$work/big" 64)
printf '10000 cases, 0 ms, concurrency 64: %.2f s, %.0f cases/s\n' "$s" "$(echo "10000 / $s" | bc -l)"
for c in 8 32 128; do
  s=$(elapsed_eval "$work/lat" "$c")
  rate=$(echo "5000 / $s" | bc -l)
  ideal=$(echo "$c / 0.05" | bc -l)
  calls=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["cases_per_s"])' "$work/summary.json")
  printf '5000 cases, 50 ms, concurrency %s: whole process %.0f cases/s = %.0f%% of %.0f; calls alone (summary cases_per_s) %.0f = %.0f%%\n' \
    "$c" "$rate" "$(echo "100 * $rate / $ideal" | bc -l)" "$ideal" "$calls" "$(echo "100 * $calls / $ideal" | bc -l)"
done
cd "$work/small"
hyperfine -i --warmup 2 --runs 10 -N "$bin eval capitals --no-cache --json"
