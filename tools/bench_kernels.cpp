// Registers the tool's benchmark kernels (compiled by nvcc when the CUDA backend is built).
#include "bench_kernels.hpp"

RK_KERNEL("ringkernel.bench.echo", rkbench::Echo);
