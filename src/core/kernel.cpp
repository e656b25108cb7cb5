// KernelCore data path and KernelHandle: the host side of every backend's queues.
#include <algorithm>
#include <cstdio>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <sched.h>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "ringkernel/runtime.hpp"
#include "backoff.hpp"
#include "runtime_core.hpp"

namespace ringkernel {

const char* to_string(Backend b) noexcept {
  switch (b) {
    case Backend::Auto: return "auto";
    case Backend::Cpu: return "cpu";
    case Backend::Cuda: return "cuda";
    case Backend::Vulkan: return "vulkan";
    case Backend::Metal: return "metal";
  }
  return "?";
}

const char* to_string(KernelState s) noexcept {
  switch (s) {
    case KernelState::Created: return "created";
    case KernelState::Launched: return "launched";
    case KernelState::Active: return "active";
    case KernelState::Deactivated: return "deactivated";
    case KernelState::Terminating: return "terminating";
    case KernelState::Terminated: return "terminated";
  }
  return "?";
}

namespace detail {

namespace {
bool accepts_messages(KernelState s) noexcept {
  return s == KernelState::Launched || s == KernelState::Active || s == KernelState::Deactivated;
}
constexpr Duration kHealthInterval = std::chrono::milliseconds(1);
constexpr std::uint8_t kSkipFlag = 1u << 7;  // parallel-mode slot without a response (cuda/device_kernel.hpp)

bool is_skip(const std::byte* cell) noexcept {
  return (static_cast<std::uint8_t>(cell[offsetof(Envelope, flags)]) & kSkipFlag) != 0;
}

/// Copies `bytes` (a multiple of 16, both 16-byte aligned) out of write-combining / uncached
/// memory with streaming loads (MOVNTDQA): plain loads would each make a bus round trip.
/// The widest load the CPU has and the source's alignment allow is used (64 bytes with
/// AVX-512, 32 with AVX2, else 16): a CPU that does not fill a whole line per bus read from
/// a narrower streaming load then makes fewer reads, and fewer loads wait in its window.
/// RINGKERNEL_UNCACHED_LOAD_BYTES=16|32|64 caps the width (for measurements). Streaming
/// load buffers are not snooped: call uncached_fence() after reading the ring's tail and
/// before the first copy, so no line is served from a buffer filled before the device
/// wrote it.
#if defined(__x86_64__)
void uncached_fence() noexcept { _mm_mfence(); }
__attribute__((target("sse4.1"))) void copy_uncached16(std::byte* dst, const std::byte* src, std::size_t bytes) noexcept {
  const auto* s = reinterpret_cast<const __m128i*>(src);
  auto* d = reinterpret_cast<__m128i*>(dst);
  for (std::size_t i = 0; i < bytes / 16; ++i) _mm_storeu_si128(d + i, _mm_stream_load_si128(const_cast<__m128i*>(s + i)));
}
__attribute__((target("avx2"))) void copy_uncached32(std::byte* dst, const std::byte* src, std::size_t bytes) noexcept {
  const auto* s = reinterpret_cast<const __m256i*>(src);
  auto* d = reinterpret_cast<__m256i*>(dst);
  for (std::size_t i = 0; i < bytes / 32; ++i) _mm256_storeu_si256(d + i, _mm256_stream_load_si256(s + i));
}
__attribute__((target("avx512f"))) void copy_uncached64(std::byte* dst, const std::byte* src, std::size_t bytes) noexcept {
  const auto* s = reinterpret_cast<const __m512i*>(src);
  for (std::size_t i = 0; i < bytes / 64; ++i)
    _mm512_storeu_si512(dst + i * 64, _mm512_stream_load_si512(const_cast<__m512i*>(s + i)));
}
/// The widest streaming load to use: what the CPU has, capped by the environment.
unsigned uncached_load_bytes() noexcept {
  static const unsigned width = [] {
    unsigned w = __builtin_cpu_supports("avx512f") ? 64u : __builtin_cpu_supports("avx2") ? 32u : 16u;
    if (const char* cap = std::getenv("RINGKERNEL_UNCACHED_LOAD_BYTES")) {
      const unsigned c = static_cast<unsigned>(std::strtoul(cap, nullptr, 10));
      if (c == 16 || c == 32 || c == 64) w = std::min(w, c);
    }
    return w;
  }();
  return width;
}
void copy_from_uncached(std::byte* dst, const std::byte* src, std::size_t bytes) noexcept {
  const unsigned w = uncached_load_bytes();
  const auto at = reinterpret_cast<std::uintptr_t>(src);
  if (w >= 64 && at % 64 == 0 && bytes % 64 == 0) return copy_uncached64(dst, src, bytes);
  if (w >= 32 && at % 32 == 0 && bytes % 32 == 0) return copy_uncached32(dst, src, bytes);
  copy_uncached16(dst, src, bytes);
}
#else
void uncached_fence() noexcept { std::atomic_thread_fence(std::memory_order_seq_cst); }
void copy_from_uncached(std::byte* dst, const std::byte* src, std::size_t bytes) noexcept { std::memcpy(dst, src, bytes); }
#endif

}  // namespace

KernelCore::~KernelCore() {
  std::vector<std::function<void()>> hooks;
  {
    std::lock_guard lock(hooks_mutex);
    hooks.swap(on_destroy);
  }
  for (auto& h : hooks) h();
  impl.reset();  // frees backend resources; the kernel has stopped (handle terminated it)
}

Error KernelCore::dead_error() const {
  const std::uint32_t err = load_acquire(&control->last_error);
  if (err != 0) {
    return Error(ErrorCode::KernelFaulted,
                 "kernel '" + id.value + "' stopped with device error " + std::to_string(err) +
                     "; terminate it and launch it again",
                 err);
  }
  return Error(ErrorCode::KernelTerminated, "kernel '" + id.value + "' is terminated; nothing was sent");
}

Result<ActorRef> KernelCore::actor_op(ActorOp op, ActorRef ref, Duration timeout) {
  if (options.actor_slots == 0)
    return Error(ErrorCode::InvalidState, "kernel '" + id.value + "' is not an actor pool (LaunchOptions::actor_slots is 0)");
  const KernelState s = state.load(std::memory_order_acquire);
  if (!accepts_messages(s) || kernel_terminated_now()) return dead_error();
  // One command at a time per kernel: the backends have one command word.
  std::lock_guard lock(actor_mutex);
  if (actor_generation.size() != options.actor_slots) actor_generation.assign(options.actor_slots, 0);
  std::uint32_t index = ref.index;
  if (op == ActorOp::Create) {
    auto it = std::find(actor_generation.begin(), actor_generation.end(), 0u);
    if (it == actor_generation.end())
      return Error(ErrorCode::InvalidState, "actor pool '" + id.value + "' is full: all " +
                                                std::to_string(options.actor_slots) + " actors are alive");
    index = static_cast<std::uint32_t>(it - actor_generation.begin());
  } else if (index >= actor_generation.size() || actor_generation[index] == 0 ||
             actor_generation[index] != ref.generation) {
    return Error(ErrorCode::InvalidArgument, "actor pool '" + id.value + "' has no live actor " + std::to_string(index) +
                                                 " of generation " + std::to_string(ref.generation) +
                                                 " (destroyed, or restarted since)");
  }
  // Spins until `done()`, checking the kernel's health every kHealthInterval; one deadline
  // covers both waits below. A command takes a few microseconds on any backend: the first
  // ~50 µs are spent spinning (a yield is a system call, and an acknowledgement that lands
  // during one waits for it), then the thread yields between checks.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto wait_for = [&](auto done, const char* what) -> Result<void> {
    std::chrono::steady_clock::time_point start{}, next_health{};  // at the first check, not before the first look
    bool yielding = false;
    for (std::uint32_t spins = 0; !done(); ++spins) {
      if ((spins & 255u) != 255u) continue;
      const auto now = std::chrono::steady_clock::now();
      if (spins == 255u) {
        start = now;
        next_health = now + kHealthInterval;
      }
      if (now >= next_health) {
        if (auto h = impl->check_health(); !h) return h.error();
        if (load_acquire(&control->has_terminated) != 0) return dead_error();
        next_health = now + kHealthInterval;
      }
      if (now >= deadline) return Error(ErrorCode::Timeout, "actor pool '" + id.value + "' " + what);
      yielding = yielding || now - start >= std::chrono::microseconds(50);
      if (yielding) std::this_thread::yield();
    }
    return {};
  };
  // Messages already sent are handled before the command (a restart never overtakes them):
  // wait until the kernel has consumed the input ring up to its current tail. An idle pool
  // passes at once; the backends take a command ahead of any message not yet consumed.
  const std::uint64_t sent = load_acquire(&input.indices->tail);
  if (auto r = wait_for([&] { return load_acquire(&input.indices->head) >= sent; },
                        "did not handle the messages sent before the actor command within the timeout; the command "
                        "was not sent");
      !r)
    return r.error();
  auto seq = impl->post_actor_command(op, index);
  if (!seq) return seq.error();
  if (auto r = wait_for([&] { return impl->actor_command_done(*seq); },
                        "did not carry out the actor command within the timeout (it may still do so)");
      !r)
    return r.error();
  if (op == ActorOp::Destroy) {
    actor_generation[index] = 0;
    return ActorRef{index, 0};
  }
  actor_generation[index] = ++actor_generations;
  return ActorRef{index, actor_generation[index]};
}

Result<void> KernelCore::check_send(TypeId type, std::uint32_t size) const {
  const KernelState s = state.load(std::memory_order_acquire);
  if (!accepts_messages(s) || kernel_terminated_now()) return dead_error();
  if (type != request_type) {
    return Error(ErrorCode::UnknownMessageType, "kernel '" + id.value + "' (" + registered_name +
                                                    ") does not accept this message type; it takes type id " +
                                                    std::to_string(request_type));
  }
  if (size != request_size || size + sizeof(Envelope) > input.slot_size) {
    return Error(ErrorCode::PayloadTooLarge, "message of " + std::to_string(size) +
                                                 " bytes does not fit the kernel's " +
                                                 std::to_string(input.slot_size) + "-byte slots");
  }
  return {};
}

Result<void> KernelCore::check_receive(TypeId type, std::uint32_t size) const {
  if (type != response_type || size != response_size) {
    return Error(ErrorCode::UnknownMessageType, "kernel '" + id.value + "' (" + registered_name +
                                                    ") does not send this message type; it sends type id " +
                                                    std::to_string(response_type));
  }
  return {};
}

bool KernelCore::kernel_terminated(std::uint32_t& checks) noexcept {
  if (terminated_seen.load(std::memory_order_relaxed)) return true;
  if (control_uncached && (checks++ & 63u) != 0) return false;
  if (load_acquire(&control->has_terminated) == 0) return false;
  terminated_seen.store(true, std::memory_order_relaxed);
  return true;
}

Status KernelCore::stopped_status() const noexcept {
  return load_acquire(&control->last_error) != 0 ? Status::Faulted : Status::Closed;
}

bool KernelCore::kernel_terminated_now() const noexcept {
  if (terminated_seen.load(std::memory_order_relaxed)) return true;
  return !control_uncached && load_acquire(&control->has_terminated) != 0;
}

const std::byte* KernelCore::read_output_slot(std::uint32_t i) noexcept {
  const std::byte* cell = consumer.slot(i);
  if (!output_uncached) return cell;
  // The first slot after the tail's read: fence, so no line comes from a streaming load
  // buffer filled before the device wrote it (the later slots of the run share it).
  if (i == 0) uncached_fence();
  copy_from_uncached(rx_scratch.data(), cell, rx_scratch.size());
  return rx_scratch.data();
}

void KernelCore::write_express(const Envelope& env, const void* payload, std::uint32_t size) noexcept {
  // Called with the slot written and before the tail's release. The line vouches for
  // itself word by word (flags), so its stores need no order against the slot's; a reader
  // that finds it incomplete reads the slot after the tail's acquire.
  if (size > express::kMaxPayload) return;
  std::uint32_t data[express::kWords];
  express::pack(data, env.correlation_id, env.timestamp.physical, env.timestamp.logical, payload, size);
  const std::uint64_t flag = std::uint64_t{express::flag_of(producer.position())} << 32;
  const std::uint32_t words = express::words_for(size);
  for (std::uint32_t i = 0; i < words; ++i) store_relaxed(&input.indices->express[i], flag | data[i]);
}

bool KernelCore::take_express(Envelope& env, void* payload) noexcept {
  if (express_taken) return false;
  const std::uint32_t want = express::flag_of(consumer.position());
  const std::uint32_t words = express::words_for(response_size);
  std::uint32_t data[express::kWords] = {};
  for (std::uint32_t i = 0; i < words; ++i) {
    const std::uint64_t w = load_relaxed(&output.indices->express[i]);
    if (static_cast<std::uint32_t>(w >> 32) != want) return false;  // not (all) there yet
    data[i] = static_cast<std::uint32_t>(w);
  }
  // Every word carried the flag: loads after them see no older value of any word (each
  // word is written once per position, and a later position has another flag).
  env = Envelope{response_type, 0, HlcTimestamp{0, 0, output_express_node}, response_size,
                 static_cast<std::uint16_t>(slot + 1), static_cast<std::uint8_t>(Priority::Normal), kEnvelopeResponse};
  std::memcpy(&env.correlation_id, &data[0], 8);
  std::memcpy(&env.timestamp.physical, &data[2], 8);
  std::memcpy(&env.timestamp.logical, &data[4], 8);
  std::memcpy(payload, &data[express::kHeaderWords], response_size);
  express_taken = true;
  if (host_clock) (void)host_clock->observe(env.timestamp);
  return true;
}

bool KernelCore::settle_express() noexcept {
  if (!express_taken) return true;
  if (consumer.available(1) == 0) return false;
  consumer.release(1);
  express_taken = false;
  return true;
}

void KernelCore::settle_express_for(Duration limit) noexcept {
  if (!output_express) return;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    {
      std::lock_guard lock(recv_lock);
      if (settle_express()) return;
    }
    if (std::chrono::steady_clock::now() >= deadline) return;
    std::this_thread::yield();
  }
}

