// Vulkan-specific tests: the GLSL mirror of the wire format against the C++ definitions
// (read from SPIR-V, no device needed), and the backend's own behaviour on whatever device
// is here (skipped with the reason where there is none). Everything the backends share is
// in tests/backend/backend.test.cpp.
#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <thread>
#include <vector>

#include <ringkernel/ringkernel.hpp>
#include <ringkernel/vulkan/vulkan.hpp>
#include <ringkernel/vulkan/wire.hpp>

#include "../../src/core/runtime_core.hpp"
#include "../../src/vulkan/spirv_reflect.hpp"
#include "../backend/test_kernels.hpp"
#include "vulkan_test_spirv.hpp"

using namespace ringkernel;
using namespace std::chrono_literals;
namespace vk = ringkernel::vulkan;
using vk::detail::SpirvReflection;

namespace {

struct Field {
  std::string glsl;  // member name in ringkernel.glsl
  std::size_t offset;
  std::size_t size;
};
#define RK_FIELD(T, f) Field{#f, offsetof(T, f), sizeof(T::f)}

SpirvReflection reflect(const detail::SpirvBlob& blob) {
  auto r = SpirvReflection::parse(std::span<const std::uint32_t>(blob.words, blob.word_count));
  EXPECT_TRUE(r.ok()) << r.error().what();
  return std::move(*r);
}

/// The GLSL struct has exactly these members, at these offsets, with these sizes.
void expect_layout(const SpirvReflection& refl, const char* glsl_name, std::size_t cpp_size,
                   const std::vector<Field>& fields) {
  SCOPED_TRACE(glsl_name);
  const vk::detail::SpirvStruct* s = refl.find_struct(glsl_name);
  ASSERT_NE(s, nullptr) << glsl_name << " has no explicit layout in the check shader";
  ASSERT_EQ(s->members.size(), fields.size()) << "member count differs from the C++ struct";
  for (std::size_t i = 0; i < fields.size(); ++i) {
    EXPECT_EQ(s->members[i].name, fields[i].glsl) << "member " << i;
    EXPECT_EQ(s->members[i].offset, fields[i].offset) << fields[i].glsl;
    EXPECT_EQ(s->members[i].size, fields[i].size) << fields[i].glsl;
  }
  EXPECT_EQ(s->size, cpp_size);
}

}  // namespace

