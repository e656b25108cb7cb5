// ringkernel_kernel.glsl — the kernel loop around a GLSL handler. Include it after
// ringkernel.glsl, the message declarations and the RK_REQUEST / RK_RESPONSE / RK_STATE
// defines; then define rk_handle (declared below).
//
// One workgroup runs the kernel. Invocation 0, the leader, owns every index the kernel
// writes: it polls the control block and the rings, picks a batch (host input or one
// inbound K2K route, round robin), and after the batch publishes the output tail and
// releases the input slots — one release store each per batch. The workgroup meets at a
// barrier around each step, so shared variables written by the leader are read only after
// a barrier that follows the write.
//
//  * actor mode: every invocation calls the handler for each message of the batch (two
//    barriers per message); invocation 0's response is sent.
//  * parallel mode: invocation t handles message t of each pass of block_dim messages;
//    responses are compacted in input order with a workgroup scan. grid_dim > 1 is run as
//    grid_dim passes of virtual blocks in this one workgroup (rk_block_id() says which).
//
// Persistent dispatch (RK_PERSISTENT) loops until should_terminate; tick dispatch returns
// when it finds nothing to do or after max_batches batches, and the host dispatches again
// when work arrives.
#ifndef RINGKERNEL_KERNEL_GLSL
#define RINGKERNEL_KERNEL_GLSL

#ifndef RK_REQUEST
#error define RK_REQUEST (declared with RK_MESSAGE(T, 0)) before including ringkernel_kernel.glsl
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint RK_MODE = 0u;
layout(constant_id = 2) const bool RK_PERSISTENT = false;
layout(constant_id = 3) const uint RK_SHARED_WORDS = 1u;
layout(constant_id = 4) const uint RK_GRID_DIM = 1u;
// Threads of the block (LaunchOptions::block_size). The workgroup may be larger: on CPU
// implementations a workgroup narrower than one SIMD vector is padded to the vector width
// (lavapipe runs a loop holding a barrier until its iteration limit when part of the vector
// is empty); the padding invocations take part in the runtime's barriers only.
layout(constant_id = 5) const uint RK_BLOCK_DIM = 1u;

/// LaunchOptions::shared_memory_size bytes of block scratch (RingContext::shared_memory()).
shared uint rk_shared[RK_SHARED_WORDS];

uint rk_block_dim() { return RK_BLOCK_DIM; }
uint rk_mode() { return RK_MODE; }
uint rk_grid_dim() { return RK_GRID_DIM; }
uint64_t rk_global_thread_id() { return uint64_t(rk_block_) * uint64_t(RK_BLOCK_DIM) + uint64_t(rk_thread_); }

#ifdef RK_STATE
/// The handler's persistent state (kept across messages and deactivation).
RK_CAT(RK_STATE, Ref) rk_state() { return RK_CAT(RK_STATE, Ref)(rk_kernel().b.params.state); }
#endif

// ---- block and warp collectives (actor mode; every invocation of the block must call) -------
// Warps are 32 lanes on every device, as on the other backends: the collectives exchange
// through shared memory, so their result does not depend on the device's subgroup size.
shared uint64_t rk_s_warp[gl_WorkGroupSize.x];

bool rk_collectives_allowed_() {
  if (RK_MODE == RK_MODE_PARALLEL) {
    rk_fail(RK_ERROR_BARRIER_IN_PARALLEL);
    return false;
  }
  return true;
}
void rk_barrier_() {
  controlBarrier(gl_ScopeWorkgroup, gl_ScopeWorkgroup, gl_StorageSemanticsShared | gl_StorageSemanticsBuffer,
                 gl_SemanticsAcquireRelease);
}
/// Block-wide barrier (RingContext::sync_threads).
void rk_sync_threads() {
  if (rk_collectives_allowed_()) rk_barrier_();
}
/// Warp-wide barrier; here the whole block meets.
void rk_sync_warp() { rk_sync_threads(); }

