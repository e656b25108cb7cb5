// ringkernel/supervision.hpp — supervisors: named children with restart strategies and
// restart intensity limits, over kernels of one runtime.
//
//     Supervisor sup(runtime, {.strategy = RestartStrategy::OneForOne,
//                              .max_restarts = 3, .window = 5s});
//     sup.add_child({.name = "workers/0", .kernel = "worker"}).value();
//     sup.add_child({.name = "workers/1", .kernel = "worker"}).value();
//     sup.connect("workers/0", "workers/1").value();     // K2K route, recreated on restarts
//     sup.on_escalate([](const Error& e) { ... });
//     sup.start_monitor().value();                       // or call sup.check() yourself
//     sup.lookup("workers/*");                           // {"workers/0", "workers/1"}
//     sup.with_child("workers/0", [](KernelHandle& k) { return k.send(Job{...}); });
//
// A child "fails" when its kernel stops by itself: faulted (ctx.fail, a device error), or —
// for Permanent children — any exit (ctx.request_terminate). A restart terminates the
// kernel and launches the same registered kernel again with the same options, so it starts
// with fresh state (its initial_state). Which children restart is the strategy's choice:
//   OneForOne   the failed child only;
//   OneForAll   every child (stopped in reverse start order, started in start order);
//   RestForOne  the failed child and every child started after it.
// K2K routes made with connect() are made again for restarted children. A child that sends
// to a restarted peer over an older route keeps working when the peer gets its K2K address
// back; when it does not (another launch took the address meanwhile) the sender is restarted
// too, so that no kernel keeps a route to a dead address.
//
// Actor pools: a child launched with LaunchOptions::actor_slots is a pool, and its actors are
// supervised too. An actor fails when its handler calls ctx.fail (KernelHandle::
// actor_faults); the pool's kernel runs on. The strategy then applies inside the pool, in
// index order, without relaunching the kernel: OneForOne restarts the failed actor,
// OneForAll every actor of the pool, RestForOne the failed actor and those with higher
// indices (restart_actor: fresh State, new generation). A Temporary child's failed actor
// is destroyed instead. Each actor failure counts one restart towards the intensity limit.
// Events name an actor as "child[index]".
//
// Intensity: each failure handled counts one restart; more than max_restarts within
// `window` escalates: every child is terminated, the escalation callbacks run with an
// Error (ErrorCode::KernelFaulted) that names the last failure, and the supervisor refuses
// further work (check() and add_child() return that error).
//
// Threading: every member may be called from any thread; the monitor thread and check()
// take the supervisor's lock. Callbacks run on the thread that handled the failure, after
// the lock is released. Handles are owned by the supervisor and replaced by restarts: use
// them only inside with_child().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "ringkernel/error.hpp"
#include "ringkernel/runtime.hpp"

namespace ringkernel {

namespace detail {
template <class T>
struct is_result : std::false_type {};
template <class T>
struct is_result<Result<T>> : std::true_type {};
/// What with_child returns for a callable returning R: R itself when it is a Result.
template <class R>
using WithChildResult = std::conditional_t<is_result<R>::value, R, Result<R>>;
}  // namespace detail

enum class RestartStrategy : std::uint8_t { OneForOne, OneForAll, RestForOne };
const char* to_string(RestartStrategy s) noexcept;

/// When a child is restarted.
enum class RestartPolicy : std::uint8_t {
  Permanent,  ///< whenever it stops by itself
  Transient,  ///< only when it faulted (a clean request_terminate() ends it)
  Temporary,  ///< never: a stopped child is removed
};

struct ChildSpec {
  std::string name;     ///< registry name: levels separated by '/', no wildcards ("workers/3")
  std::string kernel;   ///< registered kernel name (RK_KERNEL)
  LaunchOptions options{};  ///< kernel_id is replaced by `name`
  RestartPolicy restart = RestartPolicy::Permanent;
  /// Actor pools (options.actor_slots > 0): actors spawned at every launch of the child
  /// (indices 0 .. actors - 1). See "Actor pools" above.
  std::uint32_t actors = 0;
};

struct SupervisorOptions {
  RestartStrategy strategy = RestartStrategy::OneForOne;
  std::uint32_t max_restarts = 3;                  ///< within `window`; one more escalates
  std::chrono::milliseconds window{5000};
  std::chrono::milliseconds poll_interval{2};      ///< of the monitor thread
  std::chrono::milliseconds stop_timeout{2000};    ///< per child, when terminating it
};

struct SupervisorEvent {
  enum class Kind : std::uint8_t { ChildFailed, ChildRestarted, ChildRemoved, Escalated };
  Kind kind = Kind::ChildFailed;
  std::string child;
  std::string reason;
  std::uint32_t restarts_in_window = 0;
};
const char* to_string(SupervisorEvent::Kind k) noexcept;

class Supervisor {
 public:
  /// The runtime must outlive the supervisor.
  explicit Supervisor(RingKernel& runtime, SupervisorOptions options = {});
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;
  ~Supervisor();  ///< stops the monitor, terminates the children (reverse start order)

