"""See bench/predict.sh."""
import json, os, statistics, subprocess, sys, time

import numpy as np
import onnxruntime as ort

bin_, bundles, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [json.loads(l) for l in open(os.path.join(bundles, "burn-none", "verify.jsonl"))]
texts = "\n".join(r["text"].replace("\n", " ") for r in rows) + "\n"
labels = json.load(open(os.path.join(bundles, "burn-none", "labels.json")))


def size(b, f):
    return json.load(open(os.path.join(bundles, b, "bundle.json")))["files"][f]["bytes"]


def distill(b):
    r = subprocess.run([bin_, "predict", "--bundle", os.path.join(bundles, b), "--timing", str(n), "--batch-size", "64"],
                       input=texts, capture_output=True, text=True, check=True)
    t = json.loads([l for l in r.stderr.splitlines() if l.startswith("timing ")][0][7:])
    preds = [json.loads(l)["label"] for l in r.stdout.splitlines()]
    acc = sum(p == row["gold"] for p, row in zip(preds, rows)) / len(rows)
    return t["p50_us"], t["p99_us"], t["rows_per_s"], acc


def onnx(b, threads):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    s = ort.InferenceSession(os.path.join(bundles, b, "model.onnx"), o, providers=["CPUExecutionProvider"])
    feeds = [np.array([r["ids"]], dtype=np.int64) for r in rows]
    for f in feeds[:20]:
        s.run(["logits"], {"input_ids": f})
    lat = []
    for f in feeds[:n]:
        t0 = time.perf_counter()
        s.run(["logits"], {"input_ids": f})
        lat.append((time.perf_counter() - t0) * 1e6)
    lat.sort()
    t0 = time.perf_counter()
    correct = 0
    for i in range(0, len(rows), 64):
        chunk = rows[i:i + 64]
        w = max(len(r["ids"]) for r in chunk)
        ids = np.zeros((len(chunk), w), dtype=np.int64)
        for j, r in enumerate(chunk):
            ids[j, :len(r["ids"])] = r["ids"]
        logits = s.run(["logits"], {"input_ids": ids})[0]
        correct += sum(labels[int(np.argmax(l))] == r["gold"] for l, r in zip(logits, chunk))
    rps = len(rows) / (time.perf_counter() - t0)
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(0.99 * len(lat)))], rps, correct / len(rows)


results = []
for q in ["none", "int8"]:
    p50, p99, rps, acc = distill(f"burn-{q}")
    results.append((f"distill predict, burn {('fp32' if q == 'none' else q)}", p50, p99, rps, acc, size(f"burn-{q}", "weights.bpk")))
for q in ["none", "int8"]:
    for th in [1, 2]:
        p50, p99, rps, acc = onnx(f"onnx-{q}", th)
        results.append((f"onnxruntime {ort.__version__}, ONNX {('fp32' if q == 'none' else q)}, {th} thread{'s' if th > 1 else ''}", p50, p99, rps, acc, size(f"onnx-{q}", "model.onnx")))

print(f"\n## Prediction (banking77 test, bag student; latency over {n} single examples, throughput over {len(rows)} rows in batches of 64)\n")
print("| runtime | p50 µs | p99 µs | rows/s (batch) | test accuracy | model file bytes |")
print("|---|---:|---:|---:|---:|---:|")
for r in results:
    print(f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.0f} | {100 * r[4]:.2f}% | {r[5]:,} |")
ort1 = [r for r in results if "fp32, 1 thread" in r[0]][0]
d = results[0]
print(f"\ndistill fp32 single-example p50 / onnxruntime fp32 1-thread p50: {d[1] / ort1[1]:.2f}x (target at most 1.5x; "
      f"distill's figure includes featurising the text, onnxruntime's starts from ids); bag under 50 µs: {'met' if d[1] < 50 else 'NOT met'}")
print(f"int8 size / fp32: burn {results[1][5] / results[0][5]:.3f}, ONNX {results[4][5] / results[2][5]:.3f}; "
      f"accuracy change burn int8 {100 * (results[1][4] - results[0][4]):+.2f} points, ONNX int8 {100 * (results[4][4] - results[2][4]):+.2f} points")
