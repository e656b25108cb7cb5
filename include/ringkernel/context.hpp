// ringkernel/context.hpp — RingContext, the facade a handler uses for ids, barriers,
// fences, atomics, warp collectives, the HLC, K2K messaging and telemetry.
//
// One type serves every backend: member functions are RK_HOST_DEVICE; in the CUDA device
// pass they compile to the CUDA intrinsics (see ringkernel/cuda/device_context.cuh), in
// the host pass to the CPU backend, which runs a block's threads as cooperative fibers on
// one OS thread (so barriers and warp collectives work the same way).
//
// Rules a handler keeps on every backend:
//  * Actor mode: every thread of the block calls the handler for the same message; thread
//    0's return value and response are used. Barriers and warp collectives must be reached
//    by every thread of the block / warp (as on CUDA).
//  * Parallel mode: each thread handles its own message; barriers and warp collectives are
//    not allowed (a thread without a message does not run the handler). The CPU backend
//    reports such a call as DeviceError::BarrierInParallel and faults the kernel.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "ringkernel/atomics.hpp"
#include "ringkernel/config.hpp"
#include "ringkernel/control.hpp"
#include "ringkernel/error.hpp"
#include "ringkernel/hlc.hpp"
#include "ringkernel/message.hpp"
#include "ringkernel/types.hpp"

namespace ringkernel {

class RingContext;

namespace detail {
struct CpuExec;  // CPU backend's per-kernel executor (src/cpu)
struct DeviceKernel;  // CUDA backend's per-kernel device data (ringkernel/cuda)

// CPU backend entry points used by the host pass of RingContext.
void cpu_sync_threads(CpuExec* e, std::uint32_t thread);
void cpu_sync_warp(CpuExec* e, std::uint32_t thread);
std::uint64_t cpu_warp_exchange(CpuExec* e, std::uint32_t thread, std::uint64_t value, std::uint32_t src_lane);
std::uint32_t cpu_warp_ballot(CpuExec* e, std::uint32_t thread, bool pred);
Status cpu_k2k_send(CpuExec* e, std::uint32_t dest, TypeId type, const void* payload, std::uint32_t size,
                    std::uint64_t correlation, std::uint32_t count);
Status cpu_k2k_try_receive(CpuExec* e, TypeId type, void* out, std::uint32_t size, std::uint32_t* source);
HlcTimestamp cpu_hlc_tick(CpuExec* e);
HlcTimestamp cpu_hlc_now(CpuExec* e);
void cpu_fail(CpuExec* e, std::uint32_t code);
void cpu_request_terminate(CpuExec* e);
void cpu_count_dropped(CpuExec* e, std::uint64_t n);
std::uint32_t cpu_kernel_slot(CpuExec* e);
std::uint32_t cpu_k2k_route_count(CpuExec* e);
std::uint32_t cpu_k2k_route(CpuExec* e, std::uint32_t i);
Status cpu_publish(CpuExec* e, std::uint64_t topic, TypeId type, const void* payload, std::uint32_t size);
}  // namespace detail

class RingContext {
 public:
  // -- identification -------------------------------------------------------------------
  RK_HOST_DEVICE ThreadId thread_id() const noexcept { return ThreadId{thread_}; }
  RK_HOST_DEVICE BlockId block_id() const noexcept { return BlockId{block_}; }
  RK_HOST_DEVICE WarpId warp_id() const noexcept { return WarpId{thread_ / kWarpSize}; }
  RK_HOST_DEVICE std::uint32_t lane_id() const noexcept { return thread_ % kWarpSize; }
  RK_HOST_DEVICE GlobalThreadId global_thread_id() const noexcept {
    return GlobalThreadId{std::uint64_t{block_} * block_dim_ + thread_};
  }
  RK_HOST_DEVICE std::uint32_t block_dim() const noexcept { return block_dim_; }
  RK_HOST_DEVICE std::uint32_t grid_dim() const noexcept { return grid_dim_; }
  RK_HOST_DEVICE KernelMode mode() const noexcept { return mode_; }
  /// Numeric id of this kernel (the K2K address other kernels send to).
  RK_HOST_DEVICE std::uint32_t kernel_slot() const noexcept { return kernel_slot_; }
  /// Index of the message within the batch (parallel mode); 0 in actor mode.
  RK_HOST_DEVICE std::uint32_t batch_index() const noexcept { return batch_index_; }

  // -- shared scratch of the block (LaunchOptions::shared_memory_size bytes) -------------
  RK_HOST_DEVICE std::byte* shared_memory() const noexcept { return shared_; }
  RK_HOST_DEVICE std::uint32_t shared_memory_size() const noexcept { return shared_size_; }

