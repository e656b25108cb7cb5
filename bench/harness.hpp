// bench/harness.hpp — the small harness shared by the two-thread and actor benchmarks
// (micro-benchmarks use Google Benchmark instead).
//
// Rules every benchmark here keeps (STYLE.md, habit 10): the baseline runs in the same
// process, variants are interleaved repetition by repetition so background load hits all
// of them alike, each figure is the median of the repetitions with its spread (min..max),
// and every timed result is consumed and checked.
#pragma once

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace rkbench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// CPUs this process may run on.
inline int usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return CPU_COUNT(&set);
}

/// Pins the calling thread to the `index`-th CPU it may use. False (and no change) when
/// fewer than two CPUs are available: pinning both sides of a pair to one CPU would only
/// measure the scheduler.
inline bool pin_this_thread(int index) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2) return false;
  int seen = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    if (seen++ != index) continue;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0;
  }
  return false;
}

/// Undoes pin_this_thread for the calling thread (back to every allowed CPU).
inline void unpin_this_thread(const cpu_set_t& all) { pthread_setaffinity_np(pthread_self(), sizeof all, &all); }

/// One step of a spin-wait: the CPU's pause hint (x86 PAUSE, Arm YIELD), which keeps a
/// spinning core from flooding the line its peer is about to write.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

/// Round trip of one cache line between CPU 0 and CPU 1 of the allowed set, in ns (two
/// pinned threads bouncing a counter). On a virtual machine this moves as the hypervisor
/// places the vCPUs (SMT siblings, distinct cores, distinct sockets), and every two-thread
/// figure moves with it; the benchmarks print it next to their results. 0 on one CPU.
inline double cache_line_round_trip_ns(int rounds = 20000) {
  if (usable_cpus() < 2) return 0.0;
  struct alignas(128) Line {
    std::atomic<std::uint64_t> v{0};
  };
  Line ping, pong;
  cpu_set_t before;
  sched_getaffinity(0, sizeof before, &before);
  std::thread peer([&] {
    pin_this_thread(1);
    for (std::uint64_t i = 1; i <= static_cast<std::uint64_t>(rounds); ++i) {
      while (ping.v.load(std::memory_order_acquire) != i) {
      }
      pong.v.store(i, std::memory_order_release);
    }
  });
  pin_this_thread(0);
  const auto t0 = Clock::now();
  for (std::uint64_t i = 1; i <= static_cast<std::uint64_t>(rounds); ++i) {
    ping.v.store(i, std::memory_order_release);
    while (pong.v.load(std::memory_order_acquire) != i) {
    }
  }
  const double ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / rounds;
  peer.join();
  unpin_this_thread(before);
  return ns;
}

/// Value at quantile q (0..1) of sorted samples (nearest rank).
inline double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0.0;
  const auto i = static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

/// Median and spread of repeated measurements of one figure.
struct Spread {
  double median = 0, min = 0, max = 0;
  std::size_t n = 0;
};

inline Spread spread_of(std::vector<double> v) {
  Spread s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.n = v.size();
  s.min = v.front();
  s.max = v.back();
  s.median = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  return s;
}

/// Prints one figure for people and one machine-readable line for bench/run_cpu.sh:
///   @result <key> <median> <min> <max> <unit>
inline void report(const std::string& key, const std::string& label, const Spread& s, const char* unit,
                   double scale = 1.0) {
  std::printf("  %-58s %12.3f %-8s (min %.3f, max %.3f, n=%zu)\n", label.c_str(), s.median * scale, unit,
              s.min * scale, s.max * scale, s.n);
  std::printf("@result %s %.6g %.6g %.6g %s\n", key.c_str(), s.median * scale, s.min * scale, s.max * scale, unit);
  std::fflush(stdout);
}

/// One line of the summary table bench/run_cpu.sh prints: our figure, the baseline's, and
/// the ratio (how many times better ours is: baseline/ours for latencies, ours/baseline for
/// rates), each a median over repetitions, the ratio paired repetition by repetition.
///   @summary <key> <ours> <baseline> <ratio> <unit> <baseline description, to end of line>
inline void summary(const std::string& key, double ours, double baseline, double ratio, const char* unit,
                    const std::string& baseline_label) {
  std::printf("@summary %s %.6g %.6g %.4g %s %s\n", key.c_str(), ours, baseline, ratio, unit, baseline_label.c_str());
  std::fflush(stdout);
}

/// Paired ratios num[i] / den[i] (same repetition), reduced to their median.
inline double paired_ratio(const std::vector<double>& num, const std::vector<double>& den) {
  std::vector<double> r;
  for (std::size_t i = 0; i < num.size() && i < den.size(); ++i)
    if (den[i] > 0) r.push_back(num[i] / den[i]);
  return spread_of(r).median;
}

/// Aborts the benchmark: a result that fails its check is never reported.
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "benchmark check failed: %s\n", what.c_str());
  std::exit(2);
}

/// Command-line settings common to the harness benchmarks:
///   --reps=N    repetitions of each variant (default per benchmark)
///   --scale=F   multiplies message / round-trip counts (0.1 for a quick smoke run)
struct Options {
  int reps = 0;
  double scale = 1.0;

  static Options parse(int argc, char** argv, int default_reps) {
    Options o;
    o.reps = default_reps;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a.rfind("--reps=", 0) == 0) {
        o.reps = std::max(1, std::atoi(a.c_str() + 7));
      } else if (a.rfind("--scale=", 0) == 0) {
        const double f = std::atof(a.c_str() + 8);
        if (f > 0) o.scale = f;
      } else {
        std::fprintf(stderr, "usage: %s [--reps=N] [--scale=F]\n", argv[0]);
        std::exit(1);
      }
    }
    return o;
  }
  std::uint64_t count(std::uint64_t n) const {
    return std::max<std::uint64_t>(1000, static_cast<std::uint64_t>(static_cast<double>(n) * scale));
  }
};

}  // namespace rkbench
