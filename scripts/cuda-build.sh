#!/usr/bin/env bash
# The CUDA build, checked without a GPU: the addon compiled against pip's CUDA libtorch (torch==2.14.1, in
# .venv-cuda) with nvcc's toolkit into build-cuda/, then loaded, and with --test the native parity suites run on
# that binary (CPU ops need no GPU), so the CUDA build cannot rot between GPU sessions. CI runs it with --test.
#   bash scripts/cuda-build.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-cuda
log=build-logs/cuda-build.log
mkdir -p build-logs
: > "$log"
step() {  # one line per step, the log's end when it fails
  local what=$1; shift
  local t0=$SECONDS
  if "$@" >>"$log" 2>&1; then echo "cuda-build: $what ($((SECONDS - t0)) s)"; else
    echo "cuda-build: $what failed; the end of $log:"; tail -40 "$log"; exit 1; fi
}
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[ -x "$nvcc" ] || { echo "cuda-build: nvcc not found (install the CUDA toolkit)"; exit 1; }
cuda_root=$(dirname "$(dirname "$(readlink -f "$nvcc")")")
[ -x $venv/bin/python ] || step "python3 -m venv $venv" python3 -m venv $venv
$venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.14.1") else 1)' 2>/dev/null ||
  step "pip install torch==2.14.1 (the CUDA build)" $venv/bin/pip install --disable-pip-version-check torch==2.14.1
torch_dir=$($venv/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)')/Torch
echo "cuda-build: libtorch $($venv/bin/python -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)'), nvcc in $cuda_root"
# cmake-js builds into build/; keep the CPU build aside meanwhile.
[ -d build ] && mv build build-cpu-aside
restore() { rm -rf build-cuda; [ -d build ] && mv build build-cuda; [ -d build-cpu-aside ] && mv build-cpu-aside build; true; }
trap restore EXIT
step "cmake-js against the CUDA libtorch" env CMAKE_BUILD_PARALLEL_LEVEL=2 CUDACXX="$nvcc" CUDA_HOME="$cuda_root" \
  node node_modules/cmake-js/bin/cmake-js rebuild --CDTorch_DIR="$torch_dir" --CDCUDAToolkit_ROOT="$cuda_root" \
  --CDCMAKE_CUDA_COMPILER="$nvcc"
node -e 'const a = require("./build/Release/torchlm.node"); const i = a.info();
  if (!/^2\.14/.test(i.torch_version)) throw new Error("not the CUDA libtorch: " + i.torch_version);
  console.log("cuda-build: the addon loads on libtorch", i.torch_version, "(cuda available:", i.cuda + ")")'
if [ "${1:-}" = "--test" ]; then
  # the suites that exercise native code against the references (the CLI, fault and fuzz suites run on the CPU build)
  echo "cuda-build: the native parity suites on the CUDA binary"
  npm test -- test/model test/generation test/tensor test/loss test/trainer test/gemm test/matvec test/hf-golden test/lifetimes
fi
