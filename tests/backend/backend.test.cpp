// One test body for every backend: each TEST_P runs on CPU, CUDA and Vulkan; a backend
// that is not available here skips with the reason availability() gives.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

#include "showcase.hpp"
#include "backend_name.hpp"
#include "test_kernels.hpp"
#include <ringkernel/pubsub.hpp>

#include "../support/cpu_time.hpp"

using namespace ringkernel;
using namespace std::chrono_literals;
using rktest::Item;
using rktest::Other;
using rktest::Reply;

namespace {

class BackendTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    const BackendAvailability a = availability(GetParam());
    if (!a.available) GTEST_SKIP() << to_string(GetParam()) << " backend not available here: " << a.reason;
    auto rt = RingKernel::builder().backend(GetParam()).build();
    ASSERT_TRUE(rt.ok()) << rt.error().what();
    rt_.emplace(std::move(*rt));
  }
  void TearDown() override { rt_.reset(); }

  /// Launches `name`, or skips the test (with the reason) when the kernel has no build for
  /// this backend: the skip is recorded, then AssertionException ends the test body, which
  /// gtest treats as "already reported".
  KernelHandle launch(std::string_view name, LaunchOptions o = {}) {
    if (const KernelInfo* info = find_kernel(name); info && !info->has_backend(GetParam())) {
      const std::string why = "kernel " + std::string(name) + " has no " + to_string(GetParam()) + " build";
      GTEST_MESSAGE_(why.c_str(), ::testing::TestPartResult::kSkip);
      throw ::testing::AssertionException(
          ::testing::TestPartResult(::testing::TestPartResult::kSkip, __FILE__, __LINE__, why.c_str()));
    }
    auto k = rt_->launch(name, o);
    EXPECT_TRUE(k.ok()) << (k.ok() ? "" : k.error().what());
    if (!k.ok()) throw std::runtime_error("launch failed");
    EXPECT_EQ(k->backend(), GetParam());
    return std::move(*k);
  }

  std::optional<RingKernel> rt_;
};

/// Telemetry is eventually consistent (a kernel mirrors its counters after a batch or when
/// it goes idle): wait up to 2 s for a figure to reach its value.
template <class F>
auto eventually(F read, decltype(read()) want) {
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  auto v = read();
  while (v != want && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
    v = read();
  }
  return v;
}

}  // namespace

TEST_P(BackendTest, an_actor_answers_a_message) {
  KernelHandle k = launch("test.echo");
  EXPECT_EQ(k.state(), KernelState::Active);
  ASSERT_TRUE(k.send(Item{1, 20}).ok());
  auto r = k.receive<Reply>(5s);
  ASSERT_TRUE(r.ok()) << r.error().what();
  EXPECT_EQ(r->seq, 1u);
  EXPECT_EQ(r->value, 41);
  EXPECT_EQ(r->thread, 0u);
  EXPECT_EQ(r->source, 0u);  // from the host
  EXPECT_TRUE(k.terminate().ok());
  EXPECT_EQ(k.state(), KernelState::Terminated);
}

TEST_P(BackendTest, a_received_message_carries_its_stamp_sender_and_correlation) {
  KernelHandle k = launch("test.echo", LaunchOptions{.block_size = 1});
  Received<Reply> none;
  EXPECT_EQ(k.try_receive(none), Status::QueueEmpty);
  for (std::uint64_t i = 0; i < 3; ++i) {
    const HlcTimestamp before = rt_->clock().now();
    ASSERT_TRUE(k.send(Item{i, 20}).ok());
    const Received<Reply> r = k.receive_message<Reply>(5s).value();
    EXPECT_EQ(r.message.seq, i);
    EXPECT_EQ(r.message.value, 41);
    EXPECT_GT(r.timestamp, before) << "the response's stamp follows the send's (HLC order)";
    EXPECT_EQ(r.source, k.slot() + 1);
    EXPECT_EQ(r.correlation.value, r.message.aux);  // the handler's ctx.correlation_id()
    EXPECT_EQ(r.priority, Priority::Normal);
    EXPECT_GE(rt_->clock().now(), r.timestamp);  // merged into the host clock
  }
  // The same through try_receive once the response is there.
  ASSERT_TRUE(k.send(Item{7, 1}).ok());
  Received<Reply> got;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  Status s = Status::QueueEmpty;
  while ((s = k.try_receive(got)) == Status::QueueEmpty && std::chrono::steady_clock::now() < deadline) {
  }
  ASSERT_EQ(s, Status::Ok);
  EXPECT_EQ(got.message.seq, 7u);
  EXPECT_EQ(got.source, k.slot() + 1);
}

TEST_P(BackendTest, many_messages_arrive_in_order_through_the_batch_api) {
  KernelHandle k = launch("test.echo", LaunchOptions{.block_size = 32, .input_queue_capacity = 256, .output_queue_capacity = 256});
  constexpr std::size_t kN = 20000;
  std::vector<Item> in(kN);
  for (std::size_t i = 0; i < kN; ++i) in[i] = Item{i, static_cast<std::int64_t>(i)};
  std::vector<Reply> out(kN);
  std::size_t sent = 0, got = 0;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (got < kN && std::chrono::steady_clock::now() < deadline) {
    if (sent < kN) sent += k.try_send_batch(std::span<const Item>(in).subspan(sent));
    got += k.try_receive_batch(std::span<Reply>(out).subspan(got));
  }
  ASSERT_EQ(got, kN);
  for (std::size_t i = 0; i < kN; ++i) {
    ASSERT_EQ(out[i].seq, i);
    ASSERT_EQ(out[i].value, static_cast<std::int64_t>(2 * i + 1));
  }
  const KernelMetrics m = k.metrics();
  EXPECT_EQ(m.input.enqueued, kN);
  EXPECT_EQ(m.output.dequeued, kN);
  EXPECT_GE(m.input.max_depth, 1u);
}

TEST_P(BackendTest, single_sends_and_batches_interleave_in_order) {
  // Single sends may take a faster path than batches (CUDA: the express line); mixed, and
  // with a receiver running alongside, every message arrives once, in order, intact.
  KernelHandle k = launch("test.echo", LaunchOptions{.block_size = 32, .input_queue_capacity = 64, .output_queue_capacity = 64});
  constexpr std::uint64_t kN = 6000;
  std::atomic<bool> failed{false};
  std::thread receiver([&] {
    for (std::uint64_t i = 0; i < kN && !failed; ++i) {
      auto r = k.receive_message<Reply>(10s);
      if (!r.ok() || r->message.seq != i || r->message.value != static_cast<std::int64_t>(2 * i + 1) ||
          r->correlation.value != r->message.aux) {
        ADD_FAILURE() << "message " << i << ": " << (r.ok() ? "seq " + std::to_string(r->message.seq) : r.error().what());
        failed = true;
      }
    }
  });
  std::uint64_t next = 0;
  std::vector<Item> batch;
  while (next < kN && !failed) {
    if (next % 11 == 5) {  // a run of up to 5 through the batch API
      batch.clear();
      for (std::uint64_t j = 0; j < 5 && next + j < kN; ++j) batch.push_back(Item{next + j, static_cast<std::int64_t>(next + j)});
      std::size_t done = 0;
      while (done < batch.size() && !failed) done += k.try_send_batch(std::span<const Item>(batch).subspan(done));
      next += batch.size();
    } else {
      ASSERT_TRUE(k.send(Item{next, static_cast<std::int64_t>(next)}, 10s).ok());
      ++next;
    }
  }
  receiver.join();
  EXPECT_FALSE(failed);
}

TEST_P(BackendTest, state_persists_across_messages_and_deactivation) {
  KernelHandle k = launch("test.counter", LaunchOptions{.block_size = 1});
  for (int i = 1; i <= 10; ++i) ASSERT_TRUE(k.send(Item{0, i}).ok());
  Reply last{};
  for (int i = 0; i < 10; ++i) last = k.receive<Reply>(5s).value();
  EXPECT_EQ(last.value, 55);
  ASSERT_TRUE(k.deactivate().ok());
  EXPECT_EQ(k.state(), KernelState::Deactivated);
  ASSERT_TRUE(k.activate().ok());
  ASSERT_TRUE(k.send(Item{0, 45}).ok());
  last = k.receive<Reply>(5s).value();
  EXPECT_EQ(last.value, 100);
  EXPECT_EQ(last.aux, 11u);
}

