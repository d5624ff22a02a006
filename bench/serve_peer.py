"""The peer for bench/serve.sh: the same model served the way a Python user
would, FastAPI + uvicorn + onnxruntime on the exported ONNX bundle.

Conservative in the peer's favour: the client sends the featurized input ids
(distill serve gets raw text and featurizes it itself), so this app does
strictly less work per request than distill serve does."""
import json
import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request

bundle = os.environ["BUNDLE"]
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
session = ort.InferenceSession(os.path.join(bundle, "model.onnx"), opts, providers=["CPUExecutionProvider"])
labels = json.load(open(os.path.join(bundle, "labels.json")))
app = FastAPI()


@app.post("/v1/classify")
async def classify(request: Request):
    body = await request.json()
    logits = session.run(["logits"], {"input_ids": np.array([body["ids"]], dtype=np.int64)})[0][0]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    i = int(p.argmax())
    return {"label": labels[i], "confidence": float(p[i])}
