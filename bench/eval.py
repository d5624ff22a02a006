"""Time `distill eval` (import + predict + metrics + calibration + operating
points + latency probe + plots + report) on banking77, and scikit-learn's
metrics on the same predictions (metrics only, no model, no plots)."""
import json, os, statistics, subprocess, sys, time

bin_, run, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
walls = []
for _ in range(repeats):
    t0 = time.perf_counter()
    subprocess.run([bin_, "eval", run, "--suite", "configs/suites/banking77.toml"], check=True,
                   capture_output=True)
    walls.append(time.perf_counter() - t0)
out = os.path.join(run, "eval", "banking77")
report = json.load(open(os.path.join(out, "report.json")))
m = report["cases"][0]["metrics"]

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, confusion_matrix, roc_auc_score
preds = [json.loads(l) for l in open(os.path.join(out, "predictions.jsonl"))]
t0 = time.perf_counter()
gold = [p["gold"] for p in preds]
pred = [p["predicted"] for p in preds]
conf = np.array([p["confidence"] for p in preds])
ok = np.array([g == q for g, q in zip(gold, pred)])
acc = accuracy_score(gold, pred)
f1m = f1_score(gold, pred, average="macro")
f1w = f1_score(gold, pred, average="weighted")
cm = confusion_matrix(gold, pred)
auc = roc_auc_score(ok, conf)
edges = np.linspace(0, 1, 16)
idx = np.clip(np.ceil(conf * 15).astype(int), 1, 15) - 1
ece = sum(abs(conf[idx == b].mean() - ok[idx == b].mean()) * (idx == b).sum() for b in range(15) if (idx == b).any()) / len(conf)
sk = time.perf_counter() - t0

print(f"\n## Evaluation (banking77 test, 3,080 rows, bag student, {report['threads']} threads)\n")
print("| | seconds |")
print("|---|---:|")
print(f"| distill eval, whole command (median of {repeats}) | {statistics.median(walls):.3f} |")
print(f"| distill eval, inside (report.json `seconds`) | {report['seconds']:.3f} |")
print(f"| scikit-learn, metrics only on the same predictions | {sk:.3f} |")
print(f"\naccuracy {m['accuracy']:.4f} (sklearn {acc:.4f}), macro-F1 {m['macro_f1']:.4f} (sklearn {f1m:.4f}), "
      f"weighted-F1 {m['weighted_f1']:.4f} (sklearn {f1w:.4f}), ECE after scaling {m.get('ece_calibrated', float('nan')):.4f} "
      f"(numpy {ece:.4f}); target under 2 s: {'met' if statistics.median(walls) < 2 else 'NOT met'}")
