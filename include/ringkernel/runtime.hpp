// ringkernel/runtime.hpp — the runtime API: RingKernel (facade), its builder, launch
// options, kernel handles, lifecycle states, and the RingKernelRuntime interface each
// backend implements.
//
// Lifecycle:  Created -> Launched -> Active <-> Deactivated -> Terminating -> Terminated
// (launch() returns a Launched kernel, or an Active one with auto_activate). Any other
// transition is ErrorCode::InvalidState. terminate() is allowed from every live state.
//
// Threading: a KernelHandle may be used from any thread. Sends from several threads are
// serialised by a spin lock on the handle's producer (uncontended cost: one CAS); receives
// likewise on the consumer. For the highest rate use the batch calls from one thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ringkernel/control.hpp"
#include "ringkernel/error.hpp"
#include "ringkernel/hlc.hpp"
#include "ringkernel/memory.hpp"
#include "ringkernel/message.hpp"
#include "ringkernel/queue.hpp"
#include "ringkernel/telemetry.hpp"
#include "ringkernel/types.hpp"

namespace ringkernel {

class Broker;  // ringkernel/pubsub.hpp

using namespace std::chrono_literals;
using Duration = std::chrono::nanoseconds;

enum class Backend : std::uint8_t {
  Auto,    ///< CUDA if a device and a CUDA build of the kernel exist, else Vulkan, else CPU
  Cpu,     ///< always available
  Cuda,    ///< NVIDIA GPUs (built when the CUDA toolkit is found)
  Vulkan,  ///< any Vulkan 1.2 compute device
  Metal,   ///< not supported by this C++ library: always unavailable, with the reason
};
const char* to_string(Backend b) noexcept;

enum class KernelState : std::uint8_t { Created, Launched, Active, Deactivated, Terminating, Terminated };
const char* to_string(KernelState s) noexcept;

/// Where K2K messages arriving at a kernel go.
enum class K2KDelivery : std::uint8_t {
  Handler,  ///< each inbound K2K message of the kernel's request type invokes the handler
  Pull,     ///< kept in the K2K inbox; the handler pulls them with ctx.k2k_try_receive
};

/// Options of one launch (defaults as in the seed).
struct LaunchOptions {
  KernelMode mode = KernelMode::Actor;
  std::uint32_t grid_size = 1;              ///< blocks (parallel mode: lanes of work)
  std::uint32_t block_size = 256;           ///< threads per block
  std::uint32_t input_queue_capacity = 1024;   ///< host->kernel slots (power of two)
  std::uint32_t output_queue_capacity = 1024;  ///< kernel->host slots (power of two)
  std::uint32_t shared_memory_size = 0;     ///< bytes of block scratch (ctx.shared_memory())
  bool auto_activate = true;
  bool cooperative = false;                 ///< CUDA: cooperative launch (grid.sync allowed)
  bool enable_k2k = false;                  ///< the kernel may send/receive K2K messages
  std::uint64_t tenant_id = 0;              ///< K2K sends across tenants are rejected
  K2KDelivery k2k_delivery = K2KDelivery::Handler;
  std::uint32_t k2k_queue_capacity = 1024;  ///< per-route ring capacity
  /// 0: the kernel is one actor with one State. N > 0: an actor pool — the launch hosts up
  /// to N actors, each with a State of its own, created, restarted and destroyed while the
  /// kernel runs (KernelHandle::spawn_actor ...). The Request type then needs a
  /// `std::uint32_t actor` field: each message goes to the actor it names. Actor mode only.
  std::uint32_t actor_slots = 0;
  std::string kernel_id;                    ///< handle id; empty = the registered name
  /// CPU backend: kernels launched with the same non-empty name share one OS thread, which
  /// runs a loop step of each in turn (many actors on few cores; K2K between them stays on
  /// one core). Empty: a thread of its own. A handler that waits for another kernel of its
  /// worker (a pull loop, a retry on a full route to it) never returns: it holds the thread.
  /// GPU backends ignore it.
  std::string cpu_worker;
  /// CPU backend: once the host sends a stream (messages found in consecutive looks at the
  /// input ring, none filling a batch), the kernel waits this long before it looks again,
  /// so that the messages sent meanwhile cost one transfer of the ring's tail between the
  /// two cores rather than one each. A message that is not part of a stream is not held;
  /// a streamed one may wait up to this long. 0: never hold. GPU backends ignore it.
  Duration cpu_stream_hold = std::chrono::microseconds(1);
};

/// Unique kernel identifier (the name given at launch).
struct KernelId {
  std::string value;
  friend bool operator==(const KernelId&, const KernelId&) = default;
  const std::string& str() const noexcept { return value; }
};

/// State plus counters of one kernel.
struct KernelStatus {
  KernelId id;
  KernelState state = KernelState::Created;
  Backend backend = Backend::Cpu;
  KernelMode mode = KernelMode::Actor;
  std::uint64_t messages_processed = 0;
  std::uint64_t messages_dropped = 0;
  std::uint64_t input_depth = 0;
  std::uint64_t output_depth = 0;
  DeviceError last_error = DeviceError::None;
  HlcTimestamp hlc{};
};

/// Everything measurable about one kernel.
struct KernelMetrics {
  TelemetrySnapshot telemetry;
  QueueStats input;
  QueueStats output;
  std::uint64_t invalid_messages_rejected = 0;  ///< send_bytes() inputs refused
  std::uint64_t k2k_dead_letters = 0;
  std::uint64_t k2k_tenant_rejections = 0;
};

/// One actor of an actor pool (LaunchOptions::actor_slots): its index — what messages put
/// in their Request's `actor` field — and the generation of that index (every spawn and
/// restart makes a new one; a stale ActorRef is refused).
struct ActorRef {
  std::uint32_t index = 0;
  std::uint32_t generation = 0;
  friend bool operator==(const ActorRef&, const ActorRef&) = default;
};

/// An actor of a pool whose handler called ctx.fail(code): the actor alone stopped (the
/// kernel and the pool's other actors run on); messages for it are counted dead letters
/// until restart_actor() or destroy_actor().
struct ActorFault {
  ActorRef actor;
  std::uint32_t code = 0;  ///< the code given to ctx.fail (DeviceError::HandlerFault for 0)
};

namespace detail {

/// Asymmetric barriers (Linux membarrier, private expedited): heavy_barrier() returns only
/// after every other running thread of the process has passed a full memory barrier. A
/// Dekker-style pair can then put the full barrier on its rare side only (a thread about to
/// sleep, a lock taken from another thread) and a compiler barrier on its frequent side (a
/// send). Registered once per process; off where the kernel or a seccomp filter refuses it,
/// or when RINGKERNEL_ASYMMETRIC_BARRIERS=0. Callers keep the symmetric form when it is off.
bool asymmetric_barriers() noexcept;
/// Requires asymmetric_barriers(). Costs a system call (and IPIs to the CPUs running the
/// process's other threads): a few microseconds.
void heavy_barrier() noexcept;

/// A one-word futex-style doorbell: the sleeper re-checks its condition after announcing
/// itself, the ringer rings only when someone announced (Dekker-style). With asymmetric
/// barriers the ringer's side is a compiler barrier and the sleeper runs heavy_barrier()
/// before re-checking; otherwise both sides issue a seq_cst fence. A doorbell built with
/// `always_fence` keeps the ringer's fence in every case: the Vulkan backend rings one to
/// drain write-combining buffers into BAR-mapped rings.
class Doorbell {
 public:
  explicit Doorbell(bool always_fence = false) noexcept : light_ring_(!always_fence && asymmetric_barriers()) {}
  /// Ringer side: call after publishing work.
  void ring() noexcept {
    if (light_ring_)
      std::atomic_signal_fence(std::memory_order_seq_cst);  // the sleeper's heavy_barrier() is the other half
    else
      std::atomic_thread_fence(std::memory_order_seq_cst);  // pairs with wait()'s fence
    if (sleepers_.load(std::memory_order_relaxed) != 0) wake();
  }
  /// Sleeper side: returns when `ready()` holds, the doorbell rang, or timeout passed.
  template <class Ready>
  void wait(Ready&& ready, Duration timeout) {
    sleepers_.fetch_add(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);  // pairs with ring()'s fence
    // Every ringer has now either published before its barrier (ready() sees the work) or
    // will load sleepers_ after it (and sees this sleeper).
    if (light_ring_) heavy_barrier();
    const std::uint32_t seq = seq_.load(std::memory_order_relaxed);
    if (!ready()) sleep(seq, timeout);
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
  }
  void wake() noexcept;

