// ringkernel/ringkernel.hpp — the prelude: everything a program needs.
#pragma once

#include "ringkernel/availability.hpp"
#include "ringkernel/config.hpp"
#include "ringkernel/context.hpp"
#include "ringkernel/control.hpp"
#include "ringkernel/error.hpp"
#include "ringkernel/hlc.hpp"
#include "ringkernel/memory.hpp"
#include "ringkernel/message.hpp"
#include "ringkernel/multi_gpu.hpp"
#include "ringkernel/pubsub.hpp"
#include "ringkernel/queue.hpp"
#include "ringkernel/registry.hpp"
#include "ringkernel/runtime.hpp"
#include "ringkernel/stencil.hpp"
#include "ringkernel/supervision.hpp"
#include "ringkernel/telemetry.hpp"
#include "ringkernel/telemetry_pipeline.hpp"
#include "ringkernel/types.hpp"

namespace ringkernel {
/// Library version.
inline constexpr const char* kVersion = "0.1.0";
}  // namespace ringkernel
