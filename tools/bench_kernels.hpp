// The kernels `ringkernel bench` measures: an echo actor (round trip and streaming).
#pragma once

#include <ringkernel/ringkernel.hpp>

namespace rkbench {
using namespace ringkernel;

struct Ping {
  std::uint64_t seq;
  std::uint64_t payload;
};
RK_MESSAGE(Ping, "ringkernel.bench.Ping", seq, payload);

struct Pong {
  std::uint64_t seq;
  std::uint64_t payload;
};
RK_MESSAGE(Pong, "ringkernel.bench.Pong", seq, payload);

struct Echo {
  using Request = Ping;
  using Response = Pong;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Ping& in, Pong& out) const {
    out = Pong{in.seq, in.payload + 1};
    return ctx.mode() == KernelMode::Parallel || ctx.thread_id() == 0;
  }
};

}  // namespace rkbench
