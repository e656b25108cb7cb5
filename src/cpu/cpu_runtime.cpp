// The CPU backend: an OS thread (a CpuWorker) runs the persistent loop of one kernel, or of
// every kernel launched with the same LaunchOptions::cpu_worker name, one loop step of each
// in turn. A block's threads are fibers on that thread (actor mode), or a batch is spread
// over simulated threads (parallel mode). Idle workers spin briefly, then park on a
// doorbell, so dozens of kernels cost nothing while idle.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <sched.h>
#include <unistd.h>

#include "../core/runtime_core.hpp"
#include "fiber.hpp"
#include "ringkernel/registry.hpp"

namespace ringkernel::detail {

namespace {

constexpr std::uint32_t kMaxRoutes = 64;
constexpr std::uint32_t kBatch = 256;
constexpr int kSpinBeforePark = 20000;  // polls (~50-100 µs) before parking when idle
constexpr auto kParkTimeout = std::chrono::milliseconds(100);  // only a safety net: every
                                                                // state change rings the bell

class CpuKernel;

enum class Step { Idle, Worked, Exited };

/// The OS thread that runs kernels: a kernel's own, or one shared by the kernels launched
/// with the same LaunchOptions::cpu_worker name (they then reach one another without
/// crossing cores). It runs one loop step of each kernel in turn and parks on its doorbell
/// once every kernel has been idle for kSpinBeforePark rounds. A kernel's own worker ends
/// with its kernel; a shared one lives as long as the runtime.
class CpuWorker {
 public:
  /// `bell`: the doorbell senders ring for this worker's kernels (null: a shared worker's own).
  CpuWorker(Doorbell* bell, std::string name)
      : own_bell_(bell ? nullptr : std::make_unique<Doorbell>()), bell_(bell ? *bell : *own_bell_), name_(std::move(name)) {}
  CpuWorker(const CpuWorker&) = delete;
  CpuWorker& operator=(const CpuWorker&) = delete;
  ~CpuWorker();

  Doorbell& bell() noexcept { return bell_; }
  bool shared() const noexcept { return !name_.empty(); }
  /// The CPU this worker's thread last ran on (KernelCore::runner_cpu).
  const std::atomic<int>& cpu() const noexcept { return cpu_; }
  /// Takes a kernel into the rotation (starts the thread the first time).
  Result<void> add(CpuKernel* k);
  /// A kernel's own worker: whether its thread has finished (joins it then).
  bool join_if_finished() noexcept;

 private:
  void run() noexcept;

  std::unique_ptr<Doorbell> own_bell_;
  Doorbell& bell_;
  const std::string name_;
  std::mutex mutex_;
  std::vector<CpuKernel*> kernels_;  // mutex_
  std::atomic<std::uint64_t> version_{0};
  std::atomic<bool> shutdown_{false};
  std::atomic<bool> finished_{false};
  std::atomic<int> cpu_{-1};
  std::thread thread_;
};

/// One K2K ring (owned by the runtime: outlives both of its ends).
struct RouteRing {
  AlignedBytes indices;
  AlignedBytes slots;
  RingView view;
};

struct OutRoute {
  std::uint32_t dest = 0;
  RingProducer<> producer;
  Doorbell* target_bell = nullptr;  // the runtime's doorbell of slot `dest`: valid even after
                                    // the receiver is destroyed (a restart) while we still send
};

struct InRoute {
  std::uint32_t source = 0;
  RingConsumer<> consumer;
};

class CpuRuntime;

class CpuKernel final : public KernelBackend {
 public:
  CpuKernel(CpuRuntime& rt, KernelCore& core, std::unique_ptr<CpuProgram> program);
  ~CpuKernel() override;

  Result<void> start() override;
  Result<void> stop(Duration timeout) override;
  Result<void> check_health() override;
  void k2k_counters(std::uint64_t& dead, std::uint64_t& rejected) const noexcept override {
    dead = dead_letters_.load(std::memory_order_relaxed);
    rejected = tenant_rejections_.load(std::memory_order_relaxed);
  }
  Result<std::uint64_t> post_actor_command(ActorOp op, std::uint32_t index) override;
  bool actor_command_done(std::uint64_t seq) const noexcept override {
    return actor_ack_.load(std::memory_order_acquire) >= seq;  // pairs with run_actor_command()
  }

  // Kernel-thread side, called through RingContext.
  Status k2k_send(std::uint32_t dest, TypeId type, const void* payload, std::uint32_t size, std::uint64_t corr,
                  std::uint32_t count) noexcept;
  Status k2k_try_receive(TypeId type, void* out, std::uint32_t size, std::uint32_t* source) noexcept;
  bool emit(TypeId type, const void* payload, std::uint32_t size, std::uint64_t corr) noexcept;
  void flush_output() noexcept;
  Status publish(std::uint64_t topic, TypeId type, const void* payload, std::uint32_t size) noexcept {
    if (core_.broker == nullptr) return Status::NoRoute;
    return core_.broker->publish_from_kernel(topic, type, payload, size, clock_.tick(), slot);
  }

