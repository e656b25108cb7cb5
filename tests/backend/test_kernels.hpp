// Kernels exercised by the backend test bodies (one definition for every backend).
#pragma once

#include <ringkernel/ringkernel.hpp>
#include <ringkernel/stencil.hpp>

namespace rktest {
using namespace ringkernel;

struct Item {
  std::uint64_t seq;
  std::int64_t value;
};
RK_MESSAGE(Item, "test.Item", seq, value);

struct Reply {
  std::uint64_t seq;
  std::int64_t value;
  std::uint32_t thread;
  std::uint32_t source;
  std::uint64_t aux;
};
RK_MESSAGE(Reply, "test.Reply", seq, value, thread, source, aux);

struct Other {
  std::uint64_t x;
};
RK_MESSAGE(Other, "test.Other", x);

struct Big {
  std::uint8_t bytes[4096];
};
RK_MESSAGE(Big, "test.Big", bytes);

/// Echo: value * 2 + 1, reports the thread that answered.
struct Echo {
  using Request = Item;
  using Response = Reply;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Item& in, Reply& out) const {
    out = Reply{in.seq, in.value * 2 + 1, ctx.thread_id(), ctx.message_source(), ctx.correlation_id()};
    return ctx.mode() == KernelMode::Parallel || ctx.thread_id() == 0;
  }
};

/// Doubler: Item -> Item with value * 2 (a pipeline stage whose output is another's input).
struct Doubler {
  using Request = Item;
  using Response = Item;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Item& in, Item& out) const {
    out = Item{in.seq, in.value * 2};
    return ctx.thread_id() == 0;
  }
};

struct CounterState {
  std::int64_t total;
  std::uint64_t messages;
};
RK_GPU_TYPE(CounterState, total, messages);

/// Running total kept in persistent state.
struct Counter {
  using Request = Item;
  using Response = Reply;
  using State = CounterState;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, CounterState& s, const Item& in, Reply& out) const {
    if (ctx.thread_id() != 0) return false;
    s.total += in.value;
    ++s.messages;
    out = Reply{in.seq, s.total, 0, 0, s.messages};
    return true;
  }
};

struct TableRead {
  std::uint64_t table;  ///< device address of an int64 table (GpuBuffer::device_ptr)
  std::uint32_t index;
  std::uint32_t reserved;
};
RK_MESSAGE(TableRead, "test.TableRead", table, index, reserved);

/// Reads element `index` of a table in a GpuBuffer and keeps a running total of what it read.
struct TableLookup {
  using Request = TableRead;
  using Response = Reply;
  using State = CounterState;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, CounterState& s, const TableRead& in, Reply& out) const {
    if (ctx.thread_id() != 0) return false;
    const auto* table = reinterpret_cast<const std::int64_t*>(static_cast<std::uintptr_t>(in.table));
    const std::int64_t v = table[in.index];
    s.total += v;
    ++s.messages;
    out = Reply{in.index, v, 0, 0, static_cast<std::uint64_t>(s.total)};
    return true;
  }
};

struct StencilRun {
  std::uint64_t a, b;  ///< device addresses of the two grids (GpuBuffers); `a` holds the state
  std::uint32_t nx, ny;
  std::uint32_t steps;
  std::uint32_t kind;  ///< 0: Conway's life (uint32 cells, periodic); 1: heat (float, fixed border); 2: Sum7
  float alpha;         ///< heat: diffusion coefficient
  std::uint32_t nz;    ///< Sum7: depth of the 3-D grid (the others are planes)
};
RK_MESSAGE(StencilRun, "test.StencilRun", a, b, nx, ny, steps, kind, alpha, nz);

