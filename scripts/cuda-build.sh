#!/usr/bin/env bash
# The CUDA build, checked without a GPU: the addon compiled against pip's CUDA libtorch (torch==2.14.1, in
# .venv-cuda) with nvcc's toolkit into build-cuda/, then loaded and made the package's prebuilt addon for that libtorch
# (prebuilds/linux-x64-torch2.14.1-cu*), and with --test the native parity suites run on
# that binary (CPU ops need no GPU), so the CUDA build cannot rot between GPU sessions. CI runs it with --test.
# TORCH_CUDA_ARCH_LIST (default 9.0, the H100/H200) spares probing for a GPU.
# Exits 3, installing nothing, where the disk has too little room for it (CI then reports it unchecked).
#   bash scripts/cuda-build.sh [--test [more jest arguments]]
set -euo pipefail
CUDA_BUILD_NEEDS_MB=${CUDA_BUILD_NEEDS_MB:-6000}
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
# the toolkit: CUDA_HOME, else /usr/local/cuda, else where nvcc lives (a wrapper on the PATH may hide it)
cuda_root=${CUDA_HOME:-}
[ -n "$cuda_root" ] || { [ -x /usr/local/cuda/bin/nvcc ] && cuda_root=/usr/local/cuda; } || true
[ -n "$cuda_root" ] || { n=$(command -v nvcc) && cuda_root=$(dirname "$(dirname "$(readlink -f "$n")")"); } || true
nvcc=$cuda_root/bin/nvcc
[ -x "$nvcc" ] || { echo "cuda-build: nvcc not found (install the CUDA toolkit or set CUDA_HOME)"; exit 1; }
if ! $venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.14.1") else 1)' 2>/dev/null; then
  # pip's CUDA torch with what libtorch_cuda.so links (CUDA, cuDNN, NCCL: about 4.5 GB) but not Triton (0.9 GB more),
  # which only torch.compile uses; no pip cache and no bytecode, so the disk holds the venv and nothing beside it
  free_mb=$(df -Pm . | awk 'NR == 2 { print $4 }')
  if [ "$free_mb" -lt "$CUDA_BUILD_NEEDS_MB" ]; then
    echo "cuda-build: $free_mb MB free here; the CUDA build needs about $CUDA_BUILD_NEEDS_MB MB (.venv-cuda, build-cuda/)"
    exit 3
  fi
  [ -x $venv/bin/python ] || step "python3 -m venv $venv" python3 -m venv $venv
  pip=($venv/bin/pip install --disable-pip-version-check --no-cache-dir --no-compile)
  step "pip install --no-deps torch==2.14.1 (the CUDA build)" "${pip[@]}" --no-deps torch==2.14.1
  $venv/bin/python -c 'import importlib.metadata as m
print("\n".join(r for r in m.requires("torch") if not r.startswith("triton")))' > $venv/torch-requires.txt
  step "pip install what torch==2.14.1 requires but Triton" "${pip[@]}" -r $venv/torch-requires.txt
fi
torch_dir=$($venv/bin/python -W ignore -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)/Torch
# NVRTC, which TorchConfig links, comes with the wheel's nvidia packages when the toolkit has none
nvrtc=$(ls "$cuda_root"/lib64/libnvrtc.so* $venv/lib/python3*/site-packages/nvidia/cu*/lib/libnvrtc.so.* 2>/dev/null | head -1 || true)
echo "cuda-build: libtorch $($venv/bin/python -W ignore -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)' 2>/dev/null), nvcc in $cuda_root"
# its own build folder (build-cuda/, kept between runs: a second run recompiles only what changed); the CPU build stays
step "cmake-js against the CUDA libtorch into build-cuda/" env CMAKE_BUILD_PARALLEL_LEVEL=2 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" \
  CUDACXX="$nvcc" CUDA_HOME="$cuda_root" node node_modules/cmake-js/bin/cmake-js build --out build-cuda --CDTorch_DIR="$torch_dir" \
  --CDCUDAToolkit_ROOT="$cuda_root" --CDCMAKE_CUDA_COMPILER="$nvcc" --CDCUDA_TOOLKIT_ROOT_DIR="$cuda_root" \
  ${nvrtc:+--CDCUDA_nvrtc_LIBRARY="$(readlink -f "$nvrtc")"}
export TORCHLM_BINARY=$PWD/build-cuda/Release/torchlm_testing.node
node -e 'const a = require(process.env.TORCHLM_BINARY); const i = a.info();
  if (!/^2\.14/.test(i.torch_version)) throw new Error("not the CUDA libtorch: " + i.torch_version);
  console.log("cuda-build: the addon loads on libtorch", i.torch_version, "(cuda available:", i.cuda + ")")'
# the shipped addon of this build as the package's prebuilt for this libtorch (npm pack ships prebuilds/)
step "the prebuilt addon (scripts/prebuilds.mjs make)" node scripts/prebuilds.mjs make --from build-cuda/Release/torchlm.node
if [ "${1:-}" = "--test" ]; then
  # the suites that exercise native code against the references (the CLI, fault and fuzz suites run on the CPU build)
  echo "cuda-build: the native parity suites on the CUDA binary (TORCHLM_BINARY=$TORCHLM_BINARY)"
  npm test -- test/model test/generation test/tensor test/loss test/trainer test/gemm test/matvec test/hf-golden test/lifetimes "${@:2}"
fi
