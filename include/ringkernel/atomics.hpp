// ringkernel/atomics.hpp — scoped loads and stores shared by host and device code.
//
// Every queue index in ringkernel is written by exactly one agent and read by another, so
// the only operations needed across agents are a release store and an acquire load; no
// read-modify-write is ever shared between the CPU and the GPU (hostNativeAtomicSupported
// is 0 on our hosts). The scope says who the other agent is:
//   Scope::System — the peer may be the CPU or another device (mapped pinned memory);
//   Scope::Device — the peer is another block of the same GPU (device memory);
//   Scope::Block  — the peer is a thread of the same block.
// On the host every scope compiles to std::atomic_ref with the same order.
#pragma once

#include <atomic>
#include <cstdint>

#include "ringkernel/config.hpp"

namespace ringkernel {

enum class Scope : std::uint8_t { Block, Device, System };

namespace detail {

#if RK_DEVICE_PASS
// Block scope uses atomic read-modify-write instructions plus a CTA acquire-release fence
// (not __threadfence_block(), a sequentially consistent fence that costs ~80 ns on an
// H100): the same ordering as ld.acquire.cta / st.release.cta, and recognised as atomics
// by compute-sanitizer's racecheck (which reports plain-looking ld/st on shared memory).
template <Scope S>
__device__ inline std::uint64_t device_load_acquire(const std::uint64_t* p) {
  std::uint64_t v;
  if constexpr (S == Scope::Block) {
    v = atomicAdd(reinterpret_cast<unsigned long long*>(const_cast<std::uint64_t*>(p)), 0ull);
    asm volatile("fence.acq_rel.cta;" ::: "memory");
  } else if constexpr (S == Scope::System) {
    asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  } else {
    asm volatile("ld.acquire.gpu.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  }
  return v;
}
template <Scope S>
__device__ inline void device_store_release(std::uint64_t* p, std::uint64_t v) {
  if constexpr (S == Scope::Block) {
    asm volatile("fence.acq_rel.cta;" ::: "memory");
    atomicExch(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
  } else if constexpr (S == Scope::System) {
    asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
  } else {
    asm volatile("st.release.gpu.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
  }
}
template <Scope S>
__device__ inline std::uint32_t device_load_acquire32(const std::uint32_t* p) {
  std::uint32_t v;
  if constexpr (S == Scope::Block) {
    v = atomicAdd(const_cast<unsigned int*>(p), 0u);
    asm volatile("fence.acq_rel.cta;" ::: "memory");
  } else if constexpr (S == Scope::System) {
    asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  } else {
    asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  }
  return v;
}
template <Scope S>
__device__ inline void device_store_release32(std::uint32_t* p, std::uint32_t v) {
  if constexpr (S == Scope::Block) {
    asm volatile("fence.acq_rel.cta;" ::: "memory");
    atomicExch(p, v);
  } else if constexpr (S == Scope::System) {
    asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
  } else {
    asm volatile("st.release.gpu.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
  }
}
template <Scope S>
__device__ inline std::uint64_t device_load_relaxed(const std::uint64_t* p) {
  std::uint64_t v;
  if constexpr (S == Scope::System) {
    asm volatile("ld.relaxed.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  } else {
    asm volatile("ld.relaxed.gpu.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  }
  return v;
}
#endif

}  // namespace detail

/// Acquire load of a word another agent publishes with store_release.
template <Scope S = Scope::System>
RK_HOST_DEVICE inline std::uint64_t load_acquire(const std::uint64_t* p) noexcept {
#if RK_DEVICE_PASS
  return detail::device_load_acquire<S>(p);
#else
  return std::atomic_ref<const std::uint64_t>(*p).load(std::memory_order_acquire);
#endif
}

/// Relaxed load: the value is used only as a hint (queue depth, a racy counter).
template <Scope S = Scope::System>
RK_HOST_DEVICE inline std::uint64_t load_relaxed(const std::uint64_t* p) noexcept {
#if RK_DEVICE_PASS
  return detail::device_load_relaxed<S>(p);
#else
  return std::atomic_ref<const std::uint64_t>(*p).load(std::memory_order_relaxed);
#endif
}

/// Release store: everything written before it is visible to the agent that acquires it.
template <Scope S = Scope::System>
RK_HOST_DEVICE inline void store_release(std::uint64_t* p, std::uint64_t v) noexcept {
#if RK_DEVICE_PASS
  detail::device_store_release<S>(p, v);
#else
  std::atomic_ref<std::uint64_t>(*p).store(v, std::memory_order_release);
#endif
}

template <Scope S = Scope::System>
RK_HOST_DEVICE inline std::uint32_t load_acquire(const std::uint32_t* p) noexcept {
#if RK_DEVICE_PASS
  return detail::device_load_acquire32<S>(p);
#else
  return std::atomic_ref<const std::uint32_t>(*p).load(std::memory_order_acquire);
#endif
}

template <Scope S = Scope::System>
RK_HOST_DEVICE inline void store_release(std::uint32_t* p, std::uint32_t v) noexcept {
#if RK_DEVICE_PASS
  detail::device_store_release32<S>(p, v);
#else
  std::atomic_ref<std::uint32_t>(*p).store(v, std::memory_order_release);
#endif
}

/// Relaxed store of a word that only its writer changes (a telemetry counter): readers
/// may see an older value, never a torn one.
RK_HOST_DEVICE inline void store_relaxed(std::uint64_t* p, std::uint64_t v) noexcept {
#if RK_DEVICE_PASS
  *reinterpret_cast<volatile std::uint64_t*>(p) = v;
#else
  std::atomic_ref<std::uint64_t>(*p).store(v, std::memory_order_relaxed);
#endif
}

RK_HOST_DEVICE inline void store_relaxed(std::uint32_t* p, std::uint32_t v) noexcept {
#if RK_DEVICE_PASS
  *reinterpret_cast<volatile std::uint32_t*>(p) = v;
#else
  std::atomic_ref<std::uint32_t>(*p).store(v, std::memory_order_relaxed);
#endif
}

}  // namespace ringkernel