 private:
  void sleep(std::uint32_t seq, Duration timeout) noexcept;
  std::atomic<std::uint32_t> seq_{0};
  std::atomic<std::uint32_t> sleepers_{0};
  const bool light_ring_;
};

/// Test-and-test-and-set spin lock.
class SpinLock {
 public:
  void lock() noexcept {
    while (flag_.exchange(true, std::memory_order_acquire))
      while (flag_.load(std::memory_order_relaxed)) {
      }
  }
  void unlock() noexcept { flag_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> flag_{false};
};

/// The lock of a kernel handle's producer (and of its consumer): biased towards the first
/// thread that takes it. Almost every program sends to a kernel from one thread, and an
/// uncontended exchange is a full barrier: it waits for the previous send's stores to reach
/// the kernel's core (measured: single-message sends on the CPU backend ~1.4x faster
/// without it). The owner takes the lock with plain stores and loads; the first other thread
/// that wants it revokes the bias for good (heavy_barrier(), then it waits for the owner to
/// leave), and from then on it is the spin lock. Without asymmetric barriers there is no
/// bias.
class BiasedLock {
 public:
  explicit BiasedLock(bool allow_bias = asymmetric_barriers()) noexcept : allow_bias_(allow_bias) {}
  void lock() noexcept {
    if (owner_.load(std::memory_order_relaxed) == token()) {
      busy_.store(1, std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);  // the revoker's heavy_barrier() is the other half
      if (revoked_.load(std::memory_order_relaxed) == 0) {
        by_bias_ = true;
        return;
      }
      busy_.store(0, std::memory_order_release);
    }
    lock_slow();
  }
  void unlock() noexcept {
    if (by_bias_) {
      by_bias_ = false;
      busy_.store(0, std::memory_order_release);  // pairs with the revoker's acquire
    } else {
      flag_.unlock();
    }
  }
  /// Whether the calling thread holds the bias (tests).
  bool biased_to_caller() const noexcept {
    return owner_.load(std::memory_order_relaxed) == token() && revoked_.load(std::memory_order_relaxed) == 0;
  }

