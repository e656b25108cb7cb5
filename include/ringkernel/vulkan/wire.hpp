// ringkernel/vulkan/wire.hpp — the per-kernel block the Vulkan backend shares with its
// shader (plain C++, no Vulkan headers).
//
// Every kernel owns one KernelBlock in host-visible memory. The shader reaches it through
// a buffer device address passed as its only push constant, and everything else (rings,
// state, K2K routes, the runtime's tenant directory) through addresses stored in it. The
// GLSL mirror is shaders/ringkernel.glsl; tests/vulkan/layout.test.cpp compares the
// offsets glslc assigned to it with the offsetof values below.
//
// Ownership of the words follows control.hpp: each word has one writer. Host-written
// words are stored one at a time (release where the shader acts on them); the shader's
// words are read by the host with relaxed or acquire loads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "ringkernel/control.hpp"
#include "ringkernel/telemetry.hpp"

namespace ringkernel::vulkan::detail {

/// Routes per kernel and direction (as on the CPU backend).
inline constexpr std::uint32_t kMaxRoutes = 64;

/// Specialisation constant ids shared with ringkernel_kernel.glsl.
enum SpecId : std::uint32_t {
  kSpecBlockSize = 0,     ///< local_size_x: the workgroup (block_size, or padded; see kSpecBlockDim)
  kSpecMode = 1,          ///< KernelMode
  kSpecPersistent = 2,    ///< true: loop until should_terminate; false: one tick per dispatch
  kSpecSharedWords = 3,   ///< 32-bit words of rk_shared (LaunchOptions::shared_memory_size / 4)
  kSpecGridSize = 4,      ///< virtual blocks of a parallel-mode kernel
  kSpecBlockDim = 5,      ///< LaunchOptions::block_size (threads that run the handler)
  kSpecTypeId = 100,      ///< + i: type id of message i (0 request, 1 response, 2.. extras)
  kSpecTypeSize = 200,    ///< + i: sizeof of message i
};

/// KernelParams::flags bits.
enum ParamFlags : std::uint32_t {
  kFlagK2K = 1u << 0,       ///< LaunchOptions::enable_k2k
  kFlagPull = 1u << 1,      ///< K2KDelivery::Pull: inbound K2K waits for k2k_try_receive
  kFlagResponse = 1u << 2,  ///< the handler has a response type
};

/// One K2K route as the shader sees it (32 bytes). Written by the host before the route
/// count that covers it is published.
struct RouteEntry {
  std::uint64_t ring;         //  0  device address of the ring's RingIndices; slots at +256
  std::uint32_t peer;         //  8  destination slot (outbound) / source slot (inbound)
  std::uint32_t capacity;     // 12  power of two
  std::uint32_t slot_size;    // 16
  std::uint32_t reserved[3];  // 20 .. 32
};
static_assert(sizeof(RouteEntry) == 32);
static_assert(offsetof(RouteEntry, ring) == 0);
static_assert(offsetof(RouteEntry, peer) == 8);
static_assert(offsetof(RouteEntry, capacity) == 12);
static_assert(offsetof(RouteEntry, slot_size) == 16);

struct KernelParams {
  // -- written by the host before the first dispatch, constant afterwards (line 0) ------
  std::uint64_t input_ring;         //   0  device address of the host->kernel RingIndices
  std::uint64_t output_ring;        //   8  kernel->host
  std::uint64_t state;              //  16  the handler's persistent state
  std::uint64_t directory;          //  24  runtime tenant directory: u64 per slot, tenant + 1
  std::uint64_t node_id;            //  32  HLC node id of the kernel clock
  std::uint64_t max_skew_us;        //  40  stamps further ahead than this are dropped
  std::uint64_t tenant_id;          //  48
  std::uint32_t input_capacity;     //  56
  std::uint32_t input_slot_size;    //  60
  std::uint32_t output_capacity;    //  64
  std::uint32_t output_slot_size;   //  68
  std::uint32_t kernel_slot;        //  72
  std::uint32_t flags;              //  76  ParamFlags
  std::uint32_t max_batches;        //  80  tick mode: batches per dispatch before returning
  std::uint32_t max_messages;       //  84  tick mode: messages per dispatch (0 = no limit)
  std::uint32_t reserved0[10];      //  88 .. 128
  // -- written by the host while the kernel runs (line 1) --------------------------------
  std::uint64_t calib_host_us;      // 128  host wall clock (µs) when calib_seq was bumped
  std::uint64_t calib_seq;          // 136  bumped after calib_host_us (release)
  std::uint32_t out_route_count;    // 144  published after the entry it covers (release)
  std::uint32_t in_route_count;     // 148
  std::uint32_t reserved1[26];      // 152 .. 256
  // -- written by the shader (line 2) ---------------------------------------------------
  std::uint64_t calib_device_clock; // 256  device clock when the shader saw calib_seq
  std::uint64_t calib_seen_seq;     // 264
  std::uint64_t hlc;                // 272  packed kernel clock (hlc::pack)
  std::uint64_t dead_letters;       // 280  K2K sends without a route (or to a closed kernel)
  std::uint64_t tenant_rejections;  // 288  K2K sends to another tenant's kernel
  std::uint64_t k2k_sent;           // 296
  std::uint32_t next_ring;          // 304  round-robin position over host input and routes
  std::uint32_t reserved2[19];      // 308 .. 384
  // -- route tables, written by the host (connect) ----------------------------------------
  RouteEntry out_routes[kMaxRoutes];  //  384
  RouteEntry in_routes[kMaxRoutes];   // 2432 .. 4480
};
static_assert(sizeof(KernelParams) == 4480);
static_assert(offsetof(KernelParams, input_ring) == 0);
static_assert(offsetof(KernelParams, output_ring) == 8);
static_assert(offsetof(KernelParams, state) == 16);
static_assert(offsetof(KernelParams, directory) == 24);
static_assert(offsetof(KernelParams, node_id) == 32);
static_assert(offsetof(KernelParams, max_skew_us) == 40);
static_assert(offsetof(KernelParams, tenant_id) == 48);
static_assert(offsetof(KernelParams, input_capacity) == 56);
static_assert(offsetof(KernelParams, input_slot_size) == 60);
static_assert(offsetof(KernelParams, output_capacity) == 64);
static_assert(offsetof(KernelParams, output_slot_size) == 68);
static_assert(offsetof(KernelParams, kernel_slot) == 72);
static_assert(offsetof(KernelParams, flags) == 76);
static_assert(offsetof(KernelParams, max_batches) == 80);
static_assert(offsetof(KernelParams, max_messages) == 84);
static_assert(offsetof(KernelParams, calib_host_us) == 128);
static_assert(offsetof(KernelParams, calib_seq) == 136);
static_assert(offsetof(KernelParams, out_route_count) == 144);
static_assert(offsetof(KernelParams, in_route_count) == 148);
static_assert(offsetof(KernelParams, calib_device_clock) == 256);
static_assert(offsetof(KernelParams, calib_seen_seq) == 264);
static_assert(offsetof(KernelParams, hlc) == 272);
static_assert(offsetof(KernelParams, dead_letters) == 280);
static_assert(offsetof(KernelParams, tenant_rejections) == 288);
static_assert(offsetof(KernelParams, k2k_sent) == 296);
static_assert(offsetof(KernelParams, next_ring) == 304);
static_assert(offsetof(KernelParams, out_routes) == 384);
static_assert(offsetof(KernelParams, in_routes) == 2432);

/// The block behind the push-constant address.
struct KernelBlock {
  ControlBlock control;        //    0
  TelemetryBuffer telemetry;   //  128
  std::uint8_t reserved[64];   //  192 .. 256
  KernelParams params;         //  256
};
static_assert(sizeof(KernelBlock) == 4736);
static_assert(offsetof(KernelBlock, control) == 0);
static_assert(offsetof(KernelBlock, telemetry) == 128);
static_assert(offsetof(KernelBlock, params) == 256);
static_assert(std::is_trivially_copyable_v<KernelBlock> && std::is_standard_layout_v<KernelBlock>);

}  // namespace ringkernel::vulkan::detail