Status KernelCore::try_send_raw(TypeId type, const void* payload, std::uint32_t size, std::uint64_t corr,
                                Priority prio) noexcept {
  const KernelState s = state.load(std::memory_order_acquire);
  if (!accepts_messages(s)) return Status::Closed;
  if (type != request_type) return Status::InvalidMessage;
  if (size != request_size) return Status::TooLarge;
  // Whether the kernel stopped: in ordinary memory read before the lock (measured: reading
  // it under the lock cost 5-10 % of single-send throughput on the CPU backend); across a
  // bus, every 64th call under the lock (the counter is the lock's).
  if (!control_uncached && load_acquire(&control->has_terminated) != 0) return stopped_status();
  std::lock_guard lock(send_lock);
  if (control_uncached && kernel_terminated(send_checks)) return stopped_status();
  if (producer.reserve(1) == 0) return Status::QueueFull;
  std::byte* cell = producer.slot(0);
  Envelope env{type, corr, host_clock->tick(), size, 0, static_cast<std::uint8_t>(prio), 0};
  std::memcpy(cell, &env, sizeof env);
  std::memcpy(cell + sizeof(Envelope), payload, size);
  if (input_express) write_express(env, payload, size);
  producer.publish(1);
  if (kernel_doorbell) kernel_doorbell->ring();
  return Status::Ok;
}