  // Host side (connect()).
  void add_out_route(const RouteRing& ring, CpuKernel* target, std::uint32_t dest) noexcept;
  void add_in_route(const RouteRing& ring, std::uint32_t source) noexcept;
  std::uint32_t k2k_slot_size() const noexcept { return k2k_slot_size_; }
  std::uint32_t route_count() const noexcept { return out_route_count_.load(std::memory_order_acquire); }
  std::uint32_t inbound_route_count() const noexcept { return in_route_count_.load(std::memory_order_acquire); }
  std::uint32_t route(std::uint32_t i) const noexcept { return i < route_count() ? out_routes_[i].dest : ~0u; }
  void close_inbound() noexcept;

  // Worker side.
  /// One pass of the persistent loop (the worker's thread).
  Step step() noexcept;
  /// Whether the kernel has something to do (the worker parks only when none has).
  bool wants_cpu() const noexcept;
  /// After step() said Exited and the worker dropped the kernel: stop() may return now.
  void mark_exited() noexcept;
  /// Whether a host thread waits for this kernel on CPU `cpu` (KernelCore::waiter_cpu).
  bool host_waits_on(int cpu) const noexcept { return core_.waiter_cpu.load(std::memory_order_relaxed) == cpu; }

 private:
  std::shared_ptr<CpuWorker> worker_;  // declared before bell: bell is the worker's doorbell

 public:
  Doorbell& bell;      // rung by the host and by K2K senders; the worker's (owned by the runtime)
  Doorbell host_bell;  // rung by this kernel after publishing output
  CpuExec exec;
  std::uint64_t tenant = 0;
  std::uint32_t slot = 0;

 private:
  void exit_loop() noexcept;
  void publish_telemetry() noexcept;
  bool run_actor_command() noexcept;

  CpuRuntime& rt_;
  KernelCore& core_;
  std::unique_ptr<CpuProgram> program_;
  std::unique_ptr<FiberTeam> team_;
  HlcClock clock_;
  AlignedBytes control_mem_, telemetry_mem_, in_idx_, in_slots_, out_idx_, out_slots_, state_mem_, shared_mem_;
  RingConsumer<> in_;
  RingProducer<> out_;
  std::uint32_t pending_out_ = 0;
  std::uint32_t k2k_slot_size_ = 0;
  bool pull_mode_ = false;

  std::array<OutRoute, kMaxRoutes> out_routes_{};
  std::atomic<std::uint32_t> out_route_count_{0};  // release by connect(), acquire by sender
  std::array<InRoute, kMaxRoutes> in_routes_{};
  std::atomic<std::uint32_t> in_route_count_{0};
  std::uint32_t next_inbound_ = 0;
  std::atomic<std::uint64_t> dead_letters_{0};
  std::atomic<std::uint64_t> tenant_rejections_{0};

  // Actor pool commands: the host writes (seq << 32 | op << 24 | index), the kernel thread
  // carries it out between batches and stores seq into the ack word.
  std::atomic<std::uint64_t> actor_cmd_{0};
  std::atomic<std::uint64_t> actor_ack_{0};
  std::uint64_t actor_seq_ = 0;       // host side (under KernelCore::actor_mutex)
  std::uint64_t actor_last_cmd_ = 0;  // kernel thread
  std::unique_ptr<std::uint8_t[]> actor_alive_;
  std::unique_ptr<std::uint32_t[]> actor_faults_;  // zero-initialised

  // Loop state (the worker's thread).
  std::array<const std::byte*, kBatch> slots_{};
  std::array<std::uint32_t, kBatch> sources_{};
  std::uint32_t acked_ = 0;
  std::uint64_t beats_ = 0;
  // A stream from the host: input found in consecutive looks at the ring. The next look
  // then waits until hold_until_, so that the host's next messages gather behind one
  // transfer of the tail's cache line instead of one transfer each (step()).
  std::uint32_t host_streak_ = 0;
  bool holding_ = false;
  std::chrono::steady_clock::time_point hold_until_{};
  // The figures the host reads (telemetry, the control block's counters and heartbeat) are
  // written every 32 batches and when the kernel goes idle, not after every batch: they
  // share a cache line with has_terminated, which every host send reads, so writing them
  // per batch made each send miss in its cache.
  std::uint32_t batches_since_publish_ = 0;
  bool dirty_ = false;
  std::atomic<bool> exited_{false};
  bool started_ = false;  // host side
};

class CpuRuntime final : public RingKernelRuntime {
 public:
  CpuRuntime() {
    for (auto& t : tenant_of_) t.store(-1, std::memory_order_relaxed);
  }
  Backend backend() const noexcept override { return Backend::Cpu; }
  Result<std::unique_ptr<DeviceMemory>> device_memory() override {
    return std::unique_ptr<DeviceMemory>(std::make_unique<HostDeviceMemory>());
  }
  std::optional<std::uint64_t> free_memory() const override {
    const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return std::nullopt;
    return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
  }
  std::string device_name() const override {
    return "CPU (" + std::to_string(std::thread::hardware_concurrency()) + " hardware threads)";
  }

