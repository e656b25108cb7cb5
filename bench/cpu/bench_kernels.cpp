#include "bench_kernels.hpp"

RK_KERNEL("bench.echo", rkbench::EchoActor);
RK_KERNEL("bench.counter", rkbench::CountingActor);
RK_KERNEL("bench.pair_pinger", rkbench::PairPinger);
RK_KERNEL("bench.pair_ponger", rkbench::PairPonger);
RK_KERNEL("bench.volley_pinger", rkbench::VolleyPinger);
RK_KERNEL("bench.volley_ponger", rkbench::VolleyPonger);