 private:
  static const void* token() noexcept {
    static thread_local const char t = 0;
    return &t;
  }
  void lock_slow() noexcept;
  std::atomic<const void*> owner_{nullptr};
  std::atomic<std::uint32_t> busy_{0};     // written by the owner only
  std::atomic<std::uint32_t> revoked_{0};  // 0 -> 1 once, under flag_
  bool by_bias_ = false;                   // the holder's: how it took the lock
  bool ever_biased_ = false;               // under flag_
  const bool allow_bias_;
  SpinLock flag_;
};

/// Actor pool commands a backend carries out inside the running kernel.
enum class ActorOp : std::uint32_t { Create = 1, Restart = 2, Destroy = 3 };

/// The per-kernel operations a backend implements (not on the message path).
class KernelBackend {
 public:
  virtual ~KernelBackend() = default;
  /// Makes the kernel run (persistent loop started, state initialised).
  virtual Result<void> start() = 0;
  /// Asks the loop to leave; returns once it has, or Timeout.
  virtual Result<void> stop(Duration timeout) = 0;
  /// Called while the host waits on a queue: an error if the kernel died.
  virtual Result<void> check_health() = 0;
  /// K2K counters of this kernel as a sender: dead letters and cross-tenant rejections.
  virtual void k2k_counters(std::uint64_t& dead_letters, std::uint64_t& tenant_rejections) const noexcept = 0;
  /// Actor pools: hands `op` on actor `index` to the running kernel (Create/Restart: a
  /// fresh State; Destroy: its messages become dead letters) and returns the command's
  /// sequence number without waiting; KernelCore waits for actor_command_done(seq).
  virtual Result<std::uint64_t> post_actor_command(ActorOp op, std::uint32_t index) {
    (void)op, (void)index;
    return Error(ErrorCode::NotImplemented, "this backend has no actor pools");
  }
  /// Whether the kernel has carried out command `seq` (and every earlier one).
  virtual bool actor_command_done(std::uint64_t seq) const noexcept {
    (void)seq;
    return true;
  }
  /// Called after the host changed a ControlBlock word the kernel polls (is_active,
  /// should_terminate), so a backend that reads those words only on a signal learns of it.
  virtual void control_changed() noexcept {}
};

class RuntimeCore;

/// Host-side state of one launched kernel. Owned by its KernelHandle.
class KernelCore {
 public:
  KernelCore() = default;
  KernelCore(const KernelCore&) = delete;
  KernelCore& operator=(const KernelCore&) = delete;
  ~KernelCore();