  Result<std::unique_ptr<KernelBackend>> create(KernelCore& core) override {
    const KernelInfo* info = find_kernel(core.registered_name);
    if (!info || !info->cpu) return Error(ErrorCode::BackendUnavailable, "kernel '" + core.registered_name + "' has no CPU build");
    std::unique_ptr<CpuProgram> program(info->cpu());
    auto k = std::make_unique<CpuKernel>(*this, core, std::move(program));
    tenant_of_[core.slot].store(static_cast<std::int64_t>(core.options.tenant_id), std::memory_order_release);
    kernels_[core.slot].store(k.get(), std::memory_order_release);
    return std::unique_ptr<KernelBackend>(std::move(k));
  }

  Result<void> connect(KernelCore& from, KernelCore& to) override {
    auto* f = static_cast<CpuKernel*>(from.impl.get());
    auto* t = static_cast<CpuKernel*>(to.impl.get());
    std::lock_guard lock(mutex_);  // also serialises the route counts checked here
    if (f->route_count() >= kMaxRoutes)
      return Error(ErrorCode::K2KError, "kernel '" + from.id.value + "' already has " + std::to_string(kMaxRoutes) +
                                            " outbound K2K routes");
    if (t->inbound_route_count() >= kMaxRoutes)
      return Error(ErrorCode::K2KError, "kernel '" + to.id.value + "' already has " + std::to_string(kMaxRoutes) +
                                            " inbound K2K routes");
    auto ring = std::make_unique<RouteRing>();
    const std::uint32_t cap = from.options.k2k_queue_capacity;
    ring->indices = make_aligned_bytes(sizeof(RingIndices), kIndexAlign);
    ring->slots = make_aligned_bytes(std::size_t{cap} * t->k2k_slot_size(), 64);
    ring->view = RingView{reinterpret_cast<RingIndices*>(ring->indices.get()), ring->slots.get(), cap, t->k2k_slot_size()};
    f->add_out_route(*ring, t, to.slot);
    t->add_in_route(*ring, from.slot);
    rings_.push_back(std::move(ring));
    return {};
  }

  void forget(KernelCore& core) noexcept override {
    tenant_of_[core.slot].store(-1, std::memory_order_release);
    kernels_[core.slot].store(nullptr, std::memory_order_release);
    if (core.impl) static_cast<CpuKernel*>(core.impl.get())->close_inbound();
  }

  /// -1 when no kernel holds the slot.
  std::int64_t tenant_of(std::uint32_t slot) const noexcept {
    return slot < tenant_of_.size() ? tenant_of_[slot].load(std::memory_order_acquire) : -1;
  }

  /// The doorbell of a K2K address. It belongs to the runtime, not to the kernel, so that a
  /// sender may ring it while the receiver at that address is being destroyed; a kernel that
  /// later takes the address shares it (a stale ring only makes it re-check for work).
  Doorbell& doorbell(std::uint32_t slot) noexcept { return doorbells_[slot]; }

  /// The shared worker of LaunchOptions::cpu_worker `name` (made on first use).
  std::shared_ptr<CpuWorker> shared_worker(const std::string& name) {
    std::lock_guard lock(mutex_);
    auto& w = workers_[name];
    if (!w) w = std::make_shared<CpuWorker>(nullptr, name);
    return w;
  }

