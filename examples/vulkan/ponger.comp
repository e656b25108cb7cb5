// "ponger" (examples::Ponger): answers each Ping, counting them in its state.
#version 460
#include "ringkernel.glsl"
#include "example_messages.glsl"
RK_MESSAGE(Ping, 0)
RK_MESSAGE(Pong, 1)
RK_GPU_TYPE(PongState)
#define RK_REQUEST Ping
#define RK_RESPONSE Pong
#define RK_STATE PongState
#include "ringkernel_kernel.glsl"

bool rk_handle(PingRef req, out Pong resp) {
  // One count per message: thread 0 in actor mode, every thread (atomically) in parallel mode.
  if (rk_mode() == RK_MODE_PARALLEL || rk_thread_id() == 0u) atomicAdd(rk_state().v.pings, 1ul);
  resp = Pong(req.v.seq, req.v.sent_ns);
  return true;
}