TEST_P(BackendTest, a_deactivated_kernel_holds_messages_until_activated) {
  KernelHandle k = launch("test.counter", LaunchOptions{.block_size = 1, .auto_activate = false});
  EXPECT_EQ(k.state(), KernelState::Launched);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(k.send(Item{0, 1}).ok());
  std::this_thread::sleep_for(50ms);
  Reply r{};
  EXPECT_EQ(k.try_receive(r), Status::QueueEmpty);
  EXPECT_EQ(k.status().messages_processed, 0u);
  ASSERT_TRUE(k.activate().ok());
  for (int i = 1; i <= 5; ++i) EXPECT_EQ(k.receive<Reply>(5s).value().value, i);
}

TEST_P(BackendTest, block_threads_cooperate_through_barriers_and_warp_collectives) {
  KernelHandle k = launch("test.block_sum", LaunchOptions{.block_size = 64, .shared_memory_size = 64 * 8});
  for (std::int64_t v : {1, 3, -2}) {
    ASSERT_TRUE(k.send(Item{0, v}).ok());
    const Reply r = k.receive<Reply>(5s).value();
    EXPECT_EQ(r.value, v * 64 * 65 / 2);
    EXPECT_EQ(r.thread, 64u);           // block_dim seen by the handler
    EXPECT_EQ(r.source, 32u);           // warp_reduce_add(1) over a full warp
    EXPECT_EQ(r.aux, 0xAAAAAAAAull);    // ballot of odd lanes
  }
}

TEST_P(BackendTest, a_wide_block_cooperates_like_a_small_one) {
  // 768 threads: on CUDA the handler's wide build (blocks above kCudaCompactThreads).
  KernelHandle k = launch("test.block_sum", LaunchOptions{.block_size = 768, .shared_memory_size = 768 * 8});
  for (std::int64_t v : {1, -2}) {
    ASSERT_TRUE(k.send(Item{0, v}).ok());
    const Reply r = k.receive<Reply>(5s).value();
    EXPECT_EQ(r.value, v * 768 * 769 / 2);
    EXPECT_EQ(r.thread, 768u);
    EXPECT_EQ(r.source, 32u);
    EXPECT_EQ(r.aux, 0xAAAAAAAAull);
  }
}

TEST_P(BackendTest, parallel_mode_spreads_a_batch_over_threads_and_keeps_order) {
  KernelHandle k = launch("test.echo", LaunchOptions{.mode = KernelMode::Parallel, .grid_size = 2, .block_size = 32});
  constexpr std::size_t kN = 2000;  // fits input + output queues: no receiver runs meanwhile
  std::vector<Item> in(kN);
  for (std::size_t i = 0; i < kN; ++i) in[i] = Item{i, static_cast<std::int64_t>(i)};
  ASSERT_EQ(k.send_batch(std::span<const Item>(in), 10s).value(), kN);
  std::vector<Reply> out(kN);
  std::size_t got = 0;
  while (got < kN) {
    auto n = k.receive_batch(std::span<Reply>(out).subspan(got), 10s);
    ASSERT_TRUE(n.ok()) << n.error().what();
    got += *n;
  }
  std::vector<bool> threads_seen(32, false);
  for (std::size_t i = 0; i < kN; ++i) {
    ASSERT_EQ(out[i].seq, i);
    ASSERT_EQ(out[i].value, static_cast<std::int64_t>(2 * i + 1));
    ASSERT_LT(out[i].thread, 32u);
    threads_seen[out[i].thread] = true;
  }
  EXPECT_GT(std::count(threads_seen.begin(), threads_seen.end(), true), 1);
}

TEST_P(BackendTest, call_matches_its_response_and_keeps_the_others_for_receive) {
  KernelHandle k = launch("test.echo", LaunchOptions{.block_size = 1});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(k.send(Item{static_cast<std::uint64_t>(i), i}).ok());
  auto r = k.call<Reply>(Item{100, 50}, 5s);
  ASSERT_TRUE(r.ok()) << r.error().what();
  EXPECT_EQ(r->seq, 100u);
  EXPECT_EQ(r->value, 101);
  EXPECT_NE(r->aux, 0u);  // the correlation id travelled with the request
  for (int i = 0; i < 3; ++i) EXPECT_EQ(k.receive<Reply>(5s).value().seq, static_cast<std::uint64_t>(i));
}

TEST_P(BackendTest, a_faulted_kernel_surfaces_as_an_error_within_the_timeout) {
  KernelHandle k = launch("test.faulty", LaunchOptions{.block_size = 1});
  ASSERT_TRUE(k.send(Item{0, 1}).ok());
  EXPECT_EQ(k.receive<Reply>(5s).value().value, 1);
  ASSERT_TRUE(k.send(Item{0, 13}).ok());
  const auto t0 = std::chrono::steady_clock::now();
  auto r = k.receive<Reply>(3s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::KernelFaulted) << r.error().what();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  auto s = k.send(Item{0, 2});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::KernelFaulted);
  EXPECT_EQ(k.status().state, KernelState::Terminated);
}

TEST_P(BackendTest, a_barrier_in_parallel_mode_faults_the_kernel_instead_of_hanging) {
  KernelHandle k = launch("test.barrier_in_parallel", LaunchOptions{.mode = KernelMode::Parallel, .block_size = 32});
  ASSERT_TRUE(k.send(Item{0, 99}).ok());
  auto r = k.receive<Reply>(3s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::KernelFaulted);
  EXPECT_EQ(k.status().last_error, DeviceError::BarrierInParallel);
}

TEST_P(BackendTest, k2k_delivers_in_fifo_order_between_kernels) {
  const LaunchOptions o{.block_size = 1, .enable_k2k = true};
  KernelHandle fwd = launch("test.forwarder", o);
  KernelHandle sink = launch("test.sink", o);
  ASSERT_TRUE(rt_->connect(fwd, sink).ok());
  constexpr int kN = 500;
  for (int i = 0; i < kN; ++i) ASSERT_TRUE(fwd.send(Item{sink.slot(), i}).ok());
  for (int i = 0; i < kN; ++i) {
    const Reply ack = fwd.receive<Reply>(5s).value();
    ASSERT_EQ(static_cast<Status>(ack.source), Status::Ok);
    EXPECT_EQ(ack.aux, 1u);  // one route
    const Reply r = sink.receive<Reply>(5s).value();
    ASSERT_EQ(r.value, i + 1000);
    ASSERT_EQ(r.source, fwd.slot() + 1);
  }
  EXPECT_EQ(eventually([&] { return fwd.metrics().telemetry.raw.k2k_sent; }, std::uint64_t{kN}), std::uint64_t{kN});
}

TEST_P(BackendTest, a_connect_past_the_route_limit_is_refused_and_the_routes_keep_working) {
  // The same pair connected again and again: each connect adds a route, until the
  // backend's limit (16 on CUDA, 64 on the CPU and Vulkan) makes the next one an error.
  const LaunchOptions o{.block_size = 1, .enable_k2k = true, .k2k_queue_capacity = 16};
  KernelHandle fwd = launch("test.forwarder", o);
  KernelHandle sink = launch("test.sink", o);
  std::uint32_t connected = 0;
  Result<void> last{};
  for (; connected < 100; ++connected) {
    last = rt_->connect(fwd, sink);
    if (!last.ok()) break;
  }
  ASSERT_FALSE(last.ok()) << "100 routes between one pair were all accepted";
  EXPECT_EQ(last.error().code(), ErrorCode::K2KError);
  EXPECT_NE(last.error().message().find("routes"), std::string::npos) << last.error().message();
  EXPECT_GE(connected, 16u);
  ASSERT_TRUE(fwd.send(Item{sink.slot(), 7}).ok());  // the routes made before still carry messages
  const Reply ack = fwd.receive<Reply>(5s).value();
  EXPECT_EQ(static_cast<Status>(ack.source), Status::Ok);
  EXPECT_EQ(ack.aux, connected);  // the kernel counts every accepted route, no more
  EXPECT_EQ(sink.receive<Reply>(5s).value().value, 1007);
}