  // -- synchronisation ------------------------------------------------------------------
  /// Block-wide barrier (actor mode only; every thread of the block must reach it).
  RK_HOST_DEVICE void sync_threads() noexcept;
  /// Warp-wide barrier (actor mode only).
  RK_HOST_DEVICE void sync_warp() noexcept;
  /// Memory fence ordering this thread's accesses as seen by the given scope.
  RK_HOST_DEVICE void fence(FenceScope scope) noexcept {
#if RK_DEVICE_PASS
    if (scope == FenceScope::Block) __threadfence_block();
    else if (scope == FenceScope::Device) __threadfence();
    else __threadfence_system();
#else
    (void)scope;
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
  }

  // -- atomics on state or shared memory (device scope) ---------------------------------
  template <class T>
  RK_HOST_DEVICE T atomic_add(T* p, T v) noexcept {
#if RK_DEVICE_PASS
    return atomicAdd(p, v);
#else
    return std::atomic_ref<T>(*p).fetch_add(v, std::memory_order_relaxed);
#endif
  }
  template <class T>
  RK_HOST_DEVICE T atomic_cas(T* p, T expected, T desired) noexcept {
#if RK_DEVICE_PASS
    return atomicCAS(p, expected, desired);
#else
    std::atomic_ref<T>(*p).compare_exchange_strong(expected, desired, std::memory_order_acq_rel);
    return expected;
#endif
  }
  template <class T>
  RK_HOST_DEVICE T atomic_exchange(T* p, T v) noexcept {
#if RK_DEVICE_PASS
    return atomicExch(p, v);
#else
    return std::atomic_ref<T>(*p).exchange(v, std::memory_order_acq_rel);
#endif
  }
  template <class T>
  RK_HOST_DEVICE T atomic_max(T* p, T v) noexcept {
#if RK_DEVICE_PASS
    return atomicMax(p, v);
#else
    std::atomic_ref<T> a(*p);
    T cur = a.load(std::memory_order_relaxed);
    while (cur < v && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
    }
    return cur;
#endif
  }
  template <class T>
  RK_HOST_DEVICE T atomic_min(T* p, T v) noexcept {
#if RK_DEVICE_PASS
    return atomicMin(p, v);
#else
    std::atomic_ref<T> a(*p);
    T cur = a.load(std::memory_order_relaxed);
    while (v < cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
    }
    return cur;
#endif
  }
  template <class T>
  RK_HOST_DEVICE T atomic_load(const T* p) const noexcept {
#if RK_DEVICE_PASS
    return *reinterpret_cast<const volatile T*>(p);
#else
    return std::atomic_ref<T>(*const_cast<T*>(p)).load(std::memory_order_acquire);
#endif
  }
  template <class T>
  RK_HOST_DEVICE void atomic_store(T* p, T v) noexcept {
#if RK_DEVICE_PASS
    __threadfence();
    *reinterpret_cast<volatile T*>(p) = v;
#else
    std::atomic_ref<T>(*p).store(v, std::memory_order_release);
#endif
  }

  // -- warp collectives (actor mode; every lane of the warp must call) -----------------
  /// Bit i set when lane i's predicate is true.
  RK_HOST_DEVICE std::uint32_t warp_ballot(bool pred) noexcept;
  RK_HOST_DEVICE bool warp_any(bool pred) noexcept { return warp_ballot(pred) != 0; }
  RK_HOST_DEVICE bool warp_all(bool pred) noexcept {
    const std::uint32_t active = warp_lane_mask();
    return (warp_ballot(pred) & active) == active;
  }
  /// Value of `v` held by lane `src_lane` (T up to 8 bytes, trivially copyable).
  template <class T>
  RK_HOST_DEVICE T warp_shuffle(T v, std::uint32_t src_lane) noexcept {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp_shuffle moves up to 8 bytes");
    std::uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    bits = warp_exchange(bits, src_lane);
    T out;
    std::memcpy(&out, &bits, sizeof(T));
    return out;
  }
  /// The 64-bit value lane `src_lane` passed (warp_shuffle's primitive).
  RK_HOST_DEVICE std::uint64_t warp_exchange(std::uint64_t v, std::uint32_t src_lane) noexcept;
  /// Sum of `v` over the warp (every lane receives it).
  template <class T>
  RK_HOST_DEVICE T warp_reduce_add(T v) noexcept {
    T total = v;
    for (std::uint32_t lane = 0; lane < kWarpSize; ++lane) {
      const T other = warp_shuffle(v, lane);
      if (lane != lane_id()) total += other;
    }
    return total;
  }

