// Multi-device coordination: placement, replicated kernels, host relays (see multi_gpu.hpp).
#include "ringkernel/multi_gpu.hpp"

#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "backoff.hpp"
#include "runtime_core.hpp"

namespace ringkernel {

using detail::Backoff;
using detail::KernelCore;

const char* to_string(LoadBalancingStrategy s) noexcept {
  switch (s) {
    case LoadBalancingStrategy::FirstAvailable: return "first-available";
    case LoadBalancingStrategy::LeastLoaded: return "least-loaded";
    case LoadBalancingStrategy::RoundRobin: return "round-robin";
    case LoadBalancingStrategy::MemoryBased: return "memory-based";
    case LoadBalancingStrategy::ComputeCapability: return "compute-capability";
    case LoadBalancingStrategy::Custom: return "custom";
  }
  return "?";
}

namespace {

constexpr Duration kHealthInterval = std::chrono::milliseconds(1);

/// Errors that belong to the device, not to the request: another device may take it.
bool device_refusal(ErrorCode c) noexcept {
  return c == ErrorCode::LaunchFailed || c == ErrorCode::OutOfMemory || c == ErrorCode::BackendError ||
         c == ErrorCode::BackendUnavailable;
}

}  // namespace

// ---- coordinator ---------------------------------------------------------------------------

struct MultiGpuCoordinator::Impl {
  struct Device {
    DeviceInfo info;
    RingKernel runtime;
    std::uint64_t launches = 0, failed = 0;
    std::string last_error;
  };
  MultiGpuConfig config;
  std::vector<std::unique_ptr<Device>> devices;
  mutable std::mutex mutex;  // counters, last_error, round-robin position
  std::size_t next = 0;      // round robin
  MultiGpuStats totals;

  /// `with_memory`: also ask each backend for its free memory (a driver call per device;
  /// only status() and MemoryBased placement need it).
  std::vector<DeviceStatus> status_locked(bool with_memory) const {
    std::vector<DeviceStatus> out;
    out.reserve(devices.size());
    for (const auto& d : devices) {
      DeviceStatus s;
      s.info = d->info;
      s.kernels = static_cast<std::uint32_t>(d->runtime.kernels().size());
      if (with_memory) s.free_memory = d->runtime.free_memory();
      s.launches = d->launches;
      s.failed_launches = d->failed;
      s.last_error = d->last_error;
      out.push_back(std::move(s));
    }
    return out;
  }

  /// Candidate devices in the order the strategy prefers them (devices with room only).
  Result<std::vector<std::size_t>> candidates_locked(std::string_view kernel) const {
    const std::vector<DeviceStatus> st =
        status_locked(config.load_balancing == LoadBalancingStrategy::MemoryBased ||
                      config.load_balancing == LoadBalancingStrategy::Custom);
    std::vector<std::size_t> order;
    for (std::size_t i = 0; i < st.size(); ++i)
      if (st[i].kernels < config.max_kernels_per_device) order.push_back(i);
    if (order.empty())
      return Error(ErrorCode::InvalidState, "every device runs max_kernels_per_device (" +
                                                std::to_string(config.max_kernels_per_device) + ") kernels");
    auto by = [&](auto key) {  // stable: ties keep the coordinator's order
      std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return key(st[a]) < key(st[b]); });
    };
    switch (config.load_balancing) {
      case LoadBalancingStrategy::FirstAvailable: break;
      case LoadBalancingStrategy::LeastLoaded: by([](const DeviceStatus& s) { return s.kernels; }); break;
      case LoadBalancingStrategy::RoundRobin:
        std::rotate(order.begin(),
                    std::find_if(order.begin(), order.end(), [&](std::size_t i) { return i >= next % st.size(); }),
                    order.end());
        break;
      case LoadBalancingStrategy::MemoryBased:
        by([](const DeviceStatus& s) { return ~s.free_memory.value_or(s.info.memory_bytes); });
        break;
      case LoadBalancingStrategy::ComputeCapability:
        by([](const DeviceStatus& s) {
          return ~(std::uint64_t{s.info.compute_capability} << 32 | s.info.compute_units);
        });
        break;
      case LoadBalancingStrategy::Custom: {
        const std::optional<std::size_t> pick = config.custom(st, kernel);
        if (!pick) return Error(ErrorCode::InvalidState, "the custom device selector placed no device for '" +
                                                             std::string(kernel) + "'");
        if (*pick >= st.size())
          return Error(ErrorCode::InvalidArgument, "the custom device selector returned device " +
                                                       std::to_string(*pick) + " of " + std::to_string(st.size()));
        order = {*pick};  // its choice only: no failover the selector did not ask for
        break;
      }
    }
    return order;
  }
};

