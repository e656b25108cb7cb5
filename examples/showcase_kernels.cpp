// Registers the showcase's actors. CMake compiles this file with nvcc when the CUDA
// backend is built, so each actor also gets its persistent CUDA kernel.
#include "showcase.hpp"

RK_KERNEL("showcase.ingest", showcase::Ingest);
RK_KERNEL("showcase.rules", showcase::Rules);
RK_KERNEL("showcase.alerter", showcase::Alerter);