TEST_P(BackendTest, a_route_is_in_use_as_soon_as_connect_returns) {
  // Each message goes out right after its connect(): the kernel must already count and
  // use the new route (route counts drive sharding, as in the showcase's ingest).
  const LaunchOptions o{.block_size = 1, .enable_k2k = true};
  KernelHandle fwd = launch("test.forwarder", o);
  std::vector<KernelHandle> sinks;
  for (std::uint32_t n = 1; n <= 4; ++n) {
    LaunchOptions so = o;
    so.kernel_id = "sink" + std::to_string(n);
    sinks.push_back(launch("test.sink", so));
    ASSERT_TRUE(rt_->connect(fwd, sinks.back()).ok());
    ASSERT_TRUE(fwd.send(Item{sinks.back().slot(), static_cast<std::int64_t>(n)}).ok());
    const Reply ack = fwd.receive<Reply>(5s).value();
    EXPECT_EQ(static_cast<Status>(ack.source), Status::Ok) << "route " << n;
    EXPECT_EQ(ack.aux, n) << "routes counted right after connect " << n;
    EXPECT_EQ(sinks.back().receive<Reply>(5s).value().value, n + 1000);
  }
}

TEST_P(BackendTest, a_k2k_batch_arrives_whole_and_in_order_or_not_at_all) {
  const LaunchOptions o{.block_size = 1, .enable_k2k = true, .k2k_queue_capacity = 16};
  KernelHandle fwd = launch("test.batch_forwarder", o);
  LaunchOptions so = o;
  so.kernel_id = "batch_sink";
  KernelHandle sink = launch("test.sink", so);
  ASSERT_TRUE(rt_->connect(fwd, sink).ok());
  ASSERT_TRUE(sink.deactivate().ok());  // nothing drains the route meanwhile
  auto batch = [&](std::int64_t n) {
    EXPECT_TRUE(fwd.send(Item{sink.slot(), n}).ok());
    return static_cast<Status>(fwd.receive<Reply>(5s).value().source);
  };
  EXPECT_EQ(batch(10), Status::Ok);
  EXPECT_EQ(batch(10), Status::QueueFull);  // 6 slots left: none of the 10 is sent
  EXPECT_EQ(batch(6), Status::Ok);
  EXPECT_EQ(batch(65), Status::TooLarge);   // more than the route holds at all
  ASSERT_TRUE(sink.activate().ok());
  for (std::int64_t i = 0; i < 10; ++i) ASSERT_EQ(sink.receive<Reply>(5s).value().value, 1000 + i);
  for (std::int64_t i = 0; i < 6; ++i) ASSERT_EQ(sink.receive<Reply>(5s).value().value, 1000 + i);
  std::this_thread::sleep_for(20ms);
  Reply extra{};
  EXPECT_EQ(sink.try_receive(extra), Status::QueueEmpty);
  EXPECT_EQ(eventually([&] { return fwd.metrics().telemetry.raw.k2k_sent; }, std::uint64_t{16}), std::uint64_t{16});
}

TEST_P(BackendTest, k2k_from_every_thread_of_a_parallel_block_arrives_exactly_once) {
  // 128 threads (four warps on a GPU) of one block send to the same route at once, through
  // a route smaller than the run, so claims race and the route fills.
  KernelHandle fwd = launch("test.spread_forwarder", LaunchOptions{.mode = KernelMode::Parallel, .block_size = 128,
                                                                   .enable_k2k = true, .k2k_queue_capacity = 256});
  KernelHandle sink = launch("test.sink", LaunchOptions{.block_size = 1, .output_queue_capacity = 4096, .enable_k2k = true});
  ASSERT_TRUE(rt_->connect(fwd, sink).ok());
  constexpr int kN = 3000;
  std::vector<Item> items;
  for (int i = 0; i < kN; ++i) items.push_back(Item{static_cast<std::uint64_t>(i), i});
  for (std::size_t sent = 0; sent < items.size();) {
    auto r = fwd.send_batch(std::span<const Item>(items.data() + sent, items.size() - sent));
    ASSERT_TRUE(r.ok()) << r.error().what();
    sent += *r;
  }
  std::vector<int> seen(kN, 0);
  for (int i = 0; i < kN; ++i) {
    const auto r = sink.receive<Reply>(10s);
    ASSERT_TRUE(r.ok()) << "after " << i << " of " << kN << ": " << r.error().what();
    ASSERT_EQ(r->source, fwd.slot() + 1);
    ASSERT_GE(r->value, 1000);
    ASSERT_LT(r->value, 1000 + kN);
    ++seen[static_cast<std::size_t>(r->value - 1000)];
  }
  for (int i = 0; i < kN; ++i) ASSERT_EQ(seen[static_cast<std::size_t>(i)], 1) << "message " << i;
  std::this_thread::sleep_for(20ms);
  Reply extra{};
  EXPECT_EQ(sink.try_receive(extra), Status::QueueEmpty);
}

TEST_P(BackendTest, k2k_fan_in_from_two_kernels_keeps_order_per_sender) {
  const LaunchOptions o{.block_size = 1, .enable_k2k = true};
  LaunchOptions o1 = o, o2 = o;
  o1.kernel_id = "fwd1";
  o2.kernel_id = "fwd2";
  KernelHandle f1 = launch("test.forwarder", o1);
  KernelHandle f2 = launch("test.forwarder", o2);
  KernelHandle sink = launch("test.sink", o);
  ASSERT_TRUE(rt_->connect(f1, sink).ok());
  ASSERT_TRUE(rt_->connect(f2, sink).ok());
  constexpr int kN = 200;
  for (int i = 0; i < kN; ++i) {
    ASSERT_TRUE(f1.send(Item{sink.slot(), i}).ok());
    ASSERT_TRUE(f2.send(Item{sink.slot(), 10000 + i}).ok());
  }
  int next1 = 0, next2 = 0;
  for (int i = 0; i < 2 * kN; ++i) {
    const Reply r = sink.receive<Reply>(5s).value();
    if (r.source == f1.slot() + 1) {
      ASSERT_EQ(r.value, 1000 + next1++);
    } else {
      ASSERT_EQ(r.source, f2.slot() + 1);
      ASSERT_EQ(r.value, 11000 + next2++);
    }
  }
  EXPECT_EQ(next1, kN);
  EXPECT_EQ(next2, kN);
}

TEST_P(BackendTest, k2k_send_without_a_route_is_a_counted_dead_letter) {
  const LaunchOptions o{.block_size = 1, .enable_k2k = true};
  KernelHandle fwd = launch("test.forwarder", o);
  KernelHandle sink = launch("test.sink", o);
  ASSERT_TRUE(fwd.send(Item{sink.slot(), 5}).ok());
  const Reply ack = fwd.receive<Reply>(5s).value();
  EXPECT_EQ(static_cast<Status>(ack.source), Status::NoRoute);
  EXPECT_EQ(eventually([&] { return fwd.metrics().k2k_dead_letters; }, std::uint64_t{1}), 1u);
  Reply r{};
  EXPECT_EQ(sink.try_receive(r), Status::QueueEmpty);
}

TEST_P(BackendTest, k2k_across_tenants_is_rejected_and_counted) {
  KernelHandle fwd = launch("test.forwarder", LaunchOptions{.block_size = 1, .enable_k2k = true, .tenant_id = 1});
  KernelHandle sink = launch("test.sink", LaunchOptions{.block_size = 1, .enable_k2k = true, .tenant_id = 2});
  auto c = rt_->connect(fwd, sink);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), ErrorCode::K2KError);
  ASSERT_TRUE(fwd.send(Item{sink.slot(), 5}).ok());
  const Reply ack = fwd.receive<Reply>(5s).value();
  EXPECT_EQ(static_cast<Status>(ack.source), Status::TenantMismatch);
  EXPECT_EQ(eventually([&] { return fwd.metrics().k2k_tenant_rejections; }, std::uint64_t{1}), 1u);
}