uint rk_warp_lanes_() {
  const uint first = (rk_thread_ / RK_WARP_SIZE) * RK_WARP_SIZE;
  return min(RK_WARP_SIZE, RK_BLOCK_DIM - first);
}
uint64_t rk_warp_exchange_(uint64_t v, uint src_lane) {
  if (!rk_collectives_allowed_()) return v;
  rk_s_warp[rk_thread_] = v;
  rk_barrier_();
  const uint src = (rk_thread_ / RK_WARP_SIZE) * RK_WARP_SIZE + (src_lane % RK_WARP_SIZE);
  const uint64_t got = src < RK_BLOCK_DIM ? rk_s_warp[src] : v;
  rk_barrier_();
  return got;
}
/// Bit i set when lane i's predicate is true.
uint rk_warp_ballot(bool pred) {
  if (!rk_collectives_allowed_()) return pred ? 1u : 0u;
  rk_s_warp[rk_thread_] = pred ? 1ul : 0ul;
  rk_barrier_();
  const uint first = (rk_thread_ / RK_WARP_SIZE) * RK_WARP_SIZE;
  const uint lanes = rk_warp_lanes_();
  uint bits = 0u;
  for (uint i = 0u; i < lanes; ++i)
    if (rk_s_warp[first + i] != 0ul) bits |= 1u << i;
  rk_barrier_();
  return bits;
}
bool rk_warp_any(bool pred) { return rk_warp_ballot(pred) != 0u; }
bool rk_warp_all(bool pred) {
  const uint lanes = rk_warp_lanes_();
  const uint lane_mask = lanes == 32u ? 0xFFFFFFFFu : ((1u << lanes) - 1u);
  return (rk_warp_ballot(pred) & lane_mask) == lane_mask;
}
uint64_t rk_warp_shuffle(uint64_t v, uint src_lane) { return rk_warp_exchange_(v, src_lane); }
int64_t rk_warp_shuffle(int64_t v, uint src_lane) { return int64_t(rk_warp_exchange_(uint64_t(v), src_lane)); }
uint rk_warp_shuffle(uint v, uint src_lane) { return uint(rk_warp_exchange_(uint64_t(v), src_lane)); }
int rk_warp_shuffle(int v, uint src_lane) { return int(uint(rk_warp_exchange_(uint64_t(uint(v)), src_lane))); }
float rk_warp_shuffle(float v, uint src_lane) {
  return uintBitsToFloat(uint(rk_warp_exchange_(uint64_t(floatBitsToUint(v)), src_lane)));
}
/// Sum over the warp; every lane receives it.
int64_t rk_warp_reduce_add(int64_t v) {
  if (!rk_collectives_allowed_()) return v;
  rk_s_warp[rk_thread_] = uint64_t(v);
  rk_barrier_();
  const uint first = (rk_thread_ / RK_WARP_SIZE) * RK_WARP_SIZE;
  const uint lanes = rk_warp_lanes_();
  int64_t total = 0l;
  for (uint i = 0u; i < lanes; ++i) total += int64_t(rk_s_warp[first + i]);
  rk_barrier_();
  return total;
}
uint64_t rk_warp_reduce_add(uint64_t v) { return uint64_t(rk_warp_reduce_add(int64_t(v))); }
int rk_warp_reduce_add(int v) { return int(rk_warp_reduce_add(int64_t(v))); }
uint rk_warp_reduce_add(uint v) { return uint(rk_warp_reduce_add(int64_t(v))); }
float rk_warp_reduce_add(float v) {
  if (!rk_collectives_allowed_()) return v;
  rk_s_warp[rk_thread_] = uint64_t(floatBitsToUint(v));
  rk_barrier_();
  const uint first = (rk_thread_ / RK_WARP_SIZE) * RK_WARP_SIZE;
  const uint lanes = rk_warp_lanes_();
  float total = 0.0;
  for (uint i = 0u; i < lanes; ++i) total += uintBitsToFloat(uint(rk_s_warp[first + i]));
  rk_barrier_();
  return total;
}

// ---- the handler ---------------------------------------------------------------------------
#define RK_REQUEST_REF RK_CAT(RK_REQUEST, Ref)
#ifdef RK_RESPONSE
#define RK_RESPONSE_REF RK_CAT(RK_RESPONSE, Ref)
/// Returns true to send `resp` (invocation 0's, in actor mode).
bool rk_handle(RK_REQUEST_REF req, out RK_RESPONSE resp);
#else
void rk_handle(RK_REQUEST_REF req);
#endif

// ---- the loop --------------------------------------------------------------------------------
const uint RK_CMD_RUN = 0u;
const uint RK_CMD_IDLE = 1u;  // tick mode: nothing (more) to do in this dispatch
const uint RK_CMD_EXIT = 2u;  // terminate: should_terminate, a fault, or request_terminate

