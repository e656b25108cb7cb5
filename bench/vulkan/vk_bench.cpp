// vk_bench — the Vulkan backend measured through the public API, with its baselines in the
// same process:
//   * submit+wait: one empty dispatch submitted and waited for per message, what a Vulkan
//     program does without a persistent kernel (the floor tick mode pays per round);
//   * the CPU backend's round trip, for scale;
//   * host -> kernel -> host round trips (send + receive of one 16-byte message) in each
//     dispatch mode and ring placement the device allows;
//   * streaming: a parallel-mode kernel echoing messages sent and received with the batch
//     API from one thread (messages/s from first send to last receive).
// Each configuration runs in a fresh runtime; one that fails or times out prints why and the
// run goes on. Usage: vk_bench [--quick] [--rounds N] [--messages N] [--device I] [--cpu C]
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <ringkernel/ringkernel.hpp>
#include <ringkernel/vulkan/vulkan.hpp>

#include "vk_bench_spirv.hpp"
#include "vulkan/vk_device.hpp"

using namespace ringkernel;
using namespace std::chrono_literals;
namespace vk = ringkernel::vulkan;
using Clock = std::chrono::steady_clock;

// ---- the kernel -----------------------------------------------------------------------------
namespace bench {
struct BenchMsg {
  std::uint64_t seq;
  std::uint64_t payload;
};
RK_MESSAGE(BenchMsg, "bench.Msg", seq, payload);

struct Echo {
  using Request = BenchMsg;
  using Response = BenchMsg;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const BenchMsg& in, BenchMsg& out) const {
    out = BenchMsg{in.seq, in.payload + 1};
    return ctx.mode() == KernelMode::Parallel || ctx.thread_id() == 0;
  }
};
}  // namespace bench
RK_KERNEL("bench.echo", bench::Echo);
RK_VULKAN_KERNEL("bench.echo", bench::Echo, bench_spirv::echo);

