// The CUDA backend's host side: device selection, clock calibration, eager module loading,
// per-kernel memory (mapped pinned for what the host and the kernel both touch, device
// memory for the rest), launch with an occupancy check, lifecycle, fault detection, K2K
// routes.
//
// Rules kept here (see DESIGN.md):
//  * The host writes control words one at a time with release stores; never a memcpy over
//    a structure the kernel also writes.
//  * Every module is loaded before any persistent kernel spins (cudaFuncGetAttributes on
//    every registered kernel when the runtime starts): lazy loading can deadlock two
//    communicating persistent kernels.
//  * No call that synchronises the whole device (cudaFree, cudaFreeHost, cudaDeviceSynchronize,
//    the legacy default stream) while a persistent kernel runs: it would wait forever.
//    Memory of terminated kernels and runtimes is kept until no kernel of the process runs
//    (several runtimes may share a GPU), then freed (Ledger).
//  * A faulted kernel is detected by polling cudaStreamQuery while the host waits.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "../core/runtime_core.hpp"
#include "ringkernel/availability.hpp"
#include "ringkernel/pubsub.hpp"
#include "ringkernel/cuda/device_context.cuh"
#include "ringkernel/cuda/device_kernel.hpp"
#include "ringkernel/cuda/program.hpp"
#include "ringkernel/registry.hpp"

namespace ringkernel::detail {

namespace {

Error cuda_error(ErrorCode code, const std::string& what, cudaError_t e) {
  return Error(code, what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")", static_cast<int>(e));
}

#define RK_CUDA_TRY(call, code, what)                            \
  do {                                                           \
    const cudaError_t rk_err_ = (call);                          \
    if (rk_err_ != cudaSuccess) return cuda_error(code, what, rk_err_); \
  } while (0)

/// Makes the runtime's device current on this thread for one call, and restores the one that
/// was. Every entry point of the backend that calls CUDA starts with one: the current
/// device is per host thread, and a program may drive runtimes of several GPUs
/// (ringkernel/multi_gpu.hpp) from one thread.
class DeviceScope {
 public:
  explicit DeviceScope(std::uint32_t device) noexcept : want_(static_cast<int>(device)) {
    if (cudaGetDevice(&prev_) != cudaSuccess) prev_ = -1;
    if (prev_ != want_) cudaSetDevice(want_);
  }
  ~DeviceScope() {
    if (prev_ >= 0 && prev_ != want_) cudaSetDevice(prev_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int want_;
  int prev_ = -1;
};

__global__ void rk_clock_probe(unsigned long long* out) {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  *reinterpret_cast<volatile unsigned long long*>(out) = t;
}

BackendAvailability probe(std::uint32_t device_index) {
  BackendAvailability a;
  a.backend = Backend::Cuda;
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    a.reason = std::string("the CUDA runtime found no usable GPU: ") + cudaGetErrorString(e);
    return a;
  }
  a.device_count = static_cast<std::uint32_t>(count);
  if (count == 0) {
    a.reason = "no CUDA device is present";
    return a;
  }
  if (static_cast<int>(device_index) >= count) {
    a.reason = "device index " + std::to_string(device_index) + " out of range (" + std::to_string(count) + " devices)";
    return a;
  }
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, static_cast<int>(device_index)) != cudaSuccess) {
    a.reason = "cannot read the device's properties";
    return a;
  }
  if (p.major < 7) {
    a.reason = std::string(p.name) + " has compute capability " + std::to_string(p.major) + "." + std::to_string(p.minor) +
               "; ringkernel needs 7.0 or newer";
    return a;
  }
  if (!p.canMapHostMemory) {
    a.reason = std::string(p.name) + " cannot map host memory";
    return a;
  }
  a.available = true;
  a.memory_bytes = p.totalGlobalMem;
  a.compute_units = static_cast<std::uint32_t>(p.multiProcessorCount);
  a.compute_capability = static_cast<std::uint32_t>(p.major * 10 + p.minor);
  a.device = std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
             std::to_string(p.multiProcessorCount) + " SMs)";
  return a;
}

/// Allocations that must outlive the kernels that may use them, tagged with their device.
struct Graveyard {
  std::vector<std::pair<std::uint32_t, void*>> host;
  std::vector<std::pair<std::uint32_t, void*>> device;
  std::vector<std::pair<std::uint32_t, cudaStream_t>> streams;
};

/// Process-wide count of running persistent kernels and what waits to be freed. cudaFree,
/// cudaFreeHost and cudaStreamDestroy may wait for work on the device — a persistent kernel
/// never finishes — so nothing is freed while any kernel of any runtime runs: several
/// runtimes may share a GPU (ringkernel/multi_gpu.hpp), and a free by one would wait on the
/// other's kernels. Memory is freed when the last kernel of the process stops.
class Ledger {
 public:
  static Ledger& get() {
    static Ledger* l = new Ledger;  // never destroyed: runtimes may outlive static destruction order
    return *l;
  }
  void started() {
    std::lock_guard lock(m_);
    ++running_;
  }
  void stopped() {
    std::lock_guard lock(m_);
    if (running_ > 0) --running_;
    collect_locked();
  }
  void bury(Graveyard g) {
    std::lock_guard lock(m_);
    auto add = [](auto& to, auto& from) { to.insert(to.end(), from.begin(), from.end()); };
    add(g_.host, g.host);
    add(g_.device, g.device);
    add(g_.streams, g.streams);
    collect_locked();
  }

 private:
  void collect_locked() noexcept {
    if (running_ != 0) return;
    for (auto [d, p] : g_.host) {
      DeviceScope scope(d);
      cudaFreeHost(p);
    }
    for (auto [d, p] : g_.device) {
      DeviceScope scope(d);
      cudaFree(p);
    }
    for (auto [d, st] : g_.streams) {
      DeviceScope scope(d);
      cudaStreamDestroy(st);
    }
    g_ = {};
  }
  std::mutex m_;
  int running_ = 0;
  Graveyard g_;
};

/// The stream a DeviceMemory's copies, allocations and frees run on (shared with its
/// buffers, which may outlive it).
struct CopyStream {
  std::uint32_t device = 0;
  cudaStream_t stream = nullptr;
  ~CopyStream() {
    if (stream) Ledger::get().bury(Graveyard{{}, {}, {{device, stream}}});
  }
};

class CudaBuffer final : public GpuBuffer {
 public:
  CudaBuffer(std::shared_ptr<CopyStream> s, std::byte* p, std::size_t n, std::shared_ptr<std::atomic<std::size_t>> live)
      : s_(std::move(s)), p_(p), n_(n), live_(std::move(live)) {
    live_->fetch_add(n_, std::memory_order_relaxed);
  }
  ~CudaBuffer() override {
    DeviceScope scope(s_->device);
    cudaFreeAsync(p_, s_->stream);  // stream-ordered: waits for no kernel
    live_->fetch_sub(n_, std::memory_order_relaxed);
  }
  std::size_t size() const noexcept override { return n_; }
  void* device_ptr() const noexcept override { return p_; }
  Result<void> copy_from_host(std::span<const std::byte> src, std::size_t offset) override {
    if (auto r = check_buffer_range(offset, src.size(), n_, "copy_from_host"); !r) return r;
    return copy(p_ + offset, src.data(), src.size(), cudaMemcpyHostToDevice);
  }
  Result<void> copy_to_host(std::span<std::byte> dst, std::size_t offset) const override {
    if (auto r = check_buffer_range(offset, dst.size(), n_, "copy_to_host"); !r) return r;
    return copy(dst.data(), p_ + offset, dst.size(), cudaMemcpyDeviceToHost);
  }

