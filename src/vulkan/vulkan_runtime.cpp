// The Vulkan backend: one compute pipeline per kernel (ringkernel_kernel.glsl around the
// handler), its rings and control block in host-visible memory reached through buffer
// device addresses, and either a persistent dispatch on a queue of its own or tick
// dispatches issued by the runtime's ticker thread.
#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <thread>

#include "../core/runtime_core.hpp"
#include "ringkernel/availability.hpp"
#include "ringkernel/registry.hpp"
#include "ringkernel/vulkan/vulkan.hpp"
#include "ringkernel/vulkan/wire.hpp"
#include "vk_device.hpp"

namespace ringkernel::vulkan {

const char* to_string(DispatchMode m) noexcept {
  switch (m) {
    case DispatchMode::Auto: return "auto";
    case DispatchMode::Persistent: return "persistent";
    case DispatchMode::Tick: return "tick";
  }
  return "?";
}

const char* to_string(Placement p) noexcept {
  switch (p) {
    case Placement::Auto: return "auto";
    case Placement::DeviceLocal: return "device-local";
    case Placement::Host: return "host";
  }
  return "?";
}

namespace {
std::mutex g_options_mutex;
Options g_options;
}  // namespace

void set_options(const Options& o) noexcept {
  std::lock_guard lock(g_options_mutex);
  g_options = o;
}

Options options() noexcept {
  std::lock_guard lock(g_options_mutex);
  return g_options;
}

namespace detail {
namespace {

using ringkernel::detail::Doorbell;
using ringkernel::detail::KernelBackend;
using ringkernel::detail::KernelCore;
using ringkernel::detail::RuntimeCore;

constexpr auto kFenceSlice = std::chrono::milliseconds(100);  // longest single wait on a fence
constexpr auto kTickerPark = std::chrono::milliseconds(1);    // safety net: sends ring the bell
constexpr auto kStopGrace = std::chrono::seconds(5);          // tick dispatch still running at shutdown

/// GpuBuffer of the Vulkan backend: a host-visible buffer with a device address
/// (device-local where the device exposes it to the host), copied with the host's stores
/// and loads: no command buffer, no wait on a running dispatch.
class VulkanBuffer final : public GpuBuffer {
 public:
  VulkanBuffer(std::shared_ptr<DeviceContext> ctx, Buffer b, std::size_t n, std::shared_ptr<std::atomic<std::size_t>> live)
      : ctx_(std::move(ctx)), buf_(std::move(b)), n_(n), live_(std::move(live)) {
    live_->fetch_add(n_, std::memory_order_relaxed);
  }
  ~VulkanBuffer() override { live_->fetch_sub(n_, std::memory_order_relaxed); }
  std::size_t size() const noexcept override { return n_; }
  void* device_ptr() const noexcept override { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(buf_.address())); }
  Result<void> copy_from_host(std::span<const std::byte> src, std::size_t offset) override {
    if (auto r = ringkernel::detail::check_buffer_range(offset, src.size(), n_, "copy_from_host"); !r) return r;
    std::memcpy(static_cast<std::byte*>(buf_.mapped()) + offset, src.data(), src.size());
    std::atomic_thread_fence(std::memory_order_seq_cst);  // drains write-combining buffers (a BAR mapping)
    return {};
  }
  Result<void> copy_to_host(std::span<std::byte> dst, std::size_t offset) const override {
    if (auto r = ringkernel::detail::check_buffer_range(offset, dst.size(), n_, "copy_to_host"); !r) return r;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    std::memcpy(dst.data(), static_cast<const std::byte*>(buf_.mapped()) + offset, dst.size());
    return {};
  }

 private:
  std::shared_ptr<DeviceContext> ctx_;  // outlives buf_ (members go in reverse order)
  Buffer buf_;
  std::size_t n_;
  std::shared_ptr<std::atomic<std::size_t>> live_;
};

class VulkanDeviceMemory final : public DeviceMemory {
 public:
  explicit VulkanDeviceMemory(std::shared_ptr<DeviceContext> ctx) : ctx_(std::move(ctx)) {}
  Result<std::unique_ptr<GpuBuffer>> allocate(std::size_t bytes) override {
    if (bytes == 0) return Error(ErrorCode::InvalidArgument, "allocate: size 0");
    VkDeviceSize largest = 0;  // no heap this size: refused before the driver is asked
    const VkPhysicalDeviceMemoryProperties& m = ctx_->physical().memory;
    for (std::uint32_t h = 0; h < m.memoryHeapCount; ++h) largest = std::max(largest, m.memoryHeaps[h].size);
    if (bytes > largest)
      return Error(ErrorCode::OutOfMemory, "allocate: " + std::to_string(bytes) + " bytes is more than the device's " +
                                               "largest memory heap (" + std::to_string(largest) + " bytes)");
    auto b = ctx_->allocate(bytes, Placement::Auto);
    if (!b) return Error(ErrorCode::OutOfMemory, "allocate: " + std::to_string(bytes) + " bytes: " + b.error().message());
    return std::unique_ptr<GpuBuffer>(std::make_unique<VulkanBuffer>(ctx_, std::move(*b), bytes, live_));
  }
  std::string name() const override { return "Vulkan host-visible device memory (" + ctx_->description() + ")"; }
  std::size_t allocated_bytes() const noexcept override { return live_->load(std::memory_order_relaxed); }

