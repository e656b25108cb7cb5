#!/usr/bin/env bash
# Builds and runs every test: the release build (CUDA code compiled when nvcc is present;
# CUDA/Vulkan cases skip with the reason where no device exists), the CPU paths again under
# AddressSanitizer + UBSan and under ThreadSanitizer, and a downstream project that uses
# find_package(ringkernel) from an installed copy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)

echo "== release build + all tests"
cmake --preset release >/dev/null
cmake --build --preset release --parallel "$jobs"
ctest --preset release --parallel "$jobs"

echo "== AddressSanitizer + UBSan (CPU paths)"
cmake --preset asan >/dev/null
cmake --build --preset asan --parallel "$jobs"
ctest --preset asan --parallel "$jobs" -L "core|cpu"

echo "== ThreadSanitizer (CPU paths)"
cmake --preset tsan >/dev/null
cmake --build --preset tsan --parallel "$jobs"
ctest --preset tsan --parallel "$jobs" -L "core|cpu"

echo "== downstream find_package(ringkernel)"
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install build/release --prefix "$prefix/install" >/dev/null
cmake -S tests/downstream -B "$prefix/build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix/install" >/dev/null
cmake --build "$prefix/build" >/dev/null
"$prefix/build/downstream"
echo "downstream: 1 passed, 0 failed"