TEST(VulkanWire, glsl_structs_have_the_offsets_of_their_cpp_definitions) {
  const SpirvReflection refl = reflect(vktest_spirv::layout_check);
  using vk::detail::KernelBlock;
  using vk::detail::KernelParams;
  using vk::detail::RouteEntry;

  expect_layout(refl, "RkHlcTimestamp", sizeof(HlcTimestamp),
                {RK_FIELD(HlcTimestamp, physical), RK_FIELD(HlcTimestamp, logical), RK_FIELD(HlcTimestamp, node_id)});
  // source_kernel (u16), priority (u8) and flags (u8) are one uint in GLSL.
  expect_layout(refl, "RkEnvelope", sizeof(Envelope),
                {RK_FIELD(Envelope, type_id), RK_FIELD(Envelope, correlation_id), RK_FIELD(Envelope, timestamp),
                 RK_FIELD(Envelope, payload_size),
                 Field{"source_kernel_priority_flags", offsetof(Envelope, source_kernel),
                       sizeof(Envelope::source_kernel) + sizeof(Envelope::priority) + sizeof(Envelope::flags)}});
  // control_epoch (a CUDA kernel's) is an unused word to the shaders, `reserved0` in GLSL.
  expect_layout(refl, "RkRingIndices", sizeof(RingIndices),
                {RK_FIELD(RingIndices, tail), RK_FIELD(RingIndices, dropped), RK_FIELD(RingIndices, producer_closed),
                 Field{"reserved0", offsetof(RingIndices, control_epoch), sizeof(RingIndices::control_epoch)},
                 RK_FIELD(RingIndices, claim), RK_FIELD(RingIndices, express),
                 RK_FIELD(RingIndices, head), RK_FIELD(RingIndices, max_depth),
                 RK_FIELD(RingIndices, consumer_closed), RK_FIELD(RingIndices, pad1)});
  expect_layout(refl, "RkControlBlock", sizeof(ControlBlock),
                {RK_FIELD(ControlBlock, is_active), RK_FIELD(ControlBlock, should_terminate),
                 RK_FIELD(ControlBlock, host_generation), RK_FIELD(ControlBlock, has_terminated),
                 RK_FIELD(ControlBlock, last_error), RK_FIELD(ControlBlock, messages_processed),
                 RK_FIELD(ControlBlock, messages_dropped), RK_FIELD(ControlBlock, heartbeat),
                 RK_FIELD(ControlBlock, acked_active), RK_FIELD(ControlBlock, reserved0), RK_FIELD(ControlBlock, hlc),
                 RK_FIELD(ControlBlock, input_capacity), RK_FIELD(ControlBlock, output_capacity),
                 RK_FIELD(ControlBlock, input_slot_size), RK_FIELD(ControlBlock, output_slot_size),
                 RK_FIELD(ControlBlock, kernel_id), RK_FIELD(ControlBlock, tenant_id), RK_FIELD(ControlBlock, reserved1)});
  expect_layout(refl, "RkTelemetryBuffer", sizeof(TelemetryBuffer),
                {RK_FIELD(TelemetryBuffer, messages_processed), RK_FIELD(TelemetryBuffer, messages_dropped),
                 RK_FIELD(TelemetryBuffer, total_latency_us), RK_FIELD(TelemetryBuffer, min_latency_us),
                 RK_FIELD(TelemetryBuffer, max_latency_us), RK_FIELD(TelemetryBuffer, input_queue_depth),
                 RK_FIELD(TelemetryBuffer, output_queue_depth), RK_FIELD(TelemetryBuffer, last_error),
                 RK_FIELD(TelemetryBuffer, reserved0), RK_FIELD(TelemetryBuffer, k2k_sent)});
  expect_layout(refl, "RkRouteEntry", sizeof(RouteEntry),
                {RK_FIELD(RouteEntry, ring), RK_FIELD(RouteEntry, peer), RK_FIELD(RouteEntry, capacity),
                 RK_FIELD(RouteEntry, slot_size), RK_FIELD(RouteEntry, reserved)});
  expect_layout(refl, "RkKernelParams", sizeof(KernelParams),
                {RK_FIELD(KernelParams, input_ring), RK_FIELD(KernelParams, output_ring), RK_FIELD(KernelParams, state),
                 RK_FIELD(KernelParams, directory), RK_FIELD(KernelParams, node_id), RK_FIELD(KernelParams, max_skew_us),
                 RK_FIELD(KernelParams, tenant_id), RK_FIELD(KernelParams, input_capacity),
                 RK_FIELD(KernelParams, input_slot_size), RK_FIELD(KernelParams, output_capacity),
                 RK_FIELD(KernelParams, output_slot_size), RK_FIELD(KernelParams, kernel_slot),
                 RK_FIELD(KernelParams, flags), RK_FIELD(KernelParams, max_batches), RK_FIELD(KernelParams, max_messages),
                 RK_FIELD(KernelParams, reserved0), RK_FIELD(KernelParams, calib_host_us),
                 RK_FIELD(KernelParams, calib_seq), RK_FIELD(KernelParams, out_route_count),
                 RK_FIELD(KernelParams, in_route_count), RK_FIELD(KernelParams, reserved1),
                 RK_FIELD(KernelParams, calib_device_clock), RK_FIELD(KernelParams, calib_seen_seq),
                 RK_FIELD(KernelParams, hlc), RK_FIELD(KernelParams, dead_letters),
                 RK_FIELD(KernelParams, tenant_rejections), RK_FIELD(KernelParams, k2k_sent),
                 RK_FIELD(KernelParams, next_ring), RK_FIELD(KernelParams, reserved2), RK_FIELD(KernelParams, out_routes),
                 RK_FIELD(KernelParams, in_routes)});
  expect_layout(refl, "RkKernelBlock", sizeof(KernelBlock),
                {Field{"control", offsetof(KernelBlock, control), sizeof(ControlBlock)},
                 Field{"telemetry", offsetof(KernelBlock, telemetry), sizeof(TelemetryBuffer)},
                 RK_FIELD(KernelBlock, reserved), RK_FIELD(KernelBlock, params)});
}

