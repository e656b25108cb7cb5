// "stage1" (examples::Stage1): scales each sample by 2 and forwards it over its first K2K
// route; waits for room while stage 2 is full (backpressure, not a drop).
#version 460
#include "ringkernel.glsl"
#include "example_messages.glsl"
RK_MESSAGE(Sample, 0)
#define RK_REQUEST Sample
#include "ringkernel_kernel.glsl"

void rk_handle(SampleRef req) {
  if (rk_thread_id() != 0u) return;
  const Sample fwd = Sample(req.v.seq, req.v.value * 2.0lf);
  uint s;
  while ((s = rk_k2k_send(rk_k2k_route(0u), fwd)) == RK_QUEUE_FULL && !rk_should_terminate()) {
  }
  if (s != RK_OK) rk_count_dropped(1u);
}
