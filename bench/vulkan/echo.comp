// bench.echo (vk_bench.cpp): returns {seq, payload + 1}; actor or parallel mode.
#version 460
#include "ringkernel.glsl"

struct BenchMsg {
  uint64_t seq;
  uint64_t payload;
};
RK_MESSAGE(BenchMsg, 0)
#define RK_REQUEST BenchMsg
#define RK_RESPONSE BenchMsg
#include "ringkernel_kernel.glsl"

bool rk_handle(BenchMsgRef req, out BenchMsg resp) {
  const BenchMsg m = req.v;
  resp = BenchMsg(m.seq, m.payload + 1ul);
  return rk_mode() == RK_MODE_PARALLEL || rk_thread_id() == 0u;
}