struct Life {
  RK_HOST_DEVICE std::uint32_t operator()(const stencil::GridPos<std::uint32_t>& p) const {
    std::uint32_t n = 0;
    for (int dy = -1; dy <= 1; ++dy)
      for (int dx = -1; dx <= 1; ++dx)
        if (dx != 0 || dy != 0) n += p.at(dx, dy);
    return (n == 3 || (p.center() != 0 && n == 2)) ? 1u : 0u;
  }
};
struct Heat {
  float alpha;
  RK_HOST_DEVICE float operator()(const stencil::GridPos<float>& p) const {
    return p.center() + alpha * (p.north() + p.south() + p.east() + p.west() - 4.0f * p.center());
  }
};

/// 3-D, clamped edges: the cell plus its six neighbours, kept to 16 bits.
struct Sum7 {
  RK_HOST_DEVICE std::uint32_t operator()(const stencil::GridPos<std::uint32_t>& p) const {
    return (p.center() + p.west() + p.east() + p.north() + p.south() + p.below() + p.above()) & 0xffffu;
  }
};

/// A simulation actor: runs `steps` stencil steps over grids in device memory with the
/// whole block; replies with the grid that holds the result (seq 0: a, 1: b).
struct StencilActor {
  using Request = StencilRun;
  using Response = Reply;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const StencilRun& in, Reply& out) const {
    const stencil::Extent e{in.nx, in.ny, in.kind == 2 ? in.nz : 1u};
    bool first;
    if (in.kind == 0 || in.kind == 2) {
      auto* a = reinterpret_cast<std::uint32_t*>(static_cast<std::uintptr_t>(in.a));
      auto* b = reinterpret_cast<std::uint32_t*>(static_cast<std::uintptr_t>(in.b));
      first = in.kind == 0 ? stencil::run(ctx, a, b, e, stencil::Boundary::Periodic, in.steps, Life{}) == a
                           : stencil::run(ctx, a, b, e, stencil::Boundary::Clamp, in.steps, Sum7{}) == a;
    } else {
      auto* a = reinterpret_cast<float*>(static_cast<std::uintptr_t>(in.a));
      auto* b = reinterpret_cast<float*>(static_cast<std::uintptr_t>(in.b));
      first = stencil::run(ctx, a, b, e, stencil::Boundary::Fixed, in.steps, Heat{in.alpha}) == a;
    }
    out = Reply{first ? 0u : 1u, in.steps, ctx.thread_id(), ctx.block_dim(), 0};
    return ctx.thread_id() == 0;
  }
};

/// Block cooperation: every thread contributes (thread + 1) * value through shared memory
/// and a barrier; thread 0 sums. Also a warp reduction and a ballot, checked against the
/// closed form. Needs shared_memory_size >= 8 * block_size.
struct BlockSum {
  using Request = Item;
  using Response = Reply;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Item& in, Reply& out) const {
    auto* partial = reinterpret_cast<std::int64_t*>(ctx.shared_memory());
    const std::uint32_t t = ctx.thread_id();
    partial[t] = std::int64_t{t + 1} * in.value;
    ctx.sync_threads();
    const std::int64_t warp_total = ctx.warp_reduce_add(std::int64_t{1});
    const std::uint32_t odd_lanes = ctx.warp_ballot((ctx.lane_id() & 1u) != 0);
    if (t != 0) {
      ctx.sync_threads();
      return false;
    }
    std::int64_t sum = 0;
    for (std::uint32_t i = 0; i < ctx.block_dim(); ++i) sum += partial[i];
    ctx.sync_threads();  // nobody reuses `partial` before thread 0 has read it
    out = Reply{in.seq, sum, ctx.block_dim(), static_cast<std::uint32_t>(warp_total), odd_lanes};
    return true;
  }
};

/// Faults the kernel when it sees value 13.
struct Faulty {
  using Request = Item;
  using Response = Reply;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Item& in, Reply& out) const {
    if (in.value == 13) {
      ctx.fail(7);
      return false;
    }
    out = Reply{in.seq, in.value, 0, 0, 0};
    return ctx.thread_id() == 0;
  }
};

