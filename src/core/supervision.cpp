// Supervisor: restart strategies and intensity limits over kernels of one runtime.
#include "ringkernel/supervision.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

#include "ringkernel/pubsub.hpp"

namespace ringkernel {

const char* to_string(RestartStrategy s) noexcept {
  switch (s) {
    case RestartStrategy::OneForOne: return "one-for-one";
    case RestartStrategy::OneForAll: return "one-for-all";
    case RestartStrategy::RestForOne: return "rest-for-one";
  }
  return "?";
}

const char* to_string(SupervisorEvent::Kind k) noexcept {
  switch (k) {
    case SupervisorEvent::Kind::ChildFailed: return "child failed";
    case SupervisorEvent::Kind::ChildRestarted: return "child restarted";
    case SupervisorEvent::Kind::ChildRemoved: return "child removed";
    case SupervisorEvent::Kind::Escalated: return "escalated";
  }
  return "?";
}

struct Supervisor::Impl {
  using Clock = std::chrono::steady_clock;

  struct Child {
    ChildSpec spec;
    KernelHandle handle;
    std::uint64_t generation = 1;
  };

  Impl(RingKernel& r, SupervisorOptions o) : rt(r), options(o) {}

  RingKernel& rt;
  SupervisorOptions options;

  mutable std::mutex mutex;
  std::vector<Child> children;  // in start order
  std::vector<std::pair<std::string, std::string>> edges;
  std::deque<Clock::time_point> recent_restarts;
  std::uint64_t total_restarts = 0;
  std::optional<Error> escalation;
  std::vector<std::function<void(const SupervisorEvent&)>> event_callbacks;
  std::vector<std::function<void(const Error&)>> escalate_callbacks;

  std::mutex monitor_mutex;
  std::condition_variable monitor_cv;
  bool monitor_stop = false;
  std::thread monitor;

  std::ptrdiff_t index_of(std::string_view name) const {
    for (std::size_t i = 0; i < children.size(); ++i)
      if (children[i].spec.name == name) return static_cast<std::ptrdiff_t>(i);
    return -1;
  }

  static Error unknown(std::string_view name) {
    return Error(ErrorCode::InvalidArgument, "no child named '" + std::string(name) + "' in this supervisor");
  }

  Result<KernelHandle> launch(const ChildSpec& spec) {
    LaunchOptions o = spec.options;
    o.kernel_id = spec.name;
    auto h = rt.launch(spec.kernel, o);
    if (!h) return h;
    for (std::uint32_t i = 0; i < spec.actors; ++i) {
      if (auto a = h->spawn_actor(); !a) {
        (void)h->terminate(options.stop_timeout);
        return Error(a.error().code(), "child '" + spec.name + "': spawning actor " + std::to_string(i) + ": " +
                                           a.error().message());
      }
    }
    return h;
  }

  static std::string actor_name(const Child& c, std::uint32_t index) {
    return c.spec.name + "[" + std::to_string(index) + "]";
  }

  /// Counts one restart in the intensity window; escalates (and returns false) beyond the
  /// limit. Caller holds `mutex`.
  bool count_restart(const std::string& what, std::vector<SupervisorEvent>& events) {
    const auto now = Clock::now();
    while (!recent_restarts.empty() && now - recent_restarts.front() > options.window) recent_restarts.pop_front();
    recent_restarts.push_back(now);
    events.back().restarts_in_window = static_cast<std::uint32_t>(recent_restarts.size());
    if (recent_restarts.size() <= options.max_restarts) return true;
    escalate(what + ": " + std::to_string(recent_restarts.size()) + " restarts within " +
                 std::to_string(options.window.count()) + " ms exceed the limit of " + std::to_string(options.max_restarts),
             events);
    return false;
  }

