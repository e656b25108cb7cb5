// ringkernel.glsl — ringkernel's wire format and device runtime for GLSL compute shaders.
//
// The structs below mirror ringkernel/{hlc,message,queue,control,telemetry}.hpp and
// ringkernel/vulkan/wire.hpp in std430 layout; tests/vulkan/vulkan.test.cpp reads the
// offsets glslc assigned to them out of the SPIR-V and compares each with the C++
// offsetof, and the constants with the C++ enums. Fields the C++ side packs below 32 bits
// are one uint here (named after the packed fields).
//
// A handler file looks like this (see tests/backend/vulkan/*.comp):
//
//     #version 460
//     #include "ringkernel.glsl"
//     struct Item { uint64_t seq; int64_t value; };      // as the C++ RK_MESSAGE types
//     struct Reply { ... };
//     RK_MESSAGE(Item, 0)          // 0: the handler's Request
//     RK_MESSAGE(Reply, 1)         // 1: its Response; 2..: extra types (K2K payloads)
//     #define RK_REQUEST Item
//     #define RK_RESPONSE Reply    // leave undefined for a handler without response
//     // #define RK_STATE MyState  (declared with RK_GPU_TYPE(MyState))
//     #include "ringkernel_kernel.glsl"
//     bool rk_handle(ItemRef req, out Reply resp) { ... }   // req.v is the request
//
// The GLSL structs must match the C++ declarations (scalars only: std430 aligns vectors
// differently; a uint8_t/uint16_t array can be a uint array of the same size). A launch
// compares each RK_MESSAGE struct's size with the C++ type's and refuses a mismatch.
//
// The handler's context (RingContext in C++), for the handler of the current message:
//   rk_thread_id() rk_block_id() rk_warp_id() rk_lane_id() rk_block_dim() rk_grid_dim()
//   rk_mode() rk_kernel_slot() rk_batch_index() rk_global_thread_id()
//   rk_message_source() rk_correlation_id() rk_message_timestamp() rk_message_address()
//   rk_state()                           the persistent state (RK_STATE), rk_state().v
//   rk_shared[]                          LaunchOptions::shared_memory_size bytes (uint words)
//   rk_sync_threads() rk_sync_warp()     actor mode; in parallel mode they fault the kernel
//   rk_warp_ballot/any/all/shuffle/reduce_add   32-lane warps whatever the subgroup size;
//                                        every invocation of the block must call them
//   rk_fence_block/device/system()
//   rk_hlc_tick() rk_hlc_now()           the kernel's hybrid logical clock
//   rk_k2k_send(dest, msg) rk_k2k_try_receive(msg, source) rk_k2k_route_count() rk_k2k_route(i)
//                                        one sending thread at a time (actor mode: thread 0)
//   rk_fail(code) rk_request_terminate() rk_count_dropped(n) rk_should_terminate()
//
// Memory model (Vulkan memory model, GL_KHR_memory_scope_semantics): each ring index and
// control word has one writer, which publishes it with a device-scope atomic store with
// release + MakeAvailable semantics; the peer reads it with an atomic load with acquire +
// MakeVisible semantics, then reads the slots it covers with plain loads. No read-modify-
// write atomic is ever shared with the host. The buffer references carry no coherence
// qualifier: glslang (11.x) turns `coherent` / `volatile` on a buffer_reference block into
// decorations the Vulkan memory model forbids (spirv-val rejects the module), so slot
// accesses are plain and rely on the acquire/release pairs around them, as on CUDA.
#ifndef RINGKERNEL_GLSL
#define RINGKERNEL_GLSL

#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_EXT_shader_atomic_int64 : require
#extension GL_EXT_buffer_reference : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_realtime_clock : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_EXT_control_flow_attributes : enable
#extension GL_EXT_spirv_intrinsics : require

// Device-scope atomics under the Vulkan memory model need the VulkanMemoryModelDeviceScope
// capability (5346), which glslang does not declare by itself: calling this no-op (OpNop)
// once, as the kernel's main() does, declares it.
spirv_instruction(capabilities = [5346], id = 0) void rk_declare_device_scope();