std::size_t KernelCore::try_send_batch_raw(TypeId type, const std::byte* payloads, std::uint32_t size,
                                           std::size_t count) noexcept {
  if (count == 0 || !accepts_messages(state.load(std::memory_order_acquire))) return 0;
  if (type != request_type || size != request_size) return 0;
  if (!control_uncached && load_acquire(&control->has_terminated) != 0) return 0;
  std::lock_guard lock(send_lock);
  if (control_uncached && kernel_terminated(send_checks)) return 0;
  const std::uint32_t want = static_cast<std::uint32_t>(std::min<std::size_t>(count, input.capacity));
  const std::uint32_t n = producer.reserve(want);
  if (n == 0) return 0;
  const std::uint64_t first = host_clock->tick_batch(n);
  const std::uint64_t node = host_clock->node_id();
  for (std::uint32_t i = 0; i < n; ++i) {
    std::byte* cell = producer.slot(i);
    Envelope env{type, 0, hlc::unpack(first + i, node), size, 0, static_cast<std::uint8_t>(Priority::Normal), 0};
    std::memcpy(cell, &env, sizeof env);
    std::memcpy(cell + sizeof(Envelope), payloads + std::size_t{i} * size, size);
    if (n == 1 && input_express) write_express(env, payloads, size);  // a batch of one: as a single send
  }
  producer.publish(n);
  if (kernel_doorbell) kernel_doorbell->ring();
  return n;
}

