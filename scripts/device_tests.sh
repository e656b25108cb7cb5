#!/usr/bin/env bash
# Runs the CUDA tests and examples from an already-built tree on a GPU machine.
# Usage: scripts/device_tests.sh BUILD_DIR [OUT_DIR]
# RK_SANITIZE=0 skips compute-sanitizer; RK_BENCH=0 skips cuda_bench; RK_BENCH_ARGS passes arguments to it.
set -uo pipefail
B=${1:?build dir}
OUT=${2:-${OUT:-/tmp/rk-out}}
mkdir -p "$OUT"
export CUDA_MODULE_LOADING=EAGER
summary=()
run() {  # name timeout command...
  local name=$1 t=$2
  shift 2
  local start=$(date +%s.%N)
  timeout -s KILL "$t" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  local secs=$(python3 -c "print($(date +%s.%N) - $start)")
  summary+=("$(printf '%-28s rc=%-4s %6.1fs  %s' "$name" "$rc" "$secs" "$(grep -E 'PASSED|FAILED|Result|RESULT|p50|checksum|get\(9\)|ERROR SUMMARY' "$OUT/$name.log" | tail -2 | tr '\n' ' ' | cut -c1-90)")")
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
run cuda_backend_tests 300 "$B/tests/backend_tests" --gtest_filter='*/Cuda'
run cuda_fault_tests 60 "$B/tests/cuda_fault_tests"
run quickstart 60 "$B/examples/quickstart"
run ping_pong 60 "$B/examples/ping_pong" 20000
run kernel_to_kernel 60 "$B/examples/kernel_to_kernel"
run request_response 60 "$B/examples/request_response"
if [ "${RK_SANITIZE:-1}" = 1 ]; then
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
SUBSET='*an_actor_answers*/Cuda:*wide_block*/Cuda:*block_threads_cooperate*/Cuda:*parallel_mode_spreads*/Cuda:*call_matches*/Cuda:*state_persists*/Cuda:*faulted*/Cuda:*large_payloads*/Cuda'
run memcheck 240 "$CS" --tool memcheck --error-exitcode 3 "$B/tests/backend_tests" --gtest_filter="$SUBSET"
# Two persistent kernels that wait on each other do not finish under memcheck (RK_SANITIZE_K2K=1 to try).
[ "${RK_SANITIZE_K2K:-0}" = 1 ] && run memcheck_k2k 120 "$CS" --tool memcheck --error-exitcode 3 "$B/tests/backend_tests" --gtest_filter='*k2k_delivers*/Cuda'
fi
[ -x "$B/examples/showcase" ] && run showcase 120 "$B/examples/showcase" --no-metrics -n 200000
[ -x "$B/tools/ringkernel" ] && run tool_check 30 "$B/tools/ringkernel" check
if [ "${RK_SANITIZE:-1}" = 1 ]; then
run racecheck 200 "$CS" --tool racecheck --error-exitcode 3 "$B/tests/backend_tests" \
  --gtest_filter='*an_actor_answers*:*block_threads_cooperate*/Cuda'
run synccheck 200 "$CS" --tool synccheck --error-exitcode 3 "$B/tests/backend_tests" \
  --gtest_filter='*an_actor_answers*:*block_threads_cooperate*/Cuda' 
fi
grep -E "FAILED|Failure|error" "$OUT/cuda_backend_tests.log" | head -30
grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Race reported|Invalid|at .*\.cuh?:[0-9]+" "$OUT"/memcheck*.log "$OUT/racecheck.log" "$OUT/synccheck.log" | head -24
tail -12 "$OUT/showcase.log" 2>/dev/null; cat "$OUT/tool_check.log" 2>/dev/null
printf '%s\n' "${summary[@]}"
if [ -x "$B/bench/cuda_bench" ] && [ "${RK_BENCH:-1}" = 1 ]; then
  timeout -s KILL 240 "$B/bench/cuda_bench" ${RK_BENCH_ARGS:-} 2>&1 | tee "$OUT/cuda_bench.log" | tail -25
fi
