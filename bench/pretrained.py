"""bench-pretrained: distill's pretrained encoder (MiniLM-L6, burn on the CPU)
against PyTorch (same model, same batch size, same kind of padded batches)
and onnxruntime (distill's own ONNX export of the same weights).

usage: python bench/pretrained.py DISTILL_BIN SHARED_DIR MINILM_DIR OUT_DIR

Prints a Markdown table. Measured, in one run on this machine:
  * fine-tuning examples/s: full fine-tuning (every layer), batch 32,
    max-len 64, random batches padded to their longest text; distill at 2
    and 1 threads, PyTorch at 1 and 2 threads (its best is the reference);
  * embedding sentences/s: banking77's training texts, length-sorted
    batches, 2 threads: distill (the fast mode's frozen encoder pass),
    onnxruntime on distill's fp32 ONNX export of the same model, and PyTorch;
  * peak RSS of each process.
"""
import csv
import json
import os
import re
import resource
import subprocess
import sys
import time

import numpy as np

BATCH = 32
MAX_LEN = 64
STEPS = int(os.environ.get("BENCH_STEPS", "30"))
EMBED_BATCH = 256


def banking77_texts(shared):
    with open(os.path.join(shared, "datasets/banking77/train.csv"), newline="") as f:
        return [r["text"] for r in csv.DictReader(f)]


def encode(tok, texts):
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    out = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids[: MAX_LEN - 2]
        out.append([cls] + ids + [sep])
    return out


def pad(seqs):
    width = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), width), dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.float32)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1.0
    return ids, mask


