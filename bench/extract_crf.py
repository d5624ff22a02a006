"""The CRF peer for bench-extract: sklearn-crfsuite (L-BFGS, c1 = c2 = 0.1,
100 iterations, all possible transitions: its tutorial's settings) with the
standard word + window features, on the same dataset directory distill
trains on (examples.parquet from `distill data import/curate`).

Spans are scored as distill scores them: exact (label, start, end) in
characters, micro-averaged; seqeval on the BIO sequences is printed too.
Prints one JSON line.

usage: extract_crf.py DATASET_DIR TEST_SPLIT
"""

import importlib.metadata
import json
import os
import re
import sys
import tempfile
import time

import pyarrow.parquet as pq
import sklearn_crfsuite
from seqeval.metrics import f1_score

TOKEN = re.compile(r"[\w']+|[^\w\s]")


def tokens(text):
    return [(m.start(), m.end(), m.group()) for m in TOKEN.finditer(text)]


def word_features(sent, i):
    w = sent[i][2]
    f = {
        "bias": 1.0,
        "w.lower": w.lower(),
        "w[-3:]": w[-3:],
        "w[-2:]": w[-2:],
        "w.isupper": w.isupper(),
        "w.istitle": w.istitle(),
        "w.isdigit": w.isdigit(),
    }
    for d in (1, 2):
        if i - d >= 0:
            v = sent[i - d][2]
            f[f"-{d}:w.lower"] = v.lower()
            if d == 1:
                f["-1:w.istitle"] = v.istitle()
                f["-1:w.isupper"] = v.isupper()
        elif d == 1:
            f["BOS"] = True
        if i + d < len(sent):
            v = sent[i + d][2]
            f[f"+{d}:w.lower"] = v.lower()
            if d == 1:
                f["+1:w.istitle"] = v.istitle()
                f["+1:w.isupper"] = v.isupper()
        elif d == 1:
            f["EOS"] = True
    return f


def sent_features(sent):
    return [word_features(sent, i) for i in range(len(sent))]


def bio(sent, spans):
    tags = ["O"] * len(sent)
    for s in spans:
        first = True
        for i, (a, b, _) in enumerate(sent):
            if a < s["end"] and s["start"] < b:
                tags[i] = ("B-" if first else "I-") + s["label"]
                first = False
    return tags


def spans_of(sent, tags):
    out, cur = [], None
    for (a, b, _), t in zip(sent, tags):
        if t.startswith("I-") and cur and cur["label"] == t[2:]:
            cur["end"] = b
            continue
        if cur:
            out.append(cur)
            cur = None
        if t != "O":
            cur = {"label": t[2:], "start": a, "end": b}
    if cur:
        out.append(cur)
    return out


def micro_f1(gold, pred):
    key = lambda s: (s["label"], s["start"], s["end"])
    tp = npred = ngold = exact = 0
    for g, p in zip(gold, pred):
        gs, ps = sorted(map(key, g)), sorted(map(key, p))
        ngold += len(gs)
        npred += len(ps)
        common = 0
        for k in set(gs):
            common += min(gs.count(k), ps.count(k))
        tp += common
        exact += int(gs == ps)
    prec = tp / npred if npred else 0.0
    rec = tp / ngold if ngold else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return f1, exact / max(len(gold), 1)


def main():
    data, test_split = sys.argv[1], sys.argv[2]
    rows = pq.read_table(os.path.join(data, "examples.parquet")).to_pylist()
    # As distill reads it: a joint (intent + slots) dataset annotates every
    # row, so a row without spans has none; in an extract dataset it is unlabelled.
    joint = json.load(open(os.path.join(data, "dataset.json")))["task"] != "extract"
    train, test = [], []
    for r in rows:
        if r.get("spans") is None and not joint:
            continue
        spans = json.loads(r["spans"]) if r.get("spans") is not None else []
        if r["split"] == test_split:
            test.append((r["text"], spans))
        elif r["split"] in ("train", "val"):
            train.append((r["text"], spans))
    tr_sents = [tokens(t) for t, _ in train]
    x_train = [sent_features(s) for s in tr_sents]
    y_train = [bio(s, sp) for s, (_, sp) in zip(tr_sents, train)]
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "model.crfsuite")
    # model_filename: the crfsuite model file a deployment would ship.
    crf = sklearn_crfsuite.CRF(
        algorithm="lbfgs", c1=0.1, c2=0.1, max_iterations=100,
        all_possible_transitions=True, model_filename=path,
    )
    t0 = time.perf_counter()
    crf.fit(x_train, y_train)
    train_s = time.perf_counter() - t0
    model_bytes = os.path.getsize(path)
    te_sents = [tokens(t) for t, _ in test]
    # Throughput: featurize + tag every test sentence, one at a time.
    t0 = time.perf_counter()
    pred_tags = [crf.predict_single(sent_features(s)) for s in te_sents]
    all_s = time.perf_counter() - t0
    lat = []
    for _ in range(3):
        for s in te_sents:
            a = time.perf_counter()
            crf.predict_single(sent_features(s))
            lat.append(time.perf_counter() - a)
    lat.sort()
    gold = [sp for _, sp in test]
    pred = [spans_of(s, t) for s, t in zip(te_sents, pred_tags)]
    f1, exact = micro_f1(gold, pred)
    gold_tags = [bio(s, sp) for s, sp in zip(te_sents, gold)]
    print(json.dumps({
        "peer": "sklearn-crfsuite " + importlib.metadata.version("sklearn-crfsuite"),
        "train_rows": len(train), "test_rows": len(test),
        "span_f1": f1, "exact_match": exact,
        "seqeval_f1": f1_score(gold_tags, pred_tags),
        "train_s": train_s, "rows_per_s": len(test) / all_s,
        "p50_us": lat[len(lat) // 2] * 1e6, "model_bytes": model_bytes,
    }))


if __name__ == "__main__":
    main()
