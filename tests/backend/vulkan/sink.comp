// test.sink (rktest::Sink in tests/backend/test_kernels.hpp).
#version 460
#include "ringkernel.glsl"
#include "test_messages.glsl"
RK_MESSAGE(Item, 0)
RK_MESSAGE(Reply, 1)
#define RK_REQUEST Item
#define RK_RESPONSE Reply
#include "ringkernel_kernel.glsl"

// Reports every K2K message it gets (value + 1000), and host messages as they are.
bool rk_handle(ItemRef req, out Reply resp) {
  if (rk_thread_id() != 0u) return false;
  const Item m = req.v;
  resp = Reply(m.seq, m.value + (rk_message_source() != 0u ? 1000l : 0l), 0u, rk_message_source(), 0ul);
  return true;
}