TEST_P(BackendTest, k2k_pull_mode_lets_the_handler_drain_its_inbox) {
  KernelHandle pusher = launch("test.pusher", LaunchOptions{.block_size = 1, .enable_k2k = true});
  KernelHandle puller =
      launch("test.puller", LaunchOptions{.block_size = 1, .enable_k2k = true, .k2k_delivery = K2KDelivery::Pull});
  ASSERT_TRUE(rt_->connect(pusher, puller).ok());
  ASSERT_TRUE(pusher.send(Item{0, 10}).ok());
  EXPECT_EQ(pusher.receive<Reply>(5s).value().aux, 10u);
  const Reply r = puller.call<Reply>(Item{1, 0}, 5s).value();
  EXPECT_EQ(r.aux, 10u);
  EXPECT_EQ(r.value, 55);
  EXPECT_EQ(r.source, pusher.slot());
}

TEST_P(BackendTest, k2k_pull_mode_gives_slots_back_to_the_sender) {
  // The pusher's route holds 8 messages and every round fills most of it, so a round only
  // fits when the puller gave the slots of the round before back.
  KernelHandle pusher = launch("test.pusher", LaunchOptions{.block_size = 1, .enable_k2k = true, .k2k_queue_capacity = 8});
  KernelHandle puller =
      launch("test.puller", LaunchOptions{.block_size = 1, .enable_k2k = true, .k2k_delivery = K2KDelivery::Pull});
  ASSERT_TRUE(rt_->connect(pusher, puller).ok());
  for (std::uint64_t round = 0; round < 6; ++round) {
    const std::int64_t n = round % 2 == 0 ? 5 : 8;
    ASSERT_TRUE(pusher.send(Item{round, n}).ok());
    EXPECT_EQ(pusher.receive<Reply>(5s).value().aux, static_cast<std::uint64_t>(n)) << "round " << round;
    const Reply r = puller.call<Reply>(Item{round, 0}, 5s).value();
    EXPECT_EQ(r.aux, static_cast<std::uint64_t>(n)) << "round " << round;
    EXPECT_EQ(r.value, n * (n + 1) / 2) << "round " << round;
  }
}

TEST_P(BackendTest, kernel_clock_events_order_after_the_message_stamp) {
  KernelHandle k = launch("test.clock", LaunchOptions{.block_size = 1});
  const HlcTimestamp before = rt_->clock().now();
  const Reply r = k.call<Reply>(Item{0, 0}, 5s).value();
  EXPECT_EQ(r.thread, 1u);  // kernel tick after message stamp
  EXPECT_GE(static_cast<std::uint64_t>(r.value), before.physical);
  EXPECT_GE(rt_->clock().now().physical, r.aux);  // host merged the kernel's stamp
  EXPECT_GT(eventually([&] { return k.status().hlc.physical > 0; }, true), false);
}

TEST_P(BackendTest, kernel_clock_events_order_after_every_stamp_of_a_batch) {
  KernelHandle k = launch("test.clock", LaunchOptions{.block_size = 1, .input_queue_capacity = 1024,
                                                      .output_queue_capacity = 1024});
  constexpr std::size_t kN = 1000;  // one send_batch: the kernel dequeues it in large batches
  std::vector<Item> in(kN);
  for (std::size_t i = 0; i < kN; ++i) in[i] = Item{i, 0};
  ASSERT_EQ(k.send_batch(std::span<const Item>(in), 5s).value(), kN);
  std::vector<Reply> out(kN);
  for (std::size_t got = 0; got < kN;) {
    auto r = k.receive_batch(std::span<Reply>(out.data() + got, kN - got), 5s);
    ASSERT_TRUE(r.ok()) << r.error().what();
    got += *r;
  }
  for (std::size_t i = 0; i < kN; ++i) {
    EXPECT_EQ(out[i].seq, i);
    EXPECT_EQ(out[i].thread, 1u) << "the kernel ticked before the stamp of message " << i;
  }
}

TEST_P(BackendTest, a_kernel_that_terminates_itself_is_seen_by_wait) {
  KernelHandle k = launch("test.self_stop", LaunchOptions{.block_size = 1});
  ASSERT_TRUE(k.send(Item{0, -1}).ok());
  EXPECT_TRUE(k.wait(5s).ok());
  EXPECT_EQ(k.state(), KernelState::Terminated);
  EXPECT_EQ(k.receive<Reply>(1s).value().value, -1);  // its last reply is still readable
}

TEST_P(BackendTest, large_payloads_cross_the_queue_intact) {
  KernelHandle k = launch("test.big_eater", LaunchOptions{.block_size = 1, .input_queue_capacity = 16});
  rktest::Big b{};
  std::int64_t expect = 0;
  for (unsigned i = 0; i < sizeof b.bytes; ++i) {
    b.bytes[i] = static_cast<std::uint8_t>(i * 7);
    expect += b.bytes[i];
  }
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(k.send(b).ok());
    EXPECT_EQ(k.receive<Reply>(5s).value().value, expect);
  }
}

TEST_P(BackendTest, sends_from_many_threads_all_arrive) {
  KernelHandle k = launch("test.echo", LaunchOptions{.block_size = 1});
  constexpr int kThreads = 4, kPer = 2000;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) ASSERT_TRUE(k.send(Item{static_cast<std::uint64_t>(t), i}).ok());
    });
  std::vector<int> next(kThreads, 0);
  for (int i = 0; i < kThreads * kPer; ++i) {
    const Reply r = k.receive<Reply>(10s).value();
    ASSERT_EQ(r.value, 2 * next[r.seq]++ + 1);  // FIFO per sender
  }
  for (auto& t : ts) t.join();
}

TEST_P(BackendTest, a_kernel_publishes_to_a_host_subscriber_in_order) {
  Broker& b = rt_->broker();
  const TopicId topic = b.topic<Other>("backend/published").value();
  const SubscriptionId sub = b.subscribe("backend/#").value();
  KernelHandle k = launch("test.publisher", LaunchOptions{.block_size = 1});
  const Reply r = k.call<Reply>(Item{topic, 20}, 5s).value();
  EXPECT_EQ(r.value, 20);
  for (std::uint64_t i = 0; i < 20; ++i) {
    auto d = b.receive(sub, 5s);
    ASSERT_TRUE(d.ok()) << d.error().what();
    Other o{};
    ASSERT_TRUE(d->get(o));
    EXPECT_EQ(o.x, i);
    EXPECT_EQ(d->source, k.slot() + 1);
  }
}

TEST_P(BackendTest, a_kernel_publish_reaches_a_kernel_subscriber_and_a_host_subscriber_once_each) {
  // On CUDA the kernel subscriber is served on the device (its publish inbox) and the host
  // subscriber through the broker: each must get every message once, in order.
  Broker& b = rt_->broker();
  const TopicId topic = b.topic<Other>("backend/fanout").value();
  KernelHandle sub = launch("test.topic_sink", LaunchOptions{.block_size = 1, .kernel_id = "topic_sink"});
  ASSERT_TRUE(b.subscribe_kernel("backend/#", sub).ok());
  const SubscriptionId host = b.subscribe("backend/fanout").value();
  KernelHandle pub = launch("test.publisher", LaunchOptions{.block_size = 1});
  constexpr std::int64_t kN = 50;
  EXPECT_EQ(pub.call<Reply>(Item{topic, kN}, 5s).value().value, kN);
  for (std::int64_t i = 0; i < kN; ++i) {
    const Reply r = sub.receive<Reply>(5s).value();
    ASSERT_EQ(r.seq, static_cast<std::uint64_t>(i));
    EXPECT_EQ(r.source, 0u);  // a publish arrives as from the broker, on every backend
    auto d = b.receive(host, 5s);
    ASSERT_TRUE(d.ok()) << d.error().what();
    Other o{};
    ASSERT_TRUE(d->get(o));
    EXPECT_EQ(o.x, static_cast<std::uint64_t>(i));
    EXPECT_EQ(d->source, pub.slot() + 1);
  }
  std::this_thread::sleep_for(20ms);
  Reply extra{};
  EXPECT_EQ(sub.try_receive(extra), Status::QueueEmpty);
  EXPECT_FALSE(b.try_receive(host).value().has_value());
  EXPECT_EQ(eventually([&] { return b.stats().delivered; }, std::uint64_t{2 * kN}), std::uint64_t{2 * kN});
  EXPECT_EQ(b.stats().published, static_cast<std::uint64_t>(kN));
}

