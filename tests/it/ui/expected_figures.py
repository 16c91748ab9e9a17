"""The overview's figures per prompt and variant, computed from the request
log's Parquet files by pyarrow (an independent reader) and the feedback
journal by the json module, formatted as the dashboard shows them.

Usage: expected_figures.py LOG_DIR SINCE_EPOCH_SECONDS  -> JSON on stdout.
"""
import glob
import json
import math
import os
import sys

import pyarrow.parquet as pq

log_dir, since = sys.argv[1], float(sys.argv[2])
rows = []
for path in sorted(glob.glob(os.path.join(log_dir, "requests", "date=*", "*.parquet"))):
    rows.extend(pq.read_table(path).to_pylist())
feedback = {}
for path in glob.glob(os.path.join(log_dir, "feedback", "*.jsonl")):
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                prev = feedback.get(r["request_id"])
                if prev is None or r["ts"] >= prev["ts"]:
                    feedback[r["request_id"]] = r


def num(x):
    if x is None:
        return "–"
    s = f"{x:.3f}".rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def pct(k, n):
    return "–" if n == 0 else f"{k / n * 100.0:.2f}%"


def nearest_rank(values, q):
    if not values:
        return None
    v = sorted(values)
    return v[min(max(math.ceil(q * len(v)), 1), len(v)) - 1]


groups = {}
for r in rows:
    if r["ts"].timestamp() < since:
        continue
    key = (r["prompt_id"] or "model:" + r["model"], r["variant"])
    groups.setdefault(key, []).append(r)
out = []
for (prompt, variant), rs in sorted(groups.items()):
    n = len(rs)
    lat = [r["latency_ms"] for r in rs]
    ttft = [r["ttft_ms"] for r in rs if r["ttft_ms"] is not None]
    scored = [r["online_pass"] for r in rs if r["online_pass"] is not None]
    fb = [feedback[r["request_id"]]["score"] for r in rs if r["request_id"] in feedback]
    cost = 0.0
    for r in rs:
        cost += r["cost"]
    out.append({
        "prompt": prompt,
        "variant": variant,
        "requests": str(n),
        "error_rate": pct(sum(r["status"] == "error" for r in rs), n),
        "timeout_rate": pct(sum(r["status"] == "timeout" for r in rs), n),
        "latency_p50_ms": num(nearest_rank(lat, 0.5)),
        "latency_p95_ms": num(nearest_rank(lat, 0.95)),
        "latency_p99_ms": num(nearest_rank(lat, 0.99)),
        "ttft_p50_ms": num(nearest_rank(ttft, 0.5)),
        "input_tokens": str(sum(r["input_tokens"] for r in rs)),
        "output_tokens": str(sum(r["output_tokens"] for r in rs)),
        "cost": f"{cost:.6f}",
        "online_pass_rate": pct(sum(scored), len(scored)),
        "feedback_mean": num(sum(fb) / len(fb)) + (f" ({len(fb)})" if fb else "") if fb else "–",
    })
print(json.dumps(out))
