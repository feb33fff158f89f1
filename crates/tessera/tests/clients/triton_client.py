"""The `tritonclient[http]` package against Tessera's Open Inference Protocol
routes, unchanged: health, metadata, readiness, inference with JSON and with
binary tensors, repository index, and errors.

    python triton_client.py HOST:PORT API_KEY
"""
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

url, key = sys.argv[1], sys.argv[2]
# A fresh dict per call: tritonclient writes Inference-Header-Content-Length
# into the headers dict it is given, which would leak into later calls.
def auth():
    return {"Authorization": f"Bearer {key}"}
client = httpclient.InferenceServerClient(url=url)
MODEL = "all-minilm-l6-v2"

assert client.is_server_live()
assert client.is_server_ready()
meta = client.get_server_metadata(headers=auth())
assert meta["name"] == "tessera" and "model_repository" in meta["extensions"], meta
assert client.is_model_ready(MODEL, headers=auth())
assert not client.is_model_ready("no-such-model", headers=auth())
mm = client.get_model_metadata(MODEL, headers=auth())
assert mm["inputs"][0]["datatype"] == "BYTES" and mm["outputs"][0]["shape"] == [-1, 384], mm

texts = np.array([b"hello world", b"tessera serves embeddings"], dtype=np.object_)
for binary in (False, True):
    inp = httpclient.InferInput("text", [2], "BYTES")
    inp.set_data_from_numpy(texts, binary_data=binary)
    out = httpclient.InferRequestedOutput("embedding", binary_data=binary)
    result = client.infer(MODEL, [inp], outputs=[out], request_id="req-42", headers=auth())
    emb = result.as_numpy("embedding")
    assert emb.shape == (2, 384), emb.shape
    assert abs(float(np.linalg.norm(emb[0])) - 1.0) < 1e-3
    assert result.get_response()["id"] == "req-42"
    if binary:
        assert np.allclose(emb, first, atol=1e-6)
    first = emb

index = client.get_model_repository_index(headers=auth())
assert any(m["name"] == MODEL and m["state"] == "READY" for m in index), index

try:
    client.get_model_metadata("no-such-model", headers=auth())
    raise SystemExit("expected an error")
except InferenceServerException as e:
    assert e.status() == "404" and "not found" in e.message(), (e.status(), e.message())

try:
    bad = httpclient.InferInput("text", [2], "FP32")
    bad.set_data_from_numpy(np.zeros(2, dtype=np.float32), binary_data=False)
    client.infer(MODEL, [bad], headers=auth())
    raise SystemExit("expected an error")
except InferenceServerException as e:
    assert e.status() == "400" and "BYTES" in e.message(), (e.status(), e.message())

print("tritonclient ok")