MultiGpuCoordinator::MultiGpuCoordinator(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
MultiGpuCoordinator::MultiGpuCoordinator(MultiGpuCoordinator&&) noexcept = default;
MultiGpuCoordinator& MultiGpuCoordinator::operator=(MultiGpuCoordinator&&) noexcept = default;
MultiGpuCoordinator::~MultiGpuCoordinator() = default;

Result<MultiGpuCoordinator> MultiGpuBuilder::build() {
  MultiGpuConfig c = config_;
  if (c.load_balancing == LoadBalancingStrategy::Custom && !c.custom)
    return Error(ErrorCode::InvalidArgument, "LoadBalancingStrategy::Custom needs a selector (MultiGpuBuilder::custom)");
  if (c.max_kernels_per_device == 0) return Error(ErrorCode::InvalidArgument, "max_kernels_per_device must be at least 1");
  if (c.backend == Backend::Metal) return Error(ErrorCode::BackendUnavailable, availability(Backend::Metal).reason);
  Backend b = c.backend;
  if (b == Backend::Auto) {
    const auto gpu = detail::RuntimeCore::auto_gpu(0, nullptr);
    b = gpu ? gpu->backend : Backend::Cpu;
  }
  // The devices, as (backend index) in the order asked for.
  std::vector<std::uint32_t> indices;
  if (b == Backend::Cpu) {
    if (c.cpu_runtimes == 0) return Error(ErrorCode::InvalidArgument, "cpu_runtimes must be at least 1");
    for (std::uint32_t i = 0; i < c.cpu_runtimes; ++i) indices.push_back(0);
  } else if (!c.preferred_devices.empty()) {
    indices = c.preferred_devices;
  } else {
    const std::uint32_t n = availability(b, 0).device_count;
    for (std::uint32_t i = 0; i < n; ++i) indices.push_back(i);
  }
  if (indices.empty())
    return Error(ErrorCode::BackendUnavailable, std::string("no ") + to_string(b) + " device: " + availability(b, 0).reason);
  auto impl = std::make_unique<MultiGpuCoordinator::Impl>();
  impl->config = c;
  impl->config.backend = b;
  const std::uint64_t base = static_cast<std::uint64_t>(::getpid()) << 8;
  for (std::size_t pos = 0; pos < indices.size(); ++pos) {
    const std::uint32_t idx = indices[pos];
    const BackendAvailability a = availability(b, idx);
    if (!a.available)
      return Error(ErrorCode::BackendUnavailable, std::string(to_string(b)) + " device " + std::to_string(idx) + ": " + a.reason);
    auto rt = RingKernel::builder().backend(b).device_index(idx).node_id(base + pos + 1).build();
    if (!rt) return rt.error();
    DeviceInfo info;
    info.index = static_cast<std::uint32_t>(pos);
    info.backend = b;
    info.device_index = idx;
    info.name = b == Backend::Cpu ? rt->device_name() + " (runtime " + std::to_string(pos) + ")" : a.device;
    info.memory_bytes = a.memory_bytes;
    info.compute_units = a.compute_units;
    info.compute_capability = a.compute_capability;
    impl->devices.push_back(std::make_unique<MultiGpuCoordinator::Impl::Device>(
        MultiGpuCoordinator::Impl::Device{std::move(info), std::move(*rt), 0, 0, {}}));
  }
  impl->totals.devices = static_cast<std::uint32_t>(impl->devices.size());
  return MultiGpuCoordinator(std::move(impl));
}

std::size_t MultiGpuCoordinator::device_count() const noexcept { return impl_->devices.size(); }
const DeviceInfo& MultiGpuCoordinator::device(std::size_t i) const { return impl_->devices.at(i)->info; }
const MultiGpuConfig& MultiGpuCoordinator::config() const noexcept { return impl_->config; }
RingKernel& MultiGpuCoordinator::runtime(std::size_t i) { return impl_->devices.at(i)->runtime; }

std::vector<DeviceStatus> MultiGpuCoordinator::status() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->status_locked(true);
}

