// bench/clock.hpp — a nanosecond clock for benchmark handlers that run on every backend:
// %globaltimer on the GPU (32 ns steps on an H100), steady_clock on the host.
#pragma once

#include <chrono>
#include <cstdint>

#include <ringkernel/config.hpp>

namespace rkbench {

RK_HOST_DEVICE inline std::uint64_t clock_ns() {
#if RK_DEVICE_PASS
  std::uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
#else
  return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
}

}  // namespace rkbench
