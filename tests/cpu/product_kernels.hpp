// Kernels for the pub/sub, telemetry and supervision tests on the CPU backend.
#pragma once

#include <ringkernel/ringkernel.hpp>

namespace ptest {
using namespace ringkernel;

struct Tick {
  std::uint64_t seq;
  std::uint64_t value;
};
RK_MESSAGE(Tick, "ptest.Tick", seq, value);

/// Asks the publisher kernel to publish `count` Ticks (seq = first_seq + i) to `topic`.
struct PublishRequest {
  std::uint64_t topic;
  std::uint64_t first_seq;
  std::uint32_t count;
  std::uint32_t retry_on_full;  // 1 = spin on QueueFull until accepted
};
RK_MESSAGE(PublishRequest, "ptest.PublishRequest", topic, first_seq, count, retry_on_full);

struct PublishReport {
  std::uint32_t ok;
  std::uint32_t queue_full;
  std::uint32_t no_route;
  std::uint32_t other;
  HlcTimestamp request_stamp;  // the request's stamp, for causal-order checks
};
RK_MESSAGE(PublishReport, "ptest.PublishReport", ok, queue_full, no_route, other, request_stamp);

struct Publisher {
  using Request = PublishRequest;
  using Response = PublishReport;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const PublishRequest& in, PublishReport& out) const {
    if (ctx.thread_id() != 0) return false;
    out = PublishReport{0, 0, 0, 0, ctx.message_timestamp()};
    for (std::uint32_t i = 0; i < in.count; ++i) {
      const Tick t{in.first_seq + i, in.first_seq + i};
      Status s = ctx.publish(in.topic, t);
      while (in.retry_on_full && s == Status::QueueFull) s = ctx.publish(in.topic, t);
      if (s == Status::Ok) ++out.ok;
      else if (s == Status::QueueFull) ++out.queue_full;
      else if (s == Status::NoRoute) ++out.no_route;
      else ++out.other;
    }
    return true;
  }
};

struct SinkState {
  std::uint64_t received;
};
RK_GPU_TYPE(SinkState, received);

/// Echoes every Tick it receives, value = how many it has received so far.
struct Sink {
  using Request = Tick;
  using Response = Tick;
  using State = SinkState;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, SinkState& s, const Tick& in, Tick& out) const {
    if (ctx.thread_id() != 0) return false;
    out = Tick{in.seq, ++s.received};
    return true;
  }
};

/// Drops (counts) every Tick with an odd seq, answers the even ones.
struct HalfDropper {
  using Request = Tick;
  using Response = Tick;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Tick& in, Tick& out) const {
    if (ctx.thread_id() != 0) return false;
    if (in.seq % 2) {
      ctx.count_dropped();
      return false;
    }
    out = in;
    return true;
  }
};

/// Supervision: a worker that fails (faults its kernel) on request, and counts messages in
/// its state so a restart's fresh state is visible.
struct Job {
  std::uint64_t value;
  std::uint32_t fail;  // non-zero: ctx.fail(fail); kStopCleanly: ctx.request_terminate()
  std::uint32_t reserved;
};
inline constexpr std::uint32_t kStopCleanly = 0xffffffffu;
RK_MESSAGE(Job, "ptest.Job", value, fail, reserved);

struct JobDone {
  std::uint64_t value;
  std::uint64_t handled;  // messages this incarnation has handled
};
RK_MESSAGE(JobDone, "ptest.JobDone", value, handled);

struct WorkerState {
  std::uint64_t handled;
};
RK_GPU_TYPE(WorkerState, handled);

struct Worker {
  using Request = Job;
  using Response = JobDone;
  using State = WorkerState;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, WorkerState& s, const Job& in, JobDone& out) const {
    if (ctx.thread_id() != 0) return false;
    if (in.fail == kStopCleanly) {
      ctx.request_terminate();
      return false;
    }
    if (in.fail) {
      ctx.fail(in.fail);
      return false;
    }
    out = JobDone{in.value, ++s.handled};
    return true;
  }
};

/// A Job for actor `actor` of a pool.
struct ActorJob {
  std::uint32_t actor;
  std::uint32_t fail;  // non-zero: the actor fails with this code
  std::uint64_t value;
};
RK_MESSAGE(ActorJob, "ptest.ActorJob", actor, fail, value);

/// Pool actor: counts the jobs this incarnation handled (starting from 0).
struct PoolWorker {
  using Request = ActorJob;
  using Response = JobDone;
  using State = WorkerState;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, WorkerState& s, const ActorJob& in, JobDone& out) const {
    if (ctx.thread_id() != 0) return false;
    if (in.fail) {
      ctx.fail(in.fail);
      return false;
    }
    out = JobDone{in.value, ++s.handled};
    return true;
  }
};

/// Forwards each Tick over its first K2K route (waiting on backpressure).
struct Forwarder {
  using Request = Tick;
  using Response = void;
  RK_HOST_DEVICE void operator()(RingContext& ctx, NoState&, const Tick& in) const {
    if (ctx.thread_id() != 0) return;
    Status s = ctx.k2k_send(ctx.k2k_route(0), in);
    for (int i = 0; s == Status::QueueFull && i < (1 << 24); ++i) s = ctx.k2k_send(ctx.k2k_route(0), in);
    if (s != Status::Ok) ctx.count_dropped();
  }
};

inline constexpr std::uint64_t kFaultSeq = ~std::uint64_t{0};

/// Like Sink, but faults its kernel on a Tick with seq kFaultSeq.
struct FragileSink {
  using Request = Tick;
  using Response = Tick;
  using State = SinkState;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, SinkState& s, const Tick& in, Tick& out) const {
    if (ctx.thread_id() != 0) return false;
    if (in.seq == kFaultSeq) {
      ctx.fail(9);
      return false;
    }
    out = Tick{in.seq, ++s.received};
    return true;
  }
};

}  // namespace ptest
