// test.barrier_in_parallel (rktest::BarrierInParallel in tests/backend/test_kernels.hpp).
#version 460
#include "ringkernel.glsl"
#include "test_messages.glsl"
RK_MESSAGE(Item, 0)
RK_MESSAGE(Reply, 1)
#define RK_REQUEST Item
#define RK_RESPONSE Reply
#include "ringkernel_kernel.glsl"

// A parallel kernel that illegally waits on a barrier.
bool rk_handle(ItemRef req, out Reply resp) {
  const Item m = req.v;
  if (m.value == 99l) rk_sync_threads();
  resp = Reply(m.seq, m.value, 0u, 0u, 0ul);
  return true;
}
