// ringkernel/cuda/program.hpp — what a CUDA build of a handler registers (host-side
// description; plain C++, no CUDA headers). The persistent kernel itself is instantiated
// by ringkernel/cuda/persistent_kernel.cuh when a translation unit is compiled by nvcc.
#pragma once

#include <cstdint>

namespace ringkernel::detail {

struct BackendPlugin;

/// Launch parameters the CUDA runtime passes to a handler's launcher.
struct CudaLaunch;

struct CudaProgram {
  /// The CUDA backend plugin (links ringkernel::cuda).
  const BackendPlugin* plugin;
  /// Pointer to the __global__ persistent kernel (for occupancy queries and launch).
  const void* kernel_function;
  std::uint32_t state_size;
  std::uint32_t state_align;
  /// Writes the handler's initial state (HandlerTraits<H>::initial_state()).
  void (*init_state)(void* host_state);
  /// Launches the persistent kernel with the given parameters; returns cudaError_t.
  int (*launch)(const CudaLaunch& params);
};

}  // namespace ringkernel::detail
