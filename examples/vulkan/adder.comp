// "adder" (examples::Adder): the seed's quick start.
#version 460
#include "ringkernel.glsl"
#include "example_messages.glsl"
RK_MESSAGE(AddRequest, 0)
RK_MESSAGE(AddResponse, 1)
#define RK_REQUEST AddRequest
#define RK_RESPONSE AddResponse
#include "ringkernel_kernel.glsl"

bool rk_handle(AddRequestRef req, out AddResponse resp) {
  if (rk_thread_id() != 0u) return false;  // actor mode: thread 0 answers
  resp = AddResponse(req.v.id, req.v.a + req.v.b, 0u);
  return true;
}
