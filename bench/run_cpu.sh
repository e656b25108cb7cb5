#!/usr/bin/env bash
# Builds the CPU benchmarks with the release preset and runs them, then prints a short
# table (ours, baseline, ratio, target). Full output goes to build/release/bench/results/.
#
#   bench/run_cpu.sh            full run (a few minutes on 2 cores)
#   bench/run_cpu.sh --quick    smoke run: fewer messages and repetitions
#   bench/run_cpu.sh -j N       build jobs (default 2)
#
# Benchmarks whose baseline library is missing are not built (CMake says which package);
# their rows are reported as "skipped".
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
jobs=2
quick=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    -j) jobs="$2"; shift ;;
    -j*) jobs="${1#-j}" ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 1 ;;
  esac
  shift
done

cd "$root"
cmake --preset release -DRINGKERNEL_BUILD_BENCH=ON >/dev/null
bin="$root/build/release/bench"
targets=()
for t in bench_hlc bench_spsc bench_actors; do
  if cmake --build --preset release --target help 2>/dev/null | grep -q "^$t:"; then targets+=("$t"); fi
done
if [[ ${#targets[@]} -eq 0 ]]; then
  echo "no benchmark target is configured (see the CMake messages above for missing packages)" >&2
  exit 1
fi
cmake --build --preset release -j "$jobs" --target "${targets[@]}"

out="$bin/results"
mkdir -p "$out"
if [[ $quick -eq 1 ]]; then
  harness_args=(--reps=3 --scale=0.1)
  gbench_args=(--benchmark_repetitions=3 --benchmark_min_time=0.05)
else
  harness_args=()
  gbench_args=(--benchmark_repetitions=7)
fi

{
  echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
  echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) at start"
  echo "clock:   $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown)"
} | tee "$out/machine.txt"

run() {  # name, command...
  local name="$1"; shift
  echo "== $name"
  "$@" | tee "$out/$name.txt"
}
has() { [[ -x "$bin/$1" ]] && [[ " ${targets[*]} " == *" $1 "* ]]; }

if has bench_hlc; then
  run hlc "$bin/bench_hlc" "${gbench_args[@]}" --benchmark_report_aggregates_only=true
fi
if has bench_spsc; then
  run spsc "$bin/bench_spsc" "${harness_args[@]}"
fi
if has bench_actors; then
  run actors "$bin/bench_actors" "${harness_args[@]}"
fi
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) at end" | tee -a "$out/machine.txt"

# ---- summary table ---------------------------------------------------------------------------
summary_row() {  # file key what target-ratio
  local file="$out/$1.txt" key="$2" what="$3" target="$4"
  local line
  line=$(grep -s "^@summary $key " "$file" | head -1 || true)
  if [[ -z "$line" ]]; then
    printf '| %-34s | %-12s | %-12s | %-8s | %-8s | %-6s |\n' "$what" "skipped" "" "" "" ""
    return
  fi
  awk -v what="$what" -v target="$target" '{
    ours=$3; base=$4; ratio=$5; unit=$6;
    met = (target == "-") ? "" : ((ratio >= target) ? "yes" : "no");
    tgt = (target == "-") ? "" : (">= " target "x");
    printf "| %-34s | %8.3f %-3s | %8.3f %-3s | %7.2fx | %-8s | %-6s |\n", what, ours, (unit=="us"?"us":"M/s"), base, (unit=="us"?"us":"M/s"), ratio, tgt, met
  }' <<<"$line"
}

echo
echo "| what                               | ours         | baseline     | ratio    | target   | met?   |"
echo "|------------------------------------|--------------|--------------|----------|----------|--------|"
summary_row spsc spsc.rk_single  "SPSC 64 B, one at a time" 1
summary_row spsc spsc.rk_batch32 "SPSC 64 B, batch 32" 3
summary_row spsc spsc.rk_batch64 "SPSC 64 B, batch 64" 3
summary_row actors pingpong.p50  "ping-pong p50 vs CAF scoped_actor" 2
summary_row actors pingpong.p99  "ping-pong p99 vs CAF scoped_actor" 2
summary_row actors pingpong_idle.p50 "after idle: ping-pong p50 vs CAF" 2
summary_row actors pingpong_idle.p99 "after idle: ping-pong p99 vs CAF" 2
summary_row actors pingpong_vs_actor_pair.p50 "ping-pong p50 vs CAF actor pair" 2
summary_row actors actor_pair.p50 "actor<->actor (K2K) p50 vs CAF pair" 2
summary_row actors actor_pair_one_worker.p50 "same, one worker thread vs CAF pair" 2
summary_row actors count.rk_batch  "counting, send_batch" 2
summary_row actors count.rk_single "counting, single sends" 2
summary_row actors count.stream_hold "single sends: stream hold vs none" -
if [[ -f "$out/hlc.txt" ]]; then
  tick=$(awk '$1=="BM_HlcTick_median" {print $2}' "$out/hlc.txt")
  upd=$(awk '$1=="BM_HlcUpdate_RemoteBehind_median" {print $2}' "$out/hlc.txt")
  clk=$(awk '$1=="BM_WallClockUs_median" {print $2}' "$out/hlc.txt")
  met=$(awk -v t="$tick" 'BEGIN { print (t <= 30) ? "yes" : "no" }')
  printf '| %-34s | %8.1f ns  | %8.1f ns  | %-8s | <= 30 ns | %-6s |\n' "HLC tick (baseline: clock read)" "$tick" "$clk" "" "$met"
  printf '| %-34s | %8.1f ns  | %-12s | %-8s | %-8s | %-6s |\n' "HLC update" "$upd" "" "" "" ""
fi
echo "ratio: how many times better ours is (baseline/ours for latency, ours/baseline for rates),"
echo "median over repetitions of the paired per-repetition ratio. Raw output: $out/"
