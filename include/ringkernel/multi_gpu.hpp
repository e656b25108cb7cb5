// ringkernel/multi_gpu.hpp — several devices from one program.
//
//  * MultiGpuCoordinator: one runtime per device (every CUDA GPU, every Vulkan GPU, or a
//    number of CPU runtimes), kernels placed on a device by a LoadBalancingStrategy, a
//    launch that fails on one device for want of room or memory tried on the next.
//  * KernelGroup: one replica of a kernel per device. Sends go to a replica chosen by the
//    group's routing (round robin, least loaded by input queue depth, or a key that always
//    maps to the same replica, for kernels that keep per-key state); receives take from any
//    replica. A replica whose kernel died leaves the rotation; its keys fail with an error.
//  * Pipe: a host relay from the output of one kernel to the input of another, on any two
//    devices or backends (K2K routes stay on one device). It moves batches, merges the
//    sender's clock into the receiver's, so HLC order holds across the hop, and never drops
//    a message: a full destination holds the relay, and the source's output fills.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ringkernel/availability.hpp"
#include "ringkernel/runtime.hpp"

namespace ringkernel {

/// How MultiGpuCoordinator::launch picks a device for a new kernel.
enum class LoadBalancingStrategy : std::uint8_t {
  FirstAvailable,     ///< the first device (in the coordinator's order) with room
  LeastLoaded,        ///< the device running the fewest kernels (ties: the first)
  RoundRobin,         ///< devices in turn
  MemoryBased,        ///< the device with the most free memory (its total where unknown)
  ComputeCapability,  ///< the highest compute capability, then the most compute units
  Custom,             ///< the function given to MultiGpuBuilder::custom
};
const char* to_string(LoadBalancingStrategy s) noexcept;

/// A device of the coordinator.
struct DeviceInfo {
  std::uint32_t index = 0;         ///< position in the coordinator (what launch_on takes)
  Backend backend = Backend::Cpu;  ///< Cpu, Cuda or Vulkan
  std::uint32_t device_index = 0;  ///< the backend's own device index
  std::string name;
  std::uint64_t memory_bytes = 0;        ///< 0 where unknown
  std::uint32_t compute_units = 0;       ///< SMs / CPU threads; 0 where unknown
  std::uint32_t compute_capability = 0;  ///< CUDA major * 10 + minor; 0 elsewhere
};

/// A device's state now.
struct DeviceStatus {
  DeviceInfo info;
  std::uint32_t kernels = 0;                ///< kernels running on it (launched through its runtime)
  std::optional<std::uint64_t> free_memory;  ///< where the backend can tell
  std::uint64_t launches = 0;               ///< kernels the coordinator placed on it
  std::uint64_t failed_launches = 0;        ///< launches it refused (the coordinator then tried another)
  std::string last_error;                   ///< the last refusal, empty if none
};

struct MultiGpuStats {
  std::uint32_t devices = 0;
  std::uint64_t launches = 0;         ///< kernels placed
  std::uint64_t failovers = 0;        ///< launches that went to another device after a refusal
  std::uint64_t refused = 0;          ///< launches no device took
};

/// Custom placement: returns the index of the device for `kernel`, or nothing to refuse.
using DeviceSelector = std::function<std::optional<std::size_t>(std::span<const DeviceStatus>, std::string_view kernel)>;

struct MultiGpuConfig {
  /// Which devices: Auto = every CUDA GPU if there is one, else every hardware Vulkan GPU,
  /// else the CPU. Cuda / Vulkan = every device of that backend. Cpu = `cpu_runtimes`
  /// independent CPU runtimes (each with its own worker threads): the CPU is one device,
  /// and this is how a program partitions it or tests its multi-device code without GPUs.
  Backend backend = Backend::Auto;
  LoadBalancingStrategy load_balancing = LoadBalancingStrategy::LeastLoaded;
  std::uint32_t max_kernels_per_device = 64;
  /// Backend device indices to use, in this order (empty: all of them, in index order).
  std::vector<std::uint32_t> preferred_devices;
  std::uint32_t cpu_runtimes = 1;
  DeviceSelector custom;  ///< LoadBalancingStrategy::Custom
};

class KernelGroup;
class MultiGpuCoordinator;

class MultiGpuBuilder {
 public:
  MultiGpuBuilder& backend(Backend b) { config_.backend = b; return *this; }
  MultiGpuBuilder& load_balancing(LoadBalancingStrategy s) { config_.load_balancing = s; return *this; }
  MultiGpuBuilder& max_kernels_per_device(std::uint32_t n) { config_.max_kernels_per_device = n; return *this; }
  MultiGpuBuilder& preferred_devices(std::vector<std::uint32_t> d) { config_.preferred_devices = std::move(d); return *this; }
  MultiGpuBuilder& cpu_runtimes(std::uint32_t n) { config_.cpu_runtimes = n; return *this; }
  MultiGpuBuilder& custom(DeviceSelector f) {
    config_.custom = std::move(f);
    config_.load_balancing = LoadBalancingStrategy::Custom;
    return *this;
  }
  /// Creates one runtime per device. Errors: BackendUnavailable (no device of the backend,
  /// a preferred index that does not exist, Metal), InvalidArgument (Custom without a
  /// function, zero CPU runtimes or kernels per device).
  Result<MultiGpuCoordinator> build();

