#!/usr/bin/env bash
# Import + curate it_service_tickets (47,837 rows) and a 1,000,000-row
# perturbed copy; print rows/s per stage and peak RSS. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${DISTILL_SHARED:-../shared}
src="$shared/datasets/it_service_tickets/all_tickets_processed_improved_v3.csv"
out=bench/out
mkdir -p "$out"
. bench/lib.sh
echo "profile: $profile" >&2
[ -f "$out/tickets_1m.csv" ] || python3 bench/perturb.py "$src" "$out/tickets_1m.csv" 1000000
echo "threads: $(nproc) cores; config: configs/curate/bench.toml" >&2
python3 bench/curate.py "$bin" configs/curate/bench.toml "$out" \
  "it_service_tickets=$src" "tickets_1m=$out/tickets_1m.csv"
