// ringkernel/availability.hpp — which backends exist in this process, and why not.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ringkernel/error.hpp"
#include "ringkernel/runtime.hpp"

namespace ringkernel {

struct BackendAvailability {
  Backend backend = Backend::Cpu;
  bool available = false;
  std::string device;  ///< device name when available
  std::string reason;  ///< why not, when unavailable (a sentence a user can act on)
  /// The device is a CPU implementation of a GPU API (e.g. Mesa lavapipe): usable when
  /// asked for by name, but Backend::Auto prefers the native CPU backend over it.
  bool software = false;
  /// How many devices of this backend this process can use (CUDA devices, suitable Vulkan
  /// devices; the CPU counts as one). Filled whether or not `device_index` is one of them.
  std::uint32_t device_count = 0;
  /// What is known of the device (0 where the backend does not say): its memory in bytes
  /// (CUDA: global memory; Vulkan: the largest device-local heap; CPU: physical memory),
  /// its compute units (CUDA: SMs; CPU: hardware threads) and, on CUDA, its compute
  /// capability as major * 10 + minor.
  std::uint64_t memory_bytes = 0;
  std::uint32_t compute_units = 0;
  std::uint32_t compute_capability = 0;
};

/// One entry per backend (Cpu, Cuda, Vulkan, Metal), in that order.
std::vector<BackendAvailability> availability();
BackendAvailability availability(Backend b);
/// The same for device `device_index` of that backend (CUDA or Vulkan device order; the
/// CPU, Auto and Metal have one answer whatever the index).
BackendAvailability availability(Backend b, std::uint32_t device_index);
bool is_available(Backend b);

namespace detail {
/// A backend built as a separate library (CUDA, Vulkan) registers itself here when a
/// program links it; the core library never links a GPU API.
struct BackendPlugin {
  Backend backend;
  BackendAvailability (*probe)(std::uint32_t device_index);
  Result<std::unique_ptr<RingKernelRuntime>> (*create)(std::uint32_t device_index);
  /// Optional page-locked host allocation (cudaHostAlloc); null = not offered.
  void* (*host_alloc)(std::size_t bytes);
  void (*host_free)(void* p);
};
void register_backend_plugin(const BackendPlugin* plugin) noexcept;
const BackendPlugin* find_backend_plugin(Backend b) noexcept;
}  // namespace detail

}  // namespace ringkernel