  // -- hybrid logical clock -------------------------------------------------------------
  /// A new local event of this kernel's clock.
  RK_HOST_DEVICE HlcTimestamp hlc_tick() noexcept;
  /// The kernel clock's latest timestamp (no new event).
  RK_HOST_DEVICE HlcTimestamp hlc_now() noexcept;
  /// Stamp of the message being handled (merged into the kernel clock on receipt).
  RK_HOST_DEVICE const HlcTimestamp& message_timestamp() const noexcept { return msg_ts_; }
  RK_HOST_DEVICE std::uint64_t correlation_id() const noexcept { return msg_corr_; }
  /// Who sent the message: 0 = the host, otherwise the sending kernel's slot + 1.
  RK_HOST_DEVICE std::uint32_t message_source() const noexcept { return msg_source_; }
  /// In an actor pool (LaunchOptions::actor_slots): the index of the actor handling this
  /// message (its Request's `actor` field), whose State the handler was given. ~0u elsewhere.
  RK_HOST_DEVICE std::uint32_t actor_index() const noexcept { return actor_; }

  // -- kernel-to-kernel messaging -------------------------------------------------------
  /// Sends `msg` to the kernel with numeric id `dest` over a route the runtime set up.
  /// QueueFull = backpressure (nothing sent); NoRoute / TenantMismatch are counted.
  template <RingMessage T>
  RK_HOST_DEVICE Status k2k_send(std::uint32_t dest, const T& msg) noexcept {
    return k2k_send_bytes(dest, type_id_v<T>, &msg, sizeof(T), 1);
  }
  /// Sends msgs[0], ..., msgs[n-1] to `dest` with one claim of the ring and one
  /// publication: all of them (Ok) or none (QueueFull: no room for n now; TooLarge: n
  /// exceeds the route's capacity). FIFO with this kernel's other sends to `dest`. On a
  /// GPU, a warp's lanes sending to one route share the claim, so a warp publishes all
  /// its lanes' batches at once.
  template <RingMessage T>
  RK_HOST_DEVICE Status k2k_send_batch(std::uint32_t dest, const T* msgs, std::uint32_t n) noexcept {
    return k2k_send_bytes(dest, type_id_v<T>, msgs, sizeof(T), n);
  }
  /// Pulls one inbound K2K message of type T (kernels launched with
  /// K2KDelivery::Pull); QueueEmpty when none is waiting.
  template <RingMessage T>
  RK_HOST_DEVICE Status k2k_try_receive(T& out, std::uint32_t* source = nullptr) noexcept {
    return k2k_try_receive_bytes(type_id_v<T>, &out, sizeof(T), source);
  }
  /// Number of K2K routes from this kernel, and the destination of route i (in the order
  /// RingKernel::connect created them); ~0u when there is no route i.
  RK_HOST_DEVICE std::uint32_t k2k_route_count() const noexcept;
  RK_HOST_DEVICE std::uint32_t k2k_route(std::uint32_t i) const noexcept;
  /// `count` messages of `size` bytes each, back to back at `payload`.
  RK_HOST_DEVICE Status k2k_send_bytes(std::uint32_t dest, TypeId type, const void* payload, std::uint32_t size,
                                       std::uint32_t count = 1) noexcept;
  RK_HOST_DEVICE Status k2k_try_receive_bytes(TypeId type, void* out, std::uint32_t size,
                                              std::uint32_t* source) noexcept;

  // -- publish/subscribe (ringkernel/pubsub.hpp) ----------------------------------------
  /// Publishes `msg` to topic `topic` (a TopicId: topic_id("a/b/c")) of the runtime's
  /// Broker, stamped by this kernel's clock. Never blocks. QueueFull = a subscription
  /// applies backpressure (nobody received it; retry or drop); NoRoute = no such topic;
  /// InvalidMessage = the topic carries another message type.
  template <RingMessage T>
  RK_HOST_DEVICE Status publish(std::uint64_t topic, const T& msg) noexcept {
    return publish_bytes(topic, type_id_v<T>, &msg, sizeof(T));
  }
  RK_HOST_DEVICE Status publish_bytes(std::uint64_t topic, TypeId type, const void* payload,
                                      std::uint32_t size) noexcept;

  // -- telemetry and failure ------------------------------------------------------------
  /// Counts messages this handler discarded on purpose (visible in TelemetryBuffer).
  RK_HOST_DEVICE void count_dropped(std::uint64_t n = 1) noexcept;
  /// Stops the kernel with an error the host sees as KernelFaulted (code > 0).
  RK_HOST_DEVICE void fail(std::uint32_t code) noexcept;
  /// Asks the runtime to terminate this kernel after the current batch.
  RK_HOST_DEVICE void request_terminate() noexcept;

