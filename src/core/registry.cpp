#include "ringkernel/registry.hpp"

#include <algorithm>
#include <mutex>
#include <thread>

#include <unistd.h>

#include "ringkernel/availability.hpp"
#include "ringkernel/cuda/program.hpp"

namespace ringkernel {

namespace {
struct Registry {
  std::mutex mutex;
  std::vector<KernelInfo> kernels;
  std::vector<const detail::BackendPlugin*> plugins;
};
Registry& registry() {
  static Registry r;  // function-local: safe from static-initialisation order
  return r;
}
}  // namespace

int detail::register_kernel(const KernelInfo& info) noexcept {
  if (info.cuda != nullptr && info.cuda->plugin != nullptr) register_backend_plugin(info.cuda->plugin);
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  for (KernelInfo& k : r.kernels) {
    if (k.name == info.name) {
      // Same name from another translation unit: merge the backends it brings. The
      // message types must agree; a conflicting registration is ignored (and visible in
      // registered_kernels(), which still lists the first one).
      if (k.request_type != info.request_type || k.response_type != info.response_type) return 0;
      if (!k.cpu) k.cpu = info.cpu;
      if (!k.cuda) k.cuda = info.cuda;
      if (!k.vulkan) k.vulkan = info.vulkan;
      k.actor_addressable = k.actor_addressable || info.actor_addressable;
      return 0;
    }
  }
  r.kernels.push_back(info);
  return 0;
}

std::vector<KernelInfo> registered_kernels() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::vector<KernelInfo> out = r.kernels;
  std::sort(out.begin(), out.end(), [](const KernelInfo& a, const KernelInfo& b) { return a.name < b.name; });
  return out;
}

const KernelInfo* find_kernel(std::string_view name) noexcept {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  for (const KernelInfo& k : r.kernels)
    if (k.name == name) return &k;  // elements are never erased; push_back happens at static init
  return nullptr;
}

void detail::register_backend_plugin(const BackendPlugin* plugin) noexcept {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  for (const BackendPlugin* p : r.plugins)
    if (p->backend == plugin->backend) return;
  r.plugins.push_back(plugin);
}

const detail::BackendPlugin* detail::find_backend_plugin(Backend b) noexcept {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  for (const BackendPlugin* p : r.plugins)
    if (p->backend == b) return p;
  return nullptr;
}

BackendAvailability availability(Backend b) { return availability(b, 0); }

BackendAvailability availability(Backend b, std::uint32_t device_index) {
  BackendAvailability a;
  a.backend = b;
  switch (b) {
    case Backend::Cpu: {
      a.available = true;
      a.device = "CPU";
      a.device_count = 1;
      a.compute_units = std::max(1u, std::thread::hardware_concurrency());
      const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
      if (pages > 0 && page > 0) a.memory_bytes = static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
      return a;
    }
    case Backend::Metal:
      a.reason = "Metal is not supported by the C++ library (Apple GPUs are reached through Vulkan via a "
                 "portability layer)";
      return a;
    case Backend::Auto:
      a.available = true;
      a.device = "first available of CUDA, Vulkan, CPU";
      return a;
    case Backend::Cuda:
    case Backend::Vulkan:
      break;
  }
  if (const auto* p = detail::find_backend_plugin(b)) return p->probe(device_index);
  a.reason = b == Backend::Cuda
                 ? "this program links no CUDA backend: configure with RINGKERNEL_ENABLE_CUDA=ON (nvcc found), link "
                   "ringkernel::cuda and compile the kernels' translation units with nvcc"
                 : "this program links no Vulkan backend: configure with RINGKERNEL_ENABLE_VULKAN=ON and link "
                   "ringkernel::vulkan";
  return a;
}

std::vector<BackendAvailability> availability() {
  return {availability(Backend::Cpu), availability(Backend::Cuda), availability(Backend::Vulkan),
          availability(Backend::Metal)};
}

bool is_available(Backend b) { return availability(b).available; }

}  // namespace ringkernel
