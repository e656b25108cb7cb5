// test.pusher (rktest::Pusher in tests/backend/test_kernels.hpp).
#version 460
#include "ringkernel.glsl"
#include "test_messages.glsl"
RK_MESSAGE(Item, 0)
RK_MESSAGE(Reply, 1)
RK_MESSAGE(Other, 2)
#define RK_REQUEST Item
#define RK_RESPONSE Reply
#include "ringkernel_kernel.glsl"

// Sends value Other messages {1..value} to route 0 (a pull-mode peer).
bool rk_handle(ItemRef req, out Reply resp) {
  if (rk_thread_id() != 0u) return false;
  const Item m = req.v;
  uint64_t sent = 0ul;
  for (int64_t i = 1l; i <= m.value; ++i)
    if (rk_k2k_send(rk_k2k_route(0u), Other(uint64_t(i))) == RK_OK) ++sent;
  resp = Reply(m.seq, m.value, 0u, 0u, sent);
  return true;
}