 private:
  Result<void> copy(void* to, const void* from, std::size_t n, cudaMemcpyKind kind) const {
    if (n == 0) return {};
    DeviceScope scope(s_->device);
    RK_CUDA_TRY(cudaMemcpyAsync(to, from, n, kind, s_->stream), ErrorCode::BackendError, "GpuBuffer copy");
    RK_CUDA_TRY(cudaStreamSynchronize(s_->stream), ErrorCode::BackendError, "GpuBuffer copy");
    return {};
  }
  std::shared_ptr<CopyStream> s_;
  std::byte* p_;
  std::size_t n_;
  std::shared_ptr<std::atomic<std::size_t>> live_;
};

class CudaDeviceMemory final : public DeviceMemory {
 public:
  CudaDeviceMemory(std::shared_ptr<CopyStream> s, std::string device) : s_(std::move(s)), device_(std::move(device)) {}
  Result<std::unique_ptr<GpuBuffer>> allocate(std::size_t bytes) override {
    if (bytes == 0) return Error(ErrorCode::InvalidArgument, "allocate: size 0");
    DeviceScope scope(s_->device);
    void* p = nullptr;
    const cudaError_t e = cudaMallocAsync(&p, bytes, s_->stream);
    if (e != cudaSuccess) {
      cudaGetLastError();  // an allocation failure is not sticky: clear it
      return cuda_error(ErrorCode::OutOfMemory, "allocate: " + std::to_string(bytes) + " bytes of device memory", e);
    }
    auto buffer = std::make_unique<CudaBuffer>(s_, static_cast<std::byte*>(p), bytes, live_);  // frees p on error
    RK_CUDA_TRY(cudaMemsetAsync(p, 0, bytes, s_->stream), ErrorCode::BackendError, "allocate: zeroing");
    RK_CUDA_TRY(cudaStreamSynchronize(s_->stream), ErrorCode::BackendError, "allocate");
    return std::unique_ptr<GpuBuffer>(std::move(buffer));
  }
  std::string name() const override { return "CUDA device memory (" + device_ + ")"; }
  std::size_t allocated_bytes() const noexcept override { return live_->load(std::memory_order_relaxed); }

 private:
  std::shared_ptr<CopyStream> s_;
  std::string device_;
  std::shared_ptr<std::atomic<std::size_t>> live_ = std::make_shared<std::atomic<std::size_t>>(0);
};

class CudaKernel;

class CudaRuntime final : public RingKernelRuntime {
 public:
  static Result<std::unique_ptr<RingKernelRuntime>> create(std::uint32_t device_index) {
    auto rt = std::unique_ptr<CudaRuntime>(new CudaRuntime(device_index));
    if (auto r = rt->init(); !r) return r.error();
    return std::unique_ptr<RingKernelRuntime>(std::move(rt));
  }
  ~CudaRuntime() override;

  Backend backend() const noexcept override { return Backend::Cuda; }
  std::string device_name() const override { return name_; }
  Result<std::unique_ptr<DeviceMemory>> device_memory() override {
    DeviceScope scope(device_);
    int pools = 0;
    RK_CUDA_TRY(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, static_cast<int>(device_)),
                ErrorCode::BackendError, "cudaDeviceGetAttribute");
    if (!pools)
      return Error(ErrorCode::NotImplemented, name_ + " has no stream-ordered allocator, which GpuBuffers use (a "
                                                      "cudaFree would wait for the persistent kernels)");
    auto s = std::make_shared<CopyStream>();
    s->device = device_;
    RK_CUDA_TRY(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), ErrorCode::BackendError, "cudaStreamCreate");
    return std::unique_ptr<DeviceMemory>(std::make_unique<CudaDeviceMemory>(std::move(s), name_));
  }
  std::optional<std::uint64_t> free_memory() const override {
    DeviceScope scope(device_);
    std::size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) return std::nullopt;
    return free;
  }
  Result<std::unique_ptr<KernelBackend>> create(KernelCore& core) override;
  Result<void> connect(KernelCore& from, KernelCore& to) override;
  void forget(KernelCore& core) noexcept override;

  // Used by CudaKernel.
  void kernel_started(CudaKernel* k) {
    Ledger::get().started();
    std::lock_guard lock(mutex_);
    pumped_.push_back(k);
    if (!pump_.joinable()) pump_ = std::thread([this] { pump_loop(); });
  }
  void unregister(CudaKernel* k) {
    std::lock_guard lock(mutex_);
    pumped_.erase(std::remove(pumped_.begin(), pumped_.end(), k), pumped_.end());
  }
  void kernel_stopped() { Ledger::get().stopped(); }
  void bury(Graveyard g) { Ledger::get().bury(std::move(g)); }
  cudaStream_t setup_stream() const noexcept { return setup_; }
  std::int64_t clock_offset_us() const noexcept { return clock_offset_us_; }
  std::int64_t* directory() const noexcept { return directory_; }
  DeviceTopicTable* const* topic_word() const noexcept { return topic_word_; }
  int sm_count() const noexcept { return sm_count_; }
  std::uint32_t device() const noexcept { return device_; }
  /// Bump allocation from the K2K arena (device memory allocated before any kernel ran).
  Result<std::byte*> arena_alloc(std::size_t bytes, const char* what);
  /// Device publish routing: registers with the runtime's broker once (first kernel start).
  void listen_for_routes(Broker& broker);
  /// Kernel subscriptions the device served for publishes of `topic` made under routing
  /// `version` (null: none). A version's entries never change once made, and none is ever
  /// removed, so the pointer stays valid without the lock.
  const std::vector<SubscriptionId>* device_routed(std::uint32_t version, TopicId topic);
  std::mutex routes_mutex;  ///< route tables and inbound ring lists of this runtime's kernels
  bool poisoned() const noexcept { return poisoned_.load(); }
  void poison() noexcept { poisoned_.store(true); }

 private:
  explicit CudaRuntime(std::uint32_t device) : device_(device) {}
  Result<void> init();
  /// Forwards device publishes to the broker (one host thread per runtime).
  void pump_loop();
  std::uint32_t device_;
  std::string name_;
  int sm_count_ = 0;
  cudaStream_t setup_ = nullptr;
  std::int64_t clock_offset_us_ = 0;
  std::int64_t* directory_ = nullptr;
  std::mutex mutex_;
  // K2K rings come from one arena allocated before any kernel runs: a persistent kernel
  // then never touches memory allocated after its launch (which compute-sanitizer cannot
  // track, and which would need a device allocation while kernels spin).
  std::byte* k2k_arena_ = nullptr;
  std::size_t k2k_arena_used_ = 0;
  std::mutex arena_mutex_;  // a leaf lock
  // Publish routing (see DeviceTopicTable): the table word every kernel reads, the inbox
  // of each subscriber kernel, and per routing version the subscriptions served on the
  // device per topic. table_mutex_ is taken under the broker's index lock (the listener),
  // never the other way round.
  void on_routes(std::uint64_t version, const std::vector<TopicRoute>& routes);
  std::optional<RingView> inbox_for(KernelCore& core, CudaKernel& k);
  /// A zeroed ring of `capacity` slots of `slot_size` bytes in the K2K arena (device memory).
  Result<RingView> device_ring(std::uint32_t capacity, std::uint32_t slot_size, const char* what);
  DeviceTopicTable** topic_word_ = nullptr;
  std::mutex table_mutex_;
  std::unordered_map<const KernelCore*, RingView> inboxes_;
  std::map<std::uint32_t, std::unordered_map<TopicId, std::vector<SubscriptionId>>> device_routed_;
  std::once_flag listen_once_;
  Broker* broker_ = nullptr;

 public:
  static constexpr std::size_t kK2KArenaBytes = std::size_t{128} << 20;
  std::atomic<bool> poisoned_{false};
  std::vector<CudaKernel*> pumped_;
  std::thread pump_;
  std::atomic<bool> pump_stop_{false};
};

