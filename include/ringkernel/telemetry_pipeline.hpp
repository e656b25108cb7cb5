// ringkernel/telemetry_pipeline.hpp — real-time telemetry: periodic snapshots of every
// watched kernel, latency histograms fed from HLC stamps, alert rules with callbacks, and
// exporters (Prometheus text over an embedded HTTP/1.1 server, Chrome trace / Perfetto
// JSON of message lifecycles).
//
//     TelemetryPipeline tp({.interval = 250ms});
//     tp.watch(ingest);                                   // KernelHandle, by address
//     LatencyHistogram& e2e = tp.histogram("end_to_end");
//     e2e.record(sent_stamp, received_stamp);             // any thread, lock-free
//     tp.add_alert({.name = "drops", .kind = AlertKind::DropRate, .threshold = 0.01});
//     tp.on_alert([](const TelemetryAlert& a) { ... });   // called on the pipeline thread
//     tp.start();
//     auto server = PrometheusServer::start(tp, 9464).value();   // GET /metrics
//
// Threading: every TelemetryPipeline member may be called from any thread. Callbacks run on
// the pipeline's thread (or the caller of snapshot_now()), never under an internal lock.
// A watched KernelHandle must stay at its address and alive until unwatch() or until the
// pipeline is stopped.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ringkernel/error.hpp"
#include "ringkernel/hlc.hpp"
#include "ringkernel/runtime.hpp"

namespace ringkernel {

// =========================================================================================
// Latency histogram
// =========================================================================================

/// Log-linear histogram of microsecond latencies (HdrHistogram's layout with 16 sub-buckets
/// per power of two: a reported percentile is within 1/16 of the true value). record() is
/// one relaxed atomic increment per call, safe from any number of threads.
class LatencyHistogram {
 public:
  static constexpr unsigned kSubBits = 4;
  static constexpr unsigned kSub = 1u << kSubBits;  // sub-buckets per power of two
  static constexpr unsigned kBuckets = (64 - kSubBits + 1) * kSub;

  struct Summary {
    std::uint64_t count = 0;
    std::uint64_t min_us = 0;
    std::uint64_t max_us = 0;
    double mean_us = 0;
    std::uint64_t p50_us = 0;
    std::uint64_t p90_us = 0;
    std::uint64_t p99_us = 0;
    std::uint64_t p999_us = 0;
    std::uint64_t sum_us = 0;
  };

  LatencyHistogram() = default;
  LatencyHistogram(const LatencyHistogram&) = delete;
  LatencyHistogram& operator=(const LatencyHistogram&) = delete;

  void record_us(std::uint64_t us) noexcept;
  /// Latency between two stamps of the same message: received.physical - sent.physical (0
  /// when the receive stamp is not later, as on one clock within the same microsecond).
  void record(const HlcTimestamp& sent, const HlcTimestamp& received) noexcept {
    record_us(received.physical > sent.physical ? received.physical - sent.physical : 0);
  }
  std::uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }
  /// Smallest recorded value v such that a fraction `q` (0..1) of values are <= v
  /// (reported as the upper bound of v's bucket, clamped to the maximum seen).
  std::uint64_t percentile(double q) const noexcept;
  Summary summary() const noexcept;
  void reset() noexcept;

  static unsigned bucket_of(std::uint64_t us) noexcept;
  static std::uint64_t bucket_upper(unsigned bucket) noexcept;

 private:
  std::array<std::atomic<std::uint64_t>, kBuckets> buckets_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_{0};
  std::atomic<std::uint64_t> min_{~std::uint64_t{0}};
  std::atomic<std::uint64_t> max_{0};
};

// =========================================================================================
// Snapshots and alerts
// =========================================================================================

struct KernelSample {
  std::string id;
  Backend backend = Backend::Cpu;
  KernelState state = KernelState::Created;
  KernelMetrics metrics;
  std::uint32_t input_capacity = 0;
  double messages_per_second = 0;  ///< processed, since the previous snapshot
  double drop_rate = 0;            ///< dropped / (processed + dropped), since the previous snapshot
  std::uint32_t actors = 0;         ///< actor pools: actors in the pool (failed ones included)
  std::uint32_t failed_actors = 0;  ///< actor pools: actors whose handler failed, not yet restarted
};

struct HistogramSample {
  std::string name;
  LatencyHistogram::Summary summary;
};

struct GaugeSample {
  std::string name;  ///< a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)
  std::string help;
  double value = 0;
};

struct Snapshot {
  std::uint64_t sequence = 0;  ///< 0 = no snapshot taken yet
  std::chrono::system_clock::time_point taken{};
  double interval_seconds = 0;  ///< since the previous snapshot
  std::vector<KernelSample> kernels;
  std::vector<HistogramSample> histograms;
  std::vector<GaugeSample> gauges;
};

enum class AlertKind : std::uint8_t {
  DropRate,     ///< a kernel's drop rate over the interval above `threshold` (0..1)
  QueueDepth,   ///< a kernel's input queue fill (depth / capacity) above `threshold` (0..1)
  MeanLatency,  ///< a kernel's mean handler latency (µs, from its telemetry) above `threshold`
  P99Latency,   ///< a histogram's p99 (µs) above `threshold`
};
const char* to_string(AlertKind k) noexcept;

struct AlertRule {
  std::string name;
  AlertKind kind = AlertKind::DropRate;
  double threshold = 0;
  /// Kernel-id pattern (topic syntax: "rules/*", "#") for kernel rules, a histogram name
  /// for P99Latency; empty = every kernel / every histogram.
  std::string target;
};