  // -- identity and description (constant after launch) --
  KernelId id;
  std::string registered_name;
  Backend backend = Backend::Cpu;
  LaunchOptions options;
  std::uint32_t slot = 0;  ///< numeric kernel id (K2K address)
  TypeId request_type = 0, response_type = 0;
  std::uint32_t request_size = 0, response_size = 0;

  // -- shared with the kernel --
  RingView input{};
  RingView output{};
  ControlBlock* control = nullptr;
  TelemetryBuffer* telemetry = nullptr;
  Doorbell* kernel_doorbell = nullptr;  ///< CPU backend: wakes a parked kernel
  Doorbell* host_doorbell = nullptr;    ///< CPU backend: the kernel rings it after publishing
  /// CPU backend: the CPU the kernel's worker thread last ran on (-1: not known). A host
  /// thread waiting for the kernel on that same CPU yields instead of spinning.
  const std::atomic<int>* runner_cpu = nullptr;

  // -- host endpoints: the sending and the receiving thread each write only their own
  // 128-byte group (a producer thread and a consumer thread that poll try_receive would
  // otherwise take each other's cache line on every call) --
  alignas(kIndexAlign) BiasedLock send_lock;
  RingProducer<> producer;
  std::uint32_t send_checks = 0;  ///< send_lock: calls since has_terminated was last read
  alignas(kIndexAlign) SpinLock recv_lock;  // unbiased: measured, a bias here cost ping-pong p99 ~30 ns
  RingConsumer<> consumer;
  std::uint32_t recv_checks = 0;  ///< recv_lock: calls since has_terminated was last read
  std::deque<std::vector<std::byte>> stash;  ///< responses set aside by call(); recv_lock
  /// The CPU of a host thread that waits for this kernel while sharing the kernel's CPU
  /// (-1: none). The CPU backend's worker yields to it instead of spinning.
  std::atomic<int> waiter_cpu{-1};
  /// The output ring lives in memory the host reads uncached (a GPU's BAR): slots are first
  /// copied into `rx_scratch` (one slot, sized by the backend) with streaming loads, which
  /// fetch a 64-byte line per bus read instead of one read per field.
  bool output_uncached = false;
  /// The input ring lives in write-combining memory (a BAR mapping): the host producer
  /// fences its slot stores before publishing.
  bool input_write_combining = false;
  /// The input ring's consumer reads the express line (queue.hpp, namespace express): a
  /// single send also writes its message there. Set by the backend before the first send.
  bool input_express = false;
  /// The kernel also writes each response of an actor to the output ring's express line:
  /// a single receive may take it from there before the tail announces it (the slot is
  /// released once the tail arrives: express_taken). Set by the backend before launch.
  bool output_express = false;
  std::uint64_t output_express_node = 0;  ///< HLC node id of the kernel's stamps (the line omits it)
  bool express_taken = false;             ///< recv_lock: the response at the head came from the line
  std::vector<std::byte> rx_scratch;
  /// The control block lives in memory the host reads across a bus (a BAR mapping, about a
  /// microsecond per read): the message paths then read ControlBlock::has_terminated on
  /// every 64th call and rely on what they saw in between (a kernel that stopped is noticed
  /// within 64 calls, or at once by the blocking calls' health checks).
  bool control_uncached = false;
  std::atomic<bool> terminated_seen{false};  ///< has_terminated was seen set (it stays set)

  alignas(kIndexAlign) std::atomic<KernelState> state{KernelState::Created};
  std::atomic<std::uint64_t> invalid_rejected{0};
  // -- actor pool (options.actor_slots > 0) --
  std::mutex actor_mutex;
  std::vector<std::uint32_t> actor_generation;  ///< per index: 0 = free, else the live generation
  /// Per index, written by the kernel: the code of the actor's failure, 0 = none (the
  /// kernel clears it when it carries out a create / restart / destroy). Backend memory.
  const std::uint32_t* actor_faults = nullptr;
  std::uint32_t actor_generations = 0;          ///< generations handed out so far
  Result<ActorRef> actor_op(ActorOp op, ActorRef ref, Duration timeout);
  std::mutex lifecycle_mutex;
  std::unique_ptr<KernelBackend> impl;
  RuntimeCore* runtime = nullptr;  ///< null once the runtime has shut down
  HlcClock* host_clock = nullptr;  ///< the runtime's clock; null once the runtime has shut down
  Broker* broker = nullptr;  ///< the runtime's broker: where ctx.publish() goes (set before start)
  /// Run first when the core is destroyed, before any of its memory goes: what holds a
  /// pointer to it on another thread (a Pipe's relay) stops there. Guarded by hooks_mutex.
  std::mutex hooks_mutex;
  std::vector<std::function<void()>> on_destroy;