namespace {

struct Args {
  int rounds = 20000;
  std::size_t messages = 4'000'000;
  std::uint32_t device = 0;
  int cpu = -1;
  bool quick = false;
};

struct Row {
  std::string name;
  std::string detail;  // dispatch / placement actually used
  double p50 = 0, p99 = 0, rate = 0;
  std::string error;
};

std::vector<Row> g_rows;

void print_row(const Row& r) {
  if (!r.error.empty()) {
    std::printf("%-44s %-26s %s\n", r.name.c_str(), r.detail.c_str(), r.error.c_str());
  } else if (r.rate > 0) {
    std::printf("%-44s %-26s %10s %10s %12.2f M msg/s\n", r.name.c_str(), r.detail.c_str(), "-", "-", r.rate / 1e6);
  } else {
    std::printf("%-44s %-26s %10.2f %10.2f\n", r.name.c_str(), r.detail.c_str(), r.p50, r.p99);
  }
  std::fflush(stdout);
  g_rows.push_back(r);
}

void percentiles(std::vector<double>& us, Row& r) {
  std::sort(us.begin(), us.end());
  r.p50 = us[us.size() / 2];
  r.p99 = us[std::min(us.size() - 1, us.size() * 99 / 100)];
}

std::string describe(const KernelHandle& k) {
  if (k.backend() != Backend::Vulkan) return to_string(k.backend());
  auto p = vk::describe(k);
  if (!p) return "?";
  return std::string(vk::to_string(p->dispatch)) + " in:" + vk::to_string(p->input) + " out:" + vk::to_string(p->output);
}

// ---- baseline: submit + wait of an empty dispatch ---------------------------------------------
void baseline_submit_wait(const Args& a) {
  Row r{"baseline: submit+wait of an empty dispatch", "vkQueueSubmit+vkWaitForFences"};
  using namespace vk::detail;
  auto ctx = DeviceContext::create(a.device);
  if (!ctx) {
    r.error = ctx.error().message();
    return print_row(r);
  }
  const DeviceApi& api = (*ctx)->api();
  VkDevice dev = (*ctx)->device();
  VkShaderModuleCreateInfo mci{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
  mci.codeSize = bench_spirv::noop.word_count * 4;
  mci.pCode = bench_spirv::noop.words;
  VkShaderModule module;
  api.vkCreateShaderModule(dev, &mci, nullptr, &module);
  VkComputePipelineCreateInfo pci{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  pci.stage = {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, nullptr, 0, VK_SHADER_STAGE_COMPUTE_BIT, module, "main", nullptr};
  pci.layout = (*ctx)->layout();
  VkPipeline pipe;
  api.vkCreateComputePipelines(dev, VK_NULL_HANDLE, 1, &pci, nullptr, &pipe);
  const QueueSlot& q = (*ctx)->tick_queue();
  VkCommandPoolCreateInfo cpi{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  cpi.queueFamilyIndex = q.family;
  VkCommandPool pool;
  api.vkCreateCommandPool(dev, &cpi, nullptr, &pool);
  VkCommandBufferAllocateInfo cai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, nullptr, pool, VK_COMMAND_BUFFER_LEVEL_PRIMARY, 1};
  VkCommandBuffer cmd;
  api.vkAllocateCommandBuffers(dev, &cai, &cmd);
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  api.vkBeginCommandBuffer(cmd, &bi);
  api.vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
  api.vkCmdDispatch(cmd, 1, 1, 1);
  api.vkEndCommandBuffer(cmd);
  VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  VkFence fence;
  api.vkCreateFence(dev, &fci, nullptr, &fence);
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd;
  const int n = std::max(200, a.rounds / 10);
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n + 20; ++i) {
    const auto t0 = Clock::now();
    VkResult res = api.vkQueueSubmit(q.queue, 1, &si, fence);
    if (res == VK_SUCCESS) res = api.vkWaitForFences(dev, 1, &fence, VK_TRUE, 5'000'000'000ull);
    const auto t1 = Clock::now();
    if (res != VK_SUCCESS) {
      r.error = std::string("failed: ") + result_name(res);
      break;
    }
    api.vkResetFences(dev, 1, &fence);
    if (i >= 20) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());  // after warm-up
  }
  api.vkDestroyFence(dev, fence, nullptr);
  api.vkDestroyCommandPool(dev, pool, nullptr);
  api.vkDestroyPipeline(dev, pipe, nullptr);
  api.vkDestroyShaderModule(dev, module, nullptr);
  if (r.error.empty()) percentiles(us, r);
  print_row(r);
}

// ---- round trips through the public API -------------------------------------------------------
void round_trip(const char* name, Backend backend, std::optional<vk::Options> opt, const Args& a, std::uint32_t block) {
  Row r{name, ""};
  if (opt) vk::set_options(*opt);
  {
    auto rt = RingKernel::builder().backend(backend).device_index(a.device).build();
    if (!rt) {
      r.error = rt.error().message();
      vk::set_options({});
      return print_row(r);
    }
    auto k = rt->launch("bench.echo", LaunchOptions{.block_size = block, .input_queue_capacity = 1024,
                                                    .output_queue_capacity = 1024});
    vk::set_options({});
    if (!k) {
      r.error = k.error().message();
      return print_row(r);
    }
    r.detail = describe(*k) + (block > 1 ? " b" + std::to_string(block) : "");
    const bool slow = k->backend() == Backend::Vulkan && vk::describe(*k)->dispatch == vk::DispatchMode::Tick;
    const int n = slow ? std::max(200, a.rounds / 50) : a.rounds;
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n + 100; ++i) {
      const auto t0 = Clock::now();
      const Status s = k->try_send(bench::BenchMsg{static_cast<std::uint64_t>(i), 7});
      if (s != Status::Ok) {
        r.error = std::string("send: ") + to_string(s);
        break;
      }
      auto resp = k->receive<bench::BenchMsg>(2s);
      const auto t1 = Clock::now();
      if (!resp) {
        r.error = "no response: " + resp.error().message();
        break;
      }
      if (resp->seq != static_cast<std::uint64_t>(i) || resp->payload != 8) {
        r.error = "wrong response";
        break;
      }
      if (i >= 100) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());  // after warm-up
    }
    if (r.error.empty()) percentiles(us, r);
    if (auto t = k->terminate(2s); !t) r.error += (r.error.empty() ? "" : "; ") + std::string("terminate: ") + t.error().message();
  }
  print_row(r);
}

