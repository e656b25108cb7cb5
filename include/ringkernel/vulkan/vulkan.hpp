// ringkernel/vulkan/vulkan.hpp — the Vulkan compute backend: options, device list, and
// the registration of GLSL handlers (link ringkernel::vulkan; no Vulkan headers needed).
//
// A Vulkan handler is a GLSL compute shader written against shaders/ringkernel.glsl and
// compiled to SPIR-V at build time (CMake: ringkernel_add_vulkan_shaders). It registers
// under the name of the C++ handler of the same kernel, taking the message types from it:
//
//     RK_KERNEL("adder", examples::Adder);                              // CPU (and CUDA)
//     RK_VULKAN_KERNEL("adder", examples::Adder, example_spirv::adder);  // Vulkan
//
// so one launch("adder", ...) runs on every backend. Message types the shader uses beyond
// the handler's Request and Response (K2K payloads) follow the SPIR-V argument, in the
// order of their RK_MESSAGE indices in GLSL (2, 3, ...).
//
// Dispatch. On GPUs a kernel is one persistent dispatch on a queue of its own: the shader
// loops until should_terminate, so a message costs no submission. Where that is not
// possible (CPU implementations such as lavapipe, whose single queue runs one dispatch at a
// time; or more kernels than compute queues) a kernel runs in tick mode: a host thread
// dispatches it when its queues hold work, and the dispatch returns once it has drained
// them. Options::dispatch forces either.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "ringkernel/error.hpp"
#include "ringkernel/registry.hpp"
#include "ringkernel/runtime.hpp"
#include "ringkernel/vulkan/program.hpp"