/// An alert turning on (firing) or off (resolved) for one subject (kernel id or histogram).
struct TelemetryAlert {
  std::string rule;
  AlertKind kind = AlertKind::DropRate;
  std::string subject;
  double value = 0;
  double threshold = 0;
  bool firing = true;
  std::uint64_t snapshot = 0;
};

struct TelemetryPipelineOptions {
  std::chrono::milliseconds interval{250};  ///< between background snapshots (at least 1 ms)
};

class TelemetryPipeline {
 public:
  explicit TelemetryPipeline(TelemetryPipelineOptions options = {});
  TelemetryPipeline(const TelemetryPipeline&) = delete;
  TelemetryPipeline& operator=(const TelemetryPipeline&) = delete;
  ~TelemetryPipeline();  ///< stops the background thread

  /// Watches a kernel (by the handle's address); watching twice is a no-op.
  void watch(const KernelHandle& kernel);
  void unwatch(const KernelHandle& kernel);
  /// The histogram `name`, created on first use; its address is stable for the pipeline's life.
  LatencyHistogram& histogram(std::string_view name);
  /// A value read at every snapshot (e.g. broker counters), on the snapshotting thread;
  /// `read` must not call this pipeline. Errors: InvalidArgument (name is not a Prometheus
  /// metric name).
  Result<void> add_gauge(std::string name, std::string help, std::function<double()> read);
  /// Errors: InvalidArgument (bad threshold or target pattern).
  Result<void> add_alert(AlertRule rule);
  void on_alert(std::function<void(const TelemetryAlert&)> callback);
  void on_snapshot(std::function<void(const Snapshot&)> callback);

  /// Starts the background thread. Errors: InvalidState (already running).
  Result<void> start();
  /// Stops it (returns once the thread has left; idempotent).
  void stop();
  bool running() const noexcept;

  /// Takes a snapshot now (and evaluates alerts), on the calling thread.
  Snapshot snapshot_now();
  /// The latest snapshot (sequence 0 before the first).
  Snapshot latest() const;
  /// The latest snapshot in Prometheus text exposition format 0.0.4.
  std::string prometheus_text() const;
  /// Alerts firing now.
  std::vector<TelemetryAlert> active_alerts() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Renders a snapshot in Prometheus text exposition format 0.0.4.
std::string to_prometheus(const Snapshot& s);

// =========================================================================================
// Prometheus endpoint: a small HTTP/1.1 server on 127.0.0.1
// =========================================================================================

/// Serves GET /metrics (the pipeline's latest snapshot) on 127.0.0.1, one connection at a
/// time, with bounded request size (8 KiB) and a 1 s read timeout; every response closes
/// the connection. Move-only owner; stop() or destruction ends it cleanly (bounded).
class PrometheusServer {
 public:
  /// Binds 127.0.0.1:`port` (0 = an ephemeral port; see port()). Errors: BackendError with
  /// errno (address in use, ...). The pipeline must outlive the server.
  static Result<PrometheusServer> start(const TelemetryPipeline& pipeline, std::uint16_t port = 0);

  PrometheusServer(PrometheusServer&&) noexcept;
  PrometheusServer& operator=(PrometheusServer&&) noexcept;
  ~PrometheusServer();

  std::uint16_t port() const noexcept;
  /// Requests answered (any status).
  std::uint64_t requests_served() const noexcept;
  void stop() noexcept;

 private:
  struct Impl;
  explicit PrometheusServer(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

/// A minimal blocking HTTP/1.1 GET against 127.0.0.1 (for `ringkernel top` and tests).
/// Returns the body of a 200 response. Errors: BackendError (connect/IO, with errno),
/// Timeout, InvalidMessage (not HTTP, or a status other than 200).
Result<std::string> http_get_local(std::uint16_t port, std::string_view path,
                                   std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));

// =========================================================================================
// Chrome trace / Perfetto JSON
// =========================================================================================

/// Collects trace events ("X" complete and "i" instant events of the Trace Event Format)
/// and writes them as JSON that chrome://tracing and ui.perfetto.dev open. Timestamps are
/// HLC stamps (physical µs), shown relative to the recorder's creation. Bounded: events
/// beyond max_events are counted, not stored. Thread-safe.
class TraceRecorder {
 public:
  explicit TraceRecorder(std::size_t max_events = 1u << 20);
  TraceRecorder(const TraceRecorder&) = delete;
  TraceRecorder& operator=(const TraceRecorder&) = delete;
  ~TraceRecorder();

  /// An "X" event on `track` (one row per track) from `begin` to `end`.
  void complete(std::string_view name, std::string_view category, std::string_view track, const HlcTimestamp& begin,
                const HlcTimestamp& end, std::uint64_t message_id = 0);
  /// An "i" event on `track` at `at`.
  void instant(std::string_view name, std::string_view category, std::string_view track, const HlcTimestamp& at,
               std::uint64_t message_id = 0);
  /// A message's life: sent by the host, processed by `kernel`, its result received by the
  /// host: "i" send / receive instants on the host track and "X" spans for the way there
  /// (send -> process, on the kernel's track) and back (process -> receive).
  void message_lifecycle(std::uint64_t message_id, std::string_view kernel, const HlcTimestamp& sent,
                         const HlcTimestamp& processed, const HlcTimestamp& received);

  std::size_t size() const;
  std::uint64_t dropped() const noexcept;
  std::string json() const;
  /// Errors: BackendError (the file cannot be written, with errno).
  Result<void> write(const std::string& path) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ringkernel