// Set by the leader, read by the workgroup after the next barrier.
shared uint rk_s_cmd;
shared uint rk_s_count;             // messages in the batch
shared uint64_t rk_s_ring;          // address of the ring being drained
shared uint rk_s_ring_capacity;
shared uint rk_s_ring_slot_size;
shared uint64_t rk_s_in_pos;        // position of the batch's first message
shared uint64_t rk_s_out_pos;       // output position of the batch's first response
shared uint rk_s_source;            // 0 = host input, else sending kernel's slot + 1
shared uint rk_s_route;             // inbound route index + 1, 0 = host input
shared uint rk_s_valid;             // actor mode: the current message passed validation
// Parallel-mode batch results (workgroup atomics, read by the leader after a barrier).
shared uint rk_s_emitted;
shared uint rk_s_pass_total;
shared uint64_t rk_s_first_stamp;
shared uint rk_s_processed;
shared uint rk_s_invalid;
shared uint rk_s_lat_total;
shared uint rk_s_lat_min;
shared uint rk_s_lat_max;

// Leader-private loop state (meaningful in invocation 0 only).
uint64_t rk_l_in_head;       // own index of the host input ring
uint64_t rk_l_in_tail;       // cached producer index
uint64_t rk_l_out_tail;      // own index of the output ring
uint64_t rk_l_out_head;      // cached consumer index
uint64_t rk_l_max_depth;
uint64_t rk_l_processed;
uint64_t rk_l_dropped;
uint64_t rk_l_lat_total;
uint64_t rk_l_lat_min;
uint64_t rk_l_lat_max;
uint64_t rk_l_heartbeat;
uint rk_l_emitted;           // responses written in the current batch
uint rk_l_done;              // messages of the current batch handled (or dropped)
uint rk_l_messages;          // messages handled by this dispatch
uint rk_l_acked;              // last is_active value acknowledged (ControlBlock::acked_active)
uint rk_l_active;             // is_active as last read
uint rk_l_next_ring;
uint rk_l_batches;
uint rk_l_in_depth;
uint rk_l_out_depth;

RkRingRef rk_input_() { return RkRingRef(rk_kernel().b.params.input_ring); }
RkRingRef rk_output_() { return RkRingRef(rk_kernel().b.params.output_ring); }

void rk_leader_calibrate_() {
  RkKernelBlockRef k = rk_kernel();
  const uint64_t seq = rk_load_acquire(k.b.params.calib_seq);  // pairs with the host's calibrate()
  if (seq != k.b.params.calib_seen_seq) {
    k.b.params.calib_device_clock = clockRealtimeEXT();
    k.b.params.calib_seen_seq = seq;
  }
  rk_s_calib_host_us = k.b.params.calib_host_us;
  rk_s_calib_device = k.b.params.calib_device_clock;
}

void rk_leader_init_() {
  RkKernelBlockRef k = rk_kernel();
  RkRingRef in_ring = rk_input_();
  RkRingRef out_ring = rk_output_();
  rk_l_in_head = rk_load_relaxed(in_ring.idx.head);
  rk_l_in_tail = rk_l_in_head;
  rk_l_max_depth = rk_load_relaxed(in_ring.idx.max_depth);
  rk_l_out_tail = rk_load_relaxed(out_ring.idx.tail);
  rk_l_out_head = rk_load_acquire(out_ring.idx.head);  // pairs with the host's release
  rk_l_processed = k.b.telemetry.messages_processed;
  rk_l_dropped = k.b.telemetry.messages_dropped;
  rk_l_lat_total = k.b.telemetry.total_latency_us;
  rk_l_lat_min = k.b.telemetry.min_latency_us;
  rk_l_lat_max = k.b.telemetry.max_latency_us;
  rk_l_heartbeat = k.b.control.heartbeat;
  rk_l_acked = k.b.control.acked_active;
  rk_l_active = rk_l_acked;
  rk_l_next_ring = k.b.params.next_ring;
  rk_l_batches = 0u;
  rk_l_messages = 0u;
  rk_l_in_depth = 0u;
  rk_l_out_depth = 0u;
  rk_s_hlc = k.b.params.hlc;
  rk_leader_calibrate_();
}

void rk_leader_record_latency_(uint64_t lat) {
  rk_l_lat_total += lat;
  rk_l_lat_min = min(rk_l_lat_min, lat);
  rk_l_lat_max = max(rk_l_lat_max, lat);
}

