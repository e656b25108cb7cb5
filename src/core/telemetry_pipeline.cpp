// Telemetry pipeline: snapshots, histograms, alerts, Prometheus text + HTTP endpoint,
// Chrome trace JSON.
#include "ringkernel/telemetry_pipeline.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "ringkernel/pubsub.hpp"

namespace ringkernel {

// =========================================================================================
// LatencyHistogram
// =========================================================================================

unsigned LatencyHistogram::bucket_of(std::uint64_t us) noexcept {
  if (us < kSub) return static_cast<unsigned>(us);
  const unsigned msb = 63u - static_cast<unsigned>(std::countl_zero(us));
  const unsigned shift = msb - kSubBits;
  const unsigned sub = static_cast<unsigned>((us >> shift) & (kSub - 1));
  return (shift + 1) * kSub + sub;
}

std::uint64_t LatencyHistogram::bucket_upper(unsigned bucket) noexcept {
  if (bucket < kSub) return bucket;
  const unsigned shift = bucket / kSub - 1;
  const std::uint64_t lower = (std::uint64_t{kSub} + bucket % kSub) << shift;
  return lower + ((std::uint64_t{1} << shift) - 1);
}

void LatencyHistogram::record_us(std::uint64_t us) noexcept {
  buckets_[bucket_of(us)].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(us, std::memory_order_relaxed);
  std::uint64_t cur = min_.load(std::memory_order_relaxed);
  while (us < cur && !min_.compare_exchange_weak(cur, us, std::memory_order_relaxed)) {
  }
  cur = max_.load(std::memory_order_relaxed);
  while (us > cur && !max_.compare_exchange_weak(cur, us, std::memory_order_relaxed)) {
  }
}

std::uint64_t LatencyHistogram::percentile(double q) const noexcept {
  // Counts are read one bucket at a time while writers may add: the total is taken from
  // the buckets themselves so the walk is consistent with what it reads.
  std::array<std::uint64_t, kBuckets> c;
  std::uint64_t total = 0;
  for (unsigned i = 0; i < kBuckets; ++i) total += (c[i] = buckets_[i].load(std::memory_order_relaxed));
  if (total == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(q * double(total))));
  std::uint64_t seen = 0;
  for (unsigned i = 0; i < kBuckets; ++i) {
    seen += c[i];
    if (seen >= rank) return std::min(bucket_upper(i), max_.load(std::memory_order_relaxed));
  }
  return max_.load(std::memory_order_relaxed);
}

LatencyHistogram::Summary LatencyHistogram::summary() const noexcept {
  Summary s;
  s.count = count();
  if (s.count == 0) return s;
  s.sum_us = sum_.load(std::memory_order_relaxed);
  s.min_us = min_.load(std::memory_order_relaxed);
  s.max_us = max_.load(std::memory_order_relaxed);
  s.mean_us = double(s.sum_us) / double(s.count);
  s.p50_us = percentile(0.50);
  s.p90_us = percentile(0.90);
  s.p99_us = percentile(0.99);
  s.p999_us = percentile(0.999);
  return s;
}

void LatencyHistogram::reset() noexcept {
  for (auto& b : buckets_) b.store(0, std::memory_order_relaxed);
  count_.store(0, std::memory_order_relaxed);
  sum_.store(0, std::memory_order_relaxed);
  min_.store(~std::uint64_t{0}, std::memory_order_relaxed);
  max_.store(0, std::memory_order_relaxed);
}

const char* to_string(AlertKind k) noexcept {
  switch (k) {
    case AlertKind::DropRate: return "drop_rate";
    case AlertKind::QueueDepth: return "queue_depth";
    case AlertKind::MeanLatency: return "mean_latency_us";
    case AlertKind::P99Latency: return "p99_latency_us";
  }
  return "?";
}

// =========================================================================================
// TelemetryPipeline
// =========================================================================================

namespace {

bool valid_metric_name(std::string_view n) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

}  // namespace

struct TelemetryPipeline::Impl {
  struct Gauge {
    std::string name, help;
    std::function<double()> read;
  };
  struct Rule {
    AlertRule rule;
    std::optional<TopicPattern> pattern;
  };
  struct Previous {
    std::uint64_t processed = 0, dropped = 0;
  };

