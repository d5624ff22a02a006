#!/usr/bin/env bash
# banking77: distill bag, distill encoder and fastText (PyPI fasttext-wheel, in a
# venv this script creates), same epochs and dimension, one run, one machine.
# BENCH_EPOCHS (comma list, default 10,50), BENCH_DIM (64), BENCH_ENCODER_EPOCHS (10; 0 skips).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${DISTILL_SHARED:-../shared}
out=bench/out/train
venv=${DISTILL_BENCH_VENV:-$HOME/.cache/distill-bench-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import fasttext" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "fasttext-wheel==0.9.2" "numpy<2"
fi
. bench/lib.sh
echo "profile: $profile; $(nproc) cores" >&2
"$venv/bin/python" bench/train.py "$bin" "$shared" "$out" \
  "${BENCH_EPOCHS:-10,50}" "${BENCH_DIM:-64}" "${BENCH_ENCODER_EPOCHS:-10}"
