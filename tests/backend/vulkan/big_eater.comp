// test.big_eater (rktest::BigEater in tests/backend/test_kernels.hpp).
#version 460
#include "ringkernel.glsl"
#include "test_messages.glsl"
RK_MESSAGE(Big, 0)
RK_MESSAGE(Reply, 1)
#define RK_REQUEST Big
#define RK_RESPONSE Reply
#include "ringkernel_kernel.glsl"

// Takes a 4 KiB payload and replies with the sum of its bytes (read in place in the slot).
bool rk_handle(BigRef req, out Reply resp) {
  if (rk_thread_id() != 0u) return false;
  int64_t sum = 0l;
  for (uint i = 0u; i < 1024u; ++i) {
    const uint w = req.v.words[i];
    sum += int64_t((w & 0xFFu) + ((w >> 8) & 0xFFu) + ((w >> 16) & 0xFFu) + (w >> 24));
  }
  resp = Reply(0ul, sum, 0u, 0u, 0ul);
  return true;
}
