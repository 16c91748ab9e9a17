"""Drives `promptgate serve` with the official Ollama Python client, unchanged.

Usage: ollama_client.py BASE_URL; prints one JSON object of what came back.
"""
import json
import sys

from ollama import Client

c = Client(host=sys.argv[1])
out = {}

r = c.chat(model="prompt:chat", messages=[{"role": "user", "content": "hello ollama"}])
out["plain"] = r["message"]["content"]
out["counts"] = [r["prompt_eval_count"], r["eval_count"]]

parts = c.chat(
    model="prompt:chat",
    messages=[{"role": "user", "content": "stream me please"}],
    stream=True,
)
out["stream"] = "".join(p["message"]["content"] for p in parts)

g = c.generate(model="small", prompt="generate this", options={"num_predict": 20, "num_ctx": 256})
out["generate"] = g["response"]
out["generate_stream"] = "".join(
    p["response"] for p in c.generate(model="small", prompt="gen stream", stream=True)
)

tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
r = c.chat(
    model="small",
    messages=[{"role": "user", "content": 'call get_weather {"city": "Paris"}'}],
    tools=tools,
)
call = r["message"]["tool_calls"][0]["function"]
out["tool"] = [call["name"], dict(call["arguments"])]

calls = []
for p in c.chat(
    model="small",
    messages=[{"role": "user", "content": 'call get_weather {"city": "Rome"}'}],
    tools=tools,
    stream=True,
):
    for t in p["message"].get("tool_calls") or []:
        calls.append([t["function"]["name"], dict(t["function"]["arguments"])])
out["stream_tool"] = calls[0] if calls else None

r = c.chat(
    model="small",
    messages=[{"role": "user", "content": "json please"}],
    format="json",
    options={"temperature": 0},
)
out["json"] = json.loads(r["message"]["content"])

out["models"] = sorted(m["model"] for m in c.list()["models"])
print(json.dumps(out))
