"""Feast's own SDK against Tessera: a Feast repo whose online store is
`remote` at Tessera's /v1/features, with Feast's `oidc` client auth fetching
its token from a small token endpoint this script serves (the token is the
JWT the Rust test minted; Tessera checks it against its JWKS).

Usage: feast_sdk.py TESSERA_URL JWT WORK_DIR
Prints the online features as JSON on success; exits non-zero otherwise.
"""
import json
import os
import sys
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

url, jwt, work = sys.argv[1], sys.argv[2], sys.argv[3]
calls = {"token": 0}


class Idp(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        port = self.server.server_address[1]
        self.answer({"issuer": "https://idp.test", "token_endpoint": f"http://127.0.0.1:{port}/token",
                     "jwks_uri": f"http://127.0.0.1:{port}/jwks"})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        calls["token"] += 1
        self.answer({"access_token": jwt, "token_type": "Bearer", "expires_in": 300})


idp = HTTPServer(("127.0.0.1", 0), Idp)
threading.Thread(target=idp.serve_forever, daemon=True).start()
discovery = f"http://127.0.0.1:{idp.server_address[1]}/.well-known/openid-configuration"

os.makedirs(os.path.join(work, "data"), exist_ok=True)
with open(os.path.join(work, "feature_store.yaml"), "w") as f:
    f.write(f"""project: tessera_sdk
registry: {os.path.join(work, "data", "registry.db")}
provider: local
online_store:
  type: remote
  path: {url}/v1/features
auth:
  type: oidc
  client_id: tessera
  client_secret: not-a-secret
  username: feast
  password: feast
  auth_discovery_url: {discovery}
entity_key_serialization_version: 3
""")

from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource, ValueType  # noqa: E402
from feast.types import Float64, Int64, String  # noqa: E402

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
batch = FileSource(name="customer_stats_file", path=os.path.join(work, "data", "stats.parquet"),
                   timestamp_field="event_timestamp")
stats = FeatureView(
    name="customer_stats",
    entities=[customer],
    ttl=timedelta(hours=1),
    schema=[Field(name="spend", dtype=Float64), Field(name="orders", dtype=Int64), Field(name="tier", dtype=String)],
    online=True,
    source=PushSource(name="customer_stats", batch_source=batch),
)
store = FeatureStore(repo_path=work)
store.apply([customer, stats])

got = store.get_online_features(
    features=["customer_stats:spend", "customer_stats:orders", "customer_stats:tier"],
    entity_rows=[{"customer_id": "c1"}, {"customer_id": "c2"}, {"customer_id": "nobody"}],
).to_dict()
print(json.dumps({"features": got, "token_calls": calls["token"]}, default=str))
