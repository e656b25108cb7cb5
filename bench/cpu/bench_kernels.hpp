// Kernels of the CPU actor benchmarks. Registered in bench_kernels.cpp, which CMake builds
// with nvcc when the CUDA backend is on, so each one also gets its CUDA build.
#pragma once

#include <ringkernel/ringkernel.hpp>

#include "../clock.hpp"

namespace rkbench {
using namespace ringkernel;

// ---- ping-pong: an echo actor ------------------------------------------------------------
struct Ping {
  std::uint64_t seq;
  std::uint64_t value;
};
RK_MESSAGE(Ping, "bench.Ping", seq, value);

struct Pong {
  std::uint64_t seq;
  std::uint64_t value;  ///< the ping's value + 1: proves the handler ran
};
RK_MESSAGE(Pong, "bench.Pong", seq, value);

struct EchoActor {
  using Request = Ping;
  using Response = Pong;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Ping& in, Pong& out) const {
    if (ctx.thread_id() != 0) return false;  // actor mode: thread 0 answers
    out.seq = in.seq;
    out.value = in.value + 1;
    return true;
  }
};

// ---- ping-pong between two actors (Savina's form): K2K, timed inside the pinger -----------
struct PairRun {
  std::uint64_t rounds;
  std::uint64_t reserved;
};
RK_MESSAGE(PairRun, "bench.PairRun", rounds, reserved);

struct PairResult {
  std::uint64_t p50_ns;
  std::uint64_t p99_ns;
  std::uint64_t mean_ns;
  std::uint64_t lost;  ///< pongs that never came (bounded wait)
};
RK_MESSAGE(PairResult, "bench.PairResult", p50_ns, p99_ns, mean_ns, lost);

/// Round trips in 10 ns bins (up to 40.96 µs; the last bin holds the rest).
inline constexpr std::uint32_t kLatencyBins = 4096;
RK_HOST_DEVICE inline void add_sample(std::uint32_t* hist, std::uint64_t ns) {
  ++hist[ns / 10 < kLatencyBins ? ns / 10 : kLatencyBins - 1];
}
/// The sample of rank `rank` (0-based) in the histogram, to the bin's middle.
RK_HOST_DEVICE inline std::uint64_t quantile_ns(const std::uint32_t* hist, std::uint64_t rank) {
  std::uint64_t seen = 0;
  for (std::uint32_t b = 0; b < kLatencyBins; ++b)
    if ((seen += hist[b]) > rank) return std::uint64_t{b} * 10 + 5;
  return std::uint64_t{kLatencyBins} * 10;
}

/// Sends a Ping over route 0 and pulls the Pong back, `rounds` times (K2KDelivery::Pull);
/// each round trip goes into a histogram of 10 ns bins, reduced to p50 / p99.
struct PairPinger {
  using Request = PairRun;
  using Response = PairResult;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const PairRun& in, PairResult& out) const {
    if (ctx.thread_id() != 0) return false;
    std::uint32_t hist[kLatencyBins] = {};
    const std::uint32_t dest = ctx.k2k_route(0);
    std::uint64_t sum = 0, lost = 0;
    for (std::uint64_t i = 0; i < in.rounds; ++i) {
      const std::uint64_t t0 = clock_ns();
      while (ctx.k2k_send(dest, Ping{i, i}) == Status::QueueFull) {
      }
      Pong back{};
      std::uint64_t spins = 0;
      while (ctx.k2k_try_receive(back) != Status::Ok && ++spins < (1ull << 28)) {
      }
      if (back.seq != i || back.value != i + 1) {
        ++lost;
        continue;
      }
      const std::uint64_t rt = clock_ns() - t0;
      sum += rt;
      add_sample(hist, rt);
    }
    const std::uint64_t n = in.rounds - lost;
    out = PairResult{n ? quantile_ns(hist, n / 2) : 0, n ? quantile_ns(hist, n * 99 / 100) : 0, n ? sum / n : 0, lost};
    return true;
  }
};

