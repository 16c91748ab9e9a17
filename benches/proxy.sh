#!/usr/bin/env bash
# Proxy overhead: `promptgate serve` in front of the built-in mock-llm (a MOCK,
# not a real model) vs calling mock-llm directly, with the same load
# generator (oha) in the same run, request logging ON (Parquet, default
# flush settings of the scaffold).
#  (a) one connection, back-to-back keep-alive requests: added p50/p99.
#  (b) open loop at 100 and 1,000 req/s with latency correction: added p99.
#  (c) capacity: proxy pinned to core 0, mock + oha on core 1: req/s, p99.
#  Streaming time to first chunk (benches/proxy_probe.py), idle RSS, RSS
#  under load (VmHWM), start-up time to a healthy /healthz.
# Each of (a) and (b) runs non-streaming and streaming. About 4 minutes.
# Usage: benches/proxy.sh [--no-build]   (figures go to stdout and to
#        target/bench-proxy/results.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${PROMPTGATE_CACHE:-$HOME/.cache/promptgate-ci}"
oha="$cache/oha/bin/oha"
if [[ ! -x "$oha" ]]; then
  echo "installing oha into $cache/oha (a few minutes on 2 cores)" >&2
  cargo install oha --locked --root "$cache/oha"
fi
command -v taskset >/dev/null || { apt-get update -qq && apt-get install -y -qq util-linux; }
command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq; }
[[ "${1:-}" == "--no-build" ]] || cargo build --profile dist --quiet
# PROMPTGATE_BENCH_BIN measures another build (an A/B of two binaries).
bin="${PROMPTGATE_BENCH_BIN:-$PWD/target/dist/promptgate}"
probe="$PWD/benches/proxy_probe.py"
out="$PWD/target/bench-proxy"
mkdir -p "$out"
results="$out/results.txt"
: >"$results"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say() { echo "$*" | tee -a "$results"; }

MOCK=18931 SLOW=18932 PROXY=18933
# The mock is pinned to core 1 in every mode so the proxy's core 0 is its own.
start_mock() { # port token-delay-ms
  taskset -c 1 "$bin" mock-llm --listen "127.0.0.1:$1" --token-delay-ms "$2" >"$work/mock-$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q listening "$work/mock-$1.log" && return; sleep 0.05; done
  echo "mock-llm did not start" >&2; exit 1
}
start_mock $MOCK 0
mock_pid=${pids[0]}
# A mock with 5 ms between streamed words: time to first chunk is then
# distinguishable from time to the whole body.
start_mock $SLOW 5

repo="$work/repo"
"$bin" init "$repo" >/dev/null
cat >"$repo/promptgate.yaml" <<EOF
version: 1
providers:
  mock:
    kind: openai
    base_url: http://127.0.0.1:$MOCK
  slowmock:
    kind: openai
    base_url: http://127.0.0.1:$SLOW
models:
  small:
    provider: mock
    name: mock-model
    params: {temperature: 0}
  slow:
    provider: slowmock
    name: mock-model
    params: {temperature: 0}
logging:
  dir: .promptgate/logs
  flush_interval_ms: 1000
  on_full: block
server:
  listen: 127.0.0.1:$PROXY
EOF
sed 's/^id: capital$/id: capital-slow/; s/^model: small$/model: slow/' "$repo/prompts/capital.yaml" >"$repo/prompts/capital-slow.yaml"
(cd "$repo" && git add -A && git commit -qm "bench: mock providers")
(cd "$repo" && "$bin" validate >/dev/null)

# Same messages and parameters as the proxy renders from prompts/capital.yaml.
sys_msg="You are a concise geography assistant. Answer with the city name only."
direct_body() { # stream
  printf '{"model":"mock-model","messages":[{"role":"system","content":"%s"},{"role":"user","content":"What is the capital of Chile?"}],"temperature":0,"max_tokens":32,"stream":%s}' "$sys_msg" "$1"
}
proxy_body() { # prompt stream
  printf '{"model":"prompt:%s","variables":{"country":"Chile"},"stream":%s}' "$1" "$2"
}