/// Parallel kernel that illegally waits on a barrier.
struct BarrierInParallel {
  using Request = Item;
  using Response = Reply;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Item& in, Reply& out) const {
    if (in.value == 99) ctx.sync_threads();
    out = Reply{in.seq, in.value, 0, 0, 0};
    return true;
  }
};

/// Forwards value to the K2K destination in `seq` (low 32 bits) and reports the status.
struct Forwarder {
  using Request = Item;
  using Response = Reply;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Item& in, Reply& out) const {
    if (ctx.thread_id() != 0) return false;
    const auto dest = static_cast<std::uint32_t>(in.seq & 0xFFFFFFFFu);
    const Status s = ctx.k2k_send(dest, Item{in.seq, in.value});
    out = Reply{in.seq, in.value, 0, static_cast<std::uint32_t>(s), ctx.k2k_route_count()};
    return true;
  }
};

/// Sends Items 0 .. value-1 (at most 64) to kernel `seq` with one k2k_send_batch and
/// replies with the status (in `source`).
struct BatchForwarder {
  using Request = Item;
  using Response = Reply;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Item& in, Reply& out) const {
    if (ctx.thread_id() != 0) return false;
    Item items[64];
    const auto n = static_cast<std::uint32_t>(in.value < 64 ? in.value : 64);
    for (std::uint32_t i = 0; i < n; ++i) items[i] = Item{i, static_cast<std::int64_t>(i)};
    const Status s = ctx.k2k_send_batch(static_cast<std::uint32_t>(in.seq), items, in.value > 64 ? 65u : n);
    out = Reply{in.seq, n, 0, static_cast<std::uint32_t>(s), 0};
    return true;
  }
};

/// Parallel mode: every thread forwards its message to route 0, retrying while the route
/// is full (the warps of a block claim the one route at the same time).
struct SpreadForwarder {
  using Request = Item;
  using Response = void;
  RK_HOST_DEVICE void operator()(RingContext& ctx, NoState&, const Item& in) const {
    while (ctx.k2k_send(ctx.k2k_route(0), in) == Status::QueueFull) {
    }
  }
};

/// Reports every K2K message it gets (value + 1000), and host messages as they are.
struct Sink {
  using Request = Item;
  using Response = Reply;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Item& in, Reply& out) const {
    if (ctx.thread_id() != 0) return false;
    out = Reply{in.seq, in.value + (ctx.message_source() != 0 ? 1000 : 0), 0, ctx.message_source(), 0};
    return true;
  }
};

/// Pull-mode receiver: on a host message, drains its K2K inbox and reports how many
/// Other messages it pulled and their sum.
struct Puller {
  using Request = Item;
  using Response = Reply;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Item& in, Reply& out) const {
    if (ctx.thread_id() != 0) return false;
    Other o{};
    std::uint32_t src = 0;
    std::uint64_t n = 0;
    std::int64_t sum = 0;
    while (ctx.k2k_try_receive(o, &src) == Status::Ok) {
      ++n;
      sum += static_cast<std::int64_t>(o.x);
    }
    out = Reply{in.seq, sum, 0, src, n};
    return true;
  }
};

/// Sends `value` Other messages {1..value} to route 0 (pull-mode peer).
struct Pusher {
  using Request = Item;
  using Response = Reply;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Item& in, Reply& out) const {
    if (ctx.thread_id() != 0) return false;
    std::uint64_t sent = 0;
    for (std::int64_t i = 1; i <= in.value; ++i)
      if (ctx.k2k_send(ctx.k2k_route(0), Other{static_cast<std::uint64_t>(i)}) == Status::Ok) ++sent;
    out = Reply{in.seq, in.value, 0, 0, sent};
    return true;
  }
};