/// Answers each Ping with its Pong over route 0.
struct PairPonger {
  using Request = Ping;
  using Response = void;
  RK_HOST_DEVICE void operator()(RingContext& ctx, NoState&, const Ping& in) const {
    if (ctx.thread_id() != 0) return;
    while (ctx.k2k_send(ctx.k2k_route(0), Pong{in.seq, in.value + 1}) == Status::QueueFull) {
    }
  }
};

// ---- ping-pong between two event-driven actors (Savina's form, CAF's shape) -------------
// Neither handler waits: the pinger answers each returning ball by sending the next, so the
// pair can share one thread (LaunchOptions::cpu_worker), as CAF's actors share a worker.
enum VolleyOp : std::uint32_t { kServe = 0, kBall = 1 };
struct Volley {
  std::uint32_t op;  ///< VolleyOp
  std::uint32_t reserved;
  std::uint64_t left;     ///< balls still to play after this one
  std::uint64_t sent_ns;  ///< when the pinger sent this ball
  std::uint64_t reserved2;
};
RK_MESSAGE(Volley, "bench.Volley", op, reserved, left, sent_ns, reserved2);

struct VolleyState {
  std::uint32_t hist[kLatencyBins];  ///< round trips (add_sample)
  std::uint64_t sum;
  std::uint64_t n;
};
RK_GPU_TYPE(VolleyState, hist, sum, n);

/// Serve{left = N} from the host starts N round trips; the reply is their p50 / p99 / mean.
struct VolleyPinger {
  using Request = Volley;
  using Response = PairResult;
  using State = VolleyState;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, VolleyState& s, const Volley& in, PairResult& out) const {
    if (ctx.thread_id() != 0) return false;
    const std::uint64_t now = clock_ns();
    if (in.op == kServe) {
      for (std::uint32_t b = 0; b < kLatencyBins; ++b) s.hist[b] = 0;
      s.sum = s.n = 0;
      if (in.left == 0) {
        out = PairResult{0, 0, 0, 0};  // nothing to play
        return true;
      }
    } else {
      const std::uint64_t rt = now - in.sent_ns;
      s.sum += rt;
      ++s.n;
      add_sample(s.hist, rt);
      if (in.left == 0) {
        out = PairResult{quantile_ns(s.hist, s.n / 2), quantile_ns(s.hist, s.n * 99 / 100), s.sum / s.n, 0};
        return true;
      }
    }
    if (ctx.k2k_send(ctx.k2k_route(0), Volley{kBall, 0, in.left - 1, clock_ns(), 0}) != Status::Ok) {
      out = PairResult{0, 0, 0, 1};  // the route was full or gone: reported as lost
      return true;
    }
    return false;
  }
};

/// Returns every ball to its route 0.
struct VolleyPonger {
  using Request = Volley;
  using Response = void;
  RK_HOST_DEVICE void operator()(RingContext& ctx, NoState&, const Volley& in) const {
    if (ctx.thread_id() != 0) return;
    (void)ctx.k2k_send(ctx.k2k_route(0), in);
  }
};

// ---- counting (Savina): a counter with persistent state ----------------------------------
enum CountOp : std::uint32_t { kIncrement = 0, kTake = 1 };

struct CountMsg {
  std::uint32_t op;  ///< CountOp
  std::uint32_t reserved;
  std::uint64_t value;  ///< added to the total by kIncrement
};
RK_MESSAGE(CountMsg, "bench.CountMsg", op, reserved, value);

struct CountTotal {
  std::uint64_t total;
  std::uint64_t increments;
};
RK_MESSAGE(CountTotal, "bench.CountTotal", total, increments);

struct CounterState {
  std::uint64_t total;
  std::uint64_t increments;
};
RK_GPU_TYPE(CounterState, total, increments);

/// Increments answer nothing; kTake answers the totals and starts counting from zero.
struct CountingActor {
  using Request = CountMsg;
  using Response = CountTotal;
  using State = CounterState;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, CounterState& s, const CountMsg& in, CountTotal& out) const {
    if (ctx.thread_id() != 0) return false;
    if (in.op == kIncrement) {
      s.total += in.value;
      ++s.increments;
      return false;
    }
    out.total = s.total;
    out.increments = s.increments;
    s.total = 0;
    s.increments = 0;
    return true;
  }
};

}  // namespace rkbench