void rk_leader_publish_telemetry_() {
  RkKernelBlockRef k = rk_kernel();
  // Relaxed stores of words only this kernel writes: the host may read an older value, never
  // a torn one (telemetry.hpp).
  rk_store_relaxed(k.b.telemetry.messages_processed, rk_l_processed);
  rk_store_relaxed(k.b.telemetry.messages_dropped, rk_l_dropped + k.b.params.dead_letters);
  rk_store_relaxed(k.b.telemetry.total_latency_us, rk_l_lat_total);
  rk_store_relaxed(k.b.telemetry.min_latency_us, rk_l_lat_min);
  rk_store_relaxed(k.b.telemetry.max_latency_us, rk_l_lat_max);
  rk_store_relaxed(k.b.telemetry.input_queue_depth, rk_l_in_depth);
  rk_store_relaxed(k.b.telemetry.output_queue_depth, rk_l_out_depth);
  rk_store_relaxed(k.b.telemetry.k2k_sent, k.b.params.k2k_sent);
  rk_store_relaxed(k.b.control.messages_processed, rk_l_processed);
  rk_store_relaxed(k.b.control.messages_dropped, rk_l_dropped);
  const RkHlcTimestamp h = rk_hlc_now();
  k.b.params.hlc = rk_hlc_load_();  // the next dispatch continues from here
  rk_store_relaxed(k.b.control.hlc.physical, h.physical);
  rk_store_relaxed(k.b.control.hlc.logical, h.logical);
  rk_store_relaxed(k.b.control.hlc.node_id, h.node_id);
}

uint rk_batch_cap_() {
  return RK_MODE == RK_MODE_PARALLEL ? RK_BLOCK_DIM * RK_GRID_DIM : 256u;
}

/// Leader: reads the host's control words and acknowledges activation changes; true when
/// the kernel must leave its loop (should_terminate).
bool rk_leader_control_() {
  RkKernelBlockRef k = rk_kernel();
  if (rk_load_acquire(k.b.control.should_terminate) != 0u) return true;  // pairs with stop()
  rk_l_active = rk_load_acquire(k.b.control.is_active);                  // pairs with activate()/deactivate()
  if (rk_l_active != rk_l_acked) {
    rk_l_acked = rk_l_active;
    rk_store_release(k.b.control.acked_active, rk_l_acked);  // read by deactivate()
  }
  return false;
}

/// Leader: waits (persistent) or looks once (tick) for something to do; fills the batch.
/// The control words are read at the first look of every call (so before every batch) and
/// every 16th idle look; an idle look is otherwise one load of each ring's tail.
uint rk_leader_decide_() {
  RkKernelBlockRef k = rk_kernel();
  RkRingRef in_ring = rk_input_();
  const bool pull = (k.b.params.flags & RK_FLAG_PULL) != 0u;
  for (uint spin = 0u;; ++spin) {
    if ((spin & 255u) == 0u) {  // every call, then every 256 idle looks: liveness, host clock
      rk_store_relaxed(k.b.control.heartbeat, ++rk_l_heartbeat);
      if ((rk_l_heartbeat & 63ul) == 0ul) rk_leader_calibrate_();
    }
    if (rk_s_fault != 0u || rk_s_terminate != 0u) return RK_CMD_EXIT;
    const bool looked = (spin & 15u) == 0u;
    if (looked && rk_leader_control_()) return RK_CMD_EXIT;
    if (rk_l_active != 0u) {
      uint room = rk_batch_cap_();
      if (!RK_PERSISTENT) {
        if (rk_l_batches >= k.b.params.max_batches) return RK_CMD_IDLE;
        const uint budget = k.b.params.max_messages;
        if (budget != 0u) {
          if (rk_l_messages >= budget) return RK_CMD_IDLE;
          room = min(room, budget - rk_l_messages);
        }
      }
#ifdef RK_RESPONSE
      room = rk_ring_free(rk_output_(), k.b.params.output_capacity, rk_l_out_tail, rk_l_out_head, room);
#endif
      if (room != 0u) {
        const uint routes = pull ? 0u : min(rk_load_acquire(k.b.params.in_route_count), RK_MAX_ROUTES);  // pairs with connect()
        const uint rings = 1u + routes;
        for (uint j = 0u; j < rings; ++j) {
          const uint r = (rk_l_next_ring + j) % rings;
          uint n = 0u;
          if (r == 0u) {
            n = rk_ring_available(in_ring, rk_l_in_head, rk_l_in_tail, room);
            if (n == 0u) continue;
          } else {
            const RkRouteEntry e = k.b.params.in_routes[r - 1u];
            RkRingRef ring = RkRingRef(e.ring);
            const uint64_t head = rk_load_relaxed(ring.idx.head);  // own index
            const uint64_t tail = rk_load_acquire(ring.idx.tail);  // pairs with the sender's publish
            if (tail == head) continue;
            n = uint(min(tail - head, uint64_t(room)));
            rk_s_ring = e.ring;
            rk_s_ring_capacity = e.capacity;
            rk_s_ring_slot_size = e.slot_size;
            rk_s_in_pos = head;
            rk_s_source = e.peer + 1u;
          }
          // Work is waiting: the control words are current before a batch starts.
          if (!looked && rk_leader_control_()) return RK_CMD_EXIT;
          if (rk_l_active == 0u) break;
          if (r == 0u) {
            const uint64_t depth = rk_l_in_tail - rk_l_in_head;
            rk_l_in_depth = uint(min(depth, 0xFFFFFFFFul));
            if (depth > rk_l_max_depth) {
              rk_l_max_depth = depth;
              rk_store_relaxed(in_ring.idx.max_depth, depth);  // consumer-owned word
            }
            rk_s_ring = k.b.params.input_ring;
            rk_s_ring_capacity = k.b.params.input_capacity;
            rk_s_ring_slot_size = k.b.params.input_slot_size;
            rk_s_in_pos = rk_l_in_head;
            rk_s_source = 0u;
          }
          rk_s_route = r;
          rk_s_count = n;
          rk_l_next_ring = (r + 1u) % rings;
          rk_l_emitted = 0u;
          rk_l_done = 0u;
          rk_s_out_pos = rk_l_out_tail;
          return RK_CMD_RUN;
        }
      }
    }
    if (!RK_PERSISTENT) return RK_CMD_IDLE;
  }
  return RK_CMD_IDLE;
}