TEST(VulkanWire, glsl_constants_and_specialisation_ids_match_the_cpp_side) {
  const SpirvReflection refl = reflect(vktest_spirv::layout_check);
  auto value = [&](const char* name) -> std::uint64_t {
    const auto c = refl.spec_constant(std::string("check_") + name);
    EXPECT_TRUE(c.has_value()) << name << " is not exported by layout_check.comp";
    return c ? c->default_value : ~std::uint64_t{0};
  };
  EXPECT_EQ(value("RK_OK"), static_cast<std::uint64_t>(Status::Ok));
  EXPECT_EQ(value("RK_QUEUE_FULL"), static_cast<std::uint64_t>(Status::QueueFull));
  EXPECT_EQ(value("RK_QUEUE_EMPTY"), static_cast<std::uint64_t>(Status::QueueEmpty));
  EXPECT_EQ(value("RK_TIMEOUT"), static_cast<std::uint64_t>(Status::Timeout));
  EXPECT_EQ(value("RK_CLOSED"), static_cast<std::uint64_t>(Status::Closed));
  EXPECT_EQ(value("RK_INVALID_MESSAGE"), static_cast<std::uint64_t>(Status::InvalidMessage));
  EXPECT_EQ(value("RK_TOO_LARGE"), static_cast<std::uint64_t>(Status::TooLarge));
  EXPECT_EQ(value("RK_NO_ROUTE"), static_cast<std::uint64_t>(Status::NoRoute));
  EXPECT_EQ(value("RK_TENANT_MISMATCH"), static_cast<std::uint64_t>(Status::TenantMismatch));
  EXPECT_EQ(value("RK_FAULTED"), static_cast<std::uint64_t>(Status::Faulted));
  EXPECT_EQ(value("RK_ERROR_NONE"), static_cast<std::uint64_t>(DeviceError::None));
  EXPECT_EQ(value("RK_ERROR_HANDLER_FAULT"), static_cast<std::uint64_t>(DeviceError::HandlerFault));
  EXPECT_EQ(value("RK_ERROR_BAD_MESSAGE"), static_cast<std::uint64_t>(DeviceError::BadMessage));
  EXPECT_EQ(value("RK_ERROR_BARRIER_IN_PARALLEL"), static_cast<std::uint64_t>(DeviceError::BarrierInParallel));
  EXPECT_EQ(value("RK_ERROR_K2K_OVERFLOW"), static_cast<std::uint64_t>(DeviceError::K2KOverflow));
  EXPECT_EQ(value("RK_MODE_ACTOR"), static_cast<std::uint64_t>(KernelMode::Actor));
  EXPECT_EQ(value("RK_MODE_PARALLEL"), static_cast<std::uint64_t>(KernelMode::Parallel));
  EXPECT_EQ(value("RK_ENVELOPE_RESPONSE"), kEnvelopeResponse);
  EXPECT_EQ(value("RK_ENVELOPE_K2K"), kEnvelopeK2K);
  EXPECT_EQ(value("RK_PRIORITY_NORMAL"), static_cast<std::uint64_t>(Priority::Normal));
  EXPECT_EQ(value("RK_INDEX_ALIGN"), kIndexAlign);
  EXPECT_EQ(value("RK_ENVELOPE_SIZE"), sizeof(Envelope));
  EXPECT_EQ(value("RK_RING_HEADER_SIZE"), sizeof(RingIndices));
  EXPECT_EQ(value("RK_MAX_ROUTES"), vk::detail::kMaxRoutes);
  EXPECT_EQ(value("RK_MAX_KERNELS"), detail::RuntimeCore::kMaxKernels);
  EXPECT_EQ(value("RK_WARP_SIZE"), kWarpSize);
  EXPECT_EQ(value("RK_HLC_LOGICAL_BITS"), hlc::kLogicalBits);
  EXPECT_EQ(value("RK_FLAG_K2K"), vk::detail::kFlagK2K);
  EXPECT_EQ(value("RK_FLAG_PULL"), vk::detail::kFlagPull);
  EXPECT_EQ(value("RK_FLAG_RESPONSE"), vk::detail::kFlagResponse);

  auto spec_id = [&](const char* name) -> std::uint32_t {
    const auto c = refl.spec_constant(name);
    EXPECT_TRUE(c.has_value()) << name;
    return c ? c->spec_id : ~0u;
  };
  EXPECT_EQ(spec_id("RK_MODE"), vk::detail::kSpecMode);
  EXPECT_EQ(spec_id("RK_PERSISTENT"), vk::detail::kSpecPersistent);
  EXPECT_EQ(spec_id("RK_SHARED_WORDS"), vk::detail::kSpecSharedWords);
  EXPECT_EQ(spec_id("RK_GRID_DIM"), vk::detail::kSpecGridSize);
  EXPECT_EQ(spec_id("RK_BLOCK_DIM"), vk::detail::kSpecBlockDim);
  EXPECT_EQ(spec_id("rk_type_id_CheckRequest"), vk::detail::kSpecTypeId);
  EXPECT_EQ(spec_id("rk_type_size_CheckRequest"), vk::detail::kSpecTypeSize);
}

