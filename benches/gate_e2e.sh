#!/usr/bin/env bash
# End-to-end block rate of the PR gate through the real binary, against two
# `promptgate mock-llm`s (MOCKS, not real models).
#
# Per trial: a base mock with --quality 0.85 and a head mock with --quality
# 0.81 (a true 4-point drop), fresh --seed values per trial; a scaffolded
# repository with 1,000 capital questions whose base commit points the
# model's provider at the base mock and whose head commit points it at the
# head mock; `promptgate check --no-cache --json` with the scaffold's gate
# (max_drop 0.05, confidence 0.95; its pass_rate floor lowered to 0.5 so
# that the regression gate alone decides). A trial "blocks" when check
# exits 1 (the script checks that the regression gate is what failed).
# The mock keeps a matched rule's right answer with probability --quality,
# drawn from a hash of (seed, model, messages): each row passes or fails
# independently on each side, with no per-row difficulty.
#
# When PROMPTGATE_OLD_BIN names another build (e.g. one of main before the
# change), the same trial's check runs with it too: same repository, same
# mocks, so the same answers.
#
# Usage: benches/gate_e2e.sh [TRIALS] [ROWS] [FIRST]   (defaults 40, 1000, 1)
#   FIRST: start at that trial number (each trial's seeds depend only on it)
#   PROMPTGATE_BENCH_BIN  binary to test (default: target/debug/promptgate, built)
#   PROMPTGATE_OLD_BIN    optional second binary, run on the same trials
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-40}
rows=${2:-1000}
first=${3:-1}
base_quality=0.85
head_quality=0.81
if [[ -z "${PROMPTGATE_BENCH_BIN:-}" ]]; then
  cargo build --quiet --bin promptgate
  PROMPTGATE_BENCH_BIN="$PWD/target/debug/promptgate"
fi
bin=$PROMPTGATE_BENCH_BIN
old=${PROMPTGATE_OLD_BIN:-}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

start_mock() { # name quality seed -> sets $url (not in a subshell: $pids must see the pid)
  # A log of its own: the shell truncates a reused one only once the child
  # runs, so the wait below could read the previous trial's address.
  local log="$work/$1-$3.log"
  "$bin" mock-llm --listen 127.0.0.1:0 --rules "$work/rules.yaml" \
    --quality "$2" --seed "$3" >"$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    if grep -q 'listening on' "$log"; then
      url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1)
      return
    fi
    sleep 0.05
  done
  echo "mock-llm did not start: $(cat "$log")" >&2
  exit 2
}

stop_mocks() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}

# One rule answers every question right; --quality replaces it with a
# fixed wrong answer ("I am not sure." ...) at the given rate.
cat >"$work/rules.yaml" <<'YAML'
- pattern: "capital of Country (\\d+)\\?"
  answer: "City $1"
YAML

repo="$work/repo"
"$bin" init "$repo" >/dev/null
python3 - "$repo/datasets/capitals/rows.jsonl" "$rows" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write(json.dumps({"id": f"r{i:06d}", "country": f"Country {i:06d}", "expected": f"City {i:06d}"}) + "\n")
PY
sed -i "s/capitals@v1/capitals@v2/" "$repo/evals/capitals.yaml"
# The scaffold's absolute floor (pass_rate min 0.8) would block head at 0.81
# often on its own; lowered so that only the regression gate decides.
sed -i "s/min: 0.8$/min: 0.5/" "$repo/evals/capitals.yaml"
grep -q 'min: 0.5' "$repo/evals/capitals.yaml"
git_c() { git -C "$repo" -c user.name=bench -c user.email=bench@localhost "$@"; }
(cd "$repo" && "$bin" dataset snapshot capitals >/dev/null)
git_c add -A
git_c commit -qm "bench rows"
grep -q 'max_drop: 0.05' "$repo/evals/capitals.yaml"
grep -q 'confidence: 0.95' "$repo/evals/capitals.yaml"

# Reads check's JSON: "<exit> <observed drop> <p of the gate's test or ->".
summarise() { # exit-code json-file
  python3 - "$1" "$2" <<'PY'
import json, sys
code, path = sys.argv[1], sys.argv[2]
v = json.load(open(path))
c = v["suites"][0]["comparison"]
drop = -c["pass_rate"]["delta"]
t = c.get("drop_test")
p = f'{t["p_value"]:.4f}' if t else "-"
gates = {g["gate"]: g["pass"] for g in v["suites"][0]["gates"]}
assert gates["pass_rate"], f"the pass_rate floor failed: {gates}"
assert (code == "1") == (not gates["regression"]), f"exit {code} but gates {gates}"
print(code, f"{drop:.4f}", p)
PY
}

new_blocks=0
old_blocks=0
printf 'trial  seeds        observed-drop  new: exit p    %s\n' "${old:+old: exit}"
for t in $(seq "$first" "$trials"); do
  base_seed=$((1000 + 2 * t))
  head_seed=$((1001 + 2 * t))
  start_mock base "$base_quality" "$base_seed"
  base_url=$url
  start_mock head "$head_quality" "$head_seed"
  head_url=$url
  sed -i -E "s#base_url: http://127.0.0.1:[0-9]+#base_url: $base_url#" "$repo/promptgate.yaml"
  git_c commit -qam "trial $t: base at the base mock"
  base=$(git_c rev-parse HEAD)
  sed -i -E "s#base_url: http://127.0.0.1:[0-9]+#base_url: $head_url#" "$repo/promptgate.yaml"
  git_c commit -qam "trial $t: head at the head mock"

  set +e
  "$bin" check --repo "$repo" --base "$base" --head HEAD --no-cache --json --concurrency 16 >"$work/new.json" 2>"$work/new.err"
  code=$?
  set -e
  [[ $code == 0 || $code == 1 ]] || { echo "check could not run: $(cat "$work/new.err")" >&2; exit 2; }
  read -r _ drop p <<<"$(summarise "$code" "$work/new.json")"
  new_blocks=$((new_blocks + code))
  line="$(printf '%5d  %5d/%-5d  %13s  %9d %-6s' "$t" "$base_seed" "$head_seed" "$drop" "$code" "$p")"
  if [[ -n "$old" ]]; then
    set +e
    "$old" check --repo "$repo" --base "$base" --head HEAD --no-cache --json --concurrency 16 >"$work/old.json" 2>"$work/old.err"
    ocode=$?
    set -e
    [[ $ocode == 0 || $ocode == 1 ]] || { echo "old check could not run: $(cat "$work/old.err")" >&2; exit 2; }
    summarise "$ocode" "$work/old.json" >/dev/null
    old_blocks=$((old_blocks + ocode))
    line="$line  $(printf '%9d' "$ocode")"
  fi
  echo "$line"
  stop_mocks
done
echo
echo "rows $rows, base quality $base_quality, head quality $head_quality (true drop $(python3 -c "print(round($base_quality - $head_quality, 4))")), max_drop 0.05, confidence 0.95"
ran=$((trials - first + 1))
echo "new gate ($bin): blocked $new_blocks of $ran (trials $first-$trials)"
[[ -z "$old" ]] || echo "old gate ($old): blocked $old_blocks of $ran (trials $first-$trials)"
