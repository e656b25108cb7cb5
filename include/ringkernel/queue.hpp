// ringkernel/queue.hpp — lock-free message queues.
//
// The single ring algorithm of the library: a bounded single-producer / single-consumer
// ring with power-of-two capacity and monotonically increasing 64-bit positions (no ABA,
// no wrap handling: 2^64 messages outlast any run). Each side writes only its own index
// and keeps a cached copy of the other side's index, refreshing it (acquire) only when the
// cache says "full" / "empty" — the design of rigtorp/SPSCQueue and of Lamport's ring with
// the "FastForward"-style cached peer. Producer and consumer indices live on separate
// 128-byte lines so neither side's writes invalidate the other's line.
//
// The same code serves three placements, chosen by the Scope parameter:
//   host <-> host     (any memory, Scope::System == std::atomic_ref on the host)
//   host <-> device   (mapped pinned memory, Scope::System)
//   device <-> device (device memory, Scope::Device)
// No read-modify-write atomics are shared between producer and consumer, so the ring is
// correct across PCIe, where CPU<->GPU RMW atomics are not atomic.
//
// SpscQueue<T>, the typed queue between two host threads, keeps the single-writer rule but
// not the index-only layout: a sequence word in each cell tells the consumer a message is
// there (see the class). MpscQueue<T> is Vyukov's bounded queue with one consumer.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <thread>
#include <type_traits>
#include <utility>

#include "ringkernel/atomics.hpp"
#include "ringkernel/config.hpp"
#include "ringkernel/error.hpp"

namespace ringkernel {

/// Shared indices of one ring (256 bytes). Producer-owned words on the first 128-byte
/// line, consumer-owned words on the second.
struct alignas(kIndexAlign) RingIndices {
  // -- producer line --
  std::uint64_t tail;             ///< next position to write; published with release
  std::uint64_t dropped;          ///< messages the producer discarded under a drop policy
  std::uint32_t producer_closed;  ///< 1 = the producer will write no more
  /// A CUDA kernel's input ring: bumped by the host (release) after it changed a word the
  /// kernel polls (ControlBlock::is_active / should_terminate, the K2K route counts). The
  /// kernel's poller loads it with the tail, so it reads those words only when it moved.
  std::uint32_t control_epoch;
  union {
    std::uint64_t claim;    ///< multi-producer rings on a device: next position to claim
    std::uint64_t command;  ///< a CUDA actor pool's input ring: the host's actor command (ActorMailbox)
  };
  /// The express copy of the newest message (namespace express below); unused by most rings.
  std::uint64_t express[(kIndexAlign - 32) / 8];
  // -- consumer line --
  std::uint64_t head;             ///< next position to read; published with release
  std::uint64_t max_depth;        ///< largest depth the consumer has observed
  std::uint32_t consumer_closed;  ///< 1 = the consumer is gone; producers get Closed
  std::uint8_t pad1[kIndexAlign - 20];
};
static_assert(sizeof(RingIndices) == 2 * kIndexAlign);
static_assert(offsetof(RingIndices, tail) == 0);
static_assert(offsetof(RingIndices, dropped) == 8);
static_assert(offsetof(RingIndices, producer_closed) == 16);
static_assert(offsetof(RingIndices, control_epoch) == 20);
static_assert(offsetof(RingIndices, claim) == 24);
static_assert(offsetof(RingIndices, command) == 24);
static_assert(offsetof(RingIndices, express) == 32);
static_assert(offsetof(RingIndices, head) == kIndexAlign);
static_assert(offsetof(RingIndices, max_depth) == kIndexAlign + 8);
static_assert(offsetof(RingIndices, consumer_closed) == kIndexAlign + 16);

/// The express line: a copy of the newest message a host producer sent one at a time,
/// in the spare words of the ring's producer line (RingIndices::express), for a consumer
/// across PCIe (a CUDA kernel's poller). The consumer's poll of the tail then brings the
/// message with it: one bus round trip per message instead of two (the tail, then the
/// slot). Each 8-byte word carries 4 data bytes and, above them, a 32-bit flag derived
/// from the message's ring position; an aligned 8-byte store (host) and an 8-byte load
/// (device) are single-copy atomic, so a word whose flag matches holds that message's
/// bytes, whatever the order in which the bus delivers the words. The slot is written as
/// usual, first: a consumer that finds the copy incomplete or stale reads the slot.
/// Data words: correlation id (2), HLC physical (2), HLC logical (2), then the payload.
namespace express {
inline constexpr std::uint32_t kWords = (kIndexAlign - 32) / 8;
inline constexpr std::uint32_t kHeaderWords = 6;
inline constexpr std::uint32_t kMaxPayload = (kWords - kHeaderWords) * 4;
/// Data words a message of `payload` bytes takes.
RK_HOST_DEVICE constexpr std::uint32_t words_for(std::uint32_t payload) noexcept { return kHeaderWords + (payload + 3) / 4; }
/// The flag of ring position `pos`: never 0, so a line never written holds no message.
/// Unique among any 2^32 - 1 consecutive positions; the reader only ever looks for the
/// position right after the last tail it saw, and the line holds a position no more than
/// a ring's capacity away from it.
RK_HOST_DEVICE constexpr std::uint32_t flag_of(std::uint64_t pos) noexcept {
  const auto f = static_cast<std::uint32_t>(pos + 1);
  return f != 0 ? f : 1u;
}
/// The data words of a message (before the flags go on): the one layout both directions
/// write, the host for requests and a CUDA actor for responses. `size` <= kMaxPayload.
RK_HOST_DEVICE inline void pack(std::uint32_t (&d)[kWords], std::uint64_t correlation, std::uint64_t physical,
                                std::uint64_t logical, const void* payload, std::uint32_t size) noexcept {
  for (std::uint32_t i = 0; i < kWords; ++i) d[i] = 0;
  std::memcpy(&d[0], &correlation, 8);
  std::memcpy(&d[2], &physical, 8);
  std::memcpy(&d[4], &logical, 8);
  std::memcpy(&d[kHeaderWords], payload, size);
}
}  // namespace express

/// Counters of one queue. enqueued/dequeued are the ring positions themselves.
struct QueueStats {
  std::uint64_t enqueued = 0;
  std::uint64_t dequeued = 0;
  std::uint64_t dropped = 0;
  std::uint64_t depth = 0;      ///< enqueued - dequeued when read (racy snapshot)
  std::uint64_t max_depth = 0;  ///< largest depth the consumer observed
};

/// Where a ring lives: indices plus `capacity` slots of `slot_size` bytes each.
/// Plain data, copied to whichever side builds an endpoint from it.
struct RingView {
  RingIndices* indices = nullptr;
  std::byte* slots = nullptr;
  std::uint32_t capacity = 0;   ///< power of two
  std::uint32_t slot_size = 0;  ///< bytes per slot, multiple of 16

