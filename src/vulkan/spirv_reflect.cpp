#include "spirv_reflect.hpp"

#include <unordered_map>

namespace ringkernel::vulkan::detail {

namespace {

// The opcodes and decorations read here (SPIR-V specification, section 3).
enum Op : std::uint32_t {
  OpName = 5,
  OpMemberName = 6,
  OpTypeBool = 20,
  OpTypeInt = 21,
  OpTypeFloat = 22,
  OpTypeVector = 23,
  OpTypeArray = 28,
  OpTypeRuntimeArray = 29,
  OpTypeStruct = 30,
  OpTypePointer = 32,
  OpConstant = 43,
  OpSpecConstantTrue = 48,
  OpSpecConstantFalse = 49,
  OpSpecConstant = 50,
  OpDecorate = 71,
  OpMemberDecorate = 72,
};
enum Decoration : std::uint32_t { SpecId = 1, ArrayStride = 6, Offset = 35 };
constexpr std::uint32_t kMagic = 0x07230203;

std::string literal_string(std::span<const std::uint32_t> w) {
  std::string s;
  for (std::uint32_t word : w) {
    for (int b = 0; b < 4; ++b) {
      const char c = static_cast<char>((word >> (8 * b)) & 0xFF);
      if (c == 0) return s;
      s.push_back(c);
    }
  }
  return s;
}

struct Type {
  std::uint32_t op = 0;
  std::vector<std::uint32_t> operands;  // after the result id
};

}  // namespace

Result<SpirvReflection> SpirvReflection::parse(std::span<const std::uint32_t> words) {
  if (words.size() < 5 || words[0] != kMagic) return Error(ErrorCode::InvalidArgument, "not a SPIR-V module");
  std::unordered_map<std::uint32_t, std::string> names;
  std::unordered_map<std::uint32_t, std::map<std::uint32_t, std::string>> member_names;
  std::unordered_map<std::uint32_t, std::map<std::uint32_t, std::uint32_t>> offsets;
  std::unordered_map<std::uint32_t, std::uint32_t> strides, spec_ids;
  std::unordered_map<std::uint32_t, Type> types;
  std::unordered_map<std::uint32_t, std::uint64_t> constants, spec_values;

  for (std::size_t i = 5; i < words.size();) {
    const std::uint32_t count = words[i] >> 16;
    const std::uint32_t op = words[i] & 0xFFFF;
    if (count == 0 || i + count > words.size()) return Error(ErrorCode::InvalidArgument, "truncated SPIR-V instruction");
    const auto in = words.subspan(i + 1, count - 1);
    switch (op) {
      case OpName:  // the first name wins: glslang also names local constants that alias an id
        if (!in.empty()) names.emplace(in[0], literal_string(in.subspan(1)));
        break;
      case OpMemberName:
        if (in.size() >= 2) member_names[in[0]][in[1]] = literal_string(in.subspan(2));
        break;
      case OpDecorate:
        if (in.size() >= 3 && in[1] == ArrayStride) strides[in[0]] = in[2];
        if (in.size() >= 3 && in[1] == SpecId) spec_ids[in[0]] = in[2];
        break;
      case OpMemberDecorate:
        if (in.size() >= 4 && in[2] == Offset) offsets[in[0]][in[1]] = in[3];
        break;
      case OpTypeBool:
      case OpTypeInt:
      case OpTypeFloat:
      case OpTypeVector:
      case OpTypeArray:
      case OpTypeRuntimeArray:
      case OpTypeStruct:
      case OpTypePointer:
        if (!in.empty()) types[in[0]] = Type{op, std::vector<std::uint32_t>(in.begin() + 1, in.end())};
        break;
      case OpConstant:
      case OpSpecConstant:
        if (in.size() >= 3) {
          std::uint64_t v = in[2];
          if (in.size() >= 4) v |= std::uint64_t{in[3]} << 32;
          (op == OpConstant ? constants : spec_values)[in[1]] = v;
        }
        break;
      case OpSpecConstantTrue:
      case OpSpecConstantFalse:
        if (in.size() >= 2) spec_values[in[1]] = op == OpSpecConstantTrue ? 1 : 0;
        break;
      default:
        break;
    }
    i += count;
  }

  // Size a type occupies in an explicitly laid-out block.
  std::unordered_map<std::uint32_t, std::uint64_t> sizes;
  auto size_of = [&](auto&& self, std::uint32_t id) -> std::uint64_t {
    if (auto it = sizes.find(id); it != sizes.end()) return it->second;
    auto t = types.find(id);
    if (t == types.end()) return 0;
    const Type& ty = t->second;
    std::uint64_t s = 0;
    switch (ty.op) {
      case OpTypeBool: s = 4; break;
      case OpTypeInt:
      case OpTypeFloat: s = ty.operands.empty() ? 0 : ty.operands[0] / 8; break;
      case OpTypeVector: s = ty.operands.size() < 2 ? 0 : self(self, ty.operands[0]) * ty.operands[1]; break;
      case OpTypeArray: {
        const auto len = ty.operands.size() < 2 ? constants.end() : constants.find(ty.operands[1]);
        const auto stride = strides.find(id);
        if (len != constants.end()) s = len->second * (stride != strides.end() ? stride->second : self(self, ty.operands[0]));
        break;
      }
      case OpTypeStruct: {
        const auto& offs = offsets[id];
        for (std::size_t m = 0; m < ty.operands.size(); ++m) {
          const auto o = offs.find(static_cast<std::uint32_t>(m));
          if (o != offs.end()) s = std::max<std::uint64_t>(s, o->second + self(self, ty.operands[m]));
        }
        break;
      }
      default: break;  // runtime arrays, pointers: no size inside a struct
    }
    sizes[id] = s;
    return s;
  };

  SpirvReflection r;
  for (const auto& [id, ty] : types) {
    if (ty.op != OpTypeStruct) continue;
    const auto offs = offsets.find(id);
    const auto name = names.find(id);
    if (offs == offsets.end() || name == names.end() || name->second.empty()) continue;
    SpirvStruct s;
    s.name = name->second;
    for (std::size_t m = 0; m < ty.operands.size(); ++m) {
      SpirvMember mem;
      mem.name = member_names[id][static_cast<std::uint32_t>(m)];
      const auto o = offs->second.find(static_cast<std::uint32_t>(m));
      mem.offset = o != offs->second.end() ? o->second : 0;
      mem.size = size_of(size_of, ty.operands[m]);
      s.members.push_back(std::move(mem));
    }
    s.size = size_of(size_of, id);
    r.structs_.emplace(s.name, std::move(s));
  }
  for (const auto& [id, spec] : spec_ids) {
    const auto name = names.find(id);
    if (name == names.end()) continue;
    const auto v = spec_values.find(id);
    r.specs_[name->second] = SpirvSpecConstant{spec, v != spec_values.end() ? v->second : 0};
  }
  return r;
}

const SpirvStruct* SpirvReflection::find_struct(std::string_view name) const {
  const auto it = structs_.find(name);
  return it == structs_.end() ? nullptr : &it->second;
}

std::optional<SpirvSpecConstant> SpirvReflection::spec_constant(std::string_view name) const {
  const auto it = specs_.find(name);
  if (it == specs_.end()) return std::nullopt;
  return it->second;
}

}  // namespace ringkernel::vulkan::detail
