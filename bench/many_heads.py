#!/usr/bin/env python3
"""B6 load: 100 tenants x 10 linear heads over the default model, each
registered, uploaded and run once (so loaded), against a server on :18701
started with TESSERA_ADMIN_KEY=b6-admin-key-0123456789. Then read the
server's VmRSS from /proc/<pid>/status."""
import json, sys, urllib.request, random
base = "http://127.0.0.1:18701"
def call(method, path, key, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + key)
    if raw is None and body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")
admin = "b6-admin-key-0123456789"
random.seed(1)
keys = []
for t in range(100):
    tid = call("POST", "/admin/v1/tenants", admin, {"name": f"t{t}"})["id"]
    keys.append(call("POST", f"/admin/v1/tenants/{tid}/keys", admin, {"name": "k", "role": "developer"})["key"])
for i in range(1000):
    key = keys[i % 100]
    name = f"head-{i}"
    call("POST", "/v1/models", key, {"name": name, "task": "classification", "runtime": "linear", "base_model": "all-minilm-l6-v2"})
    head = {"format": "tessera.linear.v1", "task": "classification", "weights": [[random.uniform(-0.1, 0.1) for _ in range(384)] for _ in range(3)], "bias": [0, 0, 0], "labels": ["a", "b", "c"], "base_model": "all-minilm-l6-v2"}
    call("POST", f"/v1/models/{name}/versions", key, raw=json.dumps(head).encode())
    out = call("POST", f"/v1/models/{name}:predict", key, {"instances": ["is this ticket urgent?"]})
    assert out["predictions"][0]["label"] in ("a", "b", "c")
print("1000 heads loaded and run")