  RK_HOST_DEVICE std::byte* slot(std::uint64_t pos) const noexcept {
    return slots + (pos & (capacity - 1)) * std::uint64_t{slot_size};
  }
  /// Racy snapshot of the queue's counters (any thread, any side).
  QueueStats stats() const noexcept;
  /// Messages waiting (racy, any thread): the two indices only.
  std::uint64_t depth() const noexcept;
};

RK_HOST_DEVICE constexpr bool is_power_of_two(std::uint64_t v) noexcept { return v && !(v & (v - 1)); }

/// Producer endpoint. One instance, used by one thread (the leader thread on a device).
template <Scope S = Scope::System>
class RingProducer {
 public:
  RingProducer() = default;
  RK_HOST_DEVICE explicit RingProducer(const RingView& v) noexcept
      : view_(v), tail_(load_relaxed<S>(&v.indices->tail)), head_cache_(load_acquire<S>(&v.indices->head)) {}

  /// Up to `want` free slots, refreshing the cached consumer index only when the cache
  /// says there are fewer. Never blocks.
  RK_HOST_DEVICE std::uint32_t reserve(std::uint32_t want) noexcept {
    std::uint64_t free = view_.capacity - (tail_ - head_cache_);
    if (free < want) {
      head_cache_ = load_acquire<S>(&view_.indices->head);  // pairs with consumer release()
      free = view_.capacity - (tail_ - head_cache_);
    }
    return static_cast<std::uint32_t>(free < want ? free : want);
  }
  /// Slot `i` of the current reservation.
  RK_HOST_DEVICE std::byte* slot(std::uint32_t i) const noexcept { return view_.slot(tail_ + i); }
  /// Makes the next `n` reserved slots visible to the consumer (one release store).
  RK_HOST_DEVICE void publish(std::uint32_t n) noexcept {
    tail_ += n;
#if !RK_DEVICE_PASS && (defined(__x86_64__) || defined(__i386__))
    // A host-written ring in write-combining memory (a GPU's BAR, Vulkan's DEVICE_LOCAL |
    // HOST_VISIBLE): x86 stores to different lines can land in any order there, so the
    // slots' stores are drained before the index store (set_store_fence(true)). Ordinary
    // write-back memory needs no fence, which would cost a store-buffer drain per publish.
    if constexpr (S == Scope::System)
      if (store_fence_) __builtin_ia32_sfence();
#endif
    store_release<S>(&view_.indices->tail, tail_);  // pairs with RingConsumer::available()
  }
  /// publish() for a caller that has just issued a fence covering the slot writes (the
  /// store itself is then relaxed: fence + store is a release).
  RK_HOST_DEVICE void publish_after_fence(std::uint32_t n) noexcept {
    tail_ += n;
    store_relaxed(&view_.indices->tail, tail_);
  }
  /// Copy one slot's bytes in and publish it.
  RK_HOST_DEVICE Status try_push_bytes(const void* bytes, std::uint32_t n) noexcept {
    if (n > view_.slot_size) return Status::TooLarge;
    if (reserve(1) == 0) return closed() ? Status::Closed : Status::QueueFull;
    std::memcpy(slot(0), bytes, n);
    publish(1);
    return Status::Ok;
  }
  /// A drop under an explicit policy: counted where every reader can see it.
  RK_HOST_DEVICE void count_drop(std::uint64_t n = 1) noexcept {
    dropped_ += n;
    store_relaxed(&view_.indices->dropped, dropped_);
  }
  RK_HOST_DEVICE bool closed() const noexcept {
    return load_acquire<S>(&view_.indices->consumer_closed) != 0;
  }
  RK_HOST_DEVICE void close() noexcept { store_release<S>(&view_.indices->producer_closed, 1u); }
  RK_HOST_DEVICE std::uint64_t position() const noexcept { return tail_; }
  RK_HOST_DEVICE const RingView& view() const noexcept { return view_; }
  RK_HOST_DEVICE std::uint32_t slot_size() const noexcept { return view_.slot_size; }
  /// Reads the shared tail line (host rings in ordinary memory only: never across PCIe).
  /// One push at a time into a ring its consumer keeps nearly empty, the line then comes
  /// back to the producer ahead of the store that needs it.
  void touch_tail() const noexcept { (void)std::atomic_ref<const std::uint64_t>(view_.indices->tail).load(std::memory_order_relaxed); }
  /// Host producers: whether publish() fences the slots' stores first. Needed when the
  /// ring is in write-combining memory, which only the code that mapped it knows: off by
  /// default (ordinary memory).
  void set_store_fence(bool on) noexcept { store_fence_ = on; }

