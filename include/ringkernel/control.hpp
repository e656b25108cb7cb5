// ringkernel/control.hpp — the per-kernel control block (128 bytes).
//
// Shared between the host and the kernel (mapped pinned memory on CUDA). Every word has
// exactly one writer, named below; the other side only reads it. Host-written words are
// stored one at a time with release stores (never a whole-block memcpy: the device owns
// some of these words). Queue indices do not live here: each ring keeps its own indices
// on separate 128-byte lines.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "ringkernel/hlc.hpp"

namespace ringkernel {

/// Kernel-written error codes (ControlBlock::last_error, TelemetryBuffer::last_error).
enum class DeviceError : std::uint32_t {
  None = 0,
  HandlerFault = 1,      ///< the handler raised an error (ctx.fail)
  BadMessage = 2,        ///< a slot failed validation and was dropped
  BarrierInParallel = 3, ///< sync_threads() called in parallel mode
  K2KOverflow = 4,       ///< a K2K send found its ring full (handler saw QueueFull)
  DeviceTrap = 5,        ///< the GPU kernel died (trap, illegal address); see the native error
};

struct alignas(128) ControlBlock {
  // -- written by the host -------------------------------------------------------------
  std::uint32_t is_active;          //   0  1 = process messages, 0 = hold them (deactivated)
  std::uint32_t should_terminate;   //   4  1 = leave the persistent loop
  std::uint64_t host_generation;    //   8  bumped with every host command (diagnostics)
  // -- written by the kernel -----------------------------------------------------------
  std::uint32_t has_terminated;     //  16  1 = the loop has exited; nothing runs any more
  std::uint32_t last_error;         //  20  DeviceError
  std::uint64_t messages_processed; //  24
  std::uint64_t messages_dropped;   //  32
  std::uint64_t heartbeat;          //  40  loop iterations / idle polls; moves while alive
  std::uint32_t acked_active;       //  48  last is_active value the loop has acted on
  std::uint32_t reserved0;          //  52
  HlcTimestamp hlc;                 //  56  kernel clock after its latest event
  // -- written by the host before launch, constant afterwards -------------------------
  std::uint32_t input_capacity;     //  80
  std::uint32_t output_capacity;    //  84
  std::uint32_t input_slot_size;    //  88
  std::uint32_t output_slot_size;   //  92
  std::uint64_t kernel_id;          //  96  numeric id of the kernel
  std::uint64_t tenant_id;          // 104
  std::uint8_t reserved1[16];       // 112 .. 128
};
static_assert(sizeof(ControlBlock) == 128);
static_assert(alignof(ControlBlock) == 128);
static_assert(std::is_trivially_copyable_v<ControlBlock> && std::is_standard_layout_v<ControlBlock>);
static_assert(offsetof(ControlBlock, is_active) == 0);
static_assert(offsetof(ControlBlock, should_terminate) == 4);
static_assert(offsetof(ControlBlock, host_generation) == 8);
static_assert(offsetof(ControlBlock, has_terminated) == 16);
static_assert(offsetof(ControlBlock, last_error) == 20);
static_assert(offsetof(ControlBlock, messages_processed) == 24);
static_assert(offsetof(ControlBlock, messages_dropped) == 32);
static_assert(offsetof(ControlBlock, heartbeat) == 40);
static_assert(offsetof(ControlBlock, acked_active) == 48);
static_assert(offsetof(ControlBlock, hlc) == 56);
static_assert(offsetof(ControlBlock, input_capacity) == 80);
static_assert(offsetof(ControlBlock, output_capacity) == 84);
static_assert(offsetof(ControlBlock, input_slot_size) == 88);
static_assert(offsetof(ControlBlock, output_slot_size) == 92);
static_assert(offsetof(ControlBlock, kernel_id) == 96);
static_assert(offsetof(ControlBlock, tenant_id) == 104);
static_assert(offsetof(ControlBlock, reserved1) == 112);

}  // namespace ringkernel