 private:
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<CpuWorker>> workers_;  // mutex_
  std::vector<std::unique_ptr<RouteRing>> rings_;
  std::array<std::atomic<std::int64_t>, RuntimeCore::kMaxKernels> tenant_of_;
  std::array<std::atomic<CpuKernel*>, RuntimeCore::kMaxKernels> kernels_{};
  std::unique_ptr<Doorbell[]> doorbells_ = std::make_unique<Doorbell[]>(RuntimeCore::kMaxKernels);
};

CpuKernel::CpuKernel(CpuRuntime& rt, KernelCore& core, std::unique_ptr<CpuProgram> program)
    : worker_(core.options.cpu_worker.empty() ? std::make_shared<CpuWorker>(&rt.doorbell(core.slot), std::string())
                                              : rt.shared_worker(core.options.cpu_worker)),
      bell(worker_->bell()), rt_(rt), core_(core), program_(std::move(program)),
      clock_((core.host_clock->node_id() << 16) | (core.slot + 1)) {
  const LaunchOptions& o = core.options;
  slot = core.slot;
  tenant = o.tenant_id;
  pull_mode_ = o.k2k_delivery == K2KDelivery::Pull;
  const std::uint32_t in_slot = slot_size_for(core.request_size);
  const std::uint32_t out_slot = slot_size_for(core.response_size);
  k2k_slot_size_ = slot_size_for(std::max<std::uint32_t>(core.request_size, pull_mode_ ? 1024 : 0));

  control_mem_ = make_aligned_bytes(sizeof(ControlBlock), alignof(ControlBlock));
  telemetry_mem_ = make_aligned_bytes(sizeof(TelemetryBuffer), alignof(TelemetryBuffer));
  in_idx_ = make_aligned_bytes(sizeof(RingIndices), kIndexAlign);
  in_slots_ = make_aligned_bytes(std::size_t{o.input_queue_capacity} * in_slot, 64);
  out_idx_ = make_aligned_bytes(sizeof(RingIndices), kIndexAlign);
  out_slots_ = make_aligned_bytes(std::size_t{o.output_queue_capacity} * out_slot, 64);
  const std::size_t actors = std::max<std::uint32_t>(o.actor_slots, 1);
  state_mem_ = make_aligned_bytes(actors * program_->state_size() + 8, std::max<std::uint32_t>(program_->state_align(), 64));
  if (o.shared_memory_size) shared_mem_ = make_aligned_bytes(o.shared_memory_size, 64);
  program_->init_state(state_mem_.get());  // an actor pool initialises each actor's State when it is created
  if (o.actor_slots != 0) {
    actor_alive_ = std::make_unique<std::uint8_t[]>(o.actor_slots);
    actor_faults_ = std::make_unique<std::uint32_t[]>(o.actor_slots);
    core.actor_faults = actor_faults_.get();
  }

  auto* control = reinterpret_cast<ControlBlock*>(control_mem_.get());
  control->input_capacity = o.input_queue_capacity;
  control->output_capacity = o.output_queue_capacity;
  control->input_slot_size = in_slot;
  control->output_slot_size = out_slot;
  control->kernel_id = core.slot;
  control->tenant_id = o.tenant_id;
  auto* telemetry = reinterpret_cast<TelemetryBuffer*>(telemetry_mem_.get());
  telemetry->min_latency_us = ~std::uint64_t{0};

  core.control = control;
  core.telemetry = telemetry;
  core.input = RingView{reinterpret_cast<RingIndices*>(in_idx_.get()), in_slots_.get(), o.input_queue_capacity, in_slot};
  core.output = RingView{reinterpret_cast<RingIndices*>(out_idx_.get()), out_slots_.get(), o.output_queue_capacity, out_slot};
  core.kernel_doorbell = &bell;
  core.host_doorbell = &host_bell;
  core.runner_cpu = &worker_->cpu();
  in_ = RingConsumer<>(core.input);
  out_ = RingProducer<>(core.output);

  if (o.mode == KernelMode::Actor && o.block_size > 1) team_ = std::make_unique<FiberTeam>(o.block_size);
  exec.slot = core.slot;
  exec.block_dim = o.block_size;
  exec.grid_dim = o.grid_size;
  exec.mode = o.mode;
  exec.control = control;
  exec.telemetry = telemetry;
  exec.state = state_mem_.get();
  exec.shared = shared_mem_.get();
  exec.shared_size = o.shared_memory_size;
  exec.team = team_.get();
  exec.clock = &clock_;
  exec.runtime_private = this;
  exec.actor_slots = o.actor_slots;
  exec.state_stride = program_->state_size();
  exec.actor_alive = actor_alive_.get();
  exec.actor_faults = actor_faults_.get();
}

Result<std::uint64_t> CpuKernel::post_actor_command(ActorOp op, std::uint32_t index) {
  const std::uint64_t seq = ++actor_seq_;
  actor_cmd_.store(seq << 32 | std::uint64_t{static_cast<std::uint32_t>(op)} << 24 | index, std::memory_order_release);
  bell.ring();  // a parked kernel wakes up for it
  return seq;
}

bool CpuKernel::run_actor_command() noexcept {
  const std::uint64_t cmd = actor_cmd_.load(std::memory_order_acquire);  // pairs with post_actor_command()
  if (cmd == actor_last_cmd_) return false;
  actor_last_cmd_ = cmd;
  const auto op = static_cast<ActorOp>((cmd >> 24) & 0xffu);
  const std::uint32_t index = static_cast<std::uint32_t>(cmd & 0xffffffu);
  if (index < exec.actor_slots) {
    if (op == ActorOp::Destroy) {
      actor_alive_[index] = 0;
    } else {
      program_->init_state(state_mem_.get() + index * exec.state_stride);
      actor_alive_[index] = 1;
    }
    store_release(&actor_faults_[index], 0u);  // a new incarnation has not failed
  }
  actor_ack_.store(cmd >> 32, std::memory_order_release);
  return true;
}

CpuKernel::~CpuKernel() {
  if (exited_.load(std::memory_order_acquire)) {
    if (!worker_->shared()) (void)worker_->join_if_finished();  // it ends right after marking us
    return;
  }
  if (!started_) return;
  // stop() timed out earlier: the handler never returned, on a thread that still runs it.
  // Its memory must outlive that thread, so it is leaked on purpose rather than freed under
  // it (the worker keeps this kernel in its rotation).
  std::fprintf(stderr, "ringkernel: CPU kernel '%s' still running at destruction; leaking its memory\n",
               core_.id.value.c_str());
  control_mem_.release();
  telemetry_mem_.release();
  in_idx_.release();
  in_slots_.release();
  out_idx_.release();
  out_slots_.release();
  state_mem_.release();
  shared_mem_.release();
  (void)program_.release();
  (void)team_.release();
  new std::shared_ptr<CpuWorker>(std::move(worker_));  // keeps the worker (and its thread) alive
}

Result<void> CpuKernel::start() {
  if (auto r = worker_->add(this); !r) return r;
  started_ = true;
  return {};
}

Result<void> CpuKernel::stop(Duration timeout) {
  store_release(&exec.control->should_terminate, 1u);  // read by step()
  bell.wake();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!exited_.load(std::memory_order_acquire)) {
    if (std::chrono::steady_clock::now() >= deadline)
      return Error(ErrorCode::Timeout, "kernel '" + core_.id.value +
                                           "' did not stop in time: its handler has not returned (a CPU thread cannot "
                                           "be interrupted)");
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  if (!worker_->shared()) (void)worker_->join_if_finished();
  close_inbound();
  return {};
}

Result<void> CpuKernel::check_health() {
  const std::uint32_t err = load_acquire(&exec.control->last_error);
  if (err != 0 && load_acquire(&exec.control->has_terminated) != 0) return core_.dead_error();
  return {};
}

void CpuKernel::close_inbound() noexcept {
  const std::uint32_t n = in_route_count_.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < n; ++i) in_routes_[i].consumer.close();
}

void CpuKernel::add_out_route(const RouteRing& ring, CpuKernel* target, std::uint32_t dest) noexcept {
  const std::uint32_t n = out_route_count_.load(std::memory_order_relaxed);
  if (n >= kMaxRoutes) return;
  out_routes_[n].dest = dest;
  out_routes_[n].producer = RingProducer<>(ring.view);
  out_routes_[n].target_bell = &target->bell;
  out_route_count_.store(n + 1, std::memory_order_release);  // pairs with k2k_send's acquire
}

void CpuKernel::add_in_route(const RouteRing& ring, std::uint32_t source) noexcept {
  const std::uint32_t n = in_route_count_.load(std::memory_order_relaxed);
  if (n >= kMaxRoutes) return;
  in_routes_[n].source = source;
  in_routes_[n].consumer = RingConsumer<>(ring.view);
  in_route_count_.store(n + 1, std::memory_order_release);  // pairs with loop()'s acquire
  bell.wake();
}

Status CpuKernel::k2k_send(std::uint32_t dest, TypeId type, const void* payload, std::uint32_t size,
                           std::uint64_t corr, std::uint32_t count) noexcept {
  if (count == 0) return Status::Ok;
  if (!core_.options.enable_k2k) {
    dead_letters_.fetch_add(count, std::memory_order_relaxed);
    return Status::NoRoute;
  }
  const std::uint32_t n = out_route_count_.load(std::memory_order_acquire);
  bool closed_route = false;
  for (std::uint32_t i = 0; i < n; ++i) {
    OutRoute& r = out_routes_[i];
    if (r.dest != dest) continue;
    if (r.producer.closed()) {
      // A route to an earlier kernel at this address; a later connect() to the kernel that
      // holds the address now (a restart) may follow in the table.
      closed_route = true;
      continue;
    }
    if (size + sizeof(Envelope) > r.producer.slot_size() || count > r.producer.view().capacity) return Status::TooLarge;
    if (r.producer.reserve(count) < count) return Status::QueueFull;  // all or nothing
    const std::uint64_t first = clock_.tick_batch(count);
    const auto* p = static_cast<const std::byte*>(payload);
    for (std::uint32_t k = 0; k < count; ++k) {
      Envelope env{type, corr, hlc::unpack(first + k, clock_.node_id()), size, static_cast<std::uint16_t>(slot + 1),
                   static_cast<std::uint8_t>(Priority::Normal), kEnvelopeK2K};
      std::byte* s = r.producer.slot(k);
      std::memcpy(s, &env, sizeof env);
      std::memcpy(s + sizeof env, p + std::size_t{k} * size, size);
    }
    r.producer.publish(count);
    r.target_bell->ring();
    exec.k2k_sent += count;
    return Status::Ok;
  }
  if (closed_route) {
    dead_letters_.fetch_add(count, std::memory_order_relaxed);
    return Status::Closed;
  }
  const std::int64_t t = rt_.tenant_of(dest);
  if (t >= 0 && static_cast<std::uint64_t>(t) != tenant) {
    tenant_rejections_.fetch_add(count, std::memory_order_relaxed);
    return Status::TenantMismatch;
  }
  dead_letters_.fetch_add(count, std::memory_order_relaxed);
  return Status::NoRoute;
}

Status CpuKernel::k2k_try_receive(TypeId type, void* out, std::uint32_t size, std::uint32_t* source) noexcept {
  const std::uint32_t n = in_route_count_.load(std::memory_order_acquire);
  for (std::uint32_t k = 0; k < n; ++k) {
    InRoute& r = in_routes_[(next_inbound_ + k) % n];
    if (r.consumer.available(1) == 0) continue;
    Envelope env;
    std::memcpy(&env, r.consumer.slot(0), sizeof env);
    if (env.type_id != type || env.payload_size != size) continue;  // left for a pull of its own type
    std::memcpy(out, r.consumer.slot(0) + sizeof env, size);
    r.consumer.release(1);
    (void)clock_.update(env.timestamp);
    if (source) *source = r.source;
    next_inbound_ = (next_inbound_ + k + 1) % n;
    return Status::Ok;
  }
  return Status::QueueEmpty;
}

bool CpuKernel::emit(TypeId type, const void* payload, std::uint32_t size, std::uint64_t corr) noexcept {
  while (out_.reserve(pending_out_ + 1) < pending_out_ + 1) {
    flush_output();  // let the host see what is ready while we wait for room
    if (load_acquire(&exec.control->should_terminate) != 0) {
      ++exec.dropped;
      return false;
    }
    std::this_thread::yield();
  }
  Envelope env{type, corr, clock_.tick(), size, static_cast<std::uint16_t>(slot + 1),
               static_cast<std::uint8_t>(Priority::Normal), kEnvelopeResponse};
  std::byte* s = out_.slot(pending_out_);
  std::memcpy(s, &env, sizeof env);
  std::memcpy(s + sizeof env, payload, size);
  ++pending_out_;
  return true;
}

void CpuKernel::flush_output() noexcept {
  if (pending_out_ == 0) return;
  out_.publish(pending_out_);  // one release store per batch; pairs with the host consumer
  pending_out_ = 0;
  host_bell.ring();
}

bool CpuKernel::wants_cpu() const noexcept {
  const ControlBlock* c = exec.control;
  const std::uint32_t active = load_acquire(&c->is_active);
  if (load_acquire(&c->should_terminate) != 0 || active != load_acquire(&c->acked_active) ||
      actor_cmd_.load(std::memory_order_acquire) != actor_last_cmd_)
    return true;
  if (active == 0) return false;  // deactivated: input waits
  if (load_acquire(&core_.input.indices->tail) != in_.position()) return true;
  if (!pull_mode_) {
    const std::uint32_t n = in_route_count_.load(std::memory_order_acquire);
    for (std::uint32_t i = 0; i < n; ++i) {
      const RingIndices* r = in_routes_[i].consumer.view().indices;
      if (load_acquire(&r->tail) != in_routes_[i].consumer.position()) return true;
    }
  }
  return false;
}

void CpuKernel::publish_telemetry() noexcept {
  TelemetryBuffer* t = exec.telemetry;
  ControlBlock* c = exec.control;
  store_relaxed(&t->messages_processed, exec.processed);
  store_relaxed(&t->messages_dropped, exec.dropped + dead_letters_.load(std::memory_order_relaxed));
  store_relaxed(&t->total_latency_us, exec.latency_total);
  store_relaxed(&t->min_latency_us, exec.latency_min);
  store_relaxed(&t->max_latency_us, exec.latency_max);
  store_relaxed(&t->input_queue_depth, static_cast<std::uint32_t>(in_.cached_depth()));
  store_relaxed(&t->output_queue_depth, static_cast<std::uint32_t>(out_.position() - load_relaxed(&core_.output.indices->head)));
  store_relaxed(&t->k2k_sent, exec.k2k_sent);
  store_relaxed(&c->messages_processed, exec.processed);
  store_relaxed(&c->messages_dropped, exec.dropped);
  const HlcTimestamp h = clock_.now();
  store_relaxed(&c->hlc.physical, h.physical);
  store_relaxed(&c->hlc.logical, h.logical);
  store_relaxed(&c->hlc.node_id, h.node_id);
}

Step CpuKernel::step() noexcept {
  ControlBlock* c = exec.control;
  if (load_acquire(&c->should_terminate) != 0 || exec.fault != 0 || exec.terminate_requested) {
    exit_loop();
    return Step::Exited;
  }
  if ((++beats_ & 63u) == 0) store_relaxed(&c->heartbeat, beats_);
  bool worked = exec.actor_slots != 0 && run_actor_command();
  const std::uint32_t active = load_acquire(&c->is_active);  // pairs with activate()/deactivate()
  if (active != acked_) {
    acked_ = active;
    store_release(&c->acked_active, acked_);
    worked = true;
  }
  if (!active) return worked ? Step::Worked : Step::Idle;
  // Host input. Every look at the ring whose cached tail is used up reads the producer's
  // tail, and the host's next store to it must take the line back: with one message per
  // look, a stream moves that line between the two cores twice per message, which a VM
  // whose vCPUs are far apart (a line round trip of 0.5-0.8 µs) turns into the limit. So
  // once messages came in consecutive looks (a stream), and the last look did not fill a
  // batch, the next look waits LaunchOptions::cpu_stream_hold (1 µs): the messages sent
  // meanwhile come with one transfer. A message that is not part of a stream is not held.
  const bool held = holding_ && std::chrono::steady_clock::now() < hold_until_;
  const bool after_hold = holding_ && !held;
  if (const std::uint32_t n = held ? 0 : in_.available(kBatch); n != 0) {
    for (std::uint32_t i = 0; i < n; ++i) {
      slots_[i] = in_.slot(i);
      sources_[i] = 0;
    }
    program_->process(exec, CpuBatch{slots_.data(), sources_.data(), n});
    in_.release(n);
    worked = true;
    // One message after a hold is no stream: the hold itself made the look come late (a
    // caller waiting for each response would otherwise be held on every call).
    host_streak_ = after_hold && n == 1 ? 1 : host_streak_ + 1;
    holding_ = host_streak_ >= 2 && n < kBatch && core_.options.cpu_stream_hold.count() > 0;
    if (holding_) hold_until_ = std::chrono::steady_clock::now() + core_.options.cpu_stream_hold;
  } else if (!held) {
    host_streak_ = 0;
    holding_ = false;
  }
  // K2K input delivered to the handler.
  if (!pull_mode_) {
    const std::uint32_t routes = in_route_count_.load(std::memory_order_acquire);
    for (std::uint32_t r = 0; r < routes && exec.fault == 0; ++r) {
      RingConsumer<>& in = in_routes_[r].consumer;
      if (const std::uint32_t n = in.available(kBatch); n != 0) {
        for (std::uint32_t i = 0; i < n; ++i) {
          slots_[i] = in.slot(i);
          sources_[i] = in_routes_[r].source + 1;
        }
        program_->process(exec, CpuBatch{slots_.data(), sources_.data(), n});
        in.release(n);
        worked = true;
      }
    }
  }
  if (worked) {
    flush_output();
    dirty_ = true;
    if (++batches_since_publish_ == 32) {
      publish_telemetry();
      batches_since_publish_ = 0;
      dirty_ = false;
    }
    return Step::Worked;
  }
  if (dirty_ && !held) {  // going idle (not a hold): the host sees current figures
    publish_telemetry();
    store_relaxed(&c->heartbeat, beats_);
    batches_since_publish_ = 0;
    dirty_ = false;
  }
  return Step::Idle;
}

void CpuKernel::exit_loop() noexcept {
  ControlBlock* c = exec.control;
  flush_output();
  publish_telemetry();
  if (exec.fault != 0) {
    store_release(&c->last_error, exec.fault);
    store_relaxed(&exec.telemetry->last_error, exec.fault);
  }
  in_.close();
  store_release(&c->has_terminated, 1u);  // read by the host's check_health()/wait()
  host_bell.wake();
}

void CpuKernel::mark_exited() noexcept {
  exited_.store(true, std::memory_order_release);  // stop() returns; the kernel may be freed
}

// ---- CpuWorker ------------------------------------------------------------------------------

Result<void> CpuWorker::add(CpuKernel* k) {
  std::lock_guard lock(mutex_);
  if (!thread_.joinable()) {
    try {
      thread_ = std::thread([this] { run(); });
    } catch (const std::system_error& e) {
      return Error(ErrorCode::LaunchFailed, std::string("cannot start the kernel thread: ") + e.what(), e.code().value());
    }
  }
  kernels_.push_back(k);
  version_.fetch_add(1, std::memory_order_release);
  bell_.wake();  // a parked shared worker takes the new kernel into its rotation
  return {};
}

bool CpuWorker::join_if_finished() noexcept {
  if (!finished_.load(std::memory_order_acquire)) {
    // A kernel's own worker finishes right after marking its kernel exited: wait for it.
    for (int i = 0; i < 100000 && !finished_.load(std::memory_order_acquire); ++i) std::this_thread::yield();
    if (!finished_.load(std::memory_order_acquire)) return false;
  }
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) thread_.join();
  return true;
}