 private:
  RingView view_{};
  std::uint64_t tail_ = 0;        // own index (only this producer writes it)
  std::uint64_t head_cache_ = 0;  // cached consumer index
  std::uint64_t dropped_ = 0;
  bool store_fence_ = false;
};

/// Consumer endpoint. One instance, used by one thread.
template <Scope S = Scope::System>
class RingConsumer {
 public:
  RingConsumer() = default;
  RK_HOST_DEVICE explicit RingConsumer(const RingView& v) noexcept
      : view_(v), head_(load_relaxed<S>(&v.indices->head)), tail_cache_(load_acquire<S>(&v.indices->tail)) {}

  /// Up to `want` readable slots, refreshing the cached producer index only when needed.
  RK_HOST_DEVICE std::uint32_t available(std::uint32_t want) noexcept {
    std::uint64_t ready = tail_cache_ - head_;
    if (ready < want) {
      tail_cache_ = load_acquire<S>(&view_.indices->tail);  // pairs with RingProducer::publish()
      ready = tail_cache_ - head_;
      if (ready > max_depth_) {
        max_depth_ = ready;
        store_relaxed(&view_.indices->max_depth, max_depth_);
      }
    }
    return static_cast<std::uint32_t>(ready < want ? ready : want);
  }
  RK_HOST_DEVICE const std::byte* slot(std::uint32_t i) const noexcept { return view_.slot(head_ + i); }
  /// Returns `n` slots to the producer (one release store).
  RK_HOST_DEVICE void release(std::uint32_t n) noexcept {
    head_ += n;
    store_release<S>(&view_.indices->head, head_);  // pairs with RingProducer::reserve()
  }
  RK_HOST_DEVICE void close() noexcept { store_release<S>(&view_.indices->consumer_closed, 1u); }
  RK_HOST_DEVICE bool producer_closed() const noexcept {
    return load_acquire<S>(&view_.indices->producer_closed) != 0;
  }
  RK_HOST_DEVICE std::uint64_t position() const noexcept { return head_; }
  /// Depth as last observed (no memory traffic).
  RK_HOST_DEVICE std::uint64_t cached_depth() const noexcept { return tail_cache_ - head_; }
  RK_HOST_DEVICE const RingView& view() const noexcept { return view_; }

