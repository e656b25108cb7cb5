// ringkernel/multi_gpu.hpp on every backend: two devices (two GPUs where the machine has
// them; else two runtimes of the one device, which exercises the same code: every device
// of a coordinator has a runtime of its own).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "backend_name.hpp"
#include "test_kernels.hpp"
#include <ringkernel/multi_gpu.hpp>

using namespace ringkernel;
using namespace std::chrono_literals;
using rktest::Item;
using rktest::Reply;

namespace {

class MultiDeviceTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    const BackendAvailability a = availability(GetParam());
    if (!a.available) GTEST_SKIP() << to_string(GetParam()) << " backend not available here: " << a.reason;
    for (const char* k : {"test.echo", "test.counter", "test.doubler"}) {
      const KernelInfo* info = find_kernel(k);
      if (!info || !info->has_backend(GetParam()))
        GTEST_SKIP() << "kernel " << k << " has no " << to_string(GetParam()) << " build";
    }
  }

  /// Two devices of the backend under test.
  MultiGpuCoordinator two_devices(LoadBalancingStrategy s = LoadBalancingStrategy::LeastLoaded,
                                  std::uint32_t max_per_device = 64) {
    MultiGpuBuilder b;
    b.backend(GetParam()).load_balancing(s).max_kernels_per_device(max_per_device);
    if (GetParam() == Backend::Cpu) {
      b.cpu_runtimes(2);
    } else {
      const std::uint32_t n = availability(GetParam()).device_count;
      b.preferred_devices(n >= 2 ? std::vector<std::uint32_t>{0, 1} : std::vector<std::uint32_t>{0, 0});
    }
    auto c = b.build();
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().what());
    if (!c.ok()) throw std::runtime_error("coordinator");
    EXPECT_EQ(c->device_count(), 2u);
    return std::move(*c);
  }
};

/// "<prefix><i>" (built with +=: g++ 12 warns falsely on "literal" + std::string).
std::string numbered(const char* prefix, int i) {
  std::string s(prefix);
  s += std::to_string(i);
  return s;
}

}  // namespace

TEST_P(MultiDeviceTest, devices_are_described_and_each_runs_its_own_runtime) {
  MultiGpuCoordinator c = two_devices();
  for (std::size_t i = 0; i < 2; ++i) {
    const DeviceInfo& d = c.device(i);
    EXPECT_EQ(d.index, i);
    EXPECT_EQ(d.backend, GetParam());
    EXPECT_FALSE(d.name.empty());
  }
  EXPECT_NE(&c.runtime(0), &c.runtime(1));
  EXPECT_NE(c.runtime(0).clock().node_id(), c.runtime(1).clock().node_id()) << "stamps of two devices never tie";
  if (GetParam() == Backend::Cuda) {
    EXPECT_GT(c.device(0).memory_bytes, 0u);
    EXPECT_GE(c.device(0).compute_capability, 70u);
  }
  const std::vector<DeviceStatus> st = c.status();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0].kernels, 0u);
  if (GetParam() != Backend::Vulkan) {
    ASSERT_TRUE(st[0].free_memory.has_value());
    EXPECT_GT(*st[0].free_memory, 0u);
  }
}

