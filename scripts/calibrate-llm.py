#!/usr/bin/env python3
"""Calibrates the real small LLM served by scripts/start-llm.sh.

Sends the capital questions of template-repo/datasets/capitals/rows.jsonl to
POST /v1/chat/completions (system + user prompt, temperature 0, max_tokens 32,
seed 42), prints each answer, whether it contains the expected city
(case-insensitive) and the latency, then the pass count. With --runs N it
repeats the whole set and reports whether the answers were identical.
Stdlib only.

    python3 scripts/calibrate-llm.py --port 8765 [--runs 2] [--json out.json]
"""
import argparse
import json
import pathlib
import statistics
import sys
import time
import urllib.request

SYSTEM = "You are a concise geography assistant. Answer with the city name only."
USER = "What is the capital of {country}?"
ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_ROWS = ROOT / "template-repo" / "datasets" / "capitals" / "rows.jsonl"


def ask(base, model, country, timeout):
    body = {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": USER.format(country=country)},
        ],
        "temperature": 0,
        "max_tokens": 32,
        "seed": 42,
    }
    if model:
        body["model"] = model
    req = urllib.request.Request(
        base + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        data = json.load(resp)
    dt = time.perf_counter() - t0
    return data["choices"][0]["message"]["content"] or "", dt, data.get("usage", {})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--base", help="base URL (default http://127.0.0.1:PORT/v1)")
    ap.add_argument("--model", default="", help="model field to send (default: none)")
    ap.add_argument("--rows", default=str(DEFAULT_ROWS))
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--json", help="write all results to this file")
    args = ap.parse_args()
    base = args.base or f"http://127.0.0.1:{args.port}/v1"
    rows = [json.loads(l) for l in pathlib.Path(args.rows).read_text().splitlines() if l.strip()]

    runs = []
    for r in range(args.runs):
        print(f"== run {r + 1}/{args.runs} against {base}")
        results = []
        for row in rows:
            answer, dt, usage = ask(base, args.model, row["country"], args.timeout)
            ok = row["expected"].lower() in answer.lower()
            results.append({"id": row["id"], "country": row["country"], "expected": row["expected"],
                            "answer": answer, "pass": ok, "latency_s": round(dt, 3),
                            "completion_tokens": usage.get("completion_tokens")})
            print(f"  {'PASS' if ok else 'FAIL'} {row['country']:<14} expected {row['expected']:<12}"
                  f" {dt * 1000:7.0f} ms  answer={answer!r}")
        lat = [x["latency_s"] for x in results]
        passed = sum(x["pass"] for x in results)
        print(f"  pass {passed}/{len(results)}; latency median {statistics.median(lat) * 1000:.0f} ms,"
              f" max {max(lat) * 1000:.0f} ms, total {sum(lat):.2f} s")
        runs.append(results)

    same = all([x["answer"] for x in run] == [x["answer"] for x in runs[0]] for run in runs)
    passed = sum(x["pass"] for x in runs[0])
    print(f"RESULT pass {passed}/{len(rows)}; deterministic across {len(runs)} runs: {same}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"base": base, "runs": runs,
                                                       "deterministic": same}, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