 private:
  RingView view_{};
  std::uint64_t head_ = 0;        // own index
  std::uint64_t tail_cache_ = 0;  // cached producer index
  std::uint64_t max_depth_ = 0;
};

inline std::uint64_t RingView::depth() const noexcept {
  const std::uint64_t head = load_acquire(&indices->head), tail = load_acquire(&indices->tail);
  return tail >= head ? tail - head : 0;
}

inline QueueStats RingView::stats() const noexcept {
  QueueStats s;
  s.dequeued = load_acquire(&indices->head);
  s.enqueued = load_acquire(&indices->tail);
  s.dropped = load_relaxed(&indices->dropped);
  s.max_depth = load_relaxed(&indices->max_depth);
  s.depth = s.enqueued >= s.dequeued ? s.enqueued - s.dequeued : 0;
  return s;
}

// =========================================================================================
// Host-side typed queues
// =========================================================================================

namespace detail {
/// Spin, then yield, then sleep with a growing step until `ready()` or the deadline.
template <class Ready>
bool wait_until(Ready&& ready, std::chrono::steady_clock::time_point deadline) {
  for (int i = 0; i < 256; ++i) {
    if (ready()) return true;
  }
  auto step = std::chrono::microseconds(1);
  for (int i = 0;; ++i) {
    if (ready()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return ready();
    if (i < 64) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(step);
      step = std::min<std::chrono::microseconds>(step * 2, std::chrono::microseconds(200));
    }
  }
}

/// Aligned storage that is released with the matching aligned delete.
struct AlignedDelete {
  std::align_val_t align;
  void operator()(std::byte* p) const noexcept { ::operator delete[](p, align); }
};
using AlignedBytes = std::unique_ptr<std::byte[], AlignedDelete>;
inline AlignedBytes make_aligned_bytes(std::size_t n, std::size_t align) {
  auto* p = static_cast<std::byte*>(::operator new[](n, std::align_val_t(align)));
  std::memset(p, 0, n);
  return AlignedBytes(p, AlignedDelete{std::align_val_t(align)});
}
}  // namespace detail

/// Bounded SPSC queue of T between two host threads. T may be any nothrow-movable type;
/// elements still queued are destroyed with the queue. One thread pushes, one pops.
///
/// Host memory only, so it is free to use a layout the byte ring cannot: each cell carries
/// a sequence word next to its element (position + 1 once the element at that position is
/// written; release store after the element). The consumer learns that a message is there
/// from the message's own cache line and never reads the producer's index on its path.
/// One message at a time into a queue its consumer keeps nearly empty, the index design
/// pays two cross-core line transfers per message (the index line, then the slot's); this
/// one pays the slot's alone (bench/RESULTS.md, "SPSC one at a time"). The producer still
/// keeps a cached copy of the consumer's index and refreshes it only when the queue looks
/// full; each side writes only its own words. The indices are the byte ring's endpoints
/// (RingProducer / RingConsumer over the cells), kept for room and for stats(): the
/// producer stores its tail after each push, on a line only stats() and a
/// max-depth sample (once per 4,096 pops) read. Batches cost the same per message as single
/// calls on the consumer's side; with 64-byte elements the cells are 72 bytes, so batch
/// throughput is ~15 % below the index-only byte ring (bench/RESULTS.md).
template <class T>
class SpscQueue {
  static_assert(std::is_nothrow_move_constructible_v<T>, "SpscQueue<T> needs a nothrow move");
  struct Cell {
    alignas(T) std::byte storage[sizeof(T)];
    std::atomic<std::uint64_t> seq;  ///< position + 1 once the element at `position` is there
  };