TEST_P(BackendTest, a_full_kernel_subscriber_refuses_or_drops_kernel_publishes_per_its_policy) {
  Broker& b = rt_->broker();
  const TopicId pressed = b.topic<Other>("backend/pressed").value();
  const TopicId dropping = b.topic<Other>("backend/dropping").value();
  LaunchOptions so{.block_size = 1, .input_queue_capacity = 16};
  so.kernel_id = "held";
  KernelHandle held = launch("test.topic_sink", so);
  so.kernel_id = "lossy";
  KernelHandle lossy = launch("test.topic_sink", so);
  ASSERT_TRUE(held.deactivate().ok());
  ASSERT_TRUE(lossy.deactivate().ok());
  ASSERT_TRUE(b.subscribe_kernel("backend/pressed", held).ok());  // Backpressure (the default)
  ASSERT_TRUE(b.subscribe_kernel("backend/dropping", lossy, SubscribeOptions{.overflow = OverflowPolicy::DropNewest}).ok());
  KernelHandle pub = launch("test.publisher", LaunchOptions{.block_size = 1});
  // Backpressure: the publisher sees QueueFull once the subscriber's queue is full.
  EXPECT_EQ(pub.call<Reply>(Item{pressed, 40}, 5s).value().value, 16);
  // DropNewest: every publish succeeds; what does not fit is dropped and counted.
  const std::uint64_t dropped_before = b.stats().dropped;
  EXPECT_EQ(pub.call<Reply>(Item{dropping, 40}, 5s).value().value, 40);
  EXPECT_EQ(eventually([&] { return b.stats().dropped - dropped_before; }, std::uint64_t{24}), std::uint64_t{24});
  ASSERT_TRUE(held.activate().ok());
  ASSERT_TRUE(lossy.activate().ok());
  for (KernelHandle* k : {&held, &lossy}) {
    for (std::uint64_t i = 0; i < 16; ++i) ASSERT_EQ(k->receive<Reply>(5s).value().seq, i);
    std::this_thread::sleep_for(20ms);
    Reply extra{};
    EXPECT_EQ(k->try_receive(extra), Status::QueueEmpty);
  }
}

// ---- the showcase's actors: alert publishing from a kernel, and the whole pipeline ----------

namespace {
/// Registers the showcase's 16 alert topics (every alert's topic must exist before a publish).
void register_alert_topics(Broker& b) {
  for (std::uint32_t s = 0; s < showcase::kSeverityCount; ++s)
    for (std::uint32_t r = 0; r < showcase::kRuleCount; ++r) {
      const std::string name = std::string("alerts/") + showcase::severity_name(s) + "/" + showcase::rule_name(r);
      ASSERT_EQ(b.topic<showcase::Alert>(name).value(), showcase::alert_topic(s, r));
    }
}
}  // namespace

TEST_P(BackendTest, showcase_alerter_publishes_each_alert_event_sent_to_it) {
  Broker& b = rt_->broker();
  register_alert_topics(b);
  const SubscriptionId sub = b.subscribe("alerts/#").value();
  KernelHandle alerter = launch("showcase.alerter", LaunchOptions{.block_size = 1});
  constexpr std::uint32_t kN = 12;
  for (std::uint32_t i = 0; i < kN; ++i) {
    showcase::AlertEvent e{};
    e.txn_id = 100 + i;
    e.amount_cents = 1'000'000 + i;
    e.account = 7;  // one account: its 5th and later alerts are escalated to critical
    e.rule = showcase::kRuleAmount;
    e.severity = showcase::kMedium;
    ASSERT_TRUE(alerter.send(e).ok());
  }
  for (std::uint32_t i = 0; i < kN; ++i) {
    auto d = b.receive(sub, 5s);
    ASSERT_TRUE(d.ok()) << "alert " << i << ": " << d.error().what();
    showcase::Alert a{};
    ASSERT_TRUE(d->get(a));
    EXPECT_EQ(a.alert_id, i + 1);
    EXPECT_EQ(a.txn_id, 100 + i);
    EXPECT_EQ(a.account_alerts, i + 1);
    EXPECT_EQ(a.severity, i + 1 >= showcase::kEscalateAfter ? showcase::kCritical : showcase::kMedium);
    EXPECT_EQ(d->topic, showcase::alert_topic(a.severity, a.rule));
  }
}

TEST_P(BackendTest, showcase_pipeline_reports_every_alert_the_reference_finds) {
  using namespace showcase;
  Broker& b = rt_->broker();
  register_alert_topics(b);
  const SubscriptionId sub = b.subscribe("alerts/#", SubscribeOptions{.capacity = 4096}).value();
  LaunchOptions lo{.block_size = 1, .enable_k2k = true};
  lo.kernel_id = "ingest";
  KernelHandle ingest = launch("showcase.ingest", lo);
  std::vector<KernelHandle> rules;
  for (int s = 0; s < 2; ++s) {
    lo.kernel_id = "rules/" + std::to_string(s);
    rules.push_back(launch("showcase.rules", lo));
  }
  lo.kernel_id = "alerter";
  KernelHandle alerter = launch("showcase.alerter", lo);
  for (KernelHandle& r : rules) {
    ASSERT_TRUE(rt_->connect(ingest, r).ok());
    ASSERT_TRUE(rt_->connect(r, alerter).ok());
  }
  // 8 accounts, a transaction every 10 s of event time per account: velocity fires from
  // each account's 5th transaction on; every 7th is a large amount.
  constexpr std::uint32_t kN = 160;
  std::vector<Transaction> txns(kN);
  std::vector<AccountState> ref(8);
  std::uint64_t expected_alerts = 0;
  for (std::uint32_t i = 0; i < kN; ++i) {
    Transaction& t = txns[i];
    t = Transaction{};
    t.id = i;
    t.account = i % 8;
    t.event_time_ms = 1'000'000 + std::uint64_t{i / 8} * 10'000;
    t.amount_minor = i % 7 == 0 ? 2'000'000 : 5'000 + i;
    t.channel = kOnline;
    ScoredTxn s{};
    s.id = t.id;
    s.event_time_ms = t.event_time_ms;
    s.amount_cents = usd_cents(t.amount_minor, t.currency);
    s.account = t.account;
    s.channel = t.channel;
    std::uint16_t sev[kRuleCount] = {};
    expected_alerts += static_cast<std::uint64_t>(std::popcount(check_rules(ref[t.account], s, sev)));
  }
  ASSERT_GT(expected_alerts, 100u);
  for (const Transaction& t : txns) ASSERT_TRUE(ingest.send(t).ok());
  std::uint64_t verdicts = 0;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (verdicts < kN && std::chrono::steady_clock::now() < deadline) {
    Verdict v{};
    for (KernelHandle& r : rules)
      while (r.try_receive(v) == Status::Ok) ++verdicts;
  }
  EXPECT_EQ(verdicts, kN);
  std::vector<std::uint64_t> ids;
  for (std::uint64_t i = 0; i < expected_alerts; ++i) {
    auto d = b.receive(sub, 5s);
    ASSERT_TRUE(d.ok()) << "alert " << i << " of " << expected_alerts << ": " << d.error().what()
                        << " (alerter processed " << alerter.metrics().telemetry.raw.messages_processed
                        << ", rules sent " << rules[0].metrics().telemetry.raw.k2k_sent << " + "
                        << rules[1].metrics().telemetry.raw.k2k_sent << ")";
    Alert a{};
    ASSERT_TRUE(d->get(a));
    ids.push_back(a.alert_id);
  }
  std::sort(ids.begin(), ids.end());
  for (std::uint64_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], i + 1);  // numbered without gaps
}

// ---- actor pools: actors created, restarted and destroyed inside a running kernel -----------