 private:
  std::shared_ptr<DeviceContext> ctx_;
  std::shared_ptr<std::atomic<std::size_t>> live_ = std::make_shared<std::atomic<std::size_t>>(0);
};

class VulkanRuntime;
class Ticker;

/// One K2K ring, owned by the runtime (outlives both of its ends).
struct RouteRing {
  Buffer buffer;
  std::uint32_t capacity = 0;
  std::uint32_t slot_size = 0;
};

class VulkanKernel final : public KernelBackend {
 public:
  VulkanKernel(std::shared_ptr<DeviceContext> ctx, KernelCore& core) : ctx_(std::move(ctx)), core_(core) {}
  ~VulkanKernel() override;

  Result<void> init(VulkanRuntime& rt, const KernelInfo& info, const Options& opt, Buffer& directory);
  Result<void> start() override;
  Result<void> stop(Duration timeout) override;
  Result<void> check_health() override;
  void k2k_counters(std::uint64_t& dead, std::uint64_t& rejected) const noexcept override {
    dead = load_relaxed(&block()->params.dead_letters);
    rejected = load_relaxed(&block()->params.tenant_rejections);
  }

  KernelBlock* block() const noexcept { return static_cast<KernelBlock*>(block_.mapped()); }
  KernelPlacement placement() const noexcept {
    return {mode_, input_.placement(), output_.placement(), queue_.family, queue_.index};
  }
  std::uint32_t k2k_slot_size() const noexcept { return k2k_slot_size_; }
  std::uint32_t slot() const noexcept { return core_.slot; }

  // Route tables (connect(); the runtime serialises calls).
  Result<void> add_out_route(const RouteRing& ring, std::uint32_t dest);
  Result<void> add_in_route(const RouteRing& ring, std::uint32_t source);

  /// Writes a fresh host clock reading for the shader to pair with its own clock.
  void calibrate() noexcept {
    KernelParams& p = block()->params;
    store_relaxed(&p.calib_host_us, hlc::wall_clock_us());
    store_release(&p.calib_seq, calib_seq_.fetch_add(1, std::memory_order_relaxed) + 1);  // pairs with rk_leader_calibrate_()
  }

  // -- tick mode, called by the ticker thread under its mutex -------------------------------
  bool wants_dispatch() const noexcept;
  VkCommandBuffer command_buffer() const noexcept { return cmd_; }
  bool in_flight = false;  // a dispatch of this kernel is in the ticker's current submission
  bool retired = false;    // has_terminated seen after a dispatch: never dispatched again
  Doorbell host_bell;      // rung by the ticker after a dispatch of this kernel
  Ticker* ticker = nullptr;

 private:
  Error lost_error() const;
  void close_host_side() noexcept;
  Result<void> wait_fence(std::chrono::steady_clock::time_point deadline);

  std::shared_ptr<DeviceContext> ctx_;
  KernelCore& core_;
  Buffer block_, input_, output_, state_;
  VkPipeline pipeline_ = VK_NULL_HANDLE;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkCommandBuffer cmd_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;  // persistent mode: signalled when the dispatch ends
  QueueSlot queue_;
  bool owns_queue_ = false;
  DispatchMode mode_ = DispatchMode::Tick;
  bool submitted_ = false;
  bool pull_ = false;
  bool has_response_ = false;
  std::uint32_t k2k_slot_size_ = 0;
  std::atomic<std::uint64_t> calib_seq_{0};
  std::atomic<std::int64_t> next_calibration_ns_{0};
  std::atomic<bool> finished_{false};                 // persistent: the dispatch has ended
  std::array<RingIndices*, kMaxRoutes> in_rings_{};   // host views of the inbound K2K rings
  std::atomic<std::uint32_t> in_ring_count_{0};       // release by add_in_route()
};

/// The host thread behind tick mode: dispatches every tick kernel whose queues hold work
/// (one submission, one fence per round) and parks on its doorbell while none does.
class Ticker {
 public:
  explicit Ticker(DeviceContext& ctx) : ctx_(ctx) {}
  ~Ticker() { shutdown(); }

  Result<void> start() {
    VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    if (VkResult r = ctx_.api().vkCreateFence(ctx_.device(), &fci, nullptr, &fence_); r != VK_SUCCESS)
      return vk_error(ErrorCode::BackendError, "vkCreateFence", r);
    try {
      thread_ = std::thread([this] { loop(); });
    } catch (const std::system_error& e) {
      return Error(ErrorCode::BackendError, std::string("cannot start the Vulkan tick thread: ") + e.what());
    }
    return {};
  }
  void shutdown() noexcept {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    bell.wake();
    if (thread_.joinable()) thread_.join();
    if (fence_) ctx_.api().vkDestroyFence(ctx_.device(), fence_, nullptr);
    fence_ = VK_NULL_HANDLE;
  }
  void add(VulkanKernel* k) {
    {
      std::lock_guard lock(mutex_);
      kernels_.push_back(k);
      k->ticker = this;
    }
    bell.wake();
  }
  /// Removes a kernel once no dispatch of it is in flight.
  void remove(VulkanKernel* k) {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [&] { return !k->in_flight; });
    kernels_.erase(std::remove(kernels_.begin(), kernels_.end(), k), kernels_.end());
    k->ticker = nullptr;
  }
  /// Waits until `k` has been retired (its shader set has_terminated) or the deadline.
  bool wait_retired(VulkanKernel* k, std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    return idle_.wait_until(lock, deadline, [&] { return k->retired || ctx_.lost.load(); });
  }