 public:
  /// `capacity` is rounded up to a power of two (at least 2).
  explicit SpscQueue(std::size_t capacity) {
    std::size_t cap = 2;
    while (cap < capacity) cap <<= 1;
    indices_ = detail::make_aligned_bytes(sizeof(RingIndices), kIndexAlign);
    storage_ = detail::make_aligned_bytes(cap * sizeof(Cell), std::max<std::size_t>(alignof(Cell), 64));
    cells_ = reinterpret_cast<Cell*>(storage_.get());
    for (std::size_t i = 0; i < cap; ++i) ::new (static_cast<void*>(&cells_[i].seq)) std::atomic<std::uint64_t>(0);
    view_.indices = reinterpret_cast<RingIndices*>(indices_.get());
    view_.slots = storage_.get();
    view_.capacity = static_cast<std::uint32_t>(cap);
    view_.slot_size = sizeof(Cell);
    producer_ = RingProducer<>(view_);
    consumer_ = RingConsumer<>(view_);
  }
  SpscQueue(const SpscQueue&) = delete;
  SpscQueue& operator=(const SpscQueue&) = delete;
  ~SpscQueue() {
    if constexpr (!std::is_trivially_destructible_v<T>) {
      for (std::uint64_t pos = consumer_.position(); ready(pos); ++pos) value(pos)->~T();
    }
  }

  // -- producer thread ------------------------------------------------------------------
  template <class... Args>
  Status try_emplace(Args&&... args) noexcept(std::is_nothrow_constructible_v<T, Args...>) {
    if (producer_.reserve(1) == 0) return Status::QueueFull;
    write(producer_.position(), std::forward<Args>(args)...);
    producer_.publish(1);  // the shared tail: for stats() only
    return Status::Ok;
  }
  Status try_push(const T& v) noexcept(std::is_nothrow_copy_constructible_v<T>) { return try_emplace(v); }
  Status try_push(T&& v) noexcept { return try_emplace(std::move(v)); }
  /// Pushes as many of `items` as fit. Returns how many were pushed.
  std::size_t try_push_batch(std::span<const T> items) noexcept(std::is_nothrow_copy_constructible_v<T>) {
    const std::uint32_t n = producer_.reserve(static_cast<std::uint32_t>(std::min<std::size_t>(items.size(), view_.capacity)));
    const std::uint64_t t = producer_.position();
    std::uint32_t i = 0;
    if constexpr (std::is_nothrow_copy_constructible_v<T>) {
      for (; i < n; ++i) write(t + i, items[i]);
    } else {
      try {
        for (; i < n; ++i) write(t + i, items[i]);
      } catch (...) {  // a throwing copy: the elements before it are in the queue
        if (i) producer_.publish(i);
        throw;
      }
    }
    if (n) producer_.publish(n);
    return n;
  }
  /// Under a drop policy: push, or count the message as dropped when full.
  Status push_or_drop(const T& v) noexcept {
    const Status s = try_push(v);
    if (s == Status::QueueFull) producer_.count_drop();
    return s;
  }
  /// Blocks until there is room or `timeout` passes (Status::Timeout; nothing written).
  Status push(const T& v, std::chrono::nanoseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (!detail::wait_until([&] { return producer_.reserve(1) != 0; }, deadline)) return Status::Timeout;
    return try_push(v);
  }

  // -- consumer thread ------------------------------------------------------------------
  Status try_pop(T& out) noexcept {
    const std::uint64_t h = consumer_.position();
    if (!ready(h)) return Status::QueueEmpty;
    take(out, h);
    release(h, 1);
    return Status::Ok;
  }
  /// Pops up to out.size() elements, releasing the cells once. Returns how many.
  std::size_t try_pop_batch(std::span<T> out) noexcept {
    const std::uint64_t h = consumer_.position();
    std::size_t n = 0;
    while (n < out.size() && ready(h + n)) {
      take(out[n], h + n);
      ++n;
    }
    if (n) release(h, static_cast<std::uint32_t>(n));
    return n;
  }
  /// Blocks until an element arrives or `timeout` passes (Status::Timeout).
  Status pop(T& out, std::chrono::nanoseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (!detail::wait_until([&] { return ready(consumer_.position()); }, deadline)) return Status::Timeout;
    return try_pop(out);
  }

  // -- any thread -----------------------------------------------------------------------
  QueueStats stats() const noexcept { return view_.stats(); }
  std::size_t capacity() const noexcept { return view_.capacity; }
  std::size_t size_guess() const noexcept { return stats().depth; }