MultiGpuStats MultiGpuCoordinator::stats() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->totals;
}

Result<std::size_t> MultiGpuCoordinator::select_device(std::string_view kernel) const {
  std::lock_guard lock(impl_->mutex);
  auto order = impl_->candidates_locked(kernel);
  if (!order) return order.error();
  return order->front();
}

Result<KernelHandle> MultiGpuCoordinator::launch(std::string_view name, const LaunchOptions& options, std::size_t* placed) {
  // The lock covers the choice and the launch: two threads launching at once see each
  // other's kernels in the counts.
  std::lock_guard lock(impl_->mutex);
  auto order = impl_->candidates_locked(name);
  if (!order) {
    ++impl_->totals.refused;
    return order.error();
  }
  std::string refusals;
  for (std::size_t k = 0; k < order->size(); ++k) {
    const std::size_t i = (*order)[k];
    Impl::Device& d = *impl_->devices[i];
    auto h = d.runtime.launch(name, options);
    if (h) {
      ++d.launches;
      ++impl_->totals.launches;
      if (k > 0) ++impl_->totals.failovers;
      if (impl_->config.load_balancing == LoadBalancingStrategy::RoundRobin) impl_->next = i + 1;
      if (placed) *placed = i;
      return h;
    }
    if (!device_refusal(h.error().code())) return h.error();
    ++d.failed;
    d.last_error = h.error().what();
    refusals += (refusals.empty() ? "" : "; ") + ("device " + std::to_string(i) + ": " + h.error().what());
  }
  ++impl_->totals.refused;
  return Error(ErrorCode::LaunchFailed, "no device took kernel '" + std::string(name) + "' (" + refusals + ")");
}

Result<KernelHandle> MultiGpuCoordinator::launch_on(std::size_t device, std::string_view name, const LaunchOptions& options) {
  if (device >= impl_->devices.size())
    return Error(ErrorCode::InvalidArgument, "device " + std::to_string(device) + " out of range (" +
                                                 std::to_string(impl_->devices.size()) + " devices)");
  std::lock_guard lock(impl_->mutex);
  Impl::Device& d = *impl_->devices[device];
  if (d.runtime.kernels().size() >= impl_->config.max_kernels_per_device)
    return Error(ErrorCode::InvalidState, "device " + std::to_string(device) + " runs max_kernels_per_device kernels");
  auto h = d.runtime.launch(name, options);
  if (!h) {
    if (device_refusal(h.error().code())) {
      ++d.failed;
      d.last_error = h.error().what();
    }
    return h.error();
  }
  ++d.launches;
  ++impl_->totals.launches;
  return h;
}

std::optional<std::size_t> MultiGpuCoordinator::device_of(const KernelHandle& kernel) const noexcept {
  for (std::size_t i = 0; i < impl_->devices.size(); ++i)
    if (impl_->devices[i]->runtime.owns(kernel)) return i;
  return std::nullopt;
}

Result<void> MultiGpuCoordinator::connect(const KernelHandle& from, const KernelHandle& to) {
  const auto a = device_of(from), b = device_of(to);
  if (!a || !b) return Error(ErrorCode::InvalidArgument, "connect: a kernel was not launched by this coordinator");
  if (*a != *b)
    return Error(ErrorCode::K2KError, "connect: '" + from.id().value + "' runs on device " + std::to_string(*a) + " and '" +
                                          to.id().value + "' on device " + std::to_string(*b) +
                                          "; K2K routes stay on one device — relay between devices with ringkernel::pipe");
  return impl_->devices[*a]->runtime.connect(from, to);
}

Result<void> MultiGpuCoordinator::shutdown(Duration timeout) {
  Result<void> first;
  for (auto& d : impl_->devices)
    if (auto r = d->runtime.shutdown(timeout); !r && first) first = r;
  return first;
}

// ---- kernel group --------------------------------------------------------------------------

