#!/usr/bin/env bash
# A venv with PyTorch (PyPI torch 2.15.0, run on the CPU), onnxruntime and
# tokenizers, for bench/pretrained.sh: the peers distill's pretrained
# encoder is measured against. Outside the clone, keyed by version; prints
# the venv's python. Not needed by the tests.
#
# PyPI's Linux torch 2.15.0 is a CUDA build: `--no-deps` installs, but
# `import torch` then fails (libtorch_cpu.so links libcudart.so.13 and
# libcupti.so.13, torch._C links cuDNN), so it is installed with its NVIDIA
# runtime wheels (~3 GB on disk). No GPU is needed to run it.
set -euo pipefail
torch=2.15.0
ort=1.32.0
tok=0.23.1
venv="${DISTILL_TORCH_VENV:-$HOME/.cache/distill-torch-venv-$torch-$ort}"
if [ ! -f "$venv/.done" ]; then
  echo "installing torch==$torch (with its CUDA runtime wheels, ~3 GB; runs on the CPU), onnxruntime==$ort, tokenizers==$tok into $venv" >&2
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install -q "torch==$torch" "numpy<3" "onnxruntime==$ort" >&2
  "$venv/bin/pip" install -q --no-deps "tokenizers==$tok" >&2
  "$venv/bin/python" -c "import torch, onnxruntime, tokenizers" >&2
  touch "$venv/.done"
fi
echo "$venv/bin/python"
