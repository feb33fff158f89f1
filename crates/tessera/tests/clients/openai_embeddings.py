"""The official `openai` Python client against Tessera's /v1/embeddings, unchanged.

    python openai_embeddings.py BASE_URL API_KEY
"""
import math
import sys

import openai

base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)

# Default call: recent clients ask for base64 and decode it themselves.
r = client.embeddings.create(model="all-minilm-l6-v2", input=["hello world", "tessera"])
assert len(r.data) == 2, r
assert len(r.data[0].embedding) == 384
assert abs(math.sqrt(sum(x * x for x in r.data[0].embedding)) - 1.0) < 1e-3
assert r.usage.prompt_tokens == r.usage.total_tokens > 0
assert r.model == "all-minilm-l6-v2"

f = client.embeddings.create(model="all-minilm-l6-v2", input="hello world", encoding_format="float")
assert max(abs(a - b) for a, b in zip(f.data[0].embedding, r.data[0].embedding)) < 1e-6

d = client.embeddings.create(model="all-minilm-l6-v2", input="hello world", dimensions=128)
assert len(d.data[0].embedding) == 128

try:
    client.embeddings.create(model="no-such-model", input="x")
    raise SystemExit("expected NotFoundError")
except openai.NotFoundError as e:
    assert e.body["code"] == "not_found", e.body

try:
    openai.OpenAI(base_url=f"{base}/v1", api_key="tsk_wrong", max_retries=0).embeddings.create(
        model="all-minilm-l6-v2", input="x")
    raise SystemExit("expected AuthenticationError")
except openai.AuthenticationError as e:
    assert e.body["code"] == "invalid_api_key", e.body

print("openai client ok")