// ---- constants (mirrors of the C++ enums) -------------------------------------------------
// Status (ringkernel/error.hpp)
const uint RK_OK = 0u;
const uint RK_QUEUE_FULL = 1u;
const uint RK_QUEUE_EMPTY = 2u;
const uint RK_TIMEOUT = 3u;
const uint RK_CLOSED = 4u;
const uint RK_INVALID_MESSAGE = 5u;
const uint RK_TOO_LARGE = 6u;
const uint RK_NO_ROUTE = 7u;
const uint RK_TENANT_MISMATCH = 8u;
const uint RK_FAULTED = 9u;
// DeviceError (ringkernel/control.hpp)
const uint RK_ERROR_NONE = 0u;
const uint RK_ERROR_HANDLER_FAULT = 1u;
const uint RK_ERROR_BAD_MESSAGE = 2u;
const uint RK_ERROR_BARRIER_IN_PARALLEL = 3u;
const uint RK_ERROR_K2K_OVERFLOW = 4u;
// KernelMode (ringkernel/types.hpp)
const uint RK_MODE_ACTOR = 0u;
const uint RK_MODE_PARALLEL = 1u;
// EnvelopeFlags (ringkernel/message.hpp)
const uint RK_ENVELOPE_RESPONSE = 1u;
const uint RK_ENVELOPE_K2K = 2u;
// Priority::Normal
const uint RK_PRIORITY_NORMAL = 1u;
// Sizes
const uint RK_INDEX_ALIGN = 128u;
const uint RK_ENVELOPE_SIZE = 48u;
const uint RK_RING_HEADER_SIZE = 256u;  // sizeof(RingIndices); slots follow it
const uint RK_MAX_ROUTES = 64u;         // vulkan::detail::kMaxRoutes
const uint RK_MAX_KERNELS = 4096u;      // RuntimeCore::kMaxKernels (directory entries)
const uint RK_WARP_SIZE = 32u;          // kWarpSize: warps are 32 lanes on every device
const uint RK_HLC_LOGICAL_BITS = 12u;   // hlc::kLogicalBits
// ParamFlags (ringkernel/vulkan/wire.hpp)
const uint RK_FLAG_K2K = 1u;
const uint RK_FLAG_PULL = 2u;
const uint RK_FLAG_RESPONSE = 4u;

// ---- wire structs ---------------------------------------------------------------------------
struct RkHlcTimestamp {
  uint64_t physical;
  uint64_t logical;
  uint64_t node_id;
};

struct RkEnvelope {
  uint64_t type_id;
  uint64_t correlation_id;
  RkHlcTimestamp timestamp;
  uint payload_size;
  uint source_kernel_priority_flags;  // u16 source_kernel | u8 priority << 16 | u8 flags << 24
};

struct RkRingIndices {
  uint64_t tail;
  uint64_t dropped;
  uint producer_closed;
  uint reserved0;
  uint64_t claim;
  uint express[24];  // RingIndices::express (unused by Vulkan kernels)
  uint64_t head;
  uint64_t max_depth;
  uint consumer_closed;
  uint pad1[27];
};

struct RkControlBlock {
  uint is_active;
  uint should_terminate;
  uint64_t host_generation;
  uint has_terminated;
  uint last_error;
  uint64_t messages_processed;
  uint64_t messages_dropped;
  uint64_t heartbeat;
  uint acked_active;
  uint reserved0;
  RkHlcTimestamp hlc;
  uint input_capacity;
  uint output_capacity;
  uint input_slot_size;
  uint output_slot_size;
  uint64_t kernel_id;
  uint64_t tenant_id;
  uint reserved1[4];
};

struct RkTelemetryBuffer {
  uint64_t messages_processed;
  uint64_t messages_dropped;
  uint64_t total_latency_us;
  uint64_t min_latency_us;
  uint64_t max_latency_us;
  uint input_queue_depth;
  uint output_queue_depth;
  uint last_error;
  uint reserved0;
  uint64_t k2k_sent;
};