start_proxy() { # taskset-cpus -> prints start-up ms
  python3 "$probe" startup "$work/serve.log" "$work/serve.pid" "http://127.0.0.1:$PROXY/healthz" -- \
    taskset -c "$1" "$bin" serve --repo "$repo" --listen "127.0.0.1:$PROXY"
}
stop_proxy() {
  local p
  p=$(cat "$work/serve.pid")
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.05; done
  kill -KILL "$p" 2>/dev/null || true
}
# CPU time (user+system, clock ticks) of a process: CPU per request does
# not depend on what else the shared machine runs, unlike req/s.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
rss() { awk -v k="$1:" '$1 == k {print $2 / 1024}' "/proc/$(cat "$work/serve.pid")/status"; }

ohaj() { # url body oha-args... -> JSON
  local url=$1 body=$2
  shift 2
  "$oha" --no-tui --output-format json -m POST -H 'content-type: application/json' -d "$body" "$@" "$url"
}
# Figures from oha's JSON, latencies in ms.
# Seconds -> milliseconds with 3 decimals (microsecond resolution).
ms() { jq "($1 * 1000000 | round) / 1000"; }
p50() { ms .latencyPercentiles.p50; }
p99() { ms .latencyPercentiles.p99; }
fb50() { ms .firstBytePercentiles.p50; }
fig() { jq -r "$1"; }
sub() { echo "$1 - $2" | bc -l | xargs printf '%.3f'; }

say "# benches/proxy.sh $(date -u +%FT%TZ)"
say "machine: $(nproc) cores, $(awk '/model name/ {sub(/.*: /, ""); print; exit}' /proc/cpuinfo), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
say "promptgate $(git rev-parse --short HEAD), $("$oha" --version)"

# Start-up: five cold starts, median.
starts=()
for _ in 1 2 3 4 5; do
  starts+=("$(start_proxy 0-1)")
  stop_proxy
done
say "start-up to healthy (ms, 5 runs): ${starts[*]}"
start_proxy 0-1 >/dev/null
sleep 1
say "idle RSS: $(rss VmRSS) MB"

D="http://127.0.0.1:$MOCK/v1/chat/completions"
P="http://127.0.0.1:$PROXY/v1/chat/completions"
for stream in false true; do
  db=$(direct_body $stream)
  pb=$(proxy_body capital $stream)
  # (a) one connection, back to back.
  ohaj "$D" "$db" -c 1 -n 300 >/dev/null # warm-up
  ohaj "$P" "$pb" -c 1 -n 300 >/dev/null
  ohaj "$D" "$db" -c 1 -n 4000 >"$out/a-direct-$stream.json"
  ohaj "$P" "$pb" -c 1 -n 4000 >"$out/a-proxy-$stream.json"
  [[ $stream == true ]] && say "(a) streaming, oha first byte p50: direct $(fb50 <"$out/a-direct-true.json") ms, proxy $(fb50 <"$out/a-proxy-true.json") ms"
  dp50=$(p50 <"$out/a-direct-$stream.json") dp99=$(p99 <"$out/a-direct-$stream.json")
  pp50=$(p50 <"$out/a-proxy-$stream.json") pp99=$(p99 <"$out/a-proxy-$stream.json")
  say "(a) stream=$stream 1 conn: direct p50 $dp50 p99 $dp99 ms; proxy p50 $pp50 p99 $pp99 ms; added p50 $(sub "$pp50" "$dp50") p99 $(sub "$pp99" "$dp99") ms (proxy statuses $(jq -c .statusCodeDistribution <"$out/a-proxy-$stream.json"))"
  # (b) open loop.
  for rate in 100 1000; do
    ohaj "$D" "$db" -c 32 -q $rate -z 8s --latency-correction >"$out/b-direct-$stream-$rate.json"
    ohaj "$P" "$pb" -c 32 -q $rate -z 8s --latency-correction >"$out/b-proxy-$stream-$rate.json"
    dp99=$(p99 <"$out/b-direct-$stream-$rate.json") pp99=$(p99 <"$out/b-proxy-$stream-$rate.json")
    dok=$(fig '.summary.successRate' <"$out/b-direct-$stream-$rate.json") pok=$(fig '.summary.successRate' <"$out/b-proxy-$stream-$rate.json")
    say "(b) stream=$stream $rate req/s: direct p99 $dp99 ms; proxy p99 $pp99 ms; added p99 $(sub "$pp99" "$dp99") ms (success $dok / $pok, proxy statuses $(jq -c .statusCodeDistribution <"$out/b-proxy-$stream-$rate.json"))"
  done
