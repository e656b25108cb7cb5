// Private: the state behind RingKernel.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "ringkernel/availability.hpp"
#include "ringkernel/pubsub.hpp"
#include "ringkernel/registry.hpp"
#include "ringkernel/runtime.hpp"

namespace ringkernel::detail {

std::unique_ptr<RingKernelRuntime> make_cpu_runtime();

class RuntimeCore {
 public:
  static constexpr std::uint32_t kMaxKernels = 4096;

  RuntimeCore(Backend requested, std::uint32_t device_index, std::uint64_t node_id, std::uint64_t max_skew_us);
  ~RuntimeCore();

  Result<KernelHandle> launch(std::string_view name, const LaunchOptions& options);
  Result<void> connect(KernelCore& from, KernelCore& to);
  void remove(KernelCore* core) noexcept;
  std::vector<KernelId> kernels() const;
  Result<void> shutdown(Duration timeout);
  /// The GPU Backend::Auto runs a kernel on: the first of CUDA, Vulkan that `info` has a
  /// build for (any, when null) and that is a hardware device here (a software Vulkan
  /// device is slower than the native CPU backend, so Auto does not pick it). Empty: the CPU.
  std::optional<BackendAvailability> auto_gpu(const KernelInfo* info) const { return auto_gpu(device_index, info); }
  /// The same choice for device `device` (MultiGpuCoordinator's Backend::Auto).
  static std::optional<BackendAvailability> auto_gpu(std::uint32_t device, const KernelInfo* info);
  /// The backend this runtime's device-wide calls go to: the one asked for, under Auto the
  /// GPU Auto picks, else the CPU.
  Backend gpu_or_cpu() const;
  /// Free memory of that device (see RingKernel::free_memory).
  std::optional<std::uint64_t> free_memory();
  Result<RingKernelRuntime*> runtime_for(Backend b);

  Backend requested;
  std::uint32_t device_index;
  HlcClock clock;
  std::unique_ptr<Broker> broker;  ///< stamps with `clock`; outlives every kernel's loop

 private:
  Result<Backend> choose_backend(const KernelInfo& info);

  mutable std::mutex mutex_;
  std::mutex runtimes_mutex_;  ///< runtime_for's lazy creation (a leaf lock)
  std::unique_ptr<RingKernelRuntime> cpu_;
  std::unique_ptr<RingKernelRuntime> cuda_;
  std::unique_ptr<RingKernelRuntime> vulkan_;
  std::vector<KernelCore*> live_;
  std::vector<bool> slot_used_;
};

}  // namespace ringkernel::detail
