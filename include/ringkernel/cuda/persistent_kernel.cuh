// ringkernel/cuda/persistent_kernel.cuh — the persistent loop of a CUDA kernel,
// instantiated per handler by RK_KERNEL when compiled with nvcc.
//
// Block layout: ceil(block_size / 32) handler warps, then one poller warp.
//  * The poller warp (block 0 only) polls the words the host writes in mapped memory —
//    the input ring's tail, is_active, should_terminate, the K2K route counts — and
//    mirrors them into shared memory (acquire at system scope, then release at CTA scope,
//    so the chain host release -> poller acquire -> poller release -> leader acquire orders
//    the slot reads after the host's slot writes). The leader's own polling then costs
//    shared-memory and L2 latency, not a PCIe round trip per iteration, which keeps K2K
//    delivery fast while host input is watched.
//  * Thread 0 is the leader: it picks the next batch (K2K inbound rings first, then the
//    host ring), hands it to the handler threads through shared memory, and after a
//    barrier releases the input slots and publishes the responses with one release store.
//  * Actor mode: the message is staged in shared memory and every handler thread calls the
//    handler on it; thread 0's response is written. Parallel mode: thread i takes message
//    i; with several blocks, block 0 hands out batches through device memory and every
//    block writes its responses at the input's positions (kEnvelopeSkip marks "no
//    response"), so the output keeps the input order without a grid-wide scan.
// Idle loops back off with __nanosleep. Named barrier 1 syncs handler threads only (the
// poller never joins it); a handler's sync_threads() uses the same barrier.
#pragma once

#include <cuda_runtime.h>

#include "ringkernel/cuda/device_context.cuh"
#include "ringkernel/cuda/device_kernel.hpp"
#include "ringkernel/cuda/program.hpp"
#include "ringkernel/registry.hpp"