  /// Failed actors of pool child `c`, handled inside the pool. Caller holds `mutex`.
  /// Returns the actors restarted, or the escalation.
  Result<std::uint32_t> check_actors(Child& c, std::vector<SupervisorEvent>& events, bool& escalated_now) {
    std::uint32_t restarted = 0;
    std::set<std::uint32_t> done;  // indices restarted in this pass (their fault is gone)
    for (const ActorFault& f : c.handle.actor_faults()) {
      if (done.count(f.actor.index)) continue;
      const std::string name = actor_name(c, f.actor.index);
      events.push_back({SupervisorEvent::Kind::ChildFailed, name, "actor failed with code " + std::to_string(f.code), 0});
      if (c.spec.restart == RestartPolicy::Temporary) {
        if (auto d = c.handle.destroy_actor(f.actor); !d) {
          escalate("could not destroy failed actor " + name + ": " + d.error().message(), events);
          escalated_now = true;
          return *escalation;
        }
        events.push_back({SupervisorEvent::Kind::ChildRemoved, name, "restart policy: not restarted", 0});
        continue;
      }
      if (!count_restart("actor " + name + " failed (code " + std::to_string(f.code) + ")", events)) {
        escalated_now = true;
        return *escalation;
      }
      std::vector<ActorRef> which;
      for (const ActorRef& a : c.handle.actors()) {
        const bool pick = options.strategy == RestartStrategy::OneForAll ||
                          (options.strategy == RestartStrategy::OneForOne && a.index == f.actor.index) ||
                          (options.strategy == RestartStrategy::RestForOne && a.index >= f.actor.index);
        if (pick && !done.count(a.index)) which.push_back(a);
      }
      for (const ActorRef& a : which) {
        auto r = c.handle.restart_actor(a);
        if (!r) {
          escalate("could not restart actor " + actor_name(c, a.index) + ": " + r.error().message(), events);
          escalated_now = true;
          return *escalation;
        }
        done.insert(a.index);
        ++total_restarts;
        ++restarted;
        events.push_back({SupervisorEvent::Kind::ChildRestarted, actor_name(c, a.index),
                          "generation " + std::to_string(r->generation), 0});
      }
    }
    return restarted;
  }

  void stop_child(Child& c) noexcept {
    if (!c.handle.valid()) return;
    const KernelState s = c.handle.state();
    if (s != KernelState::Terminated && s != KernelState::Terminating) (void)c.handle.terminate(options.stop_timeout);
    c.handle = KernelHandle{};  // releases the kernel's slot and routes
  }

  /// Terminates the children at `which` (reverse start order) and launches them again (start
  /// order), then remakes their K2K routes. Senders whose peer came back at another address
  /// are restarted too. Caller holds `mutex`.
  Result<std::uint32_t> restart(std::set<std::size_t> which, std::vector<SupervisorEvent>& events) {
    std::uint32_t relaunched = 0;
    while (!which.empty()) {
      std::vector<std::uint32_t> old_slot(children.size(), ~0u);
      for (std::size_t i : which)
        if (children[i].handle.valid()) old_slot[i] = children[i].handle.slot();
      for (auto it = which.rbegin(); it != which.rend(); ++it) stop_child(children[*it]);
      for (std::size_t i : which) {
        auto h = launch(children[i].spec);
        if (!h) {
          return Error(h.error().code(), "supervisor could not restart child '" + children[i].spec.name + "': " +
                                             h.error().message());
        }
        children[i].handle = std::move(*h);
        ++children[i].generation;
        ++total_restarts;
        ++relaunched;
        events.push_back({SupervisorEvent::Kind::ChildRestarted, children[i].spec.name,
                          "generation " + std::to_string(children[i].generation), 0});
      }
      std::set<std::size_t> next;
      for (const auto& [from, to] : edges) {
        const std::ptrdiff_t f = index_of(from), t = index_of(to);
        if (f < 0 || t < 0) continue;
        const bool f_new = which.count(static_cast<std::size_t>(f)) != 0;
        const bool t_new = which.count(static_cast<std::size_t>(t)) != 0;
        if (!f_new && !t_new) continue;
        if (auto c = rt.connect(children[static_cast<std::size_t>(f)].handle, children[static_cast<std::size_t>(t)].handle); !c)
          return Error(c.error().code(), "supervisor could not reconnect '" + from + "' -> '" + to + "': " + c.error().message());
        // A sender that was not restarted addresses its peer by the old K2K address: fine
        // if the peer got it back, else the sender restarts too (next round).
        if (!f_new && t_new && children[static_cast<std::size_t>(t)].handle.slot() != old_slot[static_cast<std::size_t>(t)])
          next.insert(static_cast<std::size_t>(f));
      }
      which = std::move(next);
    }
    return relaunched;
  }

  void escalate(const std::string& why, std::vector<SupervisorEvent>& events) {
    for (auto it = children.rbegin(); it != children.rend(); ++it) stop_child(*it);
    children.clear();
    escalation = Error(ErrorCode::KernelFaulted, "supervisor escalated: " + why + "; every child was terminated");
    events.push_back({SupervisorEvent::Kind::Escalated, "", escalation->message(),
                      static_cast<std::uint32_t>(recent_restarts.size())});
  }

