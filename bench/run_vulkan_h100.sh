#!/usr/bin/env bash
# Runs the Vulkan backend's tests and benchmark from an existing build directory on a
# machine with the NVIDIA driver (built there with cmake; see bench/RESULTS.md, Vulkan).
#
#   bench/run_vulkan_h100.sh <build-dir> [<dir holding libvulkan.so.1>]
#
# The Vulkan loader is opened at run time: give the directory of a libvulkan.so.1 as the
# second argument where the machine has none installed. The NVIDIA ICD manifest is looked
# up in the usual places (a container's /usr/local/nvidia first) unless VK_DRIVER_FILES or
# VK_ICD_FILENAMES is already set. Every step is bounded by `timeout`; a step that fails is
# reported and the script goes on. Prints a short table at the end.
set -u

build=${1:?usage: run_vulkan_h100.sh <build-dir> [<dir holding libvulkan.so.1>]}
build=$(cd "$build" && pwd)
loader_dir=${2:-}

if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
  for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
           /etc/vulkan/icd.d/nvidia_icd.json /usr/local/share/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$f" ]; then export VK_DRIVER_FILES="$f"; break; fi
  done
fi
# The ICD names libGLX_nvidia.so.0; in containers the driver libraries sit here.
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
if [ -n "$loader_dir" ]; then
  export LD_LIBRARY_PATH="$(cd "$loader_dir" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

echo "== machine"
date -u +"%Y-%m-%d %H:%M UTC"
(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available") | sed 's/^/gpu: /'
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') ($(nproc) threads)"
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-<loader default>}}"
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"

status=()
run() {  # run <name> <seconds> <command...>
  local name=$1 secs=$2
  shift 2
  echo
  echo "== $name"
  timeout --kill-after=10 "$secs" "$@"
  local rc=$?
  case $rc in
    0) status+=("$name: ok") ;;
    124|137) status+=("$name: TIMED OUT after ${secs}s") ;;
    *) status+=("$name: failed (exit $rc)") ;;
  esac
}

if [ -x "$build/tests/vulkan_tests" ]; then
  # The GLSL layout checks and the backend's own behaviour (dispatch mode, placement, ...).
  run "vulkan_tests" 300 "$build/tests/vulkan_tests"
  # The shared backend test body on this device (persistent dispatch on a GPU).
  run "backend_tests (Vulkan)" 600 "$build/tests/backend_tests" --gtest_filter='*/Vulkan'
else
  echo "(no tests in $build: configured with RINGKERNEL_BUILD_TESTS=OFF?)"
fi
if [ -x "$build/examples/quickstart" ]; then
  run "quickstart" 60 "$build/examples/quickstart"
  run "kernel_to_kernel" 60 "$build/examples/kernel_to_kernel"
  run "ping_pong" 120 "$build/examples/ping_pong" 20000
fi
if [ -x "$build/bench/vk_bench" ]; then
  run "vk_bench" 600 "$build/bench/vk_bench"
else
  echo "no $build/bench/vk_bench: configure with RINGKERNEL_BUILD_BENCH=ON and the Vulkan backend"
fi

echo
echo "== summary"
printf '  %s\n' "${status[@]}"