  Doorbell bell;  // rung by host sends (KernelCore::kernel_doorbell) and lifecycle changes

 private:
  bool any_due() {
    std::lock_guard lock(mutex_);
    if (stop_) return true;
    return std::any_of(kernels_.begin(), kernels_.end(), [](VulkanKernel* k) { return !k->retired && k->wants_dispatch(); });
  }

  void loop() noexcept {
    std::vector<VulkanKernel*> due;
    std::vector<VkCommandBuffer> cmds;
    for (;;) {
      due.clear();
      cmds.clear();
      {
        std::lock_guard lock(mutex_);
        if (stop_) return;
        for (VulkanKernel* k : kernels_) {
          if (k->retired || !k->wants_dispatch()) continue;
          k->in_flight = true;
          due.push_back(k);
          cmds.push_back(k->command_buffer());
        }
      }
      if (due.empty()) {
        bell.wait([&] { return any_due(); }, kTickerPark);
        continue;
      }
      for (VulkanKernel* k : due) k->calibrate();
      VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
      si.commandBufferCount = static_cast<std::uint32_t>(cmds.size());
      si.pCommandBuffers = cmds.data();
      VkResult r = ctx_.api().vkQueueSubmit(ctx_.tick_queue().queue, 1, &si, fence_);
      // A dispatch returns once it has drained its queues (or after its batch budget); a
      // handler that never returns keeps it running: after a shutdown request, give up on it
      // after kStopGrace and leave the device to the process exit.
      std::chrono::steady_clock::time_point give_up{};
      while (r == VK_SUCCESS) {
        r = ctx_.api().vkWaitForFences(ctx_.device(), 1, &fence_, VK_TRUE,
                                       std::chrono::duration_cast<std::chrono::nanoseconds>(kFenceSlice).count());
        if (r != VK_TIMEOUT) break;
        r = VK_SUCCESS;
        if (stop_requested()) {
          const auto now = std::chrono::steady_clock::now();
          if (give_up == std::chrono::steady_clock::time_point{}) give_up = now + kStopGrace;
          if (now >= give_up) {
            std::fprintf(stderr, "ringkernel: a Vulkan tick dispatch did not return; leaving the device running\n");
            ctx_.wedged.store(true);
            fence_ = VK_NULL_HANDLE;  // still in use by the queue: never reset or destroyed
            return;
          }
        }
      }
      if (r == VK_SUCCESS) ctx_.api().vkResetFences(ctx_.device(), 1, &fence_);
      if (r != VK_SUCCESS) {
        std::fprintf(stderr, "ringkernel: Vulkan tick dispatch failed: %s; tick kernels stop\n", result_name(r));
        ctx_.lost.store(true);
      }
      {
        // Under the lock: remove() waits for !in_flight and may destroy the kernel right after.
        std::lock_guard lock(mutex_);
        for (VulkanKernel* k : due) {
          if (ctx_.lost.load() || load_acquire(&k->block()->control.has_terminated) != 0) k->retired = true;
          k->host_bell.ring();  // a host waiting in receive() re-checks the output ring
          k->in_flight = false;
        }
        if (ctx_.lost.load())
          for (VulkanKernel* k : kernels_) k->retired = true;
      }
      idle_.notify_all();
      if (ctx_.lost.load()) {
        // Nothing can run any more: wait for shutdown.
        std::unique_lock lock(mutex_);
        idle_.wait(lock, [&] { return stop_; });
        return;
      }
    }
  }
  bool stop_requested() {
    std::lock_guard lock(mutex_);
    return stop_;
  }

  DeviceContext& ctx_;
  std::mutex mutex_;
  std::condition_variable idle_;
  std::vector<VulkanKernel*> kernels_;
  bool stop_ = false;
  VkFence fence_ = VK_NULL_HANDLE;
  std::thread thread_;
};

class VulkanRuntime final : public RingKernelRuntime {
 public:
  static Result<std::unique_ptr<RingKernelRuntime>> create(std::uint32_t device_index) {
    auto ctx = DeviceContext::create(device_index);
    if (!ctx) return ctx.error();
    auto rt = std::unique_ptr<VulkanRuntime>(new VulkanRuntime(std::move(*ctx)));
    auto dir = rt->ctx_->allocate(RuntimeCore::kMaxKernels * sizeof(std::uint64_t), Placement::Auto);
    if (!dir) return dir.error();
    rt->directory_ = std::move(*dir);
    rt->ticker_ = std::make_unique<Ticker>(*rt->ctx_);
    if (auto s = rt->ticker_->start(); !s) return s.error();
    return std::unique_ptr<RingKernelRuntime>(std::move(rt));
  }

