"""Drives `promptgate serve` with the official OpenAI Python SDK, unchanged.

Usage: openai_client.py BASE_URL; prints one JSON object of what came back.
"""
import json
import sys

from openai import OpenAI

base = sys.argv[1]
c = OpenAI(base_url=base + "/v1", api_key="not-used", max_retries=0)
out = {}

r = c.chat.completions.create(
    model="prompt:chat", messages=[{"role": "user", "content": "hello openai"}], user="u1"
)
out["plain"] = r.choices[0].message.content
out["usage"] = [r.usage.prompt_tokens, r.usage.completion_tokens]

raw = c.chat.completions.with_raw_response.create(
    model="prompt:capital", messages=[], extra_body={"variables": {"country": "France"}}
)
out["headers"] = {
    k: raw.headers.get(k)
    for k in ["x-request-id", "x-promptgate-variant", "x-promptgate-version"]
}
out["capital"] = raw.parse().choices[0].message.content

s = c.chat.completions.create(
    model="prompt:chat",
    messages=[{"role": "user", "content": "stream me please"}],
    stream=True,
)
out["stream"] = "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices)

tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
r = c.chat.completions.create(
    model="small",
    messages=[{"role": "user", "content": 'call get_weather {"city": "Paris"}'}],
    tools=tools,
)
tc = r.choices[0].message.tool_calls[0]
out["tool"] = [tc.function.name, json.loads(tc.function.arguments)]

s = c.chat.completions.create(
    model="small",
    messages=[{"role": "user", "content": 'call get_weather {"city": "Rome"}'}],
    tools=tools,
    stream=True,
)
name, args = None, ""
for ch in s:
    if ch.choices and ch.choices[0].delta.tool_calls:
        for t in ch.choices[0].delta.tool_calls:
            if t.function and t.function.name:
                name = t.function.name
            args += (t.function.arguments or "") if t.function else ""
out["stream_tool"] = [name, json.loads(args)]

r = c.chat.completions.create(
    model="small",
    messages=[{"role": "user", "content": "json please"}],
    response_format={"type": "json_object"},
)
out["json"] = json.loads(r.choices[0].message.content)

out["models"] = sorted(m.id for m in c.models.list())
print(json.dumps(out))