/// One persistent kernel's resources.
class CudaKernel final : public KernelBackend {
 public:
  CudaKernel(CudaRuntime& rt, KernelCore& core, const CudaProgram& program) : rt_(rt), core_(core), program_(program) {}
  ~CudaKernel() override;

  Result<void> allocate();
  Result<void> start() override;
  Result<void> stop(Duration timeout) override;
  Result<void> check_health() override;
  Result<std::uint64_t> post_actor_command(ActorOp op, std::uint32_t index) override;
  bool actor_command_done(std::uint64_t seq) const noexcept override { return load_acquire(&mailbox_->ack) >= seq; }
  /// Bumps the control epoch on the input ring's producer line: the poller loads it with
  /// the tail every round and reads the control words and route counts when it moved.
  void control_changed() noexcept override {
    std::atomic_ref<std::uint32_t>(core_.input.indices->control_epoch).fetch_add(1, std::memory_order_release);
  }
  void k2k_counters(std::uint64_t& dead, std::uint64_t& rejected) const noexcept override {
    dead = load_relaxed(&counters_->dead_letters);
    rejected = load_relaxed(&counters_->tenant_rejections);
  }

  RouteTable* routes() const noexcept { return routes_; }
  const DeviceCounters* counters() const noexcept { return counters_; }
  bool running() const noexcept { return running_.load(); }
  CudaRuntime& runtime() const noexcept { return rt_; }
  /// Hands the kernel's device publishes to the broker; returns how many (pump thread).
  /// A publish the broker refuses for backpressure (a full subscription) stays in the ring
  /// and is offered again on the next pass, so a slow subscriber fills the ring and the
  /// kernel's ctx.publish sees QueueFull: nothing is lost. Unroutable publishes (no such
  /// topic, wrong type) are counted by the broker and released.
  std::uint32_t pump_publishes() noexcept;
  /// Adds what the kernel delivered on the device since the last call to the broker's
  /// totals (pump thread).
  void fold_device_counts() noexcept {
    if (!core_.broker) return;
    const std::uint64_t only = load_relaxed(&counters_->pub_device_only);
    const std::uint64_t delivered = load_relaxed(&counters_->pub_delivered);
    const std::uint64_t dropped = load_relaxed(&counters_->pub_dropped);
    if (only == folded_[0] && delivered == folded_[1] && dropped == folded_[2]) return;
    core_.broker->count_device_deliveries(only - folded_[0], delivered - folded_[1], dropped - folded_[2]);
    folded_[0] = only;
    folded_[1] = delivered;
    folded_[2] = dropped;
  }
  std::uint32_t k2k_slot_size() const noexcept { return k2k_slot_size_; }
  std::vector<RingIndices*> inbound_rings;  // device memory; closed when this kernel goes

 private:
  Result<void> wait_stream(Duration timeout);
  void mark_dead(cudaError_t e) noexcept;

  CudaRuntime& rt_;
  KernelCore& core_;
  const CudaProgram& program_;
  std::byte* mapped_ = nullptr;
  std::size_t mapped_size_ = 0;
  DeviceKernel* dk_ = nullptr;
  DeviceWork* work_ = nullptr;
  void* state_ = nullptr;
  std::uint32_t* actor_alive_ = nullptr;  // device, actor pools
  void* initial_state_ = nullptr;         // device, actor pools
  ActorMailbox* mailbox_ = nullptr;       // mapped (host address)
  std::uint64_t actor_seq_ = 0;
  RouteTable* routes_ = nullptr;
  DeviceCounters* counters_ = nullptr;
  RingConsumer<> publish_;
  std::uint64_t folded_[3] = {0, 0, 0};  // device publish counters already given to the broker
  cudaStream_t stream_ = nullptr;
  std::uint32_t threads_ = 0;
  bool wide_ = false;  // the handler's wide build (more than kCudaCompactThreads threads)
  std::uint32_t shared_bytes_ = 0;
  std::uint32_t k2k_slot_size_ = 0;
  std::atomic<bool> running_{false};  // read by the route listener on other threads
  bool stuck_ = false;
  cudaError_t fault_ = cudaSuccess;
};

std::uint32_t CudaKernel::pump_publishes() noexcept {
  const std::uint32_t n = publish_.available(64);
  std::uint32_t i = 0;
  for (; i < n; ++i) {
    const std::byte* slot = publish_.slot(i);
    Envelope env;
    std::memcpy(&env, slot, sizeof env);
    if (!core_.broker) continue;
    std::span<const SubscriptionId> served;
    if (env.flags & kEnvelopeDeviceRouted) {
      // Delivered on the device to some kernel subscribers already: the broker skips them.
      std::uint32_t version = 0;
      std::memcpy(&version, slot + sizeof env + kPublishMaxPayload, sizeof version);
      if (const auto* ids = rt_.device_routed(version, env.correlation_id)) served = *ids;
    }
    const Status s = core_.broker->publish_from_kernel(env.correlation_id, env.type_id, slot + sizeof env,
                                                       env.payload_size, env.timestamp, core_.slot, served);
    if (s == Status::QueueFull) break;
  }
  if (i) publish_.release(i);
  return i;
}

