"""Check an ONNX bundle with the real onnx checker and onnxruntime.

usage: python onnx_parity.py BUNDLE_DIR [--tol 1e-4] [--threads 1]

Runs every row of the bundle's verify.jsonl (input ids and burn's f32 logits)
through onnxruntime one row at a time and prints a JSON summary: rows, max
|logit difference|, top-1 agreement with burn. Exits 1 when the bundle is fp32
and the largest difference exceeds --tol (quantised bundles only report).
"""
import argparse, json, os, sys

import numpy as np
import onnx
import onnxruntime as ort

ap = argparse.ArgumentParser()
ap.add_argument("bundle")
ap.add_argument("--tol", type=float, default=1e-4)
ap.add_argument("--threads", type=int, default=1)
a = ap.parse_args()

manifest = json.load(open(os.path.join(a.bundle, "bundle.json")))
path = os.path.join(a.bundle, "model.onnx")
onnx.checker.check_model(onnx.load(path), full_check=True)
opts = ort.SessionOptions()
opts.intra_op_num_threads = a.threads
opts.inter_op_num_threads = 1
sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
rows = [json.loads(l) for l in open(os.path.join(a.bundle, "verify.jsonl"))]
max_diff, agree = 0.0, 0
for r in rows:
    ids = np.array([r["ids"]], dtype=np.int64)
    logits, probs = sess.run(["logits", "probs"], {"input_ids": ids})
    ref = np.array(r["logits"], dtype=np.float32)
    max_diff = max(max_diff, float(np.abs(logits[0] - ref).max()))
    agree += int(np.argmax(logits[0]) == np.argmax(ref))
# A padded batch must give the same logits as single rows.
batch = rows[:8]
width = max(len(r["ids"]) for r in batch)
ids = np.zeros((len(batch), width), dtype=np.int64)
for i, r in enumerate(batch):
    ids[i, : len(r["ids"])] = r["ids"]
logits = sess.run(["logits"], {"input_ids": ids})[0]
batch_diff = max(float(np.abs(logits[i] - np.array(r["logits"])).max()) for i, r in enumerate(batch))
out = {
    "bundle": a.bundle, "quantize": manifest["quantize"], "kind": manifest["model_kind"],
    "rows": len(rows), "max_abs_diff": max_diff, "batch_max_abs_diff": batch_diff,
    "top1_agreement": agree / max(1, len(rows)), "onnxruntime": ort.__version__, "onnx": onnx.__version__,
}
print(json.dumps(out))
if manifest["quantize"] == "none" and max(max_diff, batch_diff) > a.tol:
    sys.exit(1)