struct KernelGroup::Impl {
  std::vector<KernelHandle> replicas;
  std::vector<std::size_t> devices;
  std::unique_ptr<std::atomic<bool>[]> dead;
  std::unique_ptr<std::atomic<std::uint64_t>[]> sent;
  std::atomic<std::uint64_t> next{0};     // routing position
  std::atomic<std::uint64_t> rx_next{0};  // first replica a receive looks at
  std::atomic<GroupRouting> routing{GroupRouting::LeastLoaded};

  explicit Impl(std::size_t n)
      : dead(new std::atomic<bool>[n]), sent(new std::atomic<std::uint64_t>[n]) {
    for (std::size_t i = 0; i < n; ++i) {
      dead[i].store(false);
      sent[i].store(0);
    }
  }
  std::size_t size() const noexcept { return replicas.size(); }
  KernelCore& core(std::size_t i) const noexcept { return *replicas[i].core_ptr(); }
  bool live(std::size_t i) const noexcept { return !dead[i].load(std::memory_order_relaxed); }
  void mark_dead(std::size_t i) noexcept { dead[i].store(true, std::memory_order_relaxed); }
  std::size_t live_count() const noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i < size(); ++i) n += live(i) ? 1 : 0;
    return n;
  }
  /// The replica to try first.
  std::size_t pick() noexcept {
    const std::size_t n = size();
    const std::size_t start = static_cast<std::size_t>(next.fetch_add(1, std::memory_order_relaxed) % n);
    if (routing.load(std::memory_order_relaxed) == GroupRouting::RoundRobin) return start;
    std::size_t best = start;
    std::uint64_t best_depth = ~0ull;
    for (std::size_t k = 0; k < n; ++k) {  // from a rotating start: equal depths take turns
      const std::size_t i = (start + k) % n;
      if (!live(i)) continue;
      const std::uint64_t d = core(i).input.depth();  // two index loads (across a bus on Vulkan)
      if (d < best_depth) {
        best_depth = d;
        best = i;
      }
    }
    return best;
  }
  /// Checks the live replicas' health (a kernel that died without saying so, e.g. a GPU trap).
  void check_health() noexcept {
    for (std::size_t i = 0; i < size(); ++i) {
      if (!live(i)) continue;
      KernelCore& c = core(i);
      if (c.kernel_terminated_now() || !c.impl || !c.impl->check_health()) mark_dead(i);
    }
  }
  /// Calls `attempt` until it gives a result, pausing between tries and checking the live
  /// replicas' health every millisecond; once `timeout` has passed with no result, returns
  /// `timed_out()`. `attempt` returns nothing to be tried again (after a pass that moved no
  /// message: one that moved some retries at once, inside it).
  template <class Attempt, class TimedOut>
  Result<std::size_t> retry(Duration timeout, Attempt&& attempt, TimedOut&& timed_out) {
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + timeout;
    auto next_health = start + kHealthInterval;
    Backoff backoff;
    for (;;) {
      if (std::optional<Result<std::size_t>> r = attempt()) return std::move(*r);
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return timed_out();
      if (now >= next_health) {
        check_health();
        next_health = now + kHealthInterval;
      }
      backoff.pause();
    }
  }
  Error none_live() const {
    return Error(ErrorCode::KernelTerminated, "every replica of kernel group '" +
                                                  (replicas.empty() ? std::string("?") : core(0).registered_name) +
                                                  "' has stopped; nothing was sent");
  }
  /// The error for a message the replicas refuse whatever their state (type, size).
  std::optional<Error> type_error(TypeId type, std::uint32_t size, bool send) const {
    for (std::size_t i = 0; i < replicas.size(); ++i) {
      if (!live(i)) continue;
      auto ok = send ? core(i).check_send(type, size) : core(i).check_receive(type, size);
      if (ok) return std::nullopt;
      const ErrorCode c = ok.error().code();
      if (c != ErrorCode::KernelTerminated && c != ErrorCode::KernelFaulted && c != ErrorCode::InvalidState)
        return ok.error();
      return std::nullopt;
    }
    return std::nullopt;
  }
};