// ---- the backend on this machine's device ------------------------------------------------

class VulkanBackend : public ::testing::Test {
 protected:
  void SetUp() override {
    const BackendAvailability a = availability(Backend::Vulkan);
    if (!a.available) GTEST_SKIP() << "Vulkan backend not available here: " << a.reason;
  }
  void TearDown() override { vk::set_options({}); }
  static RingKernel runtime() { return RingKernel::builder().backend(Backend::Vulkan).build().value(); }
};

TEST_F(VulkanBackend, devices_are_listed_in_selection_order_with_reasons) {
  auto devs = vk::devices();
  ASSERT_TRUE(devs.ok()) << devs.error().what();
  ASSERT_FALSE(devs->empty());
  EXPECT_TRUE(devs->front().suitable);
  for (const vk::DeviceInfo& d : *devs) {
    EXPECT_FALSE(d.name.empty());
    if (!d.suitable) {
      EXPECT_FALSE(d.reason.empty()) << d.name;
    }
  }
  EXPECT_NE(availability(Backend::Vulkan).device.find(devs->front().name), std::string::npos);
}

TEST_F(VulkanBackend, an_out_of_range_device_index_is_a_clear_error) {
  auto rt = RingKernel::builder().backend(Backend::Vulkan).device_index(99).build();
  ASSERT_FALSE(rt.ok());  // build() checks the device it was given, not device 0
  EXPECT_EQ(rt.error().code(), ErrorCode::BackendUnavailable);
  EXPECT_NE(rt.error().message().find("out of range"), std::string::npos) << rt.error().message();
  EXPECT_FALSE(availability(Backend::Vulkan, 99).available);
  EXPECT_TRUE(availability(Backend::Vulkan, 0).available);
}

TEST_F(VulkanBackend, the_runtime_names_the_device_it_runs_on) {
  RingKernel rt = runtime();
  EXPECT_EQ(rt.backend(), Backend::Vulkan);
  EXPECT_EQ(rt.device_name(), availability(Backend::Vulkan, 0).device);
}

TEST_F(VulkanBackend, dispatch_mode_is_chosen_from_the_device_and_can_be_forced) {
  auto devs = vk::devices().value();
  const bool cpu = devs.front().type == "CPU";
  {
    RingKernel rt = runtime();
    KernelHandle k = rt.launch("test.echo", LaunchOptions{.block_size = 1}).value();
    const vk::KernelPlacement p = vk::describe(k).value();
    EXPECT_EQ(p.dispatch, cpu ? vk::DispatchMode::Tick : vk::DispatchMode::Persistent);
    EXPECT_EQ(k.call<rktest::Reply>(rktest::Item{1, 2}, 5s).value().value, 5);
  }
  vk::set_options({.dispatch = vk::DispatchMode::Tick});
  {
    RingKernel rt = runtime();
    KernelHandle k = rt.launch("test.echo", LaunchOptions{.block_size = 1}).value();
    EXPECT_EQ(vk::describe(k).value().dispatch, vk::DispatchMode::Tick);
    EXPECT_EQ(k.call<rktest::Reply>(rktest::Item{1, 3}, 5s).value().value, 7);
  }
}

TEST_F(VulkanBackend, ring_placement_can_be_chosen_per_direction) {
  vk::set_options({.input_placement = vk::Placement::Host, .output_placement = vk::Placement::Host});
  RingKernel rt = runtime();
  KernelHandle k = rt.launch("test.echo", LaunchOptions{.block_size = 1}).value();
  const vk::KernelPlacement p = vk::describe(k).value();
  // A device without a separate system-memory type (CPU implementations) reports where the
  // ring really is.
  EXPECT_NE(p.input, vk::Placement::Auto);
  EXPECT_NE(p.output, vk::Placement::Auto);
  EXPECT_EQ(k.call<rktest::Reply>(rktest::Item{1, 4}, 5s).value().value, 9);
}

