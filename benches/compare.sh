#!/usr/bin/env bash
# `promptgate compare` against the built-in mock-llm (a MOCK, not a real
# model) at 0 ms latency: 6 candidates (3 models x max_tokens=64,256) x
# 1,000 cases, whole process (start-up, 6 runs, 6 Parquet results, reports).
#  1. --no-cache: every call goes to the mock;
#  2. cache cold: every call goes to the mock and fills the response cache;
#  3. cache warm: every call is answered by the cache (the re-run case).
# Each timed RUNS times; min / median / max printed.
# Usage: benches/compare.sh [--no-build] [PROFILE] (default profile: release)
set -euo pipefail
cd "$(dirname "$0")/.."
build=1
[[ "${1:-}" == "--no-build" ]] && { build=0; shift; }
profile="${1:-release}"
[[ $build == 1 ]] && cargo build --profile "$profile" --quiet --bin promptgate
bin="${CARGO_TARGET_DIR:-$PWD/target}/$profile/promptgate"
runs="${RUNS:-5}"
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

port=18883
"$bin" mock-llm --listen "127.0.0.1:$port" --latency-ms 0 >"$work/mock.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$work/mock.log" && break; sleep 0.1; done

"$bin" init "$work/repo" >/dev/null
cd "$work/repo"
python3 - "$port" <<'PY'
import json, sys
port = sys.argv[1]
with open("datasets/capitals/rows.jsonl", "w") as f:
    for i in range(1000):
        f.write(json.dumps({"id": f"r{i:06d}", "country": f"Country {i}", "expected": f"Country {i}"}) + "\n")
models = "".join(
    f"  {name}:\n    provider: local\n    name: {name}\n    params:\n      temperature: 0\n"
    f"    price:\n      input_per_mtok: {p}\n      output_per_mtok: {4 * p}\n"
    for name, p in [("large", 10), ("mid", 2), ("tiny", 0.1)]
)
open("promptgate.yaml", "w").write(
    f"version: 1\nproviders:\n  local:\n    kind: ollama\n    base_url: http://127.0.0.1:{port}\nmodels:\n{models}"
)
PY
sed -i "s/capitals@v1/capitals@v2/; s/model: small/model: mid/" evals/capitals.yaml prompts/capital.yaml
"$bin" dataset snapshot capitals >/dev/null
git add -A && git commit -qm "bench rows" && cd - >/dev/null

args=(compare capitals --model large --model mid --model tiny --param max_tokens=64,256 --json --html "$work/r.html")
time_once() { # extra args... -> seconds
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$work/repo" && "$bin" "${args[@]}" "$@" >"$work/out.json")
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
stats() { sort -n | awk '{a[NR]=$1} END {printf "min %.3f s  median %.3f s  max %.3f s  (%d runs)\n", a[1], a[int((NR+1)/2)], a[NR], NR}'; }

echo "6 candidates x 1,000 cases, mock-llm at 0 ms, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf 'no cache:   '; for _ in $(seq "$runs"); do time_once --no-cache; done | stats
printf 'cache cold: '; for _ in $(seq "$runs"); do rm -rf "$work/repo/.promptgate/cache"; time_once; done | stats
printf 'cache warm: '; for _ in $(seq "$runs"); do time_once; done | stats
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("last run:", len(r["candidates"]), "candidates,", r["model_calls"], "calls,", r["cache_hits"], "from the cache")' "$work/out.json"