uint64_t rk_batch_slot_(uint i) {
  return rk_ring_slot(rk_s_ring, rk_s_ring_capacity, rk_s_ring_slot_size, rk_s_in_pos + uint64_t(i));
}

bool rk_request_matches_(RkEnvelope env) {
  return env.type_id == RK_CAT(rk_type_id_, RK_REQUEST) && env.payload_size == RK_CAT(rk_type_size_, RK_REQUEST);
}

void rk_set_message_(RkEnvelope env, uint64_t slot, uint thread, uint block, uint index) {
  rk_msg_timestamp_ = env.timestamp;
  rk_msg_correlation_ = env.correlation_id;
  rk_msg_payload_ = slot + RK_ENVELOPE_SIZE;
  rk_msg_source_ = rk_s_source;
  rk_thread_ = thread;
  rk_block_ = block;
  rk_batch_index_ = index;
}

#ifdef RK_RESPONSE
void rk_write_response_(uint64_t pos, uint64_t stamp, uint64_t correlation, RK_RESPONSE resp) {
  RkKernelBlockRef k = rk_kernel();
  const uint64_t slot = rk_ring_slot(k.b.params.output_ring, k.b.params.output_capacity, k.b.params.output_slot_size, pos);
  RkEnvelopeRef(slot).env = RkEnvelope(RK_CAT(rk_type_id_, RK_RESPONSE), correlation, rk_hlc_unpack(stamp, k.b.params.node_id),
                                       RK_CAT(rk_type_size_, RK_RESPONSE),
                                       ((k.b.params.kernel_slot + 1u) & 0xFFFFu) | (RK_PRIORITY_NORMAL << 16) |
                                           (RK_ENVELOPE_RESPONSE << 24));
  RK_RESPONSE_REF(slot + RK_ENVELOPE_SIZE).v = resp;
}
#endif