TEST_P(MultiDeviceTest, placement_follows_the_strategy) {
  {
    MultiGpuCoordinator c = two_devices(LoadBalancingStrategy::LeastLoaded);
    std::vector<KernelHandle> ks;
    std::size_t per[2] = {0, 0};
    for (int i = 0; i < 4; ++i) {
      std::size_t placed = 9;
      auto k = c.launch("test.echo", LaunchOptions{.block_size = 32, .kernel_id = numbered("e", i)}, &placed);
      ASSERT_TRUE(k.ok()) << k.error().what();
      ASSERT_LT(placed, 2u);
      EXPECT_EQ(c.device_of(*k), placed);
      ++per[placed];
      ks.push_back(std::move(*k));
    }
    EXPECT_EQ(per[0], 2u);
    EXPECT_EQ(per[1], 2u);
    EXPECT_EQ(c.stats().launches, 4u);
  }
  {
    MultiGpuCoordinator c = two_devices(LoadBalancingStrategy::RoundRobin);
    std::vector<KernelHandle> ks;
    for (int i = 0; i < 3; ++i) {
      std::size_t placed = 9;
      EXPECT_EQ(c.select_device().value(), static_cast<std::size_t>(i % 2));
      ks.push_back(c.launch("test.echo", LaunchOptions{.block_size = 32, .kernel_id = numbered("r", i)}, &placed).value());
      EXPECT_EQ(placed, static_cast<std::size_t>(i % 2));
    }
  }
  {
    // One kernel per device at most: the third launch finds no room, and says so.
    MultiGpuCoordinator c = two_devices(LoadBalancingStrategy::FirstAvailable, 1);
    std::size_t p0 = 9, p1 = 9;
    KernelHandle a = c.launch("test.echo", LaunchOptions{.block_size = 32, .kernel_id = "f0"}, &p0).value();
    KernelHandle b = c.launch("test.echo", LaunchOptions{.block_size = 32, .kernel_id = "f1"}, &p1).value();
    EXPECT_EQ(p0, 0u);
    EXPECT_EQ(p1, 1u);
    auto third = c.launch("test.echo", LaunchOptions{.block_size = 32, .kernel_id = "f2"});
    ASSERT_FALSE(third.ok());
    EXPECT_EQ(third.error().code(), ErrorCode::InvalidState);
    EXPECT_EQ(c.stats().refused, 1u);
  }
  {
    auto c = MultiGpuCoordinator::builder()
                 .backend(GetParam())
                 .cpu_runtimes(2)
                 .preferred_devices(availability(GetParam()).device_count >= 2 ? std::vector<std::uint32_t>{0, 1}
                                                                              : std::vector<std::uint32_t>{0, 0})
                 .custom([](std::span<const DeviceStatus> devices, std::string_view kernel) -> std::optional<std::size_t> {
                   if (kernel == "test.counter") return devices.size() - 1;
                   return std::nullopt;
                 })
                 .build();
    ASSERT_TRUE(c.ok()) << c.error().what();
    std::size_t placed = 9;
    KernelHandle k = c->launch("test.counter", LaunchOptions{.block_size = 32}, &placed).value();
    EXPECT_EQ(placed, 1u);
    auto refused = c->launch("test.echo");
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code(), ErrorCode::InvalidState);
  }
}

TEST_P(MultiDeviceTest, a_group_spreads_sends_over_its_replicas_and_every_answer_comes_back) {
  MultiGpuCoordinator c = two_devices();
  KernelGroup g = c.launch_group("test.echo", LaunchOptions{.block_size = 32}).value();
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g.live(), 2u);
  EXPECT_EQ(g.replica(0).id().value, "test.echo@0");
  EXPECT_EQ(g.device_of(1), 1u);
  for (GroupRouting routing : {GroupRouting::RoundRobin, GroupRouting::LeastLoaded}) {
    g.set_routing(routing);
    const std::uint64_t before0 = g.sent_to(0), before1 = g.sent_to(1);
    constexpr std::uint64_t kN = 400;
    std::map<std::size_t, std::uint64_t> sent_per;
    for (std::uint64_t i = 0; i < kN; ++i) {
      auto r = g.send(Item{i, static_cast<std::int64_t>(i)});
      ASSERT_TRUE(r.ok()) << r.error().what();
      ++sent_per[*r];
    }
    std::set<std::uint64_t> seen;
    std::map<std::size_t, std::uint64_t> from_per;
    for (std::uint64_t i = 0; i < kN; ++i) {
      std::size_t from = 9;
      auto r = g.receive<Reply>(5s, &from);
      ASSERT_TRUE(r.ok()) << r.error().what();
      EXPECT_EQ(r->value, static_cast<std::int64_t>(r->seq) * 2 + 1);
      EXPECT_TRUE(seen.insert(r->seq).second) << "seq " << r->seq << " twice";
      ++from_per[from];
    }
    EXPECT_EQ(seen.size(), kN);
    EXPECT_EQ(from_per, sent_per) << "each replica answers what was sent to it";
    EXPECT_EQ(g.sent_to(0) - before0 + g.sent_to(1) - before1, kN);
    if (routing == GroupRouting::RoundRobin) {
      EXPECT_EQ(g.sent_to(0) - before0, kN / 2);  // nothing was full: strict turns
    } else {
      EXPECT_GT(g.sent_to(0) - before0, 0u);
      EXPECT_GT(g.sent_to(1) - before1, 0u);
    }
  }
  // call() answers on the replica it went to.
  std::size_t on = 9;
  auto r = g.call<Reply>(Item{7, 5}, 5s, &on);
  ASSERT_TRUE(r.ok()) << r.error().what();
  EXPECT_EQ(r->value, 11);
  EXPECT_LT(on, 2u);
}