CpuWorker::~CpuWorker() {
  shutdown_.store(true, std::memory_order_release);
  bell_.wake();
  if (!thread_.joinable()) return;
  for (int i = 0; i < 20000 && !finished_.load(std::memory_order_acquire); ++i)
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  if (finished_.load(std::memory_order_acquire)) {
    thread_.join();
  } else {
    std::fprintf(stderr, "ringkernel: CPU worker '%s' still inside a handler at shutdown; detaching it\n", name_.c_str());
    thread_.detach();
  }
}

namespace {
/// Moves the calling thread off CPU `cpu` now (to any other CPU it may run on) and gives it
/// its CPU set back, so the scheduler may later place it anywhere again. Without another
/// CPU to go to, it yields.
void leave_cpu(int cpu) noexcept {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) == 0 && CPU_ISSET(cpu, &allowed) && CPU_COUNT(&allowed) > 1) {
    cpu_set_t elsewhere = allowed;
    CPU_CLR(cpu, &elsewhere);
    if (sched_setaffinity(0, sizeof elsewhere, &elsewhere) == 0) {
      (void)sched_setaffinity(0, sizeof allowed, &allowed);
      return;
    }
  }
  std::this_thread::yield();
}
}  // namespace

void CpuWorker::run() noexcept {
  std::vector<CpuKernel*> ks;
  std::uint64_t seen = ~std::uint64_t{0};
  int idle = 0;
  bool parked = false;  // after a park, wait again without spinning until work arrives
  int cpu = -1;
  // The CPU this thread runs on, for KernelCore::runner_cpu: at the start, every 256 rounds
  // (the scheduler may move the thread), after leaving a CPU and after each park.
  auto note_cpu = [&] {
    if ((cpu = sched_getcpu()) != cpu_.load(std::memory_order_relaxed)) cpu_.store(cpu, std::memory_order_relaxed);
  };
  auto take_rotation = [&] {  // mutex_ held
    ks = kernels_;
    seen = version_.load(std::memory_order_relaxed);
  };
  for (std::uint32_t round = 0;; ++round) {
    if ((round & 255u) == 0) note_cpu();
    if (version_.load(std::memory_order_acquire) != seen) {
      std::lock_guard lock(mutex_);
      take_rotation();
    }
    if (ks.empty()) {
      if (!shared() || shutdown_.load(std::memory_order_acquire)) break;
      bell_.wait([&] { return version_.load(std::memory_order_acquire) != seen || shutdown_.load(std::memory_order_acquire); },
                 kParkTimeout);
      continue;
    }
    bool worked = false;
    for (std::size_t i = 0; i < ks.size();) {
      const Step st = ks[i]->step();
      if (st != Step::Exited) {
        worked |= st == Step::Worked;
        ++i;
        continue;
      }
      CpuKernel* gone = ks[i];
      {
        std::lock_guard lock(mutex_);
        kernels_.erase(std::find(kernels_.begin(), kernels_.end(), gone));
        version_.fetch_add(1, std::memory_order_release);
        take_rotation();
      }
      gone->mark_exited();  // last touch: its owner may free it from here on
      worked = true;
      i = 0;  // the rotation changed: start it again
    }
    if (worked) {
      idle = 0;
      parked = false;
      continue;
    }
    if (!parked && ++idle < kSpinBeforePark) {
      // A host thread waiting for one of these kernels on this very CPU (KernelCore::
      // waiter_cpu): spinning would keep it from running. Let it run.
      if ((idle & 63) == 0 && cpu >= 0)
        for (CpuKernel* k : ks)
          if (k->host_waits_on(cpu)) {
            leave_cpu(cpu);
            note_cpu();
            break;
          }
      continue;
    }
    idle = 0;
    parked = true;
    bell_.wait([&] {
      if (version_.load(std::memory_order_acquire) != seen || shutdown_.load(std::memory_order_acquire)) return true;
      for (CpuKernel* k : ks)
        if (k->wants_cpu()) return true;
      return false;
    }, kParkTimeout);
    note_cpu();  // a wake-up may land on another CPU
  }
  finished_.store(true, std::memory_order_release);
}

