// ringkernel/cuda/device_context.cuh — RingContext for CUDA translation units: in the
// device pass the CUDA implementation, in the host pass the CPU backend's (the same
// handler source is compiled for both). Included by context.hpp under nvcc only.
#pragma once

#include <cuda_runtime.h>

#include "ringkernel/cuda/device_kernel.hpp"

namespace ringkernel::detail {

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
  std::uint64_t hlc_local;     // actor mode: the kernel clock lives here (shared-memory atomics)
  std::uint64_t actor_done;    // last actor command carried out (leader)
  std::uint64_t actor_exec;    // the command being carried out (leader -> handler threads)
  std::uint64_t* hlc;          // &hlc_local (actor) or &DeviceWork::hlc (parallel: every block)
  std::uint64_t dropped;       // ctx.count_dropped and rejected slots
  std::uint64_t lat_total;
  std::uint64_t lat_min;
  std::uint64_t lat_max;
  RouteEntry out_routes[kDeviceMaxRoutes];
  RouteEntry in_routes[kDeviceMaxRoutes];
  std::uint64_t in_heads[kDeviceMaxRoutes];
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
__device__ inline std::uint64_t dev_hlc_tick(const DeviceKernel* dk, const BlockShared* bs, std::uint32_t n = 1) {
  unsigned long long* p = reinterpret_cast<unsigned long long*>(bs->hlc);
  const std::uint64_t now = dev_wall_us(dk);
  unsigned long long prev = *reinterpret_cast<volatile unsigned long long*>(p);
  for (;;) {
    const std::uint64_t first = hlc::next_tick(prev, now);
    const unsigned long long seen = atomicCAS(p, prev, first + (n ? n - 1 : 0));
    if (seen == prev) return first;
    prev = seen;
  }
}
__device__ inline void dev_hlc_merge(const DeviceKernel* dk, const BlockShared* bs, const HlcTimestamp& remote) {
  unsigned long long* p = reinterpret_cast<unsigned long long*>(bs->hlc);
  const std::uint64_t now = dev_wall_us(dk);
  const std::uint64_t r = hlc::pack(remote);
  unsigned long long prev = *reinterpret_cast<volatile unsigned long long*>(p);
  for (;;) {
    const unsigned long long seen = atomicCAS(p, prev, hlc::next_merge(prev, r, now));
    if (seen == prev) return;
    prev = seen;
  }
}
__device__ inline void dev_fail(const DeviceKernel* dk, BlockShared* bs, std::uint32_t code) {
  atomicCAS(&bs->fault, 0u, code);
  atomicCAS(&dk->work->fault, 0u, code);
}

/// Copies `bytes` (a multiple of 16, both sides 16-byte aligned) with 16-byte accesses.
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

/// Multi-producer send into a device K2K ring. Lanes of a warp sending to the same ring
/// are aggregated (the warp-aggregated-atomics pattern): one lane claims a run of positions
/// with one CAS on the ring's claim word, every lane writes its slot, and the run is
/// published with one release store of the tail, in claim order (a run waits until every
/// earlier claim is published). The consumer still sees single-writer head/tail words.
__device__ inline Status dev_k2k_push(const DeviceKernel* dk, const BlockShared* bs, const RingView& v, TypeId type,
                                      const void* payload, std::uint32_t size, std::uint64_t corr) {
  RingIndices* ix = v.indices;
  if (size + sizeof(Envelope) > v.slot_size) return Status::TooLarge;
  const unsigned active = __activemask();
  const unsigned peers = __match_any_sync(active, reinterpret_cast<unsigned long long>(ix));
  const unsigned lane = threadIdx.x & 31u;
  const unsigned first = __ffs(peers) - 1;
  const unsigned rank = __popc(peers & ((1u << lane) - 1u));
  const unsigned count = __popc(peers);
  std::uint64_t base = 0;
  unsigned status = static_cast<unsigned>(Status::Ok);
  bool in_order = true;
  if (lane == first) {
    unsigned long long* claim = reinterpret_cast<unsigned long long*>(&ix->claim);
    // claim, head and tail are loaded together (one L2 round trip), then one CAS.
    std::uint64_t c = load_relaxed<Scope::Device>(&ix->claim);
    std::uint64_t head = load_acquire<Scope::Device>(&ix->head);
    std::uint64_t tail = load_relaxed<Scope::Device>(&ix->tail);
    for (;;) {
      if (c + count - head > v.capacity) {
        // Full, or a consumer that is gone: told apart only here, off the fast path.
        status = static_cast<unsigned>(load_acquire<Scope::Device>(&ix->consumer_closed) != 0 ? Status::Closed
                                                                                               : Status::QueueFull);
        break;
      }
      const unsigned long long seen = atomicCAS(claim, c, c + count);
      if (seen == c) {
        base = c;
        in_order = tail == c;  // nobody before us is still writing
        break;
      }
      c = seen;
      head = load_acquire<Scope::Device>(&ix->head);
      tail = load_relaxed<Scope::Device>(&ix->tail);
    }
  }
  status = __shfl_sync(peers, status, first);
  if (status != static_cast<unsigned>(Status::Ok)) return static_cast<Status>(status);
  base = __shfl_sync(peers, static_cast<unsigned long long>(base), first);
  const std::uint64_t pos = base + rank;
  alignas(16) unsigned char buf[sizeof(Envelope)];
  Envelope env{type, corr, hlc::unpack(dev_hlc_tick(dk, bs), dk->node_id), size, static_cast<std::uint16_t>(dk->slot + 1),
               static_cast<std::uint8_t>(Priority::Normal), kEnvelopeK2K};
  memcpy(buf, &env, sizeof env);
  std::byte* slot = v.slot(pos);
  dev_copy16(slot, buf, sizeof env);
  const auto* p = static_cast<const unsigned char*>(payload);
  std::uint32_t i = 0;
  if ((reinterpret_cast<std::uintptr_t>(p) & 15u) == 0) {
    for (; i + 16 <= size; i += 16)
      *reinterpret_cast<uint4*>(slot + sizeof env + i) = *reinterpret_cast<const uint4*>(p + i);
  }
  for (; i < size; ++i) reinterpret_cast<unsigned char*>(slot)[sizeof env + i] = p[i];
  __syncwarp(peers);  // every lane's slot is written before the run is published
  if (lane == first) {
    if (!in_order)
      while (load_acquire<Scope::Device>(&ix->tail) != base) __nanosleep(20);
    store_release<Scope::Device>(&ix->tail, base + count);  // pairs with the consumer's acquire of tail
  }
  __syncwarp(peers);
  return Status::Ok;
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
  return hlc::unpack(*reinterpret_cast<volatile std::uint64_t*>(static_cast<const detail::BlockShared*>(device_block_)->hlc),
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
                                                        std::uint32_t size) noexcept {
#if RK_DEVICE_PASS
  const detail::DeviceKernel* dk = device_;
  auto* bs = static_cast<detail::BlockShared*>(device_block_);
  detail::DeviceWork* w = dk->work;
  if (dk->k2k_enabled) {
    const RingView* view = nullptr;
    for (std::uint32_t i = 0; i < bs->out_count && !view; ++i)
      if (bs->out_routes[i].peer == dest) view = &bs->out_routes[i].view;
    detail::RouteEntry fresh;
    for (std::uint32_t i = bs->out_count; !view && detail::dev_route_from_table(dk, i, fresh); ++i)
      if (fresh.peer == dest) view = &fresh.view;  // connected moments ago, not cached yet
    if (view) {
      const Status s = detail::dev_k2k_push(dk, bs, *view, type, payload, size, msg_corr_);
      if (s == Status::Ok) atomicAdd(reinterpret_cast<unsigned long long*>(&w->k2k_sent), 1ull);
      if (s == Status::Closed) atomicAdd(reinterpret_cast<unsigned long long*>(&w->dead_letters), 1ull);
      return s;
    }
    if (dest < dk->directory_size) {
      const std::int64_t t = *reinterpret_cast<const volatile std::int64_t*>(&dk->tenants[dest]);
      if (t >= 0 && static_cast<std::uint64_t>(t) != dk->tenant_id) {
        atomicAdd(reinterpret_cast<unsigned long long*>(&w->tenant_rejections), 1ull);
        return Status::TenantMismatch;
      }
    }
  }
  atomicAdd(reinterpret_cast<unsigned long long*>(&w->dead_letters), 1ull);
  return Status::NoRoute;
#else
  return detail::cpu_k2k_send(cpu_, dest, type, payload, size, msg_corr_);
#endif
}

RK_HOST_DEVICE inline Status RingContext::k2k_try_receive_bytes(TypeId type, void* out, std::uint32_t size,
                                                               std::uint32_t* source) noexcept {
#if RK_DEVICE_PASS
  auto* bs = static_cast<detail::BlockShared*>(device_block_);
  if (threadIdx.x == 0) {
    // Thread 0 is the leader that owns the inbound cache: take routes connected moments
    // ago straight from the host's table (acquire of the count, then the entries).
    const std::uint32_t c = load_acquire<Scope::System>(&device_->routes->in_count);
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
    store_release<Scope::Device>(&v.indices->head, head + 1);
    detail::dev_hlc_merge(device_, bs, env.timestamp);
    if (source) *source = bs->in_routes[r].peer;
    return Status::Ok;
  }
  return Status::QueueEmpty;
#else
  return detail::cpu_k2k_try_receive(cpu_, type, out, size, source);
#endif
}

RK_HOST_DEVICE inline Status RingContext::publish_bytes(std::uint64_t topic, TypeId type, const void* payload,
                                                      std::uint32_t size) noexcept {
#if RK_DEVICE_PASS
  // Claim a slot of the kernel's publish ring (device-memory claim word), write it into
  // mapped memory, publish in claim order with a system-scope release; the runtime's pump
  // thread hands it to the broker (ringkernel/pubsub.hpp), which routes it.
  const detail::DeviceKernel* dk = device_;
  auto* bs = static_cast<detail::BlockShared*>(device_block_);
  detail::DeviceWork* w = dk->work;
  const RingView& v = dk->publish;
  if (size > detail::kPublishMaxPayload) return Status::TooLarge;
  unsigned long long* claim = reinterpret_cast<unsigned long long*>(&w->pub_claim);
  std::uint64_t c = load_relaxed<Scope::Device>(&w->pub_claim);
  for (;;) {
    std::uint64_t head = load_relaxed<Scope::Device>(&w->pub_head_cache);
    if (c - head >= v.capacity) {
      head = load_acquire<Scope::System>(&v.indices->head);  // the pump's release
      atomicMax(reinterpret_cast<unsigned long long*>(&w->pub_head_cache), static_cast<unsigned long long>(head));
      if (c - head >= v.capacity) return Status::QueueFull;
    }
    const unsigned long long seen = atomicCAS(claim, c, c + 1);
    if (seen == c) break;
    c = seen;
  }
  alignas(16) unsigned char buf[sizeof(Envelope)];
  const Envelope env{type, topic, hlc::unpack(detail::dev_hlc_tick(dk, bs), dk->node_id), size,
                     static_cast<std::uint16_t>(dk->slot + 1), static_cast<std::uint8_t>(Priority::Normal), 0};
  memcpy(buf, &env, sizeof env);
  std::byte* slot = v.slot(c);
  detail::dev_copy16(slot, buf, sizeof env);
  const auto* p = static_cast<const unsigned char*>(payload);
  for (std::uint32_t i = 0; i < size; ++i) reinterpret_cast<volatile unsigned char*>(slot)[sizeof env + i] = p[i];
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
