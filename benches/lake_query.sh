#!/usr/bin/env bash
# The log lake benchmark (issue 18): a synthetic lake of ROWS request rows
# (default 10,000,000) on local disk, written by benches/lake_gen.rs through
# the real request logger; then, side by side in one run, the same group-by
# (per prompt, variant and hour: count, error rate, p95 latency, mean cost)
# by `promptgate logs query` (DataFusion) and by DuckDB on the same files,
# alternating, REPS times each; then `canary analyze` over the lake with its
# peak RSS (GNU time). Prints one line per run and the medians.
#
# Usage: benches/lake_query.sh [DIR] [ROWS] [REPS]
# Needs: a release build (`cargo build --release`), scripts/setup-lake.sh --bench
# (DuckDB in the test venv), /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-/tmp/promptgate-lake-bench}"
ROWS="${2:-10000000}"
REPS="${3:-5}"
CACHE="${PROMPTGATE_CACHE:-$HOME/.cache/promptgate-ci}"
PY="$CACHE/venv/bin/python"
BIN="${CARGO_TARGET_DIR:-target}/release/promptgate"

[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
if [ ! -d "$DIR/requests" ]; then
  cargo bench --bench lake_gen -- "$DIR" "$ROWS"
fi
echo "lake: $(find "$DIR/requests" -name '*.parquet' | wc -l) files, $(du -sh "$DIR/requests" | cut -f1)"

# The same query text for both engines (DuckDB's quantile_cont and
# DataFusion's approx_percentile_cont differ: each engine's usual p95).
SQL_DF="SELECT prompt_id, variant, date_trunc('hour', ts) AS hour, count(*) AS n,
  avg(CASE WHEN status <> 'ok' THEN 1.0 ELSE 0.0 END) AS error_rate,
  approx_percentile_cont(latency_ms, 0.95) AS p95_ms, avg(cost) AS mean_cost
  FROM requests GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
SQL_DUCK="SELECT prompt_id, variant, date_trunc('hour', ts) AS hour, count(*) AS n,
  avg(CASE WHEN status <> 'ok' THEN 1.0 ELSE 0.0 END) AS error_rate,
  quantile_cont(latency_ms, 0.95) AS p95_ms, avg(cost) AS mean_cost
  FROM read_parquet('$DIR/requests/*/*.parquet', hive_partitioning = true) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"

now() { date +%s.%N; }
df_times=(); duck_times=()
for i in $(seq 1 "$REPS"); do
  t0=$(now); "$BIN" logs query "$SQL_DF" --logs "$DIR" --format csv >/tmp/lake-bench-df.csv; t1=$(now)
  "$PY" - "$SQL_DUCK" >/tmp/lake-bench-duck.csv <<'PYEOF'
import sys, duckdb
con = duckdb.connect()
con.sql(sys.argv[1]).write_csv("/dev/stdout")
PYEOF
  t2=$(now)
  d=$(echo "$t1 - $t0" | bc); k=$(echo "$t2 - $t1" | bc)
  df_times+=("$d"); duck_times+=("$k")
  echo "rep $i: promptgate logs query ${d}s, duckdb ${k}s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mdf=$(median "${df_times[@]}"); mduck=$(median "${duck_times[@]}")
echo "median: promptgate ${mdf}s, duckdb ${mduck}s, ratio $(echo "scale=2; $mdf / $mduck" | bc)"
echo "groups: promptgate $(($(wc -l </tmp/lake-bench-df.csv) - 1)), duckdb $(($(wc -l </tmp/lake-bench-duck.csv) - 1))"

# canary analyze over the lake: needs a repository with a canary; a scaffold
# whose rollout names the generator's commits' variants is enough.
REPO=$(mktemp -d)
"$BIN" init "$REPO/repo" >/dev/null
( cd "$REPO/repo" && git checkout -q -b prompt/v2 && git checkout -q - &&
  cat >rollout.yaml <<'YEOF'
stable: refs/heads/main
canary:
  ref: refs/heads/prompt/v2
  weight: 10
analysis:
  min_requests: 200
  checks:
    - metric: error_rate
      max_increase: 0.01
    - metric: latency_p95_ms
      max_increase_pct: 20
  on_regression: alert
  on_success: hold
YEOF
  # The window starts at the canary's commit: date it before the rows.
  old="$(date -u -d '8 days ago' +%Y-%m-%dT%H:%M:%SZ)"
  GIT_AUTHOR_DATE="$old" GIT_COMMITTER_DATE="$old" \
    git -c user.name=b -c user.email=b@example.com commit -qam "canary" )
/usr/bin/time -v "$BIN" canary analyze --repo "$REPO/repo" --logs "$DIR" --json \
  >/tmp/lake-bench-canary.json 2>/tmp/lake-bench-canary.time || true
grep -E "Elapsed|Maximum resident" /tmp/lake-bench-canary.time
rm -rf "$REPO"
