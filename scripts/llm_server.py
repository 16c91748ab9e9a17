#!/usr/bin/env python3
"""Runs llama.cpp's OpenAI-compatible HTTP server in-process (xllamacpp, a
prebuilt wheel) for the test suite's real small LLM, until SIGTERM or SIGINT.

Started by scripts/start-llm.sh in the venv scripts/setup-llm.sh makes. Once
the model is loaded it checks that the chat template the server applies is
ChatML (SmolLM2's own template; tests and calibration assume it), then
prints a line starting with READY_LINE, which start-llm.sh waits for.

    python llm_server.py --model M.gguf --port 18080 [--threads 1] [--ctx 2048] [--alias smollm2]
"""
import argparse
import json
import signal
import sys
import threading
import urllib.request

READY_LINE = "[llm_server] ready"

# What SmolLM2's template renders for a system + user turn: ChatML with the
# assistant turn opened. A different template would change every answer.
CHATML_PROBE = [
    {"role": "system", "content": "S"},
    {"role": "user", "content": "U"},
]
CHATML_EXPECTED = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"


def log(msg):
    print(f"[llm_server] {msg}", flush=True)


def applied_template(base):
    req = urllib.request.Request(
        base + "/apply-template",
        data=json.dumps({"messages": CHATML_PROBE}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)["prompt"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="GGUF file")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ctx", type=int, default=2048, help="context window (tokens)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for generation and prompt")
    ap.add_argument("--alias", default="smollm2", help="model name the server reports and accepts")
    args = ap.parse_args()

    # Imported here so --help works outside the venv.
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx
    # One slot: requests queue, each gets the whole context (as with one
    # `llama-server -np 1`); the tests send one request at a time anyway.
    params.n_parallel = 1
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    log(f"xllamacpp {xllamacpp.__version__}: loading {args.model}")
    # Returns once the model is loaded and the HTTP server listens.
    server = xllamacpp.Server(params)
    base = f"http://{args.host}:{args.port}"
    prompt = applied_template(base)
    if prompt != CHATML_EXPECTED:
        log(f"ERROR: the server's chat template is not ChatML; it renders {prompt!r}")
        del server
        return 1
    print(f"{READY_LINE} on {base}/v1 (model {args.alias}, n_ctx {args.ctx}, "
          f"threads {args.threads}, chat template ChatML)", flush=True)
    stop.wait()
    log("stopping")
    # Dropping the server stops its HTTP and inference threads cleanly.
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
