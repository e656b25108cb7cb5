// "stage2" (examples::Stage2): adds 1 and reports to the host.
#version 460
#include "ringkernel.glsl"
#include "example_messages.glsl"
RK_MESSAGE(Sample, 0)
RK_MESSAGE(Scaled, 1)
#define RK_REQUEST Sample
#define RK_RESPONSE Scaled
#include "ringkernel_kernel.glsl"

bool rk_handle(SampleRef req, out Scaled resp) {
  if (rk_thread_id() != 0u) return false;
  resp = Scaled(req.v.seq, req.v.value + 1.0lf);
  return true;
}