TEST_P(BackendTest, an_actor_pool_creates_restarts_and_destroys_actors_while_it_runs) {
  using rktest::PoolAdd;
  using rktest::PoolTotal;
  KernelHandle pool = launch("test.pool", LaunchOptions{.block_size = 32, .actor_slots = 4});
  auto add = [&](ActorRef a, std::int64_t v) { return pool.call<PoolTotal>(PoolAdd{a.index, 0, v}, 5s).value(); };
  const ActorRef a = pool.spawn_actor().value();
  const ActorRef b = pool.spawn_actor().value();
  EXPECT_NE(a.index, b.index);
  EXPECT_EQ(add(a, 5).total, 105);
  const PoolTotal ra = add(a, 5);
  EXPECT_EQ(ra.total, 110);
  EXPECT_EQ(ra.messages, 2u);
  EXPECT_EQ(ra.actor, a.index);
  const PoolTotal rb = add(b, 1);
  EXPECT_EQ(rb.total, 101);
  EXPECT_EQ(rb.actor, b.index);

  // Restart: same index, new generation, initial State; the other actor keeps its State.
  const ActorRef a2 = pool.restart_actor(a).value();
  EXPECT_EQ(a2.index, a.index);
  EXPECT_NE(a2.generation, a.generation);
  const PoolTotal ra2 = add(a2, 1);
  EXPECT_EQ(ra2.total, 101);
  EXPECT_EQ(ra2.messages, 1u);
  EXPECT_EQ(add(b, 1).total, 102);
  // Messages sent before a restart are handled before it, with the old State.
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(pool.send(PoolAdd{a2.index, 0, 2}).ok());
  const ActorRef a3 = pool.restart_actor(a2).value();
  std::int64_t last_total = 0;
  for (int i = 0; i < 50; ++i) last_total = pool.receive<PoolTotal>(5s).value().total;
  EXPECT_EQ(last_total, 101 + 50 * 2);
  EXPECT_EQ(add(a3, 1).total, 101);
  auto stale = pool.restart_actor(a);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().code(), ErrorCode::InvalidArgument);

  // Destroy: messages for it are dropped and counted, never answered; FIFO means the reply
  // to the later call proves the dead letter was already seen.
  const std::uint64_t dropped_before = pool.metrics().telemetry.raw.messages_dropped;
  ASSERT_TRUE(pool.destroy_actor(b).ok());
  ASSERT_TRUE(pool.send(PoolAdd{b.index, 0, 1}).ok());
  EXPECT_EQ(add(a3, 1).total, 102);
  PoolTotal extra{};
  EXPECT_EQ(pool.try_receive(extra), Status::QueueEmpty);
  EXPECT_EQ(eventually([&] { return pool.metrics().telemetry.raw.messages_dropped; }, dropped_before + 1),
            dropped_before + 1);
  EXPECT_EQ(pool.destroy_actor(b).error().code(), ErrorCode::InvalidArgument);

  // The freed index is reused by a fresh actor with the initial State.
  std::vector<ActorRef> more;
  for (int i = 0; i < 3; ++i) more.push_back(pool.spawn_actor().value());
  EXPECT_EQ(pool.actors().size(), 4u);
  auto full = pool.spawn_actor();
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code(), ErrorCode::InvalidState);
  for (const ActorRef& m : more) EXPECT_EQ(add(m, 7).total, 107);
}

TEST_P(BackendTest, a_failing_actor_stops_alone_until_it_is_restarted) {
  using rktest::PoolAdd;
  using rktest::PoolTotal;
  KernelHandle pool = launch("test.pool", LaunchOptions{.block_size = 1, .actor_slots = 4});
  const ActorRef a = pool.spawn_actor().value();
  const ActorRef b = pool.spawn_actor().value();
  ASSERT_TRUE(pool.send(PoolAdd{a.index, 0, 5}).ok());
  EXPECT_EQ(pool.receive<PoolTotal>(5s).value().total, 105);
  ASSERT_TRUE(pool.send(PoolAdd{a.index, 0, -42}).ok());  // a fails
  ASSERT_TRUE(pool.send(PoolAdd{a.index, 0, 1}).ok());    // a dead letter now
  ASSERT_TRUE(pool.send(PoolAdd{b.index, 0, 1}).ok());    // b is not affected
  const PoolTotal rb = pool.receive<PoolTotal>(5s).value();
  EXPECT_EQ(rb.actor, b.index);
  EXPECT_EQ(rb.total, 101);
  const auto faults = pool.actor_faults();
  ASSERT_EQ(faults.size(), 1u);
  EXPECT_EQ(faults[0].actor, a);
  EXPECT_EQ(faults[0].code, 42u);
  EXPECT_EQ(pool.state(), KernelState::Active);  // the kernel runs on
  EXPECT_GE(eventually([&] { return pool.metrics().telemetry.raw.messages_dropped; }, std::uint64_t{2}), 2u);
  const ActorRef a2 = pool.restart_actor(a).value();
  EXPECT_TRUE(pool.actor_faults().empty());
  ASSERT_TRUE(pool.send(PoolAdd{a2.index, 0, 1}).ok());
  const PoolTotal ra = pool.receive<PoolTotal>(5s).value();
  EXPECT_EQ(ra.actor, a2.index);
  EXPECT_EQ(ra.total, 101);  // fresh State
  ASSERT_TRUE(pool.send(PoolAdd{b.index, 0, -7}).ok());
  EXPECT_EQ(eventually([&] { return pool.actor_faults().size(); }, std::size_t{1}), 1u);
  ASSERT_TRUE(pool.destroy_actor(b).ok());  // destroying a failed actor frees its index
  EXPECT_TRUE(pool.actor_faults().empty());
}

TEST_P(BackendTest, actor_pool_misuse_is_refused_with_a_clear_error) {
  auto no_field = rt_->launch("test.echo", LaunchOptions{.actor_slots = 2});
  ASSERT_FALSE(no_field.ok());
  EXPECT_EQ(no_field.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(no_field.error().message().find("actor"), std::string::npos) << no_field.error().message();
  auto parallel = rt_->launch("test.pool", LaunchOptions{.mode = KernelMode::Parallel, .actor_slots = 2});
  ASSERT_FALSE(parallel.ok());
  EXPECT_EQ(parallel.error().code(), ErrorCode::InvalidArgument);
  KernelHandle plain = launch("test.echo", LaunchOptions{.block_size = 1});
  auto s = plain.spawn_actor();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::InvalidState);
}

// ---- bad input -------------------------------------------------------------------------

TEST_P(BackendTest, an_unknown_kernel_name_is_an_error_listing_the_registered_ones) {
  auto k = rt_->launch("no.such.kernel");
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.error().code(), ErrorCode::UnknownKernel);
  EXPECT_NE(k.error().message().find("test.echo"), std::string::npos);
}

TEST_P(BackendTest, invalid_launch_options_are_refused) {
  auto a = rt_->launch("test.echo", LaunchOptions{.input_queue_capacity = 1000});
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().code(), ErrorCode::InvalidArgument);
  auto b = rt_->launch("test.echo", LaunchOptions{.block_size = 4096});
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code(), ErrorCode::InvalidArgument);
  auto c = rt_->launch("test.echo", LaunchOptions{.grid_size = 4});  // actor mode is one block
  ASSERT_FALSE(c.ok());
  KernelHandle k = launch("test.echo", LaunchOptions{.block_size = 1});
  auto dup = rt_->launch("test.echo", LaunchOptions{.block_size = 1});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code(), ErrorCode::KernelExists);
}

TEST_P(BackendTest, a_message_of_the_wrong_type_is_refused) {
  KernelHandle k = launch("test.echo", LaunchOptions{.block_size = 1});
  auto s = k.send(Other{1});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::UnknownMessageType);
  EXPECT_EQ(k.try_send(Other{1}), Status::InvalidMessage);
  auto r = k.receive<Other>(10ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::UnknownMessageType);
}