void CudaRuntime::pump_loop() {
  unsigned idle = 0;
  while (!pump_stop_.load(std::memory_order_acquire)) {
    std::uint32_t moved = 0;
    {
      std::lock_guard lock(mutex_);
      for (CudaKernel* k : pumped_) {
        moved += k->pump_publishes();
        k->fold_device_counts();
      }
    }
    if (moved) {
      idle = 0;
    } else if (++idle > 64) {
      std::this_thread::sleep_for(std::chrono::microseconds(idle > 4096 ? 500 : 20));
    }
  }
}

Result<void> CudaRuntime::init() {
  DeviceScope scope(device_);
  const BackendAvailability a = probe(device_);
  if (!a.available) return Error(ErrorCode::BackendUnavailable, "cuda backend unavailable: " + a.reason);
  name_ = a.device;
  cudaDeviceProp p{};
  RK_CUDA_TRY(cudaGetDeviceProperties(&p, static_cast<int>(device_)), ErrorCode::BackendError, "cudaGetDeviceProperties");
  sm_count_ = p.multiProcessorCount;
  RK_CUDA_TRY(cudaStreamCreateWithFlags(&setup_, cudaStreamNonBlocking), ErrorCode::BackendError, "cudaStreamCreate");

  // Eager module loading: touch every registered kernel (and the probe) now.
  cudaFuncAttributes attr{};
  RK_CUDA_TRY(cudaFuncGetAttributes(&attr, rk_clock_probe), ErrorCode::BackendError, "loading the clock probe");
  for (const KernelInfo& k : registered_kernels()) {
    if (!k.cuda) continue;
    RK_CUDA_TRY(cudaFuncGetAttributes(&attr, k.cuda->kernel_function), ErrorCode::BackendError,
                "loading the CUDA module of kernel '" + std::string(k.name) + "'");
    RK_CUDA_TRY(cudaFuncGetAttributes(&attr, k.cuda->kernel_function_wide), ErrorCode::BackendError,
                "loading the CUDA module of kernel '" + std::string(k.name) + "'");
  }

  // Clock calibration: wall clock µs = globaltimer ns / 1000 + offset. The probe's stamp
  // is matched to the midpoint of the host interval that brackets it; best of 5.
  unsigned long long* probe_out = nullptr;
  RK_CUDA_TRY(cudaHostAlloc(&probe_out, sizeof(unsigned long long), cudaHostAllocMapped), ErrorCode::OutOfMemory,
              "cudaHostAlloc (clock probe)");
  std::int64_t best_span = INT64_MAX;
  for (int i = 0; i < 5; ++i) {
    const std::uint64_t t0 = hlc::wall_clock_us();
    rk_clock_probe<<<1, 1, 0, setup_>>>(probe_out);
    const cudaError_t e = cudaStreamSynchronize(setup_);
    const std::uint64_t t1 = hlc::wall_clock_us();
    if (e != cudaSuccess) {
      Ledger::get().bury(Graveyard{{{device_, probe_out}}, {}, {}});
      return cuda_error(ErrorCode::BackendError, "clock calibration kernel", e);
    }
    const auto span = static_cast<std::int64_t>(t1 - t0);
    if (span < best_span) {
      best_span = span;
      const auto gpu_us = static_cast<std::int64_t>(*reinterpret_cast<volatile unsigned long long*>(probe_out) / 1000);
      clock_offset_us_ = static_cast<std::int64_t>((t0 + t1) / 2) - gpu_us;
    }
  }
  // Not cudaFreeHost now: kernels of another runtime may be running on this GPU.
  Ledger::get().bury(Graveyard{{{device_, probe_out}}, {}, {}});

  RK_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&k2k_arena_), kK2KArenaBytes), ErrorCode::OutOfMemory,
              "cudaMalloc of the 128 MiB K2K ring arena");
  // The publish routing table word (null: no table yet) at the arena's start.
  topic_word_ = reinterpret_cast<DeviceTopicTable**>(k2k_arena_);
  k2k_arena_used_ = 256;
  RK_CUDA_TRY(cudaMemsetAsync(topic_word_, 0, sizeof(void*), setup_), ErrorCode::BackendError, "cudaMemset (routing word)");

  // Tenant directory (device memory): -1 = free slot.
  RK_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&directory_), sizeof(std::int64_t) * RuntimeCore::kMaxKernels),
              ErrorCode::OutOfMemory, "cudaMalloc (tenant directory)");
  RK_CUDA_TRY(cudaMemsetAsync(directory_, 0xFF, sizeof(std::int64_t) * RuntimeCore::kMaxKernels, setup_),
              ErrorCode::BackendError, "cudaMemset");
  RK_CUDA_TRY(cudaStreamSynchronize(setup_), ErrorCode::BackendError, "cudaStreamSynchronize");
  return {};
}

CudaRuntime::~CudaRuntime() {
  DeviceScope scope(device_);
  if (broker_) broker_->clear_route_listener(this);  // the broker outlives the backends
  pump_stop_.store(true, std::memory_order_release);
  if (pump_.joinable()) pump_.join();
  // Freed once no kernel of the process runs (a kernel that never stopped keeps it).
  Graveyard g;
  if (k2k_arena_) g.device.emplace_back(device_, k2k_arena_);
  if (directory_) g.device.emplace_back(device_, directory_);
  if (setup_) g.streams.emplace_back(device_, setup_);
  Ledger::get().bury(std::move(g));
}

Result<std::unique_ptr<KernelBackend>> CudaRuntime::create(KernelCore& core) {
  DeviceScope scope(device_);
  if (poisoned())
    return Error(ErrorCode::BackendError,
                 "an earlier kernel faulted on the GPU and the CUDA context is unusable; restart the process");
  const KernelInfo* info = find_kernel(core.registered_name);
  if (!info || !info->cuda)
    return Error(ErrorCode::BackendUnavailable, "kernel '" + core.registered_name +
                                                    "' has no CUDA build: compile the translation unit that registers "
                                                    "it (RK_KERNEL) with nvcc");
  const LaunchOptions& o = core.options;
  if (o.block_size > 1024 - 32 * kPollerWarps)
    return Error(ErrorCode::InvalidArgument, "block_size " + std::to_string(o.block_size) +
                                                 " too large for CUDA: at most 992 handler threads (one warp polls the host)");
  if (o.mode == KernelMode::Actor && o.block_size > 32 && o.block_size % 32 != 0)
    return Error(ErrorCode::InvalidArgument,
                 "on CUDA an actor block larger than one warp must be a multiple of 32 threads (got " +
                     std::to_string(o.block_size) + ")");
  auto k = std::make_unique<CudaKernel>(*this, core, *info->cuda);
  if (auto r = k->allocate(); !r) return r.error();
  return std::unique_ptr<KernelBackend>(std::move(k));
}

