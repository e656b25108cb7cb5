// Vulkan builds of the example kernels (GLSL in examples/vulkan), registered under the
// names of their C++ handlers in kernels.cpp: launch("adder") runs on every backend.
#include <ringkernel/vulkan/vulkan.hpp>

#include "example_kernels_spirv.hpp"
#include "kernels.hpp"

RK_VULKAN_KERNEL("adder", examples::Adder, example_spirv::adder);
RK_VULKAN_KERNEL("ponger", examples::Ponger, example_spirv::ponger);
RK_VULKAN_KERNEL("stage1", examples::Stage1, example_spirv::stage1);
RK_VULKAN_KERNEL("stage2", examples::Stage2, example_spirv::stage2);
RK_VULKAN_KERNEL("kv_store", examples::KvStore, example_spirv::kv_store);