// ---- streaming with the batch API -------------------------------------------------------------
void streaming(const char* name, std::optional<vk::Options> opt, const Args& a, std::uint32_t block, std::size_t messages) {
  Row r{name, ""};
  if (opt) vk::set_options(*opt);
  {
    auto rt = RingKernel::builder().backend(Backend::Vulkan).device_index(a.device).build();
    if (!rt) {
      r.error = rt.error().message();
      vk::set_options({});
      return print_row(r);
    }
    constexpr std::uint32_t kCap = 1u << 16;
    auto k = rt->launch("bench.echo", LaunchOptions{.mode = KernelMode::Parallel, .block_size = block,
                                                    .input_queue_capacity = kCap, .output_queue_capacity = kCap});
    vk::set_options({});
    if (!k) {
      r.error = k.error().message();
      return print_row(r);
    }
    r.detail = describe(*k) + " b" + std::to_string(block);
    constexpr std::size_t kBatch = 4096;
    std::vector<bench::BenchMsg> in(kBatch), out(kBatch);
    std::size_t sent = 0, got = 0;
    std::uint64_t checksum = 0;
    const auto t0 = Clock::now();
    auto last_progress = t0;
    while (got < messages) {
      if (sent < messages) {
        const std::size_t want = std::min(kBatch, messages - sent);
        for (std::size_t i = 0; i < want; ++i) in[i] = bench::BenchMsg{sent + i, sent + i};
        sent += k->try_send_batch(std::span<const bench::BenchMsg>(in.data(), want));
      }
      const std::size_t n = k->try_receive_batch(std::span<bench::BenchMsg>(out));
      for (std::size_t i = 0; i < n; ++i) checksum += out[i].payload;
      got += n;
      const auto now = Clock::now();
      if (n != 0) last_progress = now;
      if (now - last_progress > 3s) {
        r.error = "stalled after " + std::to_string(got) + " of " + std::to_string(messages) + " messages";
        break;
      }
    }
    const auto t1 = Clock::now();
    const std::uint64_t expect = messages * (messages - 1) / 2 + messages;
    if (r.error.empty() && checksum != expect) r.error = "wrong responses (checksum)";
    if (r.error.empty()) r.rate = static_cast<double>(messages) / std::chrono::duration<double>(t1 - t0).count();
    if (auto t = k->terminate(2s); !t) r.error += (r.error.empty() ? "" : "; ") + std::string("terminate: ") + t.error().message();
  }
  print_row(r);
}

void pin(int cpu) {
  const int n = static_cast<int>(std::thread::hardware_concurrency());
  if (cpu < 0) {
    if (n < 4) return;  // small machines: leave the scheduler alone
    cpu = n - 1;
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0) std::printf("host thread pinned to CPU %d\n", cpu);
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto next = [&] { return i + 1 < argc ? argv[++i] : "0"; };
    if (s == "--quick") a.quick = true;
    else if (s == "--rounds") a.rounds = std::atoi(next());
    else if (s == "--messages") a.messages = std::strtoull(next(), nullptr, 10);
    else if (s == "--device") a.device = static_cast<std::uint32_t>(std::atoi(next()));
    else if (s == "--cpu") a.cpu = std::atoi(next());
    else {
      std::fprintf(stderr, "usage: vk_bench [--quick] [--rounds N] [--messages N] [--device I] [--cpu C]\n");
      return 2;
    }
  }
  const BackendAvailability av = availability(Backend::Vulkan);
  if (!av.available) {
    std::printf("Vulkan backend not available: %s\n", av.reason.c_str());
    return 1;
  }
  auto devs = vk::devices().value();
  const bool cpu_device = a.device < devs.size() && devs[a.device].type == "CPU";
  if (a.quick || cpu_device) {
    a.rounds = std::min(a.rounds, 2000);
    a.messages = std::min<std::size_t>(a.messages, 200'000);
  }
  pin(a.cpu);
  std::printf("device: %s\n", a.device < devs.size() ? (devs[a.device].name + " (" + devs[a.device].type + ", " + devs[a.device].driver + ")").c_str() : "?");
  std::printf("%-44s %-26s %10s %10s %12s\n", "case", "how", "p50 us", "p99 us", "rate");

  using vk::DispatchMode;
  using vk::Placement;
  baseline_submit_wait(a);
  round_trip("cpu backend round trip (reference)", Backend::Cpu, std::nullopt, a, 1);
  round_trip("round trip, auto", Backend::Vulkan, vk::Options{}, a, 1);
  round_trip("round trip, tick", Backend::Vulkan, vk::Options{.dispatch = DispatchMode::Tick}, a, 1);
  if (!cpu_device) {
    round_trip("round trip, persistent, block 32", Backend::Vulkan, vk::Options{.dispatch = DispatchMode::Persistent}, a, 32);
    round_trip("round trip, persistent, out:host", Backend::Vulkan,
               vk::Options{.dispatch = DispatchMode::Persistent, .output_placement = Placement::Host}, a, 1);
  }
  streaming("streaming, parallel b256", vk::Options{}, a, 256, a.messages);
  streaming("streaming, parallel b1024", vk::Options{}, a, 1024, a.messages);
  if (!cpu_device) {
    streaming("streaming, parallel b1024, out:host", vk::Options{.output_placement = Placement::Host}, a, 1024, a.messages);
    // Last: the GPU may never see host writes to system memory (DESIGN.md), so this one
    // may time out and leave its dispatch running.
    round_trip("round trip, persistent, in:host out:host", Backend::Vulkan,
               vk::Options{.dispatch = DispatchMode::Persistent, .input_placement = Placement::Host,
                           .output_placement = Placement::Host},
               a, 1);
  }
  return 0;
}
