// test.puller (rktest::Puller in tests/backend/test_kernels.hpp).
#version 460
#include "ringkernel.glsl"
#include "test_messages.glsl"
RK_MESSAGE(Item, 0)
RK_MESSAGE(Reply, 1)
RK_MESSAGE(Other, 2)
#define RK_REQUEST Item
#define RK_RESPONSE Reply
#include "ringkernel_kernel.glsl"

// Pull-mode receiver: on a host message, drains its K2K inbox and reports how many Other
// messages it pulled and their sum.
bool rk_handle(ItemRef req, out Reply resp) {
  if (rk_thread_id() != 0u) return false;
  Other o;
  uint src = 0u;
  uint from = 0u;
  uint64_t n = 0ul;
  int64_t sum = 0l;
  while (rk_k2k_try_receive(o, from) == RK_OK) {
    src = from;
    ++n;
    sum += int64_t(o.x);
  }
  resp = Reply(req.v.seq, sum, 0u, src, n);
  return true;
}
