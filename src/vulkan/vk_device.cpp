#include "vk_device.hpp"

#include <algorithm>
#include <cstring>

#include "ringkernel/vulkan/wire.hpp"
#include "spirv_reflect.hpp"

namespace ringkernel::vulkan::detail {

// ---- Buffer ----------------------------------------------------------------------------------

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    reset();
    ctx_ = std::exchange(o.ctx_, nullptr);
    buffer_ = std::exchange(o.buffer_, VK_NULL_HANDLE);
    memory_ = std::exchange(o.memory_, VK_NULL_HANDLE);
    mapped_ = std::exchange(o.mapped_, nullptr);
    address_ = std::exchange(o.address_, 0);
    size_ = std::exchange(o.size_, 0);
    placement_ = o.placement_;
  }
  return *this;
}

void Buffer::reset() noexcept {
  if (ctx_) {
    const DeviceApi& api = ctx_->api();
    if (mapped_) api.vkUnmapMemory(ctx_->device(), memory_);
    if (buffer_) api.vkDestroyBuffer(ctx_->device(), buffer_, nullptr);
    if (memory_) api.vkFreeMemory(ctx_->device(), memory_, nullptr);
  }
  ctx_ = nullptr;
  buffer_ = VK_NULL_HANDLE;
  memory_ = VK_NULL_HANDLE;
  mapped_ = nullptr;
  address_ = 0;
  size_ = 0;
}

// ---- checks of a program against its C++ registration -----------------------------------------

namespace {
/// Every RK_MESSAGE(T, i) of the shader must be message i of the registration and have its
/// size: a GLSL struct that drifted from its C++ declaration is refused at launch.
Result<void> check_program(const VulkanProgram& prog) {
  auto refl = SpirvReflection::parse(std::span<const std::uint32_t>(prog.spirv->words, prog.spirv->word_count));
  if (!refl) return Error(ErrorCode::LaunchFailed, std::string(prog.spirv->name) + ": " + refl.error().message());
  const std::string prefix = "rk_type_size_";
  bool has_request = false;
  for (const auto& [name, spec] : refl->spec_constants()) {
    if (name.rfind(prefix, 0) != 0 || spec.spec_id < kSpecTypeSize || spec.spec_id >= kSpecTypeSize + 100) continue;
    const std::string type = name.substr(prefix.size());
    const std::uint32_t index = spec.spec_id - kSpecTypeSize;
    has_request = has_request || index == 0;
    if (index >= prog.type_count)
      return Error(ErrorCode::LaunchFailed, std::string(prog.spirv->name) + " declares RK_MESSAGE(" + type + ", " +
                                                std::to_string(index) + ") but its RK_VULKAN_KERNEL registration names " +
                                                std::to_string(prog.type_count) +
                                                " message types (request, response, extras): add the C++ type");
    const SpirvStruct* ref = refl->find_struct(type + "Ref");
    if (!ref || ref->members.empty()) continue;  // declared but unused: nothing to compare
    const std::uint64_t glsl_size = ref->members[0].size;
    if (glsl_size != prog.types[index].size)
      return Error(ErrorCode::LaunchFailed, std::string(prog.spirv->name) + ": GLSL struct " + type + " (message " +
                                                std::to_string(index) + ") is " + std::to_string(glsl_size) +
                                                " bytes but the C++ message " + prog.types[index].name + " is " +
                                                std::to_string(prog.types[index].size) +
                                                " bytes: the two declarations differ");
  }
  if (!has_request)
    return Error(ErrorCode::LaunchFailed, std::string(prog.spirv->name) +
                                              " has no RK_MESSAGE(T, 0) for its request type (or was compiled without "
                                              "debug names, which the launch check reads)");
  return {};
}
}  // namespace

// ---- DeviceContext ---------------------------------------------------------------------------