  TelemetryPipelineOptions options;

  // Configuration and results: `mutex`.
  mutable std::mutex mutex;
  std::vector<const KernelHandle*> watched;
  std::map<std::string, std::unique_ptr<LatencyHistogram>, std::less<>> histograms;
  std::vector<Gauge> gauges;
  std::vector<Rule> rules;
  std::vector<std::function<void(const TelemetryAlert&)>> alert_callbacks;
  std::vector<std::function<void(const Snapshot&)>> snapshot_callbacks;
  Snapshot latest;
  std::map<std::pair<std::string, std::string>, TelemetryAlert> active;

  // Taking a snapshot: `snap_mutex` (held while watched handles are read, so that
  // unwatch() returning means the handle is no longer touched).
  std::mutex snap_mutex;
  std::map<std::string, Previous> previous;
  std::chrono::steady_clock::time_point previous_time{};
  std::uint64_t sequence = 0;

  // Background thread.
  std::mutex run_mutex;
  std::condition_variable run_cv;
  bool stop_requested = false;
  std::thread thread;
  std::atomic<bool> running{false};

  Snapshot take() {
    std::vector<TelemetryAlert> transitions;
    std::vector<std::function<void(const TelemetryAlert&)>> alert_cbs;
    std::vector<std::function<void(const Snapshot&)>> snap_cbs;
    Snapshot s;
    {
      std::lock_guard snap(snap_mutex);
      std::vector<const KernelHandle*> kernels;
      std::vector<std::pair<std::string, const LatencyHistogram*>> hists;
      std::vector<Gauge> gs;
      std::vector<Rule> rs;
      {
        std::lock_guard lock(mutex);
        kernels = watched;
        for (const auto& [name, h] : histograms) hists.emplace_back(name, h.get());
        gs = gauges;
        rs = rules;
      }
      const auto now = std::chrono::steady_clock::now();
      const double dt = previous_time == std::chrono::steady_clock::time_point{}
                            ? 0.0
                            : std::chrono::duration<double>(now - previous_time).count();
      previous_time = now;
      s.sequence = ++sequence;
      s.taken = std::chrono::system_clock::now();
      s.interval_seconds = dt;
      for (const KernelHandle* k : kernels) {
        if (!k->valid()) continue;
        KernelSample ks;
        ks.id = k->id().value;
        ks.backend = k->backend();
        ks.state = k->status().state;
        ks.metrics = k->metrics();
        ks.input_capacity = k->options().input_queue_capacity;
        if (k->options().actor_slots != 0) {
          ks.actors = static_cast<std::uint32_t>(k->actors().size());
          ks.failed_actors = static_cast<std::uint32_t>(k->actor_faults().size());
        }
        Previous& p = previous[ks.id];
        const std::uint64_t processed = ks.metrics.telemetry.raw.messages_processed;
        const std::uint64_t dropped = ks.metrics.telemetry.raw.messages_dropped;
        const std::uint64_t dp = processed >= p.processed ? processed - p.processed : processed;
        const std::uint64_t dd = dropped >= p.dropped ? dropped - p.dropped : dropped;
        ks.messages_per_second = dt > 0 ? double(dp) / dt : 0.0;
        ks.drop_rate = dp + dd ? double(dd) / double(dp + dd) : 0.0;
        p = Previous{processed, dropped};
        s.kernels.push_back(std::move(ks));
      }
      for (const auto& [name, h] : hists) s.histograms.push_back(HistogramSample{name, h->summary()});
      for (const Gauge& g : gs) s.gauges.push_back(GaugeSample{g.name, g.help, g.read ? g.read() : 0.0});
      transitions = evaluate(s, rs);
      std::lock_guard lock(mutex);
      latest = s;
      alert_cbs = alert_callbacks;
      snap_cbs = snapshot_callbacks;
    }
    for (const TelemetryAlert& a : transitions)
      for (auto& cb : alert_cbs) cb(a);
    for (auto& cb : snap_cbs) cb(s);
    return s;
  }