struct RkRouteEntry {
  uint64_t ring;
  uint peer;
  uint capacity;
  uint slot_size;
  uint reserved[3];
};

struct RkKernelParams {
  uint64_t input_ring;
  uint64_t output_ring;
  uint64_t state;
  uint64_t directory;
  uint64_t node_id;
  uint64_t max_skew_us;
  uint64_t tenant_id;
  uint input_capacity;
  uint input_slot_size;
  uint output_capacity;
  uint output_slot_size;
  uint kernel_slot;
  uint flags;
  uint max_batches;
  uint max_messages;
  uint reserved0[10];
  uint64_t calib_host_us;
  uint64_t calib_seq;
  uint out_route_count;
  uint in_route_count;
  uint reserved1[26];
  uint64_t calib_device_clock;
  uint64_t calib_seen_seq;
  uint64_t hlc;
  uint64_t dead_letters;
  uint64_t tenant_rejections;
  uint64_t k2k_sent;
  uint next_ring;
  uint reserved2[19];
  RkRouteEntry out_routes[RK_MAX_ROUTES];
  RkRouteEntry in_routes[RK_MAX_ROUTES];
};

struct RkKernelBlock {
  RkControlBlock control;
  RkTelemetryBuffer telemetry;
  uint reserved[16];
  RkKernelParams params;
};

// ---- typed views of device memory ----------------------------------------------------------
layout(buffer_reference, std430, buffer_reference_align = 128) buffer RkKernelBlockRef {
  RkKernelBlock b;
};
layout(buffer_reference, std430, buffer_reference_align = 128) buffer RkRingRef {
  RkRingIndices idx;
};
layout(buffer_reference, std430, buffer_reference_align = 16) buffer RkEnvelopeRef {
  RkEnvelope env;
};
layout(buffer_reference, std430, buffer_reference_align = 8) buffer RkDirectoryRef {
  uint64_t tenant_plus_one[RK_MAX_KERNELS];
};

layout(push_constant) uniform RkPush {
  RkKernelBlockRef kernel;
} rk_push;

// ---- scoped atomics -------------------------------------------------------------------------
// Device scope: the peer is the host or another kernel of the device. Each acquire pairs with
// the release store of the index's single writer (named at the call sites).
#define RK_SEM_ACQ (gl_SemanticsAcquire | gl_SemanticsMakeVisible)
#define RK_SEM_REL (gl_SemanticsRelease | gl_SemanticsMakeAvailable)
#define rk_load_acquire(p) atomicLoad(p, gl_ScopeDevice, gl_StorageSemanticsBuffer, RK_SEM_ACQ)
#define rk_store_release(p, v) atomicStore(p, v, gl_ScopeDevice, gl_StorageSemanticsBuffer, RK_SEM_REL)
#define rk_load_relaxed(p) atomicLoad(p, gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsRelaxed)
#define rk_store_relaxed(p, v) atomicStore(p, v, gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsRelaxed)

// ---- ring operations ------------------------------------------------------------------------
// A ring is its RkRingIndices (256 bytes) followed by capacity slots of slot_size bytes;
// positions grow without bound, the slot of position p is p & (capacity - 1).
uint64_t rk_ring_slot(uint64_t ring, uint capacity, uint slot_size, uint64_t pos) {
  return ring + RK_RING_HEADER_SIZE + (pos & uint64_t(capacity - 1u)) * uint64_t(slot_size);
}

// Consumer side (the kernel's input and inbound K2K rings). `head` is the consumer's own
// index (only it writes it), `tail_cache` its cached copy of the producer's.
uint rk_ring_available(RkRingRef r, uint64_t head, inout uint64_t tail_cache, uint want) {
  uint64_t ready = tail_cache - head;
  if (ready < uint64_t(want)) {
    tail_cache = rk_load_acquire(r.idx.tail);  // pairs with the producer's publish
    ready = tail_cache - head;
  }
  return uint(min(ready, uint64_t(want)));
}
void rk_ring_release(RkRingRef r, uint64_t new_head) {
  rk_store_release(r.idx.head, new_head);  // pairs with the producer's reserve
}