Status KernelCore::try_receive_raw(TypeId type, void* out, std::uint32_t size, Envelope* env_out) noexcept {
  if (type != response_type || size != response_size) return Status::InvalidMessage;
  std::lock_guard lock(recv_lock);
  if (!stash.empty()) {
    const auto& m = stash.front();
    Envelope env;
    std::memcpy(&env, m.data(), sizeof env);
    std::memcpy(out, m.data() + sizeof env, size);
    if (env_out) *env_out = env;
    stash.pop_front();
    return Status::Ok;
  }
  const std::byte* cell = nullptr;
  if (settle_express()) {
    while (consumer.available(1) != 0) {
      cell = read_output_slot();
      if (!is_skip(cell)) break;
      consumer.release(1);  // a "no response" marker
      cell = nullptr;
    }
    if (cell == nullptr && output_express) {
      Envelope env;
      if (take_express(env, out)) {
        if (env_out) *env_out = env;
        return Status::Ok;
      }
    }
  }
  if (cell == nullptr) {
    if (kernel_terminated(recv_checks)) return stopped_status();
    return Status::QueueEmpty;
  }
  Envelope env;
  std::memcpy(&env, cell, sizeof env);
  std::memcpy(out, cell + sizeof env, size);
  consumer.release(1);
  if (host_clock) (void)host_clock->observe(env.timestamp);  // a skewed kernel stamp leaves the host clock as is
  if (env_out) *env_out = env;
  return Status::Ok;
}

