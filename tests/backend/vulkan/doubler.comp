// test.doubler (rktest::Doubler in tests/backend/test_kernels.hpp).
#version 460
#include "ringkernel.glsl"
#include "test_messages.glsl"
RK_MESSAGE(Item, 0)
#define RK_REQUEST Item
#define RK_RESPONSE Item
#include "ringkernel_kernel.glsl"

bool rk_handle(ItemRef req, out Item resp) {
  const Item m = req.v;
  resp = Item(m.seq, m.value * 2l);
  return rk_thread_id() == 0u;
}