// Producer side (the output ring and outbound K2K rings).
uint rk_ring_free(RkRingRef r, uint capacity, uint64_t tail, inout uint64_t head_cache, uint want) {
  uint64_t free_slots = uint64_t(capacity) - (tail - head_cache);
  if (free_slots < uint64_t(want)) {
    head_cache = rk_load_acquire(r.idx.head);  // pairs with the consumer's release
    free_slots = uint64_t(capacity) - (tail - head_cache);
  }
  return uint(min(free_slots, uint64_t(want)));
}
void rk_ring_publish(RkRingRef r, uint64_t new_tail) {
  rk_store_release(r.idx.tail, new_tail);  // pairs with the consumer's available
}

// ---- hybrid logical clock (ringkernel/hlc.hpp) ------------------------------------------
const uint64_t RK_HLC_LOGICAL_MASK = (uint64_t(1) << RK_HLC_LOGICAL_BITS) - uint64_t(1);

uint64_t rk_hlc_pack(uint64_t physical_us, uint64_t logical) {
  return (physical_us << RK_HLC_LOGICAL_BITS) | min(logical, RK_HLC_LOGICAL_MASK);
}
RkHlcTimestamp rk_hlc_unpack(uint64_t packed, uint64_t node) {
  return RkHlcTimestamp(packed >> RK_HLC_LOGICAL_BITS, packed & RK_HLC_LOGICAL_MASK, node);
}
uint64_t rk_hlc_next_tick(uint64_t prev, uint64_t now_us) {
  const uint64_t from_clock = now_us << RK_HLC_LOGICAL_BITS;
  return from_clock > prev ? from_clock : prev + 1ul;
}
uint64_t rk_hlc_next_merge(uint64_t prev, uint64_t remote, uint64_t now_us) {
  const uint64_t from_clock = now_us << RK_HLC_LOGICAL_BITS;
  const uint64_t causal = max(prev, remote) + 1ul;
  return max(from_clock, causal);
}

// ---- per-dispatch state shared by the workgroup (set by ringkernel_kernel.glsl) -------------
// The device clock is calibrated against the host's wall clock: the host writes
// calib_host_us and bumps calib_seq; the kernel's leader pairs it with its own clock.
shared uint64_t rk_s_calib_host_us;
shared uint64_t rk_s_calib_device;
// The kernel clock (packed, hlc::pack): loaded from KernelParams::hlc when a dispatch starts,
// stored back when the leader publishes telemetry; workgroup atomics in between.
shared uint64_t rk_s_hlc;
shared uint rk_s_fault;          // first DeviceError / handler code raised by any thread
shared uint rk_s_terminate;      // request_terminate() was called
shared uint rk_s_dropped;        // count_dropped() from the handler

// Per-invocation description of the message being handled.
RkHlcTimestamp rk_msg_timestamp_;
uint64_t rk_msg_correlation_;
uint64_t rk_msg_payload_;
uint rk_msg_source_;
uint rk_thread_;
uint rk_block_;
uint rk_batch_index_;

RkKernelBlockRef rk_kernel() { return rk_push.kernel; }

/// Host wall-clock microseconds as seen from the device (calibrated).
uint64_t rk_now_us() {
  const uint64_t dev = clockRealtimeEXT();
  const uint64_t since = dev >= rk_s_calib_device ? dev - rk_s_calib_device : 0ul;
  return rk_s_calib_host_us + since / 1000ul;  // device clock in ns (NVIDIA globaltimer, Mesa)
}