std::size_t KernelCore::try_receive_batch_raw(TypeId type, std::byte* out, std::uint32_t size,
                                              std::size_t count) noexcept {
  if (count == 0 || type != response_type || size != response_size) return 0;
  std::lock_guard lock(recv_lock);
  std::size_t done = 0;
  while (done < count && !stash.empty()) {
    std::memcpy(out + done * size, stash.front().data() + sizeof(Envelope), size);
    stash.pop_front();
    ++done;
  }
  if (!settle_express()) return done;
  const std::uint32_t want = static_cast<std::uint32_t>(std::min<std::size_t>(count - done, output.capacity));
  const std::uint32_t n = consumer.available(want);
  if (n == 0) {
    // Nothing announced yet: a lone response may already be on the express line.
    Envelope env;
    if (output_express && done < count && take_express(env, out + done * size)) return done + 1;
    return done;
  }
  HlcTimestamp last{};
  std::size_t copied = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    const std::byte* cell = read_output_slot(i);
    if (is_skip(cell)) continue;
    std::memcpy(out + (done + copied) * size, cell + sizeof(Envelope), size);
    std::memcpy(&last, cell + offsetof(Envelope, timestamp), sizeof last);
    ++copied;
  }
  consumer.release(n);
  if (copied && host_clock) (void)host_clock->observe(last);  // one merge per batch: the latest stamp dominates
  return done + copied;
}

Result<void> KernelCore::wait_send(TypeId type, const void* payload, std::uint32_t size, std::uint64_t corr,
                                   Priority prio, Duration timeout) {
  if (auto ok = check_send(type, size); !ok) return ok;
  Status s = try_send_raw(type, payload, size, corr, prio);
  if (s == Status::Ok) return {};  // the common case reads no clock
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + timeout;
  auto next_health = start + kHealthInterval;
  Backoff backoff(this);
  for (bool first = true;; first = false) {
    if (!first) s = try_send_raw(type, payload, size, corr, prio);
    if (s == Status::Ok) return {};
    if (s != Status::QueueFull) {
      if (s == Status::Closed || s == Status::Faulted) return dead_error();
      return Error(to_error_code(s), std::string("send failed: ") + to_string(s));
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      return Error(ErrorCode::QueueFull, "input queue of kernel '" + id.value + "' stayed full for " +
                                             std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()) +
                                             " ms; nothing was sent (the kernel is not draining it: is it deactivated?)");
    }
    if (now >= next_health) {
      if (auto h = impl->check_health(); !h) return h;
      next_health = now + kHealthInterval;
    }
    backoff.pause();
  }
}

Result<std::size_t> KernelCore::wait_send_batch(TypeId type, const std::byte* payloads, std::uint32_t size,
                                                 std::size_t count, Duration timeout) {
  if (auto ok = check_send(type, size); !ok) return ok.error();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::size_t sent = 0;
  std::uint32_t checks = 0;
  Backoff backoff(this);
  while (sent < count) {
    const std::size_t n = try_send_batch_raw(type, payloads + sent * size, size, count - sent);
    sent += n;
    if (sent == count) break;
    if (n == 0) {
      if (kernel_terminated(checks) || !accepts_messages(state.load())) return dead_error();
      if (std::chrono::steady_clock::now() >= deadline) {
        return Error(ErrorCode::QueueFull, "input queue of kernel '" + id.value + "' stayed full; " +
                                               std::to_string(sent) + " of " + std::to_string(count) +
                                               " messages were sent");
      }
      if (auto h = impl->check_health(); !h) return h.error();
      backoff.pause();
    }
  }
  return sent;
}

