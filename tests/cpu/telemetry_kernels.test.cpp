// Telemetry pipeline watching CPU kernels: rates, drop-rate and queue-depth alerts, the
// Prometheus endpoint serving live kernel metrics.
#include <gtest/gtest.h>

#include <thread>

#include "product_kernels.hpp"

using namespace ringkernel;
using namespace std::chrono_literals;
using ptest::Tick;

namespace {
LaunchOptions opts(const char* id, std::uint32_t capacity = 1024) {
  LaunchOptions o{.block_size = 1, .input_queue_capacity = capacity, .output_queue_capacity = 4096};
  o.kernel_id = id;
  return o;
}
}  // namespace

TEST(TelemetryKernels, snapshots_report_what_each_kernel_did) {
  RingKernel rt = RingKernel::builder().backend(Backend::Cpu).build().value();
  KernelHandle sink = rt.launch("ptest.sink", opts("workers/sink")).value();
  TelemetryPipeline tp;
  tp.watch(sink);
  tp.watch(sink);  // no-op
  tp.snapshot_now();
  for (std::uint64_t i = 0; i < 1000; ++i) ASSERT_TRUE(sink.send(Tick{i, 0}).ok());
  for (std::uint64_t i = 0; i < 1000; ++i) ASSERT_TRUE(sink.receive<Tick>(2s).ok());
  std::this_thread::sleep_for(5ms);
  const Snapshot s = tp.snapshot_now();
  ASSERT_EQ(s.kernels.size(), 1u);
  const KernelSample& k = s.kernels[0];
  EXPECT_EQ(k.id, "workers/sink");
  EXPECT_EQ(k.state, KernelState::Active);
  EXPECT_EQ(k.metrics.telemetry.raw.messages_processed, 1000u);
  EXPECT_EQ(k.metrics.input.enqueued, 1000u);
  EXPECT_GT(k.messages_per_second, 0.0);
  EXPECT_EQ(k.drop_rate, 0.0);
  EXPECT_EQ(k.input_capacity, 1024u);

  const std::string text = tp.prometheus_text();
  EXPECT_NE(text.find("ringkernel_kernel_messages_processed_total{kernel=\"workers/sink\",backend=\"cpu\"} 1000"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("ringkernel_kernel_state{kernel=\"workers/sink\",state=\"active\"} 1"), std::string::npos);

  tp.unwatch(sink);
  EXPECT_TRUE(tp.snapshot_now().kernels.empty());
}

TEST(TelemetryKernels, drop_rate_and_queue_depth_alerts_fire_for_the_kernels_they_target) {
  RingKernel rt = RingKernel::builder().backend(Backend::Cpu).build().value();
  KernelHandle dropper = rt.launch("ptest.half_dropper", opts("stage/dropper")).value();
  LaunchOptions held = opts("stage/held", 64);
  held.auto_activate = false;  // never drains: its queue fills
  KernelHandle stuck = rt.launch("ptest.sink", held).value();
  KernelHandle fine = rt.launch("ptest.sink", opts("other/fine")).value();

  TelemetryPipeline tp;
  tp.watch(dropper);
  tp.watch(stuck);
  tp.watch(fine);
  ASSERT_TRUE(tp.add_alert({.name = "drops", .kind = AlertKind::DropRate, .threshold = 0.25, .target = "stage/*"}).ok());
  ASSERT_TRUE(tp.add_alert({.name = "backlog", .kind = AlertKind::QueueDepth, .threshold = 0.9, .target = "#"}).ok());
  std::vector<TelemetryAlert> seen;
  tp.on_alert([&](const TelemetryAlert& a) { seen.push_back(a); });
  tp.snapshot_now();

  for (std::uint64_t i = 0; i < 200; ++i) ASSERT_TRUE(dropper.send(Tick{i, 0}).ok());
  for (std::uint64_t i = 0; i < 64; ++i) ASSERT_EQ(stuck.try_send(Tick{i, 0}), Status::Ok);
  for (std::uint64_t i = 0; i < 100; ++i) ASSERT_TRUE(dropper.receive<Tick>(2s).ok());
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (dropper.metrics().telemetry.raw.messages_dropped < 100 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  tp.snapshot_now();

  auto has = [&](const std::string& rule, const std::string& subject) {
    for (const auto& a : seen)
      if (a.rule == rule && a.subject == subject && a.firing) return true;
    return false;
  };
  EXPECT_TRUE(has("drops", "stage/dropper"));
  EXPECT_TRUE(has("backlog", "stage/held"));
  EXPECT_FALSE(has("drops", "other/fine"));
  EXPECT_FALSE(has("backlog", "stage/dropper"));
  EXPECT_EQ(seen.size(), 2u);

  // The backlog resolves once the held kernel drains.
  ASSERT_TRUE(stuck.activate().ok());
  for (std::uint64_t i = 0; i < 64; ++i) ASSERT_TRUE(stuck.receive<Tick>(2s).ok());
  tp.snapshot_now();
  bool resolved = false;
  for (const auto& a : seen) resolved |= a.rule == "backlog" && !a.firing;
  EXPECT_TRUE(resolved);
}

TEST(TelemetryKernels, the_endpoint_serves_live_kernel_metrics) {
  RingKernel rt = RingKernel::builder().backend(Backend::Cpu).build().value();
  KernelHandle sink = rt.launch("ptest.sink", opts("live")).value();
  TelemetryPipeline tp({.interval = 5ms});
  tp.watch(sink);
  ASSERT_TRUE(tp.start().ok());
  auto server = PrometheusServer::start(tp);
  ASSERT_TRUE(server.ok()) << server.error().what();
  for (std::uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(sink.call<Tick>(Tick{i, 0}, 2s).ok());
  std::string body;
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = http_get_local(server->port(), "/metrics");
    ASSERT_TRUE(r.ok()) << r.error().what();
    body = *r;
    if (body.find("ringkernel_kernel_messages_processed_total{kernel=\"live\",backend=\"cpu\"} 10") != std::string::npos) break;
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_NE(body.find("ringkernel_kernel_messages_processed_total{kernel=\"live\",backend=\"cpu\"} 10"), std::string::npos)
      << body;
  server->stop();
  tp.stop();
}

TEST(TelemetryKernels, snapshots_count_a_pools_actors_and_its_failed_ones) {
  RingKernel rt = RingKernel::builder().backend(Backend::Cpu).build().value();
  LaunchOptions o = opts("pool/workers");
  o.actor_slots = 4;
  KernelHandle pool = rt.launch("ptest.pool_worker", o).value();
  const ActorRef a = pool.spawn_actor().value();
  (void)pool.spawn_actor().value();
  ASSERT_TRUE(pool.send(ptest::ActorJob{a.index, 5, 0}).ok());  // actor a fails with code 5
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (pool.actor_faults().empty() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);

  TelemetryPipeline tp;
  tp.watch(pool);
  const Snapshot s = tp.snapshot_now();
  ASSERT_EQ(s.kernels.size(), 1u);
  EXPECT_EQ(s.kernels[0].actors, 2u);
  EXPECT_EQ(s.kernels[0].failed_actors, 1u);
  const std::string text = tp.prometheus_text();
  EXPECT_NE(text.find("ringkernel_kernel_failed_actors{kernel=\"pool/workers\",backend=\"cpu\"} 1"), std::string::npos)
      << text;
  EXPECT_NE(text.find("ringkernel_kernel_actors{kernel=\"pool/workers\",backend=\"cpu\"} 2"), std::string::npos);
  tp.unwatch(pool);
}
