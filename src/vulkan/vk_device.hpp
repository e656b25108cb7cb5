// Private: one logical Vulkan device with its compute queues, host-visible buffers with
// device addresses, and compute pipelines built from embedded SPIR-V.
//
// The DeviceContext is shared (std::shared_ptr) by the runtime and every kernel created on
// it: a KernelHandle may outlive its RingKernel and still read its queues, which live in
// this device's memory, so the device goes away with the last of them.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <vector>

#include "ringkernel/types.hpp"
#include "ringkernel/vulkan/program.hpp"
#include "ringkernel/vulkan/vulkan.hpp"
#include "vk_api.hpp"

namespace ringkernel::vulkan::detail {

class DeviceContext;

/// A buffer bound to its own host-visible allocation, mapped for its lifetime, with a
/// device address. Move-only; frees itself unless leak() was called.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { reset(); }

  void reset() noexcept;
  /// Forget the buffer without freeing it (a dispatch that never ended may still use it).
  void leak() noexcept { ctx_ = nullptr; }

  void* mapped() const noexcept { return mapped_; }
  VkDeviceAddress address() const noexcept { return address_; }
  VkDeviceSize size() const noexcept { return size_; }
  Placement placement() const noexcept { return placement_; }

 private:
  friend class DeviceContext;
  const DeviceContext* ctx_ = nullptr;
  VkBuffer buffer_ = VK_NULL_HANDLE;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
  void* mapped_ = nullptr;
  VkDeviceAddress address_ = 0;
  VkDeviceSize size_ = 0;
  Placement placement_ = Placement::Host;
};

/// A queue the context hands out: one per persistent kernel, one for tick dispatches.
struct QueueSlot {
  std::uint32_t family = 0;
  std::uint32_t index = 0;
  VkQueue queue = VK_NULL_HANDLE;
};

/// What a pipeline is specialised on.
struct PipelineKey {
  const VulkanProgram* program;
  std::uint32_t block_size;      ///< threads that run the handler
  std::uint32_t workgroup_size;  ///< invocations dispatched (>= block_size)
  KernelMode mode;
  bool persistent;
  std::uint32_t shared_words;
  std::uint32_t grid_size;
  auto tie() const { return std::tie(program, block_size, workgroup_size, mode, persistent, shared_words, grid_size); }
  bool operator<(const PipelineKey& o) const { return tie() < o.tie(); }
};

class DeviceContext {
 public:
  static Result<std::shared_ptr<DeviceContext>> create(std::uint32_t device_index);
  ~DeviceContext();
  DeviceContext(const DeviceContext&) = delete;
  DeviceContext& operator=(const DeviceContext&) = delete;

  const PhysicalDevice& physical() const noexcept { return *physical_; }
  VkDevice device() const noexcept { return device_; }
  const DeviceApi& api() const noexcept { return api_; }
  VkPipelineLayout layout() const noexcept { return layout_; }
  std::string description() const;

  /// Host-visible, zero-filled buffer of `size` bytes in the memory `want` names (Auto:
  /// device-local where offered, falling back to host memory when the BAR is exhausted).
  Result<Buffer> allocate(VkDeviceSize size, Placement want) const;

  /// The compute pipeline for a kernel (built once per key, kept for the device's life).
  Result<VkPipeline> pipeline(const PipelineKey& key);

  /// The queue tick dispatches go to (guarded by the ticker; see tick_mutex).
  const QueueSlot& tick_queue() const noexcept { return tick_queue_; }
  /// A queue of its own for a persistent dispatch, if one is left.
  /// A queue of its own for a persistent dispatch, while fewer than `limit` are taken.
  std::optional<QueueSlot> acquire_queue(std::uint32_t limit);
  void release_queue(const QueueSlot& q);
  std::uint32_t queues_in_use() const noexcept { return in_use_; }
  std::uint32_t queue_count() const noexcept { return static_cast<std::uint32_t>(all_queues_.size()); }

  /// Set once the device reports VK_ERROR_DEVICE_LOST; nothing runs on it any more.
  std::atomic<bool> lost{false};
  /// Set when a dispatch could not be stopped: the device and shared buffers are leaked.
  std::atomic<bool> wedged{false};

 private:
  DeviceContext() = default;
  const PhysicalDevice* physical_ = nullptr;
  VkDevice device_ = VK_NULL_HANDLE;
  DeviceApi api_;
  VkPipelineLayout layout_ = VK_NULL_HANDLE;
  std::vector<QueueSlot> all_queues_;
  QueueSlot tick_queue_;
  std::mutex mutex_;  // guards free_queues_, modules_, pipelines_
  std::vector<QueueSlot> free_queues_;
  std::uint32_t in_use_ = 0;  // queues handed to persistent dispatches
  std::map<const SpirvBlob*, VkShaderModule> modules_;
  std::map<PipelineKey, VkPipeline> pipelines_;
};

}  // namespace ringkernel::vulkan::detail