KernelGroup::KernelGroup() = default;
KernelGroup::KernelGroup(KernelGroup&&) noexcept = default;
KernelGroup& KernelGroup::operator=(KernelGroup&&) noexcept = default;
KernelGroup::~KernelGroup() = default;

std::size_t KernelGroup::size() const noexcept { return impl_ ? impl_->size() : 0; }
std::size_t KernelGroup::live() const noexcept { return impl_ ? impl_->live_count() : 0; }
bool KernelGroup::alive(std::size_t i) const noexcept { return impl_ && i < impl_->size() && impl_->live(i); }
KernelHandle& KernelGroup::replica(std::size_t i) { return impl_->replicas.at(i); }
std::size_t KernelGroup::device_of(std::size_t i) const { return impl_->devices.at(i); }
std::uint64_t KernelGroup::sent_to(std::size_t i) const noexcept {
  return impl_ && i < impl_->size() ? impl_->sent[i].load(std::memory_order_relaxed) : 0;
}
void KernelGroup::set_routing(GroupRouting r) noexcept { impl_->routing.store(r); }
GroupRouting KernelGroup::routing() const noexcept { return impl_->routing.load(); }

Result<void> KernelGroup::activate() {
  for (auto& r : impl_->replicas)
    if (auto a = r.activate(); !a) return a;
  return {};
}
Result<void> KernelGroup::deactivate() {
  for (auto& r : impl_->replicas)
    if (auto a = r.deactivate(); !a) return a;
  return {};
}
Result<void> KernelGroup::terminate(Duration timeout) {
  Result<void> first;
  for (std::size_t i = 0; i < impl_->size(); ++i) {
    if (impl_->replicas[i].state() == KernelState::Terminated) {
      impl_->mark_dead(i);
      continue;
    }
    auto r = impl_->replicas[i].terminate(timeout);
    impl_->mark_dead(i);
    if (!r && first) first = r;
  }
  return first;
}

Result<std::size_t> KernelGroup::send_raw(TypeId type, const void* payload, std::uint32_t size, Duration timeout) {
  if (!impl_ || impl_->size() == 0) return Error(ErrorCode::InvalidState, "send on an empty kernel group");
  if (auto e = impl_->type_error(type, size, true)) return *e;
  Impl& g = *impl_;
  return g.retry(
      timeout,
      [&]() -> std::optional<Result<std::size_t>> {
        const std::size_t n = g.size(), first = g.pick();
        for (std::size_t k = 0; k < n; ++k) {
          const std::size_t i = (first + k) % n;
          if (!g.live(i)) continue;
          const Status s = g.core(i).try_send_raw(type, payload, size, 0, Priority::Normal);
          if (s == Status::Ok) {
            g.sent[i].fetch_add(1, std::memory_order_relaxed);
            return Result<std::size_t>(i);
          }
          if (s == Status::Closed || s == Status::Faulted) {
            g.mark_dead(i);
          } else if (s != Status::QueueFull) {
            return Result<std::size_t>(Error(to_error_code(s), std::string("send failed: ") + to_string(s)));
          }
        }
        if (g.live_count() == 0) return Result<std::size_t>(g.none_live());
        return std::nullopt;
      },
      [&] {
        return Error(ErrorCode::QueueFull, "every live replica of kernel group '" + g.core(0).registered_name +
                                               "' stayed full; nothing was sent");
      });
}

Result<std::size_t> KernelGroup::send_keyed_raw(std::uint64_t key, TypeId type, const void* payload, std::uint32_t size,
                                                Duration timeout) {
  if (!impl_ || impl_->size() == 0) return Error(ErrorCode::InvalidState, "send on an empty kernel group");
  Impl& g = *impl_;
  const std::size_t i = static_cast<std::size_t>(key % g.size());
  if (!g.live(i)) return g.core(i).dead_error();
  auto r = g.core(i).wait_send(type, payload, size, 0, Priority::Normal, timeout);
  if (!r) {
    if (r.error().code() == ErrorCode::KernelTerminated || r.error().code() == ErrorCode::KernelFaulted) g.mark_dead(i);
    return r.error();
  }
  g.sent[i].fetch_add(1, std::memory_order_relaxed);
  return i;
}

