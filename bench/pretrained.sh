#!/usr/bin/env bash
# bench-pretrained: MiniLM-L6 fine-tuning and embedding throughput, distill
# (burn, CPU) vs PyTorch 2.15 (CPU, 1 and 2 threads) vs onnxruntime 1.32, in
# one run. Installs MiniLM (scripts/install-teachers.sh) and the peers
# (scripts/install-torch.sh) outside the clone. BENCH_STEPS (30) fine-tuning
# steps per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${DISTILL_SHARED:-../shared}
out=bench/out/pretrained
minilm=$(bash scripts/install-teachers.sh | sed -n 's/^MINILM_DIR=//p')
py=$(bash scripts/install-torch.sh)
. bench/lib.sh
echo "profile: $profile; $(nproc) cores" >&2
rm -rf "$out"
"$py" bench/pretrained.py "$bin" "$shared" "$minilm" "$out"