CpuKernel* kernel_of(CpuExec* e) noexcept { return static_cast<CpuKernel*>(e->runtime_private); }

}  // namespace

std::unique_ptr<RingKernelRuntime> make_cpu_runtime() { return std::make_unique<CpuRuntime>(); }

// ---- CpuExec and RingContext entry points (kernel thread) --------------------------------

bool CpuExec::emit(TypeId type, const void* payload, std::uint32_t size, std::uint64_t corr) noexcept {
  return kernel_of(this)->emit(type, payload, size, corr);
}

void CpuExec::run_team(void (*fn)(void*, std::uint32_t), void* arg) noexcept {
  if (!team->run(fn, arg)) fault = static_cast<std::uint32_t>(DeviceError::BarrierInParallel);
}

namespace {
bool collectives_allowed(CpuExec* e) noexcept {
  if (e->mode == KernelMode::Parallel) {
    e->fault = static_cast<std::uint32_t>(DeviceError::BarrierInParallel);
    return false;
  }
  return e->team != nullptr;  // false with one thread: nothing to wait for
}
}  // namespace

void cpu_sync_threads(CpuExec* e, std::uint32_t thread) {
  if (collectives_allowed(e)) e->team->block_barrier(thread);
}
void cpu_sync_warp(CpuExec* e, std::uint32_t thread) {
  if (collectives_allowed(e)) e->team->warp_barrier(thread);
}
std::uint64_t cpu_warp_exchange(CpuExec* e, std::uint32_t thread, std::uint64_t value, std::uint32_t src_lane) {
  if (!collectives_allowed(e)) return value;
  return e->team->exchange(thread, value, src_lane);
}
std::uint32_t cpu_warp_ballot(CpuExec* e, std::uint32_t thread, bool pred) {
  if (!collectives_allowed(e)) return pred ? 1u : 0u;
  return e->team->ballot(thread, pred);
}
Status cpu_k2k_send(CpuExec* e, std::uint32_t dest, TypeId type, const void* payload, std::uint32_t size,
                    std::uint64_t correlation, std::uint32_t count) {
  return kernel_of(e)->k2k_send(dest, type, payload, size, correlation, count);
}
Status cpu_k2k_try_receive(CpuExec* e, TypeId type, void* out, std::uint32_t size, std::uint32_t* source) {
  return kernel_of(e)->k2k_try_receive(type, out, size, source);
}
HlcTimestamp cpu_hlc_tick(CpuExec* e) { return e->clock->tick(); }
HlcTimestamp cpu_hlc_now(CpuExec* e) { return e->clock->now(); }
void cpu_fail(CpuExec* e, std::uint32_t code) {
  e->fault = code ? code : static_cast<std::uint32_t>(DeviceError::HandlerFault);
}
void cpu_request_terminate(CpuExec* e) { e->terminate_requested = true; }
void cpu_count_dropped(CpuExec* e, std::uint64_t n) { e->dropped += n; }
std::uint32_t cpu_kernel_slot(CpuExec* e) { return e->slot; }
std::uint32_t cpu_k2k_route_count(CpuExec* e) { return kernel_of(e)->route_count(); }
std::uint32_t cpu_k2k_route(CpuExec* e, std::uint32_t i) { return kernel_of(e)->route(i); }
Status cpu_publish(CpuExec* e, std::uint64_t topic, TypeId type, const void* payload, std::uint32_t size) {
  return kernel_of(e)->publish(topic, type, payload, size);
}

}  // namespace ringkernel::detail
