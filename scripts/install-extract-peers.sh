#!/usr/bin/env bash
# A venv with the extraction peers (PyPI, pinned), outside the clone, keyed
# by version: seqeval (the span metrics reference CI checks distill against)
# sklearn-crfsuite (the CRF tagger bench-extract compares with) and pyarrow
# (it reads the curated dataset).
# Prints the venv's python.
set -euo pipefail
seqeval=1.2.2
crfsuite=0.5.0
venv="${DISTILL_EXTRACT_VENV:-$HOME/.cache/distill-extract-venv-$seqeval-$crfsuite-2}"
if [ ! -f "$venv/.done" ]; then
  echo "installing seqeval==$seqeval sklearn-crfsuite==$crfsuite into $venv" >&2
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install -q "seqeval==$seqeval" "sklearn-crfsuite==$crfsuite" "pyarrow==22.0.0" "numpy<3" >&2
  touch "$venv/.done"
fi
echo "$venv/bin/python"