 private:
  MultiGpuConfig config_;
};

/// Owns one RingKernel runtime per device. Each runtime gets its own HLC node id (the
/// process's id times 256 plus the device's position), so stamps from different devices
/// never tie.
class MultiGpuCoordinator {
 public:
  static MultiGpuBuilder builder() { return {}; }
  MultiGpuCoordinator(MultiGpuCoordinator&&) noexcept;
  MultiGpuCoordinator& operator=(MultiGpuCoordinator&&) noexcept;
  ~MultiGpuCoordinator();

  std::size_t device_count() const noexcept;
  const DeviceInfo& device(std::size_t i) const;
  std::vector<DeviceStatus> status() const;
  MultiGpuStats stats() const;
  const MultiGpuConfig& config() const noexcept;
  /// The runtime of device `i` (launch, connect and pub/sub there directly).
  RingKernel& runtime(std::size_t i);

  /// The device the strategy would pick for `kernel` now (RoundRobin: without moving on).
  /// Errors: InvalidState (every device runs max_kernels_per_device kernels, or a Custom
  /// selector placed nothing), InvalidArgument (a Custom selector returned no such device).
  Result<std::size_t> select_device(std::string_view kernel = {}) const;
  /// Launches `name` on the device the strategy picks. A device that refuses it for its own
  /// reasons (LaunchFailed, OutOfMemory, BackendError, BackendUnavailable) is recorded in
  /// its status and the next candidate is tried; errors about the request itself
  /// (UnknownKernel, InvalidArgument, KernelExists) return at once. `placed` receives the
  /// device index.
  Result<KernelHandle> launch(std::string_view name, const LaunchOptions& options = {}, std::size_t* placed = nullptr);
  /// Launches on device `device`, no failover.
  Result<KernelHandle> launch_on(std::size_t device, std::string_view name, const LaunchOptions& options = {});
  /// One replica of `name` on each device (or on the devices listed), as a KernelGroup.
  /// Replicas get kernel ids "<id>@<device>". Fails as a whole: replicas already launched
  /// are terminated.
  Result<KernelGroup> launch_group(std::string_view name, const LaunchOptions& options = {},
                                   std::span<const std::size_t> devices = {});
  /// The device a kernel runs on, if one of this coordinator's runtimes launched it.
  std::optional<std::size_t> device_of(const KernelHandle& kernel) const noexcept;
  /// A K2K route between two kernels of one device (as RingKernel::connect). Kernels on
  /// different devices: K2KError naming ringkernel::pipe, the host relay between devices.
  Result<void> connect(const KernelHandle& from, const KernelHandle& to);
  /// Terminates every kernel of every device.
  Result<void> shutdown(Duration timeout = KernelHandle::kDefaultTimeout);

