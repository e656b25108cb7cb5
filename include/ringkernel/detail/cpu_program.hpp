// ringkernel/detail/cpu_program.hpp — how the CPU backend runs a handler (implementation
// detail; included by registry.hpp because the per-handler loop is a template).
//
// A CPU kernel is one OS thread running a persistent loop (src/cpu/cpu_runtime.cpp). For
// each batch it dequeues, it makes one virtual call into CpuProgramT<H>::process(), whose
// loop over the batch's messages is compiled for H: no indirect call per message. In actor
// mode with block_size > 1, the block's threads run as fibers on that OS thread
// (src/cpu/fiber.cpp), so barriers and warp collectives behave as on a GPU.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>

#include "ringkernel/context.hpp"
#include "ringkernel/control.hpp"
#include "ringkernel/hlc.hpp"
#include "ringkernel/message.hpp"
#include "ringkernel/queue.hpp"
#include "ringkernel/telemetry.hpp"

namespace ringkernel::detail {

class FiberTeam;

/// Per-kernel execution state of the CPU backend (the kernel thread owns it).
struct CpuExec {
  // Set up by the runtime before the kernel thread starts.
  std::uint32_t slot = 0;
  std::uint32_t block_dim = 1;
  std::uint32_t grid_dim = 1;
  KernelMode mode = KernelMode::Actor;
  ControlBlock* control = nullptr;
  TelemetryBuffer* telemetry = nullptr;
  std::byte* state = nullptr;
  std::byte* shared = nullptr;
  std::uint32_t shared_size = 0;
  FiberTeam* team = nullptr;  // actor mode with block_dim > 1
  HlcClock* clock = nullptr;  // the kernel's own clock
  // Actor pool (LaunchOptions::actor_slots > 0): actor i's State is at state + i * stride.
  std::uint32_t actor_slots = 0;
  std::size_t state_stride = 0;
  std::uint8_t* actor_alive = nullptr;     // per actor: 1 = live (kernel thread writes it)
  std::uint32_t* actor_faults = nullptr;   // per actor: failure code, 0 = none (host reads it)

  // Kernel-thread state.
  std::uint64_t processed = 0;
  std::uint64_t dropped = 0;
  std::uint64_t k2k_sent = 0;
  std::uint64_t latency_total = 0;
  std::uint64_t latency_min = ~std::uint64_t{0};
  std::uint64_t latency_max = 0;
  std::uint32_t fault = 0;          // DeviceError or handler code; non-zero stops the loop
  bool terminate_requested = false;
  void* runtime_private = nullptr;  // src/cpu: routes, output endpoint, doorbells

  /// Sends a response (or forwards) to the host output ring; waits for room while the
  /// kernel is alive. False when the kernel is stopping (message counted as dropped).
  bool emit(TypeId type, const void* payload, std::uint32_t size, std::uint64_t corr) noexcept;
  /// Runs fn(arg, thread) on every fiber of the team until all return.
  void run_team(void (*fn)(void*, std::uint32_t), void* arg) noexcept;
  /// Counts a processed message and its latency (µs from its HLC stamp to `now_us`, a
  /// wall-clock reading the caller took for it or for its batch).
  void record(const HlcTimestamp& stamp, std::uint64_t now_us) noexcept {
    ++processed;
    const std::uint64_t lat = now_us > stamp.physical ? now_us - stamp.physical : 0;
    latency_total += lat;
    if (lat < latency_min) latency_min = lat;
    if (lat > latency_max) latency_max = lat;
  }
};

/// One batch of input slots for a program.
struct CpuBatch {
  const std::byte* const* slots;
  const std::uint32_t* sources;  // 0 = host, else sender slot + 1
  std::uint32_t count;
};

class CpuProgram {
 public:
  virtual ~CpuProgram() = default;
  virtual std::uint32_t state_size() const noexcept = 0;
  virtual std::uint32_t state_align() const noexcept = 0;
  virtual void init_state(std::byte* state) const noexcept = 0;
  /// Handles every message of the batch; invalid slots are counted as dropped.
  virtual void process(CpuExec& e, const CpuBatch& batch) noexcept = 0;
};

template <class H>
class CpuProgramT final : public CpuProgram {
  using Traits = HandlerTraits<H>;
  using Req = typename Traits::Request;
  using Resp = typename Traits::Response;
  using State = typename Traits::State;

  struct TeamCall {
    const H* handler;
    CpuExec* exec;
    State* state;
    const Req* req;
    Resp* resp;
    bool emit;
    const Envelope* env;
    std::uint32_t source;
    std::uint32_t actor;
  };

  static RingContext make_ctx(CpuExec& e, std::uint32_t thread, std::uint32_t block) noexcept {
    RingContext ctx(RingContext::Init{thread, block, e.block_dim, e.grid_dim, e.slot, e.mode, e.shared, e.shared_size});
    ctx.cpu_ = &e;
    return ctx;
  }

  static void team_entry(void* arg, std::uint32_t thread) noexcept {
    auto& c = *static_cast<TeamCall*>(arg);
    RingContext ctx = make_ctx(*c.exec, thread, 0);
    ctx.set_message(c.env->timestamp, c.env->correlation_id, c.source, 0);
    ctx.set_actor(c.actor);
    Resp local{};
    const bool emit = Traits::invoke(*c.handler, ctx, *c.state, *c.req, thread == 0 ? *c.resp : local);
    if (thread == 0) c.emit = emit;
  }

