#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <string_view>

#include "ringkernel/runtime.hpp"

namespace ringkernel::detail {

bool asymmetric_barriers() noexcept {
  static const bool on = [] {
    if (const char* e = std::getenv("RINGKERNEL_ASYMMETRIC_BARRIERS"); e != nullptr && std::string_view(e) == "0")
      return false;
    const long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (cmds < 0 || (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return false;
    return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  }();
  return on;
}

void heavy_barrier() noexcept {
  if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) return;
  // Refused (EPERM): a process that does not carry the registration, e.g. a child after
  // fork(). Register again; failing that, the global command gives the same guarantee
  // (every running thread passes a barrier), only more slowly.
  if (errno == EPERM && syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 &&
      syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0)
    return;
  if (syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) == 0) return;
  // The light sides of every Dekker pair rely on this barrier: stop rather than lose a
  // wake-up or let two threads into a lock.
  std::fputs("ringkernel: membarrier failed after registration\n", stderr);
  std::terminate();
}

void BiasedLock::lock_slow() noexcept {
  flag_.lock();
  const void* owner = owner_.load(std::memory_order_relaxed);
  if (owner != nullptr && revoked_.load(std::memory_order_relaxed) == 0) {
    // Another thread holds the bias: take it away for good, then wait until it is not
    // inside the lock. After heavy_barrier() the owner either was already inside (busy_
    // is visible as 1) or will see revoked_ on its next attempt.
    revoked_.store(1, std::memory_order_relaxed);
    heavy_barrier();
    while (busy_.load(std::memory_order_acquire) != 0) {  // pairs with unlock()'s release
    }
    owner_.store(nullptr, std::memory_order_relaxed);
  } else if (owner == nullptr && !ever_biased_ && allow_bias_) {
    ever_biased_ = true;
    owner_.store(token(), std::memory_order_relaxed);  // from its next lock() on
  }
  by_bias_ = false;
}

void Doorbell::wake() noexcept {
  seq_.fetch_add(1, std::memory_order_release);
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&seq_), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

void Doorbell::sleep(std::uint32_t seq, Duration timeout) noexcept {
  if (timeout <= Duration::zero()) return;
  timespec ts;
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
  // Returns at once if seq_ moved since `seq` was read (a ring between the check and now).
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&seq_), FUTEX_WAIT_PRIVATE, seq, &ts, nullptr, 0);
}

}  // namespace ringkernel::detail
