#include "vk_api.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <mutex>

namespace ringkernel::vulkan::detail {

const char* result_name(VkResult r) noexcept {
  switch (r) {
#define RK_CASE(x) \
  case x: return #x;
    RK_CASE(VK_SUCCESS)
    RK_CASE(VK_NOT_READY)
    RK_CASE(VK_TIMEOUT)
    RK_CASE(VK_INCOMPLETE)
    RK_CASE(VK_ERROR_OUT_OF_HOST_MEMORY)
    RK_CASE(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    RK_CASE(VK_ERROR_INITIALIZATION_FAILED)
    RK_CASE(VK_ERROR_DEVICE_LOST)
    RK_CASE(VK_ERROR_MEMORY_MAP_FAILED)
    RK_CASE(VK_ERROR_LAYER_NOT_PRESENT)
    RK_CASE(VK_ERROR_EXTENSION_NOT_PRESENT)
    RK_CASE(VK_ERROR_FEATURE_NOT_PRESENT)
    RK_CASE(VK_ERROR_INCOMPATIBLE_DRIVER)
    RK_CASE(VK_ERROR_TOO_MANY_OBJECTS)
    RK_CASE(VK_ERROR_UNKNOWN)
    RK_CASE(VK_ERROR_INVALID_SHADER_NV)
#undef RK_CASE
    default: return "VkResult (unlisted)";
  }
}

Error vk_error(ErrorCode code, const std::string& what, VkResult r) {
  std::string msg = what + " failed: " + result_name(r) + " (" + std::to_string(static_cast<int>(r)) + ")";
  if (r == VK_ERROR_DEVICE_LOST) msg += "; the Vulkan device was lost (a shader fault or a driver reset): recreate the runtime";
  if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY) code = ErrorCode::OutOfMemory;
  return Error(code, std::move(msg), static_cast<std::int64_t>(r));
}

namespace {

std::string version_string(std::uint32_t v) {
  return std::to_string(VK_API_VERSION_MAJOR(v)) + "." + std::to_string(VK_API_VERSION_MINOR(v)) + "." +
         std::to_string(VK_API_VERSION_PATCH(v));
}

int type_rank(VkPhysicalDeviceType t) noexcept {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
    default: return 4;
  }
}

bool has_extension(const std::vector<VkExtensionProperties>& exts, const char* name) {
  return std::any_of(exts.begin(), exts.end(), [&](const VkExtensionProperties& e) { return std::strcmp(e.extensionName, name) == 0; });
}

PhysicalDevice describe(const Instance& inst, VkPhysicalDevice pd) {
  PhysicalDevice d;
  d.handle = pd;
  inst.api.vkGetPhysicalDeviceProperties(pd, &d.properties);
  inst.api.vkGetPhysicalDeviceMemoryProperties(pd, &d.memory);
  std::uint32_t nq = 0;
  inst.api.vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, nullptr);
  d.queue_families.resize(nq);
  inst.api.vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, d.queue_families.data());
  d.is_cpu = d.properties.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;

  std::vector<std::string> missing;
  if (d.properties.apiVersion < VK_API_VERSION_1_2) {
    d.reason = "Vulkan " + version_string(d.properties.apiVersion) + " device; the backend needs Vulkan 1.2";
    d.driver = "?";
    return d;
  }
  std::uint32_t next = 0;
  inst.api.vkEnumerateDeviceExtensionProperties(pd, nullptr, &next, nullptr);
  std::vector<VkExtensionProperties> exts(next);
  inst.api.vkEnumerateDeviceExtensionProperties(pd, nullptr, &next, exts.data());
  const bool clock_ext = has_extension(exts, VK_KHR_SHADER_CLOCK_EXTENSION_NAME);

  VkPhysicalDeviceSubgroupProperties subgroup{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceDriverProperties driver{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
  driver.pNext = &subgroup;
  VkPhysicalDeviceProperties2 props2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  props2.pNext = &driver;
  inst.api.vkGetPhysicalDeviceProperties2(pd, &props2);
  d.driver = std::string(driver.driverName) + " " + driver.driverInfo;
  d.subgroup_size = subgroup.subgroupSize;

  VkPhysicalDeviceShaderClockFeaturesKHR clock{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_CLOCK_FEATURES_KHR};
  VkPhysicalDeviceVulkan12Features v12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  VkPhysicalDeviceVulkan11Features v11{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
  v11.pNext = &v12;
  if (clock_ext) v12.pNext = &clock;
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  f2.pNext = &v11;
  inst.api.vkGetPhysicalDeviceFeatures2(pd, &f2);

  if (!f2.features.shaderInt64) missing.push_back("shaderInt64");
  if (!v12.bufferDeviceAddress) missing.push_back("bufferDeviceAddress");
  if (!v12.vulkanMemoryModel) missing.push_back("vulkanMemoryModel");
  if (!v12.vulkanMemoryModelDeviceScope) missing.push_back("vulkanMemoryModelDeviceScope");
  if (!v12.shaderBufferInt64Atomics) missing.push_back("shaderBufferInt64Atomics");
  if (!v12.shaderSharedInt64Atomics) missing.push_back("shaderSharedInt64Atomics");
  if (!clock_ext) missing.push_back(VK_KHR_SHADER_CLOCK_EXTENSION_NAME);
  else if (!clock.shaderDeviceClock) missing.push_back("shaderDeviceClock");
  if (!(subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT)) missing.push_back("subgroup operations in compute shaders");
  const VkSubgroupFeatureFlags ops = VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT;
  if ((subgroup.supportedOperations & ops) != ops) missing.push_back("subgroup arithmetic");
  const bool compute_queue = std::any_of(d.queue_families.begin(), d.queue_families.end(),
                                         [](const VkQueueFamilyProperties& q) { return (q.queueFlags & VK_QUEUE_COMPUTE_BIT) != 0; });
  if (!compute_queue) missing.push_back("a compute queue");

  d.float64 = f2.features.shaderFloat64;
  d.int16 = f2.features.shaderInt16;
  d.int8 = v12.shaderInt8;
  d.storage8 = v12.storageBuffer8BitAccess;
  d.storage16 = v11.storageBuffer16BitAccess;

  if (missing.empty()) {
    d.suitable = true;
  } else {
    d.reason = "lacks ";
    for (std::size_t i = 0; i < missing.size(); ++i) d.reason += (i ? ", " : "") + missing[i];
  }
  return d;
}

struct InstanceHolder {
  std::once_flag once;
  Instance instance;
  std::string error;  // set when there is no instance
};

InstanceHolder& holder() {
  static InstanceHolder* h = new InstanceHolder;  // lives for the process (drivers outlive static destruction)
  return *h;
}

void create_instance(InstanceHolder& h) {
  void* lib = ::dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) lib = ::dlopen("libvulkan.so", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    h.error = "no Vulkan loader: libvulkan.so.1 could not be opened (install the Vulkan loader, e.g. the libvulkan1 "
              "package, or put it on LD_LIBRARY_PATH)";
    return;
  }
  auto gipa = reinterpret_cast<PFN_vkGetInstanceProcAddr>(::dlsym(lib, "vkGetInstanceProcAddr"));
  if (!gipa) {
    h.error = "the Vulkan loader has no vkGetInstanceProcAddr";
    return;
  }
  auto create = reinterpret_cast<PFN_vkCreateInstance>(gipa(VK_NULL_HANDLE, "vkCreateInstance"));
  auto version = reinterpret_cast<PFN_vkEnumerateInstanceVersion>(gipa(VK_NULL_HANDLE, "vkEnumerateInstanceVersion"));
  std::uint32_t api = VK_API_VERSION_1_0;
  if (version) version(&api);
  if (!create || api < VK_API_VERSION_1_2) {
    h.error = "the Vulkan loader supports Vulkan " + version_string(api) + "; the backend needs 1.2";
    return;
  }
  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = "ringkernel";
  app.pEngineName = "ringkernel";
  app.apiVersion = VK_API_VERSION_1_2;
  VkInstanceCreateInfo ci{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  ci.pApplicationInfo = &app;
  VkInstance inst = VK_NULL_HANDLE;
  if (VkResult r = create(&ci, nullptr, &inst); r != VK_SUCCESS) {
    h.error = std::string("vkCreateInstance failed: ") + result_name(r) +
              (r == VK_ERROR_INCOMPATIBLE_DRIVER ? " (no Vulkan driver is installed, or the loader does not find its ICD "
                                                   "file: check VK_DRIVER_FILES / /usr/share/vulkan/icd.d)"
                                                 : "");
    return;
  }
  Instance& I = h.instance;
  I.handle = inst;
  I.get_instance_proc = gipa;
#define RK_VK_LOAD(name) I.api.name = reinterpret_cast<PFN_##name>(gipa(inst, #name));
  RK_VK_INSTANCE_FUNCTIONS(RK_VK_LOAD)
#undef RK_VK_LOAD
  std::uint32_t n = 0;
  if (VkResult r = I.api.vkEnumeratePhysicalDevices(inst, &n, nullptr); r != VK_SUCCESS) {
    h.error = std::string("vkEnumeratePhysicalDevices failed: ") + result_name(r);
    return;
  }
  std::vector<VkPhysicalDevice> pds(n);
  I.api.vkEnumeratePhysicalDevices(inst, &n, pds.data());
  for (VkPhysicalDevice pd : pds) I.devices.push_back(describe(I, pd));
  // Selection order: suitable devices first, discrete GPUs first, then enumeration order.
  std::stable_sort(I.devices.begin(), I.devices.end(), [](const PhysicalDevice& a, const PhysicalDevice& b) {
    if (a.suitable != b.suitable) return a.suitable;
    return type_rank(a.properties.deviceType) < type_rank(b.properties.deviceType);
  });
}

}  // namespace

Result<const Instance*> instance() {
  InstanceHolder& h = holder();
  std::call_once(h.once, [&] { create_instance(h); });
  if (!h.error.empty()) return Error(ErrorCode::BackendUnavailable, h.error);
  return &h.instance;
}

Result<const PhysicalDevice*> physical_device(std::uint32_t index) {
  auto inst = instance();
  if (!inst) return inst.error();
  const auto& devs = (*inst)->devices;
  if (devs.empty()) return Error(ErrorCode::BackendUnavailable, "the Vulkan loader found no device (no driver installed?)");
  if (index >= devs.size())
    return Error(ErrorCode::BackendUnavailable, "Vulkan device index " + std::to_string(index) + " is out of range (" +
                                                    std::to_string(devs.size()) + " device(s))");
  const PhysicalDevice& d = devs[index];
  if (!d.suitable) {
    std::string msg = "no suitable Vulkan device: ";
    for (std::size_t i = 0; i < devs.size(); ++i)
      msg += (i ? "; " : "") + std::string(devs[i].properties.deviceName) + " " + devs[i].reason;
    if (index != 0) msg = "Vulkan device " + std::to_string(index) + " (" + d.properties.deviceName + ") " + d.reason;
    return Error(ErrorCode::BackendUnavailable, msg);
  }
  return &d;
}

}  // namespace ringkernel::vulkan::detail
