#!/usr/bin/env bash
# A venv for bench/serve.sh's peer (PyPI, pinned): FastAPI + uvicorn (with
# uvloop and httptools, its fastest setting) + onnxruntime. Outside the
# clone, keyed by version. Prints the venv's python.
set -euo pipefail
fastapi=0.163.2
uvicorn=0.54.0
ort=1.32.0
venv="${DISTILL_SERVE_BENCH_VENV:-$HOME/.cache/distill-serve-bench-venv-$fastapi-$uvicorn-$ort}"
if [ ! -f "$venv/.done" ]; then
  echo "installing fastapi==$fastapi uvicorn[standard]==$uvicorn onnxruntime==$ort into $venv" >&2
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install -q "fastapi==$fastapi" "uvicorn[standard]==$uvicorn" "onnxruntime==$ort" "numpy<3" >&2
  touch "$venv/.done"
fi
echo "$venv/bin/python"
