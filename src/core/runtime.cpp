#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "ringkernel/registry.hpp"
#include "runtime_core.hpp"

namespace ringkernel {
namespace detail {

RuntimeCore::RuntimeCore(Backend req, std::uint32_t dev, std::uint64_t node_id, std::uint64_t max_skew_us)
    : requested(req), device_index(dev), clock(node_id, max_skew_us), broker(std::make_unique<Broker>(clock)),
      slot_used_(kMaxKernels, false) {
  cpu_ = make_cpu_runtime();
}

RuntimeCore::~RuntimeCore() { (void)shutdown(KernelHandle::kDefaultTimeout); }

Result<RingKernelRuntime*> RuntimeCore::runtime_for(Backend b) {
  std::lock_guard lock(runtimes_mutex_);
  std::unique_ptr<RingKernelRuntime>* slot = nullptr;
  switch (b) {
    case Backend::Cpu: return cpu_.get();
    case Backend::Cuda: slot = &cuda_; break;
    case Backend::Vulkan: slot = &vulkan_; break;
    default:
      return Error(ErrorCode::BackendUnavailable, std::string("backend ") + to_string(b) + " cannot run kernels: " +
                                                      availability(b, device_index).reason);
  }
  if (*slot) return slot->get();
  const BackendPlugin* plugin = find_backend_plugin(b);
  if (!plugin) return Error(ErrorCode::BackendUnavailable, availability(b, device_index).reason);
  auto rt = plugin->create(device_index);
  if (!rt) return rt.error();
  *slot = std::move(*rt);
  return slot->get();
}

Result<Backend> RuntimeCore::choose_backend(const KernelInfo& info) {
  auto unavailable = [&](Backend b) -> Error {
    const BackendAvailability a = availability(b, device_index);
    if (!a.available)
      return Error(ErrorCode::BackendUnavailable, std::string(to_string(b)) + " backend unavailable: " + a.reason);
    return Error(ErrorCode::BackendUnavailable,
                 "kernel '" + std::string(info.name) + "' has no " + to_string(b) + " build" +
                     (b == Backend::Cuda ? ": compile the translation unit that registers it (RK_KERNEL) with nvcc"
                                         : ": register a Vulkan handler under the same name"));
  };
  switch (requested) {
    case Backend::Cpu: return Backend::Cpu;
    case Backend::Metal: return unavailable(Backend::Metal);
    case Backend::Cuda:
    case Backend::Vulkan:
      if (!info.has_backend(requested) || !availability(requested, device_index).available) return unavailable(requested);
      return requested;
    case Backend::Auto:
      if (const auto gpu = auto_gpu(&info)) return gpu->backend;
      return Backend::Cpu;
  }
  return Backend::Cpu;
}

std::optional<BackendAvailability> RuntimeCore::auto_gpu(std::uint32_t device, const KernelInfo* info) {
  for (Backend b : {Backend::Cuda, Backend::Vulkan}) {
    if (info && !info->has_backend(b)) continue;
    BackendAvailability a = availability(b, device);
    if (a.available && !a.software) return a;
  }
  return std::nullopt;
}

Backend RuntimeCore::gpu_or_cpu() const {
  if (requested != Backend::Auto) return requested;
  const auto gpu = auto_gpu(nullptr);
  return gpu ? gpu->backend : Backend::Cpu;
}

std::optional<std::uint64_t> RuntimeCore::free_memory() {
  auto rt = runtime_for(gpu_or_cpu());
  if (!rt) return std::nullopt;
  return (*rt)->free_memory();
}

Result<KernelHandle> RuntimeCore::launch(std::string_view name, const LaunchOptions& opt) {
  const KernelInfo* info = find_kernel(name);
  if (!info) {
    std::string known;
    for (const KernelInfo& k : registered_kernels()) known += (known.empty() ? "" : ", ") + std::string(k.name);
    return Error(ErrorCode::UnknownKernel, "no kernel is registered as '" + std::string(name) + "' (registered: " +
                                               (known.empty() ? "none" : known) + ")");
  }
  // Options that no backend can honour.
  if (opt.block_size == 0 || opt.grid_size == 0)
    return Error(ErrorCode::InvalidArgument, "grid_size and block_size must be at least 1");
  if (opt.block_size > 1024)
    return Error(ErrorCode::InvalidArgument, "block_size " + std::to_string(opt.block_size) + " exceeds 1024 threads");
  if (!is_power_of_two(opt.input_queue_capacity) || !is_power_of_two(opt.output_queue_capacity) ||
      opt.input_queue_capacity < 2 || opt.output_queue_capacity < 2)
    return Error(ErrorCode::InvalidArgument, "queue capacities must be powers of two, at least 2 (got " +
                                                 std::to_string(opt.input_queue_capacity) + " / " +
                                                 std::to_string(opt.output_queue_capacity) + ")");
  if (opt.enable_k2k && (!is_power_of_two(opt.k2k_queue_capacity) || opt.k2k_queue_capacity < 2))
    return Error(ErrorCode::InvalidArgument, "k2k_queue_capacity must be a power of two, at least 2");
  if (opt.mode == KernelMode::Actor && opt.grid_size != 1)
    return Error(ErrorCode::InvalidArgument,
                 "actor mode runs one actor per launch on one block (grid_size 1); use parallel mode to spread "
                 "messages over several blocks");

  if (opt.actor_slots != 0) {
    if (!info->actor_addressable)
      return Error(ErrorCode::InvalidArgument,
                   "kernel '" + std::string(name) + "' cannot host an actor pool: its request type " +
                       std::string(info->request_name) +
                       " has no `std::uint32_t actor` field to say which actor a message is for");
    if (opt.mode != KernelMode::Actor)
      return Error(ErrorCode::InvalidArgument, "actor pools run in actor mode (LaunchOptions::mode)");
    if (opt.actor_slots > (1u << 20))
      return Error(ErrorCode::InvalidArgument, "actor_slots " + std::to_string(opt.actor_slots) + " exceeds 1048576");
  }
  auto backend = choose_backend(*info);
  if (!backend) return backend.error();
  auto rt = runtime_for(*backend);
  if (!rt) return rt.error();

  auto core = std::make_unique<KernelCore>();
  core->id = KernelId{opt.kernel_id.empty() ? std::string(name) : opt.kernel_id};
  core->registered_name = std::string(name);
  core->backend = *backend;
  core->options = opt;
  core->request_type = info->request_type;
  core->response_type = info->response_type;
  core->request_size = info->request_size;
  core->response_size = info->response_size;
  core->host_clock = &clock;
  core->broker = broker.get();
  {
    std::lock_guard lock(mutex_);
    for (KernelCore* k : live_)
      if (k->id == core->id)
        return Error(ErrorCode::KernelExists, "a kernel with id '" + core->id.value +
                                                  "' is already launched; set LaunchOptions::kernel_id to launch "
                                                  "another instance");
    auto it = std::find(slot_used_.begin(), slot_used_.end(), false);
    if (it == slot_used_.end())
      return Error(ErrorCode::LaunchFailed, "too many kernels (" + std::to_string(kMaxKernels) + ") in one runtime");
    *it = true;
    core->slot = static_cast<std::uint32_t>(it - slot_used_.begin());
  }
  auto release_slot = [&] {
    std::lock_guard lock(mutex_);
    slot_used_[core->slot] = false;
  };
  auto impl = (*rt)->create(*core);
  if (!impl) {
    release_slot();
    return impl.error();
  }
  core->impl = std::move(*impl);
  core->producer = RingProducer<>(core->input);
  core->producer.set_store_fence(core->input_write_combining);
  core->consumer = RingConsumer<>(core->output);
  if (opt.auto_activate) store_release(&core->control->is_active, 1u);
  if (auto started = core->impl->start(); !started) {
    core->impl.reset();
    release_slot();
    return started.error();
  }
  core->state.store(opt.auto_activate ? KernelState::Active : KernelState::Launched);
  core->runtime = this;
  {
    std::lock_guard lock(mutex_);
    live_.push_back(core.get());
  }
  return KernelHandle(std::move(core));
}

Result<void> RuntimeCore::connect(KernelCore& from, KernelCore& to) {
  if (from.runtime != this || to.runtime != this)
    return Error(ErrorCode::K2KError, "connect: both kernels must belong to this runtime");
  if (!from.options.enable_k2k || !to.options.enable_k2k)
    return Error(ErrorCode::K2KError, "connect: launch both kernels with LaunchOptions::enable_k2k = true");
  if (from.backend != to.backend)
    return Error(ErrorCode::K2KError, std::string("connect: K2K stays on one device; '") + from.id.value + "' runs on " +
                                          to_string(from.backend) + ", '" + to.id.value + "' on " + to_string(to.backend));
  if (from.options.tenant_id != to.options.tenant_id)
    return Error(ErrorCode::K2KError, "connect: '" + from.id.value + "' (tenant " + std::to_string(from.options.tenant_id) +
                                          ") and '" + to.id.value + "' (tenant " + std::to_string(to.options.tenant_id) +
                                          ") belong to different tenants");
  auto rt = runtime_for(from.backend);
  if (!rt) return rt.error();
  return (*rt)->connect(from, to);
}

void RuntimeCore::remove(KernelCore* core) noexcept {
  RingKernelRuntime* rt = nullptr;
  {
    std::lock_guard lock(mutex_);
    live_.erase(std::remove(live_.begin(), live_.end(), core), live_.end());
    slot_used_[core->slot] = false;
    rt = core->backend == Backend::Cpu ? cpu_.get() : core->backend == Backend::Cuda ? cuda_.get() : vulkan_.get();
  }
  if (rt) rt->forget(*core);
  broker->forget_kernel(*core);
  core->runtime = nullptr;
}

std::vector<KernelId> RuntimeCore::kernels() const {
  std::lock_guard lock(mutex_);
  std::vector<KernelId> out;
  for (const KernelCore* k : live_) out.push_back(k->id);
  return out;
}

Result<void> RuntimeCore::shutdown(Duration timeout) {
  std::vector<KernelCore*> live;
  {
    std::lock_guard lock(mutex_);
    live.swap(live_);
  }
  Result<void> result;
  for (KernelCore* k : live) {
    std::lock_guard lock(k->lifecycle_mutex);
    if (k->state.load() != KernelState::Terminated) {
      k->state.store(KernelState::Terminating);
      if (auto r = k->impl->stop(timeout); !r && result.ok()) result = r;
      k->state.store(KernelState::Terminated);
    }
    RingKernelRuntime* rt = k->backend == Backend::Cpu ? cpu_.get() : k->backend == Backend::Cuda ? cuda_.get() : vulkan_.get();
    if (rt) rt->forget(*k);
    broker->forget_kernel(*k);
    // The handle outlives the runtime: keep its queues readable, detach it (the runtime's
    // clock goes with the runtime; receives no longer merge into it).
    k->runtime = nullptr;
    k->host_clock = nullptr;
  }
  return result;
}

}  // namespace detail

// =========================================================================================
RingKernelBuilder RingKernel::builder() { return RingKernelBuilder{}; }

RingKernel::RingKernel(std::unique_ptr<detail::RuntimeCore> core) noexcept : core_(std::move(core)) {}
RingKernel::RingKernel(RingKernel&&) noexcept = default;
RingKernel& RingKernel::operator=(RingKernel&&) noexcept = default;
RingKernel::~RingKernel() = default;

Backend RingKernel::backend() const noexcept { return core_->requested; }

std::string RingKernel::device_name() const {
  const std::uint32_t dev = core_->device_index;
  if (core_->requested != Backend::Auto) return availability(core_->requested, dev).device;
  // Auto picks per kernel: the GPU for kernels with a build for it, the CPU for the others.
  if (const auto gpu = core_->auto_gpu(nullptr)) return gpu->device + " (" + to_string(gpu->backend) + "), else CPU";
  return availability(Backend::Cpu).device;
}

Result<KernelHandle> RingKernel::launch(std::string_view name, const LaunchOptions& options) {
  return core_->launch(name, options);
}

Result<void> RingKernel::connect(const KernelHandle& from, const KernelHandle& to) {
  if (!from.valid() || !to.valid()) return Error(ErrorCode::InvalidArgument, "connect: empty kernel handle");
  return core_->connect(*from.core_ptr(), *to.core_ptr());
}

std::vector<KernelId> RingKernel::kernels() const { return core_->kernels(); }
bool RingKernel::owns(const KernelHandle& kernel) const noexcept {
  return kernel.valid() && kernel.core_ptr()->runtime == core_.get();
}
std::optional<std::uint64_t> RingKernel::free_memory() const { return core_->free_memory(); }
Result<std::unique_ptr<DeviceMemory>> RingKernel::device_memory() {
  auto rt = core_->runtime_for(core_->gpu_or_cpu());
  if (!rt) return rt.error();
  return (*rt)->device_memory();
}

Result<std::unique_ptr<DeviceMemory>> RingKernelRuntime::device_memory() {
  return Error(ErrorCode::NotImplemented, std::string("the ") + to_string(backend()) +
                                              " backend has no GpuBuffer allocator (DeviceMemory) yet");
}
HlcClock& RingKernel::clock() noexcept { return core_->clock; }
Broker& RingKernel::broker() noexcept { return *core_->broker; }
Result<void> RingKernel::shutdown(Duration timeout) { return core_->shutdown(timeout); }

Result<RingKernel> RingKernelBuilder::build() {
  if (backend_ == Backend::Metal) return Error(ErrorCode::BackendUnavailable, availability(Backend::Metal).reason);
  if (backend_ == Backend::Cuda || backend_ == Backend::Vulkan) {
    const BackendAvailability a = availability(backend_, device_index_);
    if (!a.available)
      return Error(ErrorCode::BackendUnavailable, std::string(to_string(backend_)) + " backend unavailable: " + a.reason);
  }
  const std::uint64_t node = node_id_ != 0 ? node_id_ : static_cast<std::uint64_t>(::getpid());
  return RingKernel(std::make_unique<detail::RuntimeCore>(backend_, device_index_, node,
                                                          static_cast<std::uint64_t>(max_skew_.count())));
}

}  // namespace ringkernel
