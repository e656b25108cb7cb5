// ringkernel/cuda/program.hpp — what a CUDA build of a handler registers (host-side
// description; plain C++, no CUDA headers). The persistent kernel itself is instantiated
// by ringkernel/cuda/persistent_kernel.cuh when a translation unit is compiled by nvcc.
#pragma once

#include <cstdint>

namespace ringkernel::detail {

struct BackendPlugin;
struct DeviceKernel;

/// Launch parameters the CUDA runtime passes to a handler's launcher.
struct CudaLaunch {
  std::uint32_t grid;
  std::uint32_t threads;
  std::uint32_t shared_bytes;
  void* stream;  ///< cudaStream_t
  const DeviceKernel* kernel;
  bool cooperative;
  bool wide;  ///< the build for blocks above kCudaCompactThreads
};

/// Threads per block (handler threads and the poller warp) up to which a kernel runs its
/// compact build. Each handler has two builds: with launch bounds of 1024 threads the
/// compiler must fit every thread in 64 registers and spills the message path's state to
/// local memory; bounded at 544 threads (512 handler threads and the poller) it has up to
/// 120 registers and keeps the send and receive paths in registers.
inline constexpr std::uint32_t kCudaCompactThreads = 544;

struct CudaProgram {
  /// The CUDA backend plugin (defined in ringkernel::cuda).
  const BackendPlugin* plugin;
  /// The __global__ persistent kernel (occupancy queries, eager module loading): the
  /// compact build (blocks up to kCudaCompactThreads threads) and the wide one.
  const void* kernel_function;
  const void* kernel_function_wide;
  std::uint32_t state_size;
  std::uint32_t state_align;
  /// Writes the handler's initial state (HandlerTraits<H>::initial_state()).
  void (*init_state)(void* host_state);
  /// Launches the persistent kernel; returns the cudaError_t as int.
  int (*launch)(const CudaLaunch& params);
};

/// The CUDA backend's plugin record (ringkernel::cuda links it).
const BackendPlugin* cuda_backend_plugin() noexcept;

}  // namespace ringkernel::detail