 private:
  Cell& cell(std::uint64_t pos) const noexcept { return cells_[pos & (view_.capacity - 1)]; }
  T* value(std::uint64_t pos) const noexcept { return std::launder(reinterpret_cast<T*>(cell(pos).storage)); }
  // Producer: constructs the element at `pos`; the release store of its sequence word hands
  // it over (pairs with ready()).
  template <class... Args>
  void write(std::uint64_t pos, Args&&... args) noexcept(std::is_nothrow_constructible_v<T, Args...>) {
    Cell& c = cell(pos);
    ::new (static_cast<void*>(c.storage)) T(std::forward<Args>(args)...);
    c.seq.store(pos + 1, std::memory_order_release);
  }
  // Consumer.
  bool ready(std::uint64_t pos) const noexcept {
    return cell(pos).seq.load(std::memory_order_acquire) == pos + 1;  // pairs with write()
  }
  void take(T& out, std::uint64_t pos) noexcept {
    T* p = value(pos);
    out = std::move(*p);
    p->~T();
  }
  // Gives `n` cells from position `h` back (the consumer's index, release: pairs with the
  // producer's reserve()). max_depth samples the producer's published tail once per 4,096
  // positions (and at the first) through RingConsumer::available(): that line is the one this
  // layout keeps off the consumer's path; read every 64th pop, it took one-at-a-time
  // throughput from ~120 to ~35 M msg/s in the benchmark.
  void release(std::uint64_t h, std::uint32_t n) noexcept {
    if ((h & kDepthSample) == 0 || ((h ^ (h + n)) & ~kDepthSample) != 0) (void)consumer_.available(~0u);
    consumer_.release(n);
  }
  static constexpr std::uint64_t kDepthSample = 4095;

  detail::AlignedBytes indices_;
  detail::AlignedBytes storage_;
  RingView view_{};
  Cell* cells_ = nullptr;
  alignas(kIndexAlign) RingProducer<> producer_;  // touched by the producer thread only
  alignas(kIndexAlign) RingConsumer<> consumer_;  // touched by the consumer thread only
};

/// Bounded multi-producer / single-consumer queue of T between host threads: per-slot
/// sequence numbers (D. Vyukov's bounded MPMC queue, restricted to one consumer).
/// Producers claim a position with one fetch_add-free CAS loop; host threads only.
template <class T>
class MpscQueue {
  static_assert(std::is_nothrow_move_constructible_v<T>, "MpscQueue<T> needs a nothrow move");
  struct alignas(64) Cell {
    std::atomic<std::uint64_t> seq;
    alignas(alignof(T)) std::byte storage[sizeof(T)];
  };

 public:
  explicit MpscQueue(std::size_t capacity) {
    std::size_t cap = 2;
    while (cap < capacity) cap <<= 1;
    mask_ = cap - 1;
    cells_ = std::unique_ptr<Cell[]>(new Cell[cap]);
    for (std::size_t i = 0; i < cap; ++i) cells_[i].seq.store(i, std::memory_order_relaxed);
  }
  MpscQueue(const MpscQueue&) = delete;
  MpscQueue& operator=(const MpscQueue&) = delete;
  ~MpscQueue() {
    T tmp;
    if constexpr (std::is_default_constructible_v<T>)
      while (try_pop(tmp) == Status::Ok) {
      }
  }