Result<std::shared_ptr<DeviceContext>> DeviceContext::create(std::uint32_t device_index) {
  auto inst = instance();
  if (!inst) return inst.error();
  auto pd = physical_device(device_index);
  if (!pd) return pd.error();
  const PhysicalDevice& phys = **pd;

  std::shared_ptr<DeviceContext> ctx(new DeviceContext);
  ctx->physical_ = &phys;

  // Every queue of every compute-capable family: one per persistent kernel, plus one for
  // tick dispatches (a compute-only family's first queue where there is one).
  std::vector<VkDeviceQueueCreateInfo> queue_infos;
  std::vector<std::vector<float>> priorities;
  for (std::uint32_t f = 0; f < phys.queue_families.size(); ++f) {
    const VkQueueFamilyProperties& q = phys.queue_families[f];
    if (!(q.queueFlags & VK_QUEUE_COMPUTE_BIT) || q.queueCount == 0) continue;
    priorities.emplace_back(q.queueCount, 1.0f);
    VkDeviceQueueCreateInfo qi{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
    qi.queueFamilyIndex = f;
    qi.queueCount = q.queueCount;
    qi.pQueuePriorities = priorities.back().data();
    queue_infos.push_back(qi);
  }

  VkPhysicalDeviceShaderClockFeaturesKHR clock{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_CLOCK_FEATURES_KHR};
  clock.shaderDeviceClock = VK_TRUE;
  VkPhysicalDeviceVulkan12Features v12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  v12.pNext = &clock;
  v12.bufferDeviceAddress = VK_TRUE;
  v12.vulkanMemoryModel = VK_TRUE;
  v12.vulkanMemoryModelDeviceScope = VK_TRUE;
  v12.shaderBufferInt64Atomics = VK_TRUE;
  v12.shaderSharedInt64Atomics = VK_TRUE;
  v12.shaderInt8 = phys.int8;
  v12.storageBuffer8BitAccess = phys.storage8;
  VkPhysicalDeviceVulkan11Features v11{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
  v11.pNext = &v12;
  v11.storageBuffer16BitAccess = phys.storage16;
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  f2.pNext = &v11;
  f2.features.shaderInt64 = VK_TRUE;
  f2.features.shaderFloat64 = phys.float64;
  f2.features.shaderInt16 = phys.int16;

  const char* extensions[] = {VK_KHR_SHADER_CLOCK_EXTENSION_NAME};
  VkDeviceCreateInfo dci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  dci.pNext = &f2;
  dci.queueCreateInfoCount = static_cast<std::uint32_t>(queue_infos.size());
  dci.pQueueCreateInfos = queue_infos.data();
  dci.enabledExtensionCount = 1;
  dci.ppEnabledExtensionNames = extensions;
  if (VkResult r = (*inst)->api.vkCreateDevice(phys.handle, &dci, nullptr, &ctx->device_); r != VK_SUCCESS)
    return vk_error(ErrorCode::BackendUnavailable, std::string("vkCreateDevice on ") + phys.properties.deviceName, r);

  auto gdpa = (*inst)->api.vkGetDeviceProcAddr;
#define RK_VK_LOAD(name) ctx->api_.name = reinterpret_cast<PFN_##name>(gdpa(ctx->device_, #name));
  RK_VK_DEVICE_FUNCTIONS(RK_VK_LOAD)
#undef RK_VK_LOAD

  for (const VkDeviceQueueCreateInfo& qi : queue_infos) {
    for (std::uint32_t i = 0; i < qi.queueCount; ++i) {
      QueueSlot s{qi.queueFamilyIndex, i, VK_NULL_HANDLE};
      ctx->api_.vkGetDeviceQueue(ctx->device_, s.family, s.index, &s.queue);
      ctx->all_queues_.push_back(s);
    }
  }
  auto compute_only = std::find_if(ctx->all_queues_.begin(), ctx->all_queues_.end(), [&](const QueueSlot& s) {
    return !(phys.queue_families[s.family].queueFlags & VK_QUEUE_GRAPHICS_BIT);
  });
  ctx->tick_queue_ = compute_only != ctx->all_queues_.end() ? *compute_only : ctx->all_queues_.front();
  for (const QueueSlot& s : ctx->all_queues_)
    if (s.family != ctx->tick_queue_.family || s.index != ctx->tick_queue_.index) ctx->free_queues_.push_back(s);

  VkPushConstantRange push{VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(std::uint64_t)};
  VkPipelineLayoutCreateInfo lci{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
  lci.pushConstantRangeCount = 1;
  lci.pPushConstantRanges = &push;
  if (VkResult r = ctx->api_.vkCreatePipelineLayout(ctx->device_, &lci, nullptr, &ctx->layout_); r != VK_SUCCESS)
    return vk_error(ErrorCode::BackendError, "vkCreatePipelineLayout", r);
  return ctx;
}

DeviceContext::~DeviceContext() {
  if (!device_) return;
  if (wedged.load()) return;  // a dispatch may still run: leave the device to the process exit
  api_.vkDeviceWaitIdle(device_);
  for (auto& [key, p] : pipelines_) api_.vkDestroyPipeline(device_, p, nullptr);
  for (auto& [blob, m] : modules_) api_.vkDestroyShaderModule(device_, m, nullptr);
  if (layout_) api_.vkDestroyPipelineLayout(device_, layout_, nullptr);
  api_.vkDestroyDevice(device_, nullptr);
}

std::string DeviceContext::description() const {
  const char* type = "other";
  switch (physical_->properties.deviceType) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: type = "discrete GPU"; break;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: type = "integrated GPU"; break;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: type = "virtual GPU"; break;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: type = "CPU"; break;
    default: break;
  }
  return std::string(physical_->properties.deviceName) + " (Vulkan " + type + ", " + physical_->driver + ")";
}

Result<Buffer> DeviceContext::allocate(VkDeviceSize size, Placement want) const {
  VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bci.size = size;
  bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT;
  bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  Buffer b;
  b.ctx_ = this;
  b.size_ = size;
  if (VkResult r = api_.vkCreateBuffer(device_, &bci, nullptr, &b.buffer_); r != VK_SUCCESS)
    return vk_error(ErrorCode::OutOfMemory, "vkCreateBuffer", r);
  VkMemoryRequirements req;
  api_.vkGetBufferMemoryRequirements(device_, b.buffer_, &req);

  const VkMemoryPropertyFlags host = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  const VkMemoryPropertyFlags bar = host | VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
  const VkPhysicalDeviceMemoryProperties& mp = physical_->memory;
  // Best memory type for a placement: -1 when none fits.
  auto find = [&](Placement p) -> int {
    int best = -1, best_score = -1;
    for (std::uint32_t i = 0; i < mp.memoryTypeCount; ++i) {
      if (!(req.memoryTypeBits & (1u << i))) continue;
      const VkMemoryPropertyFlags f = mp.memoryTypes[i].propertyFlags;
      int score = -1;
      if (p == Placement::DeviceLocal) {
        if ((f & bar) == bar) score = 1;
      } else if ((f & host) == host) {
        // System memory, cached for the host's reads; a device-local type only where the
        // device has nothing else (unified memory, CPU devices).
        score = (f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) ? 0 : (f & VK_MEMORY_PROPERTY_HOST_CACHED_BIT) ? 3 : 2;
      }
      if (score > best_score) best = static_cast<int>(i), best_score = score;
    }
    return best;
  };

  std::vector<Placement> tries;
  if (want == Placement::Auto) tries = {Placement::DeviceLocal, Placement::Host};
  else tries = {want};
  VkResult last = VK_ERROR_OUT_OF_DEVICE_MEMORY;
  for (Placement p : tries) {
    const int type = find(p);
    if (type < 0) continue;
    VkMemoryAllocateFlagsInfo flags{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO};
    flags.flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT;
    VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    ai.pNext = &flags;
    ai.allocationSize = req.size;
    ai.memoryTypeIndex = static_cast<std::uint32_t>(type);
    last = api_.vkAllocateMemory(device_, &ai, nullptr, &b.memory_);
    if (last != VK_SUCCESS) continue;
    b.placement_ = (mp.memoryTypes[type].propertyFlags & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) ? Placement::DeviceLocal
                                                                                              : Placement::Host;
    if (VkResult r = api_.vkBindBufferMemory(device_, b.buffer_, b.memory_, 0); r != VK_SUCCESS)
      return vk_error(ErrorCode::BackendError, "vkBindBufferMemory", r);
    if (VkResult r = api_.vkMapMemory(device_, b.memory_, 0, VK_WHOLE_SIZE, 0, &b.mapped_); r != VK_SUCCESS)
      return vk_error(ErrorCode::BackendError, "vkMapMemory", r);
    std::memset(b.mapped_, 0, size);
    VkBufferDeviceAddressInfo dai{VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO};
    dai.buffer = b.buffer_;
    b.address_ = api_.vkGetBufferDeviceAddress(device_, &dai);
    return b;
  }
  if (want != Placement::Auto && find(want) < 0)
    return Error(ErrorCode::BackendUnavailable, std::string("the device offers no ") +
                                                    (want == Placement::DeviceLocal ? "DEVICE_LOCAL | HOST_VISIBLE | HOST_COHERENT"
                                                                                    : "HOST_VISIBLE | HOST_COHERENT") +
                                                    " memory for a ring placed " + to_string(want));
  return vk_error(ErrorCode::OutOfMemory, "vkAllocateMemory of " + std::to_string(size) + " bytes", last);
}

Result<VkPipeline> DeviceContext::pipeline(const PipelineKey& key) {
  std::lock_guard lock(mutex_);
  if (auto it = pipelines_.find(key); it != pipelines_.end()) return it->second;
  const VulkanProgram& prog = *key.program;

  VkShaderModule module = VK_NULL_HANDLE;
  if (auto it = modules_.find(prog.spirv); it != modules_.end()) {
    module = it->second;
  } else {
    if (auto ok = check_program(prog); !ok) return ok.error();
    VkShaderModuleCreateInfo mci{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
    mci.codeSize = prog.spirv->word_count * sizeof(std::uint32_t);
    mci.pCode = prog.spirv->words;
    if (VkResult r = api_.vkCreateShaderModule(device_, &mci, nullptr, &module); r != VK_SUCCESS)
      return vk_error(ErrorCode::LaunchFailed, std::string("vkCreateShaderModule for ") + prog.spirv->name, r);
    modules_.emplace(prog.spirv, module);
  }

  // Specialisation data: the ids of ringkernel_kernel.glsl (wire.hpp SpecId).
  struct Fixed {
    std::uint32_t workgroup_size, mode;
    VkBool32 persistent;
    std::uint32_t shared_words, grid_size, block_dim;
  } fixed{key.workgroup_size,   static_cast<std::uint32_t>(key.mode), key.persistent ? VK_TRUE : VK_FALSE,
          key.shared_words, key.grid_size,                          key.block_size};
  std::vector<std::byte> data(sizeof fixed);
  std::memcpy(data.data(), &fixed, sizeof fixed);
  std::vector<VkSpecializationMapEntry> entries = {
      {kSpecBlockSize, offsetof(Fixed, workgroup_size), 4}, {kSpecMode, offsetof(Fixed, mode), 4},
      {kSpecPersistent, offsetof(Fixed, persistent), 4},   {kSpecSharedWords, offsetof(Fixed, shared_words), 4},
      {kSpecGridSize, offsetof(Fixed, grid_size), 4},       {kSpecBlockDim, offsetof(Fixed, block_dim), 4}};
  for (std::uint32_t i = 0; i < prog.type_count; ++i) {
    const std::size_t id_at = data.size();
    data.resize(id_at + 12);
    std::memcpy(data.data() + id_at, &prog.types[i].type_id, 8);
    std::memcpy(data.data() + id_at + 8, &prog.types[i].size, 4);
    entries.push_back({kSpecTypeId + i, static_cast<std::uint32_t>(id_at), 8});
    entries.push_back({kSpecTypeSize + i, static_cast<std::uint32_t>(id_at + 8), 4});
  }
  VkSpecializationInfo spec{static_cast<std::uint32_t>(entries.size()), entries.data(), data.size(), data.data()};

  VkComputePipelineCreateInfo pci{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  pci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
  pci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  pci.stage.module = module;
  pci.stage.pName = "main";
  pci.stage.pSpecializationInfo = &spec;
  pci.layout = layout_;
  VkPipeline p = VK_NULL_HANDLE;
  if (VkResult r = api_.vkCreateComputePipelines(device_, VK_NULL_HANDLE, 1, &pci, nullptr, &p); r != VK_SUCCESS)
    return vk_error(ErrorCode::LaunchFailed, std::string("building the compute pipeline of ") + prog.spirv->name, r);
  pipelines_.emplace(key, p);
  return p;
}

std::optional<QueueSlot> DeviceContext::acquire_queue(std::uint32_t limit) {
  std::lock_guard lock(mutex_);
  if (free_queues_.empty() || in_use_ >= limit) return std::nullopt;
  QueueSlot q = free_queues_.back();
  free_queues_.pop_back();
  ++in_use_;
  return q;
}

void DeviceContext::release_queue(const QueueSlot& q) {
  std::lock_guard lock(mutex_);
  free_queues_.push_back(q);
  --in_use_;
}

}  // namespace ringkernel::vulkan::detail