TEST_P(MultiDeviceTest, batches_spread_over_replicas_and_come_back_whole) {
  MultiGpuCoordinator c = two_devices();
  KernelGroup g = c.launch_group("test.echo", LaunchOptions{.block_size = 32}).value();
  std::vector<Item> items(3000);
  for (std::uint64_t i = 0; i < items.size(); ++i) items[i] = Item{i, static_cast<std::int64_t>(i)};
  auto sent = g.send_batch(std::span<const Item>(items), 10s);
  ASSERT_TRUE(sent.ok()) << sent.error().what();
  EXPECT_EQ(*sent, items.size());
  EXPECT_GT(g.sent_to(0), 0u);
  EXPECT_GT(g.sent_to(1), 0u);
  std::vector<Reply> out(512);
  std::vector<bool> seen(items.size(), false);
  std::size_t got = 0;
  while (got < items.size()) {
    auto n = g.receive_batch(std::span<Reply>(out), 5s);
    ASSERT_TRUE(n.ok()) << n.error().what() << " after " << got;
    for (std::size_t i = 0; i < *n; ++i) {
      ASSERT_LT(out[i].seq, items.size());
      EXPECT_FALSE(seen[out[i].seq]);
      seen[out[i].seq] = true;
      EXPECT_EQ(out[i].value, static_cast<std::int64_t>(out[i].seq) * 2 + 1);
    }
    got += *n;
  }
  EXPECT_EQ(got, items.size());
}

TEST_P(MultiDeviceTest, keyed_sends_keep_each_keys_state_on_one_replica) {
  MultiGpuCoordinator c = two_devices();
  KernelGroup g = c.launch_group("test.counter", LaunchOptions{.block_size = 32}).value();
  std::int64_t expect_total[2] = {0, 0};
  std::uint64_t expect_count[2] = {0, 0};
  for (std::uint64_t i = 0; i < 200; ++i) {
    const std::uint64_t key = i * 7 + 3;
    auto r = g.send_keyed(key, Item{i, static_cast<std::int64_t>(i + 1)});
    ASSERT_TRUE(r.ok()) << r.error().what();
    EXPECT_EQ(*r, key % 2);
    expect_total[*r] += static_cast<std::int64_t>(i + 1);
    ++expect_count[*r];
  }
  std::int64_t last_total[2] = {0, 0};
  std::uint64_t last_count[2] = {0, 0};
  for (int i = 0; i < 200; ++i) {
    std::size_t from = 9;
    auto r = g.receive<Reply>(5s, &from);
    ASSERT_TRUE(r.ok()) << r.error().what();
    ASSERT_LT(from, 2u);
    EXPECT_GT(r->aux, last_count[from]) << "FIFO per replica";
    last_total[from] = r->value;
    last_count[from] = r->aux;
  }
  for (int d = 0; d < 2; ++d) {
    EXPECT_EQ(last_total[d], expect_total[d]) << "replica " << d << " saw exactly its keys";
    EXPECT_EQ(last_count[d], expect_count[d]);
  }
}

