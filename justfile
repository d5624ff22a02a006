# Human entry points. CI uses plain bash (.ci/run).

# The whole pipeline on built-in synthetic support tickets.
demo:
    cargo run --release -- demo

# Run the test suite (the same command CI runs).
test:
    bash scripts/install-teachers.sh && cargo test --workspace

# Import + curate benchmark: it_service_tickets and a 1M-row perturbed copy.
bench-curate:
    bash bench/curate.sh

# Training benchmark: distill bag + encoder vs fastText on banking77.
bench-train:
    bash bench/train.sh

# Teacher collection: client overhead (vs Python requests) and concurrency against llama-server.
# MiniLM-L6 fine-tuning and embedding: distill vs PyTorch (1 and 2 threads) vs onnxruntime.
bench-pretrained:
    bash bench/pretrained.sh

bench-teach:
    bash bench/teach.sh

# Extraction: the fast tagger vs sklearn-crfsuite on SNIPS and NLU++ banking (span F1, speed, size).
bench-extract:
    bash bench/extract.sh

# Evaluation: distill eval on banking77 (target under 2 s), scikit-learn metrics for reference.
bench-eval:
    bash bench/eval.sh

# Compare: distill compare over 200 runs (target under 1 s).
bench-compare:
    bash bench/compare.sh

# Edge prediction: distill predict (burn fp32/int8) vs onnxruntime (fp32/int8, 1 and 2 threads).
bench-predict:
    bash bench/predict.sh

bench: bench-curate bench-train bench-teach bench-eval bench-compare bench-predict bench-serve bench-extract

# Serving: distill serve (local-only and 20% escalated) vs FastAPI + uvicorn + onnxruntime, plus a soak.
bench-serve:
    bash bench/serve.sh