  /// Launches the child. Errors: InvalidArgument (bad or duplicate name), InvalidState
  /// (escalated), and launch errors (UnknownKernel, ...).
  Result<void> add_child(ChildSpec spec);
  /// Terminates and forgets a child (not a failure). Errors: InvalidArgument (unknown name).
  Result<void> remove_child(std::string_view name);
  /// A K2K route from child `from` to child `to`, made now and after every restart of
  /// either. Both need LaunchOptions::enable_k2k.
  Result<void> connect(std::string_view from, std::string_view to);

  /// Looks at every child once and handles failures; returns how many children were
  /// restarted. Errors: the escalation (this call's or an earlier one).
  Result<std::uint32_t> check();
  /// A thread calling check() every poll_interval. Errors: InvalidState (running).
  Result<void> start_monitor();
  void stop_monitor();

  void on_event(std::function<void(const SupervisorEvent&)> callback);
  void on_escalate(std::function<void(const Error&)> callback);
  bool escalated() const;
  std::optional<Error> escalation() const;

  // -- the registry ---------------------------------------------------------------------
  /// Names of the children matching a topic-style pattern ("workers/*", "#"), sorted.
  /// Errors: InvalidArgument (malformed pattern).
  Result<std::vector<std::string>> lookup(std::string_view pattern) const;
  bool contains(std::string_view name) const;
  /// Runs fn(KernelHandle&) under the supervisor's lock (no restart can replace the handle
  /// meanwhile) and returns what fn returns, as a Result (a Result fn returns is passed
  /// through). Errors: InvalidArgument (unknown child).
  template <class F>
  auto with_child(std::string_view name, F&& fn) -> detail::WithChildResult<std::invoke_result_t<F, KernelHandle&>>;
  /// Current K2K address of a child (changes only if a restart gives it another).
  Result<std::uint32_t> slot(std::string_view name) const;
  /// 1 for the first incarnation, +1 per restart.
  Result<std::uint64_t> generation(std::string_view name) const;
  std::uint64_t total_restarts() const;

 private:
  struct Impl;
  // with_child's non-template part: fn runs with the lock held.
  Result<void> visit(std::string_view name, const std::function<void(KernelHandle&)>& fn);
  std::unique_ptr<Impl> impl_;
};

template <class F>
auto Supervisor::with_child(std::string_view name, F&& fn)
    -> detail::WithChildResult<std::invoke_result_t<F, KernelHandle&>> {
  using R = std::invoke_result_t<F, KernelHandle&>;
  if constexpr (std::is_void_v<R>) {
    return visit(name, [&](KernelHandle& k) { fn(k); });
  } else {
    std::optional<R> out;
    auto v = visit(name, [&](KernelHandle& k) { out.emplace(fn(k)); });
    if (!v) return v.error();
    return std::move(*out);
  }
}

}  // namespace ringkernel
