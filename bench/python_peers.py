#!/usr/bin/env python3
"""In-process Python peers for B3: ONNX Runtime on the very ONNX file Tessera
runs, and sentence-transformers (PyTorch) on the same model directory, one
intra-op thread each, 12-word sentences, tokenize + forward + pool.

    python3 bench/python_peers.py MODEL_DIR ONNX_FILE [SECONDS]
"""
import json
import sys
import time

import numpy as np

SENTENCE = "The quick brown fox jumps over the lazy dog near the quiet river."


def rate(fn, batch, seconds):
    texts = [SENTENCE] * batch
    fn(texts)  # warm up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(texts)
        n += batch
    return n / (time.perf_counter() - t0)


def main():
    model_dir, onnx_file = sys.argv[1], sys.argv[2]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
    import onnxruntime as ort
    from tokenizers import Tokenizer

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(onnx_file, so, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(256)

    def ort_embed(texts):
        enc = tok.encode_batch(texts)
        width = max(len(e.ids) for e in enc)
        ids = np.zeros((len(enc), width), dtype=np.int64)
        mask = np.zeros((len(enc), width), dtype=np.int64)
        for i, e in enumerate(enc):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        return sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    st = SentenceTransformer(model_dir, device="cpu")

    def st_embed(texts):
        return st.encode(texts, batch_size=len(texts), normalize_embeddings=True)

    out = {}
    for name, fn in [("onnxruntime", ort_embed), ("sentence-transformers", st_embed)]:
        for batch in (1, 8, 32):
            out[f"{name} batch {batch}"] = round(rate(fn, batch, seconds), 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
