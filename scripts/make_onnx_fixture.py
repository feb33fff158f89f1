#!/usr/bin/env python3
"""Makes the ONNX test fixture: a scikit-learn logistic regression on the iris
data, exported with skl2onnx (plain tensor outputs, no ZipMap), plus the
probabilities scikit-learn itself gives for a few rows.

    pip install scikit-learn skl2onnx
    python3 scripts/make_onnx_fixture.py crates/tessera-engine/tests/fixtures
"""
import json
import sys

import numpy as np
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def main() -> None:
    out = sys.argv[1]
    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    clf = LogisticRegression(max_iter=500).fit(x, y)
    onx = to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    with open(f"{out}/iris_logreg.onnx", "wb") as f:
        f.write(onx.SerializeToString())
    rows = x[[0, 50, 100, 149]]
    expected = {
        "input": "X",
        "rows": rows.tolist(),
        "labels": clf.predict(rows).tolist(),
        "probabilities": clf.predict_proba(rows).tolist(),
        "inputs": [i.name for i in onx.graph.input],
        "outputs": [o.name for o in onx.graph.output],
    }
    with open(f"{out}/iris_expected.json", "w") as f:
        json.dump(expected, f, indent=1)
    print(f"wrote iris_logreg.onnx and iris_expected.json to {out}: outputs {expected['outputs']}")


if __name__ == "__main__":
    main()
