#!/usr/bin/env bash
# Builds the addon with AddressSanitizer + UBSan into build-asan/ and runs the native test suites against it.
# Node is not instrumented, so the ASan runtime is preloaded; leak checking is off (V8 and libtorch keep
# allocations to exit on purpose); any ASan or UBSan report fails the run.
#   bash scripts/sanitize.sh                 # the native suites
#   bash scripts/sanitize.sh test/model.test.ts   # chosen suites
set -euo pipefail
cd "$(dirname "$0")/.."
torch_dir=$(node scripts/find-libtorch.mjs)
asan=$(g++ -print-file-name=libasan.so)
ubsan=$(g++ -print-file-name=libubsan.so)
[ -f "$asan" ] && [ -f "$ubsan" ] || { echo "sanitize: libasan/libubsan not found (install g++)"; exit 1; }

echo "sanitize: building build-asan/ (-fsanitize=address,undefined)"
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} node node_modules/cmake-js/bin/cmake-js build \
  --out build-asan --CDTorch_DIR="$torch_dir" --CDTORCHLM_SANITIZE=ON --CDCMAKE_BUILD_TYPE=RelWithDebInfo >/tmp/torchlm-asan-build.log 2>&1 \
  || { tail -30 /tmp/torchlm-asan-build.log; exit 1; }

suites=("$@")
# the serving engine's suites (continuous batching, the server in its own process, which inherits the preload) and
# the formats that came with them (q8/q4 checkpoints, PEFT adapters, TensorBoard logs, the hostile files of each)
[ ${#suites[@]} -gt 0 ] || suites=(test/tensor.test.ts test/model.test.ts test/errors.test.ts test/loss.test.ts test/generation.test.ts
  test/trainer.test.ts test/lifetimes.test.ts test/fuzz.test.ts test/distributed.test.ts test/matvec.test.ts test/gemm.test.ts test/faults.test.ts
  test/continuous_batching.test.ts test/serve.test.ts test/llama_serve.test.ts test/chat_completions.test.ts
  test/quant.test.ts test/peft.test.ts test/tensorboard.test.ts test/llama.test.ts test/leaks.test.ts test/multinode.test.ts)
log=$(mktemp /tmp/torchlm-asan-XXXX)
echo "sanitize: running ${suites[*]} (reports go to $log.*)"
set +e
TORCHLM_BINARY="$PWD/build-asan/Release/torchlm_testing.node" TORCHLM_NO_CPU_CACHE=1 TORCHLM_NO_PROGRESS=1 \
  LD_PRELOAD="$asan $ubsan" \
  ASAN_OPTIONS="detect_leaks=0:log_path=$log:abort_on_error=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$log" \
  node --experimental-vm-modules --no-warnings node_modules/jest/bin/jest.js --runInBand "${suites[@]}"
status=$?
set -e
if compgen -G "$log.*" >/dev/null; then
  echo "sanitize: sanitizer reports:"
  cat "$log".*
  exit 1
fi
[ $status -eq 0 ] && echo "sanitize: clean (no ASan or UBSan report)" || echo "sanitize: tests failed (status $status)"
exit $status
