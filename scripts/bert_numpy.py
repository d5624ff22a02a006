"""An independent reference for distill's pretrained encoder: a NumPy forward
pass of a Hugging Face BERT checkpoint (model.safetensors + config.json),
written from the paper and `transformers`' BertModel, sharing no code with
distill.

    python bert_numpy.py MODEL_DIR IN.json

IN.json: {"ids": [[...], ...], "embeddings": [[...], ...], "pooling": "mean"|"cls",
"normalize": bool}. Computes the sentence embedding of each id sequence
(float64, no padding: one sequence at a time) and prints JSON with the max
absolute difference from distill's embeddings.
"""
import json
import struct
import sys

import numpy as np
from math import erf, sqrt

DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
        out[name.removeprefix("bert.")] = arr.astype(np.float64)
    return out


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


verf = np.vectorize(erf)


def gelu(x):
    return 0.5 * x * (1.0 + verf(x / sqrt(2.0)))


def embed(W, cfg, ids, pooling, normalize):
    eps = cfg.get("layer_norm_eps", 1e-12)
    heads = cfg["num_attention_heads"]
    s = len(ids)
    x = (
        W["embeddings.word_embeddings.weight"][ids]
        + W["embeddings.position_embeddings.weight"][:s]
        + W["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], eps)
    d = x.shape[1]
    dh = d // heads
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda name, h: h @ W[p + name + ".weight"].T + W[p + name + ".bias"]
        q = lin("attention.self.query", x).reshape(s, heads, dh).transpose(1, 0, 2)
        k = lin("attention.self.key", x).reshape(s, heads, dh).transpose(1, 0, 2)
        v = lin("attention.self.value", x).reshape(s, heads, dh).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / sqrt(dh)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(s, d)
        x = layer_norm(
            lin("attention.output.dense", ctx) + x,
            W[p + "attention.output.LayerNorm.weight"],
            W[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        h = gelu(lin("intermediate.dense", x))
        x = layer_norm(
            lin("output.dense", h) + x,
            W[p + "output.LayerNorm.weight"],
            W[p + "output.LayerNorm.bias"],
            eps,
        )
    e = x[0] if pooling == "cls" else x.mean(0)
    if normalize:
        e = e / max(np.linalg.norm(e), 1e-12)
    return e


def main():
    model_dir, inp = sys.argv[1], sys.argv[2]
    cfg = json.load(open(f"{model_dir}/config.json"))
    W = load_safetensors(f"{model_dir}/model.safetensors")
    req = json.load(open(inp))
    worst = 0.0
    for ids, theirs in zip(req["ids"], req["embeddings"]):
        ours = embed(W, cfg, np.array(ids), req["pooling"], req["normalize"])
        worst = max(worst, float(np.abs(ours - np.array(theirs)).max()))
    print(json.dumps({"rows": len(req["ids"]), "max_abs_diff": worst}))


if __name__ == "__main__":
    main()
