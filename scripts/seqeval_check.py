"""seqeval (PyPI, pinned by scripts/install-extract-peers.sh) on the BIO
sequences of `distill eval`'s extraction predictions: prints micro
precision / recall / F1 and per-type F1 as JSON, for the CI test that
checks distill's span metrics against it.

usage: seqeval_check.py PREDICTIONS_JSONL
"""

import json
import sys

from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

gold, pred = [], []
for line in open(sys.argv[1], encoding="utf-8"):
    row = json.loads(line)
    gold.append(row["gold_tags"])
    pred.append(row["pred_tags"])
report = classification_report(gold, pred, output_dict=True, zero_division=0)
print(json.dumps({
    "rows": len(gold),
    "precision": precision_score(gold, pred),
    "recall": recall_score(gold, pred),
    "f1": f1_score(gold, pred),
    "per_type": {k: v for k, v in report.items() if not k.endswith(" avg")},
}, default=lambda o: o.item()))