Result<void> KernelCore::wait_receive(TypeId type, void* out, std::uint32_t size, Duration timeout, Envelope* env) {
  if (auto ok = check_receive(type, size); !ok) return ok;
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + timeout;
  auto next_health = start + kHealthInterval;
  Backoff backoff(this);
  for (unsigned spins = 0;; ++spins) {
    const Status s = try_receive_raw(type, out, size, env);
    if (s == Status::Ok) return {};
    if (s == Status::Closed || s == Status::Faulted) return dead_error();
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      return Error(ErrorCode::Timeout, "no message from kernel '" + id.value + "' within " +
                                           std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(timeout).count()) +
                                           " us");
    }
    if (now >= next_health) {
      if (auto h = impl->check_health(); !h) return h;
      next_health = now + kHealthInterval;
    }
    if (host_doorbell && spins > 4096) {
      const auto left = std::min<Duration>(deadline - now, std::chrono::milliseconds(2));
      host_doorbell->wait([&] { return load_acquire(&output.indices->tail) != load_relaxed(&output.indices->head) ||
                                       kernel_terminated_now(); },
                          left);
    } else {
      backoff.pause();
    }
  }
}

Result<std::size_t> KernelCore::wait_receive_batch(TypeId type, std::byte* out, std::uint32_t size,
                                                   std::size_t count, Duration timeout) {
  if (auto ok = check_receive(type, size); !ok) return ok.error();
  if (count == 0) return std::size_t{0};
  // Block for the first message, then take whatever else is already there.
  Envelope env;
  if (auto r = wait_receive(type, out, size, timeout, &env); !r) return r.error();
  return 1 + try_receive_batch_raw(type, out + size, size, count - 1);
}

Result<void> KernelCore::call_raw(TypeId req_type, const void* req, std::uint32_t req_size, TypeId resp_type,
                                  void* resp, std::uint32_t resp_size, Duration timeout) {
  if (auto ok = check_receive(resp_type, resp_size); !ok) return ok;
  const std::uint64_t corr = CorrelationId::generate().value;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Send with the correlation id (waiting for room within the same deadline).
  if (auto sent = wait_send(req_type, req, req_size, corr, Priority::Normal, timeout); !sent) return sent;
  // Receive until the response with our correlation id; set others aside for receive().
  Backoff backoff(this);
  std::uint32_t checks = 0;
  auto next_health = std::chrono::steady_clock::now() + kHealthInterval;
  for (;;) {
    {
      std::lock_guard lock(recv_lock);
      for (auto it = stash.begin(); it != stash.end(); ++it) {
        Envelope env;
        std::memcpy(&env, it->data(), sizeof env);
        if (env.correlation_id == corr) {
          std::memcpy(resp, it->data() + sizeof env, resp_size);
          stash.erase(it);
          return {};
        }
      }
      if (settle_express()) {  // else the response at the head was taken from the express line; its tail is on the way
        while (consumer.available(1) != 0) {
          const std::byte* cell = read_output_slot();
          if (is_skip(cell)) {
            consumer.release(1);
            continue;
          }
          Envelope env;
          std::memcpy(&env, cell, sizeof env);
          if (host_clock) (void)host_clock->observe(env.timestamp);
          if (env.correlation_id == corr) {
            std::memcpy(resp, cell + sizeof env, resp_size);
            consumer.release(1);
            return {};
          }
          stash.emplace_back(cell, cell + sizeof env + env.payload_size);
          consumer.release(1);
        }
        Envelope env;
        std::byte payload[express::kMaxPayload];
        if (output_express && take_express(env, payload)) {
          if (env.correlation_id == corr) {
            std::memcpy(resp, payload, resp_size);
            return {};
          }
          std::vector<std::byte> kept(sizeof env + env.payload_size);
          std::memcpy(kept.data(), &env, sizeof env);
          std::memcpy(kept.data() + sizeof env, payload, env.payload_size);
          stash.push_back(std::move(kept));
        }
      }
    }
    if (kernel_terminated(checks)) return dead_error();
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline)
      return Error(ErrorCode::Timeout, "call: no response from kernel '" + id.value + "' within the timeout");
    if (now >= next_health) {
      if (auto h = impl->check_health(); !h) return h;
      next_health = now + kHealthInterval;
    }
    backoff.pause();
  }
}