// The clock's compare-and-swap on the workgroup's copy (safe from any thread of the kernel).
uint64_t rk_hlc_cas_(uint64_t expected, uint64_t desired) {
  return atomicCompSwap(rk_s_hlc, expected, desired, gl_ScopeWorkgroup, gl_StorageSemanticsShared, gl_SemanticsRelaxed,
                        gl_StorageSemanticsShared, gl_SemanticsRelaxed);
}
uint64_t rk_hlc_load_() {
  return atomicLoad(rk_s_hlc, gl_ScopeWorkgroup, gl_StorageSemanticsShared, gl_SemanticsRelaxed);
}

/// Advances the kernel clock by one local event; safe from any thread.
uint64_t rk_hlc_tick_packed() {
  const uint64_t now = rk_now_us();
  uint64_t prev = rk_hlc_load_();
  for (;;) {
    const uint64_t next = rk_hlc_next_tick(prev, now);
    const uint64_t seen = rk_hlc_cas_(prev, next);
    if (seen == prev) return next;
    prev = seen;
  }
  return 0ul;
}
/// Reserves n consecutive events; returns the first (as HlcClock::tick_batch).
uint64_t rk_hlc_tick_batch(uint n) {
  const uint64_t now = rk_now_us();
  uint64_t prev = rk_hlc_load_();
  for (;;) {
    const uint64_t first = rk_hlc_next_tick(prev, now);
    const uint64_t seen = rk_hlc_cas_(prev, first + uint64_t(n) - 1ul);
    if (seen == prev) return first;
    prev = seen;
  }
  return 0ul;
}
/// Merges a received stamp; false (clock unchanged) when it is beyond the skew bound.
bool rk_hlc_merge(RkHlcTimestamp remote) {
  const uint64_t now = rk_now_us();
  if (remote.physical > now + rk_kernel().b.params.max_skew_us) return false;
  const uint64_t r = rk_hlc_pack(remote.physical, remote.logical);
  uint64_t prev = rk_hlc_load_();
  for (;;) {
    const uint64_t next = rk_hlc_next_merge(prev, r, now);
    const uint64_t seen = rk_hlc_cas_(prev, next);
    if (seen == prev) return true;
    prev = seen;
  }
  return true;
}

// ---- the handler's context (mirror of RingContext) ------------------------------------------
uint rk_thread_id() { return rk_thread_; }
uint rk_block_id() { return rk_block_; }
uint rk_warp_id() { return rk_thread_ / RK_WARP_SIZE; }
uint rk_lane_id() { return rk_thread_ % RK_WARP_SIZE; }
uint rk_kernel_slot() { return rk_kernel().b.params.kernel_slot; }
uint rk_batch_index() { return rk_batch_index_; }
uint64_t rk_correlation_id() { return rk_msg_correlation_; }
/// 0 = the host, otherwise the sending kernel's slot + 1.
uint rk_message_source() { return rk_msg_source_; }
RkHlcTimestamp rk_message_timestamp() { return rk_msg_timestamp_; }
/// Device address of the message payload in its ring slot (for large payloads).
uint64_t rk_message_address() { return rk_msg_payload_; }
RkHlcTimestamp rk_hlc_tick() { return rk_hlc_unpack(rk_hlc_tick_packed(), rk_kernel().b.params.node_id); }
RkHlcTimestamp rk_hlc_now() { return rk_hlc_unpack(rk_hlc_load_(), rk_kernel().b.params.node_id); }

/// Stops the kernel with an error the host sees as KernelFaulted (code 0 = HandlerFault).
void rk_fail(uint code) { atomicCompSwap(rk_s_fault, 0u, code != 0u ? code : RK_ERROR_HANDLER_FAULT); }
/// Terminates the kernel after the current batch.
void rk_request_terminate() { atomicOr(rk_s_terminate, 1u); }
/// Counts messages the handler discarded on purpose.
void rk_count_dropped(uint n) { atomicAdd(rk_s_dropped, n); }
/// True once the host asked the kernel to terminate (for handlers that wait in a loop).
bool rk_should_terminate() { return rk_load_acquire(rk_kernel().b.control.should_terminate) != 0u; }

