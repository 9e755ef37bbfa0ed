#!/usr/bin/env bash
# Builds llama.cpp's own llama-server, llama-bench and llama-quantize (the bench's peers) from the llama.cpp sources that
# llama-cpp-python's sdist carries, into bench/.peers/llama.cpp-build (about 20 minutes on 2 cores, offline after the
# download). npm run bench -- --only=serve uses them when they are there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
peers=$root/bench/.peers
version=0.3.36
src=$peers/llama-cpp-python-src
mkdir -p "$src"
if [ ! -d "$src/llama_cpp_python-$version" ]; then
  python3 -m pip download --no-binary :all: --no-deps "llama-cpp-python==$version" -d "$src" -q
  tar xzf "$src/llama_cpp_python-$version.tar.gz" -C "$src"
fi
cmake -S "$src/llama_cpp_python-$version/vendor/llama.cpp" -B "$peers/llama.cpp-build" -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON -DCMAKE_BUILD_TYPE=Release
cmake --build "$peers/llama.cpp-build" --target llama-server llama-bench llama-quantize -j"$(nproc)"
echo "llama-server: $peers/llama.cpp-build/bin/llama-server"
