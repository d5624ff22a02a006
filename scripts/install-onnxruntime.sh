#!/usr/bin/env bash
# A venv with the real onnxruntime and onnx (PyPI, pinned) for the export
# parity tests and bench-predict, outside the clone, keyed by version.
# Prints the venv's python.
set -euo pipefail
ort=1.32.0
onnx=1.23.2
venv="${DISTILL_ONNX_VENV:-$HOME/.cache/distill-onnx-venv-$ort}"
if [ ! -f "$venv/.done" ]; then
  echo "installing onnxruntime==$ort onnx==$onnx into $venv" >&2
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install -q "onnxruntime==$ort" "onnx==$onnx" "numpy<3" >&2
  touch "$venv/.done"
fi
echo "$venv/bin/python"