  /// Alert transitions of this snapshot (called with snap_mutex held).
  std::vector<TelemetryAlert> evaluate(const Snapshot& s, const std::vector<Rule>& rs) {
    std::vector<TelemetryAlert> out;
    std::map<std::pair<std::string, std::string>, TelemetryAlert> now_firing;
    auto check = [&](const Rule& r, const std::string& subject, double value) {
      if (value > r.rule.threshold)
        now_firing[{r.rule.name, subject}] = TelemetryAlert{r.rule.name, r.rule.kind, subject, value, r.rule.threshold, true, s.sequence};
    };
    for (const Rule& r : rs) {
      if (r.rule.kind == AlertKind::P99Latency) {
        for (const HistogramSample& h : s.histograms)
          if (r.rule.target.empty() || r.rule.target == h.name) check(r, h.name, double(h.summary.p99_us));
        continue;
      }
      for (const KernelSample& k : s.kernels) {
        if (r.pattern && !r.pattern->matches(k.id)) continue;
        double v = 0;
        switch (r.rule.kind) {
          case AlertKind::DropRate: v = k.drop_rate; break;
          case AlertKind::QueueDepth: v = k.input_capacity ? double(k.metrics.input.depth) / k.input_capacity : 0.0; break;
          case AlertKind::MeanLatency: v = k.metrics.telemetry.mean_latency_us(); break;
          case AlertKind::P99Latency: break;
        }
        check(r, k.id, v);
      }
    }
    std::lock_guard lock(mutex);
    for (auto& [key, a] : now_firing)
      if (!active.count(key)) out.push_back(a);
    for (auto it = active.begin(); it != active.end();) {
      if (!now_firing.count(it->first)) {
        TelemetryAlert resolved = it->second;
        resolved.firing = false;
        resolved.snapshot = s.sequence;
        out.push_back(resolved);
        it = active.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [key, a] : now_firing) active[key] = a;  // latest value
    return out;
  }

  void loop() {
    std::unique_lock lock(run_mutex);
    while (!stop_requested) {
      lock.unlock();
      take();
      lock.lock();
      run_cv.wait_for(lock, options.interval, [&] { return stop_requested; });
    }
  }
};

TelemetryPipeline::TelemetryPipeline(TelemetryPipelineOptions options) : impl_(std::make_unique<Impl>()) {
  if (options.interval < std::chrono::milliseconds(1)) options.interval = std::chrono::milliseconds(1);
  impl_->options = options;
}

TelemetryPipeline::~TelemetryPipeline() { stop(); }

void TelemetryPipeline::watch(const KernelHandle& kernel) {
  std::lock_guard lock(impl_->mutex);
  if (std::find(impl_->watched.begin(), impl_->watched.end(), &kernel) == impl_->watched.end())
    impl_->watched.push_back(&kernel);
}

void TelemetryPipeline::unwatch(const KernelHandle& kernel) {
  std::lock_guard snap(impl_->snap_mutex);  // waits for a snapshot reading it
  std::lock_guard lock(impl_->mutex);
  impl_->watched.erase(std::remove(impl_->watched.begin(), impl_->watched.end(), &kernel), impl_->watched.end());
}

LatencyHistogram& TelemetryPipeline::histogram(std::string_view name) {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->histograms.find(name);
  if (it == impl_->histograms.end())
    it = impl_->histograms.emplace(std::string(name), std::make_unique<LatencyHistogram>()).first;
  return *it->second;
}

Result<void> TelemetryPipeline::add_gauge(std::string name, std::string help, std::function<double()> read) {
  if (!valid_metric_name(name))
    return Error(ErrorCode::InvalidArgument, "gauge name '" + name + "' is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)");
  std::lock_guard lock(impl_->mutex);
  impl_->gauges.push_back(Impl::Gauge{std::move(name), std::move(help), std::move(read)});
  return {};
}

Result<void> TelemetryPipeline::add_alert(AlertRule rule) {
  if (rule.name.empty()) return Error(ErrorCode::InvalidArgument, "an alert rule needs a name");
  if (!(rule.threshold >= 0)) return Error(ErrorCode::InvalidArgument, "alert '" + rule.name + "': threshold must be >= 0");
  if ((rule.kind == AlertKind::DropRate || rule.kind == AlertKind::QueueDepth) && rule.threshold > 1)
    return Error(ErrorCode::InvalidArgument, "alert '" + rule.name + "': a rate threshold is a fraction in 0..1");
  Impl::Rule r{rule, std::nullopt};
  if (rule.kind != AlertKind::P99Latency && !rule.target.empty()) {
    auto p = TopicPattern::parse(rule.target);
    if (!p) return p.error();
    r.pattern = std::move(*p);
  }
  std::lock_guard lock(impl_->mutex);
  impl_->rules.push_back(std::move(r));
  return {};
}

void TelemetryPipeline::on_alert(std::function<void(const TelemetryAlert&)> callback) {
  std::lock_guard lock(impl_->mutex);
  impl_->alert_callbacks.push_back(std::move(callback));
}

void TelemetryPipeline::on_snapshot(std::function<void(const Snapshot&)> callback) {
  std::lock_guard lock(impl_->mutex);
  impl_->snapshot_callbacks.push_back(std::move(callback));
}

Result<void> TelemetryPipeline::start() {
  std::lock_guard lock(impl_->run_mutex);
  if (impl_->thread.joinable()) return Error(ErrorCode::InvalidState, "the telemetry pipeline is already running");
  impl_->stop_requested = false;
  try {
    impl_->thread = std::thread([this] { impl_->loop(); });
  } catch (const std::system_error& e) {
    return Error(ErrorCode::BackendError, std::string("cannot start the telemetry thread: ") + e.what(), e.code().value());
  }
  impl_->running.store(true);
  return {};
}

void TelemetryPipeline::stop() {
  std::thread t;
  {
    std::lock_guard lock(impl_->run_mutex);
    impl_->stop_requested = true;
    t = std::move(impl_->thread);
  }
  impl_->run_cv.notify_all();
  if (t.joinable()) t.join();
  impl_->running.store(false);
}

bool TelemetryPipeline::running() const noexcept { return impl_->running.load(); }
Snapshot TelemetryPipeline::snapshot_now() { return impl_->take(); }

Snapshot TelemetryPipeline::latest() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->latest;
}