  ~VulkanRuntime() override {
    ticker_->shutdown();
    if (ctx_->wedged.load()) {
      // A dispatch that did not stop may still reach these buffers: leave them.
      directory_.leak();
      for (auto& r : routes_) r->buffer.leak();
    }
  }

  Backend backend() const noexcept override { return Backend::Vulkan; }
  std::string device_name() const override { return ctx_->description(); }
  Result<std::unique_ptr<DeviceMemory>> device_memory() override {
    return std::unique_ptr<DeviceMemory>(std::make_unique<VulkanDeviceMemory>(ctx_));
  }

  Result<std::unique_ptr<KernelBackend>> create(KernelCore& core) override {
    const KernelInfo* info = find_kernel(core.registered_name);
    if (!info || !info->vulkan)
      return Error(ErrorCode::BackendUnavailable, "kernel '" + core.registered_name + "' has no Vulkan build");
    if (core.options.actor_slots != 0)
      return Error(ErrorCode::NotImplemented, "actor pools (LaunchOptions::actor_slots) run on the CPU and CUDA "
                                              "backends; the Vulkan backend has none");
    auto k = std::make_unique<VulkanKernel>(ctx_, core);
    if (auto s = k->init(*this, *info, options_, directory_); !s) return s.error();
    std::lock_guard lock(mutex_);
    auto* dir = static_cast<std::uint64_t*>(directory_.mapped());
    store_release(&dir[core.slot], core.options.tenant_id + 1);  // read by rk_k2k_reserve_()
    return std::unique_ptr<KernelBackend>(std::move(k));
  }

  Result<void> connect(KernelCore& from, KernelCore& to) override {
    auto* f = static_cast<VulkanKernel*>(from.impl.get());
    auto* t = static_cast<VulkanKernel*>(to.impl.get());
    std::lock_guard lock(mutex_);
    auto ring = std::make_unique<RouteRing>();
    ring->capacity = from.options.k2k_queue_capacity;
    ring->slot_size = t->k2k_slot_size();
    auto buf = ctx_->allocate(sizeof(RingIndices) + std::uint64_t{ring->capacity} * ring->slot_size, Placement::Auto);
    if (!buf) return buf.error();
    ring->buffer = std::move(*buf);
    const RouteRing& r = *routes_.emplace_back(std::move(ring));  // kept even if a table below is full
    // The receiver learns of the ring first, so it is polled before anything can arrive.
    if (auto s = t->add_in_route(r, from.slot); !s) return s;
    if (auto s = f->add_out_route(r, to.slot); !s) return s;
    ticker_->bell.wake();
    return {};
  }

  void forget(KernelCore& core) noexcept override {
    {
      std::lock_guard lock(mutex_);
      auto* dir = static_cast<std::uint64_t*>(directory_.mapped());
      store_release(&dir[core.slot], std::uint64_t{0});
    }
    if (auto* k = static_cast<VulkanKernel*>(core.impl.get()); k && k->ticker) k->ticker->remove(k);
  }

  Ticker& ticker() noexcept { return *ticker_; }
  Doorbell& flush_bell() noexcept { return flush_bell_; }

 private:
  explicit VulkanRuntime(std::shared_ptr<DeviceContext> ctx) : ctx_(std::move(ctx)), options_(vulkan::options()) {}

