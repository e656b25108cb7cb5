// Handlers used by the examples. Registered in kernels.cpp, which CMake compiles with nvcc
// when the CUDA backend is built, so each kernel also gets its CUDA build.
#pragma once

#include <ringkernel/ringkernel.hpp>

namespace examples {
using namespace ringkernel;

// ---- quickstart: the seed's adder --------------------------------------------------------
struct AddRequest {
  MessageId id;
  float a;
  float b;
};
RK_MESSAGE(AddRequest, "examples.AddRequest", id, a, b);

struct AddResponse {
  MessageId id;
  float sum;
  std::uint32_t reserved;
};
RK_MESSAGE(AddResponse, "examples.AddResponse", id, sum, reserved);

struct Adder {
  using Request = AddRequest;
  using Response = AddResponse;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const AddRequest& in, AddResponse& out) const {
    if (ctx.thread_id() != 0) return false;  // actor mode: thread 0 answers
    out.id = in.id;
    out.sum = in.a + in.b;
    out.reserved = 0;
    return true;
  }
};

// ---- ping_pong ----------------------------------------------------------------------------
struct Ping {
  std::uint64_t seq;
  std::uint64_t sent_ns;
};
RK_MESSAGE(Ping, "examples.Ping", seq, sent_ns);

struct Pong {
  std::uint64_t seq;
  std::uint64_t sent_ns;
};
RK_MESSAGE(Pong, "examples.Pong", seq, sent_ns);

struct PongState {
  std::uint64_t pings;
};
RK_GPU_TYPE(PongState, pings);

struct Ponger {
  using Request = Ping;
  using Response = Pong;
  using State = PongState;
  RK_HOST_DEVICE bool operator()(RingContext&, PongState& s, const Ping& in, Pong& out) const {
    ++s.pings;
    out.seq = in.seq;
    out.sent_ns = in.sent_ns;
    return true;
  }
};

// ---- kernel_to_kernel: a two-stage pipeline on the device --------------------------------
struct Sample {
  std::uint64_t seq;
  double value;
};
RK_MESSAGE(Sample, "examples.Sample", seq, value);

struct Scaled {
  std::uint64_t seq;
  double value;
};
RK_MESSAGE(Scaled, "examples.Scaled", seq, value);

/// Stage 1: scales each sample by 2 and forwards it over its first K2K route (set up by
/// the host with RingKernel::connect): no host round trip between the stages.
struct Stage1 {
  using Request = Sample;
  using Response = void;
  RK_HOST_DEVICE void operator()(RingContext& ctx, NoState&, const Sample& in) const {
    if (ctx.thread_id() != 0) return;
    const Sample fwd{in.seq, in.value * 2.0};
    Status s;
    while ((s = ctx.k2k_send(ctx.k2k_route(0), fwd)) == Status::QueueFull) {
      // backpressure from stage 2: wait for room rather than drop
    }
    if (s != Status::Ok) ctx.count_dropped();
  }
};

/// Stage 2: adds 1 and reports to the host.
struct Stage2 {
  using Request = Sample;
  using Response = Scaled;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Sample& in, Scaled& out) const {
    if (ctx.thread_id() != 0) return false;
    out.seq = in.seq;
    out.value = in.value + 1.0;
    return true;
  }
};

// ---- request_response: a key-value actor with persistent state ---------------------------
struct KvRequest {
  std::uint32_t op;  // 0 = get, 1 = put
  std::uint32_t key;
  std::int64_t value;
};
RK_MESSAGE(KvRequest, "examples.KvRequest", op, key, value);

struct KvResponse {
  std::uint32_t found;
  std::uint32_t key;
  std::int64_t value;
};
RK_MESSAGE(KvResponse, "examples.KvResponse", found, key, value);

struct KvState {
  std::int64_t values[64];
  std::uint64_t present;  // bit per key
};
RK_GPU_TYPE(KvState, values, present);

struct KvStore {
  using Request = KvRequest;
  using Response = KvResponse;
  using State = KvState;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, KvState& s, const KvRequest& in, KvResponse& out) const {
    if (ctx.thread_id() != 0) return false;
    const std::uint32_t k = in.key % 64;
    if (in.op == 1) {
      s.values[k] = in.value;
      s.present |= std::uint64_t{1} << k;
    }
    out.key = in.key;
    out.found = (s.present >> k) & 1u;
    out.value = out.found ? s.values[k] : 0;
    return true;
  }
};

}  // namespace examples
