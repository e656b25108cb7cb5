// A handler whose GLSL request struct has drifted from the C++ one (rktest::Item is 16
// bytes; this Item is 24): the launch must refuse it.
#version 460
#include "ringkernel.glsl"

struct Item {
  uint64_t seq;
  int64_t value;
  uint64_t extra;
};
struct Reply {
  uint64_t seq;
  int64_t value;
  uint thread;
  uint source;
  uint64_t aux;
};
RK_MESSAGE(Item, 0)
RK_MESSAGE(Reply, 1)
#define RK_REQUEST Item
#define RK_RESPONSE Reply
#include "ringkernel_kernel.glsl"

bool rk_handle(ItemRef req, out Reply resp) {
  resp = Reply(req.v.seq, req.v.value, 0u, 0u, req.v.extra);
  return true;
}