Result<std::size_t> KernelGroup::send_batch_raw(TypeId type, const std::byte* payloads, std::uint32_t size,
                                                std::size_t count, Duration timeout) {
  if (!impl_ || impl_->size() == 0) return Error(ErrorCode::InvalidState, "send on an empty kernel group");
  if (auto e = impl_->type_error(type, size, true)) return *e;
  Impl& g = *impl_;
  std::size_t done = 0;
  return g.retry(
      timeout,
      [&]() -> std::optional<Result<std::size_t>> {
        for (bool moved = true; moved;) {  // passes that move messages go on at once
          if (done == count) return Result<std::size_t>(done);
          const std::size_t live = g.live_count();
          if (live == 0) {
            if (done == 0) return Result<std::size_t>(g.none_live());
            return Result<std::size_t>(Error(ErrorCode::KernelTerminated, "every replica stopped after " +
                                                                              std::to_string(done) + " of " +
                                                                              std::to_string(count) + " messages were sent"));
          }
          // Each live replica's share of what is left, taken in one publication.
          const std::size_t share = std::max<std::size_t>(1, (count - done + live - 1) / live);
          const std::size_t n = g.size(), first = g.pick();
          moved = false;
          for (std::size_t k = 0; k < n && done < count; ++k) {
            const std::size_t i = (first + k) % n;
            if (!g.live(i)) continue;
            KernelCore& c = g.core(i);
            const std::size_t m = c.try_send_batch_raw(type, payloads + done * size, size, std::min(share, count - done));
            if (m) {
              g.sent[i].fetch_add(m, std::memory_order_relaxed);
              done += m;
              moved = true;
            } else if (c.kernel_terminated_now() || c.state.load() == KernelState::Terminated) {
              g.mark_dead(i);
            }
          }
        }
        return std::nullopt;
      },
      [&] {
        return Error(ErrorCode::QueueFull, "every live replica stayed full; " + std::to_string(done) + " of " +
                                               std::to_string(count) + " messages were sent");
      });
}

Result<std::size_t> KernelGroup::receive_raw(TypeId type, void* out, std::uint32_t size, Duration timeout, Envelope* env) {
  if (!impl_ || impl_->size() == 0) return Error(ErrorCode::InvalidState, "receive on an empty kernel group");
  if (auto e = impl_->type_error(type, size, false)) return *e;
  Impl& g = *impl_;
  return g.retry(
      timeout,
      [&]() -> std::optional<Result<std::size_t>> {
        const std::size_t n = g.size();
        const std::size_t first = static_cast<std::size_t>(g.rx_next.fetch_add(1, std::memory_order_relaxed) % n);
        bool open = false;
        for (std::size_t k = 0; k < n; ++k) {
          const std::size_t i = (first + k) % n;
          KernelCore& c = g.core(i);
          const Status s = c.try_receive_raw(type, out, size, env);
          if (s == Status::Ok) return Result<std::size_t>(i);
          // A stopped replica may still hold responses: it counts as open until drained.
          if (s == Status::QueueEmpty && !c.kernel_terminated_now() && c.state.load() != KernelState::Terminated)
            open = true;
          if (s != Status::QueueEmpty && s != Status::Closed && s != Status::Faulted)
            return Result<std::size_t>(Error(to_error_code(s), std::string("receive failed: ") + to_string(s)));
        }
        if (!open)
          return Result<std::size_t>(
              Error(ErrorCode::KernelTerminated, "every replica of the kernel group has stopped and nothing is left"));
        return std::nullopt;
      },
      [] { return Error(ErrorCode::Timeout, "no message from any replica of the kernel group in time"); });
}

Result<std::size_t> KernelGroup::receive_batch_raw(TypeId type, std::byte* out, std::uint32_t size, std::size_t count,
                                                   Duration timeout) {
  if (count == 0) return std::size_t{0};
  auto first = receive_raw(type, out, size, timeout, nullptr);
  if (!first) return first.error();
  Impl& g = *impl_;
  std::size_t got = 1;
  for (std::size_t k = 0; k < g.size() && got < count; ++k) {
    const std::size_t i = (*first + k) % g.size();
    got += g.core(i).try_receive_batch_raw(type, out + got * size, size, count - got);
  }
  return got;
}

