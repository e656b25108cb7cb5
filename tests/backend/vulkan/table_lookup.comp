// test.table_lookup (rktest::TableLookup in tests/backend/test_kernels.hpp): reads a table
// in a GpuBuffer through its device address.
#version 460
#include "ringkernel.glsl"
#include "test_messages.glsl"
RK_MESSAGE(TableRead, 0)
RK_MESSAGE(Reply, 1)
RK_GPU_TYPE(CounterState)
#define RK_REQUEST TableRead
#define RK_RESPONSE Reply
#define RK_STATE CounterState
#include "ringkernel_kernel.glsl"

layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer TableWord { int64_t v; };

bool rk_handle(TableReadRef req, out Reply resp) {
  if (rk_thread_id() != 0u) return false;
  const TableRead m = req.v;
  const int64_t v = TableWord(m.table + uint64_t(m.index) * 8ul).v;
  CounterStateRef s = rk_state();
  s.v.total += v;
  s.v.messages += 1ul;
  resp = Reply(uint64_t(m.index), v, 0u, 0u, uint64_t(s.v.total));
  return true;
}