done
say "RSS after (a)+(b): $(rss VmRSS) MB, peak $(rss VmHWM) MB"

# Streaming time to first chunk: the slow mock sends a word every 5 ms.
tf_d=$(python3 "$probe" ttfb "127.0.0.1:$SLOW" /v1/chat/completions "$(direct_body true)" 300)
tf_p=$(python3 "$probe" ttfb "127.0.0.1:$PROXY" /v1/chat/completions "$(proxy_body capital-slow true)" 300)
echo "$tf_d" >"$out/ttfb-direct.json"
echo "$tf_p" >"$out/ttfb-proxy.json"
f3() { jq "(.$1 * 1000 | round) / 1000"; }
say "streaming first chunk (5 ms/word mock, 300 requests, 1 conn): direct p50 $(f3 first_p50_ms <<<"$tf_d") p99 $(f3 first_p99_ms <<<"$tf_d") ms; proxy p50 $(f3 first_p50_ms <<<"$tf_p") p99 $(f3 first_p99_ms <<<"$tf_p") ms; added p50 $(sub "$(f3 first_p50_ms <<<"$tf_p")" "$(f3 first_p50_ms <<<"$tf_d")") ms"
stop_proxy

# (c) capacity: proxy alone on core 0; mock and oha share core 1.
start_proxy 0 >/dev/null
for stream in false true; do
  ohaj "$P" "$(proxy_body capital $stream)" -c 64 -z 2s >/dev/null
  sp=$(cat "$work/serve.pid")
  t0=$(ticks "$sp") m0=$(ticks "$mock_pid")
  taskset -c 1 "$oha" --no-tui --output-format json -m POST -H 'content-type: application/json' \
    -d "$(proxy_body capital $stream)" -c 64 -z 10s "$P" >"$out/c-proxy-$stream.json"
  t1=$(ticks "$sp") m1=$(ticks "$mock_pid")
  n=$(jq '[.statusCodeDistribution[]] | add' <"$out/c-proxy-$stream.json")
  cpu_us=$(echo "($t1 - $t0) * 1000000 / $tck / $n" | bc -l | xargs printf '%.1f')
  mock_us=$(echo "($m1 - $m0) * 1000000 / $tck / $n" | bc -l | xargs printf '%.1f')
  say "(c) stream=$stream proxy on 1 core: $(fig '.summary.requestsPerSec | floor' <"$out/c-proxy-$stream.json") req/s, p99 $(p99 <"$out/c-proxy-$stream.json") ms, success $(fig '.summary.successRate' <"$out/c-proxy-$stream.json"); proxy CPU $cpu_us us/request (=> $(echo "1000000 / $cpu_us" | bc) req/s per core-second), mock CPU $mock_us us/request"
done
say "RSS under load: $(rss VmRSS) MB, peak $(rss VmHWM) MB"
# Reference: the mock alone with the same split (mock on core 0 would be
# unfair to it; here it shares core 1 with oha exactly as in (c)).
taskset -c 1 "$oha" --no-tui --output-format json -m POST -H 'content-type: application/json' \
  -d "$(direct_body false)" -c 64 -z 5s "$D" >"$out/c-direct.json"
say "(c) reference: mock-llm direct, mock + oha on core 1: $(fig '.summary.requestsPerSec | floor' <"$out/c-direct.json") req/s"
m=$(curl -s "http://127.0.0.1:$PROXY/metrics")
stop_proxy
py="${PROMPTGATE_PYTHON:-$cache/venv/bin/python}"
[[ -x "$py" ]] || py=python3
rows=$("$py" - "$repo/.promptgate/logs" <<'PY' 2>/dev/null || echo "?"
import sys, os
try:
    import pyarrow.parquet as pq
except ImportError:
    print("? (no pyarrow)"); sys.exit()
n = 0
for d, _, fs in os.walk(sys.argv[1] + "/requests"):
    for f in fs:
        if f.endswith(".parquet") and not f.startswith("."):
            n += pq.ParquetFile(os.path.join(d, f)).metadata.num_rows
print(n)
PY
)
say "request log rows written: $rows; dropped: $(echo "$m" | awk '/^promptgate_log_rows_dropped/ {print $2}')"