Result<std::size_t> KernelGroup::call_raw(TypeId req_type, const void* req, std::uint32_t req_size, TypeId resp_type,
                                          void* resp, std::uint32_t resp_size, Duration timeout) {
  if (!impl_ || impl_->size() == 0) return Error(ErrorCode::InvalidState, "call on an empty kernel group");
  Impl& g = *impl_;
  const std::size_t n = g.size(), first = g.pick();
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = (first + k) % n;
    if (!g.live(i)) continue;
    auto r = g.core(i).call_raw(req_type, req, req_size, resp_type, resp, resp_size, timeout);
    if (r) {
      g.sent[i].fetch_add(1, std::memory_order_relaxed);
      return i;
    }
    // The request never reached a dead replica (wait_send refuses it): try the next one.
    const ErrorCode c = r.error().code();
    if (c != ErrorCode::KernelTerminated && c != ErrorCode::KernelFaulted) return r.error();
    g.mark_dead(i);
  }
  return g.none_live();
}

Result<KernelGroup> MultiGpuCoordinator::launch_group(std::string_view name, const LaunchOptions& options,
                                                      std::span<const std::size_t> devices) {
  std::vector<std::size_t> on(devices.begin(), devices.end());
  if (on.empty())
    for (std::size_t i = 0; i < device_count(); ++i) on.push_back(i);
  KernelGroup group;
  group.impl_ = std::make_unique<KernelGroup::Impl>(on.size());
  const std::string base = options.kernel_id.empty() ? std::string(name) : options.kernel_id;
  for (std::size_t d : on) {
    LaunchOptions o = options;
    o.kernel_id = base + "@" + std::to_string(d);
    auto h = launch_on(d, name, o);
    if (!h) return h.error();  // the group's destructor terminates those already launched
    group.impl_->replicas.push_back(std::move(*h));
    group.impl_->devices.push_back(d);
  }
  return group;
}

// ---- pipe ----------------------------------------------------------------------------------

struct Pipe::State {
  KernelCore* from = nullptr;
  KernelCore* to = nullptr;
  TypeId type = 0;
  std::uint32_t size = 0, batch = 0;
  std::atomic<bool> stop{false};
  std::atomic<bool> running{false};
  std::atomic<std::uint64_t> forwarded{0}, batches{0}, held{0};
  std::mutex mutex;  // why, thread joins
  std::string why;
  std::thread thread;
  std::chrono::steady_clock::time_point drain_until{};

  void finish(std::string reason) {
    std::lock_guard lock(mutex);
    if (why.empty()) why = std::move(reason);
    running.store(false, std::memory_order_release);
  }
  /// Stops the relay thread and waits for it (from any thread but the relay's).
  void halt(Duration drain) {
    std::lock_guard lock(join_mutex);
    drain_until = std::chrono::steady_clock::now() + drain;
    stop.store(true, std::memory_order_release);
    if (thread.joinable()) thread.join();
  }
  std::mutex join_mutex;

  void run() {
    std::vector<std::byte> buf(std::size_t{batch} * size);
    std::size_t have = 0, off = 0;  // held messages: buf[off .. have)
    std::optional<Backoff> backoff;
    backoff.emplace();
    auto next_health = std::chrono::steady_clock::now() + kHealthInterval;
    for (;;) {
      const bool stopping = stop.load(std::memory_order_acquire);
      bool moved = false;
      if (off == have && !stopping) {
        off = have = 0;
        have = from->try_receive_batch_raw(type, buf.data(), size, batch);
        if (have) {
          batches.fetch_add(1, std::memory_order_relaxed);
          // The destination's clock orders after everything the source stamped: its sends
          // (stamped by the destination runtime's clock) follow the source's responses.
          if (from->host_clock && to->host_clock) (void)to->host_clock->observe(from->host_clock->now());
          moved = true;
        }
      }
      if (off < have) {
        const std::size_t m = to->try_send_batch_raw(type, buf.data() + off * size, size, have - off);
        if (m) {
          off += m;
          forwarded.fetch_add(m, std::memory_order_relaxed);
          moved = true;
        } else if (to->kernel_terminated_now() || to->state.load() == KernelState::Terminated ||
                   to->state.load() == KernelState::Terminating) {
          held.store(have - off, std::memory_order_relaxed);
          finish("the destination kernel '" + to->id.value + "' stopped");
          return;
        }
      }
      held.store(have - off, std::memory_order_relaxed);
      if (stopping && (off == have || std::chrono::steady_clock::now() >= drain_until)) {
        finish("stopped");
        return;
      }
      if (!moved && off == have &&
          (from->kernel_terminated_now() || from->state.load() == KernelState::Terminated)) {
        // The source stopped: one more look for responses it published just before.
        have = from->try_receive_batch_raw(type, buf.data(), size, batch);
        off = 0;
        if (have == 0) {
          finish("the source kernel '" + from->id.value + "' stopped and everything it sent was delivered");
          return;
        }
        continue;
      }
      if (moved) {
        backoff.emplace();
        continue;
      }
      const auto now = std::chrono::steady_clock::now();
      if (now >= next_health) {
        if (to->impl && !to->impl->check_health()) {
          finish("the destination kernel '" + to->id.value + "' failed");
          return;
        }
        next_health = now + kHealthInterval;
      }
      backoff->pause();
    }
  }
};

