// ringkernel/types.hpp — thread identification and coordination vocabulary, shared by
// host and device code.
#pragma once

#include <cstdint>

#include "ringkernel/config.hpp"

namespace ringkernel {

/// Thread index within a block (0 .. block_size - 1).
struct ThreadId {
  std::uint32_t value = 0;
  RK_HOST_DEVICE constexpr operator std::uint32_t() const noexcept { return value; }
  friend constexpr bool operator==(ThreadId, ThreadId) = default;
};

/// Block index within a grid (0 .. grid_size - 1).
struct BlockId {
  std::uint32_t value = 0;
  RK_HOST_DEVICE constexpr operator std::uint32_t() const noexcept { return value; }
  friend constexpr bool operator==(BlockId, BlockId) = default;
};

/// Warp index within a block (thread_id / warp_size).
struct WarpId {
  std::uint32_t value = 0;
  RK_HOST_DEVICE constexpr operator std::uint32_t() const noexcept { return value; }
  friend constexpr bool operator==(WarpId, WarpId) = default;
};

/// Thread index across the whole grid (block_id * block_size + thread_id).
struct GlobalThreadId {
  std::uint64_t value = 0;
  RK_HOST_DEVICE constexpr operator std::uint64_t() const noexcept { return value; }
  friend constexpr bool operator==(GlobalThreadId, GlobalThreadId) = default;
};

/// Grid or block extent.
struct Dim3 {
  std::uint32_t x = 1, y = 1, z = 1;
  RK_HOST_DEVICE constexpr std::uint64_t volume() const noexcept {
    return std::uint64_t{x} * y * z;
  }
  friend constexpr bool operator==(Dim3, Dim3) = default;
};

/// Threads per warp on every backend (CUDA's warp; the CPU backend emulates it).
inline constexpr std::uint32_t kWarpSize = 32;

/// Who a memory fence orders against.
enum class FenceScope : std::uint8_t {
  Block,   ///< threads of the same block
  Device,  ///< every thread of the same device
  System,  ///< the host and other devices too
};

/// Memory order of an atomic operation issued through RingContext.
enum class MemoryOrder : std::uint8_t { Relaxed, Acquire, Release, AcqRel, SeqCst };

/// How a launched kernel spreads messages over its threads.
enum class KernelMode : std::uint8_t {
  /// One message at a time per actor instance; every thread of the block calls the
  /// handler for it and may cooperate (barriers, shared scratch); state is race-free.
  Actor,
  /// A batch is spread over threads, one message per thread; responses keep input order.
  /// State may be touched only through atomics or read-only.
  Parallel,
};

constexpr const char* to_string(FenceScope s) noexcept {
  switch (s) {
    case FenceScope::Block: return "block";
    case FenceScope::Device: return "device";
    case FenceScope::System: return "system";
  }
  return "?";
}

constexpr const char* to_string(KernelMode m) noexcept {
  return m == KernelMode::Actor ? "actor" : "parallel";
}

}  // namespace ringkernel
