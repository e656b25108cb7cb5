// test.self_stop (rktest::SelfStop in tests/backend/test_kernels.hpp).
#version 460
#include "ringkernel.glsl"
#include "test_messages.glsl"
RK_MESSAGE(Item, 0)
RK_MESSAGE(Reply, 1)
#define RK_REQUEST Item
#define RK_RESPONSE Reply
#include "ringkernel_kernel.glsl"

// Terminates itself on value -1.
bool rk_handle(ItemRef req, out Reply resp) {
  const Item m = req.v;
  if (m.value == -1l) rk_request_terminate();
  resp = Reply(m.seq, m.value, 0u, 0u, 0ul);
  return rk_thread_id() == 0u;
}
