// ringkernel/config.hpp — the few macros shared by host and device code.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define RK_HOST_DEVICE __host__ __device__
#define RK_DEVICE __device__
#else
#define RK_HOST_DEVICE
#define RK_DEVICE
#endif

#if defined(__CUDA_ARCH__)
#define RK_DEVICE_PASS 1
#else
#define RK_DEVICE_PASS 0
#endif

namespace ringkernel {

/// Destructive-interference distance used for every index that two agents write.
/// 128 bytes: two x86 cache lines (adjacent-line prefetch) and one GPU L2 sector group.
inline constexpr std::size_t kIndexAlign = 128;

/// Version of the wire format (MessageHeader, ControlBlock, TelemetryBuffer).
inline constexpr std::uint32_t kWireVersion = 1;

/// "RINGKERN" read as a big-endian 64-bit integer.
inline constexpr std::uint64_t kMessageMagic = 0x52494E474B45524EULL;

/// Largest payload one message may carry.
inline constexpr std::uint32_t kMaxPayloadSize = 64 * 1024;

}  // namespace ringkernel
