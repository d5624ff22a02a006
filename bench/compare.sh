#!/usr/bin/env bash
# distill compare over 200 runs (target under 1 s): the runs are copies of one
# real run's manifests and reports (no weights) with varied configs, seeds and
# metrics; a Python reader of the same files is timed for reference.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
echo "profile: $profile; $(nproc) cores" >&2
out=bench/out/compare
mkdir -p "$out"
src=$(ls -d "$out"/src/sms_spam-bag/*/ 2>/dev/null | head -1 || true)
if [ -z "$src" ]; then
  src=$("$bin" train configs/exp/sms_spam-bag.toml --experiments "$out/src" --set train.epochs=2 2>/dev/null | tail -1)
  "$bin" eval "$src" --suite configs/suites/sms_spam.toml >/dev/null 2>&1 || true
fi
python3 bench/compare.py "$bin" "$src" "$out/runs" "${BENCH_COMPARE_RUNS:-200}"