  std::shared_ptr<DeviceContext> ctx_;
  Options options_;
  Buffer directory_;  // tenant + 1 per kernel slot (0 = no Vulkan kernel there)
  std::unique_ptr<Ticker> ticker_;
  Doorbell flush_bell_{true};  // persistent kernels' "doorbell": nobody sleeps on it; ringing it fences
  std::mutex mutex_;
  std::vector<std::unique_ptr<RouteRing>> routes_;
};

// ---- VulkanKernel ------------------------------------------------------------------------------

Result<void> VulkanKernel::init(VulkanRuntime& rt, const KernelInfo& info, const Options& opt, Buffer& directory) {
  const LaunchOptions& o = core_.options;
  const VulkanProgram& prog = *info.vulkan;
  const PhysicalDevice& phys = ctx_->physical();
  const VkPhysicalDeviceLimits& lim = phys.properties.limits;
  if (o.block_size > lim.maxComputeWorkGroupSize[0] || o.block_size > lim.maxComputeWorkGroupInvocations)
    return Error(ErrorCode::InvalidArgument, "block_size " + std::to_string(o.block_size) + " exceeds the device's " +
                                                 std::to_string(std::min(lim.maxComputeWorkGroupSize[0],
                                                                         lim.maxComputeWorkGroupInvocations)) +
                                                 " invocations per workgroup");
  // lavapipe (and CPU implementations like it) loop until their iteration limit when a
  // workgroup narrower than one SIMD vector holds a barrier in a loop: pad the workgroup to
  // the vector (subgroup) width; the padding invocations only meet the runtime's barriers.
  const std::uint32_t workgroup =
      phys.is_cpu && o.block_size < phys.subgroup_size ? phys.subgroup_size : o.block_size;
  // Shared memory: the library's per-invocation scratch (8 bytes each) plus ~256 bytes,
  // plus the kernel's shared_memory_size (handler-declared arrays come on top).
  const std::uint64_t shared = std::uint64_t{workgroup} * 8 + 256 + o.shared_memory_size;
  if (shared > lim.maxComputeSharedMemorySize)
    return Error(ErrorCode::InvalidArgument, "shared_memory_size " + std::to_string(o.shared_memory_size) +
                                                 " plus the runtime's " + std::to_string(workgroup * 8 + 256) +
                                                 " bytes exceeds the device's " +
                                                 std::to_string(lim.maxComputeSharedMemorySize) + " bytes of shared memory");
  if (prog.type_count < 2 || prog.types[0].type_id != info.request_type || prog.types[0].size != info.request_size)
    return Error(ErrorCode::LaunchFailed, "the Vulkan build of kernel '" + core_.registered_name +
                                              "' does not take the request type of its C++ handler");

  pull_ = o.k2k_delivery == K2KDelivery::Pull;
  has_response_ = info.has_response;
  const std::uint32_t in_slot = slot_size_for(info.request_size);
  const std::uint32_t out_slot = slot_size_for(info.response_size);
  k2k_slot_size_ = slot_size_for(std::max<std::uint32_t>(info.request_size, pull_ ? 1024 : 0));

  // Dispatch mode: persistent needs a queue of its own and a device that runs a spinning
  // shader next to the host (not a CPU implementation: lavapipe runs one dispatch at a time
  // on its single queue).
  mode_ = opt.dispatch;
  if (mode_ != DispatchMode::Tick) {
    std::optional<QueueSlot> q;
    if (mode_ == DispatchMode::Persistent || !phys.is_cpu) q = ctx_->acquire_queue(opt.max_persistent);
    if (q) {
      queue_ = *q;
      owns_queue_ = true;
      mode_ = DispatchMode::Persistent;
    } else if (mode_ == DispatchMode::Persistent) {
      return Error(ErrorCode::LaunchFailed,
                   "no compute queue is left for a persistent dispatch: " + std::to_string(ctx_->queues_in_use()) +
                       " run already (the device has " + std::to_string(ctx_->queue_count()) +
                       " queue(s), one kept for tick dispatches; vulkan::Options::max_persistent is " +
                       std::to_string(opt.max_persistent) + "); use vulkan::DispatchMode::Auto or Tick");
    } else {
      mode_ = DispatchMode::Tick;
    }
  }
  if (mode_ == DispatchMode::Tick) queue_ = ctx_->tick_queue();

  auto alloc = [&](Buffer& b, VkDeviceSize size, Placement p) -> Result<void> {
    auto r = ctx_->allocate(size, p);
    if (!r) return r.error();
    b = std::move(*r);
    return {};
  };
  // The control block is polled by the shader and written by the host: where the input is.
  if (auto s = alloc(block_, sizeof(KernelBlock), opt.input_placement); !s) return s;
  if (auto s = alloc(input_, sizeof(RingIndices) + std::uint64_t{o.input_queue_capacity} * in_slot, opt.input_placement); !s)
    return s;
  if (auto s = alloc(output_, sizeof(RingIndices) + std::uint64_t{o.output_queue_capacity} * out_slot, opt.output_placement);
      !s)
    return s;
  if (auto s = alloc(state_, std::max<std::uint32_t>(prog.state_size, 16), Placement::Auto); !s) return s;
  prog.init_state(state_.mapped());

  KernelBlock* kb = block();
  ControlBlock& c = kb->control;
  c.input_capacity = o.input_queue_capacity;
  c.output_capacity = o.output_queue_capacity;
  c.input_slot_size = in_slot;
  c.output_slot_size = out_slot;
  c.kernel_id = core_.slot;
  c.tenant_id = o.tenant_id;
  kb->telemetry.min_latency_us = ~std::uint64_t{0};
  KernelParams& p = kb->params;
  p.input_ring = input_.address();
  p.output_ring = output_.address();
  p.state = state_.address();
  p.directory = directory.address();
  p.node_id = (core_.host_clock->node_id() << 16) | (core_.slot + 1);
  p.max_skew_us = core_.host_clock->max_skew_us();
  p.tenant_id = o.tenant_id;
  p.input_capacity = o.input_queue_capacity;
  p.input_slot_size = in_slot;
  p.output_capacity = o.output_queue_capacity;
  p.output_slot_size = out_slot;
  p.kernel_slot = core_.slot;
  p.flags = (o.enable_k2k ? kFlagK2K : 0u) | (pull_ ? kFlagPull : 0u) | (info.has_response ? kFlagResponse : 0u);
  p.max_batches = std::max<std::uint32_t>(opt.tick_batches, 1);
  p.max_messages = opt.tick_messages != 0 ? opt.tick_messages : phys.is_cpu ? 16u : 0u;
  if (p.max_messages != 0 && o.mode == KernelMode::Parallel)  // at least one pass of the batch
    p.max_messages = std::max(p.max_messages, o.block_size * o.grid_size);
  calibrate();

  core_.control = &kb->control;
  core_.telemetry = &kb->telemetry;
  auto* in_bytes = static_cast<std::byte*>(input_.mapped());
  auto* out_bytes = static_cast<std::byte*>(output_.mapped());
  core_.input = RingView{reinterpret_cast<RingIndices*>(in_bytes), in_bytes + sizeof(RingIndices), o.input_queue_capacity, in_slot};
  core_.output = RingView{reinterpret_cast<RingIndices*>(out_bytes), out_bytes + sizeof(RingIndices), o.output_queue_capacity,
                          out_slot};
  // Host-visible memory may be write-combining (always so for a BAR mapping): the host
  // producer fences its slot stores before publishing the tail.
  core_.input_write_combining = true;
  if (output_.placement() == Placement::DeviceLocal && !phys.is_cpu) {  // a BAR mapping: uncached host reads
    core_.output_uncached = true;
    core_.rx_scratch.assign(out_slot, std::byte{0});
  }
  // The control block too: the message paths then read has_terminated every 64th call.
  core_.control_uncached = block_.placement() == Placement::DeviceLocal && !phys.is_cpu;
  // Host sends ring the kernel doorbell right after publishing: for a tick kernel it wakes the
  // ticker; for a persistent one nobody sleeps on it, and its fence flushes the host's
  // write-combining buffers, so BAR-mapped rings become visible at once.
  core_.kernel_doorbell = mode_ == DispatchMode::Tick ? &rt.ticker().bell : &rt.flush_bell();
  core_.host_doorbell = mode_ == DispatchMode::Tick ? &host_bell : nullptr;

  auto pipe = ctx_->pipeline(PipelineKey{&prog, o.block_size, workgroup, o.mode, mode_ == DispatchMode::Persistent,
                                         std::max<std::uint32_t>((o.shared_memory_size + 3) / 4, 1), o.grid_size});
  if (!pipe) return pipe.error();
  pipeline_ = *pipe;

  const DeviceApi& api = ctx_->api();
  VkCommandPoolCreateInfo cpi{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  cpi.queueFamilyIndex = queue_.family;
  if (VkResult r = api.vkCreateCommandPool(ctx_->device(), &cpi, nullptr, &pool_); r != VK_SUCCESS)
    return vk_error(ErrorCode::LaunchFailed, "vkCreateCommandPool", r);
  VkCommandBufferAllocateInfo cai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  cai.commandPool = pool_;
  cai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  cai.commandBufferCount = 1;
  if (VkResult r = api.vkAllocateCommandBuffers(ctx_->device(), &cai, &cmd_); r != VK_SUCCESS)
    return vk_error(ErrorCode::LaunchFailed, "vkAllocateCommandBuffers", r);
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  api.vkBeginCommandBuffer(cmd_, &bi);
  api.vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline_);
  const std::uint64_t address = block_.address();
  api.vkCmdPushConstants(cmd_, ctx_->layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof address, &address);
  api.vkCmdDispatch(cmd_, 1, 1, 1);
  // The shader's writes become visible to the host when the dispatch completes.
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
  api.vkCmdPipelineBarrier(cmd_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, nullptr, 0,
                           nullptr);
  if (VkResult r = api.vkEndCommandBuffer(cmd_); r != VK_SUCCESS)
    return vk_error(ErrorCode::LaunchFailed, "recording the dispatch", r);
  if (mode_ == DispatchMode::Persistent) {
    VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    if (VkResult r = api.vkCreateFence(ctx_->device(), &fci, nullptr, &fence_); r != VK_SUCCESS)
      return vk_error(ErrorCode::LaunchFailed, "vkCreateFence", r);
  } else {
    ticker = &rt.ticker();  // joined in start()
  }
  return {};
}

Result<void> VulkanKernel::start() {
  if (mode_ == DispatchMode::Persistent) {
    calibrate();
    VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cmd_;
    // The queue is this kernel's alone: no other thread submits to it.
    if (VkResult r = ctx_->api().vkQueueSubmit(queue_.queue, 1, &si, fence_); r != VK_SUCCESS)
      return vk_error(ErrorCode::LaunchFailed, "submitting the persistent dispatch of kernel '" + core_.id.value + "'", r);
  } else {
    ticker->add(this);
  }
  submitted_ = true;
  return {};
}

Error VulkanKernel::lost_error() const {
  return Error(ErrorCode::KernelFaulted,
               "the Vulkan device was lost (VK_ERROR_DEVICE_LOST) while kernel '" + core_.id.value +
                   "' was running: a shader fault or a driver reset; terminate the kernel and create a new runtime",
               static_cast<std::int64_t>(VK_ERROR_DEVICE_LOST));
}

void VulkanKernel::close_host_side() noexcept {
  // No shader of this kernel runs any more: the host may write the kernel's words.
  store_release(&core_.input.indices->consumer_closed, 1u);
  const std::uint32_t n = in_ring_count_.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < n; ++i) store_release(&in_rings_[i]->consumer_closed, 1u);
  store_release(&block()->control.has_terminated, 1u);
}