// Fences (RingContext::fence): block = workgroup, device and system = device scope (the
// widest scope a Vulkan shader can name).
void rk_fence_block() { memoryBarrier(gl_ScopeWorkgroup, gl_StorageSemanticsShared | gl_StorageSemanticsBuffer, gl_SemanticsAcquireRelease); }
void rk_fence_device() { memoryBarrier(gl_ScopeDevice, gl_StorageSemanticsShared | gl_StorageSemanticsBuffer, gl_SemanticsAcquireRelease); }
void rk_fence_system() { rk_fence_device(); }

// ---- K2K (kernel-to-kernel) ------------------------------------------------------------------
// A send writes envelope + payload into the route's ring and publishes its tail: call it from
// one thread per kernel at a time (actor mode: thread 0). Counted as in the CPU backend.
uint rk_k2k_route_count() {
  return min(rk_load_acquire(rk_kernel().b.params.out_route_count), RK_MAX_ROUTES);  // pairs with connect()
}
uint rk_k2k_route(uint i) {
  if (i >= rk_k2k_route_count()) return 0xFFFFFFFFu;
  return rk_kernel().b.params.out_routes[i].peer;
}

/// Finds room for one message to `dest`: RK_OK with the slot address, or the status.
uint rk_k2k_reserve_(uint dest, uint payload_size, out uint64_t slot, out uint route, out uint64_t tail) {
  RkKernelBlockRef k = rk_kernel();
  slot = 0ul;
  route = 0u;
  tail = 0ul;
  if ((k.b.params.flags & RK_FLAG_K2K) == 0u) {
    atomicAdd(k.b.params.dead_letters, 1ul);
    return RK_NO_ROUTE;
  }
  const uint n = rk_k2k_route_count();
  for (uint i = 0u; i < n; ++i) {
    if (k.b.params.out_routes[i].peer != dest) continue;
    const RkRouteEntry e = k.b.params.out_routes[i];
    RkRingRef r = RkRingRef(e.ring);
    if (rk_load_acquire(r.idx.consumer_closed) != 0u) {  // pairs with the receiver's exit
      atomicAdd(k.b.params.dead_letters, 1ul);
      return RK_CLOSED;
    }
    if (payload_size + RK_ENVELOPE_SIZE > e.slot_size) return RK_TOO_LARGE;
    const uint64_t t = rk_load_relaxed(r.idx.tail);     // own index
    const uint64_t head = rk_load_acquire(r.idx.head);  // pairs with the receiver's release
    if (t - head >= uint64_t(e.capacity)) return RK_QUEUE_FULL;
    slot = rk_ring_slot(e.ring, e.capacity, e.slot_size, t);
    route = i;
    tail = t;
    return RK_OK;
  }
  const uint64_t t = RkDirectoryRef(k.b.params.directory).tenant_plus_one[min(dest, RK_MAX_KERNELS - 1u)];
  if (dest < RK_MAX_KERNELS && t != 0ul && t - 1ul != k.b.params.tenant_id) {
    atomicAdd(k.b.params.tenant_rejections, 1ul);
    return RK_TENANT_MISMATCH;
  }
  atomicAdd(k.b.params.dead_letters, 1ul);
  return RK_NO_ROUTE;
}
void rk_k2k_publish_(uint route, uint64_t slot, uint64_t tail, uint64_t type_id, uint payload_size) {
  RkKernelBlockRef k = rk_kernel();
  const RkHlcTimestamp ts = rk_hlc_tick();
  RkEnvelopeRef(slot).env = RkEnvelope(type_id, rk_msg_correlation_, ts, payload_size,
                                       ((k.b.params.kernel_slot + 1u) & 0xFFFFu) | (RK_PRIORITY_NORMAL << 16) |
                                           (RK_ENVELOPE_K2K << 24));
  rk_ring_publish(RkRingRef(k.b.params.out_routes[route].ring), tail + 1ul);
  atomicAdd(k.b.params.k2k_sent, 1ul);
}