namespace ringkernel::vulkan {

/// How a kernel's shader runs.
enum class DispatchMode : std::uint8_t {
  Auto,        ///< persistent on GPUs while a compute queue is free, tick otherwise
  Persistent,  ///< one dispatch for the kernel's lifetime; launch fails without a free queue
  Tick,        ///< a dispatch per batch of queued work
};

/// Where a host<->kernel ring lives.
enum class Placement : std::uint8_t {
  Auto,         ///< DeviceLocal where the device offers it, else Host
  DeviceLocal,  ///< DEVICE_LOCAL | HOST_VISIBLE | HOST_COHERENT (the GPU's BAR)
  Host,         ///< HOST_VISIBLE | HOST_COHERENT system memory (HOST_CACHED preferred)
};

const char* to_string(DispatchMode m) noexcept;
const char* to_string(Placement p) noexcept;

/// Settings of the Vulkan runtimes created after set_options(). A RingKernel creates its
/// Vulkan runtime at its first Vulkan launch.
struct Options {
  DispatchMode dispatch = DispatchMode::Auto;
  Placement input_placement = Placement::Auto;   ///< host -> kernel ring
  Placement output_placement = Placement::Auto;  ///< kernel -> host ring
  /// Tick mode: batches one dispatch handles before returning (fairness between kernels).
  std::uint32_t tick_batches = 16;
  /// Tick mode: messages one dispatch handles at most; 0 = 16 on CPU implementations, no
  /// limit elsewhere. (Mesa's lavapipe ends every loop of a dispatch once all its loops
  /// together ran 65535 iterations: keep messages x handler loop iterations below that.)
  std::uint32_t tick_messages = 0;
  /// Persistent dispatches running at once on one device (each spins on a queue of its
  /// own); under Auto, kernels launched beyond this run tick dispatches. On the NVIDIA H100
  /// driver, of 23 spinning dispatches on separate queues only the first 7 ever ran (the
  /// others never answered) and the device was then lost (VK_ERROR_DEVICE_LOST); hence 6.
  std::uint32_t max_persistent = 6;
};
void set_options(const Options& o) noexcept;
Options options() noexcept;

/// How a launched Vulkan kernel runs (for tools and benchmarks).
struct KernelPlacement {
  DispatchMode dispatch = DispatchMode::Tick;
  Placement input = Placement::Host;
  Placement output = Placement::Host;
  std::uint32_t queue_family = 0;
  std::uint32_t queue_index = 0;
};
/// Errors: InvalidArgument when the handle is not a Vulkan kernel.
Result<KernelPlacement> describe(const KernelHandle& kernel);

/// A Vulkan device as the backend sees it, in selection order (discrete GPUs first):
/// RingKernel::builder().device_index(i) picks entry i.
struct DeviceInfo {
  std::string name;
  std::string type;    ///< "discrete GPU", "integrated GPU", "CPU", ...
  std::string driver;  ///< driver name and version
  std::uint32_t api_version = 0;
  bool suitable = false;
  std::string reason;  ///< why not suitable (missing feature), when !suitable
};
/// Errors: BackendUnavailable (no loader, no driver) with the reason.
Result<std::vector<DeviceInfo>> devices();

/// Makes the Vulkan backend known to availability() without registering a kernel.
void register_backend() noexcept;

namespace detail {
using ringkernel::detail::BackendPlugin;
using ringkernel::detail::SpirvBlob;
using ringkernel::detail::VulkanMessageType;
using ringkernel::detail::VulkanProgram;

extern const BackendPlugin kPlugin;

/// Registers the plugin and the kernel (merging with the C++ registration of NAME).
int register_program(const KernelInfo& info) noexcept;

template <RingMessage T>
constexpr VulkanMessageType message_type() noexcept {
  return {type_id_v<T>, static_cast<std::uint32_t>(sizeof(T)), type_name_v<T>.data()};
}

template <class H, class... Extra>
inline constexpr VulkanMessageType kMessageTypes[] = {
    message_type<typename HandlerTraits<H>::Request>(), message_type<typename HandlerTraits<H>::Response>(),
    message_type<Extra>()...};

template <class H>
void init_state(void* out) {
  const auto s = HandlerTraits<H>::initial_state();
  std::memcpy(out, &s, sizeof s);
}

template <class H, class... Extra>
constexpr VulkanProgram make_program(const SpirvBlob& spirv) noexcept {
  using State = typename HandlerTraits<H>::State;
  return VulkanProgram{&kPlugin,
                       &spirv,
                       static_cast<std::uint32_t>(sizeof(State)),
                       static_cast<std::uint32_t>(alignof(State)),
                       &init_state<H>,
                       kMessageTypes<H, Extra...>,
                       static_cast<std::uint32_t>(2 + sizeof...(Extra)),
                       rk_type_info(static_cast<const State*>(nullptr)).name.data()};
}

template <class H>
int register_kernel(std::string_view name, const VulkanProgram* program) noexcept {
  using T = HandlerTraits<H>;
  KernelInfo info{name,
                  type_name_v<typename T::Request>,
                  type_name_v<typename T::Response>,
                  type_id_v<typename T::Request>,
                  type_id_v<typename T::Response>,
                  sizeof(typename T::Request),
                  sizeof(typename T::Response),
                  sizeof(typename T::State),
                  T::has_response,
                  nullptr,
                  nullptr,
                  program,
                  T::addressable};
  return register_program(info);
}
}  // namespace detail

}  // namespace ringkernel::vulkan

/// Registers the GLSL build SPIRV (a ringkernel::detail::SpirvBlob generated by
/// ringkernel_add_vulkan_shaders) of the kernel NAME, whose C++ handler is H. Extra
/// message types used by the shader follow in RK_MESSAGE index order (2, 3, ...).
#define RK_VULKAN_KERNEL(NAME, H, SPIRV, ...)                                                            \
  static_assert(::ringkernel::RingHandler<H>, #H " is not a ring handler (see ringkernel/registry.hpp)"); \
  [[maybe_unused]] static constexpr ::ringkernel::detail::VulkanProgram RK_DETAIL_CAT(                    \
      rk_vulkan_program_, __LINE__) =                                                                     \
      ::ringkernel::vulkan::detail::make_program<H __VA_OPT__(, ) __VA_ARGS__>(SPIRV);                    \
  [[maybe_unused]] static const int RK_DETAIL_CAT(rk_vulkan_registration_, __LINE__) =                    \
      ::ringkernel::vulkan::detail::register_kernel<H>(NAME, &RK_DETAIL_CAT(rk_vulkan_program_, __LINE__))