Result<void> VulkanKernel::wait_fence(std::chrono::steady_clock::time_point deadline) {
  const DeviceApi& api = ctx_->api();
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    const auto slice = std::clamp<std::chrono::nanoseconds>(deadline - now, std::chrono::nanoseconds(0), std::chrono::milliseconds(10));
    const VkResult r = api.vkWaitForFences(ctx_->device(), 1, &fence_, VK_TRUE, static_cast<std::uint64_t>(slice.count()));
    if (r == VK_SUCCESS) {
      finished_.store(true);
      return {};
    }
    if (r == VK_ERROR_DEVICE_LOST) {
      ctx_->lost.store(true);
      return lost_error();
    }
    if (r != VK_TIMEOUT) return vk_error(ErrorCode::BackendError, "waiting for the dispatch of kernel '" + core_.id.value + "'", r);
    if (std::chrono::steady_clock::now() >= deadline)
      return Error(ErrorCode::Timeout, "kernel '" + core_.id.value +
                                           "' did not stop in time: its shader has not left its loop (a handler that "
                                           "never returns?)");
  }
}

Result<void> VulkanKernel::stop(Duration timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  store_release(&block()->control.should_terminate, 1u);  // read by rk_leader_control_()
  std::atomic_thread_fence(std::memory_order_seq_cst);     // out of the write-combining buffers now
  if (submitted_ && !ctx_->lost.load()) {
    if (mode_ == DispatchMode::Persistent) {
      if (!finished_.load())
        if (auto r = wait_fence(deadline); !r) return r;
    } else if (ticker) {
      ticker->bell.wake();
      if (!ticker->wait_retired(this, deadline))
        return Error(ErrorCode::Timeout, "kernel '" + core_.id.value +
                                             "' did not stop in time: its tick dispatch has not returned (a handler that "
                                             "never returns?)");
    }
  }
  close_host_side();
  if (ctx_->lost.load()) return lost_error();
  return {};
}