namespace ringkernel::detail {

enum LoopCommand : std::uint32_t { kCmdNone = 0, kCmdBatch = 1, kCmdExit = 2, kCmdActor = 3 };

inline constexpr std::uint32_t kActorBatch = 64;

// Non-".aligned" barrier: threads of one warp may arrive from different code paths (the
// leader lane spins in its loop while its warp-mates wait), which bar.sync forbids.
__device__ inline void handler_barrier(std::uint32_t hthreads) {
  if (hthreads == 32) {
    __syncwarp();
  } else {
    asm volatile("barrier.sync 1, %0;" ::"r"(hthreads) : "memory");
  }
}

// The leader polls the poller's shared words with relaxed atomic reads (an atomic, so
// racecheck sees no hazard; no fence, which costs ~80 ns on an H100) and issues one CTA
// fence only when a word changed and what it announces is about to be read: the
// "load relaxed, then fence" acquire pattern, paid once per event instead of per poll.
__device__ inline std::uint32_t shared_relaxed(const std::uint32_t* p) {
  return atomicAdd(const_cast<std::uint32_t*>(p), 0u);
}
__device__ inline std::uint64_t shared_relaxed(const std::uint64_t* p) {
  return atomicAdd(reinterpret_cast<unsigned long long*>(const_cast<std::uint64_t*>(p)), 0ull);
}

/// The poller warp's loop (lane 0 of block 0). Every iteration is one load of the input
/// ring's producer line (one PCIe round trip): the tail (acquire), the control epoch, the
/// actor command and, with the express line on, the message words. Loads of other lines in
/// mapped memory queue behind it, so the control words and route counts are read only in
/// the round after the host bumped the control epoch (RingIndices::control_epoch).
__device__ inline void poller_loop(const DeviceKernel* dk, BlockShared* bs) {
  // Lane 0 keeps the books; lane k loads word k of the line, all in one load instruction
  // (the whole warp with the express line on, lanes 0-3 without).
  const unsigned lane = threadIdx.x & 31u;
  ControlBlock* c = dk->control;
  const RingIndices* in = dk->input.indices;
  const auto* line = reinterpret_cast<const std::uint64_t*>(in);
  std::uint64_t last_tail = 0, beats = 0, last_cmd = 0;
  std::uint32_t last_oc = 0, last_ic = 0, idle = 0, last_epoch = 0;
  const bool pool = dk->actor_slots != 0;
  // Words of the producer line: 2 holds the control epoch (upper half), 3 the actor command.
  constexpr std::uint32_t kEpochWord = offsetof(RingIndices, control_epoch) / 8;
  constexpr std::uint32_t kCommandWord = offsetof(RingIndices, command) / 8;
  static_assert(offsetof(RingIndices, control_epoch) % 8 == 4 && kCommandWord == kEpochWord + 1);
  // Express line (queue.hpp): data words per message, 0 when off. Lane 4 + k loads its
  // word k, lane 0 the tail: one warp-wide load of one 128-byte line, one PCIe round trip.
  const std::uint32_t xwords = dk->express;
  constexpr std::uint32_t kXLane = offsetof(RingIndices, express) / 8;
  const bool xlane = xwords != 0 && lane >= kXLane && lane < kXLane + xwords;
  const bool loads = lane == 0 || lane == kEpochWord || (lane == kCommandWord && pool) || xlane;
  std::uint32_t xdone = 0;  // flag of the message last put into bs->xbuf (lane 0)
  // Without the express line lanes 0-3 poll (the tail, the epoch and the command share the
  // line's first 32-byte sector: one load instruction, one request; a second load by lane
  // 0 would be a second request: K2K throughput on the H200 fell by 15-40 % with it).
  if (xwords == 0 && lane > kCommandWord) return;
  const unsigned warp = xwords != 0 ? ~0u : (2u << kCommandWord) - 1u;
  for (;;) {
    const std::uint32_t leave = __shfl_sync(warp, lane == 0 ? shared_relaxed(&bs->exit) : 0u, 0);
    if (leave != 0) break;
    // Pairs with the host's release store of tail (RingProducer::publish): the slots it
    // published are visible to whoever this thread hands the tail to below. The express
    // lanes' words need no order: each 8-byte word vouches for itself (its flag). The
    // epoch and the command are taken relaxed (the epoch is acquired again on a change).
    std::uint64_t word = 0;
    if (loads) word = load_acquire<Scope::System>(line + lane);
    const std::uint64_t epoch_word = __shfl_sync(warp, word, kEpochWord);
    const std::uint64_t command = __shfl_sync(warp, word, kCommandWord);
    if (xwords != 0) {
      // The message at last_tail (the next one the kernel takes), complete in the line:
      // its words go to warp 0 before the tail that announces it (below), so the slot need
      // not be read across PCIe. Not announced yet (the line came first): kept for the
      // next poll's tail.
      const std::uint32_t want = express::flag_of(__shfl_sync(~0u, static_cast<unsigned long long>(last_tail), 0));
      const bool fresh = __shfl_sync(~0u, want != xdone, 0);
      if (fresh && __all_sync(~0u, !xlane || static_cast<std::uint32_t>(word >> 32) == want)) {
        if (lane == 0) atomicExch(&bs->xseq, 0u);  // readers that look now fall back to the slot
        __syncwarp();
        __threadfence_block();
        if (xlane) atomicExch(&bs->xbuf[lane - kXLane], static_cast<std::uint32_t>(word));
        __threadfence_block();  // release: the words before the flag
        __syncwarp();
        if (lane == 0) atomicExch(&bs->xseq, want);
        xdone = want;
      }
    }
    if (lane != 0) continue;
    const std::uint64_t tail = word;
    // The first round, and a round after the host changed a control word: acquire the epoch
    // (pairs with the host's release bump; this thread's own load), then read the words.
    const bool control = beats == 0 || static_cast<std::uint32_t>(epoch_word >> 32) != last_epoch;
    if (control) {
      asm volatile("ld.acquire.sys.global.u32 %0, [%1];"
                   : "=r"(last_epoch)
                   : "l"(__cvta_generic_to_global(&in->control_epoch))
                   : "memory");
      const std::uint32_t active = *reinterpret_cast<volatile std::uint32_t*>(&c->is_active);
      const std::uint32_t terminate = *reinterpret_cast<volatile std::uint32_t*>(&c->should_terminate);
      const std::uint32_t oc = *reinterpret_cast<volatile std::uint32_t*>(&dk->routes->out_count);
      const std::uint32_t ic = *reinterpret_cast<volatile std::uint32_t*>(&dk->routes->in_count);
      store_release<Scope::Block>(&bs->active, active);
      store_release<Scope::Block>(&bs->terminate, terminate);
      if (oc != last_oc || ic != last_ic) {
        // Route entries are written before their count (host release): acquire them.
        asm volatile("fence.acq_rel.sys;" ::: "memory");
        store_release<Scope::Block>(&bs->out_count_seen, oc);
        store_release<Scope::Block>(&bs->in_count_seen, ic);
        last_oc = oc;
        last_ic = ic;
      }
    }
    if ((beats & 1023u) == 0) store_relaxed(&c->heartbeat, beats);
    ++beats;
    const std::uint64_t cmd = pool ? command : 0;
    if (cmd != last_cmd) {
      store_release<Scope::Block>(&bs->actor_cmd, cmd);  // pairs with the leader's acquire
      last_cmd = cmd;
      idle = 0;
    }
    if (tail != last_tail) {
      store_release<Scope::Block>(&bs->host_tail, tail);  // pairs with the leader's acquire
      last_tail = tail;
      idle = 0;
    } else if (++idle > 1024) {
      __nanosleep(idle > 16384 ? 1000 : 100);
    }
  }
}

/// Caches the routes the poller has seen appear. Block 0's leader then acknowledges them
/// (DeviceCounters::routes_seen): connect() returns once the kernel uses the new route.
__device__ inline void leader_refresh_routes(const DeviceKernel* dk, BlockShared* bs, bool acknowledge) {
  const std::uint32_t oc = shared_relaxed(&bs->out_count_seen);
  const std::uint32_t ic = shared_relaxed(&bs->in_count_seen);
  if (oc == bs->out_count && ic == bs->in_count) return;
  asm volatile("fence.acq_rel.cta;" ::: "memory");  // acquire: the poller's fence ordered the entries before the counts
  while (bs->out_count < oc && bs->out_count < kDeviceMaxRoutes) {
    copy_route(bs->out_routes[bs->out_count], &dk->routes->out[bs->out_count]);
    ++bs->out_count;
  }
  while (bs->in_count < ic && bs->in_count < kDeviceMaxRoutes) {
    copy_route(bs->in_routes[bs->in_count], &dk->routes->in[bs->in_count]);
    bs->in_heads[bs->in_count] = 0;
    ++bs->in_count;
  }
  // A plain store: the host reads nothing else the refresh wrote, and messages it sends
  // after seeing this are picked up by this thread after this point (program order).
  if (acknowledge) store_relaxed(&dk->counters->routes_seen, std::uint64_t{bs->out_count} << 32 | bs->in_count);
}

/// Writes one output slot (envelope + payload) with 16-byte stores.
template <class Resp>
__device__ inline void write_response(std::byte* slot, const Envelope& env, const Resp& resp) {
  constexpr std::uint32_t kBytes = slot_size_for(sizeof(Resp));
  alignas(16) unsigned char buf[kBytes];
  memcpy(buf, &env, sizeof env);
  memcpy(buf + sizeof env, &resp, sizeof(Resp));
  dev_store16(slot, buf, (static_cast<std::uint32_t>(sizeof(Envelope) + sizeof(Resp)) + 15u) & ~15u);
}

template <class Req>
__device__ inline bool read_request(const std::byte* slot, Envelope& env, Req& req) {
  constexpr std::uint32_t kBytes = slot_size_for(sizeof(Req));
  alignas(16) unsigned char buf[kBytes];
  dev_copy16(buf, slot, (static_cast<std::uint32_t>(sizeof(Envelope) + sizeof(Req)) + 15u) & ~15u);
  memcpy(&env, buf, sizeof env);
  if (env.type_id != type_id_v<Req> || env.payload_size != sizeof(Req)) return false;
  memcpy(&req, buf + sizeof env, sizeof(Req));
  return true;
}

/// Parallel mode: every handler thread of a warp calls this (with `timed` false when it
/// had no message); the warp reduces the latencies with shuffles and one lane updates the
/// block's figures, so 512 threads make 16 sets of shared atomics per batch, not 512.
__device__ inline void record_latency_warp(const DeviceKernel* dk, BlockShared* bs, bool timed, const HlcTimestamp& ts) {
  unsigned long long lat = 0;
  if (timed) {
    const std::uint64_t now = dev_wall_us(dk);
    lat = now > ts.physical ? now - ts.physical : 0;
  }
  unsigned long long sum = lat, lo = timed ? lat : ~0ull, hi = lat;
  for (int o = 16; o > 0; o >>= 1) {
    sum += __shfl_xor_sync(~0u, sum, o);
    const unsigned long long l = __shfl_xor_sync(~0u, lo, o), h = __shfl_xor_sync(~0u, hi, o);
    lo = l < lo ? l : lo;
    hi = h > hi ? h : hi;
  }
  if ((threadIdx.x & 31u) == 0 && lo != ~0ull) {
    atomicAdd(reinterpret_cast<unsigned long long*>(&bs->lat_total), sum);
    atomicMin(reinterpret_cast<unsigned long long*>(&bs->lat_min), lo);
    atomicMax(reinterpret_cast<unsigned long long*>(&bs->lat_max), hi);
  }
}

/// Actor mode: thread 0 alone records (and flush_telemetry, on the same thread, reads).
__device__ inline void record_latency(const DeviceKernel* dk, BlockShared* bs, const HlcTimestamp& ts) {
  const std::uint64_t now = dev_wall_us(dk);
  const std::uint64_t lat = now > ts.physical ? now - ts.physical : 0;
  bs->lat_total += lat;
  if (lat < bs->lat_min) bs->lat_min = lat;
  if (lat > bs->lat_max) bs->lat_max = lat;
}

/// Thread 0, actor mode: a copy of the response at output position `pos` on the output
/// ring's express line (queue.hpp). These stores reach the host ahead of the system fence
/// that publishes the tail, so a host waiting for this one response has it that much sooner.
template <class Resp>
__device__ inline void write_express_response(RingIndices* ix, std::uint64_t pos, const Envelope& env, const Resp& resp) {
  if constexpr (sizeof(Resp) <= express::kMaxPayload) {
    std::uint32_t data[express::kWords];
    express::pack(data, env.correlation_id, env.timestamp.physical, env.timestamp.logical, &resp, sizeof(Resp));
    dev_store_express<Scope::System>(ix, express::flag_of(pos), data, express::words_for(sizeof(Resp)));
  }
}

/// Warp 0 (all lanes): builds the slot image of the message at ring position `pos` in
/// `staging` from the poller's copy of the express line, if the poller holds that message.
/// A seqlock read: the copy counts only if xseq named the message before and after it.
template <class Req>
__device__ inline bool stage_express(const DeviceKernel* dk, BlockShared* bs, unsigned char* staging, std::uint64_t pos) {
  if constexpr (sizeof(Req) > express::kMaxPayload) {
    return false;  // never on the line (the runtime enables it only for small requests)
  } else {
  const std::uint32_t want = express::flag_of(pos);
  const unsigned lane = threadIdx.x & 31u;
  const std::uint32_t before = __shfl_sync(~0u, lane == 0 ? shared_relaxed(&bs->xseq) : 0u, 0);
  if (before != want) return false;
  __threadfence_block();  // acquire: pairs with the poller's fence before it set xseq
  constexpr std::uint32_t kPayloadWords = (sizeof(Req) + 3) / 4;
  constexpr std::uint32_t kEnvWords = sizeof(Envelope) / 4;
  static_assert(kEnvWords == 12 && kEnvWords + kPayloadWords <= 32);
  // Envelope words: type (0-1), correlation (2-3), physical (4-5), logical (6-7), node
  // (8-9), payload size (10), source | priority | flags (11); then the payload.
  std::uint32_t v = 0;
  if (lane >= 2 && lane < 8) v = shared_relaxed(&bs->xbuf[lane - 2]);
  else if (lane >= kEnvWords && lane < kEnvWords + kPayloadWords) v = shared_relaxed(&bs->xbuf[lane - kEnvWords + express::kHeaderWords]);
  __threadfence_block();
  __syncwarp();
  const std::uint32_t after = lane == 0 ? shared_relaxed(&bs->xseq) : 0u;
  if (__shfl_sync(~0u, after, 0) != want) return false;  // rewritten meanwhile: read the slot
  const std::uint64_t type = type_id_v<Req>;
  switch (lane) {
    case 0: v = static_cast<std::uint32_t>(type); break;
    case 1: v = static_cast<std::uint32_t>(type >> 32); break;
    case 8: v = static_cast<std::uint32_t>(dk->host_node); break;
    case 9: v = static_cast<std::uint32_t>(dk->host_node >> 32); break;
    case 10: v = static_cast<std::uint32_t>(sizeof(Req)); break;
    case 11: v = static_cast<std::uint32_t>(Priority::Normal) << 16; break;
    default: break;
  }
  if (lane < kEnvWords + kPayloadWords) reinterpret_cast<std::uint32_t*>(staging)[lane] = v;
  return true;
  }
}

/// Mirrors the kernel's figures into mapped memory for the host (TelemetryBuffer, control
/// block counters, K2K counters). Device words are loaded together, then stored: one L2
/// round trip, a handful of posted PCIe writes. Called every 32 batches and on going idle.
__device__ inline void flush_telemetry(const DeviceKernel* dk, const BlockShared* bs, std::uint64_t processed,
                                       std::uint64_t in_head) {
  DeviceWork* w = dk->work;
  const std::uint64_t dead = load_relaxed<Scope::Device>(&w->dead_letters);
  const std::uint64_t rejected = load_relaxed<Scope::Device>(&w->tenant_rejections);
  const std::uint64_t sent = load_relaxed<Scope::Device>(&w->k2k_sent);
  const std::uint64_t pub_only = load_relaxed<Scope::Device>(&w->pub_device_only);
  const std::uint64_t pub_delivered = load_relaxed<Scope::Device>(&w->pub_delivered);
  const std::uint64_t pub_dropped = load_relaxed<Scope::Device>(&w->pub_dropped);
  const std::uint64_t clock = dev_hlc_now(dk, bs);
  const std::uint64_t seen_tail = *reinterpret_cast<const volatile std::uint64_t*>(&bs->host_tail);
  TelemetryBuffer* t = dk->telemetry;
  ControlBlock* c = dk->control;
  store_relaxed(&t->messages_processed, processed);
  store_relaxed(&t->messages_dropped, bs->dropped + dead);
  store_relaxed(&t->total_latency_us, bs->lat_total);
  store_relaxed(&t->min_latency_us, bs->lat_min);
  store_relaxed(&t->max_latency_us, bs->lat_max);
  store_relaxed(&t->input_queue_depth, static_cast<std::uint32_t>(seen_tail - in_head));
  store_relaxed(&t->k2k_sent, sent);
  store_relaxed(&c->messages_processed, processed);
  store_relaxed(&c->messages_dropped, bs->dropped);
  const HlcTimestamp h = hlc::unpack(clock, dk->node_id);
  store_relaxed(&c->hlc.physical, h.physical);
  store_relaxed(&c->hlc.logical, h.logical);
  store_relaxed(&c->hlc.node_id, h.node_id);
  store_relaxed(&dk->counters->dead_letters, dead);
  store_relaxed(&dk->counters->tenant_rejections, rejected);
  store_relaxed(&dk->counters->k2k_sent, sent);
  store_relaxed(&dk->counters->pub_device_only, pub_only);
  store_relaxed(&dk->counters->pub_delivered, pub_delivered);
  store_relaxed(&dk->counters->pub_dropped, pub_dropped);
}

template <class H, bool Wide>
__global__ void __launch_bounds__(Wide ? 1024 : kCudaCompactThreads, 1)
    rk_persistent(const DeviceKernel* __restrict__ dk_global) {
  using Traits = HandlerTraits<H>;
  using Req = typename Traits::Request;
  using Resp = typename Traits::Response;
  using State = typename Traits::State;

  extern __shared__ __align__(16) unsigned char rk_smem[];
  auto* bs = reinterpret_cast<BlockShared*>(rk_smem);
  unsigned char* staging = rk_smem + ((sizeof(BlockShared) + 15) & ~std::size_t{15});
  // The kernel's description is constant after launch: every block reads its own copy in
  // shared memory. (In device memory, each access after an acquire, which invalidates the
  // SM's L1, would cost an L2 round trip on the message path.)
  if (threadIdx.x == 0) bs->kernel = *dk_global;
  __syncthreads();
  const DeviceKernel* const dk = &bs->kernel;
  const bool actor = dk->mode == static_cast<std::uint32_t>(KernelMode::Actor);
  std::byte* user_shared =
      reinterpret_cast<std::byte*>(staging + (actor ? slot_size_for(sizeof(Req)) : 0u));
  const std::uint32_t tid = threadIdx.x;
  const std::uint32_t hthreads = (dk->block_size + 31u) & ~31u;
  const std::uint32_t grid = dk->grid_size;
  const bool block0 = blockIdx.x == 0;
  DeviceWork* w = dk->work;
  ControlBlock* control = dk->control;

  if (tid == 0) {
    memset(bs, 0, offsetof(BlockShared, kernel));
    bs->lat_min = ~0ull;
    bs->hlc_local = dk->work->hlc;
    // One block: the clock lives in shared memory (device memory only when blocks share it).
    bs->hlc = (actor || dk->grid_size == 1) ? &bs->hlc_local : &dk->work->hlc;
  }
  __syncthreads();  // the last full-block barrier: after it the poller never meets the others
  if (tid >= hthreads) {
    if (block0 && tid < hthreads + 32) poller_loop(dk, bs);  // the poller warp
    return;
  }

  const H handler{};
  State& state = *static_cast<State*>(dk->state);
  RingContext ctx(RingContext::Init{tid, blockIdx.x, dk->block_size, grid, dk->slot,
                                    static_cast<KernelMode>(dk->mode), user_shared, dk->shared_size});
  ctx.device_ = dk;
  ctx.device_block_ = bs;

  // Leader-private state (thread 0 of each block; block 0 drives).
  std::uint64_t in_head = 0;           // host ring
  RingProducer<Scope::System> out;     // kernel -> host
  std::uint32_t acked = ~0u;
  std::uint64_t processed = 0, epoch = 0, max_depth = 0, batches = 0;
  bool dirty = false;
  if (tid == 0 && block0) {
    out = RingProducer<Scope::System>(dk->output);
    in_head = load_relaxed<Scope::System>(&dk->input.indices->head);
    store_relaxed(&dk->counters->started, 1ull);
  }
  const std::uint32_t max_batch = actor ? kActorBatch : dk->block_size * grid;

  for (;;) {
    // ---- the leader of block 0 picks the next batch ---------------------------------------
    if (tid == 0 && block0) {
      std::uint32_t cmd = kCmdNone, spins = 0;
      while (cmd == kCmdNone) {
        if (shared_relaxed(&bs->terminate) != 0 || shared_relaxed(&bs->fault) != 0 ||
            ((spins & 63u) == 0 && (*reinterpret_cast<volatile std::uint32_t*>(&w->terminate) != 0 ||
                                    *reinterpret_cast<volatile std::uint32_t*>(&w->fault) != 0))) {
          cmd = kCmdExit;
          break;
        }
        const std::uint32_t active = shared_relaxed(&bs->active);
        if (active != acked) {
          acked = active;
          store_release<Scope::System>(&control->acked_active, acked);  // deactivate() waits on it
        }
        if (dk->actor_slots != 0) {  // an actor pool command goes before any message (also while deactivated)
          const std::uint64_t ac = shared_relaxed(&bs->actor_cmd);
          if (ac != bs->actor_done) {
            asm volatile("fence.acq_rel.cta;" ::: "memory");  // acquire (pairs with the poller's release)
            bs->actor_exec = ac;
            bs->n = 0;
            cmd = kCmdActor;
            break;
          }
        }
        leader_refresh_routes(dk, bs, true);  // also while deactivated: connect() waits for it
        if (!active) {
          __nanosleep(500);
          continue;
        }
        // K2K inbound rings (device memory, L2 latency) before the host ring.
        if (!dk->pull_mode) {
          for (std::uint32_t r = 0; r < bs->in_count && cmd == kCmdNone; ++r) {
            RingIndices* ix = bs->in_routes[r].view.indices;
            // The K2K express line (dev_k2k_express_write), on the tail's line: loaded with
            // it, relaxed (each word vouches for itself). Actor kernels only.
            constexpr bool kXSize = sizeof(Req) <= kK2KExpressMaxPayload;
            constexpr std::uint32_t kXWords = kK2KExpressHeader + (sizeof(Req) + 3) / 4;
            const bool xr = kXSize && actor && dk->k2k_express;
            std::uint64_t xw[express::kWords];
            if (xr) {
#pragma unroll
              for (std::uint32_t i = 0; i < express::kWords; i += 2)
                if (i < kXWords)
                  asm volatile("ld.relaxed.gpu.global.v2.u64 {%0, %1}, [%2];"
                               : "=l"(xw[i]), "=l"(xw[i + 1])
                               : "l"(__cvta_generic_to_global(&ix->express[i]))
                               : "memory");
            }
            // Pairs with the sender's release of tail (dev_k2k_push). An acquire load, not a
            // relaxed poll plus a fence on a change: the fence would add a round trip to
            // every delivery.
            const std::uint64_t t = load_acquire<Scope::Device>(&ix->tail);
            const std::uint64_t head = bs->in_heads[r];
            // Signed: a message taken from the express line moves the head past a tail
            // its sender has not published yet.
            const bool published = static_cast<std::int64_t>(t - head) > 0;
            // The express line holds message `head` when every word carries its flag,
            // whether or not the tail has arrived too: the leader then stages it from the
            // words it already holds (warp 0 does not read the slot from L2).
            bool hit = false;
            if (xr) {
              const std::uint32_t want = express::flag_of(head);
              bool whole = true;
#pragma unroll
              for (std::uint32_t i = 0; i < express::kWords; ++i)
                if (i < kXWords) whole = whole && static_cast<std::uint32_t>(xw[i] >> 32) == want;
              hit = whole && express_word64(xw, 0) == type_id_v<Req>;  // another type: the slot path refuses and counts it
            }
            if (published || hit) {
              const std::uint64_t avail = published ? t - head : 1;
              bs->n = static_cast<std::uint32_t>(avail < max_batch ? avail : max_batch);
              bs->start = head;
              bs->source = r + 1;
              cmd = kCmdBatch;
            }
            if (hit) {
              // The leader stages it itself: warp 0 waits at the barrier, staging is free.
              const std::uint64_t node = express_word64(xw, 6);
              const Envelope env{type_id_v<Req>, express_word64(xw, 2), hlc::unpack(express_word64(xw, 4), node),
                                 static_cast<std::uint32_t>(sizeof(Req)),
                                 static_cast<std::uint16_t>(node & 0xffffu),  // the sender's slot + 1, as in its slot
                                 static_cast<std::uint8_t>(Priority::Normal), kEnvelopeK2K};
              memcpy(staging, &env, sizeof env);
              auto* w32 = reinterpret_cast<std::uint32_t*>(staging);
#pragma unroll
              for (std::uint32_t i = kK2KExpressHeader; i < express::kWords; ++i)
                if (i < kXWords) w32[12 + i - kK2KExpressHeader] = static_cast<std::uint32_t>(xw[i]);
              bs->staged = 1;
            }
          }
        }
        if (cmd == kCmdNone) {
          const std::uint64_t t = shared_relaxed(&bs->host_tail);
          if (t != in_head) {
            asm volatile("fence.acq_rel.cta;" ::: "memory");  // acquire: pairs with the poller's release of host_tail
            const std::uint64_t avail = t - in_head;
            if (avail > max_depth) {  // QueueStats::max_depth of the input ring
              max_depth = avail;
              store_relaxed(&dk->input.indices->max_depth, max_depth);
            }
            bs->n = static_cast<std::uint32_t>(avail < max_batch ? avail : max_batch);
            bs->start = in_head;
            bs->source = 0;
            cmd = kCmdBatch;
          }
        }
        if (cmd == kCmdBatch && !actor) {
          // Parallel mode writes one output slot per input (when the handler has a
          // response type): wait for room for the whole batch.
          while (Traits::has_response && out.reserve(bs->n) < bs->n) {
            if (shared_relaxed(&bs->terminate) != 0) {
              cmd = kCmdExit;
              break;
            }
            __nanosleep(200);
          }
          bs->out_base = out.position();
          if (cmd == kCmdBatch) {
            // One HLC merge per batch: the last message carries the batch's latest stamp
            // (FIFO from one stamping producer), then n events are reserved for the responses.
            const RingView& v = bs->source == 0 ? dk->input : bs->in_routes[bs->source - 1].view;
            HlcTimestamp last;
            const volatile std::uint64_t* ts = reinterpret_cast<const volatile std::uint64_t*>(
                v.slot(bs->start + bs->n - 1) + offsetof(Envelope, timestamp));
            last.physical = ts[0];
            last.logical = ts[1];
            last.node_id = ts[2];
            dev_hlc_merge(dk, bs, last);
            bs->hlc_first = dev_hlc_tick(dk, bs, bs->n);
          }
        }
        if (cmd == kCmdNone) {
          // Gone idle (~0.2 ms without work): let the host see current figures. Not sooner:
          // these are a dozen writes across PCIe, and the next response's system fence would
          // wait for them if a message came right after.
          if (++spins == 2048 && dirty) {
            flush_telemetry(dk, bs, processed, in_head);
            dirty = false;
          }
          if (spins > 64) __nanosleep(spins > 1u << 16 ? 1000 : 32);
        }
      }
      bs->cmd = cmd;
      if (grid > 1) {  // hand the batch to the other blocks (device memory)
        w->batch_start = bs->start;
        w->batch_out = bs->out_base;
        w->batch_n = bs->n;
        w->batch_source = bs->source;
        w->batch_hlc = bs->hlc_first;
        w->batch_routes = std::uint64_t{bs->out_count} << 32 | bs->in_count;
        w->stop = cmd == kCmdExit ? 1u : 0u;
        store_release<Scope::Device>(&w->batch_epoch, ++epoch);  // pairs with the blocks' acquire
      }
    } else if (tid == 0) {
      // other blocks (parallel mode): wait for the next epoch from block 0
      while (load_acquire<Scope::Device>(&w->batch_epoch) == epoch) __nanosleep(100);
      ++epoch;
      bs->cmd = *reinterpret_cast<volatile std::uint32_t*>(&w->stop) != 0 ? kCmdExit : kCmdBatch;
      bs->hlc_first = w->batch_hlc;
      bs->start = w->batch_start;
      bs->out_base = w->batch_out;
      bs->n = w->batch_n;
      bs->source = w->batch_source;
      // The poller runs in block 0 only: take block 0's route counts with the batch.
      const std::uint64_t routes = *reinterpret_cast<volatile std::uint64_t*>(&w->batch_routes);
      bs->out_count_seen = static_cast<std::uint32_t>(routes >> 32);
      bs->in_count_seen = static_cast<std::uint32_t>(routes);
      leader_refresh_routes(dk, bs, false);
    }
    handler_barrier(hthreads);
    if (bs->cmd == kCmdExit) break;
    if (bs->cmd == kCmdActor) {
      // Create / restart: every handler thread copies part of the initial State into the
      // actor's State; then the leader marks the actor live (or dead) and acknowledges.
      const std::uint64_t ac = bs->actor_exec;
      const std::uint32_t op = static_cast<std::uint32_t>(ac >> 24) & 0xffu;
      const std::uint32_t index = static_cast<std::uint32_t>(ac) & 0xffffffu;
      if (index < dk->actor_slots && op != static_cast<std::uint32_t>(ActorOp::Destroy)) {
        const std::uint32_t stride = dk->state_stride;
        auto* dst = static_cast<unsigned char*>(dk->state) + std::size_t{index} * stride;
        const auto* src = static_cast<const unsigned char*>(dk->initial_state);
        if (stride % 8 == 0) {
          for (std::uint32_t i = tid * 8; i < stride; i += hthreads * 8)
            *reinterpret_cast<std::uint64_t*>(dst + i) = *reinterpret_cast<const std::uint64_t*>(src + i);
        } else {
          for (std::uint32_t i = tid; i < stride; i += hthreads) dst[i] = src[i];
        }
      }
      handler_barrier(hthreads);
      if (tid == 0) {
        if (index < dk->actor_slots) {
          dk->actor_alive[index] = op == static_cast<std::uint32_t>(ActorOp::Destroy) ? 0u : 1u;
          store_relaxed(&dk->actor_faults[index], 0u);  // a new incarnation has not failed
        }
        bs->actor_done = ac;
        // The acknowledgement: the host's spawn_actor() returns when it sees it. Messages
        // sent after that are handled after this point (same leader, program order), and the
        // host reads nothing the command wrote, so a plain store (no system fence) will do.
        store_relaxed(&dk->actor_mailbox->ack, ac >> 32);
      }
      handler_barrier(hthreads);
      continue;
    }

    // ---- process the batch -----------------------------------------------------------------
    const std::uint32_t n = bs->n;
    const std::uint32_t source = bs->source;
    const RingView& in_view = source == 0 ? dk->input : bs->in_routes[source - 1].view;
    if (actor) {
      // The leader staged the first message itself (K2K express line) before the barrier
      // every handler thread passed since: nothing to copy, and no second barrier.
      const bool leader_staged = bs->staged != 0;
      for (std::uint32_t i = 0; i < n; ++i) {
        if (i != 0 || !leader_staged) {
          if (tid < 32) {  // warp 0 stages the message in shared memory
            // From the express line when the poller has it (no PCIe read), else from the slot.
            const bool staged =
                source == 0 && dk->express != 0 && stage_express<Req>(dk, bs, staging, bs->start + i);
            if (!staged) {
              const std::byte* slot = in_view.slot(bs->start + i);
              const std::uint32_t words = slot_size_for(sizeof(Req)) / 16;
              for (std::uint32_t k = tid; k < words; k += 32)
                reinterpret_cast<uint4*>(staging)[k] = const_cast<const uint4&>(reinterpret_cast<const volatile uint4*>(slot)[k]);
            }
          }
          handler_barrier(hthreads);
        }
        Envelope env;
        memcpy(&env, staging, sizeof env);
        bool valid = env.type_id == type_id_v<Req> && env.payload_size == sizeof(Req);
        const Req& req = *reinterpret_cast<const Req*>(staging + sizeof(Envelope));
        State* st = &state;
        std::uint32_t actor = ~0u;
        if (valid && dk->actor_slots != 0) {  // an actor pool: the message names its actor
          actor = Traits::actor_of(req);
          if (actor < dk->actor_slots && *reinterpret_cast<volatile const std::uint32_t*>(&dk->actor_alive[actor]) != 0)
            st = reinterpret_cast<State*>(static_cast<unsigned char*>(dk->state) + std::size_t{actor} * dk->state_stride);
          else
            valid = false;  // no live actor there: a dead letter, counted as dropped
        }
        Resp resp{};
        bool emit = false;
        if (valid && tid < dk->block_size) {
          if (tid == 0) dev_hlc_observe(dk, bs, env.timestamp);
          ctx.set_message(env.timestamp, env.correlation_id, source == 0 ? 0u : bs->in_routes[source - 1].peer + 1, 0);
          ctx.set_actor(actor);
          emit = Traits::invoke(handler, ctx, *st, req, resp);
        }
        if (dk->actor_slots != 0) {
          // ctx.fail in an actor pool stops that actor only (RingContext::fail): once every
          // handler thread is done, the leader retires it and tells the host why.
          handler_barrier(hthreads);
          if (tid == 0 && valid) {
            const std::uint32_t code = shared_relaxed(&bs->actor_fault);
            if (code != 0) {
              dk->actor_alive[actor] = 0u;
              store_relaxed(&dk->actor_faults[actor], code);
              atomicExch(&bs->actor_fault, 0u);
              valid = false;  // dropped below, no response
            }
          }
        }
        if (tid == 0) {
          if (!valid) {
            atomicAdd(reinterpret_cast<unsigned long long*>(&bs->dropped), 1ull);
          } else {
            record_latency(dk, bs, env.timestamp);
            ++processed;
            if (Traits::has_response && emit && shared_relaxed(&bs->fault) == 0) {
              while (out.reserve(bs->emitted + 1) < bs->emitted + 1) {
                if (bs->emitted) {  // let the host drain what is ready
                  __threadfence_system();
                  out.publish_after_fence(bs->emitted);
                  bs->emitted = 0;
                }
                if (shared_relaxed(&bs->terminate) != 0) break;
                __nanosleep(200);
              }
              if (out.reserve(bs->emitted + 1) >= bs->emitted + 1) {
                const Envelope re{type_id_v<Resp>, env.correlation_id, hlc::unpack(dev_hlc_tick(dk, bs), dk->node_id),
                                  static_cast<std::uint32_t>(sizeof(Resp)), static_cast<std::uint16_t>(dk->slot + 1),
                                  static_cast<std::uint8_t>(Priority::Normal), kEnvelopeResponse};
                write_response(out.slot(bs->emitted), re, resp);
                if (dk->out_express) write_express_response(dk->output.indices, out.position() + bs->emitted, re, resp);
                ++bs->emitted;
              } else {
                atomicAdd(reinterpret_cast<unsigned long long*>(&bs->dropped), 1ull);  // terminating, output full
              }
            }
          }
        }
        handler_barrier(hthreads);  // staging is reused by the next message
        if (shared_relaxed(&bs->fault) != 0) break;
      }
    } else {
      // Parallel: message index = block offset + thread.
      const std::uint32_t idx = blockIdx.x * dk->block_size + tid;
      bool timed = false;
      HlcTimestamp stamp{};
      if (tid < dk->block_size && idx < n) {
        Envelope env;
        Req req;
        Resp resp{};
        bool emit = false;
        const bool valid = read_request(in_view.slot(bs->start + idx), env, req);
        if (valid) {
          ctx.set_message(env.timestamp, env.correlation_id, source == 0 ? 0u : bs->in_routes[source - 1].peer + 1, idx);
          emit = Traits::invoke(handler, ctx, state, req, resp);
          timed = true;
          stamp = env.timestamp;
        } else {
          atomicAdd(reinterpret_cast<unsigned long long*>(&bs->dropped), 1ull);
        }
        if constexpr (Traits::has_response) {
        const std::uint64_t pos = bs->out_base + idx;
        std::byte* slot = dk->output.slot(pos);
        const Envelope re{type_id_v<Resp>, env.correlation_id, hlc::unpack(bs->hlc_first + idx, dk->node_id),
                          static_cast<std::uint32_t>(sizeof(Resp)), static_cast<std::uint16_t>(dk->slot + 1),
                          static_cast<std::uint8_t>(Priority::Normal),
                          static_cast<std::uint8_t>(kEnvelopeResponse | ((Traits::has_response && emit) ? 0 : kEnvelopeSkip))};
        write_response(slot, re, resp);
        }
      }
      record_latency_warp(dk, bs, timed, stamp);  // every handler thread (whole warps) gets here
    }
    handler_barrier(hthreads);

    // ---- the leaders release input and publish output ------------------------------------
    if (tid == 0) {
      if (!block0) {
        __threadfence();
        atomicAdd(&w->batch_done, 1u);  // block 0 waits for every block
      } else {
        if (grid > 1) {
          while (*reinterpret_cast<volatile std::uint32_t*>(&w->batch_done) != grid - 1) __nanosleep(50);
          __threadfence();
          w->batch_done = 0;
        }
        const std::uint64_t next = bs->start + n;
        if (!actor) {
          processed += n;
          bs->emitted = Traits::has_response ? n : 0;
        }
        if (!actor && *reinterpret_cast<volatile std::uint32_t*>(&w->fault) != 0) bs->emitted = 0;  // a faulted batch sends nothing
        // One fence, then relaxed stores: each store after the fence is a release of
        // everything before it (cumulative: every handler thread's slot writes, ordered
        // before this thread by the barrier above, and the input slots this batch read).
        // The response tail goes first (the host is waiting for it), then the input head.
        // The tail store pairs with the host consumer's acquire in RingConsumer::available,
        // the head store with the host producer's acquire in RingProducer::reserve; a batch
        // from a K2K ring with nothing for the host needs only device scope.
        if (bs->emitted || source == 0)
          asm volatile("fence.acq_rel.sys;" ::: "memory");
        else
          asm volatile("fence.acq_rel.gpu;" ::: "memory");
        if (bs->emitted) {
          out.publish_after_fence(bs->emitted);
          bs->emitted = 0;
        }
        if (dk->pull_mode) dev_release_pulled(bs, true);  // slots the handler pulled: after the fence above
        if (source == 0) {
          in_head = next;
          store_relaxed(&dk->input.indices->head, next);
        } else {
          bs->in_heads[source - 1] = next;
          store_relaxed(&bs->in_routes[source - 1].view.indices->head, next);
        }
        bs->staged = 0;
        dirty = true;
        if ((++batches & 31u) == 0) {
          flush_telemetry(dk, bs, processed, in_head);
          dirty = false;
        }
      }
    }
  }

  // ---- exit: the last block out reports termination --------------------------------------
  if (tid == 0) {
    if (block0) {
      if (grid > 1) {  // release blocks still waiting for an epoch
        w->stop = 1;
        store_release<Scope::Device>(&w->batch_epoch, ++epoch);
      }
      store_release<Scope::Block>(&bs->exit, 1u);  // the poller leaves
      flush_telemetry(dk, bs, processed, in_head);
      const std::uint32_t fault = *reinterpret_cast<volatile std::uint32_t*>(&w->fault);
      if (fault != 0) {
        store_release<Scope::System>(&control->last_error, fault);
        store_relaxed(&dk->telemetry->last_error, fault);
      }
    }
    __threadfence_system();
    if (atomicAdd(&w->exited_blocks, 1u) == grid - 1)
      store_release<Scope::System>(&control->has_terminated, 1u);  // host: wait()/check_health()
  }
}

template <class H>
void cuda_init_state(void* host_state) {
  const auto s = HandlerTraits<H>::initial_state();
  memcpy(host_state, &s, sizeof s);
}

template <class H>
int cuda_launch(const CudaLaunch& l) {
  auto* stream = static_cast<cudaStream_t>(l.stream);
  if (l.cooperative) {
    const DeviceKernel* arg = l.kernel;
    void* args[] = {&arg};
    const void* fn = l.wide ? reinterpret_cast<const void*>(&rk_persistent<H, true>)
                            : reinterpret_cast<const void*>(&rk_persistent<H, false>);
    return static_cast<int>(
        cudaLaunchCooperativeKernel(fn, dim3(l.grid), dim3(l.threads), args, l.shared_bytes, stream));
  }
  if (l.wide)
    rk_persistent<H, true><<<l.grid, l.threads, l.shared_bytes, stream>>>(l.kernel);
  else
    rk_persistent<H, false><<<l.grid, l.threads, l.shared_bytes, stream>>>(l.kernel);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace ringkernel::detail

namespace ringkernel::cuda {

/// The CUDA build of handler H (one per handler type).
template <class H>
const detail::CudaProgram& program_of() {
  using State = typename HandlerTraits<H>::State;
  static const detail::CudaProgram program{detail::cuda_backend_plugin(),
                                           reinterpret_cast<const void*>(&detail::rk_persistent<H, false>),
                                           reinterpret_cast<const void*>(&detail::rk_persistent<H, true>),
                                           static_cast<std::uint32_t>(sizeof(State)),
                                           static_cast<std::uint32_t>(alignof(State)),
                                           &detail::cuda_init_state<H>,
                                           &detail::cuda_launch<H>};
  return program;
}

}  // namespace ringkernel::cuda
