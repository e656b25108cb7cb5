// Waiting policy shared by the host's blocking calls (src/core only).
#pragma once

#include <sched.h>

#include <chrono>
#include <thread>

#include "ringkernel/runtime.hpp"

namespace ringkernel::detail {

/// Spin briefly, then yield, then sleep in growing steps: the waiting policy of blocking
/// host calls on backends without a doorbell.
class Backoff {
 public:
  /// `core`: a kernel whose thread may share this thread's CPU (CPU backend), or null.
  explicit Backoff(KernelCore* core = nullptr) noexcept : core_(core && core->runner_cpu ? core : nullptr) {}
  ~Backoff() {
    if (waiting_here_) core_->waiter_cpu.store(-1, std::memory_order_relaxed);
  }
  Backoff(const Backoff&) = delete;
  Backoff& operator=(const Backoff&) = delete;
  void pause() {
    // After a wake-up Linux often runs the woken kernel thread on the waker's CPU, and
    // spinning here would hold the CPU the kernel needs until the time slice ends (~80 us per
    // round trip, for tens of milliseconds, until the load balancer moves one of them).
    // Sharing a CPU with it, give the CPU away instead (and tell its worker to do the same).
    if (core_ && n_ >= 32 && (n_ & 31u) == 0) {
      const int me = sched_getcpu();
      if (me >= 0 && core_->runner_cpu->load(std::memory_order_relaxed) == me) {
        if (!waiting_here_) core_->waiter_cpu.store(me, std::memory_order_relaxed);
        waiting_here_ = true;
        ++n_;
        std::this_thread::yield();
        return;
      }
    }
    if (n_ < 2048) {
      ++n_;
    } else if (n_ < 2048 + 64) {
      ++n_;
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(step_);
      if (step_ < std::chrono::microseconds(100)) step_ *= 2;
    }
  }

 private:
  KernelCore* core_;
  bool waiting_here_ = false;
  unsigned n_ = 0;
  std::chrono::microseconds step_{2};
};

}  // namespace ringkernel::detail
