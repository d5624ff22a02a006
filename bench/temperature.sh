#!/usr/bin/env bash
# The distillation temperature's default, measured: a stronger banking77 bag
# (dim 128, 30 epochs) teaches the standard bag student through a local
# teacher log (exact probabilities) on the training rows; students at
# T = 1, 2, 4 (alpha 0.5) and gold-only, SEEDS seeds each (default 3);
# banking77 test accuracy, mean and spread.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
out=bench/out/temperature
rm -rf "$out"; mkdir -p "$out"
seeds=${SEEDS:-3}
exp="$out/exp"
teacher_run=$("$bin" train configs/exp/banking77-bag.toml --experiments "$exp" --set 'name="b77-teacher"' \
  --set model.dim=128 --set train.epochs=30 --set train.patience=5 2>/dev/null | tail -1)
"$bin" teach configs/teacher/banking77-local.toml --out "$out/teacher" \
  --set "teacher.run=\"$(realpath "$teacher_run")\"" --set 'splits=["train"]' >/dev/null 2>&1
acc() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]+'/run.json'))['metrics']['test_accuracy'])" "$1"; }
echo "teacher (bag dim 128, 30 epochs): $(acc "$teacher_run")"
for t in gold 1 2 4; do
  accs=()
  for seed in $(seq 1 "$seeds"); do
    if [ "$t" = gold ]; then
      run=$("$bin" train configs/exp/banking77-bag.toml --experiments "$exp" --set 'name="b77-gold"' --set seed=$seed 2>/dev/null | tail -1)
    else
      run=$("$bin" train configs/exp/banking77-bag.toml --experiments "$exp" --set "name=\"b77-T$t\"" --set seed=$seed \
        --set "teacher=\"$(realpath "$out/teacher")\"" --set distill.temperature=$t 2>/dev/null | tail -1)
    fi
    accs+=("$(acc "$run")")
  done
  python3 -c "
import statistics, sys
a = [float(x) for x in sys.argv[2:]]
print(f'{sys.argv[1]:>5}: test accuracy {100*statistics.mean(a):.2f} +- {100*statistics.pstdev(a):.2f} over {len(a)} seeds ({\", \".join(f\"{100*x:.2f}\" for x in a)})')
" "$( [ "$t" = gold ] && echo gold-only || echo "T=$t")" "${accs[@]}"
done