void rk_run_actor_() {
  const bool leader = gl_LocalInvocationIndex == 0u;
  const uint count = rk_s_count;
  for (uint i = 0u; i < count; ++i) {
    const uint64_t slot = rk_batch_slot_(i);
    if (leader) {
      const RkEnvelope env = RkEnvelopeRef(slot).env;
      // The merge happens before the handler runs, so its clock events order after the stamp.
      const bool ok = rk_request_matches_(env) && rk_hlc_merge(env.timestamp);
      rk_s_valid = ok ? 1u : 0u;
      if (!ok) ++rk_l_dropped;
    }
    rk_barrier_();
    const bool valid = rk_s_valid != 0u;
    bool emit = false;
#ifdef RK_RESPONSE
    RK_RESPONSE resp;
#endif
    if (valid && gl_LocalInvocationIndex < RK_BLOCK_DIM) {
      rk_set_message_(RkEnvelopeRef(slot).env, slot, gl_LocalInvocationIndex, 0u, 0u);
#ifdef RK_RESPONSE
      emit = rk_handle(RK_REQUEST_REF(slot + RK_ENVELOPE_SIZE), resp);
#else
      rk_handle(RK_REQUEST_REF(slot + RK_ENVELOPE_SIZE));
#endif
    }
    rk_barrier_();  // every invocation has left the handler; a fault is visible
    if (rk_s_fault != 0u) break;
    if (leader) rk_l_done = i + 1u;
    if (leader && valid) {
      ++rk_l_processed;
      const uint64_t now = rk_now_us();
      rk_leader_record_latency_(now > rk_msg_timestamp_.physical ? now - rk_msg_timestamp_.physical : 0ul);
#ifdef RK_RESPONSE
      if (emit) {
        rk_write_response_(rk_l_out_tail + uint64_t(rk_l_emitted), rk_hlc_tick_packed(), rk_msg_correlation_, resp);
        ++rk_l_emitted;
      }
#endif
    }
  }
}

void rk_run_parallel_() {
  const bool leader = gl_LocalInvocationIndex == 0u;
  const uint t = gl_LocalInvocationIndex;
  const uint bd = RK_BLOCK_DIM;
  const uint count = rk_s_count;
  if (leader) {
    rk_s_emitted = 0u;
    rk_s_processed = 0u;
    rk_s_invalid = 0u;
    rk_s_lat_total = 0u;
    rk_s_lat_min = 0xFFFFFFFFu;
    rk_s_lat_max = 0u;
    // Stamps along one ring only grow: merging the last one orders the kernel clock after
    // every message of the batch.
    rk_hlc_merge(RkEnvelopeRef(rk_batch_slot_(count - 1u)).env.timestamp);
  }
  rk_barrier_();
  for (uint base = 0u; base < count; base += bd) {
    const uint i = base + t;
    bool emit = false;
#ifdef RK_RESPONSE
    RK_RESPONSE resp;
#endif
    uint64_t correlation = 0ul;
    if (t < bd && i < count) {
      const uint64_t slot = rk_batch_slot_(i);
      const RkEnvelope env = RkEnvelopeRef(slot).env;
      const uint64_t now = rk_now_us();
      if (rk_request_matches_(env) && env.timestamp.physical <= now + rk_kernel().b.params.max_skew_us) {
        rk_set_message_(env, slot, t, (i / bd) % RK_GRID_DIM, i);
        correlation = env.correlation_id;
#ifdef RK_RESPONSE
        emit = rk_handle(RK_REQUEST_REF(slot + RK_ENVELOPE_SIZE), resp);
#else
        rk_handle(RK_REQUEST_REF(slot + RK_ENVELOPE_SIZE));
#endif
        const uint lat = uint(min(now > env.timestamp.physical ? now - env.timestamp.physical : 0ul, 0x3FFFFFul));
        atomicAdd(rk_s_processed, 1u);
        atomicAdd(rk_s_lat_total, lat);
        atomicMin(rk_s_lat_min, lat);
        atomicMax(rk_s_lat_max, lat);
      } else {
        atomicAdd(rk_s_invalid, 1u);
      }
    }
#ifdef RK_RESPONSE
    // Responses keep input order: exclusive scan of the emit flags over the workgroup.
    const uint e = emit ? 1u : 0u;
    const uint sg_prefix = subgroupExclusiveAdd(e);
    const uint sg_total = subgroupAdd(e);
    if (subgroupElect()) rk_s_warp[gl_SubgroupID] = uint64_t(sg_total);
    rk_barrier_();
    if (leader) {
      uint64_t running = 0ul;
      for (uint s = 0u; s < gl_NumSubgroups; ++s) {
        const uint64_t v = rk_s_warp[s];
        rk_s_warp[s] = running;
        running += v;
      }
      rk_s_pass_total = uint(running);
      if (rk_s_fault == 0u && running != 0ul) rk_s_first_stamp = rk_hlc_tick_batch(uint(running));
    }
    rk_barrier_();
    if (rk_s_fault != 0u) break;
    if (emit) {
      const uint in_pass = uint(rk_s_warp[gl_SubgroupID]) + sg_prefix;
      rk_write_response_(rk_s_out_pos + uint64_t(rk_s_emitted + in_pass), rk_s_first_stamp + uint64_t(in_pass), correlation,
                         resp);
    }
    rk_barrier_();
    if (leader) {
      rk_s_emitted += rk_s_pass_total;
      rk_l_done = min(base + bd, count);
    }
    rk_barrier_();
#else
    rk_barrier_();
    if (rk_s_fault != 0u) break;
    if (leader) rk_l_done = min(base + bd, count);
#endif
  }
}

