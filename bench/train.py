#!/usr/bin/env python3
"""Train on banking77 (official train/test split) with distill bag, distill
encoder and fastText in one run; print accuracy, macro-F1, time, examples/s,
peak RSS, model bytes and the ratios to fastText at the same epochs and dim.

usage: train.py <distill-bin> <shared-dir> <out-dir> <epochs,..> <dim> <encoder-epochs>
Each contender runs in its own process; peak RSS is that process's ru_maxrss.
"""
import csv, json, os, subprocess, sys, time

distill, shared, out, epochs_arg, dim, enc_epochs = sys.argv[1:7]
epoch_list = [int(e) for e in epochs_arg.split(",")]
dim, enc_epochs = int(dim), int(enc_epochs)
data = os.path.join(shared, "datasets", "banking77")
os.makedirs(out, exist_ok=True)


def run(cmd, env=None):
    """Run a command; return (stdout, wall seconds, peak RSS bytes)."""
    # Output goes to files: waiting on a child that fills a pipe would deadlock.
    with open(os.path.join(out, "stdout.txt"), "w+") as so, open(os.path.join(out, "stderr.txt"), "w+") as se:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=so, stderr=se, text=True, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        so.seek(0), se.seek(0)
        stdout, stderr = so.read(), se.read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[0]} failed:\n{stderr}")
    return stdout, wall, usage.ru_maxrss * 1024


def macro_f1(gold, pred):
    f1s = []
    for l in set(gold) | set(pred):
        tp = sum(1 for g, p in zip(gold, pred) if g == l and p == l)
        fp = sum(1 for g, p in zip(gold, pred) if g != l and p == l)
        fn = sum(1 for g, p in zip(gold, pred) if g == l and p != l)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(f1s) / len(f1s)


def to_ft(src, dst):
    with open(src, newline="") as f, open(dst, "w") as o:
        for row in csv.DictReader(f):
            o.write(f"__label__{row['category']} {' '.join(row['text'].split())}\n")


ft_train, ft_test, ft_bin = (os.path.join(out, n) for n in ("ft_train.txt", "ft_test.txt", "ft.bin"))
to_ft(os.path.join(data, "train.csv"), ft_train)
to_ft(os.path.join(data, "test.csv"), ft_test)
n_train = sum(1 for _ in open(ft_train))
rows = []

FT = """
import fasttext, json, os, sys, time
train, test, path, epochs, dim = sys.argv[1:6]
t = time.perf_counter()
m = fasttext.train_supervised(input=train, epoch=int(epochs), lr=0.5, wordNgrams=2, dim=int(dim),
                              minn=2, maxn=5, thread=2, verbose=0, seed=42)
train_s = time.perf_counter() - t
m.save_model(path)
gold, pred = [], []
for line in open(test):
    label, text = line.rstrip("\\n").split(" ", 1)
    gold.append(label)
    pred.append(m.predict(text)[0][0])
print(json.dumps(dict(train_s=train_s, gold=gold, pred=pred, bytes=os.path.getsize(path))))
"""


def fasttext_run(epochs):
    stdout, wall, rss = run([sys.executable, "-c", FT, ft_train, ft_test, ft_bin, str(epochs), str(dim)])
    ft = json.loads(stdout)
    acc = sum(g == p for g, p in zip(ft["gold"], ft["pred"])) / len(ft["gold"])
    row = dict(name=f"fastText (dim {dim}, {epochs} ep)", acc=acc, f1=macro_f1(ft["gold"], ft["pred"]),
               train_s=ft["train_s"], wall=wall, eps=n_train * epochs / ft["train_s"], rss=rss,
               bytes=ft["bytes"], params=None)
    row["base"] = row
    rows.append(row)
    return row


def distill_run(name, config, sets, base):
    cmd = [distill, "train", config, "--experiments", os.path.join(out, "experiments")]
    for s in sets:
        cmd += ["--set", s]
    stdout, wall, rss = run(cmd, env=dict(os.environ, CI="1"))
    info = json.load(open(os.path.join(stdout.strip().splitlines()[-1], "run.json")))
    m = info["metrics"]
    last_run[0] = stdout.strip().splitlines()[-1]
    rows.append(dict(name=name, acc=m["test_accuracy"], f1=m["test_macro_f1"], train_s=info.get("loop_seconds") or info["train_seconds"],
                     wall=wall, eps=m["examples_per_s"], rss=rss, bytes=info["model_bytes"],
                     params=info["params"], base=base))


last_run = [None]
base = None
for epochs in epoch_list:
    base = fasttext_run(epochs)
    distill_run(f"distill bag (dim {dim}, {epochs} ep)", "configs/exp/banking77-bag.toml",
                [f"train.epochs={epochs}", f"model.dim={dim}", "train.patience=0"], base)
if enc_epochs > 0:
    distill_run(f"distill encoder ({enc_epochs} ep)", "configs/exp/banking77-encoder.toml",
                [f"train.epochs={enc_epochs}", "train.patience=0"], base)