Result<void> KernelCore::send_bytes(std::span<const std::byte> bytes, Duration timeout) {
  const ValidationError v = validate_bytes(bytes, 0);
  MessageHeader h{};
  if (v == ValidationError::Ok) std::memcpy(&h, bytes.data(), sizeof h);
  if (v != ValidationError::Ok || h.type_id != request_type || h.payload_size != request_size) {
    invalid_rejected.fetch_add(1, std::memory_order_relaxed);
    if (v != ValidationError::Ok)
      return Error(ErrorCode::InvalidMessage, std::string("message bytes rejected: ") + to_string(v));
    if (h.type_id != request_type)
      return Error(ErrorCode::UnknownMessageType, "message bytes rejected: type id " + std::to_string(h.type_id) +
                                                      " is not accepted by kernel '" + id.value + "'");
    return Error(ErrorCode::InvalidMessage, "message bytes rejected: payload size does not match the kernel's type");
  }
  if (h.timestamp.physical != 0 && host_clock) {
    if (auto m = host_clock->observe(h.timestamp); !m) {
      invalid_rejected.fetch_add(1, std::memory_order_relaxed);
      return m.error();
    }
  }
  return wait_send(h.type_id, bytes.data() + sizeof(MessageHeader), h.payload_size, h.correlation_id,
                   static_cast<Priority>(h.priority & 3), timeout);
}

}  // namespace detail

// =========================================================================================
// KernelHandle
// =========================================================================================

KernelHandle& KernelHandle::operator=(KernelHandle&& o) noexcept {
  if (this != &o) {
    KernelHandle old(std::move(*this));  // terminates the previously held kernel
    core_ = std::move(o.core_);
  }
  return *this;
}

KernelHandle::~KernelHandle() {
  if (!core_) return;
  const KernelState s = core_->state.load();
  if (s != KernelState::Terminated) {
    if (auto r = terminate(); !r)
      std::fprintf(stderr, "ringkernel: terminating kernel '%s' on handle destruction failed: %s\n",
                   core_->id.value.c_str(), r.error().what().c_str());
  }
  if (core_->runtime) core_->runtime->remove(core_.get());
}

Result<void> KernelHandle::activate() {
  std::lock_guard lock(core_->lifecycle_mutex);
  const KernelState s = core_->state.load();
  if (s != KernelState::Launched && s != KernelState::Deactivated)
    return Error(ErrorCode::InvalidState, std::string("activate: kernel '") + core_->id.value + "' is " + to_string(s) +
                                              " (allowed from launched or deactivated)");
  if (load_acquire(&core_->control->has_terminated) != 0) return core_->dead_error();
  store_release(&core_->control->host_generation, core_->control->host_generation + 1);
  store_release(&core_->control->is_active, 1u);  // read by the kernel loop's acquire
  core_->impl->control_changed();
  if (core_->kernel_doorbell) core_->kernel_doorbell->wake();
  core_->state.store(KernelState::Active);
  return {};
}

