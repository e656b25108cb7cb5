// Private: just enough SPIR-V reading to check a shader against the C++ side — the offsets
// and sizes glslc gave to explicitly laid-out structs (std430 blocks and the structs in
// them), and the names, ids and default values of specialisation constants. It reads the
// debug names glslc emits (OpName / OpMemberName); a stripped module reflects nothing.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ringkernel/error.hpp"

namespace ringkernel::vulkan::detail {

struct SpirvMember {
  std::string name;
  std::uint32_t offset = 0;
  std::uint64_t size = 0;  ///< bytes the member occupies (array: length x stride)
};

struct SpirvStruct {
  std::string name;
  std::vector<SpirvMember> members;
  std::uint64_t size = 0;  ///< end of the last member
};

struct SpirvSpecConstant {
  std::uint32_t spec_id = 0;
  std::uint64_t default_value = 0;
};

class SpirvReflection {
 public:
  static Result<SpirvReflection> parse(std::span<const std::uint32_t> words);

  /// The explicitly laid-out struct of that name (the one with Offset decorations).
  const SpirvStruct* find_struct(std::string_view name) const;
  /// A specialisation constant by name.
  std::optional<SpirvSpecConstant> spec_constant(std::string_view name) const;
  /// Every specialisation constant, by name.
  const std::map<std::string, SpirvSpecConstant, std::less<>>& spec_constants() const noexcept { return specs_; }

 private:
  std::map<std::string, SpirvStruct, std::less<>> structs_;
  std::map<std::string, SpirvSpecConstant, std::less<>> specs_;
};

}  // namespace ringkernel::vulkan::detail
