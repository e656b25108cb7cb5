// test.block_sum (rktest::BlockSum in tests/backend/test_kernels.hpp).
#version 460
#include "ringkernel.glsl"
#include "test_messages.glsl"
RK_MESSAGE(Item, 0)
RK_MESSAGE(Reply, 1)
#define RK_REQUEST Item
#define RK_RESPONSE Reply
#include "ringkernel_kernel.glsl"

// Every thread contributes (thread + 1) * value through shared memory and a barrier;
// thread 0 sums. Also a warp reduction and a ballot (32-lane warps on every device).
shared int64_t partial[gl_WorkGroupSize.x];

bool rk_handle(ItemRef req, out Reply resp) {
  const uint t = rk_thread_id();
  const int64_t value = req.v.value;
  partial[t] = int64_t(t + 1u) * value;
  rk_sync_threads();
  const int64_t warp_total = rk_warp_reduce_add(int64_t(1));
  const uint odd_lanes = rk_warp_ballot((rk_lane_id() & 1u) != 0u);
  int64_t sum = 0l;
  if (t == 0u)
    for (uint i = 0u; i < rk_block_dim(); ++i) sum += partial[i];
  rk_sync_threads();  // nobody reuses `partial` before thread 0 has read it
  resp = Reply(req.v.seq, sum, rk_block_dim(), uint(warp_total), uint64_t(odd_lanes));
  return t == 0u;
}
