// Telemetry pipeline without kernels: histograms, Prometheus text, the HTTP endpoint,
// Chrome trace JSON, alert rules on histograms, the background thread.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <regex>
#include <sstream>
#include <thread>

#include <ringkernel/telemetry_pipeline.hpp>

using namespace ringkernel;
using namespace std::chrono_literals;

namespace {

/// Sends raw bytes to 127.0.0.1:port and returns everything the server answers.
std::string raw_request(std::uint16_t port, const std::string& bytes) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "connect failed";
  }
  (void)::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return out;
}

}  // namespace

// ---- histogram ------------------------------------------------------------------------------

TEST(LatencyHistogram, buckets_bound_the_relative_error) {
  for (std::uint64_t v : {0ull, 1ull, 15ull, 16ull, 17ull, 31ull, 32ull, 33ull, 1000ull, 123456789ull, ~0ull >> 1}) {
    const unsigned b = LatencyHistogram::bucket_of(v);
    ASSERT_LT(b, LatencyHistogram::kBuckets);
    const std::uint64_t upper = LatencyHistogram::bucket_upper(b);
    EXPECT_GE(upper, v);
    EXPECT_LE(double(upper - v), double(v) / LatencyHistogram::kSub + 1.0) << v;
  }
  EXPECT_EQ(LatencyHistogram::bucket_of(~0ull), LatencyHistogram::kBuckets - 1);
}

TEST(LatencyHistogram, percentiles_of_a_uniform_distribution) {
  LatencyHistogram h;
  for (std::uint64_t v = 1; v <= 10000; ++v) h.record_us(v);
  const auto s = h.summary();
  EXPECT_EQ(s.count, 10000u);
  EXPECT_EQ(s.min_us, 1u);
  EXPECT_EQ(s.max_us, 10000u);
  EXPECT_NEAR(s.mean_us, 5000.5, 1e-9);
  EXPECT_NEAR(double(s.p50_us), 5000, 5000 / 16.0);
  EXPECT_NEAR(double(s.p99_us), 9900, 9900 / 16.0);
  EXPECT_LE(s.p999_us, 10000u);
  EXPECT_EQ(h.percentile(1.0), 10000u);
}

TEST(LatencyHistogram, records_the_distance_between_two_hlc_stamps) {
  LatencyHistogram h;
  h.record(HlcTimestamp{1000, 0, 1}, HlcTimestamp{1250, 3, 2});
  h.record(HlcTimestamp{1000, 5, 1}, HlcTimestamp{1000, 6, 1});  // same µs: 0
  h.record(HlcTimestamp{2000, 0, 1}, HlcTimestamp{1000, 0, 1});  // not later: 0, never negative
  EXPECT_EQ(h.summary().max_us, 250u);
  EXPECT_EQ(h.summary().min_us, 0u);
  h.reset();
  EXPECT_EQ(h.summary().count, 0u);
  EXPECT_EQ(h.percentile(0.5), 0u);
}

TEST(LatencyHistogram, concurrent_records_are_all_counted) {
  LatencyHistogram h;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&h, t] {
      for (std::uint64_t i = 0; i < 50000; ++i) h.record_us(i % 1000 + std::uint64_t(t));
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(h.count(), 200000u);
  EXPECT_EQ(h.summary().max_us, 1002u);
}

// ---- Prometheus text ------------------------------------------------------------------------

TEST(Prometheus, every_sample_line_follows_the_exposition_format) {
  Snapshot s;
  s.sequence = 7;
  KernelSample k;
  k.id = "rules/\"0\"\\x";  // needs escaping
  k.metrics.telemetry.raw.messages_processed = 42;
  k.metrics.telemetry.raw.min_latency_us = ~std::uint64_t{0};
  k.input_capacity = 1024;
  s.kernels.push_back(k);
  s.histograms.push_back(HistogramSample{"e2e", LatencyHistogram::Summary{10, 1, 9, 5.0, 5, 8, 9, 9, 50}});
  s.gauges.push_back(GaugeSample{"app_things", "Things.", 3.5});
  const std::string text = to_prometheus(s);
  const std::regex sample(R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? [-+0-9.eE]+(Inf|NaN)?$)");
  std::istringstream in(text);
  std::string line;
  int samples = 0;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) continue;
    EXPECT_TRUE(std::regex_match(line, sample)) << line;
    ++samples;
  }
  EXPECT_GT(samples, 20);
  EXPECT_NE(text.find("ringkernel_kernel_messages_processed_total{kernel=\"rules/\\\"0\\\"\\\\x\",backend=\"cpu\"} 42"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("ringkernel_latency_us{histogram=\"e2e\",quantile=\"0.99\"} 9"), std::string::npos);
  EXPECT_NE(text.find("ringkernel_kernel_latency_min_us{kernel="), std::string::npos);
  EXPECT_NE(text.find("# TYPE app_things gauge\napp_things 3.5\n"), std::string::npos);
  EXPECT_NE(text.find("ringkernel_telemetry_snapshot 7"), std::string::npos);
}

