// test.echo (rktest::Echo in tests/backend/test_kernels.hpp).
#version 460
#include "ringkernel.glsl"
#include "test_messages.glsl"
RK_MESSAGE(Item, 0)
RK_MESSAGE(Reply, 1)
#define RK_REQUEST Item
#define RK_RESPONSE Reply
#include "ringkernel_kernel.glsl"

bool rk_handle(ItemRef req, out Reply resp) {
  const Item m = req.v;
  resp = Reply(m.seq, m.value * 2l + 1l, rk_thread_id(), rk_message_source(), rk_correlation_id());
  return rk_mode() == RK_MODE_PARALLEL || rk_thread_id() == 0u;
}
