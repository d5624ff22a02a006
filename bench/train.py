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
    rows.append(dict(name=name, acc=m["test_accuracy"], f1=m["test_macro_f1"], train_s=info.get("loop_seconds") or info["train_seconds"],
                     wall=wall, eps=m["examples_per_s"], rss=rss, bytes=info["model_bytes"],
                     params=info["params"], base=base))


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
