// ringkernel/cuda/device_kernel.hpp — what a persistent CUDA kernel knows about itself.
// Plain data shared by the host runtime (src/cuda) and the device loop
// (persistent_kernel.cuh); no CUDA headers needed.
//
// Memory placement (decided by what each side polls):
//   mapped pinned host memory: ControlBlock, TelemetryBuffer, host<->kernel rings, the K2K
//     route table the host edits (RouteTable), device-written counters the host reads;
//   device memory: DeviceKernel itself, handler state, HLC state, K2K rings, the per-batch
//     dispatch words of parallel mode, the tenant directory.
#pragma once

#include <cstdint>

#include "ringkernel/control.hpp"
#include "ringkernel/queue.hpp"
#include "ringkernel/telemetry.hpp"

namespace ringkernel::detail {

inline constexpr std::uint32_t kDeviceMaxRoutes = 16;
/// Device publishes (ctx.publish) that the broker must see travel through a mapped ring
/// to the host's broker. A publish slot holds the envelope, up to kPublishMaxPayload bytes
/// and a 16-byte trailer: the routing version (u32) of a publish already delivered on the
/// device to some kernel subscribers (envelope flag kEnvelopeDeviceRouted).
inline constexpr std::uint32_t kPublishCapacity = 1024;
inline constexpr std::uint32_t kPublishMaxPayload = 512;
inline constexpr std::uint32_t kPublishTrailer = 16;
inline constexpr std::uint8_t kEnvelopeDeviceRouted = 1u << 6;
inline constexpr std::uint32_t kPollerWarps = 1;
/// Envelope flag: slot carries no response (parallel mode keeps one output slot per input).
inline constexpr std::uint8_t kEnvelopeSkip = 1u << 7;

struct RouteEntry {
  std::uint32_t peer;     ///< destination slot (outbound) or source slot (inbound)
  std::uint32_t reserved;
  RingView view;          ///< ring in device memory
};

/// Edited by the host (connect), read by the kernel: entries are written first, then the
/// count with a release store; the kernel's poller acquires the count.
struct RouteTable {
  std::uint32_t out_count;
  std::uint32_t in_count;
  std::uint8_t pad[kIndexAlign - 8];
  RouteEntry out[kDeviceMaxRoutes];
  RouteEntry in[kDeviceMaxRoutes];
};

/// Counters the kernel mirrors for the host (mapped memory, plain stores by the leader).
struct alignas(64) DeviceCounters {
  std::uint64_t dead_letters;
  std::uint64_t tenant_rejections;
  std::uint64_t k2k_sent;
  std::uint64_t started;  ///< 1 once the loop runs (launch check)
  /// Routes block 0's leader has taken into its cache: out_count << 32 | in_count. The
  /// host's connect() waits for it, so a message sent after connect() returns is handled
  /// by a kernel that knows the new route (ctx.k2k_route_count() included).
  std::uint64_t routes_seen;
  // Publishes delivered on the device (mirrors of DeviceWork, for the broker's totals).
  std::uint64_t pub_device_only;   ///< publishes that needed no broker at all
  std::uint64_t pub_delivered;     ///< copies pushed into subscribers' inboxes
  std::uint64_t pub_dropped;       ///< copies a full inbox discarded (drop policy, or a lost race)
};
static_assert(sizeof(DeviceCounters) == 64);

/// Publish delivery on the device (ctx.publish from a kernel to kernel subscribers on the
/// same GPU). The runtime builds one immutable table per routing version in device memory
/// (open addressing on the topic id) and swaps the pointer every kernel reads; each
/// subscriber kernel gets one publish inbox, a device ring it consumes like a K2K route.
inline constexpr std::uint32_t kTopicDeviceSubscribers = 8;
struct DeviceTopicSub {
  RingView view;               ///< the subscriber's publish inbox
  std::uint32_t backpressure;  ///< 1: a full inbox refuses the publish (QueueFull); 0: the copy is dropped, counted
  std::uint32_t reserved;
};
struct DeviceTopicEntry {
  std::uint64_t topic;         ///< 0 = empty
  std::uint64_t type;
  std::uint32_t size;
  std::uint32_t count;         ///< subscribers in subs
  std::uint32_t host_too;      ///< the broker must see each publish too (host subscribers, retention, other kernels)
  std::uint32_t reserved;
  DeviceTopicSub subs[kTopicDeviceSubscribers];
};
struct DeviceTopicTable {
  std::uint32_t capacity;      ///< entries (a power of two) following this header
  std::uint32_t version;       ///< routing version: the host knows which subscriptions it served
  std::uint64_t reserved;
};
/// Inbound route entries for publish inboxes carry this peer (so ctx.message_source() is
/// 0, as for a publish the broker delivers).
inline constexpr std::uint32_t kPublishInboxPeer = ~0u;

/// Actor pool commands: the host writes the command (seq << 32 | op << 24 | index) into
/// the input ring's producer line (RingIndices::command) with a release store; the poller
/// warp loads it with the tail (one load of one line), the block carries it out, and the
/// leader stores seq into `ack` (mapped memory, its own line).
struct alignas(128) ActorMailbox {
  std::uint64_t ack;
  std::uint8_t pad[120];
};

/// Device-memory words the kernel updates with device-scope atomics.
struct alignas(128) DeviceWork {
  std::uint64_t hlc;              ///< packed HLC state (hlc::pack)
  std::uint64_t dead_letters;
  std::uint64_t tenant_rejections;
  std::uint64_t k2k_sent;
  std::uint32_t fault;            ///< first fault code of any block
  std::uint32_t terminate;        ///< a handler asked to terminate
  std::uint32_t exited_blocks;
  std::uint32_t reserved0;
  // parallel mode with several blocks: the batch block 0 hands out
  std::uint64_t batch_epoch;
  std::uint64_t batch_start;      ///< first input position
  std::uint64_t batch_out;        ///< first output position
  std::uint32_t batch_n;
  std::uint32_t batch_source;     ///< 0 = host ring, r + 1 = inbound route r
  std::uint32_t batch_done;       ///< blocks finished with the current epoch
  std::uint32_t stop;             ///< block 0 tells the others to leave
  std::uint64_t batch_hlc;        ///< packed HLC of the batch's first response
  std::uint64_t batch_routes;     ///< block 0's route counts (out << 32 | in) for the other blocks
  // ctx.publish: multi-producer claim of the mapped publish ring (device-side words)
  std::uint64_t pub_claim;
  std::uint64_t pub_head_cache;   ///< last host head seen
  std::uint64_t pub_tail;         ///< device mirror of the published tail (claim order)
  std::uint64_t pub_device_only;  ///< see DeviceCounters
  std::uint64_t pub_delivered;
  std::uint64_t pub_dropped;
};

/// Everything the loop needs, in device memory, constant after launch.
struct DeviceKernel {
  RingView input;                 // host -> kernel (mapped)
  RingView output;                // kernel -> host (mapped)
  RingView publish;               // kernel -> host broker (mapped): topic in correlation_id
  ControlBlock* control;          // mapped
  TelemetryBuffer* telemetry;     // mapped
  RouteTable* routes;             // mapped
  DeviceCounters* counters;       // mapped
  DeviceWork* work;               // device
  void* state;                    // device
  const std::int64_t* tenants;    // device directory: tenant of each slot, -1 = free
  std::int64_t clock_offset_us;   // wall clock µs = globaltimer ns / 1000 + offset
  std::uint64_t node_id;
  std::uint64_t tenant_id;
  std::uint32_t slot;
  std::uint32_t block_size;       // handler threads per block
  std::uint32_t grid_size;
  std::uint32_t mode;             // KernelMode
  std::uint32_t shared_size;      // user scratch bytes
  std::uint32_t pull_mode;        // K2KDelivery::Pull
  std::uint32_t k2k_enabled;
  std::uint32_t directory_size;
  // actor pool (actor_slots > 0): actor i's State at state + i * state_stride
  std::uint32_t actor_slots;
  std::uint32_t state_stride;
  std::uint32_t* actor_alive;     // device: 1 = live, per actor
  const void* initial_state;      // device: the handler's initial State (one copy)
  ActorMailbox* actor_mailbox;    // mapped
  std::uint32_t* actor_faults;    // mapped: per actor, the code of its failure (0 = none)
  DeviceTopicTable* const* topics;  // device: the runtime's current publish routing table (null: none)
  std::uint64_t host_node;        // HLC node id of the host clock (express messages omit it)
  std::uint32_t express;          // data words of the input ring's express line the poller reads (0: off)
  std::uint32_t out_express;      // 1: responses also go to the output ring's express line (actor mode)
  std::uint32_t k2k_express;      // 1: K2K express lines, sent (lone small messages) and taken (actor mode)
  std::uint32_t reserved_express;
};

}  // namespace ringkernel::detail