Result<void> KernelHandle::deactivate() {
  std::lock_guard lock(core_->lifecycle_mutex);
  const KernelState s = core_->state.load();
  if (s != KernelState::Active)
    return Error(ErrorCode::InvalidState, std::string("deactivate: kernel '") + core_->id.value + "' is " +
                                              to_string(s) + " (allowed from active)");
  store_release(&core_->control->host_generation, core_->control->host_generation + 1);
  store_release(&core_->control->is_active, 0u);
  core_->impl->control_changed();
  if (core_->kernel_doorbell) core_->kernel_doorbell->wake();
  // Wait until the loop has acknowledged: afterwards no message is being processed.
  const auto deadline = std::chrono::steady_clock::now() + kDefaultTimeout;
  while (load_acquire(&core_->control->acked_active) != 0 && load_acquire(&core_->control->has_terminated) == 0) {
    if (auto h = core_->impl->check_health(); !h) return h;
    if (std::chrono::steady_clock::now() >= deadline)
      return Error(ErrorCode::Timeout, "deactivate: kernel '" + core_->id.value + "' did not acknowledge within 5 s");
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  core_->state.store(KernelState::Deactivated);
  return {};
}

Result<void> KernelHandle::terminate(Duration timeout) {
  std::lock_guard lock(core_->lifecycle_mutex);
  const KernelState s = core_->state.load();
  if (s == KernelState::Terminated || s == KernelState::Terminating)
    return Error(ErrorCode::InvalidState, "terminate: kernel '" + core_->id.value + "' is already " + to_string(s));
  core_->state.store(KernelState::Terminating);
  auto r = core_->impl->stop(timeout);
  core_->state.store(KernelState::Terminated);
  return r;
}

Result<void> KernelHandle::wait(Duration timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (load_acquire(&core_->control->has_terminated) == 0) {
    if (auto h = core_->impl->check_health(); !h) break;  // a fault ends the kernel too
    if (std::chrono::steady_clock::now() >= deadline)
      return Error(ErrorCode::Timeout, "wait: kernel '" + core_->id.value + "' still running after the timeout");
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  std::lock_guard lock(core_->lifecycle_mutex);
  if (core_->state.load() != KernelState::Terminated) {
    (void)core_->impl->stop(timeout);  // joins the loop that has already left
    core_->state.store(KernelState::Terminated);
  }
  const std::uint32_t err = load_acquire(&core_->control->last_error);
  if (err != 0) return core_->dead_error();
  return {};
}

KernelStatus KernelHandle::status() const {
  KernelStatus st;
  st.id = core_->id;
  st.state = core_->state.load();
  if (load_acquire(&core_->control->has_terminated) != 0) st.state = KernelState::Terminated;
  st.backend = core_->backend;
  st.mode = core_->options.mode;
  st.messages_processed = load_relaxed(&core_->control->messages_processed);
  st.messages_dropped = load_relaxed(&core_->control->messages_dropped);
  st.input_depth = core_->input.stats().depth;
  core_->settle_express_for(std::chrono::milliseconds(1));
  st.output_depth = core_->output.stats().depth;
  st.last_error = static_cast<DeviceError>(load_acquire(&core_->control->last_error));
  HlcTimestamp h;
  h.physical = load_relaxed(&core_->control->hlc.physical);
  h.logical = load_relaxed(&core_->control->hlc.logical);
  h.node_id = load_relaxed(&core_->control->hlc.node_id);
  st.hlc = h;
  return st;
}

std::vector<ActorRef> KernelHandle::actors() const {
  std::lock_guard lock(core_->actor_mutex);
  std::vector<ActorRef> out;
  for (std::uint32_t i = 0; i < core_->actor_generation.size(); ++i)
    if (core_->actor_generation[i] != 0) out.push_back(ActorRef{i, core_->actor_generation[i]});
  return out;
}

std::vector<ActorFault> KernelHandle::actor_faults() const {
  std::lock_guard lock(core_->actor_mutex);
  std::vector<ActorFault> out;
  if (!core_->actor_faults) return out;
  for (std::uint32_t i = 0; i < core_->actor_generation.size(); ++i) {
    if (core_->actor_generation[i] == 0) continue;
    const std::uint32_t code = load_acquire(&core_->actor_faults[i]);
    if (code != 0) out.push_back(ActorFault{ActorRef{i, core_->actor_generation[i]}, code});
  }
  return out;
}

KernelMetrics KernelHandle::metrics() const {
  KernelMetrics m;
  const TelemetryBuffer* t = core_->telemetry;
  TelemetryBuffer& r = m.telemetry.raw;
  r.messages_processed = load_relaxed(&t->messages_processed);
  r.messages_dropped = load_relaxed(&t->messages_dropped);
  r.total_latency_us = load_relaxed(&t->total_latency_us);
  r.min_latency_us = load_relaxed(&t->min_latency_us);
  r.max_latency_us = load_relaxed(&t->max_latency_us);
  r.input_queue_depth = load_acquire(&t->input_queue_depth);
  r.output_queue_depth = load_acquire(&t->output_queue_depth);
  r.last_error = load_acquire(&t->last_error);
  r.k2k_sent = load_relaxed(&t->k2k_sent);
  m.input = core_->input.stats();
  core_->settle_express_for(std::chrono::milliseconds(1));  // a response taken early counts as dequeued
  m.output = core_->output.stats();
  m.invalid_messages_rejected = core_->invalid_rejected.load(std::memory_order_relaxed);
  if (core_->impl) core_->impl->k2k_counters(m.k2k_dead_letters, m.k2k_tenant_rejections);
  return m;
}

}  // namespace ringkernel