Pipe::Pipe() = default;
Pipe::Pipe(Pipe&&) noexcept = default;
Pipe& Pipe::operator=(Pipe&& o) noexcept {
  if (this != &o) {
    Pipe old(std::move(*this));
    state_ = std::move(o.state_);
  }
  return *this;
}
Pipe::~Pipe() {
  if (state_) state_->halt(std::chrono::milliseconds(100));
}

bool Pipe::running() const noexcept { return state_ && state_->running.load(std::memory_order_acquire); }

PipeStats Pipe::stats() const {
  PipeStats s;
  if (!state_) return s;
  s.forwarded = state_->forwarded.load(std::memory_order_relaxed);
  s.batches = state_->batches.load(std::memory_order_relaxed);
  s.held = state_->held.load(std::memory_order_relaxed);
  s.running = state_->running.load(std::memory_order_acquire);
  std::lock_guard lock(state_->mutex);
  s.stopped_because = state_->why;
  return s;
}

PipeStats Pipe::stop(Duration drain) {
  if (state_) state_->halt(drain);
  return stats();
}

Result<Pipe> pipe(const KernelHandle& from, const KernelHandle& to, const PipeOptions& options) {
  if (!from.valid() || !to.valid()) return Error(ErrorCode::InvalidArgument, "pipe: an empty kernel handle");
  if (from.core_ptr() == to.core_ptr()) return Error(ErrorCode::InvalidArgument, "pipe: a kernel cannot feed itself");
  if (options.batch == 0) return Error(ErrorCode::InvalidArgument, "pipe: batch must be at least 1");
  KernelCore& f = *from.core_ptr();
  KernelCore& t = *to.core_ptr();
  if (f.response_type == 0)
    return Error(ErrorCode::UnknownMessageType, "pipe: kernel '" + f.id.value + "' sends no responses");
  if (f.response_type != t.request_type || f.response_size != t.request_size)
    return Error(ErrorCode::UnknownMessageType, "pipe: kernel '" + f.id.value + "' responds with a type kernel '" +
                                                    t.id.value + "' does not take as its request");
  if (auto ok = f.check_receive(f.response_type, f.response_size); !ok) return ok.error();
  if (auto ok = t.check_send(t.request_type, t.request_size); !ok) return ok.error();
  Pipe p;
  p.state_ = std::make_shared<Pipe::State>();
  Pipe::State& s = *p.state_;
  s.from = &f;
  s.to = &t;
  s.type = f.response_type;
  s.size = f.response_size;
  s.batch = options.batch;
  s.running.store(true);
  // Either kernel's destruction stops the relay before the kernel's memory goes.
  const std::weak_ptr<Pipe::State> weak = p.state_;
  for (KernelCore* c : {&f, &t}) {
    std::lock_guard lock(c->hooks_mutex);
    c->on_destroy.emplace_back([weak] {
      if (auto st = weak.lock()) st->halt(Duration::zero());
    });
  }
  s.thread = std::thread([st = p.state_.get()] { st->run(); });
  return p;
}

}  // namespace ringkernel