print("| model | test acc | macro-F1 | train s | process wall s | train ex/s | peak RSS MiB | model bytes | params "
      "| train time / fastText | acc - fastText |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    b = r["base"]
    params = "-" if r["params"] is None else f"{r['params']:,}"
    print(f"| {r['name']} | {r['acc']:.4f} | {r['f1']:.4f} | {r['train_s']:.2f} | {r['wall']:.2f} | {r['eps']:,.0f} "
          f"| {r['rss'] / 2**20:.0f} | {r['bytes']:,} | {params} | {r['train_s'] / b['train_s']:.2f}x "
          f"| {r['acc'] - b['acc']:+.4f} |")
print(f"(ratios against {base['name'] if base else '-'} for the encoder row)")


# --- Size: fastText's quantised models next to distill's pruned bundles ---
# fastText: quantize(qnorm, retrain, cutoff N) of a dim-64, 50-epoch model
# (the settings above); single-example p50 is model.predict in a Python loop
# (includes the Python call). distill: the 10-epoch bag run pruned with
# `export --max-bytes` / `--prune-rows` (burn int8 bundle); p50 from
# `distill predict --timing` (preprocess + featurize + forward, in process).
FTQ = """
import fasttext, json, os, sys, time
train, test, path, cutoff, dim = sys.argv[1:6]
m = fasttext.train_supervised(input=train, epoch=50, lr=0.5, wordNgrams=2, dim=int(dim),
                              minn=2, maxn=5, thread=2, verbose=0, seed=42)
m.quantize(input=train, qnorm=True, retrain=True, cutoff=int(cutoff), thread=2)
m.save_model(path)
gold, pred, lat = [], [], []
for line in open(test):
    label, text = line.rstrip("\\n").split(" ", 1)
    t = time.perf_counter()
    p = m.predict(text)[0][0]
    lat.append(time.perf_counter() - t)
    gold.append(label)
    pred.append(p)
lat.sort()
print(json.dumps(dict(gold=gold, pred=pred, bytes=os.path.getsize(path), p50_us=lat[len(lat) // 2] * 1e6)))
"""
size_rows = []
if os.environ.get("BENCH_SIZE", "1") == "1":
    ft_test_txt = os.path.join(out, "ft_test.txt")
    to_ft(os.path.join(data, "test.csv"), ft_test_txt)
    for cutoff in (5000, 20000):
        stdout, _, _ = run([sys.executable, "-c", FTQ, ft_train, ft_test_txt, os.path.join(out, "ft.ftz"), str(cutoff), str(dim)])
        r = json.loads(stdout)
        acc = sum(g == p for g, p in zip(r["gold"], r["pred"])) / len(r["gold"])
        size_rows.append((f"fastText quantize cutoff {cutoff:,} (qnorm, retrain)", r["bytes"], acc, r["p50_us"]))
    run10 = None
    for d in sorted(os.listdir(os.path.join(out, "experiments", "banking77-bag"))):
        info = json.load(open(os.path.join(out, "experiments", "banking77-bag", d, "run.json")))
        if info.get("epochs") == 10 and info.get("status") == "completed":
            run10 = os.path.join(out, "experiments", "banking77-bag", d)
    test_texts = [row["text"] for row in csv.DictReader(open(os.path.join(data, "test.csv"), newline=""))]
    texts_file = os.path.join(out, "test_texts.txt")
    with open(texts_file, "w") as f:
        f.write("\n".join(" ".join(t.split()) for t in test_texts) + "\n")
    for label, args in [("distill bag, int8, unpruned", []),
                        ("distill bag, pruned --max-bytes 500KB, int8", ["--max-bytes", "500KB"]),
                        ("distill bag, pruned --max-bytes 1.4MB, int8", ["--max-bytes", "1.4MB"]),
                        ("distill bag, pruned --prune-rows 5000, int8", ["--prune-rows", "5000"])]:
        bdir = os.path.join(out, "bundle-" + str(len(size_rows)))
        subprocess.run([distill, "export", run10, "--format", "burn", "--quantize", "int8", "--out", bdir] + args,
                       check=True, capture_output=True)
        manifest = json.load(open(os.path.join(bdir, "bundle.json")))
        nbytes = sum(os.path.getsize(os.path.join(bdir, f)) for f in os.listdir(bdir) if f != "verify.jsonl")
        acc = manifest["metrics"]["test_accuracy"]
        if not args:
            # An unpruned int8 bundle: score it on test (the run's figure is f32).
            r = subprocess.run([distill, "predict", "--bundle", bdir, "--threshold", "0"], input="\n".join(
                json.dumps({"text": t}) for t in test_texts), capture_output=True, text=True, check=True)
            gold = [row["category"] for row in csv.DictReader(open(os.path.join(data, "test.csv"), newline=""))]
            preds = [json.loads(l)["label"] for l in r.stdout.splitlines()]
            acc = sum(g == p for g, p in zip(gold, preds)) / len(gold)
        r = subprocess.run([distill, "predict", "--bundle", bdir, "--timing", "1000"], stdin=open(texts_file),
                           capture_output=True, text=True, check=True)
        t = json.loads([l for l in r.stderr.splitlines() if l.startswith("timing ")][0][7:])
        size_rows.append((label, nbytes, acc, t["p50_us"]))
    print()
    print("| model (banking77) | bytes on disk | test acc | single-example p50 µs |")
    print("|---|---|---|---|")
    for name, nbytes, acc, p50 in size_rows:
        print(f"| {name} | {nbytes:,} | {acc:.4f} | {p50:.1f} |")