  /// Whether the kernel has left its loop. `checks` is the caller's counter (see
  /// control_uncached): send_checks / recv_checks under their locks, or a local one.
  bool kernel_terminated(std::uint32_t& checks) noexcept;
  /// terminated_seen, or (control block in ordinary memory) a fresh read.
  bool kernel_terminated_now() const noexcept;
  /// What a message call returns once the kernel stopped: Faulted or Closed.
  Status stopped_status() const noexcept;
  /// Output slot `i` past the consumer's position (of those available() reported),
  /// readable with plain loads: in place, or (output_uncached) copied into rx_scratch with
  /// streaming loads first. Valid until the next call (recv_lock held).
  const std::byte* read_output_slot(std::uint32_t i = 0) noexcept;

  // -- data path (non-template parts live in src/core/kernel.cpp) --
  Status try_send_raw(TypeId type, const void* payload, std::uint32_t size, std::uint64_t corr,
                      Priority prio) noexcept;
  std::size_t try_send_batch_raw(TypeId type, const std::byte* payloads, std::uint32_t size,
                                 std::size_t count) noexcept;
  /// Copies a single send into the input ring's express line (input_express; send_lock held).
  void write_express(const Envelope& env, const void* payload, std::uint32_t size) noexcept;
  /// recv_lock held, the ring looked empty: the response at the head from the output
  /// express line, if the line holds all of it (response_size bytes into `payload`); the
  /// host clock observes its stamp, as for a response read from its slot.
  bool take_express(Envelope& env, void* payload) noexcept;
  /// recv_lock held: releases the slot of a response taken from the express line once the
  /// tail announces it. False while it has not: nothing else may be read before it.
  bool settle_express() noexcept;
  /// Waits up to `limit` for settle_express (queue figures count the taken response).
  void settle_express_for(Duration limit) noexcept;
  Status try_receive_raw(TypeId type, void* out, std::uint32_t size, Envelope* env) noexcept;
  std::size_t try_receive_batch_raw(TypeId type, std::byte* out, std::uint32_t size, std::size_t count) noexcept;
  /// Checks a send is allowed (state, type, size); Ok or the error.
  Result<void> check_send(TypeId type, std::uint32_t size) const;
  Result<void> check_receive(TypeId type, std::uint32_t size) const;
  Result<void> wait_send(TypeId type, const void* payload, std::uint32_t size, std::uint64_t corr,
                         Priority prio, Duration timeout);
  Result<void> wait_receive(TypeId type, void* out, std::uint32_t size, Duration timeout, Envelope* env);
  Result<std::size_t> wait_send_batch(TypeId type, const std::byte* payloads, std::uint32_t size,
                                      std::size_t count, Duration timeout);
  Result<std::size_t> wait_receive_batch(TypeId type, std::byte* out, std::uint32_t size, std::size_t count,
                                         Duration timeout);
  Result<void> call_raw(TypeId req_type, const void* req, std::uint32_t req_size, TypeId resp_type,
                        void* resp, std::uint32_t resp_size, Duration timeout);
  Result<void> send_bytes(std::span<const std::byte> bytes, Duration timeout);
  /// Error describing why the kernel cannot take messages now (terminated, faulted).
  Error dead_error() const;
};

}  // namespace detail

/// A message from a kernel together with what its envelope says about it
/// (KernelHandle::receive_message / try_receive of a Received<T>).
template <class T>
struct Received {
  T message{};
  HlcTimestamp timestamp{};        ///< the kernel's HLC stamp (the host clock has merged it)
  CorrelationId correlation{};     ///< the request's correlation id (0 for a plain send)
  std::uint32_t source = 0;        ///< the kernel that wrote it: its slot() + 1
  Priority priority = Priority::Normal;
};

/// Handle to a launched kernel: the owner of it. Destroying the handle terminates the
/// kernel (bounded by 5 s; a failure is ignored and logged to stderr). Move-only.
class KernelHandle {
 public:
  static constexpr Duration kDefaultTimeout = std::chrono::seconds(5);

