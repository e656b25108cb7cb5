#include "ringkernel/hlc.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace ringkernel {

namespace {

std::uint64_t realtime_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);  // vDSO: no system call
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

#if defined(__x86_64__)
__extension__ typedef unsigned __int128 u128;

/// The wall clock from the time-stamp counter. `clock_gettime` reads the TSC too (when it
/// is the kernel's clocksource) and then converts under the vDSO's own sequence lock: ~25 ns
/// on a virtual machine, most of an HLC tick. This keeps a conversion of its own: anchored
/// to CLOCK_REALTIME, its rate measured against CLOCK_REALTIME over everything seen so far
/// (the first 10 ms with clock_gettime alone), re-anchored every 100 ms so that the
/// estimate never drifts more than the rate error over 100 ms (well under a microsecond) from
/// the kernel's clock, NTP slewing included. Used only where the kernel itself uses the TSC
/// as its clocksource (constant rate, synchronised across CPUs); RINGKERNEL_TSC_CLOCK=0
/// turns it off.
class TscWallClock {
 public:
  TscWallClock() noexcept : enabled_(tsc_is_the_kernel_clock()) {}

  std::uint64_t now_ns() noexcept {
    if (!enabled_) return realtime_ns();
    const std::uint64_t tsc = __rdtsc();
    for (int attempt = 0; attempt < 4; ++attempt) {
      const std::uint32_t s0 = seq_.load(std::memory_order_acquire);
      if (s0 & 1u) break;  // being re-anchored: the kernel's clock this once
      const std::uint64_t bt = base_tsc_.load(std::memory_order_relaxed);
      const std::uint64_t bn = base_ns_.load(std::memory_order_relaxed);
      const std::uint64_t mult = mult_.load(std::memory_order_relaxed);
      const std::uint64_t next = next_sync_.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (seq_.load(std::memory_order_relaxed) != s0) continue;  // torn read: again
      if (mult == 0 || tsc >= next || tsc < bt) return resync();
      return bn + static_cast<std::uint64_t>((static_cast<u128>(tsc - bt) * mult) >> 32);
    }
    return realtime_ns();
  }

 private:
  static bool tsc_is_the_kernel_clock() noexcept {
    if (const char* e = std::getenv("RINGKERNEL_TSC_CLOCK"); e && e[0] == '0') return false;
    std::FILE* f = std::fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (!f) return false;
    char buf[32] = {};
    const bool tsc = std::fgets(buf, sizeof buf, f) != nullptr && std::strncmp(buf, "tsc", 3) == 0 &&
                     (buf[3] == '\n' || buf[3] == '\0');
    std::fclose(f);
    return tsc;
  }

  /// One thread at a time (the one that moves seq_ to odd) takes a fresh (TSC, realtime)
  /// pair, re-measures the rate and re-anchors; the others use clock_gettime meanwhile.
  std::uint64_t resync() noexcept {
    std::uint32_t s = seq_.load(std::memory_order_relaxed);
    if ((s & 1u) || !seq_.compare_exchange_strong(s, s + 1, std::memory_order_acquire)) return realtime_ns();
    std::atomic_thread_fence(std::memory_order_release);  // seqlock writer: odd before the data
    // The counter at the clock read, within the read's cost: the tightest of three
    // brackets (a thread preempted inside one would anchor the clock that far off).
    std::uint64_t t = 0, ns = 0, widest = ~std::uint64_t{0};
    for (int i = 0; i < 3; ++i) {
      const std::uint64_t t0 = __rdtsc();
      const std::uint64_t n = realtime_ns();
      const std::uint64_t t1 = __rdtsc();
      if (t1 - t0 < widest) {
        widest = t1 - t0;
        t = t0 + (t1 - t0) / 2;
        ns = n;
      }
    }
    if (first_tsc_ == 0 || t <= first_tsc_ || ns <= first_ns_) {
      first_tsc_ = t;
      first_ns_ = ns;
    }
    const std::uint64_t span_ns = ns - first_ns_, span_tsc = t - first_tsc_;
    std::uint64_t mult = mult_.load(std::memory_order_relaxed);
    if (span_ns >= kCalibrateNs && span_tsc != 0) {
      const auto m = static_cast<std::uint64_t>((static_cast<u128>(span_ns) << 32) / span_tsc);
      // A step of the wall clock (settimeofday) shows as a rate far off the last one:
      // measure again from here rather than trust it.
      if (mult != 0 && (m > mult + mult / 100 || m < mult - mult / 100)) {
        first_tsc_ = t;
        first_ns_ = ns;
      } else {
        mult = m;
      }
    }
    base_tsc_.store(t, std::memory_order_relaxed);
    base_ns_.store(ns, std::memory_order_relaxed);
    mult_.store(mult, std::memory_order_relaxed);
    const std::uint64_t ticks =
        mult != 0 ? static_cast<std::uint64_t>((static_cast<u128>(kResyncNs) << 32) / mult) : 0;
    next_sync_.store(t + ticks, std::memory_order_relaxed);
    seq_.store(s + 2, std::memory_order_release);
    return ns;
  }

  static constexpr std::uint64_t kCalibrateNs = 10'000'000;  // 10 ms before the first rate
  static constexpr std::uint64_t kResyncNs = 100'000'000;    // re-anchor every 100 ms

  const bool enabled_;
  alignas(64) std::atomic<std::uint32_t> seq_{0};
  std::atomic<std::uint64_t> base_tsc_{0}, base_ns_{0}, mult_{0}, next_sync_{0};
  std::uint64_t first_tsc_ = 0, first_ns_ = 0;  // written by the resyncing thread only
};
#endif

}  // namespace

std::uint64_t hlc::wall_clock_us() noexcept {
#if defined(__x86_64__)
  static TscWallClock clock;
  return clock.now_ns() / 1000u;
#else
  return realtime_ns() / 1000u;
#endif
}

Result<HlcTimestamp> HlcClock::update(const HlcTimestamp& remote) noexcept {
  const std::uint64_t now = hlc::wall_clock_us();
  if (remote.physical > now + max_skew_us_) {
    return Error(ErrorCode::ClockSkew,
                 "remote timestamp is " + std::to_string(remote.physical - now) +
                     " us ahead of the local clock (bound " + std::to_string(max_skew_us_) +
                     " us); the clock was left unchanged");
  }
  const std::uint64_t r = hlc::pack(remote);
  std::uint64_t prev = state_.load(std::memory_order_relaxed);
  std::uint64_t next;
  do {
    next = hlc::next_merge(prev, r, now);
  } while (!state_.compare_exchange_weak(prev, next, std::memory_order_relaxed));
  return hlc::unpack(next, node_id_);
}

std::uint64_t HlcClock::tick_batch(std::uint32_t n) noexcept {
  const std::uint64_t now = hlc::wall_clock_us();
  std::uint64_t prev = state_.load(std::memory_order_relaxed);
  std::uint64_t first;
  do {
    first = hlc::next_tick(prev, now);
  } while (!state_.compare_exchange_weak(prev, first + (n ? n - 1 : 0), std::memory_order_relaxed));
  return first;
}

}  // namespace ringkernel