 public:
  std::uint32_t state_size() const noexcept override { return sizeof(State); }
  std::uint32_t state_align() const noexcept override { return alignof(State); }
  void init_state(std::byte* state) const noexcept override {
    const State s = Traits::initial_state();
    std::memcpy(state, &s, sizeof s);
  }

  /// Whether a slot holds a message this handler takes whose stamp is within the clock's
  /// skew bound (physical time at most `latest_ok_us`).
  static bool acceptable(const Envelope& env, std::uint64_t latest_ok_us) noexcept {
    return env.type_id == type_id_v<Req> && env.payload_size == sizeof(Req) && env.timestamp.physical <= latest_ok_us;
  }

  // A batch of several messages costs one wall-clock read and one HLC merge, not a read,
  // a merge and a second read (telemetry) per message: at tens of millions of messages per
  // second those clock reads cost more than the handlers. The merge takes the latest
  // acceptable stamp of the batch, so the kernel clock orders after every message before
  // any handler of the batch runs; the skew bound and the latency telemetry (1 µs
  // resolution) use the batch's dequeue time. A batch of one message (the latency case)
  // is merged and timed on its own, as a pre-pass would only lengthen the reply's path.
  void process(CpuExec& e, const CpuBatch& batch) noexcept override {
    State& state = *std::launder(reinterpret_cast<State*>(e.state));
    const bool per_batch = batch.count > 1;
    std::uint64_t now_us = 0;
    std::uint64_t latest_ok_us = ~std::uint64_t{0};  // one message: update() applies the bound
    bool merged_all = false;
    if (per_batch) {
      now_us = hlc::wall_clock_us();
      latest_ok_us = now_us + e.clock->max_skew_us();
      std::uint64_t latest = 0;  // packed stamp
      bool any = false;
      for (std::uint32_t i = 0; i < batch.count; ++i) {
        Envelope env;
        std::memcpy(&env, batch.slots[i], sizeof env);
        if (!acceptable(env, latest_ok_us)) continue;
        const std::uint64_t p = hlc::pack(env.timestamp);
        latest = any && latest > p ? latest : p;
        any = true;
      }
      // Fails only if the wall clock stepped back since now_us; then each message is
      // merged (and bounded) on its own, as update() decides.
      merged_all = !any || e.clock->update(hlc::unpack(latest, 0)).ok();
    }

    for (std::uint32_t i = 0; i < batch.count && e.fault == 0; ++i) {
      const std::byte* slot = batch.slots[i];
      Envelope env;
      std::memcpy(&env, slot, sizeof env);
      if (!acceptable(env, latest_ok_us) || (!merged_all && !e.clock->update(env.timestamp).ok())) {
        ++e.dropped;  // wrong type or size (a K2K sender may still mismatch), or a stamp
        continue;     // beyond the skew bound: not trusted
      }
      Req req;
      std::memcpy(&req, slot + sizeof(Envelope), sizeof(Req));
      State* st = &state;
      std::uint32_t actor = ~0u;
      if (e.actor_slots != 0) {  // an actor pool: the message names its actor
        actor = Traits::actor_of(req);
        if (actor >= e.actor_slots || e.actor_alive[actor] == 0) {
          ++e.dropped;  // no live actor there: a dead letter
          continue;
        }
        st = std::launder(reinterpret_cast<State*>(e.state + actor * e.state_stride));
      }
      Resp resp{};
      bool emit = false;
      if (e.mode == KernelMode::Actor && e.team != nullptr) {
        TeamCall call{&handler_, &e, st, &req, &resp, false, &env, batch.sources[i], actor};
        e.run_team(&team_entry, &call);
        emit = call.emit;
      } else {
        // Actor mode with one thread, or parallel mode: message i goes to thread
        // (i mod block) of block (i / block mod grid), one message per thread.
        const std::uint32_t lane = e.mode == KernelMode::Parallel ? i % e.block_dim : 0;
        const std::uint32_t block = e.mode == KernelMode::Parallel ? (i / e.block_dim) % e.grid_dim : 0;
        RingContext ctx = make_ctx(e, lane, block);
        ctx.set_message(env.timestamp, env.correlation_id, batch.sources[i], i);
        ctx.set_actor(actor);
        emit = Traits::invoke(handler_, ctx, *st, req, resp);
      }
      if (e.fault != 0 && actor != ~0u) {
        // ctx.fail in an actor pool stops that actor only: it takes no more messages until
        // the host restarts or destroys it, and the host sees why.
        e.actor_alive[actor] = 0;
        store_release(&e.actor_faults[actor], e.fault);
        e.fault = 0;
        ++e.dropped;
        continue;
      }
      if (e.fault != 0) break;
      e.record(env.timestamp, per_batch ? now_us : hlc::wall_clock_us());
      if constexpr (Traits::has_response) {
        if (emit && !e.emit(type_id_v<Resp>, &resp, sizeof(Resp), env.correlation_id)) break;
      }
    }
  }

 private:
  H handler_{};
};

template <class H>
CpuProgram* make_cpu_program() {
  return new CpuProgramT<H>();
}

}  // namespace ringkernel::detail