Result<void> CudaKernel::allocate() {
  const LaunchOptions& o = core_.options;
  const std::uint32_t in_slot = slot_size_for(core_.request_size);
  const std::uint32_t out_slot = slot_size_for(core_.response_size);
  k2k_slot_size_ = slot_size_for(std::max<std::uint32_t>(core_.request_size, o.k2k_delivery == K2KDelivery::Pull ? 1024 : 0));
  threads_ = ((o.block_size + 31u) & ~31u) + 32u * kPollerWarps;
  shared_bytes_ = static_cast<std::uint32_t>(((sizeof(BlockShared) + 15) & ~std::size_t{15}) +
                                             (o.mode == KernelMode::Actor ? in_slot : 0u) + o.shared_memory_size);

  // Occupancy: refuse a grid that cannot be co-resident.
  wide_ = threads_ > kCudaCompactThreads;
  const void* fn = wide_ ? program_.kernel_function_wide : program_.kernel_function;
  if (shared_bytes_ > 48 * 1024) {
    RK_CUDA_TRY(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes_)),
                ErrorCode::LaunchFailed, "cannot grant " + std::to_string(shared_bytes_) + " bytes of shared memory");
  }
  int per_sm = 0;
  RK_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, static_cast<int>(threads_), shared_bytes_),
              ErrorCode::LaunchFailed, "occupancy query");
  const std::int64_t capacity = std::int64_t{per_sm} * rt_.sm_count();
  if (per_sm == 0 || o.grid_size > capacity) {
    return Error(ErrorCode::LaunchFailed, "a grid of " + std::to_string(o.grid_size) + " blocks of " +
                                              std::to_string(threads_) + " threads with " +
                                              std::to_string(shared_bytes_) + " B of shared memory cannot be co-resident "
                                              "(at most " + std::to_string(capacity) + " on this GPU); a persistent kernel "
                                              "needs every block resident");
  }

  // Mapped pinned memory: control, telemetry, counters, route table, both rings.
  auto align = [](std::size_t v, std::size_t a) { return (v + a - 1) / a * a; };
  std::size_t off = 0;
  const std::size_t off_control = off; off = align(off + sizeof(ControlBlock), 128);
  const std::size_t off_tele = off; off = align(off + sizeof(TelemetryBuffer), 128);
  const std::size_t off_counters = off; off = align(off + sizeof(DeviceCounters), 128);
  const std::size_t off_routes = off; off = align(off + sizeof(RouteTable), 128);
  const std::size_t off_in_idx = off; off = align(off + sizeof(RingIndices), 128);
  const std::size_t off_out_idx = off; off = align(off + sizeof(RingIndices), 128);
  const std::size_t off_in = off; off = align(off + std::size_t{o.input_queue_capacity} * in_slot, 128);
  const std::size_t off_out = off; off = align(off + std::size_t{o.output_queue_capacity} * out_slot, 128);
  const std::uint32_t pub_slot = slot_size_for(kPublishMaxPayload + kPublishTrailer);
  const std::size_t off_pub_idx = off; off = align(off + sizeof(RingIndices), 128);
  const std::size_t off_pub = off; off = align(off + std::size_t{kPublishCapacity} * pub_slot, 128);
  const std::size_t off_mailbox = off; off = align(off + sizeof(ActorMailbox), 128);
  const std::size_t off_faults = off; off = align(off + std::size_t{o.actor_slots} * sizeof(std::uint32_t), 128);
  mapped_size_ = off;
  void* m = nullptr;
  RK_CUDA_TRY(cudaHostAlloc(&m, mapped_size_, cudaHostAllocMapped | cudaHostAllocPortable), ErrorCode::OutOfMemory,
              "cudaHostAlloc of " + std::to_string(mapped_size_) + " bytes for the kernel's queues");
  mapped_ = static_cast<std::byte*>(m);
  std::memset(mapped_, 0, mapped_size_);
  std::byte* dev_mapped = nullptr;
  RK_CUDA_TRY(cudaHostGetDevicePointer(reinterpret_cast<void**>(&dev_mapped), mapped_, 0), ErrorCode::BackendError,
              "cudaHostGetDevicePointer");
  auto host_at = [&](std::size_t o2) { return mapped_ + o2; };
  auto dev_at = [&](std::size_t o2) { return dev_mapped + o2; };

  auto* control = reinterpret_cast<ControlBlock*>(host_at(off_control));
  control->input_capacity = o.input_queue_capacity;
  control->output_capacity = o.output_queue_capacity;
  control->input_slot_size = in_slot;
  control->output_slot_size = out_slot;
  control->kernel_id = core_.slot;
  control->tenant_id = o.tenant_id;
  auto* tele = reinterpret_cast<TelemetryBuffer*>(host_at(off_tele));
  tele->min_latency_us = ~std::uint64_t{0};
  counters_ = reinterpret_cast<DeviceCounters*>(host_at(off_counters));
  routes_ = reinterpret_cast<RouteTable*>(host_at(off_routes));

  core_.control = control;
  core_.telemetry = tele;
  core_.input = RingView{reinterpret_cast<RingIndices*>(host_at(off_in_idx)), host_at(off_in), o.input_queue_capacity, in_slot};
  core_.output = RingView{reinterpret_cast<RingIndices*>(host_at(off_out_idx)), host_at(off_out), o.output_queue_capacity, out_slot};
  core_.kernel_doorbell = nullptr;  // the kernel polls; nothing to wake
  core_.host_doorbell = nullptr;

  // Device memory: the kernel's description, its work words, its state.
  cudaStream_t s = rt_.setup_stream();
  // cudaMalloc does not wait for running kernels (cudaFree would: frees are deferred).
  // Stream-ordered allocation is not used: memory from cudaMallocAsync on one stream is
  // not ordered before a persistent kernel launched earlier on another.
  RK_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&dk_), sizeof(DeviceKernel)), ErrorCode::OutOfMemory,
              "cudaMalloc (kernel description)");
  RK_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&work_), sizeof(DeviceWork)), ErrorCode::OutOfMemory,
              "cudaMalloc (kernel work words)");
  const std::size_t actors = std::max<std::uint32_t>(o.actor_slots, 1);
  RK_CUDA_TRY(cudaMalloc(&state_, std::max<std::size_t>(actors * program_.state_size, 8)), ErrorCode::OutOfMemory,
              "cudaMalloc (kernel state: " + std::to_string(actors) + " x " + std::to_string(program_.state_size) + " bytes)");
  if (o.actor_slots != 0) {
    RK_CUDA_TRY(cudaMalloc(reinterpret_cast<void**>(&actor_alive_), std::size_t{o.actor_slots} * 4), ErrorCode::OutOfMemory,
                "cudaMalloc (actor table)");
    RK_CUDA_TRY(cudaMalloc(&initial_state_, std::max<std::uint32_t>(program_.state_size, 8)), ErrorCode::OutOfMemory,
                "cudaMalloc (initial actor state)");
    RK_CUDA_TRY(cudaMemsetAsync(actor_alive_, 0, std::size_t{o.actor_slots} * 4, s), ErrorCode::BackendError,
                "actor table reset");
  }
  mailbox_ = reinterpret_cast<ActorMailbox*>(host_at(off_mailbox));
  std::vector<std::byte> init(std::max<std::uint32_t>(program_.state_size, 8));
  program_.init_state(init.data());
  DeviceWork w{};
  w.hlc = hlc::pack(core_.host_clock->now());
  DeviceKernel d{};
  d.input = RingView{reinterpret_cast<RingIndices*>(dev_at(off_in_idx)), dev_at(off_in), o.input_queue_capacity, in_slot};
  d.output = RingView{reinterpret_cast<RingIndices*>(dev_at(off_out_idx)), dev_at(off_out), o.output_queue_capacity, out_slot};
  d.publish = RingView{reinterpret_cast<RingIndices*>(dev_at(off_pub_idx)), dev_at(off_pub), kPublishCapacity, pub_slot};
  publish_ = RingConsumer<>(RingView{reinterpret_cast<RingIndices*>(host_at(off_pub_idx)), host_at(off_pub),
                                     kPublishCapacity, pub_slot});
  d.control = reinterpret_cast<ControlBlock*>(dev_at(off_control));
  d.telemetry = reinterpret_cast<TelemetryBuffer*>(dev_at(off_tele));
  d.routes = reinterpret_cast<RouteTable*>(dev_at(off_routes));
  d.counters = reinterpret_cast<DeviceCounters*>(dev_at(off_counters));
  d.work = work_;
  d.state = state_;
  d.tenants = rt_.directory();
  d.clock_offset_us = rt_.clock_offset_us();
  d.node_id = (core_.host_clock->node_id() << 16) | (core_.slot + 1);
  d.tenant_id = o.tenant_id;
  d.slot = core_.slot;
  d.block_size = o.block_size;
  d.grid_size = o.grid_size;
  d.mode = static_cast<std::uint32_t>(o.mode);
  d.shared_size = o.shared_memory_size;
  d.pull_mode = o.k2k_delivery == K2KDelivery::Pull ? 1u : 0u;
  d.k2k_enabled = o.enable_k2k ? 1u : 0u;
  d.directory_size = RuntimeCore::kMaxKernels;
  d.actor_slots = o.actor_slots;
  d.state_stride = program_.state_size;
  d.actor_alive = actor_alive_;
  d.initial_state = initial_state_;
  d.actor_mailbox = reinterpret_cast<ActorMailbox*>(dev_at(off_mailbox));
  d.topics = rt_.topic_word();
  d.host_node = core_.host_clock->node_id();
  // The express line (queue.hpp): single sends to an actor reach it with the poller's read
  // of the tail, one PCIe round trip instead of two. RINGKERNEL_CUDA_EXPRESS=0 turns it off.
  const char* express_env = std::getenv("RINGKERNEL_CUDA_EXPRESS");
  const bool express_on = !(express_env && std::string_view(express_env) == "0");
  if (express_on && o.mode == KernelMode::Actor && core_.request_size <= express::kMaxPayload) {
    d.express = express::words_for(core_.request_size);
    core_.input_express = true;
  }
  d.k2k_express = express_on ? 1u : 0u;  // K2K express lines (device_context.cuh)
  // Responses too: the host may take one from the output ring's line before the tail,
  // which the kernel publishes only after a system fence.
  if (express_on && o.mode == KernelMode::Actor && core_.response_size <= express::kMaxPayload) {
    d.out_express = 1;
    core_.output_express = true;
    core_.output_express_node = d.node_id;
  }
  if (o.actor_slots != 0) {
    d.actor_faults = reinterpret_cast<std::uint32_t*>(dev_at(off_faults));
    core_.actor_faults = reinterpret_cast<const std::uint32_t*>(host_at(off_faults));
  }
  const auto tenant = static_cast<std::int64_t>(o.tenant_id);
  RK_CUDA_TRY(cudaMemcpyAsync(state_, init.data(), init.size(), cudaMemcpyHostToDevice, s), ErrorCode::BackendError, "state upload");
  if (initial_state_)
    RK_CUDA_TRY(cudaMemcpyAsync(initial_state_, init.data(), init.size(), cudaMemcpyHostToDevice, s), ErrorCode::BackendError,
                "initial actor state upload");
  RK_CUDA_TRY(cudaMemcpyAsync(work_, &w, sizeof w, cudaMemcpyHostToDevice, s), ErrorCode::BackendError, "work upload");
  RK_CUDA_TRY(cudaMemcpyAsync(dk_, &d, sizeof d, cudaMemcpyHostToDevice, s), ErrorCode::BackendError, "description upload");
  RK_CUDA_TRY(cudaMemcpyAsync(rt_.directory() + core_.slot, &tenant, sizeof tenant, cudaMemcpyHostToDevice, s),
              ErrorCode::BackendError, "directory update");
  RK_CUDA_TRY(cudaStreamSynchronize(s), ErrorCode::BackendError, "setup stream");
  RK_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), ErrorCode::BackendError, "cudaStreamCreate");
  return {};
}