  // -- set by the backend ---------------------------------------------------------------
  struct Init {
    std::uint32_t thread, block, block_dim, grid_dim, kernel_slot;
    KernelMode mode;
    std::byte* shared;
    std::uint32_t shared_size;
  };
  RK_HOST_DEVICE explicit RingContext(const Init& i) noexcept
      : thread_(i.thread), block_(i.block), block_dim_(i.block_dim), grid_dim_(i.grid_dim),
        kernel_slot_(i.kernel_slot), mode_(i.mode), shared_(i.shared), shared_size_(i.shared_size) {}
  RK_HOST_DEVICE void set_message(const HlcTimestamp& ts, std::uint64_t corr, std::uint32_t source,
                                  std::uint32_t batch_index) noexcept {
    msg_ts_ = ts;
    msg_corr_ = corr;
    msg_source_ = source;
    batch_index_ = batch_index;
  }
  RK_HOST_DEVICE void set_thread(std::uint32_t t) noexcept { thread_ = t; }
  RK_HOST_DEVICE void set_actor(std::uint32_t a) noexcept { actor_ = a; }
  detail::CpuExec* cpu_ = nullptr;          // CPU backend (host pass)
  const detail::DeviceKernel* device_ = nullptr;  // CUDA backend (device pass)
  void* device_block_ = nullptr;            // CUDA backend: the block's shared bookkeeping

  /// Lanes of this thread's warp that run the handler.
  RK_HOST_DEVICE std::uint32_t warp_lane_mask() const noexcept {
    const std::uint32_t first = (thread_ / kWarpSize) * kWarpSize;
    const std::uint32_t lanes = block_dim_ - first < kWarpSize ? block_dim_ - first : kWarpSize;
    return lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
  }

 private:
  std::uint32_t thread_ = 0, block_ = 0, block_dim_ = 1, grid_dim_ = 1, kernel_slot_ = 0;
  KernelMode mode_ = KernelMode::Actor;
  std::byte* shared_ = nullptr;
  std::uint32_t shared_size_ = 0;
  HlcTimestamp msg_ts_{};
  std::uint64_t msg_corr_ = 0;
  std::uint32_t msg_source_ = 0;
  std::uint32_t batch_index_ = 0;
  std::uint32_t actor_ = ~0u;
};

}  // namespace ringkernel

#if defined(__CUDACC__)
#include "ringkernel/cuda/device_context.cuh"
#else
namespace ringkernel {
inline void RingContext::sync_threads() noexcept { detail::cpu_sync_threads(cpu_, thread_); }
inline void RingContext::sync_warp() noexcept { detail::cpu_sync_warp(cpu_, thread_); }
inline std::uint32_t RingContext::warp_ballot(bool pred) noexcept { return detail::cpu_warp_ballot(cpu_, thread_, pred); }
inline std::uint64_t RingContext::warp_exchange(std::uint64_t v, std::uint32_t src_lane) noexcept {
  return detail::cpu_warp_exchange(cpu_, thread_, v, src_lane);
}
inline HlcTimestamp RingContext::hlc_tick() noexcept { return detail::cpu_hlc_tick(cpu_); }
inline HlcTimestamp RingContext::hlc_now() noexcept { return detail::cpu_hlc_now(cpu_); }
inline Status RingContext::k2k_send_bytes(std::uint32_t dest, TypeId type, const void* payload, std::uint32_t size,
                                          std::uint32_t count) noexcept {
  return detail::cpu_k2k_send(cpu_, dest, type, payload, size, msg_corr_, count);
}
inline Status RingContext::k2k_try_receive_bytes(TypeId type, void* out, std::uint32_t size,
                                                 std::uint32_t* source) noexcept {
  return detail::cpu_k2k_try_receive(cpu_, type, out, size, source);
}
inline std::uint32_t RingContext::k2k_route_count() const noexcept { return detail::cpu_k2k_route_count(cpu_); }
inline std::uint32_t RingContext::k2k_route(std::uint32_t i) const noexcept { return detail::cpu_k2k_route(cpu_, i); }
inline Status RingContext::publish_bytes(std::uint64_t topic, TypeId type, const void* payload,
                                         std::uint32_t size) noexcept {
  return detail::cpu_publish(cpu_, topic, type, payload, size);
}
inline void RingContext::count_dropped(std::uint64_t n) noexcept { detail::cpu_count_dropped(cpu_, n); }
inline void RingContext::fail(std::uint32_t code) noexcept { detail::cpu_fail(cpu_, code); }
inline void RingContext::request_terminate() noexcept { detail::cpu_request_terminate(cpu_); }
}  // namespace ringkernel
#endif
