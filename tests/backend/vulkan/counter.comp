// test.counter (rktest::Counter in tests/backend/test_kernels.hpp).
#version 460
#include "ringkernel.glsl"
#include "test_messages.glsl"
RK_MESSAGE(Item, 0)
RK_MESSAGE(Reply, 1)
RK_GPU_TYPE(CounterState)
#define RK_REQUEST Item
#define RK_RESPONSE Reply
#define RK_STATE CounterState
#include "ringkernel_kernel.glsl"

bool rk_handle(ItemRef req, out Reply resp) {
  if (rk_thread_id() != 0u) return false;
  CounterStateRef s = rk_state();
  s.v.total += req.v.value;
  s.v.messages += 1ul;
  resp = Reply(req.v.seq, s.v.total, 0u, 0u, s.v.messages);
  return true;
}
