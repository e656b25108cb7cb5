#include "ringkernel/hlc.hpp"

#include <ctime>
#include <string>

namespace ringkernel {

std::uint64_t hlc::wall_clock_us() noexcept {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);  // vDSO: no system call
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000u + static_cast<std::uint64_t>(ts.tv_nsec) / 1000u;
}

Result<HlcTimestamp> HlcClock::update(const HlcTimestamp& remote) noexcept {
  const std::uint64_t now = hlc::wall_clock_us();
  if (remote.physical > now + max_skew_us_) {
    return Error(ErrorCode::ClockSkew,
                 "remote timestamp is " + std::to_string(remote.physical - now) +
                     " us ahead of the local clock (bound " + std::to_string(max_skew_us_) +
                     " us); the clock was left unchanged");
  }
  const std::uint64_t r = hlc::pack(remote);
  std::uint64_t prev = state_.load(std::memory_order_relaxed);
  std::uint64_t next;
  do {
    next = hlc::next_merge(prev, r, now);
  } while (!state_.compare_exchange_weak(prev, next, std::memory_order_relaxed));
  return hlc::unpack(next, node_id_);
}

std::uint64_t HlcClock::tick_batch(std::uint32_t n) noexcept {
  const std::uint64_t now = hlc::wall_clock_us();
  std::uint64_t prev = state_.load(std::memory_order_relaxed);
  std::uint64_t first;
  do {
    first = hlc::next_tick(prev, now);
  } while (!state_.compare_exchange_weak(prev, first + (n ? n - 1 : 0), std::memory_order_relaxed));
  return first;
}

}  // namespace ringkernel
