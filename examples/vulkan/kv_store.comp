// "kv_store" (examples::KvStore): a key-value actor with persistent state.
#version 460
#include "ringkernel.glsl"
#include "example_messages.glsl"
RK_MESSAGE(KvRequest, 0)
RK_MESSAGE(KvResponse, 1)
RK_GPU_TYPE(KvState)
#define RK_REQUEST KvRequest
#define RK_RESPONSE KvResponse
#define RK_STATE KvState
#include "ringkernel_kernel.glsl"

bool rk_handle(KvRequestRef req, out KvResponse resp) {
  if (rk_thread_id() != 0u) return false;
  KvStateRef s = rk_state();
  const KvRequest r = req.v;
  const uint k = r.key % 64u;
  if (r.op == 1u) {
    s.v.values[k] = r.value;
    s.v.present |= uint64_t(1) << k;
  }
  const uint found = uint((s.v.present >> k) & 1ul);
  resp = KvResponse(found, r.key, found != 0u ? s.v.values[k] : 0l);
  return true;
}
