#!/usr/bin/env bash
# Teacher collection: client overhead per request against an instant-answer
# endpoint (distill vs Python `requests` with a keep-alive session, same
# endpoint, same body), and requests in flight against llama-server --parallel 4.
# BENCH_TEACH_N (instant requests, default 3000), BENCH_TEACH_LLAMA_N (rows, default 48).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-teachers.sh >/dev/null
. bench/lib.sh
echo "profile: $profile; $(nproc) cores" >&2
python3 bench/teach.py "$bin" "$testkit" bench/out/teach "${BENCH_TEACH_N:-3000}" "${BENCH_TEACH_LLAMA_N:-48}"
