// Not a kernel that runs: tests/vulkan/vulkan.test.cpp reads this module's SPIR-V to compare
// the GLSL side of the wire format with the C++ one — the offsets glslc gave the structs in
// ringkernel.glsl, the constants (exported below as specialisation constants, whose default
// values the module records) and the specialisation ids of ringkernel_kernel.glsl.
#version 460
#include "ringkernel.glsl"

struct CheckRequest {
  uint64_t a;
  uint64_t b;
};
RK_MESSAGE(CheckRequest, 0)
#define RK_REQUEST CheckRequest
#include "ringkernel_kernel.glsl"

// Every wire struct in one explicitly laid-out block, so each gets its Offset decorations.
layout(std430, set = 0, binding = 0) buffer RkLayoutCheck {
  RkKernelBlock kernel_block;
  RkRingIndices ring_indices;
  RkEnvelope envelope;
  RkHlcTimestamp hlc_timestamp;
} rk_layout_check;

#define RK_EXPORT(ID, NAME) layout(constant_id = ID) const uint check_##NAME = NAME;
RK_EXPORT(1000, RK_OK)
RK_EXPORT(1001, RK_QUEUE_FULL)
RK_EXPORT(1002, RK_QUEUE_EMPTY)
RK_EXPORT(1003, RK_TIMEOUT)
RK_EXPORT(1004, RK_CLOSED)
RK_EXPORT(1005, RK_INVALID_MESSAGE)
RK_EXPORT(1006, RK_TOO_LARGE)
RK_EXPORT(1007, RK_NO_ROUTE)
RK_EXPORT(1008, RK_TENANT_MISMATCH)
RK_EXPORT(1009, RK_FAULTED)
RK_EXPORT(1010, RK_ERROR_NONE)
RK_EXPORT(1011, RK_ERROR_HANDLER_FAULT)
RK_EXPORT(1012, RK_ERROR_BAD_MESSAGE)
RK_EXPORT(1013, RK_ERROR_BARRIER_IN_PARALLEL)
RK_EXPORT(1014, RK_ERROR_K2K_OVERFLOW)
RK_EXPORT(1015, RK_MODE_ACTOR)
RK_EXPORT(1016, RK_MODE_PARALLEL)
RK_EXPORT(1017, RK_ENVELOPE_RESPONSE)
RK_EXPORT(1018, RK_ENVELOPE_K2K)
RK_EXPORT(1019, RK_PRIORITY_NORMAL)
RK_EXPORT(1020, RK_INDEX_ALIGN)
RK_EXPORT(1021, RK_ENVELOPE_SIZE)
RK_EXPORT(1022, RK_RING_HEADER_SIZE)
RK_EXPORT(1023, RK_MAX_ROUTES)
RK_EXPORT(1024, RK_MAX_KERNELS)
RK_EXPORT(1025, RK_WARP_SIZE)
RK_EXPORT(1026, RK_HLC_LOGICAL_BITS)
RK_EXPORT(1027, RK_FLAG_K2K)
RK_EXPORT(1028, RK_FLAG_PULL)
RK_EXPORT(1029, RK_FLAG_RESPONSE)

void rk_handle(CheckRequestRef req) {
  rk_layout_check.envelope.payload_size = check_RK_OK + check_RK_QUEUE_FULL + check_RK_QUEUE_EMPTY + check_RK_TIMEOUT +
      check_RK_CLOSED + check_RK_INVALID_MESSAGE + check_RK_TOO_LARGE + check_RK_NO_ROUTE + check_RK_TENANT_MISMATCH +
      check_RK_FAULTED + check_RK_ERROR_NONE + check_RK_ERROR_HANDLER_FAULT + check_RK_ERROR_BAD_MESSAGE +
      check_RK_ERROR_BARRIER_IN_PARALLEL + check_RK_ERROR_K2K_OVERFLOW + check_RK_MODE_ACTOR + check_RK_MODE_PARALLEL +
      check_RK_ENVELOPE_RESPONSE + check_RK_ENVELOPE_K2K + check_RK_PRIORITY_NORMAL + check_RK_INDEX_ALIGN +
      check_RK_ENVELOPE_SIZE + check_RK_RING_HEADER_SIZE + check_RK_MAX_ROUTES + check_RK_MAX_KERNELS +
      check_RK_WARP_SIZE + check_RK_HLC_LOGICAL_BITS + check_RK_FLAG_K2K + check_RK_FLAG_PULL + check_RK_FLAG_RESPONSE +
      uint(req.v.a);
}