// ---- HTTP endpoint --------------------------------------------------------------------------

TEST(PrometheusServer, serves_metrics_on_loopback_and_refuses_the_rest) {
  TelemetryPipeline tp;
  tp.histogram("h").record_us(5);
  ASSERT_TRUE(tp.add_gauge("test_gauge", "A gauge.", [] { return 12.0; }).ok());
  tp.snapshot_now();
  auto server = PrometheusServer::start(tp, 0);
  ASSERT_TRUE(server.ok()) << server.error().what();
  ASSERT_NE(server->port(), 0);

  auto body = http_get_local(server->port(), "/metrics");
  ASSERT_TRUE(body.ok()) << body.error().what();
  EXPECT_EQ(*body, tp.prometheus_text());
  EXPECT_NE(body->find("test_gauge 12"), std::string::npos);

  auto missing = http_get_local(server->port(), "/nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().native_code(), 404);
  EXPECT_NE(raw_request(server->port(), "POST /metrics HTTP/1.1\r\n\r\n").find("405"), std::string::npos);
  EXPECT_NE(raw_request(server->port(), "garbage\r\n\r\n").find("400"), std::string::npos);
  EXPECT_NE(raw_request(server->port(), "GET /metrics HTTP/1.1\r\nX: " + std::string(20000, 'a')).find("431"),
            std::string::npos);
  const std::string head = raw_request(server->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  EXPECT_NE(head.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_EQ(server->requests_served(), 6u);
}

TEST(PrometheusServer, a_silent_client_does_not_wedge_the_server) {
  TelemetryPipeline tp;
  auto server = PrometheusServer::start(tp, 0);
  ASSERT_TRUE(server.ok());
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(server->port());
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);  // and says nothing
  const auto t0 = std::chrono::steady_clock::now();
  auto body = http_get_local(server->port(), "/metrics", 5000ms);
  EXPECT_TRUE(body.ok()) << body.error().what();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  ::close(fd);
}

TEST(PrometheusServer, stops_promptly_and_frees_its_port) {
  TelemetryPipeline tp;
  auto server = PrometheusServer::start(tp, 0);
  ASSERT_TRUE(server.ok());
  const std::uint16_t port = server->port();
  auto taken = PrometheusServer::start(tp, port);
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.error().code(), ErrorCode::BackendError);
  EXPECT_NE(taken.error().message().find("cannot bind"), std::string::npos);
  const auto t0 = std::chrono::steady_clock::now();
  server->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_FALSE(http_get_local(port, "/metrics", 500ms).ok());
  auto again = PrometheusServer::start(tp, port);
  EXPECT_TRUE(again.ok()) << again.error().what();
}

// ---- alerts, gauges, background thread ------------------------------------------------------

TEST(TelemetryPipeline, a_p99_alert_fires_and_resolves_through_the_callback) {
  TelemetryPipeline tp;
  ASSERT_TRUE(tp.add_alert({.name = "slow", .kind = AlertKind::P99Latency, .threshold = 1000, .target = "rpc"}).ok());
  std::vector<TelemetryAlert> seen;
  tp.on_alert([&](const TelemetryAlert& a) { seen.push_back(a); });
  LatencyHistogram& h = tp.histogram("rpc");
  tp.histogram("other").record_us(1'000'000);  // not the target
  for (int i = 0; i < 100; ++i) h.record_us(50);
  tp.snapshot_now();
  EXPECT_TRUE(seen.empty());
  for (int i = 0; i < 100; ++i) h.record_us(5000);
  tp.snapshot_now();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_TRUE(seen[0].firing);
  EXPECT_EQ(seen[0].subject, "rpc");
  EXPECT_GT(seen[0].value, 1000);
  EXPECT_EQ(tp.active_alerts().size(), 1u);
  tp.snapshot_now();
  EXPECT_EQ(seen.size(), 1u);  // still firing: no new callback
  h.reset();
  tp.snapshot_now();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_FALSE(seen[1].firing);
  EXPECT_TRUE(tp.active_alerts().empty());
}

TEST(TelemetryPipeline, bad_rules_and_gauge_names_are_refused) {
  TelemetryPipeline tp;
  EXPECT_FALSE(tp.add_alert({.name = "", .kind = AlertKind::DropRate, .threshold = 0.1}).ok());
  EXPECT_FALSE(tp.add_alert({.name = "r", .kind = AlertKind::DropRate, .threshold = 2}).ok());
  EXPECT_FALSE(tp.add_alert({.name = "r", .kind = AlertKind::MeanLatency, .threshold = -1}).ok());
  EXPECT_FALSE(tp.add_alert({.name = "r", .kind = AlertKind::QueueDepth, .threshold = 0.5, .target = "a/#/b"}).ok());
  EXPECT_FALSE(tp.add_gauge("9lives", "", [] { return 0.0; }).ok());
  EXPECT_FALSE(tp.add_gauge("has space", "", [] { return 0.0; }).ok());
  EXPECT_TRUE(tp.add_gauge("ok_name:sub", "", [] { return 0.0; }).ok());
}

TEST(TelemetryPipeline, the_background_thread_takes_snapshots_at_its_interval) {
  TelemetryPipeline tp({.interval = 5ms});
  std::atomic<int> gauge_reads{0};
  ASSERT_TRUE(tp.add_gauge("reads", "", [&] { return double(++gauge_reads); }).ok());
  std::atomic<std::uint64_t> callbacks{0};
  tp.on_snapshot([&](const Snapshot&) { ++callbacks; });
  EXPECT_EQ(tp.latest().sequence, 0u);
  ASSERT_TRUE(tp.start().ok());
  EXPECT_TRUE(tp.running());
  EXPECT_FALSE(tp.start().ok());
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (tp.latest().sequence < 5 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  tp.stop();
  tp.stop();  // idempotent
  EXPECT_FALSE(tp.running());
  const Snapshot s = tp.latest();
  EXPECT_GE(s.sequence, 5u);
  ASSERT_EQ(s.gauges.size(), 1u);
  EXPECT_GE(s.gauges[0].value, 5);
  EXPECT_GE(callbacks.load(), 5u);
}

// ---- Chrome trace ---------------------------------------------------------------------------

TEST(TraceRecorder, writes_complete_and_instant_events_and_stays_bounded) {
  TraceRecorder tr(6);
  const std::uint64_t now = hlc::wall_clock_us();
  tr.message_lifecycle(42, "worker \"1\"", HlcTimestamp{now, 0, 1}, HlcTimestamp{now + 10, 0, 2},
                       HlcTimestamp{now + 25, 0, 1});
  tr.complete("span", "cat", "host", HlcTimestamp{now, 0, 1}, HlcTimestamp{now + 5, 0, 1});
  tr.instant("mark", "cat", "host", HlcTimestamp{now + 1, 0, 1});
  tr.instant("dropped", "cat", "host", HlcTimestamp{now + 2, 0, 1});
  EXPECT_EQ(tr.size(), 6u);
  EXPECT_EQ(tr.dropped(), 1u);
  const std::string j = tr.json();
  EXPECT_EQ(j.rfind("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[", 0), 0u);
  EXPECT_NE(j.find("\"ph\":\"X\""), std::string::npos);
  EXPECT_NE(j.find("\"ph\":\"i\""), std::string::npos);
  EXPECT_NE(j.find("\"dur\":10"), std::string::npos);
  EXPECT_NE(j.find("\"dur\":15"), std::string::npos);
  EXPECT_NE(j.find("worker \\\"1\\\""), std::string::npos);  // escaped
  EXPECT_NE(j.find("\"message_id\":42"), std::string::npos);
  EXPECT_EQ(j.find("dropped"), std::string::npos);
  // Balanced braces and brackets: a cheap structural check of the JSON.
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < j.size(); ++i) {
    const char c = j[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '{' || c == '[') ++depth;
    else if (c == '}' || c == ']') --depth;
    ASSERT_GE(depth, 0);
  }
  EXPECT_EQ(depth, 0);

  const std::string path = ::testing::TempDir() + "/ringkernel_trace_test.json";
  ASSERT_TRUE(tr.write(path).ok());
  std::FILE* f = std::fopen(path.c_str(), "rb");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  std::remove(path.c_str());
  auto bad = tr.write("/nonexistent-dir/trace.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), ErrorCode::BackendError);
}
