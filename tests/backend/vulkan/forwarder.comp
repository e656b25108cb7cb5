// test.forwarder (rktest::Forwarder in tests/backend/test_kernels.hpp).
#version 460
#include "ringkernel.glsl"
#include "test_messages.glsl"
RK_MESSAGE(Item, 0)
RK_MESSAGE(Reply, 1)
#define RK_REQUEST Item
#define RK_RESPONSE Reply
#include "ringkernel_kernel.glsl"

// Forwards value to the K2K destination in seq (low 32 bits) and reports the status.
bool rk_handle(ItemRef req, out Reply resp) {
  if (rk_thread_id() != 0u) return false;
  const Item m = req.v;
  const uint dest = uint(m.seq & 0xFFFFFFFFul);
  const uint status = rk_k2k_send(dest, Item(m.seq, m.value));
  resp = Reply(m.seq, m.value, 0u, status, uint64_t(rk_k2k_route_count()));
  return true;
}
