#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <ctime>

#include "ringkernel/runtime.hpp"

namespace ringkernel::detail {

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
