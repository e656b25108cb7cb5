#include "bench_kernels.hpp"

RK_KERNEL("bench.echo", rkbench::EchoActor);
RK_KERNEL("bench.counter", rkbench::CountingActor);