std::string TelemetryPipeline::prometheus_text() const { return to_prometheus(latest()); }

std::vector<TelemetryAlert> TelemetryPipeline::active_alerts() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<TelemetryAlert> out;
  for (const auto& [k, a] : impl_->active) out.push_back(a);
  return out;
}

// =========================================================================================
// Prometheus text exposition format 0.0.4
// =========================================================================================

namespace {

std::string escape_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 9.0e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.6g", v);
  }
  return buf;
}

class PromWriter {
 public:
  void family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(std::string_view name, std::initializer_list<std::pair<const char*, std::string_view>> labels, double v) {
    out_ += name;
    if (labels.size() != 0) {
      out_ += '{';
      bool first = true;
      for (const auto& [k, val] : labels) {
        if (!first) out_ += ',';
        first = false;
        out_ += k;
        out_ += "=\"";
        out_ += escape_label(val);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += format_value(v);
    out_ += '\n';
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

std::string to_prometheus(const Snapshot& s) {
  PromWriter w;
  w.family("ringkernel_telemetry_snapshot", "gauge", "Sequence number of the snapshot these values come from.");
  w.sample("ringkernel_telemetry_snapshot", {}, double(s.sequence));

  struct KernelMetric {
    const char* name;
    const char* type;
    const char* help;
    double (*get)(const KernelSample&);
  };
  static const KernelMetric kernel_metrics[] = {
      {"ringkernel_kernel_messages_processed_total", "counter", "Messages the kernel's handler processed.",
       [](const KernelSample& k) { return double(k.metrics.telemetry.raw.messages_processed); }},
      {"ringkernel_kernel_messages_dropped_total", "counter", "Messages the kernel dropped (rejected, dead letters, on purpose).",
       [](const KernelSample& k) { return double(k.metrics.telemetry.raw.messages_dropped); }},
      {"ringkernel_kernel_k2k_sent_total", "counter", "Kernel-to-kernel messages sent.",
       [](const KernelSample& k) { return double(k.metrics.telemetry.raw.k2k_sent); }},
      {"ringkernel_kernel_k2k_dead_letters_total", "counter", "K2K sends without a route.",
       [](const KernelSample& k) { return double(k.metrics.k2k_dead_letters); }},
      {"ringkernel_kernel_messages_per_second", "gauge", "Processing rate over the last snapshot interval.",
       [](const KernelSample& k) { return k.messages_per_second; }},
      {"ringkernel_kernel_drop_rate", "gauge", "Dropped / (processed + dropped) over the last snapshot interval.",
       [](const KernelSample& k) { return k.drop_rate; }},
      {"ringkernel_kernel_latency_min_us", "gauge", "Smallest message latency (HLC stamp to handler end), microseconds.",
       [](const KernelSample& k) {
         const auto v = k.metrics.telemetry.raw.min_latency_us;
         return v == ~std::uint64_t{0} ? 0.0 : double(v);
       }},
      {"ringkernel_kernel_latency_mean_us", "gauge", "Mean message latency, microseconds.",
       [](const KernelSample& k) { return k.metrics.telemetry.mean_latency_us(); }},
      {"ringkernel_kernel_latency_max_us", "gauge", "Largest message latency, microseconds.",
       [](const KernelSample& k) { return double(k.metrics.telemetry.raw.max_latency_us); }},
      {"ringkernel_kernel_input_queue_depth", "gauge", "Messages waiting in the input queue.",
       [](const KernelSample& k) { return double(k.metrics.input.depth); }},
      {"ringkernel_kernel_input_queue_max_depth", "gauge", "Largest input queue depth observed.",
       [](const KernelSample& k) { return double(k.metrics.input.max_depth); }},
      {"ringkernel_kernel_input_queue_capacity", "gauge", "Input queue capacity.",
       [](const KernelSample& k) { return double(k.input_capacity); }},
      {"ringkernel_kernel_input_enqueued_total", "counter", "Messages written to the input queue.",
       [](const KernelSample& k) { return double(k.metrics.input.enqueued); }},
      {"ringkernel_kernel_output_queue_depth", "gauge", "Messages waiting in the output queue.",
       [](const KernelSample& k) { return double(k.metrics.output.depth); }},
      {"ringkernel_kernel_output_enqueued_total", "counter", "Messages the kernel wrote to its output queue.",
       [](const KernelSample& k) { return double(k.metrics.output.enqueued); }},
      {"ringkernel_kernel_last_error", "gauge", "Last device error code (0 = none).",
       [](const KernelSample& k) { return double(k.metrics.telemetry.raw.last_error); }},
      {"ringkernel_kernel_actors", "gauge", "Actor pools: actors in the pool.",
       [](const KernelSample& k) { return double(k.actors); }},
      {"ringkernel_kernel_failed_actors", "gauge", "Actor pools: actors whose handler failed, not yet restarted.",
       [](const KernelSample& k) { return double(k.failed_actors); }},
  };
  for (const KernelMetric& m : kernel_metrics) {
    if (s.kernels.empty()) break;
    w.family(m.name, m.type, m.help);
    for (const KernelSample& k : s.kernels) w.sample(m.name, {{"kernel", k.id}, {"backend", to_string(k.backend)}}, m.get(k));
  }
  if (!s.kernels.empty()) {
    w.family("ringkernel_kernel_state", "gauge", "1 for the kernel's current lifecycle state.");
    for (const KernelSample& k : s.kernels) w.sample("ringkernel_kernel_state", {{"kernel", k.id}, {"state", to_string(k.state)}}, 1);
  }
  if (!s.histograms.empty()) {
    w.family("ringkernel_latency_us", "summary", "Latency histograms fed from HLC stamps, microseconds.");
    for (const HistogramSample& h : s.histograms) {
      const auto& v = h.summary;
      w.sample("ringkernel_latency_us", {{"histogram", h.name}, {"quantile", "0.5"}}, double(v.p50_us));
      w.sample("ringkernel_latency_us", {{"histogram", h.name}, {"quantile", "0.9"}}, double(v.p90_us));
      w.sample("ringkernel_latency_us", {{"histogram", h.name}, {"quantile", "0.99"}}, double(v.p99_us));
      w.sample("ringkernel_latency_us", {{"histogram", h.name}, {"quantile", "0.999"}}, double(v.p999_us));
      w.sample("ringkernel_latency_us_sum", {{"histogram", h.name}}, double(v.sum_us));
      w.sample("ringkernel_latency_us_count", {{"histogram", h.name}}, double(v.count));
    }
    w.family("ringkernel_latency_max_us", "gauge", "Largest latency recorded in the histogram, microseconds.");
    for (const HistogramSample& h : s.histograms) w.sample("ringkernel_latency_max_us", {{"histogram", h.name}}, double(h.summary.max_us));
  }
  for (const GaugeSample& g : s.gauges) {
    w.family(g.name.c_str(), "gauge", g.help.empty() ? "Application gauge." : g.help.c_str());
    w.sample(g.name, {}, g.value);
  }
  return w.take();
}

// =========================================================================================
// PrometheusServer
// =========================================================================================

namespace {

constexpr std::size_t kMaxRequest = 8 * 1024;
constexpr int kReadTimeoutMs = 1000;

Error errno_error(const std::string& what, int err) {
  return Error(ErrorCode::BackendError, what + ": " + std::strerror(err), err);
}

void send_all(int fd, std::string_view data) {
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the client went away: nothing to report to anyone
    off += static_cast<std::size_t>(n);
  }
}

std::string http_response(int code, const char* reason, std::string_view content_type, std::string_view body) {
  std::string r = "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\n";
  r += "Content-Type: ";
  r += content_type;
  r += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  r += body;
  return r;
}

}  // namespace

struct PrometheusServer::Impl {
  const TelemetryPipeline* pipeline = nullptr;
  int listen_fd = -1;
  int wake_pipe[2] = {-1, -1};
  std::uint16_t port = 0;
  std::atomic<std::uint64_t> served{0};
  std::thread thread;

  ~Impl() { shutdown(); }

  void shutdown() noexcept {
    if (thread.joinable()) {
      const char c = 'x';
      while (::write(wake_pipe[1], &c, 1) < 0 && errno == EINTR) {
      }
      thread.join();
    }
    for (int* fd : {&listen_fd, &wake_pipe[0], &wake_pipe[1]}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
  }

  void loop() {
    for (;;) {
      pollfd fds[2] = {{listen_fd, POLLIN, 0}, {wake_pipe[0], POLLIN, 0}};
      const int n = ::poll(fds, 2, -1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 || (fds[1].revents & POLLIN)) return;
      if (!(fds[0].revents & POLLIN)) continue;
      const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      serve(fd);
      ::close(fd);
    }
  }

  /// One request on `fd`: read the head (bounded in size and time), answer, close.
  void serve(int fd) {
    auto answer = [&](const std::string& response) {
      served.fetch_add(1, std::memory_order_relaxed);
      send_all(fd, response);
    };
    std::string req;
    char buf[2048];
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kReadTimeoutMs);
    while (req.find("\r\n\r\n") == std::string::npos) {
      if (req.size() > kMaxRequest) {
        answer(http_response(431, "Request Header Fields Too Large", "text/plain", "request too large\n"));
        return;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return;  // slow client: dropped
      pollfd p[2] = {{fd, POLLIN, 0}, {wake_pipe[0], POLLIN, 0}};
      const int n = ::poll(p, 2, static_cast<int>(left.count()));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || (p[1].revents & POLLIN)) return;  // timeout or stopping
      const ssize_t got = ::recv(fd, buf, sizeof buf, 0);
      if (got <= 0) return;
      req.append(buf, static_cast<std::size_t>(got));
    }
    const std::size_t line_end = req.find("\r\n");
    const std::string line = req.substr(0, line_end);
    const std::size_t sp1 = line.find(' ');
    const std::size_t sp2 = sp1 == std::string::npos ? std::string::npos : line.find(' ', sp1 + 1);
    if (sp2 == std::string::npos || line.compare(sp2 + 1, 5, "HTTP/") != 0) {
      answer(http_response(400, "Bad Request", "text/plain", "malformed request line\n"));
      return;
    }
    const std::string method = line.substr(0, sp1);
    std::string path = line.substr(sp1 + 1, sp2 - sp1 - 1);
    if (const auto q = path.find('?'); q != std::string::npos) path.resize(q);
    if (method != "GET") {
      answer(http_response(405, "Method Not Allowed", "text/plain", "only GET is served\n"));
    } else if (path == "/metrics") {
      answer(http_response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", pipeline->prometheus_text()));
    } else if (path == "/") {
      answer(http_response(200, "OK", "text/plain; charset=utf-8", "ringkernel telemetry: GET /metrics\n"));
    } else {
      answer(http_response(404, "Not Found", "text/plain", "not found: try /metrics\n"));
    }
  }
};

Result<PrometheusServer> PrometheusServer::start(const TelemetryPipeline& pipeline, std::uint16_t port) {
  auto impl = std::make_unique<Impl>();
  impl->pipeline = &pipeline;
  if (::pipe2(impl->wake_pipe, O_CLOEXEC) != 0) return errno_error("cannot create the wake-up pipe", errno);
  impl->listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (impl->listen_fd < 0) return errno_error("cannot create a socket", errno);
  const int one = 1;
  ::setsockopt(impl->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::bind(impl->listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return errno_error("cannot bind 127.0.0.1:" + std::to_string(port), errno);
  if (::listen(impl->listen_fd, 16) != 0) return errno_error("cannot listen on 127.0.0.1:" + std::to_string(port), errno);
  socklen_t len = sizeof addr;
  ::getsockname(impl->listen_fd, reinterpret_cast<sockaddr*>(&addr), &len);
  impl->port = ntohs(addr.sin_port);
  try {
    Impl* raw = impl.get();
    impl->thread = std::thread([raw] { raw->loop(); });
  } catch (const std::system_error& e) {
    return Error(ErrorCode::BackendError, std::string("cannot start the HTTP thread: ") + e.what(), e.code().value());
  }
  return PrometheusServer(std::move(impl));
}

PrometheusServer::PrometheusServer(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
PrometheusServer::PrometheusServer(PrometheusServer&&) noexcept = default;
PrometheusServer& PrometheusServer::operator=(PrometheusServer&&) noexcept = default;
PrometheusServer::~PrometheusServer() = default;
std::uint16_t PrometheusServer::port() const noexcept { return impl_ ? impl_->port : 0; }
std::uint64_t PrometheusServer::requests_served() const noexcept { return impl_ ? impl_->served.load() : 0; }
void PrometheusServer::stop() noexcept {
  if (impl_) impl_->shutdown();
}

Result<std::string> http_get_local(std::uint16_t port, std::string_view path, std::chrono::milliseconds timeout) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_error("cannot create a socket", errno);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return errno_error("cannot connect to 127.0.0.1:" + std::to_string(port), errno);
  const std::string req = "GET " + std::string(path) + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  send_all(fd, req);
  std::string resp;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return Error(ErrorCode::Timeout, "no complete answer from 127.0.0.1:" + std::to_string(port) + " in time");
      return errno_error("reading from 127.0.0.1:" + std::to_string(port), errno);
    }
    resp.append(buf, static_cast<std::size_t>(n));
    if (resp.size() > (64u << 20)) return Error(ErrorCode::InvalidMessage, "answer larger than 64 MiB");
  }
  if (resp.compare(0, 5, "HTTP/") != 0) return Error(ErrorCode::InvalidMessage, "the answer is not HTTP");
  const std::size_t sp = resp.find(' ');
  const int code = sp == std::string::npos ? 0 : std::atoi(resp.c_str() + sp + 1);
  const std::size_t body = resp.find("\r\n\r\n");
  if (body == std::string::npos) return Error(ErrorCode::InvalidMessage, "the answer has no end of headers");
  if (code != 200)
    return Error(ErrorCode::InvalidMessage, "HTTP status " + std::to_string(code) + " for " + std::string(path), code);
  return resp.substr(body + 4);
}

// =========================================================================================
// TraceRecorder
// =========================================================================================

struct TraceRecorder::Impl {
  struct Event {
    char phase;
    std::string name, category, track;
    std::uint64_t ts_us, dur_us;
    std::uint64_t message_id;
  };
  std::size_t max_events;
  std::uint64_t base_us;
  mutable std::mutex mutex;
  std::vector<Event> events;
  std::atomic<std::uint64_t> dropped{0};

  void add(Event e) {
    std::lock_guard lock(mutex);
    if (events.size() >= max_events) {
      dropped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    events.push_back(std::move(e));
  }
};

namespace {
std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          out += b;
        } else {
          out += c;
        }
    }
  }
  return out;
}
}  // namespace

TraceRecorder::TraceRecorder(std::size_t max_events) : impl_(std::make_unique<Impl>()) {
  impl_->max_events = max_events;
  impl_->base_us = hlc::wall_clock_us();
}
TraceRecorder::~TraceRecorder() = default;

void TraceRecorder::complete(std::string_view name, std::string_view category, std::string_view track,
                             const HlcTimestamp& begin, const HlcTimestamp& end, std::uint64_t message_id) {
  const std::uint64_t dur = end.physical > begin.physical ? end.physical - begin.physical : 0;
  impl_->add(Impl::Event{'X', std::string(name), std::string(category), std::string(track), begin.physical, dur, message_id});
}

void TraceRecorder::instant(std::string_view name, std::string_view category, std::string_view track,
                            const HlcTimestamp& at, std::uint64_t message_id) {
  impl_->add(Impl::Event{'i', std::string(name), std::string(category), std::string(track), at.physical, 0, message_id});
}

void TraceRecorder::message_lifecycle(std::uint64_t id, std::string_view kernel, const HlcTimestamp& sent,
                                      const HlcTimestamp& processed, const HlcTimestamp& received) {
  const std::string name = "message " + std::to_string(id);
  instant("send", "message", "host", sent, id);
  complete(name + " -> " + std::string(kernel), "message", kernel, sent, processed, id);
  complete(name + " <- " + std::string(kernel), "message", "host", processed, received, id);
  instant("receive", "message", "host", received, id);
}

std::size_t TraceRecorder::size() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->events.size();
}
std::uint64_t TraceRecorder::dropped() const noexcept { return impl_->dropped.load(); }