TEST_F(VulkanBackend, forced_persistent_dispatch_without_a_free_queue_is_refused_with_the_reason) {
  vk::set_options({.dispatch = vk::DispatchMode::Persistent});
  RingKernel rt = runtime();
  std::vector<KernelHandle> held;
  // Take every queue this device lends to persistent dispatches (at most
  // Options::max_persistent; one is kept for tick dispatches); the next launch must say so.
  for (int i = 0; i < 64; ++i) {
    std::string id = std::to_string(i);
    id.insert(id.begin(), 'p');  // ("p" + to_string(i) trips a -Wrestrict false positive of g++ 12)
    auto k = rt.launch("test.echo", LaunchOptions{.block_size = 1, .kernel_id = std::move(id)});
    if (!k.ok()) {
      EXPECT_EQ(k.error().code(), ErrorCode::LaunchFailed);
      EXPECT_NE(k.error().message().find("no compute queue is left"), std::string::npos) << k.error().message();
      // The persistent dispatches that did start all answer, side by side.
      for (std::size_t j = 0; j < held.size(); ++j) {
        auto r = held[j].call<rktest::Reply>(rktest::Item{j, 1}, 5s);
        ASSERT_TRUE(r.ok()) << "kernel p" << j << ": " << r.error().what();
        EXPECT_EQ(r->value, 3);
      }
      return;
    }
    held.push_back(std::move(*k));
  }
  GTEST_SKIP() << "this device has more than 64 compute queues";
}

TEST_F(VulkanBackend, a_glsl_message_that_differs_from_its_cpp_declaration_is_refused_at_launch) {
  RingKernel rt = runtime();
  auto k = rt.launch("vktest.mismatched");
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.error().code(), ErrorCode::LaunchFailed);
  EXPECT_NE(k.error().message().find("is 24 bytes but the C++ message test.Item is 16 bytes"), std::string::npos)
      << k.error().message();
}

TEST_F(VulkanBackend, the_shader_keeps_telemetry_and_the_control_block_current) {
  RingKernel rt = runtime();
  KernelHandle k = rt.launch("test.echo", LaunchOptions{.block_size = 32}).value();
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(k.send(rktest::Item{static_cast<std::uint64_t>(i), i}).ok());
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(k.receive<rktest::Reply>(5s).ok());
  // Telemetry is eventually consistent: the shader publishes a batch's responses before it
  // writes that batch's figures.
  KernelMetrics m = k.metrics();
  for (const auto deadline = std::chrono::steady_clock::now() + 2s;
       (m.telemetry.raw.messages_processed != 50u || k.status().messages_processed != 50u) &&
       std::chrono::steady_clock::now() < deadline;
       m = k.metrics())
    std::this_thread::sleep_for(1ms);
  EXPECT_EQ(m.telemetry.raw.messages_processed, 50u);
  EXPECT_EQ(m.telemetry.raw.messages_dropped, 0u);
  EXPECT_LE(m.telemetry.raw.min_latency_us, m.telemetry.raw.max_latency_us);
  EXPECT_GE(m.telemetry.raw.input_queue_depth, 1u);
  const KernelStatus s = k.status();
  EXPECT_EQ(s.messages_processed, 50u);
  EXPECT_GT(s.hlc.physical, 0u);
  EXPECT_NE(s.hlc.node_id, 0u);
  EXPECT_GT(load_relaxed(&k.core_ptr()->control->heartbeat), 0u);
}

TEST_F(VulkanBackend, a_handle_outlives_its_runtime_and_keeps_its_queues_readable) {
  std::optional<KernelHandle> k;
  {
    RingKernel rt = runtime();
    k.emplace(rt.launch("test.echo", LaunchOptions{.block_size = 1}).value());
    ASSERT_TRUE(k->send(rktest::Item{1, 10}).ok());
    // Wait for the reply to be queued, then let the runtime go.
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (k->core_ptr()->output.stats().depth == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(k->state(), KernelState::Terminated);
  EXPECT_EQ(k->receive<rktest::Reply>(1s).value().value, 21);
}

// Registered for Vulkan only: its GLSL request struct differs from rktest::Item.
RK_VULKAN_KERNEL("vktest.mismatched", rktest::Echo, vktest_spirv::mismatched);
