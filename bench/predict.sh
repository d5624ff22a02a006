#!/usr/bin/env bash
# Edge prediction on banking77 test texts: distill predict on burn bundles
# (fp32, int8) against onnxruntime (PyPI, 1 and 2 threads) on the exported
# ONNX (fp32, int8), same model, same machine, one run; plus bundle sizes and
# test accuracy. Targets: distill at most 1.5x onnxruntime's single-example
# latency; the bag under 50 us per example.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(bash scripts/install-onnxruntime.sh)
. bench/lib.sh
echo "profile: $profile; $(nproc) cores" >&2
out=bench/out/predict
mkdir -p "$out"
banking77_run "$out"
"$bin" eval "$run" --suite configs/suites/banking77.toml >/dev/null 2>&1 || true
for f in burn onnx; do for q in none int8; do
  "$bin" export "$run" --format $f --quantize $q --verify-rows 3080 --out "$out/bundles/$f-$q" >/dev/null 2>&1
done; done
"$py" bench/predict.py "$bin" "$out/bundles" "${BENCH_PREDICT_ROWS:-1000}"