void rk_leader_finish_batch_() {
  // Only the messages the loops got through are consumed: a driver that cuts loops short
  // (lavapipe's iteration limit) leaves the rest queued for the next dispatch.
  const uint count = rk_s_fault != 0u ? rk_s_count : rk_l_done;
  rk_l_messages += count;
  if (RK_MODE == RK_MODE_PARALLEL) rk_l_emitted = rk_s_emitted;
#ifdef RK_RESPONSE
  // The responses first: the host waits for them; the input slots can wait a store longer.
  if (rk_l_emitted != 0u) {
    rk_l_out_tail += uint64_t(rk_l_emitted);
    rk_ring_publish(rk_output_(), rk_l_out_tail);
  }
  rk_l_out_depth = uint(min(rk_l_out_tail - rk_l_out_head, 0xFFFFFFFFul));
#endif
  if (rk_s_route == 0u) {
    rk_l_in_head += uint64_t(count);
    rk_ring_release(rk_input_(), rk_l_in_head);
  } else {
    rk_ring_release(RkRingRef(rk_s_ring), rk_s_in_pos + uint64_t(count));
  }
  if (RK_MODE == RK_MODE_PARALLEL) {
    rk_l_processed += uint64_t(rk_s_processed);
    rk_l_dropped += uint64_t(rk_s_invalid);
    if (rk_s_processed != 0u) {
      rk_l_lat_total += uint64_t(rk_s_lat_total);
      rk_l_lat_min = min(rk_l_lat_min, uint64_t(rk_s_lat_min));
      rk_l_lat_max = max(rk_l_lat_max, uint64_t(rk_s_lat_max));
    }
  }
  rk_l_dropped += uint64_t(rk_s_dropped);
  rk_s_dropped = 0u;
  ++rk_l_batches;
  rk_leader_publish_telemetry_();
}

void rk_leader_exit_(bool terminate) {
  RkKernelBlockRef k = rk_kernel();
  rk_leader_publish_telemetry_();
  k.b.params.next_ring = rk_l_next_ring;
  if (!terminate) return;
  const uint fault = rk_s_fault;
  if (fault != 0u) {
    rk_store_relaxed(k.b.telemetry.last_error, fault);
    rk_store_release(k.b.control.last_error, fault);
  }
  // Producers (the host, K2K senders) see Closed from now on.
  rk_store_release(rk_input_().idx.consumer_closed, 1u);
  const uint routes = min(rk_load_acquire(k.b.params.in_route_count), RK_MAX_ROUTES);
  for (uint r = 0u; r < routes; ++r) rk_store_release(RkRingRef(k.b.params.in_routes[r].ring).idx.consumer_closed, 1u);
  rk_store_release(k.b.control.has_terminated, 1u);  // read by the host's check_health() / wait()
}

void main() {
  rk_declare_device_scope();
  const bool leader = gl_LocalInvocationIndex == 0u;
  rk_thread_ = gl_LocalInvocationIndex;
  rk_block_ = 0u;
  rk_batch_index_ = 0u;
  if (leader) {
    rk_s_fault = 0u;
    rk_s_terminate = 0u;
    rk_s_dropped = 0u;
    rk_leader_init_();
  }
  rk_barrier_();
  for (;;) {
    if (leader) rk_s_cmd = rk_leader_decide_();
    rk_barrier_();
    if (rk_s_cmd != RK_CMD_RUN) break;
    if (RK_MODE == RK_MODE_PARALLEL)
      rk_run_parallel_();
    else
      rk_run_actor_();
    rk_barrier_();
    if (leader) rk_leader_finish_batch_();
  }
  if (leader) rk_leader_exit_(rk_s_cmd == RK_CMD_EXIT);
}

#endif  // RINGKERNEL_KERNEL_GLSL