  /// One pass over the children. Caller holds `mutex`; events and the escalation (if it
  /// happened now) are returned for the callbacks.
  Result<std::uint32_t> check_locked(std::vector<SupervisorEvent>& events, bool& escalated_now) {
    if (escalation) return *escalation;
    std::uint32_t restarted = 0;
    for (std::size_t i = 0; i < children.size(); ++i) {
      Child& c = children[i];
      if (c.handle.valid() && c.spec.options.actor_slots != 0 && c.handle.status().state != KernelState::Terminated) {
        auto r = check_actors(c, events, escalated_now);
        if (!r) return r;
        restarted += *r;
        continue;
      }
      if (!c.handle.valid() || c.handle.status().state != KernelState::Terminated) continue;
      const bool faulted = c.handle.status().last_error != DeviceError::None;
      auto waited = c.handle.wait(options.stop_timeout);  // joins the loop that has left
      std::string reason = faulted ? (waited ? std::string("faulted") : waited.error().message()) : "stopped by itself";
      events.push_back({SupervisorEvent::Kind::ChildFailed, c.spec.name, reason, 0});
      if (c.spec.restart == RestartPolicy::Temporary || (c.spec.restart == RestartPolicy::Transient && !faulted)) {
        const std::string name = c.spec.name;
        stop_child(c);
        children.erase(children.begin() + static_cast<std::ptrdiff_t>(i));
        edges.erase(std::remove_if(edges.begin(), edges.end(),
                                   [&](const auto& e) { return e.first == name || e.second == name; }),
                    edges.end());
        events.push_back({SupervisorEvent::Kind::ChildRemoved, name, "restart policy: not restarted", 0});
        --i;
        continue;
      }
      if (!count_restart("child '" + c.spec.name + "' failed (" + reason + ")", events)) {
        escalated_now = true;
        return *escalation;
      }
      std::set<std::size_t> which;
      switch (options.strategy) {
        case RestartStrategy::OneForOne: which = {i}; break;
        case RestartStrategy::OneForAll:
          for (std::size_t j = 0; j < children.size(); ++j) which.insert(j);
          break;
        case RestartStrategy::RestForOne:
          for (std::size_t j = i; j < children.size(); ++j) which.insert(j);
          break;
      }
      auto r = restart(which, events);
      if (!r) {
        escalate(r.error().message(), events);
        escalated_now = true;
        return *escalation;
      }
      restarted += *r;
    }
    return restarted;
  }

  Result<std::uint32_t> check() {
    std::vector<SupervisorEvent> events;
    bool escalated_now = false;
    Result<std::uint32_t> r = std::uint32_t{0};
    std::vector<std::function<void(const SupervisorEvent&)>> ev_cbs;
    std::vector<std::function<void(const Error&)>> esc_cbs;
    {
      std::lock_guard lock(mutex);
      r = check_locked(events, escalated_now);
      ev_cbs = event_callbacks;
      esc_cbs = escalate_callbacks;
    }
    for (const auto& e : events)
      for (auto& cb : ev_cbs) cb(e);
    if (escalated_now)
      for (auto& cb : esc_cbs) cb(r.error());
    return r;
  }