  /// Any thread. Never blocks; QueueFull when no slot is free.
  template <class U>
  Status try_push(U&& v) noexcept {
    std::uint64_t pos = tail_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& c = cells_[pos & mask_];
      const std::uint64_t seq = c.seq.load(std::memory_order_acquire);  // pairs with try_pop's release
      const auto diff = static_cast<std::int64_t>(seq) - static_cast<std::int64_t>(pos);
      if (diff == 0) {
        if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          ::new (static_cast<void*>(c.storage)) T(std::forward<U>(v));
          c.seq.store(pos + 1, std::memory_order_release);  // pairs with try_pop's acquire
          enqueued_.fetch_add(1, std::memory_order_relaxed);
          return Status::Ok;
        }
      } else if (diff < 0) {
        return Status::QueueFull;
      } else {
        pos = tail_.load(std::memory_order_relaxed);
      }
    }
  }
  template <class U>
  Status push_or_drop(U&& v) noexcept {
    const Status s = try_push(std::forward<U>(v));
    if (s == Status::QueueFull) dropped_.fetch_add(1, std::memory_order_relaxed);
    return s;
  }
  Status push(const T& v, std::chrono::nanoseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    Status s = Status::QueueFull;
    detail::wait_until([&] { return (s = try_push(v)) != Status::QueueFull; }, deadline);
    return s == Status::QueueFull ? Status::Timeout : s;
  }

  /// The single consumer thread.
  Status try_pop(T& out) noexcept {
    Cell& c = cells_[head_ & mask_];
    const std::uint64_t seq = c.seq.load(std::memory_order_acquire);  // pairs with try_push's release
    if (seq != head_ + 1) return Status::QueueEmpty;
    T* p = std::launder(reinterpret_cast<T*>(c.storage));
    out = std::move(*p);
    p->~T();
    c.seq.store(head_ + mask_ + 1, std::memory_order_release);  // frees the cell for lap+1
    ++head_;
    dequeued_.store(head_, std::memory_order_relaxed);
    const std::uint64_t depth = enqueued_.load(std::memory_order_relaxed) - head_ + 1;
    if (depth > max_depth_.load(std::memory_order_relaxed)) max_depth_.store(depth, std::memory_order_relaxed);
    return Status::Ok;
  }
  std::size_t try_pop_batch(std::span<T> out) noexcept {
    std::size_t n = 0;
    while (n < out.size() && try_pop(out[n]) == Status::Ok) ++n;
    return n;
  }
  Status pop(T& out, std::chrono::nanoseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    Status s = Status::QueueEmpty;
    detail::wait_until([&] { return (s = try_pop(out)) == Status::Ok; }, deadline);
    return s == Status::Ok ? s : Status::Timeout;
  }

  QueueStats stats() const noexcept {
    QueueStats s;
    s.enqueued = enqueued_.load(std::memory_order_relaxed);
    s.dequeued = dequeued_.load(std::memory_order_relaxed);
    s.dropped = dropped_.load(std::memory_order_relaxed);
    s.depth = s.enqueued >= s.dequeued ? s.enqueued - s.dequeued : 0;
    s.max_depth = max_depth_.load(std::memory_order_relaxed);
    return s;
  }
  std::size_t capacity() const noexcept { return mask_ + 1; }

 private:
  std::unique_ptr<Cell[]> cells_;
  std::size_t mask_ = 0;
  alignas(kIndexAlign) std::atomic<std::uint64_t> tail_{0};
  std::atomic<std::uint64_t> enqueued_{0};
  std::atomic<std::uint64_t> dropped_{0};
  alignas(kIndexAlign) std::uint64_t head_ = 0;
  std::atomic<std::uint64_t> dequeued_{0};
  std::atomic<std::uint64_t> max_depth_{0};
};

// =========================================================================================
// MessageQueue: the backend-agnostic interface to a queue of whole messages (envelope +
// payload bytes), as the seed's MessageQueue trait. Ring endpoints above are what the
// kernels use on their hot path; this interface is for code that holds "some queue".
// =========================================================================================
class MessageQueue {
 public:
  virtual ~MessageQueue() = default;
  /// Copies one message (envelope followed by payload) into the queue.
  virtual Status try_enqueue(std::span<const std::byte> message) noexcept = 0;
  /// Copies the oldest message into `out`; `size` receives its length.
  virtual Status try_dequeue(std::span<std::byte> out, std::size_t& size) noexcept = 0;
  virtual QueueStats stats() const noexcept = 0;
  virtual std::size_t capacity() const noexcept = 0;
  virtual std::size_t max_message_size() const noexcept = 0;
};

/// A MessageQueue over one SPSC ring in host memory (one producer thread, one consumer).
class SpscMessageQueue final : public MessageQueue {
 public:
  SpscMessageQueue(std::size_t capacity, std::size_t max_message_size);
  Status try_enqueue(std::span<const std::byte> message) noexcept override;
  Status try_dequeue(std::span<std::byte> out, std::size_t& size) noexcept override;
  QueueStats stats() const noexcept override { return view_.stats(); }
  std::size_t capacity() const noexcept override { return view_.capacity; }
  std::size_t max_message_size() const noexcept override { return view_.slot_size - sizeof(std::uint32_t) * 4; }

 private:
  detail::AlignedBytes indices_;
  detail::AlignedBytes storage_;
  RingView view_{};
  alignas(kIndexAlign) RingProducer<> producer_;
  alignas(kIndexAlign) RingConsumer<> consumer_;
};

}  // namespace ringkernel
