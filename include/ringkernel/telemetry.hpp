// ringkernel/telemetry.hpp — the per-kernel telemetry buffer (64 bytes).
//
// Written only by the kernel (relaxed stores of words it alone changes), readable by the
// host at any time while the kernel runs: a reader may see a slightly older value, never a
// torn one. Latencies are measured from the message's HLC stamp to the end of its handler.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace ringkernel {

struct alignas(64) TelemetryBuffer {
  std::uint64_t messages_processed;  //  0
  std::uint64_t messages_dropped;    //  8  rejected slots, K2K dead letters, overflow
  std::uint64_t total_latency_us;    // 16  sum over processed messages
  std::uint64_t min_latency_us;      // 24  UINT64_MAX until the first message
  std::uint64_t max_latency_us;      // 32
  std::uint32_t input_queue_depth;   // 40  at the latest dequeue
  std::uint32_t output_queue_depth;  // 44  at the latest publish
  std::uint32_t last_error;          // 48  DeviceError
  std::uint32_t reserved0;           // 52
  std::uint64_t k2k_sent;            // 56
};
static_assert(sizeof(TelemetryBuffer) == 64);
static_assert(alignof(TelemetryBuffer) == 64);
static_assert(std::is_trivially_copyable_v<TelemetryBuffer> && std::is_standard_layout_v<TelemetryBuffer>);
static_assert(offsetof(TelemetryBuffer, messages_processed) == 0);
static_assert(offsetof(TelemetryBuffer, messages_dropped) == 8);
static_assert(offsetof(TelemetryBuffer, total_latency_us) == 16);
static_assert(offsetof(TelemetryBuffer, min_latency_us) == 24);
static_assert(offsetof(TelemetryBuffer, max_latency_us) == 32);
static_assert(offsetof(TelemetryBuffer, input_queue_depth) == 40);
static_assert(offsetof(TelemetryBuffer, output_queue_depth) == 44);
static_assert(offsetof(TelemetryBuffer, last_error) == 48);
static_assert(offsetof(TelemetryBuffer, k2k_sent) == 56);

/// Host-side snapshot with derived figures.
struct TelemetrySnapshot {
  TelemetryBuffer raw{};
  double mean_latency_us() const noexcept {
    return raw.messages_processed ? double(raw.total_latency_us) / double(raw.messages_processed) : 0.0;
  }
};

}  // namespace ringkernel