Result<void> VulkanKernel::check_health() {
  if (ctx_->lost.load()) return lost_error();
  const ControlBlock& c = block()->control;
  if (load_acquire(&c.has_terminated) != 0 && load_acquire(&c.last_error) != 0) return core_.dead_error();
  if (mode_ != DispatchMode::Persistent || !submitted_ || finished_.load()) return {};
  const VkResult r = ctx_->api().vkGetFenceStatus(ctx_->device(), fence_);
  if (r == VK_ERROR_DEVICE_LOST) {
    ctx_->lost.store(true);
    return lost_error();
  }
  if (r == VK_SUCCESS) {
    finished_.store(true);
    if (load_acquire(&c.has_terminated) == 0)
      return Error(ErrorCode::KernelFaulted, "the persistent dispatch of kernel '" + core_.id.value +
                                                 "' ended without leaving its loop: this driver does not keep a spinning "
                                                 "shader running; use vulkan::DispatchMode::Tick");
    return {};
  }
  // The host waits on this kernel: refresh the clock calibration now and then (~1 ms).
  const std::int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
  std::int64_t due = next_calibration_ns_.load(std::memory_order_relaxed);
  if (now >= due && next_calibration_ns_.compare_exchange_strong(due, now + 1'000'000)) calibrate();
  return {};
}

bool VulkanKernel::wants_dispatch() const noexcept {
  const ControlBlock& c = block()->control;
  if (load_acquire(&c.has_terminated) != 0) return false;
  if (load_acquire(&c.should_terminate) != 0) return true;
  const std::uint32_t on = load_acquire(&c.is_active);
  if (on != load_acquire(&c.acked_active)) return true;
  if (on == 0) return false;
  const RingIndices* out = core_.output.indices;
  if (has_response_ && load_relaxed(&out->tail) - load_acquire(&out->head) >= core_.output.capacity) return false;
  const RingIndices* in = core_.input.indices;
  if (load_acquire(&in->tail) != load_relaxed(&in->head)) return true;
  if (!pull_) {
    const std::uint32_t n = in_ring_count_.load(std::memory_order_acquire);
    for (std::uint32_t i = 0; i < n; ++i)
      if (load_acquire(&in_rings_[i]->tail) != load_relaxed(&in_rings_[i]->head)) return true;
  }
  return false;
}

Result<void> VulkanKernel::add_out_route(const RouteRing& ring, std::uint32_t dest) {
  KernelParams& p = block()->params;
  const std::uint32_t n = p.out_route_count;  // the host is its only writer
  if (n >= kMaxRoutes)
    return Error(ErrorCode::K2KError, "kernel '" + core_.id.value + "' already has " + std::to_string(kMaxRoutes) +
                                          " outbound K2K routes");
  RouteEntry& e = p.out_routes[n];
  e.ring = ring.buffer.address();
  e.peer = dest;
  e.capacity = ring.capacity;
  e.slot_size = ring.slot_size;
  std::atomic_thread_fence(std::memory_order_seq_cst);  // drains write-combining buffers before the count
  store_release(&p.out_route_count, n + 1);             // pairs with rk_k2k_route_count()
  return {};
}

