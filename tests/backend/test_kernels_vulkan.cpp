// Vulkan builds of the test kernels: GLSL handlers in tests/backend/vulkan, registered
// under the names of their C++ handlers (test_kernels.cpp), whose message types they take.
#include <ringkernel/vulkan/vulkan.hpp>

#include "test_kernels.hpp"
#include "test_kernels_spirv.hpp"

RK_VULKAN_KERNEL("test.echo", rktest::Echo, rktest_spirv::echo);
RK_VULKAN_KERNEL("test.counter", rktest::Counter, rktest_spirv::counter);
RK_VULKAN_KERNEL("test.doubler", rktest::Doubler, rktest_spirv::doubler);
RK_VULKAN_KERNEL("test.table_lookup", rktest::TableLookup, rktest_spirv::table_lookup);
RK_VULKAN_KERNEL("test.block_sum", rktest::BlockSum, rktest_spirv::block_sum);
RK_VULKAN_KERNEL("test.faulty", rktest::Faulty, rktest_spirv::faulty);
RK_VULKAN_KERNEL("test.barrier_in_parallel", rktest::BarrierInParallel, rktest_spirv::barrier_in_parallel);
RK_VULKAN_KERNEL("test.forwarder", rktest::Forwarder, rktest_spirv::forwarder);
RK_VULKAN_KERNEL("test.sink", rktest::Sink, rktest_spirv::sink);
RK_VULKAN_KERNEL("test.puller", rktest::Puller, rktest_spirv::puller, rktest::Other);
RK_VULKAN_KERNEL("test.pusher", rktest::Pusher, rktest_spirv::pusher, rktest::Other);
RK_VULKAN_KERNEL("test.clock", rktest::Clock, rktest_spirv::clock);
RK_VULKAN_KERNEL("test.self_stop", rktest::SelfStop, rktest_spirv::self_stop);
RK_VULKAN_KERNEL("test.big_eater", rktest::BigEater, rktest_spirv::big_eater);
