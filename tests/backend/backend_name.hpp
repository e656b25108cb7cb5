// The name a backend test case carries (".../Cpu", ".../Cuda", ".../Vulkan"): CTest picks
// each backend's cases by it (tests/CMakeLists.txt).
#pragma once

#include <gtest/gtest.h>

#include <string>

#include <ringkernel/runtime.hpp>

namespace rktest {
inline std::string backend_name(const ::testing::TestParamInfo<ringkernel::Backend>& info) {
  switch (info.param) {
    case ringkernel::Backend::Cpu: return "Cpu";
    case ringkernel::Backend::Cuda: return "Cuda";
    case ringkernel::Backend::Vulkan: return "Vulkan";
    default: return "Other";
  }
}
}  // namespace rktest