TEST_P(MultiDeviceTest, a_stopped_replica_leaves_the_rotation_and_its_keys_fail) {
  MultiGpuCoordinator c = two_devices();
  KernelGroup g = c.launch_group("test.echo", LaunchOptions{.block_size = 32}).value();
  ASSERT_TRUE(g.replica(0).terminate().ok());
  for (std::uint64_t i = 0; i < 50; ++i) {
    auto r = g.send(Item{i, 1});
    ASSERT_TRUE(r.ok()) << r.error().what();
    EXPECT_EQ(*r, 1u);
  }
  EXPECT_EQ(g.live(), 1u);
  EXPECT_FALSE(g.alive(0));
  auto keyed = g.send_keyed(2, Item{1, 1});  // key 2 lives on replica 0
  ASSERT_FALSE(keyed.ok());
  EXPECT_EQ(keyed.error().code(), ErrorCode::KernelTerminated);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(g.receive<Reply>(5s).ok());
  ASSERT_TRUE(g.terminate().ok());
  auto none = g.send(Item{1, 1});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code(), ErrorCode::KernelTerminated);
  auto nothing = g.receive<Reply>(100ms);
  ASSERT_FALSE(nothing.ok());
  EXPECT_EQ(nothing.error().code(), ErrorCode::KernelTerminated);
}