def torch_model(model_dir, classes):
    import torch
    from torch import nn

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
    from bert_numpy import load_safetensors

    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    d, heads, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
            self.ln1 = nn.LayerNorm(d, eps=eps)
            self.i = nn.Linear(d, cfg["intermediate_size"])
            self.out = nn.Linear(cfg["intermediate_size"], d)
            self.ln2 = nn.LayerNorm(d, eps=eps)
            self.drop = nn.Dropout(0.1)

        def forward(self, x, bias):
            b, s, _ = x.shape
            split = lambda t: t.view(b, s, heads, d // heads).transpose(1, 2)
            q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
            a = torch.softmax(q @ k.transpose(2, 3) / (d // heads) ** 0.5 + bias, -1)
            ctx = (self.drop(a) @ v).transpose(1, 2).reshape(b, s, d)
            x = self.ln1(self.drop(self.o(ctx)) + x)
            return self.ln2(self.drop(self.out(nn.functional.gelu(self.i(x)))) + x)

    class Bert(nn.Module):
        def __init__(self):
            super().__init__()
            self.word = nn.Embedding(cfg["vocab_size"], d)
            self.pos = nn.Embedding(cfg["max_position_embeddings"], d)
            self.typ = nn.Embedding(cfg.get("type_vocab_size", 2), d)
            self.ln = nn.LayerNorm(d, eps=eps)
            self.layers = nn.ModuleList(Layer() for _ in range(cfg["num_hidden_layers"]))
            self.head = nn.Linear(d, classes)
            self.drop = nn.Dropout(0.1)

        def embed(self, ids, mask):
            s = ids.shape[1]
            x = self.word(ids) + self.pos.weight[:s] + self.typ.weight[0]
            x = self.drop(self.ln(x))
            bias = ((mask - 1.0) * 1e9)[:, None, None, :]
            for l in self.layers:
                x = l(x, bias)
            e = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
            return e / e.norm(dim=1, keepdim=True).clamp(min=1e-12)

        def forward(self, ids, mask):
            return self.head(self.drop(self.embed(ids, mask)) * d**0.5)

    m = Bert()
    w = {k: torch.from_numpy(v.astype(np.float32)) for k, v in load_safetensors(
        os.path.join(model_dir, "model.safetensors")).items()}
    with torch.no_grad():
        m.word.weight.copy_(w["embeddings.word_embeddings.weight"])
        m.pos.weight.copy_(w["embeddings.position_embeddings.weight"])
        m.typ.weight.copy_(w["embeddings.token_type_embeddings.weight"])
        m.ln.weight.copy_(w["embeddings.LayerNorm.weight"])
        m.ln.bias.copy_(w["embeddings.LayerNorm.bias"])
        for i, l in enumerate(m.layers):
            p = f"encoder.layer.{i}."
            pairs = [(l.q, "attention.self.query"), (l.k, "attention.self.key"),
                     (l.v, "attention.self.value"), (l.o, "attention.output.dense"),
                     (l.i, "intermediate.dense"), (l.out, "output.dense"),
                     (l.ln1, "attention.output.LayerNorm"), (l.ln2, "output.LayerNorm")]
            for mod, name in pairs:
                mod.weight.copy_(w[p + name + ".weight"])
                mod.bias.copy_(w[p + name + ".bias"])
    return m


def torch_finetune(model_dir, seqs, labels, classes, threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = torch_model(model_dir, classes)
    m.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.01)
    rng = np.random.default_rng(0)
    done, start = 0, None
    for step in range(STEPS + 3):
        if step == 3:
            start = time.perf_counter()
        idx = rng.choice(len(seqs), BATCH, replace=False)
        ids, mask = pad([seqs[i] for i in idx])
        y = torch.tensor([labels[i] for i in idx])
        loss = torch.nn.functional.cross_entropy(m(torch.from_numpy(ids), torch.from_numpy(mask)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= 3:
            done += BATCH
    return done / (time.perf_counter() - start)


def length_batches(seqs):
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i]), i))
    for i in range(0, len(order), EMBED_BATCH):
        yield pad([seqs[j] for j in order[i : i + EMBED_BATCH]])


def torch_embed(model_dir, seqs, threads):
    import torch

    torch.set_num_threads(threads)
    m = torch_model(model_dir, 2).eval()
    start = time.perf_counter()
    with torch.no_grad():
        for ids, mask in length_batches(seqs):
            m.embed(torch.from_numpy(ids), torch.from_numpy(mask))
    return len(seqs) / (time.perf_counter() - start)


def ort_embed(onnx_path, seqs, threads):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    start = time.perf_counter()
    for ids, _ in length_batches(seqs):
        sess.run(["logits"], {"input_ids": ids})
    return len(seqs) / (time.perf_counter() - start)


def in_child(fn, *args):
    """Run fn in a fresh process (own peak RSS, own thread settings)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, fn, args))
    p.start()
    rate, rss = q.get()
    p.join()
    return rate, rss


def _child(q, fn, args):
    rate = fn(*args)
    q.put((rate, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def timed(cmd, env=None):
    """Run distill under /usr/bin/time; (stdout, stderr, peak RSS MiB)."""
    full = ["/usr/bin/time", "-f", "PEAK_RSS_KB=%M"] + cmd
    p = subprocess.run(full, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    rss = int(re.search(r"PEAK_RSS_KB=(\d+)", p.stderr).group(1)) / 1024
    return p.stdout, p.stderr, rss


def main():
    bin_, shared, model_dir, out = sys.argv[1:5]
    os.makedirs(out, exist_ok=True)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    with open(os.path.join(shared, "datasets/banking77/train.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    texts = [r["text"] for r in rows]
    names = sorted({r["category"] for r in rows})
    labels = [names.index(r["category"]) for r in rows]
    seqs = encode(tok, texts)

    rows_out = []
    # distill fine-tuning: every layer trains; steps-only examples/s from run.json.
    for threads in (2, 1):
        exp = os.path.join(out, f"exp-ft-{threads}")
        stdout, _, rss = timed(
            [bin_, "train", "configs/recipe/minilm-teacher.toml", "--experiments", exp,
             "--set", "train.epochs=0", "--set", f"train.max-steps={STEPS}",
             "--set", "train.freeze-layers=0",
             "--set", "train.checkpoint-seconds=100000"],
            env={"RAYON_NUM_THREADS": str(threads)},
        )
        run = stdout.strip().splitlines()[-1]
        info = json.load(open(os.path.join(run, "run.json")))
        rows_out.append((f"distill fine-tune ({threads} threads)", info["metrics"]["examples_per_s"], rss))
    ft_run = run
    for threads in (1, 2):
        rate, rss = in_child(torch_finetune, model_dir, seqs, labels, len(names), threads)
        rows_out.append((f"PyTorch 2.15 fine-tune ({threads} threads)", rate, rss))

    # Embedding throughput: distill's frozen-encoder pass (fast mode, no cache).
    cache = os.path.join(out, "cache")
    subprocess.run(["rm", "-rf", cache])
    _, stderr, rss = timed(
        [bin_, "train", "configs/recipe/minilm-head.toml", "--experiments",
         os.path.join(out, "exp-head"), "--set", "train.epochs=1"],
        env={"DISTILL_CACHE": cache},
    )
    m = re.search(r"embedded (\d+) texts with the frozen encoder in ([\d.]+) s \((\d+)/s\)", stderr)
    rows_out.append(("distill embed (2 threads)", float(m.group(3)), rss))
    bundle, _, _ = timed([bin_, "export", ft_run, "--format", "onnx", "--verify-rows", "0",
                          "--out", os.path.join(out, "onnx")])
    onnx_path = os.path.join(bundle.strip().splitlines()[-1], "model.onnx")
    rate, rss = in_child(ort_embed, onnx_path, seqs, 2)
    rows_out.append(("onnxruntime 1.32 embed, distill's ONNX (2 threads)", rate, rss))
    rate, rss = in_child(torch_embed, model_dir, seqs, 2)
    rows_out.append(("PyTorch 2.15 embed (2 threads)", rate, rss))

    print(f"MiniLM-L6 (22.7M params), banking77, batch {BATCH} (fine-tune, {STEPS} steps) / "
          f"{EMBED_BATCH} length-sorted (embed), max-len {MAX_LEN}, {os.cpu_count()} cores\n")
    print("| what | examples/s | peak RSS MiB |\n|---|---|---|")
    for name, rate, rss in rows_out:
        print(f"| {name} | {rate:.1f} | {rss:.0f} |")
    ft = {n: r for n, r, _ in rows_out}
    torch_best = max(ft["PyTorch 2.15 fine-tune (1 threads)"], ft["PyTorch 2.15 fine-tune (2 threads)"])
    distill_best = max(ft["distill fine-tune (2 threads)"], ft["distill fine-tune (1 threads)"])
    print(f"\nfine-tuning: distill / PyTorch best = {distill_best / torch_best:.2f}x")
    print(f"embedding: distill / onnxruntime = "
          f"{ft['distill embed (2 threads)'] / ft['onnxruntime 1.32 embed, distill' + chr(39) + 's ONNX (2 threads)']:.2f}x")


if __name__ == "__main__":
    main()
