// ringkernel/registry.hpp — handlers and the kernel registry (the seed's #[ring_kernel]
// and registered_kernels()).
//
// A handler is a type with a const RK_HOST_DEVICE call operator:
//
//     struct Adder {
//       using Request = AddRequest;
//       using Response = AddResponse;     // or void: the kernel sends nothing back
//       using State = AdderState;         // optional GpuType, persistent across messages
//       RK_HOST_DEVICE bool operator()(RingContext& ctx, State& s,
//                                      const AddRequest& in, AddResponse& out) const;
//     };
//     RK_KERNEL("adder", Adder);
//
// The operator returns true to send `out` (thread 0's in actor mode). With Response = void
// the signature is `void operator()(RingContext&, State&, const Request&) const`. Without a
// State type the State parameter is a NoState&. Compiled by g++ the macro registers the
// CPU program; compiled by nvcc it also instantiates the persistent CUDA kernel.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "ringkernel/context.hpp"
#include "ringkernel/message.hpp"
#include "ringkernel/runtime.hpp"

namespace ringkernel {

/// State of a handler that declares none.
struct NoState {
  std::uint64_t unused;
};
RK_GPU_TYPE(NoState, unused);

/// A placeholder response type for handlers whose Response is void.
struct NoResponse {
  std::uint64_t unused;
};
RK_MESSAGE(NoResponse, "ringkernel.NoResponse", unused);

namespace detail {
template <class H>
struct state_of {
  using type = NoState;
};
template <class H>
  requires requires { typename H::State; }
struct state_of<H> {
  using type = typename H::State;
};
template <class H>
using response_or_none = std::conditional_t<std::is_void_v<typename H::Response>, NoResponse, typename H::Response>;
}  // namespace detail

/// What a handler type must provide.
template <class H>
concept RingHandler =
    std::is_default_constructible_v<H> && requires { typename H::Request; typename H::Response; } &&
    RingMessage<typename H::Request> &&
    (std::is_void_v<typename H::Response> || RingMessage<typename H::Response>) &&
    GpuType<typename detail::state_of<H>::type> &&
    (std::is_void_v<typename H::Response>
         ? std::is_invocable_v<const H&, RingContext&, typename detail::state_of<H>::type&,
                               const typename H::Request&>
         : std::is_invocable_r_v<bool, const H&, RingContext&, typename detail::state_of<H>::type&,
                                 const typename H::Request&, detail::response_or_none<H>&>);

template <RingHandler H>
struct HandlerTraits {
  using Request = typename H::Request;
  using Response = detail::response_or_none<H>;
  using State = typename detail::state_of<H>::type;
  static constexpr bool has_response = !std::is_void_v<typename H::Response>;
  /// Whether messages name an actor of a pool: Request has a `std::uint32_t actor` field.
  static constexpr bool addressable = requires(const Request& r) {
    requires std::is_same_v<decltype(r.actor), std::uint32_t>;
  };
  /// The actor a message is for (addressable requests; 0 otherwise).
  RK_HOST_DEVICE static std::uint32_t actor_of(const Request& r) {
    if constexpr (addressable) {
      return r.actor;
    } else {
      (void)r;
      return 0;
    }
  }

  /// Calls the handler; true when it produced a response.
  RK_HOST_DEVICE static bool invoke(const H& h, RingContext& ctx, State& s, const Request& in, Response& out) {
    if constexpr (has_response) {
      return h(ctx, s, in, out);
    } else {
      h(ctx, s, in);
      (void)out;
      return false;
    }
  }
  /// The state a fresh kernel starts with: H::initial_state() if declared, else zeros.
  static State initial_state() {
    if constexpr (requires { { H::initial_state() } -> std::same_as<State>; }) {
      return H::initial_state();
    } else {
      State s;
      std::memset(&s, 0, sizeof s);
      return s;
    }
  }
};

namespace detail {
class CpuProgram;       // src/cpu: runs a handler's batch on the CPU
struct CudaProgram;     // ringkernel/cuda: the persistent kernel of a handler
struct VulkanProgram;   // src/vulkan: SPIR-V of a GLSL handler
using CpuProgramFactory = CpuProgram* (*)();
}  // namespace detail

/// One registered kernel: its message types and the backends that have a build of it.
struct KernelInfo {
  std::string_view name;
  std::string_view request_name;
  std::string_view response_name;
  TypeId request_type = 0;
  TypeId response_type = 0;
  std::uint32_t request_size = 0;
  std::uint32_t response_size = 0;
  std::uint32_t state_size = 0;
  bool has_response = false;
  detail::CpuProgramFactory cpu = nullptr;
  const detail::CudaProgram* cuda = nullptr;
  const detail::VulkanProgram* vulkan = nullptr;
  /// Whether the Request has a `std::uint32_t actor` field (needed by actor pools).
  bool actor_addressable = false;

  bool has_backend(Backend b) const noexcept {
    switch (b) {
      case Backend::Cpu: return cpu != nullptr;
      case Backend::Cuda: return cuda != nullptr;
      case Backend::Vulkan: return vulkan != nullptr;
      default: return false;
    }
  }
};

/// Every registered kernel, sorted by name.
std::vector<KernelInfo> registered_kernels();
/// The kernel registered under `name`, or nullptr.
const KernelInfo* find_kernel(std::string_view name) noexcept;

namespace detail {
/// Adds (or completes) a registration; registrations of one name from several
/// translation units (a .cpp and a .cu) merge. Returns a dummy for static initialisation.
int register_kernel(const KernelInfo& info) noexcept;
}  // namespace detail

}  // namespace ringkernel

#include "ringkernel/detail/cpu_program.hpp"
#if defined(__CUDACC__)
#include "ringkernel/cuda/persistent_kernel.cuh"
#define RK_DETAIL_CUDA_PROGRAM(H) (&::ringkernel::cuda::program_of<H>())
#else
#define RK_DETAIL_CUDA_PROGRAM(H) nullptr
#endif

/// Registers handler type H under NAME for every backend this translation unit builds.
#define RK_KERNEL(NAME, H)                                                                          \
  static_assert(::ringkernel::RingHandler<H>,                                                        \
                #H " is not a ring handler: it needs Request/Response types declared with "         \
                "RK_MESSAGE and a const call operator (see ringkernel/registry.hpp)");              \
  [[maybe_unused]] static const int RK_DETAIL_CAT(rk_kernel_registration_, __LINE__) =               \
      ::ringkernel::detail::register_kernel(::ringkernel::KernelInfo{                                \
          NAME, ::ringkernel::type_name_v<typename ::ringkernel::HandlerTraits<H>::Request>,         \
          ::ringkernel::type_name_v<typename ::ringkernel::HandlerTraits<H>::Response>,              \
          ::ringkernel::type_id_v<typename ::ringkernel::HandlerTraits<H>::Request>,                 \
          ::ringkernel::type_id_v<typename ::ringkernel::HandlerTraits<H>::Response>,                \
          sizeof(typename ::ringkernel::HandlerTraits<H>::Request),                                  \
          sizeof(typename ::ringkernel::HandlerTraits<H>::Response),                                 \
          sizeof(typename ::ringkernel::HandlerTraits<H>::State),                                    \
          ::ringkernel::HandlerTraits<H>::has_response, &::ringkernel::detail::make_cpu_program<H>,  \
          RK_DETAIL_CUDA_PROGRAM(H), nullptr, ::ringkernel::HandlerTraits<H>::addressable})
