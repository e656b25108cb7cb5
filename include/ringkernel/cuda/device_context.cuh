// ringkernel/cuda/device_context.cuh — RingContext for CUDA translation units: in the
// device pass the CUDA implementation, in the host pass the CPU backend's (the same
// handler source is compiled for both). Included by context.hpp under nvcc only.
#pragma once

#include <cuda_runtime.h>

#include "ringkernel/cuda/device_kernel.hpp"

namespace ringkernel::detail {

/// Per-block hints for one outbound K2K ring (shared memory): values a thread of this block
/// wrote or acquired. When the block is the ring's only producer they spare the sender two
/// L2 round trips per send (the claim word and the consumer's head need not be loaded, and
/// the tail need not be checked); a stale hint costs a retry, never a wrong result.
struct RouteHint {
  std::uint64_t claim;  ///< end of this block's last claim: the expected value of the next CAS
  std::uint64_t head;   ///< a consumer head acquired by this block (release/acquire, CTA scope)
  std::uint64_t tail;   ///< the last tail this block published (release/acquire, CTA scope)
};

/// Thread 0's last publish route (shared memory). Routing tables are immutable and each
/// version has memory of its own that is never reused, so the table's address and the
/// topic identify an entry: a publish to the same topic under the same table finds its
/// route here after one load of the table word, instead of a chain of dependent loads
/// through the table in device memory.
struct PublishCache {
  const DeviceTopicTable* table;
  std::uint64_t topic;
  const DeviceTopicEntry* entry;  ///< null: the topic has no entry in that table
  std::uint64_t type;
  std::uint32_t size;
  std::uint32_t count;
  std::uint32_t host_too;
  std::uint32_t version;
  std::uint32_t valid;
  std::uint32_t reserved;
  DeviceTopicSub sub0;  ///< entry->subs[0]
  RouteHint hint;       ///< this block's view of sub0's inbox (several producers: the CAS decides)
};

/// Per-block bookkeeping in shared memory (the leader warp's mirror of the host words, the
/// cached K2K routes, the batch handed to the handler threads).
struct BlockShared {
  // written by the poller warp (release, CTA scope), read by the leader
  std::uint64_t host_tail;
  std::uint32_t active;
  std::uint32_t terminate;
  std::uint32_t out_count_seen;
  std::uint32_t in_count_seen;
  std::uint32_t exit;          // leader -> poller: leave
  std::uint64_t actor_cmd;     // latest actor pool command the poller saw
  std::uint32_t fault;         // first ctx.fail code of this block
  std::uint32_t actor_fault;   // actor pools: first ctx.fail code of the current message's actor
  // The express line (poller -> warp 0, a seqlock): xbuf holds the data words of the
  // message whose express::flag_of(position) is xseq (0 while the poller rewrites xbuf).
  std::uint32_t xseq;
  std::uint32_t xbuf[express::kWords];
  // leader-owned
  std::uint32_t out_count;
  std::uint32_t in_count;
  std::uint32_t cmd;           // LoopCommand
  std::uint32_t n;
  std::uint32_t source;        // 0 host, r + 1 inbound route r
  std::uint32_t emitted;
  std::uint64_t start;         // first input position of the batch
  std::uint64_t out_base;      // first output position of the batch
  std::uint64_t hlc_first;     // parallel mode: packed HLC of the batch's first response
  std::uint64_t hlc_local;     // one-block kernels: the kernel clock lives here (shared-memory atomics)
  std::uint64_t hlc_seen;      // one-block kernels: the latest stamp received, merged by the next tick
  std::uint64_t actor_done;    // last actor command carried out (leader)
  std::uint64_t actor_exec;    // the command being carried out (leader -> handler threads)
  std::uint64_t* hlc;          // &hlc_local (one block) or &DeviceWork::hlc (parallel, several blocks)
  std::uint64_t dropped;       // ctx.count_dropped and rejected slots
  std::uint64_t lat_total;
  std::uint64_t lat_min;
  std::uint64_t lat_max;
  RouteEntry out_routes[kDeviceMaxRoutes];
  RouteHint out_hints[kDeviceMaxRoutes];
  RouteEntry in_routes[kDeviceMaxRoutes];
  std::uint64_t in_heads[kDeviceMaxRoutes];
  std::uint32_t in_unreleased[kDeviceMaxRoutes];  // pull mode: slots taken but not yet given back to the sender
  std::uint32_t pull_idle;                        // pull mode: empty k2k_try_receive calls in a row
  std::uint32_t staged;                           // actor mode: the leader staged the batch's message (K2K express)
  PublishCache pub;                               // thread 0's last publish route
  DeviceKernel kernel;         // copy of the kernel's description (constant after launch)
};

// Device helpers (declared in both passes: __global__ bodies are parsed by the host pass).
__device__ inline std::uint64_t dev_globaltimer_ns() {
  std::uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ inline std::uint64_t dev_wall_us(const DeviceKernel* dk) {
  return static_cast<std::uint64_t>(static_cast<std::int64_t>(dev_globaltimer_ns() / 1000) + dk->clock_offset_us);
}
// 64-bit words that live in shared memory but are reached through generic pointers (the
// BlockShared travels as void* in RingContext): a generic 64-bit CAS on shared memory is
// emulated by the compiler and costs several hundred ns, so these name the space.
__device__ inline std::uint32_t shared_addr(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}
__device__ inline unsigned long long shared_cas64(const void* p, unsigned long long expect, unsigned long long desired) {
  unsigned long long old;
  asm volatile("atom.shared.cas.b64 %0, [%1], %2, %3;" : "=l"(old) : "r"(shared_addr(p)), "l"(expect), "l"(desired) : "memory");
  return old;
}
/// Relaxed (morally strong: volatile is relaxed at system scope in PTX) shared-memory load / store.
__device__ inline unsigned long long shared_volatile_load64(const void* p) {
  unsigned long long v;
  asm volatile("ld.volatile.shared.u64 %0, [%1];" : "=l"(v) : "r"(shared_addr(p)) : "memory");
  return v;
}
__device__ inline void shared_volatile_store64(void* p, unsigned long long v) {
  asm volatile("st.volatile.shared.u64 [%0], %1;" ::"r"(shared_addr(p)), "l"(v) : "memory");
}

// Device-memory words reached through generic pointers: a generic atomic must report
// whether the address was shared memory, so even one whose result is unused waits a full
// L2 round trip; the global forms below do not (red is fire-and-forget).
__device__ inline void global_add64(void* p, unsigned long long v) {
  asm volatile("red.relaxed.gpu.global.add.u64 [%0], %1;" ::"l"(__cvta_generic_to_global(p)), "l"(v) : "memory");
}
__device__ inline unsigned long long global_cas64(void* p, unsigned long long expect, unsigned long long desired) {
  unsigned long long old;
  asm volatile("atom.relaxed.gpu.global.cas.b64 %0, [%1], %2, %3;"
               : "=l"(old)
               : "l"(__cvta_generic_to_global(p)), "l"(expect), "l"(desired)
               : "memory");
  return old;
}
__device__ inline std::uint32_t shared_volatile_load32(const void* p) {
  std::uint32_t v;
  asm volatile("ld.volatile.shared.u32 %0, [%1];" : "=r"(v) : "r"(shared_addr(p)) : "memory");
  return v;
}

/// CAS on the kernel clock word: shared memory in actor mode, device memory in parallel mode.
__device__ inline unsigned long long hlc_cas(unsigned long long* p, unsigned long long expect, unsigned long long desired) {
  return __isShared(p) ? shared_cas64(p, expect, desired) : global_cas64(p, expect, desired);
}
__device__ inline unsigned long long hlc_load(const unsigned long long* p) {
  return __isShared(p) ? shared_volatile_load64(p) : *reinterpret_cast<const volatile unsigned long long*>(p);
}

/// The kernel's next `n` events (the first is returned). In a one-block kernel the clock
/// lives in shared memory and a receive is not merged at once: dev_hlc_observe records the
/// stamp in hlc_seen, and the tick merges it (next_merge with a stamp the clock already
/// passed is next_tick), so every event after a receive still orders after its stamp. The
/// two loops stay apart: one loop choosing the space per access cost ≈ 0.1 µs per send
/// (H200 ping-pong, same lease).
__device__ inline std::uint64_t dev_hlc_tick(const DeviceKernel* dk, const BlockShared* bs, std::uint32_t n = 1) {
  unsigned long long* p = reinterpret_cast<unsigned long long*>(bs->hlc);
  const std::uint64_t now = dev_wall_us(dk);
  if (__isShared(p)) {
    const std::uint64_t seen = shared_volatile_load64(&bs->hlc_seen);
    unsigned long long prev = shared_volatile_load64(p);
    for (;;) {
      const std::uint64_t first = hlc::next_merge(prev, seen, now);
      const unsigned long long got = shared_cas64(p, prev, first + (n ? n - 1 : 0));
      if (got == prev) return first;
      prev = got;
    }
  }
  unsigned long long prev = hlc_load(p);
  for (;;) {
    const std::uint64_t first = hlc::next_tick(prev, now);
    const unsigned long long got = global_cas64(p, prev, first + (n ? n - 1 : 0));
    if (got == prev) return first;
    prev = got;
  }
}
/// Merges `remote` into the clock now; returns the clock's new value.
__device__ inline std::uint64_t dev_hlc_merge(const DeviceKernel* dk, const BlockShared* bs, const HlcTimestamp& remote) {
  unsigned long long* p = reinterpret_cast<unsigned long long*>(bs->hlc);
  const std::uint64_t now = dev_wall_us(dk);
  const std::uint64_t r = hlc::pack(remote);
  unsigned long long prev = hlc_load(p);
  for (;;) {
    const std::uint64_t next = hlc::next_merge(prev, r, now);
    const unsigned long long seen = hlc_cas(p, prev, next);
    if (seen == prev) return next;
    prev = seen;
  }
}
/// A received stamp: every later event of this kernel orders after it. One-block kernels
/// record it with a fire-and-forget shared max (the next tick merges it: no clock read and
/// no compare-and-swap on the receive path); kernels whose blocks share the clock merge now.
__device__ inline void dev_hlc_observe(const DeviceKernel* dk, BlockShared* bs, const HlcTimestamp& remote) {
  if (__isShared(bs->hlc)) {
    asm volatile("red.shared.max.u64 [%0], %1;" ::"r"(shared_addr(&bs->hlc_seen)), "l"(hlc::pack(remote)) : "memory");
    return;
  }
  dev_hlc_merge(dk, bs, remote);
}
/// The clock's latest event, with any received stamp not yet merged merged now.
__device__ inline std::uint64_t dev_hlc_now(const DeviceKernel* dk, const BlockShared* bs) {
  const unsigned long long* p = reinterpret_cast<const unsigned long long*>(bs->hlc);
  const std::uint64_t clock = hlc_load(p);
  if (!__isShared(p)) return clock;
  const std::uint64_t seen = shared_volatile_load64(&bs->hlc_seen);
  return seen < clock ? clock : dev_hlc_merge(dk, bs, hlc::unpack(seen, 0));
}
__device__ inline void dev_fail(const DeviceKernel* dk, BlockShared* bs, std::uint32_t code) {
  atomicCAS(&bs->fault, 0u, code);
  atomicCAS(&dk->work->fault, 0u, code);
}

/// Stores `bytes` (a multiple of 16, both sides 16-byte aligned) from a thread-local
/// buffer into a slot with 16-byte stores (plain loads: the source is the thread's own).
__device__ inline void dev_store16(void* dst, const void* local, std::uint32_t bytes) {
  auto* d = static_cast<uint4*>(dst);
  const auto* s = static_cast<const uint4*>(local);
  for (std::uint32_t i = 0; i < bytes / 16; ++i) d[i] = s[i];
}

/// Stores a payload after a slot's envelope (16-byte aligned destination) with the widest
/// accesses the source's alignment allows.
__device__ inline void dev_store_payload(std::byte* dst, const void* payload, std::uint32_t size) {
  const auto* p = static_cast<const unsigned char*>(payload);
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::uint32_t i = 0;
  if ((a & 15u) == 0) {
    for (; i + 16 <= size; i += 16) *reinterpret_cast<uint4*>(dst + i) = *reinterpret_cast<const uint4*>(p + i);
  } else if ((a & 7u) == 0) {
    for (; i + 8 <= size; i += 8)
      *reinterpret_cast<unsigned long long*>(dst + i) = *reinterpret_cast<const unsigned long long*>(p + i);
  } else if ((a & 3u) == 0) {
    for (; i + 4 <= size; i += 4) *reinterpret_cast<unsigned*>(dst + i) = *reinterpret_cast<const unsigned*>(p + i);
  }
  for (; i < size; ++i) reinterpret_cast<unsigned char*>(dst)[i] = p[i];
}

/// Copies `bytes` (a multiple of 16, both sides 16-byte aligned) with 16-byte accesses,
/// loading through volatile (the source is a slot another agent wrote).
__device__ inline void dev_copy16(void* dst, const void* src, std::uint32_t bytes) {
  auto* d = static_cast<uint4*>(dst);
  const auto* s = static_cast<const volatile uint4*>(src);
  for (std::uint32_t i = 0; i < bytes / 16; ++i) {
    const uint4 v = const_cast<const uint4&>(s[i]);
    d[i] = v;
  }
}

/// Reads a route entry the host appended (mapped memory, volatile: never from a stale line).
__device__ inline void copy_route(RouteEntry& dst, const RouteEntry* src) {
  const volatile std::uint64_t* s = reinterpret_cast<const volatile std::uint64_t*>(src);
  std::uint64_t* d = reinterpret_cast<std::uint64_t*>(&dst);
  for (unsigned i = 0; i < sizeof(RouteEntry) / 8; ++i) d[i] = s[i];
}

/// Outbound route `i` as the host wrote it (mapped memory, acquire): the slow path for a
/// route the leader has not cached yet (connect() just happened). The host writes the
/// entry, then the count with a release store.
__device__ inline bool dev_route_from_table(const DeviceKernel* dk, std::uint32_t i, RouteEntry& out) {
  if (i >= kDeviceMaxRoutes || i >= load_acquire<Scope::System>(&dk->routes->out_count)) return false;
  copy_route(out, &dk->routes->out[i]);
  return true;
}

/// The K2K express line: a message sent alone (one lane, one message) of up to 16 bytes
/// also goes into its ring's producer line (RingIndices::express, the layout of queue.hpp
/// with a K2K header): type (2 words), correlation id (2), the packed HLC stamp (2) and the
/// sender's node id (2), then the payload. A receiving actor loads the line with its poll of the tail and
/// can take the message before the sender's fence and tail store: one L2 round trip and the
/// fence off the hop. Several senders racing on the line leave mixed flags: the receiver
/// then reads the slot.
inline constexpr std::uint32_t kK2KExpressHeader = 8;
inline constexpr std::uint32_t kK2KExpressMaxPayload = (express::kWords - kK2KExpressHeader) * 4;

/// The 64-bit value in data words i and i + 1 of a loaded express line (their low halves;
/// the flags are the high ones).
__device__ inline std::uint64_t express_word64(const std::uint64_t* line, std::uint32_t i) {
  return (line[i] & 0xffffffffull) | (line[i + 1] << 32);
}

/// Stores the first `words` data words `d` of an express line with their flag: 16-byte
/// stores whose 8-byte elements are each single-copy atomic (queue.hpp, namespace express).
/// System scope for a line the host reads; GPU scope for a K2K ring (both ends on this GPU).
template <Scope S>
__device__ inline void dev_store_express(RingIndices* ix, std::uint32_t flag32, const std::uint32_t (&d)[express::kWords],
                                         std::uint32_t words) {
  const std::uint64_t flag = std::uint64_t{flag32} << 32;
#pragma unroll
  for (std::uint32_t i = 0; i < express::kWords; i += 2)
    if (i < words) {
      if constexpr (S == Scope::System)
        asm volatile("st.volatile.global.v2.u64 [%0], {%1, %2};" ::"l"(__cvta_generic_to_global(&ix->express[i])),
                     "l"(flag | d[i]), "l"(flag | d[i + 1])
                     : "memory");
      else
        asm volatile("st.relaxed.gpu.global.v2.u64 [%0], {%1, %2};" ::"l"(__cvta_generic_to_global(&ix->express[i])),
                     "l"(flag | d[i]), "l"(flag | d[i + 1])
                     : "memory");
    }
}

__device__ inline void dev_k2k_express_write(RingIndices* ix, std::uint64_t pos, TypeId type, std::uint64_t corr,
                                             std::uint64_t packed_stamp, std::uint64_t node, const void* payload,
                                             std::uint32_t size) {
  std::uint32_t d[express::kWords] = {};
  memcpy(&d[0], &type, 8);
  memcpy(&d[2], &corr, 8);
  memcpy(&d[4], &packed_stamp, 8);
  memcpy(&d[6], &node, 8);
  memcpy(&d[kK2KExpressHeader], payload, size);
  dev_store_express<Scope::Device>(ix, express::flag_of(pos), d, kK2KExpressHeader + (size + 3) / 4);
}

/// Why a K2K ring has no room: its consumer is gone, or it is full (off the fast path).
__device__ inline Status dev_full_status(const RingIndices* ix) {
  return load_acquire<Scope::Device>(&ix->consumer_closed) != 0 ? Status::Closed : Status::QueueFull;
}

/// Claims `total` positions of a device K2K ring for the lanes in `peers` (lane `offset`
/// positions into the run) and sends this lane's `n` messages (`size` bytes each, back to
/// back at `payload`): one lane claims the run with one CAS (on the block's claim word in
/// shared memory when `sole` says the block is the ring's only producer; else on the
/// ring's claim word) and takes its HLC stamps with one tick, every lane writes its
/// slots, and the run is
/// published with one fence and one store of the tail, in claim order (a run waits until
/// every earlier claim is published). The consumer still sees single-writer head/tail
/// words. `hint` (a cached route's RouteHint, or null) lets a block that is the ring's only
/// producer claim with one CAS and publish without loading the ring's words first.
__device__ inline Status dev_k2k_run(const DeviceKernel* dk, const BlockShared* bs, const RingView& v, TypeId type,
                                     const void* payload, std::uint32_t size, std::uint32_t n, std::uint64_t corr,
                                     RouteHint* hint, bool sole, unsigned peers, std::uint32_t offset,
                                     std::uint32_t total) {
  RingIndices* ix = v.indices;
  const unsigned lane = threadIdx.x & 31u;
  const unsigned first = __ffs(peers) - 1;
  const bool alone = peers == (1u << lane);
  std::uint64_t base = 0, stamp = 0;
  unsigned status = static_cast<unsigned>(Status::Ok);
  bool in_order = false;
  if (lane == first) {
    unsigned long long* claim = reinterpret_cast<unsigned long long*>(&ix->claim);
    bool claimed = false;
    std::uint64_t c = 0, head = 0;
    if (hint && sole) {
      // This block is the ring's only producer (a K2K route of a one-block kernel): the
      // claim word that counts is the hint's, in shared memory (a shared CAS, not a round
      // trip to L2).
      // A ring used before this block cached the route starts from the ring's claim word.
      if (shared_volatile_load64(&hint->claim) == 0) (void)shared_cas64(&hint->claim, 0, load_relaxed<Scope::Device>(&ix->claim));
      for (;;) {
        c = shared_volatile_load64(&hint->claim);
        head = shared_volatile_load64(&hint->head);
        const std::uint64_t published = shared_volatile_load64(&hint->tail);
        if (c + total - head > v.capacity) {
          // Looks full: refresh the consumer's head (acquire), share it (release), look again.
          head = load_acquire<Scope::Device>(&ix->head);
          asm volatile("fence.acq_rel.cta;" ::: "memory");
          shared_volatile_store64(&hint->head, head);
          if (c + total - head > v.capacity) {
            status = static_cast<unsigned>(dev_full_status(ix));
            break;
          }
        }
        if (shared_cas64(&hint->claim, c, c + total) == c) {
          base = c;
          in_order = published == c;  // this block published up to c: nothing before us is unwritten
          claimed = true;
          // Acquire for the relaxed hint reads above (their writers fenced before storing).
          asm volatile("fence.acq_rel.cta;" ::: "memory");
          // The ring's own word follows, for anyone who looks (not on any claim path here).
          asm volatile("st.relaxed.gpu.u64 [%0], %1;" ::"l"(claim), "l"(c + total) : "memory");
          break;
        }
      }
      if (claimed) stamp = dev_hlc_tick(dk, bs, total);  // the run's stamps: stamp .. stamp + total - 1
    } else {  // several blocks may produce into the ring: its claim word in L2 decides
      if (hint) {  // fast path: the block's own view of the ring, one CAS
        // Relaxed reads of the hints; the CTA fence after the CAS completes the acquire
        // pattern before any slot is written (hints are stored after a fence).
        c = shared_volatile_load64(&hint->claim);
        head = shared_volatile_load64(&hint->head);
        const std::uint64_t published = shared_volatile_load64(&hint->tail);
        if (c + total - head <= v.capacity) {
          const unsigned long long seen = global_cas64(claim, c, c + total);
          claimed = seen == c;
          if (claimed) {
            base = c;
            in_order = published == c;  // this block published up to c, and nobody claimed since
            asm volatile("fence.acq_rel.cta;" ::: "memory");
          }
        }
      }
      if (!claimed) {
        // claim and tail (relaxed) and head (acquire, issued last so all three are in flight
        // together: one L2 round trip), then one CAS per attempt.
        c = load_relaxed<Scope::Device>(&ix->claim);
        std::uint64_t tail = load_relaxed<Scope::Device>(&ix->tail);
        head = load_acquire<Scope::Device>(&ix->head);
        for (;;) {
          if (c + total - head > v.capacity) {
            // Full, or a consumer that is gone: told apart only here, off the fast path.
            status = static_cast<unsigned>(dev_full_status(ix));
            break;
          }
          const unsigned long long seen = global_cas64(claim, c, c + total);
          if (seen == c) {
            base = c;
            in_order = tail == c;  // nobody before us is still writing
            break;
          }
          c = seen;
          tail = load_relaxed<Scope::Device>(&ix->tail);
          head = load_acquire<Scope::Device>(&ix->head);
        }
        if (hint) {  // off the fast path: a release (fence, then the store)
          asm volatile("fence.acq_rel.cta;" ::: "memory");
          shared_volatile_store64(&hint->head, head);
        }
      }
      if (status == static_cast<unsigned>(Status::Ok)) {
        if (hint) shared_volatile_store64(&hint->claim, base + total);
        stamp = dev_hlc_tick(dk, bs, total);  // the run's stamps: stamp .. stamp + total - 1
      }
    }
  }
  if (!alone) {  // share the claim with the run's other lanes (a lone sender has it already)
    status = __shfl_sync(peers, status, first);
    base = __shfl_sync(peers, static_cast<unsigned long long>(base), first);
    stamp = __shfl_sync(peers, static_cast<unsigned long long>(stamp), first);
  }
  if (status != static_cast<unsigned>(Status::Ok)) return static_cast<Status>(status);
  const auto* p = static_cast<const unsigned char*>(payload);
  for (std::uint32_t k = 0; k < n; ++k) {
    alignas(16) unsigned char buf[sizeof(Envelope)];
    Envelope env{type, corr, hlc::unpack(stamp + offset + k, dk->node_id), size, static_cast<std::uint16_t>(dk->slot + 1),
                 static_cast<std::uint8_t>(Priority::Normal), kEnvelopeK2K};
    memcpy(buf, &env, sizeof env);
    std::byte* slot = v.slot(base + offset + k);
    dev_store16(slot, buf, sizeof env);
    dev_store_payload(slot + sizeof env, p + std::size_t{k} * size, size);
    if (alone && total == 1 && size <= kK2KExpressMaxPayload && dk->k2k_express)
      dev_k2k_express_write(ix, base, type, corr, stamp + offset + k, dk->node_id, p, size);
  }
  __syncwarp(peers);  // every lane's slots are written before the run is published
  if (lane == first) {
    if (!in_order)
      while (load_acquire<Scope::Device>(&ix->tail) != base) __nanosleep(20);
    // One fence, then the tail (pairs with the consumer's acquire) and the block's hint:
    // both stores follow the fence, so each is a release of the run's slot writes.
    asm volatile("fence.acq_rel.gpu;" ::: "memory");
    asm volatile("st.relaxed.gpu.u64 [%0], %1;" ::"l"(&ix->tail), "l"(base + total) : "memory");
    if (hint) shared_volatile_store64(&hint->tail, base + total);
  }
  __syncwarp(peers);
  return Status::Ok;
}

/// Multi-producer send of this lane's `n` messages into a device K2K ring. Lanes of a warp
/// sending to the same ring are aggregated (the warp-aggregated-atomics pattern) into one
/// run; when their messages together exceed the ring's capacity, the lanes claim one
/// after another instead (each lane's batch alone must fit).
__device__ inline Status dev_k2k_push(const DeviceKernel* dk, const BlockShared* bs, const RingView& v, TypeId type,
                                      const void* payload, std::uint32_t size, std::uint64_t corr,
                                      RouteHint* hint = nullptr, std::uint32_t n = 1, bool sole = false) {
  if (size + sizeof(Envelope) > v.slot_size || n > v.capacity) return Status::TooLarge;
  if (n == 0) return Status::Ok;
  const unsigned active = __activemask();
  const unsigned lane = threadIdx.x & 31u;
  // A lone lane (an actor's thread 0, say) has no peers to find: the match is skipped.
  const unsigned peers =
      active == (1u << lane) ? active : __match_any_sync(active, reinterpret_cast<unsigned long long>(v.indices));
  if (peers == (1u << lane)) return dev_k2k_run(dk, bs, v, type, payload, size, n, corr, hint, sole, peers, 0, n);
  // Several lanes: this lane's place in the run, and the run's length.
  std::uint32_t offset = 0, total = 0;
  for (unsigned m = peers; m != 0; m &= m - 1) {
    const unsigned src = __ffs(m) - 1;
    const std::uint32_t ni = __shfl_sync(peers, n, src);
    if (src < lane) offset += ni;
    total += ni;
  }
  if (total <= v.capacity) return dev_k2k_run(dk, bs, v, type, payload, size, n, corr, hint, sole, peers, offset, total);
  Status result = Status::Ok;
  for (unsigned m = peers; m != 0; m &= m - 1) {
    if (lane == __ffs(m) - 1) result = dev_k2k_run(dk, bs, v, type, payload, size, n, corr, hint, sole, 1u << lane, 0, n);
    __syncwarp(peers);
  }
  return result;
}

/// The counters a K2K send leaves behind (fire-and-forget reductions).
__device__ inline void dev_count_send(DeviceWork* w, Status s, std::uint32_t count) {
  if (s == Status::Ok) global_add64(&w->k2k_sent, count);
  if (s == Status::Closed) global_add64(&w->dead_letters, count);
}

/// A send over a route connected after the leader last refreshed its cache: found in the
/// host's table from entry `first` on, sent without a hint. NoRoute when there is none.
__device__ __noinline__ inline Status dev_k2k_send_uncached(const DeviceKernel* dk, const BlockShared* bs,
                                                           std::uint32_t first, std::uint32_t dest, TypeId type,
                                                           const void* payload, std::uint32_t size, std::uint64_t corr,
                                                           std::uint32_t count) {
  RouteEntry fresh;
  for (std::uint32_t i = first; dev_route_from_table(dk, i, fresh); ++i)
    if (fresh.peer == dest) return dev_k2k_push(dk, bs, fresh.view, type, payload, size, corr, nullptr, count, false);
  return Status::NoRoute;
}

/// The routing table's entry for `topic`, or null (open addressing, linear probing).
__device__ inline const DeviceTopicEntry* dev_find_topic(const DeviceTopicTable* table, std::uint64_t topic) {
  const auto* entries = reinterpret_cast<const DeviceTopicEntry*>(table + 1);
  const std::uint32_t mask = table->capacity - 1;
  std::uint32_t i = static_cast<std::uint32_t>(topic ^ (topic >> 32)) & mask;
  for (std::uint32_t n = 0; n <= mask; ++n, i = (i + 1) & mask) {
    const std::uint64_t t = entries[i].topic;
    if (t == topic) return &entries[i];
    if (t == 0) return nullptr;
  }
  return nullptr;
}

/// True when a K2K-style ring has no free slot (a racy view: concurrent producers may
/// take the last slot after this says there is one).
__device__ inline bool dev_ring_full(const RingView& v) {
  const std::uint64_t claimed = load_relaxed<Scope::Device>(&v.indices->claim);
  const std::uint64_t head = load_acquire<Scope::Device>(&v.indices->head);
  return claimed + 1 - head > v.capacity;
}

/// Pushes one publish into every device subscriber's inbox; a copy a full inbox cannot
/// take is counted as dropped (a drop policy, or a lost race for the last slot).
__device__ inline void dev_deliver_publish(const DeviceKernel* dk, const BlockShared* bs, const DeviceTopicEntry& route,
                                           TypeId type, const void* payload, std::uint32_t size) {
  std::uint64_t delivered = 0, dropped = 0;
  for (std::uint32_t i = 0; i < route.count; ++i) {
    if (dev_k2k_push(dk, bs, route.subs[i].view, type, payload, size, 0) == Status::Ok) ++delivered;
    else ++dropped;
  }
  if (delivered) global_add64(&dk->work->pub_delivered, delivered);
  if (dropped) global_add64(&dk->work->pub_dropped, dropped);
}

/// Pull mode: gives the slots thread 0 has taken from its inbound rings back to their
/// senders (one fence, then each ring's head). k2k_try_receive defers this until it has
/// found every inbox empty 32 times in a row (or a quarter of a ring is held), and the
/// leader does it after each batch, so a delivery's critical path carries no fence.
__device__ inline void dev_release_pulled(BlockShared* bs, bool fenced) {
  bool any = false;
  for (std::uint32_t r = 0; r < bs->in_count; ++r) {
    if (bs->in_unreleased[r] == 0) continue;
    if (!fenced && !any) asm volatile("fence.acq_rel.gpu;" ::: "memory");  // the slot reads before the heads
    any = true;
    store_relaxed(&bs->in_routes[r].view.indices->head, bs->in_heads[r]);
    bs->in_unreleased[r] = 0;
  }
}

}  // namespace ringkernel::detail

namespace ringkernel {

// The definitions below serve both passes: the device pass uses the CUDA path, the host
// pass (the same .cu compiled for the CPU backend) the CPU backend's functions.

RK_HOST_DEVICE inline void RingContext::sync_threads() noexcept {
#if RK_DEVICE_PASS
  if (mode_ == KernelMode::Parallel) {
    detail::dev_fail(device_, static_cast<detail::BlockShared*>(device_block_),
                     static_cast<std::uint32_t>(DeviceError::BarrierInParallel));
    return;
  }
  if (block_dim_ <= kWarpSize) {
    __syncwarp(warp_lane_mask());
  } else {
    asm volatile("barrier.sync 1, %0;" ::"r"(block_dim_) : "memory");  // handler threads only
  }
#else
  detail::cpu_sync_threads(cpu_, thread_);
#endif
}

RK_HOST_DEVICE inline void RingContext::sync_warp() noexcept {
#if RK_DEVICE_PASS
  if (mode_ == KernelMode::Parallel) {
    detail::dev_fail(device_, static_cast<detail::BlockShared*>(device_block_),
                     static_cast<std::uint32_t>(DeviceError::BarrierInParallel));
    return;
  }
  __syncwarp(warp_lane_mask());
#else
  detail::cpu_sync_warp(cpu_, thread_);
#endif
}

RK_HOST_DEVICE inline std::uint32_t RingContext::warp_ballot(bool pred) noexcept {
#if RK_DEVICE_PASS
  if (mode_ == KernelMode::Parallel) {
    detail::dev_fail(device_, static_cast<detail::BlockShared*>(device_block_),
                     static_cast<std::uint32_t>(DeviceError::BarrierInParallel));
    return pred ? 1u : 0u;
  }
  return __ballot_sync(warp_lane_mask(), pred);
#else
  return detail::cpu_warp_ballot(cpu_, thread_, pred);
#endif
}

RK_HOST_DEVICE inline std::uint64_t RingContext::warp_exchange(std::uint64_t v, std::uint32_t src_lane) noexcept {
#if RK_DEVICE_PASS
  if (mode_ == KernelMode::Parallel) {
    detail::dev_fail(device_, static_cast<detail::BlockShared*>(device_block_),
                     static_cast<std::uint32_t>(DeviceError::BarrierInParallel));
    return v;
  }
  return __shfl_sync(warp_lane_mask(), static_cast<unsigned long long>(v), static_cast<int>(src_lane));
#else
  return detail::cpu_warp_exchange(cpu_, thread_, v, src_lane);
#endif
}

RK_HOST_DEVICE inline HlcTimestamp RingContext::hlc_tick() noexcept {
#if RK_DEVICE_PASS
  return hlc::unpack(detail::dev_hlc_tick(device_, static_cast<const detail::BlockShared*>(device_block_)),
                     device_->node_id);
#else
  return detail::cpu_hlc_tick(cpu_);
#endif
}

RK_HOST_DEVICE inline HlcTimestamp RingContext::hlc_now() noexcept {
#if RK_DEVICE_PASS
  return hlc::unpack(detail::dev_hlc_now(device_, static_cast<const detail::BlockShared*>(device_block_)),
                     device_->node_id);
#else
  return detail::cpu_hlc_now(cpu_);
#endif
}

RK_HOST_DEVICE inline std::uint32_t RingContext::k2k_route_count() const noexcept {
#if RK_DEVICE_PASS
  const std::uint32_t cached = static_cast<const detail::BlockShared*>(device_block_)->out_count;
  return cached != 0 ? cached : load_acquire<Scope::System>(&device_->routes->out_count);
#else
  return detail::cpu_k2k_route_count(cpu_);
#endif
}

RK_HOST_DEVICE inline std::uint32_t RingContext::k2k_route(std::uint32_t i) const noexcept {
#if RK_DEVICE_PASS
  const auto* bs = static_cast<const detail::BlockShared*>(device_block_);
  if (i < bs->out_count) return bs->out_routes[i].peer;
  detail::RouteEntry e;
  return detail::dev_route_from_table(device_, i, e) ? e.peer : ~0u;
#else
  return detail::cpu_k2k_route(cpu_, i);
#endif
}

RK_HOST_DEVICE inline Status RingContext::k2k_send_bytes(std::uint32_t dest, TypeId type, const void* payload,
                                                        std::uint32_t size, std::uint32_t count) noexcept {
#if RK_DEVICE_PASS
  const detail::DeviceKernel* dk = device_;
  auto* bs = static_cast<detail::BlockShared*>(device_block_);
  detail::DeviceWork* w = dk->work;
  if (dk->k2k_enabled) {
    // A route the leader has cached: its view and hint are in shared memory, and the send
    // reads them as such (no generic pointer that could also point at a local copy).
    const std::uint32_t cached = bs->out_count;
    for (std::uint32_t i = 0; i < cached; ++i)
      if (bs->out_routes[i].peer == dest) {
        const Status s = detail::dev_k2k_push(dk, bs, bs->out_routes[i].view, type, payload, size, msg_corr_,
                                              &bs->out_hints[i], count, dk->grid_size == 1);
        detail::dev_count_send(w, s, count);
        return s;
      }
    // Connected moments ago, not cached yet: the host's table (off the fast path).
    const Status s = detail::dev_k2k_send_uncached(dk, bs, cached, dest, type, payload, size, msg_corr_, count);
    if (s != Status::NoRoute) {
      detail::dev_count_send(w, s, count);
      return s;
    }
    if (dest < dk->directory_size) {
      const std::int64_t t = *reinterpret_cast<const volatile std::int64_t*>(&dk->tenants[dest]);
      if (t >= 0 && static_cast<std::uint64_t>(t) != dk->tenant_id) {
        detail::global_add64(&w->tenant_rejections, count);
        return Status::TenantMismatch;
      }
    }
  }
  detail::global_add64(&w->dead_letters, count);
  return Status::NoRoute;
#else
  return detail::cpu_k2k_send(cpu_, dest, type, payload, size, msg_corr_, count);
#endif
}

RK_HOST_DEVICE inline Status RingContext::k2k_try_receive_bytes(TypeId type, void* out, std::uint32_t size,
                                                               std::uint32_t* source) noexcept {
#if RK_DEVICE_PASS
  auto* bs = static_cast<detail::BlockShared*>(device_block_);
  if (threadIdx.x == 0) {
    // Thread 0 is the leader that owns the inbound cache: take routes the poller has seen
    // appear since the leader last looked (connect() waits until the leader has them, so
    // this only matters for a handler that has been running since before the connect).
    const std::uint32_t c = detail::shared_volatile_load32(&bs->in_count_seen);
    if (c != bs->in_count) asm volatile("fence.acq_rel.cta;" ::: "memory");  // acquire: pairs with the poller's release
    while (bs->in_count < c && bs->in_count < detail::kDeviceMaxRoutes) {
      detail::copy_route(bs->in_routes[bs->in_count], &device_->routes->in[bs->in_count]);
      bs->in_heads[bs->in_count] = 0;
      ++bs->in_count;
    }
  }
  for (std::uint32_t r = 0; r < bs->in_count; ++r) {
    const RingView& v = bs->in_routes[r].view;
    const std::uint64_t head = bs->in_heads[r];
    if (load_acquire<Scope::Device>(&v.indices->tail) == head) continue;  // pairs with dev_k2k_push
    const std::byte* slot = v.slot(head);
    Envelope env;
    memcpy(&env, slot, sizeof env);
    if (env.type_id != type || env.payload_size != size) continue;
    memcpy(out, slot + sizeof env, size);
    bs->in_heads[r] = head + 1;
    bs->pull_idle = 0;
    // The slot goes back to the sender later (dev_release_pulled), unless a quarter of the
    // ring is held already.
    if (++bs->in_unreleased[r] >= (v.capacity >= 4 ? v.capacity / 4 : 1u)) {
      store_release<Scope::Device>(&v.indices->head, head + 1);
      bs->in_unreleased[r] = 0;
    }
    detail::dev_hlc_observe(device_, bs, env.timestamp);
    if (source) *source = bs->in_routes[r].peer;
    return Status::Ok;
  }
  // Nothing to read: after a while of that, give the slots back (not at once: right after
  // a send, the reply may land while the fence runs).
  if (++bs->pull_idle >= 32) {
    bs->pull_idle = 0;
    detail::dev_release_pulled(bs, false);
  }
  return Status::QueueEmpty;
#else
  return detail::cpu_k2k_try_receive(cpu_, type, out, size, source);
#endif
}

RK_HOST_DEVICE inline Status RingContext::publish_bytes(std::uint64_t topic, TypeId type, const void* payload,
                                                      std::uint32_t size) noexcept {
#if RK_DEVICE_PASS
  // 1. Kernel subscribers on this GPU (the runtime's routing table) get the message straight
  //    into their publish inboxes (device rings): no host round trip.
  // 2. When anything else must see it (host subscribers, retention, kernels elsewhere), or
  //    the topic has no table entry, it goes to the kernel's publish ring (mapped memory):
  //    claim a slot (device-memory claim word), write it, publish in claim order with a
  //    system-scope release; the runtime's pump thread hands it to the broker
  //    (ringkernel/pubsub.hpp), telling it which subscriptions were served on the device.
  const detail::DeviceKernel* dk = device_;
  auto* bs = static_cast<detail::BlockShared*>(device_block_);
  detail::DeviceWork* w = dk->work;
  const RingView& v = dk->publish;
  if (size > detail::kPublishMaxPayload) return Status::TooLarge;
  const detail::DeviceTopicEntry* route = nullptr;
  std::uint32_t version = 0, count = 0, host_too = 0;
  const detail::DeviceTopicSub* sub0 = nullptr;
  detail::RouteHint* hint = nullptr;
  if (dk->topics) {
    const detail::DeviceTopicTable* table = reinterpret_cast<const detail::DeviceTopicTable*>(
        load_relaxed<Scope::Device>(reinterpret_cast<const std::uint64_t*>(dk->topics)));
    if (table) {
      detail::PublishCache& pc = bs->pub;
      const bool cached = threadIdx.x == 0 && pc.valid && pc.table == table && pc.topic == topic;
      if (cached) {
        route = pc.entry;
        version = pc.version;
        if (route && (pc.type != type || pc.size != size)) route = nullptr;  // the broker refuses and counts it
        count = pc.count;
        host_too = pc.host_too;
        sub0 = &pc.sub0;
        hint = &pc.hint;
      } else {
        route = detail::dev_find_topic(table, topic);
        version = table->version;
        if (threadIdx.x == 0) {  // remember it (thread 0 only: the cache has one writer)
          pc.valid = 1;
          pc.table = table;
          pc.topic = topic;
          pc.entry = route;
          pc.version = version;
          pc.hint = detail::RouteHint{};
          if (route) {
            pc.type = route->type;
            pc.size = route->size;
            pc.count = route->count;
            pc.host_too = route->host_too;
            pc.sub0 = route->subs[0];
            sub0 = &pc.sub0;
            hint = &pc.hint;
          }
        }
        if (route && (route->type != type || route->size != size)) route = nullptr;  // the broker refuses and counts it
        if (route) {
          count = route->count;
          host_too = route->host_too;
          if (!sub0) sub0 = &route->subs[0];
        }
      }
    }
  }
  if (route) {
    if (count == 1 && !host_too) {
      // One subscriber, nobody else: its inbox's own capacity check decides (a failed
      // claim has no side effect), so no separate look at the ring first.
      const Status s = detail::dev_k2k_push(dk, bs, sub0->view, type, payload, size, 0, hint);
      if (s == Status::QueueFull && sub0->backpressure) return Status::QueueFull;
      detail::global_add64(s == Status::Ok ? &w->pub_delivered : &w->pub_dropped, 1ull);
      detail::global_add64(&w->pub_device_only, 1ull);
      return Status::Ok;
    }
    // A full Backpressure subscriber refuses the publish before anyone gets a copy.
    for (std::uint32_t i = 0; i < route->count; ++i)
      if (route->subs[i].backpressure && detail::dev_ring_full(route->subs[i].view)) return Status::QueueFull;
    if (!host_too) {
      detail::dev_deliver_publish(dk, bs, *route, type, payload, size);
      detail::global_add64(&w->pub_device_only, 1ull);
      return Status::Ok;
    }
  }
  unsigned long long* claim = reinterpret_cast<unsigned long long*>(&w->pub_claim);
  std::uint64_t c = load_relaxed<Scope::Device>(&w->pub_claim);
  for (;;) {
    std::uint64_t head = load_relaxed<Scope::Device>(&w->pub_head_cache);
    if (c - head >= v.capacity) {
      head = load_acquire<Scope::System>(&v.indices->head);  // the pump's release
      atomicMax(reinterpret_cast<unsigned long long*>(&w->pub_head_cache), static_cast<unsigned long long>(head));
      if (c - head >= v.capacity) return Status::QueueFull;
    }
    const unsigned long long seen = detail::global_cas64(claim, c, c + 1);
    if (seen == c) break;
    c = seen;
  }
  if (route) detail::dev_deliver_publish(dk, bs, *route, type, payload, size);  // the slot is ours: no refusal now
  alignas(16) unsigned char buf[sizeof(Envelope)];
  const Envelope env{type, topic, hlc::unpack(detail::dev_hlc_tick(dk, bs), dk->node_id), size,
                     static_cast<std::uint16_t>(dk->slot + 1), static_cast<std::uint8_t>(Priority::Normal),
                     route ? detail::kEnvelopeDeviceRouted : std::uint8_t{0}};
  memcpy(buf, &env, sizeof env);
  std::byte* slot = v.slot(c);
  detail::dev_store16(slot, buf, sizeof env);
  detail::dev_store_payload(slot + sizeof env, payload, size);
  if (route) *reinterpret_cast<std::uint32_t*>(slot + sizeof env + detail::kPublishMaxPayload) = version;
  while (load_acquire<Scope::Device>(&w->pub_tail) != c) __nanosleep(20);
  store_release<Scope::System>(&v.indices->tail, c + 1);  // pairs with the pump's acquire
  store_release<Scope::Device>(&w->pub_tail, c + 1);
  return Status::Ok;
#else
  return detail::cpu_publish(cpu_, topic, type, payload, size);
#endif
}

RK_HOST_DEVICE inline void RingContext::count_dropped(std::uint64_t n) noexcept {
#if RK_DEVICE_PASS
  atomicAdd(reinterpret_cast<unsigned long long*>(&static_cast<detail::BlockShared*>(device_block_)->dropped),
            static_cast<unsigned long long>(n));
#else
  detail::cpu_count_dropped(cpu_, n);
#endif
}

RK_HOST_DEVICE inline void RingContext::fail(std::uint32_t code) noexcept {
#if RK_DEVICE_PASS
  if (actor_ != ~0u) {  // an actor of a pool: that actor fails, the kernel runs on
    atomicCAS(&static_cast<detail::BlockShared*>(device_block_)->actor_fault, 0u,
              code ? code : static_cast<std::uint32_t>(DeviceError::HandlerFault));
    return;
  }
  detail::dev_fail(device_, static_cast<detail::BlockShared*>(device_block_),
                   code ? code : static_cast<std::uint32_t>(DeviceError::HandlerFault));
#else
  detail::cpu_fail(cpu_, code);
#endif
}

RK_HOST_DEVICE inline void RingContext::request_terminate() noexcept {
#if RK_DEVICE_PASS
  atomicExch(&device_->work->terminate, 1u);
#else
  detail::cpu_request_terminate(cpu_);
#endif
}

}  // namespace ringkernel