/// Pull mode: finds the next inbound message of the given type; RK_OK with its slot.
uint rk_k2k_peek_(uint64_t type_id, uint payload_size, out uint64_t slot, out uint route) {
  RkKernelBlockRef k = rk_kernel();
  slot = 0ul;
  route = 0u;
  const uint n = min(rk_load_acquire(k.b.params.in_route_count), RK_MAX_ROUTES);  // pairs with connect()
  for (uint j = 0u; j < n; ++j) {
    const uint i = (k.b.params.next_ring + j) % n;
    const RkRouteEntry e = k.b.params.in_routes[i];
    RkRingRef r = RkRingRef(e.ring);
    const uint64_t head = rk_load_relaxed(r.idx.head);  // own index
    const uint64_t tail = rk_load_acquire(r.idx.tail);  // pairs with the sender's publish
    if (tail == head) continue;
    const uint64_t s = rk_ring_slot(e.ring, e.capacity, e.slot_size, head);
    const RkEnvelope env = RkEnvelopeRef(s).env;
    if (env.type_id != type_id || env.payload_size != payload_size) continue;  // left for its own type
    slot = s;
    route = i;
    return RK_OK;
  }
  return RK_QUEUE_EMPTY;
}
uint rk_k2k_consume_(uint route, uint64_t slot) {
  RkKernelBlockRef k = rk_kernel();
  const RkRouteEntry e = k.b.params.in_routes[route];
  RkRingRef r = RkRingRef(e.ring);
  rk_hlc_merge(RkEnvelopeRef(slot).env.timestamp);
  rk_ring_release(r, rk_load_relaxed(r.idx.head) + 1ul);
  const uint n = min(rk_load_acquire(k.b.params.in_route_count), RK_MAX_ROUTES);
  k.b.params.next_ring = (route + 1u) % max(n, 1u);
  return e.peer;
}

// ---- message and state declarations ----------------------------------------------------------
#define RK_CAT_(a, b) a##b
#define RK_CAT(a, b) RK_CAT_(a, b)

/// Declares plain data the kernel keeps in device memory: gives T a reference type TRef.
#define RK_GPU_TYPE(T) \
  layout(buffer_reference, std430, buffer_reference_align = 8) buffer T##Ref { T v; };

/// Declares message type T as message INDEX of the kernel (0 request, 1 response, 2.. extras
/// in RK_VULKAN_KERNEL order): its type id and size come from the C++ declaration as
/// specialisation constants, and it gets TRef, rk_k2k_send(dest, T) and
/// rk_k2k_try_receive(out T, out uint source).
#define RK_MESSAGE(T, INDEX) \
  layout(constant_id = 100 + INDEX) const uint64_t rk_type_id_##T = 0ul; \
  layout(constant_id = 200 + INDEX) const uint rk_type_size_##T = 0u; \
  layout(buffer_reference, std430, buffer_reference_align = 16) buffer T##Ref { T v; }; \
  uint rk_k2k_send(uint dest, T msg) { \
    uint64_t slot; uint route; uint64_t tail; \
    const uint st = rk_k2k_reserve_(dest, rk_type_size_##T, slot, route, tail); \
    if (st != RK_OK) return st; \
    T##Ref(slot + RK_ENVELOPE_SIZE).v = msg; \
    rk_k2k_publish_(route, slot, tail, rk_type_id_##T, rk_type_size_##T); \
    return RK_OK; \
  } \
  uint rk_k2k_try_receive(out T msg, out uint source) { \
    uint64_t slot; uint route; \
    source = 0u; \
    const uint st = rk_k2k_peek_(rk_type_id_##T, rk_type_size_##T, slot, route); \
    if (st != RK_OK) return st; \
    msg = T##Ref(slot + RK_ENVELOPE_SIZE).v; \
    source = rk_k2k_consume_(route, slot); \
    return RK_OK; \
  }

#endif  // RINGKERNEL_GLSL