  void monitor_loop() {
    std::unique_lock lock(monitor_mutex);
    while (!monitor_stop) {
      lock.unlock();
      const bool done = !check().ok();
      lock.lock();
      if (done) return;  // escalated: nothing left to watch
      monitor_cv.wait_for(lock, options.poll_interval, [&] { return monitor_stop; });
    }
  }
};

Supervisor::Supervisor(RingKernel& runtime, SupervisorOptions options)
    : impl_(std::make_unique<Impl>(runtime, options)) {}

Supervisor::~Supervisor() {
  stop_monitor();
  std::lock_guard lock(impl_->mutex);
  for (auto it = impl_->children.rbegin(); it != impl_->children.rend(); ++it) impl_->stop_child(*it);
}

Result<void> Supervisor::add_child(ChildSpec spec) {
  if (auto ok = validate_topic_name(spec.name); !ok)
    return Error(ErrorCode::InvalidArgument, "child name: " + ok.error().message());
  std::lock_guard lock(impl_->mutex);
  if (impl_->escalation) return Error(ErrorCode::InvalidState, impl_->escalation->message());
  if (impl_->index_of(spec.name) >= 0)
    return Error(ErrorCode::InvalidArgument, "a child named '" + spec.name + "' already exists");
  auto h = impl_->launch(spec);
  if (!h) return h.error();
  impl_->children.push_back(Impl::Child{std::move(spec), std::move(*h), 1});
  return {};
}

Result<void> Supervisor::remove_child(std::string_view name) {
  std::lock_guard lock(impl_->mutex);
  const std::ptrdiff_t i = impl_->index_of(name);
  if (i < 0) return Impl::unknown(name);
  impl_->stop_child(impl_->children[static_cast<std::size_t>(i)]);
  impl_->children.erase(impl_->children.begin() + i);
  auto& e = impl_->edges;
  e.erase(std::remove_if(e.begin(), e.end(), [&](const auto& p) { return p.first == name || p.second == name; }), e.end());
  return {};
}

Result<void> Supervisor::connect(std::string_view from, std::string_view to) {
  std::lock_guard lock(impl_->mutex);
  const std::ptrdiff_t f = impl_->index_of(from), t = impl_->index_of(to);
  if (f < 0) return Impl::unknown(from);
  if (t < 0) return Impl::unknown(to);
  if (auto c = impl_->rt.connect(impl_->children[static_cast<std::size_t>(f)].handle,
                                 impl_->children[static_cast<std::size_t>(t)].handle);
      !c)
    return c;
  impl_->edges.emplace_back(std::string(from), std::string(to));
  return {};
}

Result<std::uint32_t> Supervisor::check() { return impl_->check(); }

Result<void> Supervisor::start_monitor() {
  std::lock_guard lock(impl_->monitor_mutex);
  if (impl_->monitor.joinable()) return Error(ErrorCode::InvalidState, "the supervisor's monitor is already running");
  impl_->monitor_stop = false;
  try {
    impl_->monitor = std::thread([this] { impl_->monitor_loop(); });
  } catch (const std::system_error& e) {
    return Error(ErrorCode::BackendError, std::string("cannot start the monitor thread: ") + e.what(), e.code().value());
  }
  return {};
}

void Supervisor::stop_monitor() {
  std::thread t;
  {
    std::lock_guard lock(impl_->monitor_mutex);
    impl_->monitor_stop = true;
    t = std::move(impl_->monitor);
  }
  impl_->monitor_cv.notify_all();
  if (t.joinable()) t.join();
}

void Supervisor::on_event(std::function<void(const SupervisorEvent&)> callback) {
  std::lock_guard lock(impl_->mutex);
  impl_->event_callbacks.push_back(std::move(callback));
}

void Supervisor::on_escalate(std::function<void(const Error&)> callback) {
  std::lock_guard lock(impl_->mutex);
  impl_->escalate_callbacks.push_back(std::move(callback));
}

bool Supervisor::escalated() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->escalation.has_value();
}

std::optional<Error> Supervisor::escalation() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->escalation;
}

Result<std::vector<std::string>> Supervisor::lookup(std::string_view pattern) const {
  auto p = TopicPattern::parse(pattern);
  if (!p) return p.error();
  std::vector<std::string> out;
  std::lock_guard lock(impl_->mutex);
  for (const auto& c : impl_->children)
    if (p->matches(c.spec.name)) out.push_back(c.spec.name);
  std::sort(out.begin(), out.end());
  return out;
}

bool Supervisor::contains(std::string_view name) const {
  std::lock_guard lock(impl_->mutex);
  return impl_->index_of(name) >= 0;
}

Result<void> Supervisor::visit(std::string_view name, const std::function<void(KernelHandle&)>& fn) {
  std::lock_guard lock(impl_->mutex);
  const std::ptrdiff_t i = impl_->index_of(name);
  if (i < 0) return Impl::unknown(name);
  fn(impl_->children[static_cast<std::size_t>(i)].handle);
  return {};
}

Result<std::uint32_t> Supervisor::slot(std::string_view name) const {
  std::lock_guard lock(impl_->mutex);
  const std::ptrdiff_t i = impl_->index_of(name);
  if (i < 0) return Impl::unknown(name);
  return impl_->children[static_cast<std::size_t>(i)].handle.slot();
}

Result<std::uint64_t> Supervisor::generation(std::string_view name) const {
  std::lock_guard lock(impl_->mutex);
  const std::ptrdiff_t i = impl_->index_of(name);
  if (i < 0) return Impl::unknown(name);
  return impl_->children[static_cast<std::size_t>(i)].generation;
}

std::uint64_t Supervisor::total_restarts() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->total_restarts;
}

}  // namespace ringkernel
