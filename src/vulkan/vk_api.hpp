// Private: the Vulkan entry points the backend uses, loaded at run time from the loader
// library (libvulkan.so.1), so a program linking ringkernel::vulkan starts (and reports a
// clear reason) on a machine without Vulkan; and the process-wide instance with the list of
// devices in selection order.
#pragma once

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ringkernel/error.hpp"

namespace ringkernel::vulkan::detail {

#define RK_VK_INSTANCE_FUNCTIONS(X)            \
  X(vkDestroyInstance)                         \
  X(vkEnumeratePhysicalDevices)                \
  X(vkGetPhysicalDeviceProperties)             \
  X(vkGetPhysicalDeviceProperties2)            \
  X(vkGetPhysicalDeviceFeatures2)              \
  X(vkGetPhysicalDeviceQueueFamilyProperties)  \
  X(vkGetPhysicalDeviceMemoryProperties)       \
  X(vkEnumerateDeviceExtensionProperties)      \
  X(vkCreateDevice)                            \
  X(vkGetDeviceProcAddr)

#define RK_VK_DEVICE_FUNCTIONS(X)      \
  X(vkDestroyDevice)                   \
  X(vkGetDeviceQueue)                  \
  X(vkQueueSubmit)                     \
  X(vkQueueWaitIdle)                   \
  X(vkDeviceWaitIdle)                  \
  X(vkCreateBuffer)                    \
  X(vkDestroyBuffer)                   \
  X(vkGetBufferMemoryRequirements)     \
  X(vkAllocateMemory)                  \
  X(vkFreeMemory)                      \
  X(vkBindBufferMemory)                \
  X(vkMapMemory)                       \
  X(vkUnmapMemory)                     \
  X(vkGetBufferDeviceAddress)          \
  X(vkCreateShaderModule)              \
  X(vkDestroyShaderModule)             \
  X(vkCreatePipelineLayout)            \
  X(vkDestroyPipelineLayout)           \
  X(vkCreateComputePipelines)          \
  X(vkDestroyPipeline)                 \
  X(vkCreateCommandPool)               \
  X(vkDestroyCommandPool)              \
  X(vkAllocateCommandBuffers)          \
  X(vkFreeCommandBuffers)              \
  X(vkBeginCommandBuffer)              \
  X(vkEndCommandBuffer)                \
  X(vkCmdBindPipeline)                 \
  X(vkCmdPushConstants)                \
  X(vkCmdDispatch)                     \
  X(vkCmdPipelineBarrier)              \
  X(vkCreateFence)                     \
  X(vkDestroyFence)                    \
  X(vkResetFences)                     \
  X(vkWaitForFences)                   \
  X(vkGetFenceStatus)

#define RK_VK_DECLARE(name) PFN_##name name = nullptr;
struct InstanceApi {
  RK_VK_INSTANCE_FUNCTIONS(RK_VK_DECLARE)
};
struct DeviceApi {
  RK_VK_DEVICE_FUNCTIONS(RK_VK_DECLARE)
};
#undef RK_VK_DECLARE

/// Name of a VkResult ("VK_ERROR_DEVICE_LOST").
const char* result_name(VkResult r) noexcept;
/// An Error carrying the VkResult as native code: "<what> failed: VK_ERROR_…".
Error vk_error(ErrorCode code, const std::string& what, VkResult r);

/// A physical device and what the backend needs to know about it.
struct PhysicalDevice {
  VkPhysicalDevice handle = VK_NULL_HANDLE;
  VkPhysicalDeviceProperties properties{};
  VkPhysicalDeviceMemoryProperties memory{};
  std::vector<VkQueueFamilyProperties> queue_families;
  std::string driver;            ///< driver name and info
  std::uint32_t subgroup_size = 0;
  bool is_cpu = false;           ///< a CPU implementation (lavapipe, SwiftShader)
  bool suitable = false;
  std::string reason;            ///< what is missing when !suitable
  // Optional features enabled when present.
  bool float64 = false, int16 = false, int8 = false, storage8 = false, storage16 = false;
};

/// The process-wide instance (created once, kept for the process lifetime).
struct Instance {
  VkInstance handle = VK_NULL_HANDLE;
  PFN_vkGetInstanceProcAddr get_instance_proc = nullptr;
  InstanceApi api;
  std::vector<PhysicalDevice> devices;  ///< suitable first, discrete GPUs first among them
};

/// The instance, or why there is none (no loader, no driver): BackendUnavailable.
Result<const Instance*> instance();

/// Device `index` of instance()->devices if it is suitable; BackendUnavailable otherwise.
Result<const PhysicalDevice*> physical_device(std::uint32_t index);

}  // namespace ringkernel::vulkan::detail