std::string TraceRecorder::json() const {
  std::lock_guard lock(impl_->mutex);
  std::map<std::string, int, std::less<>> tids;
  for (const auto& e : impl_->events) tids.emplace(e.track, 0);
  int next = 1;
  for (auto& [track, tid] : tids) tid = next++;
  std::string out = "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n";
  out += "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,\"args\":{\"name\":\"ringkernel\"}}";
  for (const auto& [track, tid] : tids) {
    out += ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":" + std::to_string(tid) +
           ",\"args\":{\"name\":\"" + json_escape(track) + "\"}}";
  }
  char num[64];
  for (const auto& e : impl_->events) {
    const double ts = e.ts_us >= impl_->base_us ? double(e.ts_us - impl_->base_us) : -double(impl_->base_us - e.ts_us);
    out += ",\n{\"name\":\"" + json_escape(e.name) + "\",\"cat\":\"" + json_escape(e.category) + "\",\"ph\":\"";
    out += e.phase;
    std::snprintf(num, sizeof num, "%.0f", ts);
    out += "\",\"ts\":";
    out += num;
    if (e.phase == 'X') out += ",\"dur\":" + std::to_string(e.dur_us);
    else out += ",\"s\":\"t\"";
    out += ",\"pid\":1,\"tid\":" + std::to_string(tids[e.track]);
    if (e.message_id) out += ",\"args\":{\"message_id\":" + std::to_string(e.message_id) + "}";
    out += '}';
  }
  out += "\n]}\n";
  return out;
}

Result<void> TraceRecorder::write(const std::string& path) const {
  const std::string text = json();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return errno_error("cannot write trace file '" + path + "'", errno);
  const std::size_t n = std::fwrite(text.data(), 1, text.size(), f);
  const int err = errno;
  if (std::fclose(f) != 0 || n != text.size()) return errno_error("cannot write trace file '" + path + "'", err);
  return {};
}

}  // namespace ringkernel
