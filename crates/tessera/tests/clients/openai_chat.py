"""The official `openai` Python client against Tessera's /v1/chat/completions
on a remote model, unchanged: plain, streamed, streamed with usage, and the
errors it raises for a cut stream, an unknown model and a rate-limited upstream.

    python openai_chat.py BASE_URL API_KEY
"""
import sys

import openai

base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]

r = client.chat.completions.create(model="support-llm", messages=messages)
reply = r.choices[0].message.content
assert reply.startswith("Hello from"), reply
assert r.model == "support-llm", r.model
assert r.usage.prompt_tokens > 0 and r.usage.total_tokens > r.usage.prompt_tokens, r.usage

raw = client.chat.completions.with_raw_response.create(model="support-llm", messages=messages)
assert raw.headers["x-tessera-model"] == "support-llm"
assert raw.headers["x-tessera-model-version"] == "support-llm@1"
assert raw.headers["x-tessera-tier"] == "tenant"

chunks = list(client.chat.completions.create(model="support-llm", messages=messages, stream=True))
assert len(chunks) > 3, chunks
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert text == reply, (text, reply)
assert all(c.usage is None for c in chunks)

chunks = list(
    client.chat.completions.create(
        model="support-llm", messages=messages, stream=True, stream_options={"include_usage": True}
    )
)
assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0, chunks[-1]

try:
    for _ in client.chat.completions.create(model="cut-llm", messages=messages, stream=True):
        pass
    raise SystemExit("expected an error for a cut stream")
except openai.APIError as e:
    assert "closed the stream early" in str(e), e

try:
    client.chat.completions.create(model="no-such-model", messages=messages)
    raise SystemExit("expected NotFoundError")
except openai.NotFoundError as e:
    assert e.body["code"] == "not_found", e.body

try:
    client.chat.completions.create(model="limited-llm", messages=messages, stream=True)
    raise SystemExit("expected RateLimitError")
except openai.RateLimitError as e:
    assert e.body["code"] == "upstream_rate_limited", e.body

print("ok")
