#include "kernels.hpp"

RK_KERNEL("adder", examples::Adder);
RK_KERNEL("ponger", examples::Ponger);
RK_KERNEL("stage1", examples::Stage1);
RK_KERNEL("stage2", examples::Stage2);
RK_KERNEL("kv_store", examples::KvStore);