  KernelHandle() = default;
  explicit KernelHandle(std::unique_ptr<detail::KernelCore> core) noexcept : core_(std::move(core)) {}
  KernelHandle(KernelHandle&&) noexcept = default;
  KernelHandle& operator=(KernelHandle&&) noexcept;
  ~KernelHandle();

  bool valid() const noexcept { return core_ != nullptr; }
  const KernelId& id() const noexcept { return core_->id; }
  /// Numeric id: the K2K address of this kernel.
  std::uint32_t slot() const noexcept { return core_->slot; }
  Backend backend() const noexcept { return core_->backend; }
  KernelState state() const noexcept { return core_->state.load(std::memory_order_acquire); }
  const LaunchOptions& options() const noexcept { return core_->options; }

  // -- lifecycle ------------------------------------------------------------------------
  Result<void> activate();
  Result<void> deactivate();
  /// Stops the kernel and waits (bounded) for it; queued messages are discarded.
  Result<void> terminate(Duration timeout = kDefaultTimeout);
  /// Waits until the kernel has terminated (by terminate() elsewhere, or by itself).
  Result<void> wait(Duration timeout = kDefaultTimeout);
  KernelStatus status() const;
  KernelMetrics metrics() const;

  // -- actor pool (LaunchOptions::actor_slots > 0) ----------------------------------------
  // Each returns once the running kernel has carried the command out. Host messages sent
  // before the call are handled before the command, those sent after it returns after it
  // (a restart never overtakes a message). Messages naming an index with no live actor are
  // dropped and counted (TelemetryBuffer::messages_dropped), never handled.
  /// A new actor in a free index, with the handler's initial State. Errors: InvalidState
  /// (not an actor pool, or every index taken), KernelTerminated / KernelFaulted, Timeout,
  /// NotImplemented (a backend without actor pools).
  Result<ActorRef> spawn_actor(Duration timeout = kDefaultTimeout) {
    return core_->actor_op(detail::ActorOp::Create, ActorRef{}, timeout);
  }
  /// The actor starts over with the initial State, under a new generation (returned).
  /// Errors: InvalidArgument (no live actor `a`: destroyed, or restarted since), and the
  /// errors of spawn_actor().
  Result<ActorRef> restart_actor(ActorRef a, Duration timeout = kDefaultTimeout) {
    return core_->actor_op(detail::ActorOp::Restart, a, timeout);
  }
  /// Ends actor `a`; its index becomes free. Errors: as restart_actor().
  Result<void> destroy_actor(ActorRef a, Duration timeout = kDefaultTimeout) {
    auto r = core_->actor_op(detail::ActorOp::Destroy, a, timeout);
    if (!r) return r.error();
    return {};
  }
  /// The actors, by index (a failed one included until it is restarted or destroyed).
  std::vector<ActorRef> actors() const;
  /// The actors that failed (ctx.fail in their handler), by index.
  std::vector<ActorFault> actor_faults() const;

  // -- sending --------------------------------------------------------------------------
  /// Never blocks: QueueFull is backpressure, nothing was written.
  template <RingMessage T>
  Status try_send(const T& msg) noexcept {
    return core_->try_send_raw(type_id_v<T>, &msg, sizeof(T), 0, Priority::Normal);
  }
  /// Waits up to `timeout` for room; errors: KernelTerminated, KernelFaulted,
  /// UnknownMessageType, PayloadTooLarge, QueueFull (timeout).
  template <RingMessage T>
  Result<void> send(const T& msg, Duration timeout = kDefaultTimeout) {
    return core_->wait_send(type_id_v<T>, &msg, sizeof(T), 0, Priority::Normal, timeout);
  }
  /// As many as fit now, published at once; returns how many were sent.
  template <RingMessage T>
  std::size_t try_send_batch(std::span<const T> msgs) noexcept {
    return core_->try_send_batch_raw(type_id_v<T>, reinterpret_cast<const std::byte*>(msgs.data()),
                                     sizeof(T), msgs.size());
  }
  /// All of `msgs`, waiting for room up to `timeout`; returns how many were sent.
  template <RingMessage T>
  Result<std::size_t> send_batch(std::span<const T> msgs, Duration timeout = kDefaultTimeout) {
    return core_->wait_send_batch(type_id_v<T>, reinterpret_cast<const std::byte*>(msgs.data()), sizeof(T),
                                  msgs.size(), timeout);
  }
  /// A serialized message (MessageHeader + payload), validated before it is queued.
  Result<void> send_bytes(std::span<const std::byte> bytes, Duration timeout = kDefaultTimeout) {
    return core_->send_bytes(bytes, timeout);
  }

