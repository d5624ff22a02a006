#!/usr/bin/env bash
# distill serve under load (wrk from Debian, one client thread) on the
# banking77 bag student: requests/s and p50/p99 for local-only traffic and
# for a mix with 20% escalated to an instant upstream (distill-testkit),
# the local tier's overhead over in-process `distill predict`, and the same
# model served the Python way (FastAPI + uvicorn + onnxruntime on the
# exported ONNX bundle, pinned, in a venv this script creates), same run.
# Then a soak (BENCH_SERVE_SOAK_S, default 600 s; 0 skips it) with RSS growth.
# Targets: >= 5x the Python server's requests/s at a lower p99; local-tier
# overhead < 0.2 ms at p50; the soak with zero errors and RSS growth < 5%.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo -n"
  $sudo apt-get install -y -q wrk >/dev/null 2>&1 ||
    { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q wrk >/dev/null; }
fi
py=$(bash scripts/install-serve-bench.sh)
. bench/lib.sh
echo "profile: $profile; $(nproc) cores" >&2
out=bench/out/serve
mkdir -p "$out"
banking77_run "$out"
"$bin" export "$run" --format burn --verify-rows 3080 --out "$out/bundles/burn" >/dev/null 2>&1
"$bin" export "$run" --format onnx --out "$out/bundles/onnx" >/dev/null 2>&1
"$py" bench/serve.py "$bin" "$testkit" "$out"
