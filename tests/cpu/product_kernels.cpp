// CPU-only registrations (the tests that use them run on Backend::Cpu).
#include "product_kernels.hpp"

RK_KERNEL("ptest.publisher", ptest::Publisher);
RK_KERNEL("ptest.sink", ptest::Sink);
RK_KERNEL("ptest.half_dropper", ptest::HalfDropper);
RK_KERNEL("ptest.worker", ptest::Worker);
RK_KERNEL("ptest.pool_worker", ptest::PoolWorker);
RK_KERNEL("ptest.forwarder", ptest::Forwarder);
RK_KERNEL("ptest.fragile_sink", ptest::FragileSink);