 private:
  friend class MultiGpuBuilder;
  struct Impl;
  explicit MultiGpuCoordinator(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

/// How a KernelGroup picks the replica for a send.
enum class GroupRouting : std::uint8_t {
  RoundRobin,   ///< replicas in turn; a full one is passed over for the next
  LeastLoaded,  ///< the live replica with the fewest messages waiting in its input queue
};

/// Replicas of one kernel, one per device. Move-only; destroying it terminates them.
/// Thread-safe: any number of threads may send and receive at once.
class KernelGroup {
 public:
  KernelGroup();
  KernelGroup(KernelGroup&&) noexcept;
  KernelGroup& operator=(KernelGroup&&) noexcept;
  ~KernelGroup();

  std::size_t size() const noexcept;
  /// Replicas still taking messages.
  std::size_t live() const noexcept;
  bool alive(std::size_t replica) const noexcept;
  KernelHandle& replica(std::size_t i);
  /// The coordinator device replica `i` runs on.
  std::size_t device_of(std::size_t replica) const;
  /// Messages the group has sent to replica `i`.
  std::uint64_t sent_to(std::size_t replica) const noexcept;
  void set_routing(GroupRouting r) noexcept;
  GroupRouting routing() const noexcept;

  Result<void> activate();
  Result<void> deactivate();
  Result<void> terminate(Duration timeout = KernelHandle::kDefaultTimeout);

  /// Sends to the replica the routing picks (passing over full and dead ones); waits up to
  /// `timeout` while every live replica is full. Returns the replica's index. Errors:
  /// QueueFull (timeout), KernelTerminated (no live replica), the replicas' type errors.
  template <RingMessage T>
  Result<std::size_t> send(const T& msg, Duration timeout = KernelHandle::kDefaultTimeout) {
    return send_raw(type_id_v<T>, &msg, sizeof(T), timeout);
  }
  /// Sends to replica `key % size()`, always the same one for a key (per-key state stays
  /// on one device). That replica dead: KernelTerminated / KernelFaulted, nothing sent.
  template <RingMessage T>
  Result<std::size_t> send_keyed(std::uint64_t key, const T& msg, Duration timeout = KernelHandle::kDefaultTimeout) {
    return send_keyed_raw(key, type_id_v<T>, &msg, sizeof(T), timeout);
  }
  /// All of `msgs`, spread over the live replicas in runs (each replica's share published
  /// at once); returns how many were sent (all, or an error).
  template <RingMessage T>
  Result<std::size_t> send_batch(std::span<const T> msgs, Duration timeout = KernelHandle::kDefaultTimeout) {
    return send_batch_raw(type_id_v<T>, reinterpret_cast<const std::byte*>(msgs.data()), sizeof(T), msgs.size(),
                          timeout);
  }
  /// The next message from any replica (`from`: which one). Errors: Timeout,
  /// KernelTerminated (every replica stopped and nothing is left).
  template <RingMessage T>
  Result<T> receive(Duration timeout = KernelHandle::kDefaultTimeout, std::size_t* from = nullptr) {
    T out;
    auto r = receive_raw(type_id_v<T>, &out, sizeof(T), timeout, nullptr);
    if (!r) return r.error();
    if (from) *from = *r;
    return out;
  }
  template <RingMessage T>
  Result<Received<T>> receive_message(Duration timeout = KernelHandle::kDefaultTimeout, std::size_t* from = nullptr) {
    Received<T> out;
    Envelope env{};
    auto r = receive_raw(type_id_v<T>, &out.message, sizeof(T), timeout, &env);
    if (!r) return r.error();
    if (from) *from = *r;
    out.timestamp = env.timestamp;
    out.correlation = CorrelationId{env.correlation_id};
    out.source = env.source_kernel;
    out.priority = static_cast<Priority>(env.priority);
    return out;
  }
  /// Waits up to `timeout` for at least one message, then takes what the replicas have
  /// (≤ out.size()).
  template <RingMessage T>
  Result<std::size_t> receive_batch(std::span<T> out, Duration timeout = KernelHandle::kDefaultTimeout) {
    return receive_batch_raw(type_id_v<T>, reinterpret_cast<std::byte*>(out.data()), sizeof(T), out.size(), timeout);
  }
  /// Request/response on the replica the routing picks (`on`: which one).
  template <RingMessage Resp, RingMessage Req>
  Result<Resp> call(const Req& req, Duration timeout = KernelHandle::kDefaultTimeout, std::size_t* on = nullptr) {
    Resp out;
    auto r = call_raw(type_id_v<Req>, &req, sizeof(Req), type_id_v<Resp>, &out, sizeof(Resp), timeout);
    if (!r) return r.error();
    if (on) *on = *r;
    return out;
  }

 private:
  friend class MultiGpuCoordinator;
  struct Impl;
  Result<std::size_t> send_raw(TypeId type, const void* payload, std::uint32_t size, Duration timeout);
  Result<std::size_t> send_keyed_raw(std::uint64_t key, TypeId type, const void* payload, std::uint32_t size,
                                     Duration timeout);
  Result<std::size_t> send_batch_raw(TypeId type, const std::byte* payloads, std::uint32_t size, std::size_t count,
                                     Duration timeout);
  Result<std::size_t> receive_raw(TypeId type, void* out, std::uint32_t size, Duration timeout, Envelope* env);
  Result<std::size_t> receive_batch_raw(TypeId type, std::byte* out, std::uint32_t size, std::size_t count,
                                        Duration timeout);
  Result<std::size_t> call_raw(TypeId req_type, const void* req, std::uint32_t req_size, TypeId resp_type, void* resp,
                               std::uint32_t resp_size, Duration timeout);
  std::unique_ptr<Impl> impl_;
};

/// Figures of a Pipe.
struct PipeStats {
  std::uint64_t forwarded = 0;  ///< messages delivered to the destination
  std::uint64_t batches = 0;    ///< receive batches taken from the source
  std::uint64_t held = 0;       ///< messages taken from the source, not yet delivered
  bool running = false;
  std::string stopped_because;  ///< why the relay stopped (empty while it runs)
};

struct PipeOptions {
  std::uint32_t batch = 256;  ///< most messages moved per step
};

/// A host relay from one kernel's responses to another kernel's input (see the top of this
/// header). Move-only; destroying it stops the relay. It also stops when either kernel is
/// destroyed, when the destination stops taking messages, and when the source has stopped
/// and everything it left has been delivered. Destroy it before the runtimes (or the
/// coordinator) its kernels belong to: the relay merges their clocks.
class Pipe {
 public:
  Pipe();
  Pipe(Pipe&&) noexcept;
  Pipe& operator=(Pipe&&) noexcept;
  ~Pipe();
  PipeStats stats() const;
  bool running() const noexcept;
  /// Stops the relay. Messages it holds are offered to the destination until `drain`
  /// passes; what is still held then is counted in the result's `held` (and lost).
  PipeStats stop(Duration drain = std::chrono::milliseconds(100));

 private:
  friend Result<Pipe> pipe(const KernelHandle& from, const KernelHandle& to, const PipeOptions& options);
  struct State;
  std::shared_ptr<State> state_;
};

/// Relays `from`'s responses into `to`'s input. Errors: InvalidArgument (an empty handle,
/// the same kernel twice, a batch of 0), UnknownMessageType (from's response type is not
/// to's request type), KernelTerminated (either is terminated).
Result<Pipe> pipe(const KernelHandle& from, const KernelHandle& to, const PipeOptions& options = {});

}  // namespace ringkernel
