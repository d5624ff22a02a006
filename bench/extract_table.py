"""bench-extract: distill's rows of the table. Span F1 and exact match of
the int8 bundle's answers (`distill predict`) against the gold of the test
rows (`distill eval`'s predictions.jsonl), scored as distill eval scores
(exact label/start/end, micro); the fp32 run's figures on a second line.

usage: extract_table.py RUN BUNDLE TIMING ANSWERS LABEL
"""

import json
import os
import sys

run, bundle, timing, answers, label = sys.argv[1:]
info = json.load(open(os.path.join(run, "run.json")))
gold = [json.loads(l)["gold"] for l in open(os.path.join(run, "eval/extract/predictions.jsonl"))]
pred = []
for line in open(answers):
    a = json.loads(line)
    pred.append([{"label": k, "start": f["start"], "end": f["end"]} for k, fs in a["fields"].items() for f in fs])
assert len(gold) == len(pred), (len(gold), len(pred))
key = lambda s: (s["label"], s["start"], s["end"])
tp = np_ = ng = exact = 0
for g, p in zip(gold, pred):
    gs, ps = sorted(map(key, g)), sorted(map(key, p))
    ng, np_ = ng + len(gs), np_ + len(ps)
    tp += sum(min(gs.count(k), ps.count(k)) for k in set(gs))
    exact += int(gs == ps)
prec, rec = tp / max(np_, 1), tp / max(ng, 1)
f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
t = json.loads(open(timing).readline().split("timing ", 1)[1])
print("| distill tagger (int8 bundle), %s | %.4f | %.4f | %.1f | %.0f | %.1f | %d |" % (
    label, f1, exact / max(len(gold), 1), info["loop_seconds"], t["rows_per_s"], t["p50_us"],
    os.path.getsize(os.path.join(bundle, "tagger.bin"))))
m = info["metrics"]
print("|   (fp32 run: test span F1 %.4f, exact %.4f, intent acc %s; %d rows rejected, %d gold spans end inside a token) | | | | | | |" % (
    m["test_span_f1"], m["test_exact_match"],
    "%.4f" % m["test_intent_accuracy"] if "test_intent_accuracy" in m else "-",
    info["counts"]["rejected"], info["counts"]["snapped_spans"]))
