#!/usr/bin/env bash
# Builds ringkernel (release) and runs the main job on Backend::Auto (CUDA when a GPU and
# nvcc are present, otherwise the CPU): the quick start, then the other examples.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --parallel "$(nproc)"
bin=build/release/examples
main_job=("$bin/quickstart" "$bin/ping_pong 20000" "$bin/kernel_to_kernel" "$bin/request_response")
[ -x "$bin/showcase" ] && main_job=("$bin/showcase" "${main_job[@]}")
for cmd in "${main_job[@]}"; do
  echo "== $cmd"
  $cmd
done