TEST_P(MultiDeviceTest, a_pipe_relays_between_devices_in_order_with_causal_stamps) {
  MultiGpuCoordinator c = two_devices();
  KernelHandle stage1 = c.launch_on(0, "test.doubler", LaunchOptions{.block_size = 32}).value();
  KernelHandle stage2 = c.launch_on(1, "test.echo", LaunchOptions{.block_size = 32}).value();
  Pipe p = pipe(stage1, stage2, PipeOptions{.batch = 64}).value();
  EXPECT_TRUE(p.running());
  constexpr std::uint64_t kN = 2000;
  HlcTimestamp last{};
  std::uint64_t received = 0;
  const HlcTimestamp before = c.runtime(0).clock().tick();
  for (std::uint64_t i = 0; i < kN; ++i) {
    ASSERT_TRUE(stage1.send(Item{i, static_cast<std::int64_t>(i)}).ok());
    Received<Reply> r;
    while (stage2.try_receive(r) == Status::Ok) {  // read while sending: no queue fills
      ASSERT_EQ(r.message.seq, received) << "FIFO across the relay";
      EXPECT_EQ(r.message.value, static_cast<std::int64_t>(received) * 4 + 1);
      EXPECT_GT(r.timestamp, last);
      EXPECT_GT(r.timestamp, before) << "stamped after the first send, on another device's clock";
      last = r.timestamp;
      ++received;
    }
  }
  while (received < kN) {
    auto r = stage2.receive_message<Reply>(5s);
    ASSERT_TRUE(r.ok()) << r.error().what() << " after " << received;
    ASSERT_EQ(r->message.seq, received);
    EXPECT_EQ(r->message.value, static_cast<std::int64_t>(received) * 4 + 1);
    EXPECT_GT(r->timestamp, last);
    last = r->timestamp;
    ++received;
  }
  const auto counted = std::chrono::steady_clock::now() + 5s;
  while (p.stats().forwarded < kN && std::chrono::steady_clock::now() < counted) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(p.stats().forwarded, kN);
  EXPECT_GT(p.stats().batches, 0u);
  // The source stops: the relay ends once everything it sent arrived.
  ASSERT_TRUE(stage1.terminate().ok());
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (p.running() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  EXPECT_FALSE(p.running());
  EXPECT_NE(p.stats().stopped_because.find("source"), std::string::npos) << p.stats().stopped_because;
}

TEST_P(MultiDeviceTest, a_pipe_holds_what_a_full_destination_cannot_take_and_loses_none) {
  MultiGpuCoordinator c = two_devices();
  KernelHandle stage1 = c.launch_on(0, "test.doubler", LaunchOptions{.block_size = 32}).value();
  KernelHandle stage2 =
      c.launch_on(1, "test.echo", LaunchOptions{.block_size = 32, .input_queue_capacity = 16, .auto_activate = false})
          .value();
  Pipe p = pipe(stage1, stage2).value();
  constexpr std::uint64_t kN = 300;
  for (std::uint64_t i = 0; i < kN; ++i) ASSERT_TRUE(stage1.send(Item{i, 1}).ok());
  // The destination is not running its loop: 16 fit, the relay holds what it took beyond
  // them, the rest waits in the source's output queue.
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while ((p.stats().forwarded < 16 || p.stats().held == 0) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(p.stats().forwarded, 16u);
  EXPECT_GT(p.stats().held, 0u);
  EXPECT_TRUE(p.running());
  ASSERT_TRUE(stage2.activate().ok());
  for (std::uint64_t i = 0; i < kN; ++i) {
    auto r = stage2.receive<Reply>(5s);
    ASSERT_TRUE(r.ok()) << r.error().what() << " at " << i;
    EXPECT_EQ(r->seq, i);
    EXPECT_EQ(r->value, 5);
  }
  // The relay counts a batch after the destination took it: it may trail the replies.
  const auto counted = std::chrono::steady_clock::now() + 5s;
  while (p.stats().forwarded < kN && std::chrono::steady_clock::now() < counted) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(p.stats().forwarded, kN);
  EXPECT_EQ(p.stats().held, 0u);
  const PipeStats s = p.stop();
  EXPECT_FALSE(s.running);
  EXPECT_EQ(s.stopped_because, "stopped");
}

TEST_P(MultiDeviceTest, bad_requests_get_clear_errors) {
  MultiGpuCoordinator c = two_devices();
  KernelHandle a = c.launch_on(0, "test.echo", LaunchOptions{.block_size = 32, .enable_k2k = true}).value();
  KernelHandle b = c.launch_on(1, "test.echo", LaunchOptions{.block_size = 32, .enable_k2k = true}).value();
  auto k2k = c.connect(a, b);
  ASSERT_FALSE(k2k.ok());
  EXPECT_EQ(k2k.error().code(), ErrorCode::K2KError);
  EXPECT_NE(k2k.error().message().find("pipe"), std::string::npos);
  auto mismatched = pipe(a, b);  // echo answers Reply, echo takes Item
  ASSERT_FALSE(mismatched.ok());
  EXPECT_EQ(mismatched.error().code(), ErrorCode::UnknownMessageType);
  auto self = pipe(a, a);
  ASSERT_FALSE(self.ok());
  EXPECT_EQ(self.error().code(), ErrorCode::InvalidArgument);
  auto unknown = c.launch("no.such.kernel");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code(), ErrorCode::UnknownKernel);
  EXPECT_EQ(c.stats().failovers, 0u) << "a bad request is not a device's refusal";
  auto out_of_range = c.launch_on(2, "test.echo");
  ASSERT_FALSE(out_of_range.ok());
  EXPECT_EQ(out_of_range.error().code(), ErrorCode::InvalidArgument);
  auto custom_without_fn = MultiGpuCoordinator::builder()
                               .backend(GetParam())
                               .load_balancing(LoadBalancingStrategy::Custom)
                               .build();
  ASSERT_FALSE(custom_without_fn.ok());
  EXPECT_EQ(custom_without_fn.error().code(), ErrorCode::InvalidArgument);
  if (GetParam() != Backend::Cpu) {
    auto missing = MultiGpuCoordinator::builder().backend(GetParam()).preferred_devices({9999}).build();
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().code(), ErrorCode::BackendUnavailable);
  }
  // A kernel destroyed under a running pipe stops the relay first.
  KernelHandle d = c.launch_on(0, "test.doubler", LaunchOptions{.block_size = 32}).value();
  KernelHandle e = c.launch_on(1, "test.echo", LaunchOptions{.block_size = 32, .kernel_id = "e"}).value();
  Pipe p = pipe(d, e).value();
  ASSERT_TRUE(d.send(Item{1, 1}).ok());
  ASSERT_TRUE(e.receive<Reply>(5s).ok());
  { KernelHandle gone = std::move(e); }
  EXPECT_FALSE(p.running());
}

INSTANTIATE_TEST_SUITE_P(Devices, MultiDeviceTest, ::testing::Values(Backend::Cpu, Backend::Cuda, Backend::Vulkan),
                         rktest::backend_name);