TEST_P(BackendTest, malformed_bytes_are_rejected_counted_and_lose_nothing) {
  KernelHandle k = launch("test.echo", LaunchOptions{.block_size = 1});
  std::vector<std::byte> buf(serialized_size_v<Item>);
  auto bytes = serialize(Item{7, 3}, std::span<std::byte>(buf));
  ASSERT_TRUE(k.send_bytes(bytes).ok());
  EXPECT_EQ(k.receive<Reply>(5s).value().value, 7);

  auto corrupt = [&](auto mutate) {
    std::vector<std::byte> b(bytes.begin(), bytes.end());
    mutate(b);
    return k.send_bytes(b);
  };
  auto bad_magic = corrupt([](auto& b) { b[0] = std::byte{0}; });
  EXPECT_EQ(bad_magic.error().code(), ErrorCode::InvalidMessage);
  auto bad_version = corrupt([](auto& b) { b[8] = std::byte{9}; });
  EXPECT_EQ(bad_version.error().code(), ErrorCode::InvalidMessage);
  auto bad_payload = corrupt([](auto& b) { b[sizeof(MessageHeader)] ^= std::byte{1}; });  // checksum
  EXPECT_EQ(bad_payload.error().code(), ErrorCode::InvalidMessage);
  auto oversized = corrupt([](auto& b) {
    const std::uint32_t huge = kMaxPayloadSize + 1;
    std::memcpy(b.data() + offsetof(MessageHeader, payload_size), &huge, 4);
  });
  EXPECT_EQ(oversized.error().code(), ErrorCode::InvalidMessage);
  EXPECT_NE(oversized.error().message().find("64 KiB"), std::string::npos);
  std::vector<std::byte> obuf(serialized_size_v<Other>);
  auto wrong_type = k.send_bytes(serialize(Other{1}, std::span<std::byte>(obuf)));
  EXPECT_EQ(wrong_type.error().code(), ErrorCode::UnknownMessageType);
  EXPECT_EQ(k.metrics().invalid_messages_rejected, 5u);
  // The kernel still works and nothing was queued by the rejected sends.
  ASSERT_TRUE(k.send(Item{8, 4}).ok());
  EXPECT_EQ(k.receive<Reply>(5s).value().seq, 8u);
}

TEST_P(BackendTest, sending_to_a_terminated_kernel_is_an_error) {
  KernelHandle k = launch("test.echo", LaunchOptions{.block_size = 1});
  ASSERT_TRUE(k.terminate().ok());
  auto s = k.send(Item{1, 1});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::KernelTerminated);
  EXPECT_EQ(k.try_send(Item{1, 1}), Status::Closed);
}

TEST_P(BackendTest, invalid_lifecycle_transitions_are_errors) {
  KernelHandle k = launch("test.echo", LaunchOptions{.block_size = 1, .auto_activate = false});
  EXPECT_EQ(k.deactivate().error().code(), ErrorCode::InvalidState);  // launched, not active
  ASSERT_TRUE(k.activate().ok());
  EXPECT_EQ(k.activate().error().code(), ErrorCode::InvalidState);    // already active
  ASSERT_TRUE(k.terminate().ok());
  EXPECT_EQ(k.terminate().error().code(), ErrorCode::InvalidState);   // already terminated
  EXPECT_EQ(k.activate().error().code(), ErrorCode::InvalidState);
}

TEST_P(BackendTest, a_full_queue_times_out_without_losing_anything) {
  KernelHandle k = launch("test.echo", LaunchOptions{.block_size = 1, .input_queue_capacity = 4, .auto_activate = false});
  for (int i = 0; i < 4; ++i) ASSERT_EQ(k.try_send(Item{static_cast<std::uint64_t>(i), i}), Status::Ok);
  EXPECT_EQ(k.try_send(Item{9, 9}), Status::QueueFull);
  const auto t0 = std::chrono::steady_clock::now();
  auto s = k.send(Item{9, 9}, 50ms);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::QueueFull);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 50ms);
  ASSERT_TRUE(k.activate().ok());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(k.receive<Reply>(5s).value().seq, static_cast<std::uint64_t>(i));
  Reply extra{};
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(k.try_receive(extra), Status::QueueEmpty);
}

TEST_P(BackendTest, a_receive_times_out_with_a_clear_error) {
  KernelHandle k = launch("test.echo", LaunchOptions{.block_size = 1});
  const auto t0 = std::chrono::steady_clock::now();
  auto r = k.receive<Reply>(30ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::Timeout);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 30ms);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

TEST_P(BackendTest, dozens_of_kernels_run_at_once_and_park_when_idle) {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer tracks at most ~8k threads and fibers: 16 kernels of 256 fibers fit.
  constexpr int kKernels = 16;
#else
  constexpr int kKernels = 32;
#endif
  std::vector<KernelHandle> ks;
  for (int i = 0; i < kKernels; ++i)
    ks.push_back(launch("test.echo", LaunchOptions{.kernel_id = "echo" + std::to_string(i)}));  // default: 256 threads
  for (int i = 0; i < kKernels; ++i) ASSERT_TRUE(ks[i].send(Item{static_cast<std::uint64_t>(i), i}).ok());
  for (int i = 0; i < kKernels; ++i) EXPECT_EQ(ks[i].receive<Reply>(10s).value().value, 2 * i + 1);
  if (GetParam() == Backend::Cpu) {
    // An idle kernel spins for a while (20,000 empty polls), then parks. Under a sanitizer a
    // poll is many times slower, so the spinning phase can outlast a fixed wait: measure
    // 0.5 s windows until one is quiet (each kernel must park eventually; eight windows).
    std::this_thread::sleep_for(200ms);
    double used = 0;
    int window = 0;
    do {
      const double c0 = rktest::process_cpu_seconds();
      std::this_thread::sleep_for(500ms);
      used = rktest::process_cpu_seconds() - c0;
    } while (used >= 0.25 && ++window < 8);
    EXPECT_LT(used, 0.25) << kKernels << " idle kernels used " << used << " s of CPU in 0.5 s (window " << window
                          << ")";
  }
  EXPECT_EQ(rt_->kernels().size(), static_cast<std::size_t>(kKernels));
}

TEST_P(BackendTest, a_kernel_reads_a_gpu_buffer_the_host_fills_while_it_runs) {
  auto mem = rt_->device_memory();
  if (!mem.ok() && mem.error().code() == ErrorCode::NotImplemented) GTEST_SKIP() << mem.error().what();
  ASSERT_TRUE(mem.ok()) << mem.error().what();
  DeviceMemory& dm = **mem;
  EXPECT_FALSE(dm.name().empty());
  EXPECT_EQ(dm.allocated_bytes(), 0u);
  std::vector<std::int64_t> table(4096);
  for (std::size_t i = 0; i < table.size(); ++i) table[i] = static_cast<std::int64_t>(i) * 3 - 1000;
  std::unique_ptr<GpuBuffer> buf = dm.allocate(table.size() * sizeof(std::int64_t)).value();
  EXPECT_EQ(dm.allocated_bytes(), table.size() * sizeof(std::int64_t));
  ASSERT_TRUE(buf->copy_from_host(std::as_bytes(std::span(table))).ok());
  const auto addr = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(buf->device_ptr()));

  KernelHandle k = launch("test.table_lookup", LaunchOptions{.block_size = 32});
  std::int64_t total = 0;
  for (std::uint32_t i = 0; i < 100; ++i) {
    const std::uint32_t idx = (i * 37) % 4096;
    auto r = k.call<Reply>(rktest::TableRead{addr, idx, 0}, 5s);
    ASSERT_TRUE(r.ok()) << r.error().what();
    EXPECT_EQ(r->value, table[idx]);
    total += table[idx];
    EXPECT_EQ(static_cast<std::int64_t>(r->aux), total);
  }
  // The host rewrites part of the table under the running kernel; the kernel reads the new
  // values (the copy completes before the message that names them is sent).
  const std::vector<std::int64_t> patch(16, -5);
  ASSERT_TRUE(buf->copy_from_host(std::as_bytes(std::span(patch)), 100 * sizeof(std::int64_t)).ok());
  for (std::uint32_t idx : {100u, 107u, 115u, 116u}) {
    auto r = k.call<Reply>(rktest::TableRead{addr, idx, 0}, 5s);
    ASSERT_TRUE(r.ok()) << r.error().what();
    EXPECT_EQ(r->value, idx <= 115 ? -5 : table[idx]) << "index " << idx;
  }
  std::vector<std::int64_t> back(table.size());
  ASSERT_TRUE(buf->copy_to_host(std::as_writable_bytes(std::span(back))).ok());
  for (std::size_t i = 0; i < table.size(); ++i) ASSERT_EQ(back[i], i >= 100 && i < 116 ? -5 : table[i]) << i;

  // Bad input: clear errors, nothing written.
  auto beyond = buf->copy_from_host(std::as_bytes(std::span(patch)), table.size() * sizeof(std::int64_t) - 8);
  ASSERT_FALSE(beyond.ok());
  EXPECT_EQ(beyond.error().code(), ErrorCode::InvalidArgument);
  auto empty = dm.allocate(0);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code(), ErrorCode::InvalidArgument);
  auto huge = dm.allocate(std::size_t{1} << 52);
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.error().code(), ErrorCode::OutOfMemory);
  // Freeing under a running kernel neither waits for it nor disturbs it.
  buf.reset();
  EXPECT_EQ(dm.allocated_bytes(), 0u);
  std::unique_ptr<GpuBuffer> small = dm.allocate(8).value();
  const std::int64_t answer = 42;
  ASSERT_TRUE(small->copy_from_host(std::as_bytes(std::span(&answer, 1))).ok());
  auto r = k.call<Reply>(
      rktest::TableRead{static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(small->device_ptr())), 0, 0}, 5s);
  ASSERT_TRUE(r.ok()) << r.error().what();
  EXPECT_EQ(r->value, 42);
  EXPECT_TRUE(k.terminate().ok());
}

