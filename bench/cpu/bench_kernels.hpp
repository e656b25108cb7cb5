// Kernels of the CPU actor benchmarks. Registered in bench_kernels.cpp, which CMake builds
// with nvcc when the CUDA backend is on, so each one also gets its CUDA build.
#pragma once

#include <ringkernel/ringkernel.hpp>

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
