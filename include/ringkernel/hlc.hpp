// ringkernel/hlc.hpp — hybrid logical clock (Kulkarni et al., "Logical Physical Clocks",
// 2014) for causal order of messages across threads, kernels and devices.
//
// A timestamp is (physical µs since the Unix epoch, logical counter, node id), totally
// ordered in that order. A clock keeps its state packed into one 64-bit word — 52 bits of
// physical microseconds and 12 bits of logical counter — so a tick is one clock read and
// one compare-and-swap, and a logical overflow carries into the physical part (which keeps
// the clock monotonic; it can run at most 1 µs ahead per 4096 events within one µs).
#pragma once

#include <atomic>
#include <compare>
#include <cstdint>

#include "ringkernel/config.hpp"
#include "ringkernel/error.hpp"

namespace ringkernel {

/// Wire form of an HLC timestamp: 24 bytes, no padding.
struct HlcTimestamp {
  std::uint64_t physical = 0;  ///< microseconds since the Unix epoch
  std::uint64_t logical = 0;   ///< events within the same physical microsecond
  std::uint64_t node_id = 0;   ///< tie-break between clocks

  friend constexpr bool operator==(const HlcTimestamp&, const HlcTimestamp&) = default;
  friend constexpr std::strong_ordering operator<=>(const HlcTimestamp& a,
                                                    const HlcTimestamp& b) = default;

  RK_HOST_DEVICE constexpr bool is_zero() const noexcept {
    return physical == 0 && logical == 0 && node_id == 0;
  }
};
static_assert(sizeof(HlcTimestamp) == 24);
static_assert(alignof(HlcTimestamp) == 8);
static_assert(offsetof(HlcTimestamp, physical) == 0);
static_assert(offsetof(HlcTimestamp, logical) == 8);
static_assert(offsetof(HlcTimestamp, node_id) == 16);

namespace hlc {

inline constexpr unsigned kLogicalBits = 12;
inline constexpr std::uint64_t kLogicalMask = (std::uint64_t{1} << kLogicalBits) - 1;

RK_HOST_DEVICE constexpr std::uint64_t pack(std::uint64_t physical_us,
                                            std::uint64_t logical) noexcept {
  return (physical_us << kLogicalBits) | (logical > kLogicalMask ? kLogicalMask : logical);
}
RK_HOST_DEVICE constexpr std::uint64_t pack(const HlcTimestamp& t) noexcept {
  return pack(t.physical, t.logical);
}
RK_HOST_DEVICE constexpr HlcTimestamp unpack(std::uint64_t packed, std::uint64_t node) noexcept {
  return HlcTimestamp{packed >> kLogicalBits, packed & kLogicalMask, node};
}
/// Next local event after `prev` at physical time `now_us` (the HLC send/local rule).
RK_HOST_DEVICE constexpr std::uint64_t next_tick(std::uint64_t prev, std::uint64_t now_us) noexcept {
  const std::uint64_t from_clock = now_us << kLogicalBits;
  return from_clock > prev ? from_clock : prev + 1;
}
/// Receive rule: strictly after both the local state and the remote stamp.
RK_HOST_DEVICE constexpr std::uint64_t next_merge(std::uint64_t prev, std::uint64_t remote,
                                                 std::uint64_t now_us) noexcept {
  const std::uint64_t from_clock = now_us << kLogicalBits;
  const std::uint64_t causal = (prev > remote ? prev : remote) + 1;
  return from_clock > causal ? from_clock : causal;
}

/// Wall clock in microseconds since the Unix epoch.
std::uint64_t wall_clock_us() noexcept;

}  // namespace hlc

/// Thread-safe hybrid logical clock. tick/now never block; concurrent ticks from any
/// number of threads return distinct, increasing timestamps.
class HlcClock {
 public:
  /// Default bound on how far ahead of this clock a remote timestamp may be.
  static constexpr std::uint64_t kDefaultMaxSkewUs = 1'000'000;

  explicit HlcClock(std::uint64_t node_id = 0,
                    std::uint64_t max_skew_us = kDefaultMaxSkewUs) noexcept
      : node_id_(node_id), max_skew_us_(max_skew_us) {}

  HlcClock(const HlcClock&) = delete;
  HlcClock& operator=(const HlcClock&) = delete;

  /// Timestamp for a local or send event.
  HlcTimestamp tick() noexcept {
    const std::uint64_t now = hlc::wall_clock_us();
    std::uint64_t prev = state_.load(std::memory_order_relaxed);
    std::uint64_t next;
    do {
      next = hlc::next_tick(prev, now);
    } while (!state_.compare_exchange_weak(prev, next, std::memory_order_relaxed));
    return hlc::unpack(next, node_id_);
  }

  /// Merge a received timestamp; the result orders after it and after every earlier
  /// event of this clock. A remote stamp more than max_skew_us ahead of the local wall
  /// clock is refused with ErrorCode::ClockSkew and leaves the clock unchanged.
  Result<HlcTimestamp> update(const HlcTimestamp& remote) noexcept;

  /// Merge for a receive that needs no timestamp of its own: every later event of this
  /// clock orders after `remote`. When the clock already orders after it (the common case
  /// for replies), nothing is written: one load, no compare-and-swap, so a receiving thread
  /// does not contend with the threads that tick. Otherwise as update().
  Result<void> observe(const HlcTimestamp& remote) noexcept {
    if (hlc::pack(remote) <= state_.load(std::memory_order_relaxed)) return {};
    if (auto r = update(remote); !r) return r.error();
    return {};
  }

  /// Reserves `n` consecutive events with one compare-and-swap; returns the packed value
  /// of the first (event i is hlc::unpack(first + i, node_id())). For batch sends.
  std::uint64_t tick_batch(std::uint32_t n) noexcept;

  /// Latest timestamp issued (no new event).
  HlcTimestamp now() const noexcept {
    return hlc::unpack(state_.load(std::memory_order_relaxed), node_id_);
  }

  std::uint64_t node_id() const noexcept { return node_id_; }
  std::uint64_t max_skew_us() const noexcept { return max_skew_us_; }

 private:
  std::atomic<std::uint64_t> state_{0};
  std::uint64_t node_id_;
  std::uint64_t max_skew_us_;
};

}  // namespace ringkernel
