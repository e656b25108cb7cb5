// test.clock (rktest::Clock in tests/backend/test_kernels.hpp).
#version 460
#include "ringkernel.glsl"
#include "test_messages.glsl"
RK_MESSAGE(Item, 0)
RK_MESSAGE(Reply, 1)
#define RK_REQUEST Item
#define RK_RESPONSE Reply
#include "ringkernel_kernel.glsl"

// HLC: returns the message's stamp and a fresh kernel tick (aux = physical of the tick).
bool rk_handle(ItemRef req, out Reply resp) {
  if (rk_thread_id() != 0u) return false;
  const RkHlcTimestamp msg = rk_message_timestamp();
  const RkHlcTimestamp now = rk_hlc_tick();
  const bool after = now.physical > msg.physical || (now.physical == msg.physical && now.logical > msg.logical);
  resp = Reply(req.v.seq, int64_t(msg.physical), after ? 1u : 0u, 0u, now.physical);
  return true;
}
