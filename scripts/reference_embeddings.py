#!/usr/bin/env python3
"""Computes the reference embeddings the engine is tested against, once, with
sentence-transformers (the reference implementation), and writes them as a
small JSON fixture.

    pip install sentence-transformers
    python3 scripts/reference_embeddings.py MODEL_DIR \
        crates/tessera-engine/tests/fixtures/minilm_reference.json

MODEL_DIR is the unpacked all-MiniLM-L6-v2 directory (`tessera models fetch`
puts it in ~/.cache/tessera/models/all-minilm-l6-v2).
"""
import json
import sys

from sentence_transformers import SentenceTransformer

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Tessera serves sentence embeddings for many tenants at once.",
    "hello",
    "A man is playing a guitar on stage while the crowd sings along loudly tonight.",
    "Über café naïve résumé: accents and unicode should tokenize fine!",
    "1234 5678 numbers, punctuation... and    extra   spaces?",
    "Short.",
    "This sentence is intentionally much longer than the others so that padding "
    "matters when it is batched together with the short ones, and it keeps going "
    "for a while to cover more positions in the position embedding table as well.",
]


def main() -> None:
    model_dir, out = sys.argv[1], sys.argv[2]
    model = SentenceTransformer(model_dir, device="cpu")
    vectors = model.encode(SENTENCES, batch_size=1, normalize_embeddings=True)
    data = {
        "model": "all-minilm-l6-v2",
        "generator": "sentence-transformers " + __import__("sentence_transformers").__version__,
        "sentences": SENTENCES,
        "embeddings": [[round(float(x), 7) for x in v] for v in vectors],
    }
    with open(out, "w") as f:
        json.dump(data, f)
        f.write("\n")
    print(f"wrote {len(SENTENCES)} reference embeddings of dimension {len(vectors[0])} to {out}")


if __name__ == "__main__":
    main()