  // -- receiving ------------------------------------------------------------------------
  template <RingMessage T>
  Status try_receive(T& out) noexcept {
    return core_->try_receive_raw(type_id_v<T>, &out, sizeof(T), nullptr);
  }
  /// Waits up to `timeout`; errors: Timeout, KernelFaulted, KernelTerminated (and nothing
  /// left to read), UnknownMessageType.
  template <RingMessage T>
  Result<T> receive(Duration timeout = kDefaultTimeout) {
    T out;
    auto r = core_->wait_receive(type_id_v<T>, &out, sizeof(T), timeout, nullptr);
    if (!r) return r.error();
    return out;
  }
  /// As try_receive / receive, with the message's HLC stamp, correlation id and sender.
  template <RingMessage T>
  Status try_receive(Received<T>& out) noexcept {
    Envelope env{};
    const Status s = core_->try_receive_raw(type_id_v<T>, &out.message, sizeof(T), &env);
    if (s == Status::Ok) fill_received(out, env);
    return s;
  }
  template <RingMessage T>
  Result<Received<T>> receive_message(Duration timeout = kDefaultTimeout) {
    Received<T> out;
    Envelope env{};
    auto r = core_->wait_receive(type_id_v<T>, &out.message, sizeof(T), timeout, &env);
    if (!r) return r.error();
    fill_received(out, env);
    return out;
  }
  template <RingMessage T>
  std::size_t try_receive_batch(std::span<T> out) noexcept {
    return core_->try_receive_batch_raw(type_id_v<T>, reinterpret_cast<std::byte*>(out.data()), sizeof(T),
                                        out.size());
  }
  /// Waits up to `timeout` for at least one message, then takes what is there (≤ size).
  template <RingMessage T>
  Result<std::size_t> receive_batch(std::span<T> out, Duration timeout = kDefaultTimeout) {
    return core_->wait_receive_batch(type_id_v<T>, reinterpret_cast<std::byte*>(out.data()), sizeof(T),
                                     out.size(), timeout);
  }

  /// Request/response: sends `req` with a fresh correlation id and waits for the response
  /// carrying it. Other responses that arrive meanwhile are kept for receive().
  template <RingMessage Resp, RingMessage Req>
  Result<Resp> call(const Req& req, Duration timeout = kDefaultTimeout) {
    Resp out;
    auto r = core_->call_raw(type_id_v<Req>, &req, sizeof(Req), type_id_v<Resp>, &out, sizeof(Resp), timeout);
    if (!r) return r.error();
    return out;
  }

  /// The host-side state (for backends and tools; not needed by applications).
  detail::KernelCore* core_ptr() const noexcept { return core_.get(); }

 private:
  template <class T>
  static void fill_received(Received<T>& out, const Envelope& env) noexcept {
    out.timestamp = env.timestamp;
    out.correlation = CorrelationId{env.correlation_id};
    out.source = env.source_kernel;
    out.priority = static_cast<Priority>(env.priority);
  }
  std::unique_ptr<detail::KernelCore> core_;
};

/// Backend-agnostic runtime: what each backend implements (the seed's RingKernelRuntime).
class RingKernelRuntime {
 public:
  virtual ~RingKernelRuntime() = default;
  virtual Backend backend() const noexcept = 0;
  /// Creates the backend part of a kernel (queues, state, persistent loop not yet running).
  virtual Result<std::unique_ptr<detail::KernelBackend>> create(detail::KernelCore& core) = 0;
  /// Creates the K2K route from -> to (both kernels of this runtime, enable_k2k, same tenant).
  virtual Result<void> connect(detail::KernelCore& from, detail::KernelCore& to) = 0;
  /// Forgets a kernel that is being destroyed (its routes, its directory entry).
  virtual void forget(detail::KernelCore& core) noexcept = 0;
  /// Human-readable description of the device ("CPU (2 threads)", "NVIDIA H100 …").
  virtual std::string device_name() const = 0;
  /// Bytes of device memory free now, where the backend can tell.
  virtual std::optional<std::uint64_t> free_memory() const { return std::nullopt; }
  /// An allocator of GpuBuffers on this runtime's device (ringkernel/memory.hpp).
  virtual Result<std::unique_ptr<DeviceMemory>> device_memory();
};

class RingKernelBuilder;

/// The runtime facade: owns a backend, launches kernels, connects K2K routes.
class RingKernel {
 public:
  static RingKernelBuilder builder();

