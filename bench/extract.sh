#!/usr/bin/env bash
# bench-extract: slot extraction on SNIPS (train vs the official validate
# split, held out as test) and NLU++ banking (hash split by curation,
# 80/10/10, seed 42): distill's fast tagger against sklearn-crfsuite (the
# CRF a user would reach for; standard word + window features) in one run.
# Prints one table: span F1 (exact label/start/end, micro), exact match per
# example, training time, prediction rows/s and p50 latency per sentence
# (single-threaded, one sentence at a time, model loaded), model bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out/extract
py=$(bash scripts/install-extract-peers.sh)
. bench/lib.sh
echo "profile: $profile; $(nproc) cores" >&2
rm -rf "$out"
mkdir -p "$out"

row() { # name f1 exact train_s rows_per_s p50_us bytes
  printf '| %s | %.4f | %.4f | %.1f | %.0f | %.1f | %s |\n' "$@"
}

bench_one() { # label config data-config curate-or-empty test-split
  local label=$1 config=$2 data=$3 curate=$4 split=$5
  local ds="$out/$label-data"
  "$bin" data import --config "$data" -o "$ds.raw" >/dev/null 2>&1
  if [ -n "$curate" ]; then
    "$bin" data curate "$ds.raw" --config "$curate" -o "$ds" >/dev/null 2>&1
  else
    mv "$ds.raw" "$ds"
  fi
  local run
  run=$("$bin" train "$config" --experiments "$out/exp" 2>"$out/$label-train.log" | tail -1)
  "$bin" eval "$run" >/dev/null 2>&1
  local bundle
  bundle=$("$bin" export "$run" --quantize int8 2>/dev/null | tail -1)
  python3 -c "
import json,sys
for l in open('$run/eval/extract/predictions.jsonl'): print(json.dumps({'text': json.loads(l)['text']}))
" > "$out/$label-test.jsonl"
  "$bin" predict --bundle "$bundle" --timing 100000 < "$out/$label-test.jsonl" 2>"$out/$label-timing.txt" >"$out/$label-int8.jsonl"
  python3 bench/extract_table.py "$run" "$bundle" "$out/$label-timing.txt" "$out/$label-int8.jsonl" "$label"
  "$py" bench/extract_crf.py "$ds" "$split" > "$out/$label-crf.json"
  python3 - "$out/$label-crf.json" "$label" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
print("| %s, %s | %.4f | %.4f | %.1f | %.0f | %.1f | %d |" % (
    c["peer"], sys.argv[2], c["span_f1"], c["exact_match"], c["train_s"], c["rows_per_s"], c["p50_us"], c["model_bytes"]))
EOF
}

{
  echo "| model, dataset | span F1 | exact match | train s | rows/s | p50 µs | model bytes |"
  echo "|---|---|---|---|---|---|---|"
  bench_one snips configs/extract/snips-tagger.toml configs/data/snips-slots.toml "" test
  bench_one nlupp configs/extract/nlupp-tagger.toml configs/data/nlupp_banking.toml configs/curate/default.toml test
} | tee "$out/table.md"
