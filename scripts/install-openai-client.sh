#!/usr/bin/env bash
# A venv with the official `openai` Python client (PyPI, pinned) for the
# `distill serve` compatibility tests, outside the clone, keyed by version.
# Prints the venv's python.
set -euo pipefail
openai=3.51.0
venv="${DISTILL_OPENAI_VENV:-$HOME/.cache/distill-openai-venv-$openai}"
if [ ! -f "$venv/.done" ]; then
  echo "installing openai==$openai into $venv" >&2
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install -q "openai==$openai" >&2
  touch "$venv/.done"
fi
echo "$venv/bin/python"