  RingKernel(RingKernel&&) noexcept;
  RingKernel& operator=(RingKernel&&) noexcept;
  ~RingKernel();  ///< terminates every kernel still running

  /// The backend asked for. Auto stays Auto: it chooses per kernel at launch (the GPU for a
  /// kernel with a build for it, else the CPU); KernelHandle::backend() says which one a
  /// kernel runs on.
  Backend backend() const noexcept;
  /// The device this runtime runs on (its device_index); under Auto, the GPU it picks for
  /// kernels with a GPU build, and that the others run on the CPU.
  std::string device_name() const;

  /// Launches the kernel registered under `name`. Errors: UnknownKernel (with the list of
  /// registered names), BackendUnavailable (no build of that kernel for this backend),
  /// InvalidArgument (options), KernelExists (kernel_id in use), LaunchFailed.
  Result<KernelHandle> launch(std::string_view name, const LaunchOptions& options = {});

  /// Creates a K2K route from `from` to `to` (both launched with enable_k2k on this
  /// runtime). FIFO per route; capacity from the sender's k2k_queue_capacity.
  Result<void> connect(const KernelHandle& from, const KernelHandle& to);

  /// Ids of the kernels currently launched.
  std::vector<KernelId> kernels() const;
  /// Whether `kernel` was launched by this runtime.
  bool owns(const KernelHandle& kernel) const noexcept;
  /// Bytes of memory free on this runtime's device now (CUDA: cudaMemGetInfo; CPU: the
  /// available physical memory), or nothing where the backend cannot tell (Vulkan). Under
  /// Auto, the device Auto picks for GPU kernels.
  std::optional<std::uint64_t> free_memory() const;
  /// An allocator of GpuBuffers on this runtime's device (under Auto: the GPU Auto picks,
  /// else the CPU). CPU: host memory; CUDA: device memory; Vulkan: host-visible memory
  /// with a device address (device-local where the device maps it for the host).
  Result<std::unique_ptr<DeviceMemory>> device_memory();

  /// The runtime's host clock (stamps host sends, merges kernel stamps on receive).
  HlcClock& clock() noexcept;

  /// The runtime's publish/subscribe broker (ringkernel/pubsub.hpp): kernels of this
  /// runtime publish into it with ctx.publish(); it stamps host publishes with clock().
  Broker& broker() noexcept;

  /// Terminates every kernel (bounded by `timeout` each).
  Result<void> shutdown(Duration timeout = KernelHandle::kDefaultTimeout);

 private:
  friend class RingKernelBuilder;
  explicit RingKernel(std::unique_ptr<detail::RuntimeCore> core) noexcept;
  std::unique_ptr<detail::RuntimeCore> core_;
};

class RingKernelBuilder {
 public:
  RingKernelBuilder& backend(Backend b) noexcept { backend_ = b; return *this; }
  RingKernelBuilder& device_index(std::uint32_t i) noexcept { device_index_ = i; return *this; }
  /// HLC node id of the runtime's clock (default: derived from the process id).
  RingKernelBuilder& node_id(std::uint64_t id) noexcept { node_id_ = id; return *this; }
  RingKernelBuilder& max_clock_skew(std::chrono::microseconds s) noexcept { max_skew_ = s; return *this; }
  /// Creates the runtime. Backend::Auto picks CUDA, then Vulkan, then the CPU.
  Result<RingKernel> build();

 private:
  Backend backend_ = Backend::Auto;
  std::uint32_t device_index_ = 0;
  std::uint64_t node_id_ = 0;
  std::chrono::microseconds max_skew_{HlcClock::kDefaultMaxSkewUs};
};

}  // namespace ringkernel