/// HLC: returns the message's stamp and a fresh kernel tick (aux = logical of the tick).
struct Clock {
  using Request = Item;
  using Response = Reply;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Item& in, Reply& out) const {
    if (ctx.thread_id() != 0) return false;
    const HlcTimestamp msg = ctx.message_timestamp();
    const HlcTimestamp now = ctx.hlc_tick();
    const bool after = now.physical > msg.physical || (now.physical == msg.physical && now.logical > msg.logical);
    out = Reply{in.seq, static_cast<std::int64_t>(msg.physical), after ? 1u : 0u, 0, now.physical};
    return true;
  }
};

/// Terminates itself on value -1.
struct SelfStop {
  using Request = Item;
  using Response = Reply;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Item& in, Reply& out) const {
    if (in.value == -1) ctx.request_terminate();
    out = Reply{in.seq, in.value, 0, 0, 0};
    return ctx.thread_id() == 0;
  }
};

/// Takes a 4 KiB payload and replies with a checksum.
struct BigEater {
  using Request = Big;
  using Response = Reply;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Big& in, Reply& out) const {
    if (ctx.thread_id() != 0) return false;
    std::int64_t sum = 0;
    for (unsigned i = 0; i < sizeof in.bytes; ++i) sum += in.bytes[i];
    out = Reply{0, sum, 0, 0, 0};
    return true;
  }
};

/// Publishes `value` Other{i} messages to topic `seq` (ctx.publish) and reports how many
/// the backend accepted.
struct Publisher {
  using Request = Item;
  using Response = Reply;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Item& in, Reply& out) const {
    if (ctx.thread_id() != 0) return false;
    std::int64_t ok = 0;
    for (std::int64_t i = 0; i < in.value; ++i)
      if (ctx.publish(in.seq, Other{static_cast<std::uint64_t>(i)}) == Status::Ok) ++ok;
    out = Reply{in.seq, ok, 0, 0, 0};
    return true;
  }
};

/// A kernel subscriber of Other topics: replies with each message's x, how many it has
/// handled, and where the message came from (0: host or broker).
struct TopicSink {
  using Request = Other;
  using Response = Reply;
  using State = CounterState;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, CounterState& s, const Other& in, Reply& out) const {
    if (ctx.thread_id() != 0) return false;
    ++s.messages;
    out = Reply{in.x, static_cast<std::int64_t>(s.messages), 0, ctx.message_source(), 0};
    return true;
  }
};

/// An actor pool's message: `actor` names the actor (LaunchOptions::actor_slots).
struct PoolAdd {
  std::uint32_t actor;
  std::uint32_t reserved;
  std::int64_t value;
};
RK_MESSAGE(PoolAdd, "test.PoolAdd", actor, reserved, value);
struct PoolTotal {
  std::uint32_t actor;     // ctx.actor_index() of the actor that answered
  std::uint32_t messages;  // messages this actor has handled
  std::int64_t total;
};
RK_MESSAGE(PoolTotal, "test.PoolTotal", actor, messages, total);
struct PoolState {
  std::int64_t total;
  std::uint32_t messages;
  std::uint32_t reserved;
};
RK_GPU_TYPE(PoolState, total, messages, reserved);

/// A running total per actor, starting at 100 (a non-zero initial State shows that a new
/// or restarted actor really gets initial_state(), not zeros or a predecessor's State).
/// A negative value makes the actor fail with code -value.
struct PoolCounter {
  using Request = PoolAdd;
  using Response = PoolTotal;
  using State = PoolState;
  static PoolState initial_state() { return PoolState{100, 0, 0}; }
  RK_HOST_DEVICE bool operator()(RingContext& ctx, PoolState& s, const PoolAdd& in, PoolTotal& out) const {
    if (ctx.thread_id() != 0) return false;
    if (in.value < 0) {
      ctx.fail(static_cast<std::uint32_t>(-in.value));
      return false;
    }
    s.total += in.value;
    ++s.messages;
    out = PoolTotal{ctx.actor_index(), s.messages, s.total};
    return true;
  }
};

}  // namespace rktest
