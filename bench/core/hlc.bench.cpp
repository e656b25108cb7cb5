// Cost of the hybrid logical clock: HlcClock::tick, update and tick_batch, next to what
// they are built from (one wall-clock read; one uncontended compare-and-swap), measured
// in the same process so the floor is visible. Target: tick <= 30 ns.
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <ctime>

#include <ringkernel/hlc.hpp>

namespace {

using ringkernel::HlcClock;
using ringkernel::HlcTimestamp;

// ---- the floor ---------------------------------------------------------------------------

void BM_WallClockUs(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(ringkernel::hlc::wall_clock_us());
}
BENCHMARK(BM_WallClockUs);

void BM_SystemClockNow(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(std::chrono::system_clock::now());
}
BENCHMARK(BM_SystemClockNow);

void BM_AtomicCas(benchmark::State& state) {
  std::atomic<std::uint64_t> word{0};
  std::uint64_t v = 0;
  for (auto _ : state) {
    while (!word.compare_exchange_weak(v, v + 1, std::memory_order_relaxed)) {
    }
    ++v;
  }
  benchmark::DoNotOptimize(word.load());
}
BENCHMARK(BM_AtomicCas);

// ---- the clock ---------------------------------------------------------------------------

void BM_HlcTick(benchmark::State& state) {
  HlcClock clock(1);
  HlcTimestamp prev{};
  std::uint64_t backwards = 0;
  for (auto _ : state) {
    const HlcTimestamp t = clock.tick();
    backwards += !(prev < t);
    prev = t;
  }
  if (backwards != 0) state.SkipWithError("tick went backwards");
  benchmark::DoNotOptimize(prev);
}
BENCHMARK(BM_HlcTick);

/// A remote stamp slightly behind the local clock: the common receive.
void BM_HlcUpdate_RemoteBehind(benchmark::State& state) {
  HlcClock clock(1), remote_clock(2);
  const HlcTimestamp remote = remote_clock.tick();
  for (auto _ : state) {
    auto r = clock.update(remote);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_HlcUpdate_RemoteBehind);

/// A remote stamp 500 µs ahead (within the skew bound): the clock follows it logically.
void BM_HlcUpdate_RemoteAhead(benchmark::State& state) {
  HlcClock clock(1);
  const HlcTimestamp remote{ringkernel::hlc::wall_clock_us() + 500, 3, 2};
  for (auto _ : state) {
    auto r = clock.update(remote);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_HlcUpdate_RemoteAhead);

/// Reserving `n` events at once; items/s counts events, so the per-event cost is visible.
void BM_HlcTickBatch(benchmark::State& state) {
  HlcClock clock(1);
  const auto n = static_cast<std::uint32_t>(state.range(0));
  std::uint64_t last = 0;
  std::uint64_t backwards = 0;
  for (auto _ : state) {
    const std::uint64_t first = clock.tick_batch(n);
    backwards += first <= last && last != 0;
    last = first + n - 1;
  }
  if (backwards != 0) state.SkipWithError("tick_batch overlapped an earlier reservation");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * n);
  benchmark::DoNotOptimize(last);
}
BENCHMARK(BM_HlcTickBatch)->Arg(1)->Arg(32)->Arg(256);

/// Every thread ticks one shared clock (contended compare-and-swap).
void BM_HlcTick_Shared(benchmark::State& state) {
  static HlcClock clock(1);
  for (auto _ : state) benchmark::DoNotOptimize(clock.tick());
}
BENCHMARK(BM_HlcTick_Shared)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