CudaKernel::~CudaKernel() {
  DeviceScope scope(rt_.device());
  rt_.unregister(this);
  Graveyard g;
  if (stuck_) {
    // The kernel never stopped: its memory stays mapped for as long as it may run.
    std::fprintf(stderr, "ringkernel: CUDA kernel '%s' did not stop; its memory is left allocated\n", core_.id.value.c_str());
    return;
  }
  const std::uint32_t dev = rt_.device();
  if (mapped_) g.host.emplace_back(dev, mapped_);
  for (void* p : {static_cast<void*>(dk_), static_cast<void*>(work_), state_, static_cast<void*>(actor_alive_), initial_state_})
    if (p) g.device.emplace_back(dev, p);
  if (stream_) g.streams.emplace_back(dev, stream_);
  rt_.bury(std::move(g));
}

Result<void> CudaKernel::start() {
  DeviceScope scope(rt_.device());
  CudaLaunch l{core_.options.grid_size, threads_, shared_bytes_, stream_, dk_, core_.options.cooperative, wide_};
  const auto e = static_cast<cudaError_t>(program_.launch(l));
  if (e != cudaSuccess) return cuda_error(ErrorCode::LaunchFailed, "launching kernel '" + core_.id.value + "'", e);
  running_ = true;
  rt_.kernel_started(this);
  if (core_.broker) rt_.listen_for_routes(*core_.broker);
  // A persistent kernel that cannot get an SM never starts: check it did, within 5 s.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (load_acquire(&counters_->started) == 0) {
    const cudaError_t q = cudaStreamQuery(stream_);
    if (q != cudaErrorNotReady && q != cudaSuccess) {
      mark_dead(q);
      return cuda_error(ErrorCode::LaunchFailed, "kernel '" + core_.id.value + "' failed at start", q);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      store_release(&core_.control->should_terminate, 1u);
      control_changed();
      return Error(ErrorCode::LaunchFailed, "kernel '" + core_.id.value +
                                                "' did not start within 5 s: the GPU has no room next to the persistent "
                                                "kernels already running");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  return {};
}

void CudaKernel::mark_dead(cudaError_t e) noexcept {
  fault_ = e;
  // The kernel cannot write these any more: record its death where the host path looks.
  store_release(&core_.control->last_error, static_cast<std::uint32_t>(DeviceError::DeviceTrap));
  store_release(&core_.control->has_terminated, 1u);
  if (running_) {
    running_ = false;
    rt_.poison();
  }
}

Result<void> CudaKernel::check_health() {
  DeviceScope scope(rt_.device());
  if (fault_ != cudaSuccess)
    return cuda_error(ErrorCode::KernelFaulted, "kernel '" + core_.id.value + "' faulted on the GPU; the CUDA context is "
                                                "unusable, restart the process", fault_);
  if (running_) {
    const cudaError_t q = cudaStreamQuery(stream_);
    if (q != cudaErrorNotReady && q != cudaSuccess) {
      mark_dead(q);
      return check_health();
    }
  }
  const std::uint32_t err = load_acquire(&core_.control->last_error);
  if (err != 0 && load_acquire(&core_.control->has_terminated) != 0) return core_.dead_error();
  return {};
}

Result<std::uint64_t> CudaKernel::post_actor_command(ActorOp op, std::uint32_t index) {
  if (!running_) return core_.dead_error();
  const std::uint64_t seq = ++actor_seq_;
  // On the input tail's line: the poller warp loads it with the tail; the leader acknowledges.
  store_release(&core_.input.indices->command, seq << 32 | std::uint64_t{static_cast<std::uint32_t>(op)} << 24 | index);
  return seq;
}

Result<void> CudaKernel::wait_stream(Duration timeout) {
  DeviceScope scope(rt_.device());
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const cudaError_t q = cudaStreamQuery(stream_);
    if (q == cudaSuccess) break;
    if (q != cudaErrorNotReady) {
      mark_dead(q);
      return check_health();
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      stuck_ = true;
      return Error(ErrorCode::Timeout, "kernel '" + core_.id.value +
                                           "' did not leave its loop in time (a handler that never returns cannot be "
                                           "interrupted on a GPU)");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  if (running_) {
    running_ = false;
    rt_.kernel_stopped();
  }
  return {};
}

Result<void> CudaKernel::stop(Duration timeout) {
  if (!running_) return fault_ != cudaSuccess ? check_health() : Result<void>{};
  store_release(&core_.control->should_terminate, 1u);  // the poller warp acquires it
  control_changed();
  return wait_stream(timeout);
}

Result<std::byte*> CudaRuntime::arena_alloc(std::size_t bytes, const char* what) {
  bytes = (bytes + 255) & ~std::size_t{255};
  std::lock_guard lock(arena_mutex_);
  if (k2k_arena_used_ + bytes > kK2KArenaBytes)
    return Error(ErrorCode::OutOfMemory, std::string(what) + ": the K2K ring arena (128 MiB per runtime) is exhausted; "
                                         "use smaller k2k_queue_capacity / input_queue_capacity values");
  std::byte* mem = k2k_arena_ + k2k_arena_used_;
  k2k_arena_used_ += bytes;
  return mem;
}

Result<void> CudaRuntime::connect(KernelCore& from, KernelCore& to) {
  DeviceScope scope(device_);
  auto* f = static_cast<CudaKernel*>(from.impl.get());
  auto* t = static_cast<CudaKernel*>(to.impl.get());
  RouteTable* fr = f->routes();
  RouteTable* tr = t->routes();
  std::unique_lock routes_lock(routes_mutex);
  const std::uint32_t oc = load_acquire(&fr->out_count), ic = load_acquire(&tr->in_count);
  if (oc >= kDeviceMaxRoutes || ic >= kDeviceMaxRoutes)
    return Error(ErrorCode::K2KError, "connect: a CUDA kernel has at most " + std::to_string(kDeviceMaxRoutes) +
                                          " outbound and inbound K2K routes (a kernel subscriber's publish inbox takes "
                                          "one inbound route)");
  auto ring = device_ring(from.options.k2k_queue_capacity, t->k2k_slot_size(), "connect");
  if (!ring) return ring.error();
  const RingView view = *ring;
  // Entries first, then the counts with release stores (the pollers acquire them).
  fr->out[oc] = RouteEntry{to.slot, 0, view};
  tr->in[ic] = RouteEntry{from.slot, 0, view};
  store_release(&fr->out_count, oc + 1);
  store_release(&tr->in_count, ic + 1);
  f->control_changed();
  t->control_changed();
  t->inbound_rings.push_back(view.indices);
  routes_lock.unlock();
  // Wait until both kernels have taken the route into their caches: a message sent after
  // connect() returns then sees it (ctx.k2k_route_count() included). A kernel that is not
  // running has nothing to wait for.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    const bool from_ok = !f->running() || (load_acquire(&f->counters()->routes_seen) >> 32) >= oc + 1;
    const bool to_ok = !t->running() || (load_acquire(&t->counters()->routes_seen) & 0xffffffffu) >= ic + 1;
    if (from_ok && to_ok) return {};
    if (auto h = (from_ok ? t : f)->check_health(); !h) return h.error();
    if (std::chrono::steady_clock::now() >= deadline)
      return Error(ErrorCode::Timeout, "connect: kernel '" + (from_ok ? to : from).id.value +
                                           "' did not take the new route within 2 s (its handler has not returned to "
                                           "the loop); the route is installed and is used once it does");
    std::this_thread::sleep_for(std::chrono::microseconds(5));
  }
}

void CudaRuntime::forget(KernelCore& core) noexcept {
  DeviceScope scope(device_);
  const std::int64_t free_slot = -1;
  cudaMemcpyAsync(directory_ + core.slot, &free_slot, sizeof free_slot, cudaMemcpyHostToDevice, setup_);
  if (core.impl) {
    const std::uint32_t one = 1;
    std::lock_guard lock(routes_mutex);
    for (RingIndices* ix : static_cast<CudaKernel*>(core.impl.get())->inbound_rings)
      cudaMemcpyAsync(&ix->consumer_closed, &one, sizeof one, cudaMemcpyHostToDevice, setup_);
  }
  cudaStreamSynchronize(setup_);
  std::lock_guard lock(table_mutex_);
  inboxes_.erase(&core);  // its subscriptions go next (Broker::forget_kernel): the table follows
}

void CudaRuntime::listen_for_routes(Broker& broker) {
  std::call_once(listen_once_, [&] {
    broker_ = &broker;
    broker.set_route_listener(this, [this](std::uint64_t version, const std::vector<TopicRoute>& routes) {
      on_routes(version, routes);
    });
  });
}

const std::vector<SubscriptionId>* CudaRuntime::device_routed(std::uint32_t version, TopicId topic) {
  std::lock_guard lock(table_mutex_);
  auto v = device_routed_.find(version);
  if (v == device_routed_.end()) return nullptr;
  auto t = v->second.find(topic);
  return t == v->second.end() ? nullptr : &t->second;
}

Result<RingView> CudaRuntime::device_ring(std::uint32_t capacity, std::uint32_t slot_size, const char* what) {
  const std::size_t bytes = sizeof(RingIndices) + std::size_t{capacity} * slot_size;
  auto mem = arena_alloc(bytes, what);
  if (!mem) return mem.error();
  RK_CUDA_TRY(cudaMemsetAsync(*mem, 0, bytes, setup_), ErrorCode::BackendError, "cudaMemset (device ring)");
  RK_CUDA_TRY(cudaStreamSynchronize(setup_), ErrorCode::BackendError, "setup stream");
  return RingView{reinterpret_cast<RingIndices*>(*mem), *mem + sizeof(RingIndices), capacity, slot_size};
}

std::optional<RingView> CudaRuntime::inbox_for(KernelCore& core, CudaKernel& k) {
  if (auto it = inboxes_.find(&core); it != inboxes_.end()) return it->second;
  // The inbox holds what the kernel's input queue would: its capacity, its slot size.
  auto ring = device_ring(core.options.input_queue_capacity, k.k2k_slot_size(), "publish inbox");
  if (!ring) return std::nullopt;
  const RingView view = *ring;
  {
    std::lock_guard lock(routes_mutex);
    RouteTable* tr = k.routes();
    const std::uint32_t ic = load_acquire(&tr->in_count);
    if (ic >= kDeviceMaxRoutes) return std::nullopt;  // no inbound route left: the broker delivers
    tr->in[ic] = RouteEntry{kPublishInboxPeer, 0, view};
    store_release(&tr->in_count, ic + 1);  // the kernel's poller picks it up
    k.control_changed();
    k.inbound_rings.push_back(view.indices);
  }
  inboxes_.emplace(&core, view);
  return view;
}

void CudaRuntime::on_routes(std::uint64_t version, const std::vector<TopicRoute>& routes) {
  DeviceScope scope(device_);
  std::lock_guard lock(table_mutex_);
  std::vector<DeviceTopicEntry> entries;
  std::unordered_map<TopicId, std::vector<SubscriptionId>> served;
  for (const TopicRoute& r : routes) {
    DeviceTopicEntry e{};
    e.topic = r.topic;
    e.type = r.type;
    e.size = r.size;
    e.host_too = r.others ? 1u : 0u;
    std::vector<SubscriptionId> ids;
    for (const KernelRoute& kr : r.kernels) {
      // Served on the device: a running kernel of this runtime that consumes its inbound
      // rings in its loop, with room in the entry. Anything else stays with the broker.
      auto* k = dynamic_cast<CudaKernel*>(kr.kernel->impl.get());
      std::optional<RingView> inbox;
      if (k && &k->runtime() == this && k->running() && kr.kernel->options.k2k_delivery != K2KDelivery::Pull &&
          e.count < kTopicDeviceSubscribers && r.size + sizeof(Envelope) <= k->k2k_slot_size())
        inbox = inbox_for(*kr.kernel, *k);
      if (!inbox) {
        e.host_too = 1;
        continue;
      }
      e.subs[e.count++] = DeviceTopicSub{*inbox, kr.overflow == OverflowPolicy::Backpressure ? 1u : 0u, 0};
      ids.push_back(kr.id);
    }
    if (e.count == 0 || r.topic == 0) continue;
    entries.push_back(e);
    served.emplace(r.topic, std::move(ids));
  }
  DeviceTopicTable* table = nullptr;
  if (!entries.empty()) {
    std::uint32_t cap = 8;
    while (cap < 2 * entries.size()) cap *= 2;
    std::vector<std::byte> image(sizeof(DeviceTopicTable) + std::size_t{cap} * sizeof(DeviceTopicEntry));
    const DeviceTopicTable header{cap, static_cast<std::uint32_t>(version), 0};
    std::memcpy(image.data(), &header, sizeof header);
    auto* slots = reinterpret_cast<DeviceTopicEntry*>(image.data() + sizeof header);
    for (const DeviceTopicEntry& e : entries) {
      std::uint32_t i = static_cast<std::uint32_t>(e.topic ^ (e.topic >> 32)) & (cap - 1);
      while (slots[i].topic != 0) i = (i + 1) & (cap - 1);
      slots[i] = e;
    }
    // Each version gets fresh arena memory: a kernel may still be reading the old table.
    auto mem = arena_alloc(image.size(), "publish routing table");
    if (mem && cudaMemcpyAsync(*mem, image.data(), image.size(), cudaMemcpyHostToDevice, setup_) == cudaSuccess &&
        cudaStreamSynchronize(setup_) == cudaSuccess) {
      table = reinterpret_cast<DeviceTopicTable*>(*mem);
    } else {
      std::fprintf(stderr, "ringkernel: no device memory for the publish routing table; kernel publishes go "
                           "through the broker\n");
      served.clear();
    }
  }
  // The table is complete in device memory before its pointer is (stream order, then a
  // synchronisation): a kernel that reads the new pointer reads a whole table.
  device_routed_.try_emplace(static_cast<std::uint32_t>(version), std::move(served));  // a version is made once
  cudaMemcpyAsync(topic_word_, &table, sizeof table, cudaMemcpyHostToDevice, setup_);
  cudaStreamSynchronize(setup_);
}

const BackendPlugin kPlugin{
    Backend::Cuda,
    &probe,
    &CudaRuntime::create,
    [](std::size_t bytes) -> void* {
      void* p = nullptr;
      return cudaHostAlloc(&p, bytes, cudaHostAllocPortable) == cudaSuccess ? p : nullptr;
    },
    [](void* p) { cudaFreeHost(p); },
};

}  // namespace

const BackendPlugin* cuda_backend_plugin() noexcept { return &kPlugin; }

}  // namespace ringkernel::detail