Result<void> VulkanKernel::add_in_route(const RouteRing& ring, std::uint32_t source) {
  KernelParams& p = block()->params;
  const std::uint32_t n = p.in_route_count;
  if (n >= kMaxRoutes)
    return Error(ErrorCode::K2KError, "kernel '" + core_.id.value + "' already has " + std::to_string(kMaxRoutes) +
                                          " inbound K2K routes");
  RouteEntry& e = p.in_routes[n];
  e.ring = ring.buffer.address();
  e.peer = source;
  e.capacity = ring.capacity;
  e.slot_size = ring.slot_size;
  in_rings_[n] = static_cast<RingIndices*>(ring.buffer.mapped());
  in_ring_count_.store(n + 1, std::memory_order_release);  // pairs with wants_dispatch()
  std::atomic_thread_fence(std::memory_order_seq_cst);
  store_release(&p.in_route_count, n + 1);  // pairs with rk_leader_decide_()
  return {};
}

VulkanKernel::~VulkanKernel() {
  if (ticker && submitted_ && mode_ == DispatchMode::Tick) ticker->remove(this);
  const DeviceApi& api = ctx_->api();
  if (mode_ == DispatchMode::Persistent && submitted_ && !finished_.load() && !ctx_->lost.load() &&
      api.vkGetFenceStatus(ctx_->device(), fence_) == VK_NOT_READY) {
    // stop() timed out: the shader still runs and uses this memory. Leak it rather than free
    // it under a running dispatch.
    std::fprintf(stderr, "ringkernel: Vulkan kernel '%s' is still running at destruction; leaking its memory\n",
                 core_.id.value.c_str());
    ctx_->wedged.store(true);
    block_.leak();
    input_.leak();
    output_.leak();
    state_.leak();
    return;
  }
  if (fence_) api.vkDestroyFence(ctx_->device(), fence_, nullptr);
  if (pool_) api.vkDestroyCommandPool(ctx_->device(), pool_, nullptr);
  if (owns_queue_) ctx_->release_queue(queue_);
}

// ---- plugin -------------------------------------------------------------------------------------

BackendAvailability probe(std::uint32_t index) {
  BackendAvailability a;
  a.backend = Backend::Vulkan;
  if (auto inst = instance())
    for (const PhysicalDevice& d : (*inst)->devices) a.device_count += d.suitable ? 1u : 0u;
  auto pd = physical_device(index);
  if (!pd) {
    a.reason = pd.error().message();
    return a;
  }
  a.available = true;
  a.device = std::string((*pd)->properties.deviceName) + " (" + (*pd)->driver + ")";
  a.software = (*pd)->properties.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
  const VkPhysicalDeviceMemoryProperties& m = (*pd)->memory;
  for (std::uint32_t h = 0; h < m.memoryHeapCount; ++h)
    if ((m.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) != 0 && m.memoryHeaps[h].size > a.memory_bytes)
      a.memory_bytes = m.memoryHeaps[h].size;
  return a;
}

Result<std::unique_ptr<RingKernelRuntime>> create_runtime(std::uint32_t index) { return VulkanRuntime::create(index); }

}  // namespace

const BackendPlugin kPlugin{Backend::Vulkan, &probe, &create_runtime, nullptr, nullptr};

int register_program(const KernelInfo& info) noexcept {
  ringkernel::detail::register_backend_plugin(&kPlugin);
  return ringkernel::detail::register_kernel(info);
}

}  // namespace detail

void register_backend() noexcept { ringkernel::detail::register_backend_plugin(&detail::kPlugin); }

Result<KernelPlacement> describe(const KernelHandle& kernel) {
  if (!kernel.valid() || kernel.backend() != Backend::Vulkan)
    return Error(ErrorCode::InvalidArgument, "describe: the handle is not a Vulkan kernel");
  const auto* k = dynamic_cast<const detail::VulkanKernel*>(kernel.core_ptr()->impl.get());
  if (!k) return Error(ErrorCode::InvalidArgument, "describe: the kernel has no Vulkan backend state");
  return k->placement();
}

Result<std::vector<DeviceInfo>> devices() {
  auto inst = detail::instance();
  if (!inst) return inst.error();
  std::vector<DeviceInfo> out;
  for (const detail::PhysicalDevice& d : (*inst)->devices) {
    DeviceInfo i;
    i.name = d.properties.deviceName;
    switch (d.properties.deviceType) {
      case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: i.type = "discrete GPU"; break;
      case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: i.type = "integrated GPU"; break;
      case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: i.type = "virtual GPU"; break;
      case VK_PHYSICAL_DEVICE_TYPE_CPU: i.type = "CPU"; break;
      default: i.type = "other"; break;
    }
    i.driver = d.driver;
    i.api_version = d.properties.apiVersion;
    i.suitable = d.suitable;
    i.reason = d.reason;
    out.push_back(std::move(i));
  }
  return out;
}

}  // namespace ringkernel::vulkan
