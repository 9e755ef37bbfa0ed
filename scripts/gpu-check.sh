#!/usr/bin/env bash
# Run once on the GPU machine (H100/H200, offline, bare): builds the addon against the machine's own PyTorch
# (its libtorch has CUDA) with CMake directly, checks parity on "cuda" against the CPU golden files, benchmarks
# on "cuda", and runs Hugging Face transformers on the same shapes. Needs, carried in .gpu/: node.xz (xz -c
# /usr/bin/node), node_modules/ (the runtime packages and node-api-headers / node-addon-api); and dist/ (npm run build).
# Writes $OUT/gpu-check.json, $OUT/hf.json and $OUT/build.log.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT" /tmp/nodebin
if ! command -v node >/dev/null; then xz -dc .gpu/node.xz > /tmp/nodebin/node && chmod +x /tmp/nodebin/node; export PATH=/tmp/nodebin:$PATH; fi
[ -e node_modules ] || ln -s .gpu/node_modules node_modules
node --version; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
TD=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')/Torch
GEN=""; command -v ninja >/dev/null && GEN="-G Ninja"
{ cmake -S . -B build-cuda $GEN -DCMAKE_BUILD_TYPE=Release -DTorch_DIR="$TD" -DCMAKE_JS_INC="$PWD/node_modules/node-api-headers/include" \
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/build-cuda/Release" && cmake --build build-cuda -j 16; } > "$OUT/build.log" 2>&1
status=$?
grep -E "error|Error" "$OUT/build.log" | head -40
[ $status -eq 0 ] || { echo "build failed"; tail -20 "$OUT/build.log"; exit 1; }
export TORCHLM_BINARY=$PWD/build-cuda/Release/torchlm_testing.node TORCHLM_NO_PROGRESS=1
python3 scripts/reference.py --models /tmp/tiny > /dev/null
timeout 300 node dist/bench/gpu-check.js /tmp/tiny/hub-f32 > "$OUT/gpu-check.json"
echo "torchlm: $?"
timeout 200 python3 bench/hf_gpu.py > "$OUT/hf.json"
echo "transformers: $?"
cat "$OUT/gpu-check.json" | head -60; cat "$OUT/hf.json"
