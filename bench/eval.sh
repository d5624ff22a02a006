#!/usr/bin/env bash
# distill eval on the banking77 test split (3,080 rows) with a bag student,
# plots included: wall time per run (target under 2 s on 2 cores), and the
# metrics-only time of scikit-learn on the same predictions for reference.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${DISTILL_BENCH_VENV:-$HOME/.cache/distill-bench-venv}
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/python" -c "import sklearn" 2>/dev/null || "$venv/bin/pip" install -q scikit-learn "numpy<2"
. bench/lib.sh
echo "profile: $profile; $(nproc) cores" >&2
out=bench/out/eval
mkdir -p "$out"
banking77_run "$out"
"$venv/bin/python" bench/eval.py "$bin" "$run" "${BENCH_EVAL_REPEATS:-5}"