namespace {
/// Reference step of Conway's life on a torus (plain loops, independent of stencil.hpp).
std::vector<std::uint32_t> life_step(const std::vector<std::uint32_t>& g, std::uint32_t nx, std::uint32_t ny) {
  std::vector<std::uint32_t> out(g.size());
  for (std::uint32_t y = 0; y < ny; ++y)
    for (std::uint32_t x = 0; x < nx; ++x) {
      std::uint32_t n = 0;
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx)
          if (dx || dy) n += g[((y + ny + dy) % ny) * nx + (x + nx + dx) % nx];
      const std::uint32_t c = g[y * nx + x];
      out[y * nx + x] = (n == 3 || (c && n == 2)) ? 1 : 0;
    }
  return out;
}
std::vector<float> heat_step(const std::vector<float>& g, std::uint32_t nx, std::uint32_t ny, float alpha) {
  std::vector<float> out = g;
  for (std::uint32_t y = 1; y + 1 < ny; ++y)
    for (std::uint32_t x = 1; x + 1 < nx; ++x) {
      const float c = g[y * nx + x];
      out[y * nx + x] = c + alpha * (g[(y - 1) * nx + x] + g[(y + 1) * nx + x] + g[y * nx + x + 1] + g[y * nx + x - 1] - 4.0f * c);
    }
  return out;
}
}  // namespace

TEST_P(BackendTest, a_simulation_actor_steps_stencils_over_grids_in_device_memory) {
  auto mem = rt_->device_memory();
  if (!mem.ok() && mem.error().code() == ErrorCode::NotImplemented) GTEST_SKIP() << mem.error().what();
  ASSERT_TRUE(mem.ok()) << mem.error().what();
  auto address = [](const std::unique_ptr<GpuBuffer>& b) {
    return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(b->device_ptr()));
  };
  // Life, 48 x 40 on a torus: a glider and a blinker, stepped 1, 4, then 30 steps; exact.
  constexpr std::uint32_t nx = 48, ny = 40;
  std::vector<std::uint32_t> grid(nx * ny, 0);
  for (auto [x, y] : {std::pair{1, 0}, {2, 1}, {0, 2}, {1, 2}, {2, 2}, {20, 20}, {21, 20}, {22, 20}}) grid[y * nx + x] = 1;
  auto a = (*mem)->allocate(grid.size() * 4).value(), b = (*mem)->allocate(grid.size() * 4).value();
  ASSERT_TRUE(a->copy_from_host(std::as_bytes(std::span(grid))).ok());
  constexpr std::uint32_t hx = 33, hy = 17;
  auto ha = (*mem)->allocate(hx * hy * 4).value(), hb = (*mem)->allocate(hx * hy * 4).value();
  constexpr std::uint32_t sx = 13, sy = 7, sz = 5;
  std::vector<std::uint32_t> cube(sx * sy * sz);
  for (std::uint32_t i = 0; i < cube.size(); ++i) cube[i] = (i * 2654435761u) >> 20;
  auto ca = (*mem)->allocate(cube.size() * 4).value(), cb = (*mem)->allocate(cube.size() * 4).value();
  // Launched after the allocations: compute-sanitizer checks a kernel's accesses against
  // the allocations that existed at its launch.
  KernelHandle k = launch("test.stencil", LaunchOptions{.block_size = 128});
  std::vector<std::uint32_t> expect = grid;
  bool in_a = true;
  for (std::uint32_t steps : {1u, 4u, 30u}) {
    const auto& cur = in_a ? a : b;
    const auto& other = in_a ? b : a;
    auto r = k.call<Reply>(rktest::StencilRun{address(cur), address(other), nx, ny, steps, 0, 0.0f, 0}, 10s);
    ASSERT_TRUE(r.ok()) << r.error().what();
    EXPECT_EQ(r->value, static_cast<std::int64_t>(steps));
    EXPECT_EQ(r->source, 128u) << "every thread of the block took part";
    for (std::uint32_t s = 0; s < steps; ++s) expect = life_step(expect, nx, ny);
    if (r->seq == 1) in_a = !in_a;
    std::vector<std::uint32_t> got(grid.size());
    ASSERT_TRUE((in_a ? a : b)->copy_to_host(std::as_writable_bytes(std::span(got))).ok());
    ASSERT_EQ(got, expect) << "after " << steps << " more steps";
  }
  // Heat on 33 x 17 with a fixed border (hot left edge): within float rounding of the reference.
  std::vector<float> heat(hx * hy, 0.0f);
  for (std::uint32_t y = 0; y < hy; ++y) heat[y * hx] = 100.0f;
  ASSERT_TRUE(ha->copy_from_host(std::as_bytes(std::span(heat))).ok());
  auto r = k.call<Reply>(rktest::StencilRun{address(ha), address(hb), hx, hy, 101, 1, 0.2f, 0}, 10s);
  ASSERT_TRUE(r.ok()) << r.error().what();
  EXPECT_EQ(r->seq, 1u) << "101 steps end in the second grid";
  std::vector<float> ref = heat;
  for (int s = 0; s < 101; ++s) ref = heat_step(ref, hx, hy, 0.2f);
  std::vector<float> got(heat.size());
  ASSERT_TRUE(hb->copy_to_host(std::as_writable_bytes(std::span(got))).ok());
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], ref[i], 1e-3f) << "cell " << i;
  EXPECT_GT(got[hx + 1], 1.0f) << "heat flowed in from the edge";
  // Sum7 on 13 x 7 x 5 with clamped edges (the 128 threads' stride crosses rows and planes):
  // exact against plain loops.
  ASSERT_TRUE(ca->copy_from_host(std::as_bytes(std::span(cube))).ok());
  auto c = k.call<Reply>(rktest::StencilRun{address(ca), address(cb), sx, sy, 3, 2, 0.0f, sz}, 10s);
  ASSERT_TRUE(c.ok()) << c.error().what();
  EXPECT_EQ(c->seq, 1u) << "3 steps end in the second grid";
  auto clamp = [](std::int64_t v, std::uint32_t n) { return static_cast<std::uint32_t>(v < 0 ? 0 : v >= n ? n - 1 : v); };
  for (int s = 0; s < 3; ++s) {
    std::vector<std::uint32_t> next(cube.size());
    for (std::uint32_t z = 0; z < sz; ++z)
      for (std::uint32_t y = 0; y < sy; ++y)
        for (std::uint32_t x = 0; x < sx; ++x) {
          auto at = [&](int dx, int dy, int dz) {
            return cube[(clamp(std::int64_t{z} + dz, sz) * sy + clamp(std::int64_t{y} + dy, sy)) * sx +
                        clamp(std::int64_t{x} + dx, sx)];
          };
          next[(z * sy + y) * sx + x] =
              (at(0, 0, 0) + at(-1, 0, 0) + at(1, 0, 0) + at(0, -1, 0) + at(0, 1, 0) + at(0, 0, -1) + at(0, 0, 1)) & 0xffffu;
        }
    cube = next;
  }
  std::vector<std::uint32_t> cgot(cube.size());
  ASSERT_TRUE(cb->copy_to_host(std::as_writable_bytes(std::span(cgot))).ok());
  EXPECT_EQ(cgot, cube);
  EXPECT_TRUE(k.terminate().ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendTest, ::testing::Values(Backend::Cpu, Backend::Cuda, Backend::Vulkan),
                         rktest::backend_name);
