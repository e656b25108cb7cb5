// ringkernel showcase: streaming transaction monitoring with persistent actors.
//
// Generates a deterministic stream of card transactions, streams it through
//   ingest -> rules shards (K2K, sharded by account) -> alerter -> pub/sub topics
// and checks everything that comes out against a host-side reference computation over the
// same transactions: every verdict, every alert (rule, severity), the drop count, and the
// causal order of HLC stamps (sent < detected < published < received). Exits 0 only when
// all of it matches.
//
//   showcase [--transactions N] [--accounts N] [--shards N] [--seed N] [--rate TX_PER_S]
//            [--backend auto|cpu|cuda|vulkan] [--port N | --no-metrics] [--linger SECONDS]
//            [--trace FILE] [--quiet]
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "showcase.hpp"

using namespace ringkernel;
using namespace showcase;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// ---- command line --------------------------------------------------------------------------
struct Options {
  std::uint64_t transactions = 1'000'000;
  std::uint32_t accounts = 5'000;
  std::uint32_t shards = 2;
  std::uint64_t seed = 42;
  double rate = 0;  // transactions per second; 0 = as fast as the pipeline takes them
  Backend backend = Backend::Auto;
  int port = 0;     // Prometheus endpoint; 0 = any free port, -1 = none
  double linger_s = 0;
  std::string trace_path;
  bool quiet = false;
};

void usage(FILE* f) {
  std::fprintf(f,
               "usage: showcase [options]\n"
               "  -n, --transactions N   transactions to generate (default 1000000)\n"
               "      --accounts N       distinct accounts (default 5000, at most 4096 per shard)\n"
               "      --shards N         rules actors, 1..%u (default 2)\n"
               "      --seed N           generator seed (default 42)\n"
               "      --rate N           offered load in transactions/s (default: unlimited)\n"
               "      --backend B        auto | cpu | cuda | vulkan (default auto)\n"
               "      --port N           Prometheus endpoint on 127.0.0.1:N (default: a free port)\n"
               "      --no-metrics       no Prometheus endpoint\n"
               "      --linger S         keep serving metrics S seconds after the run (for `ringkernel top`)\n"
               "      --trace FILE       write a Chrome trace / Perfetto JSON of sampled message lifecycles\n"
               "  -q, --quiet            no progress line\n",
               kMaxShards);
}

std::optional<Options> parse(int argc, char** argv) {
  Options o;
  auto number = [&](int& i, const char* name) -> std::optional<double> {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "showcase: %s needs a value\n", name);
      return std::nullopt;
    }
    char* end = nullptr;
    const double v = std::strtod(argv[++i], &end);
    if (end == argv[i] || *end != '\0' || v < 0) {
      std::fprintf(stderr, "showcase: %s: '%s' is not a non-negative number\n", name, argv[i]);
      return std::nullopt;
    }
    return v;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    std::optional<double> v;
    if (a == "-h" || a == "--help") {
      usage(stdout);
      std::exit(0);
    } else if (a == "-n" || a == "--transactions") {
      if (!(v = number(i, "--transactions"))) return std::nullopt;
      o.transactions = static_cast<std::uint64_t>(*v);
    } else if (a == "--accounts") {
      if (!(v = number(i, "--accounts"))) return std::nullopt;
      o.accounts = static_cast<std::uint32_t>(*v);
    } else if (a == "--shards") {
      if (!(v = number(i, "--shards"))) return std::nullopt;
      o.shards = static_cast<std::uint32_t>(*v);
    } else if (a == "--seed") {
      if (!(v = number(i, "--seed"))) return std::nullopt;
      o.seed = static_cast<std::uint64_t>(*v);
    } else if (a == "--rate") {
      if (!(v = number(i, "--rate"))) return std::nullopt;
      o.rate = *v;
    } else if (a == "--port") {
      if (!(v = number(i, "--port"))) return std::nullopt;
      o.port = static_cast<int>(*v);
    } else if (a == "--no-metrics") {
      o.port = -1;
    } else if (a == "--linger") {
      if (!(v = number(i, "--linger"))) return std::nullopt;
      o.linger_s = *v;
    } else if (a == "--trace") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "showcase: --trace needs a file name\n");
        return std::nullopt;
      }
      o.trace_path = argv[++i];
    } else if (a == "--backend") {
      const std::string b = i + 1 < argc ? argv[++i] : "";
      if (b == "auto") o.backend = Backend::Auto;
      else if (b == "cpu") o.backend = Backend::Cpu;
      else if (b == "cuda") o.backend = Backend::Cuda;
      else if (b == "vulkan") o.backend = Backend::Vulkan;
      else {
        std::fprintf(stderr, "showcase: --backend takes auto, cpu, cuda or vulkan\n");
        return std::nullopt;
      }
    } else if (a == "-q" || a == "--quiet") {
      o.quiet = true;
    } else {
      std::fprintf(stderr, "showcase: unknown option '%s'\n", a.c_str());
      usage(stderr);
      return std::nullopt;
    }
  }
  if (o.transactions == 0 || o.accounts == 0) {
    std::fprintf(stderr, "showcase: --transactions and --accounts must be at least 1\n");
    return std::nullopt;
  }
  if (o.shards == 0 || o.shards > kMaxShards) {
    std::fprintf(stderr, "showcase: --shards must be 1..%u\n", kMaxShards);
    return std::nullopt;
  }
  if (o.accounts > o.shards * kAccountsPerShard) {
    std::fprintf(stderr, "showcase: %u accounts need at least %u shards (%u accounts per shard)\n", o.accounts,
                 (o.accounts + kAccountsPerShard - 1) / kAccountsPerShard, kAccountsPerShard);
    return std::nullopt;
  }
  if (o.port > 65535) {
    std::fprintf(stderr, "showcase: --port must be 0..65535\n");
    return std::nullopt;
  }
  return o;
}

// ---- deterministic transaction stream ---------------------------------------------------------
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t n) { return next() % n; }
  bool chance(double p) { return double(next() >> 11) * 0x1.0p-53 < p; }

 private:
  std::uint64_t s_;
};

std::vector<Transaction> generate(const Options& o) {
  SplitMix64 rng(o.seed);
  std::vector<std::uint16_t> home(o.accounts), currency(o.accounts);
  for (std::uint32_t a = 0; a < o.accounts; ++a) {
    home[a] = static_cast<std::uint16_t>(rng.below(kCountries));
    currency[a] = static_cast<std::uint16_t>(home[a] % kCurrencies);
  }
  const std::uint32_t structurers = std::max<std::uint32_t>(1, o.accounts / 100);
  std::vector<Transaction> out;
  out.reserve(o.transactions);
  std::uint64_t t = 1'700'000'000'000;  // event time, ms
  auto minor_for_cents = [](std::int64_t cents, std::uint16_t cur) {
    const std::int64_t ppm = cur == 0 ? 1'000'000 : cur == 1 ? 1'085'000 : cur == 2 ? 1'270'000 : 670'000;
    return cents * 1'000'000 / ppm;
  };
  while (out.size() < o.transactions) {
    t += rng.below(400);
    Transaction x{};
    x.id = out.size();
    x.event_time_ms = t;
    x.account = static_cast<std::uint32_t>(rng.below(o.accounts));
    x.merchant = static_cast<std::uint32_t>(rng.below(100'000));
    x.country = home[x.account];
    x.currency = currency[x.account];
    const std::uint64_t c = rng.below(100);
    x.channel = c < 60 ? kCardPresent : c < 95 ? kOnline : kAtm;
    x.amount_minor = minor_for_cents(static_cast<std::int64_t>(100 + rng.below(80'000)), x.currency);
    if (rng.chance(0.004)) {  // large payment
      x.amount_minor = minor_for_cents(static_cast<std::int64_t>(1'000'000 + rng.below(11'000'000)), x.currency);
    }
    if (rng.chance(0.002) && x.channel != kOnline) {  // card shows up abroad
      x.country = static_cast<std::uint16_t>((x.country + 1 + rng.below(kCountries - 1)) % kCountries);
    }
    if (rng.chance(0.003)) {  // structuring: just under $10,000, in dollars, by a few accounts
      x.account = static_cast<std::uint32_t>(rng.below(structurers) * (o.accounts / structurers));
      x.currency = 0;
      x.channel = kOnline;
      x.amount_minor = 900'000 + static_cast<std::int64_t>(rng.below(99'999));
    }
    if (rng.chance(0.001)) {  // malformed input: must be dropped (and counted) at ingest
      switch (rng.below(3)) {
        case 0: x.amount_minor = -x.amount_minor; break;
        case 1: x.currency = 9; break;
        default: x.country = 77; break;
      }
    }
    out.push_back(x);
    if (rng.chance(0.003)) {  // a burst: the same account, several payments within seconds
      const std::uint32_t n = 4 + static_cast<std::uint32_t>(rng.below(4));
      for (std::uint32_t i = 0; i < n && out.size() < o.transactions; ++i) {
        Transaction y = x;
        y.id = out.size();
        t += 500 + rng.below(5'000);
        y.event_time_ms = t;
        y.merchant = static_cast<std::uint32_t>(rng.below(100'000));
        y.channel = kOnline;
        y.amount_minor = minor_for_cents(static_cast<std::int64_t>(100 + rng.below(20'000)), y.currency);
        out.push_back(y);
      }
    }
  }
  return out;
}

// ---- the reference: the same rules, written independently with host containers ------------------
struct Reference {
  std::uint64_t valid = 0, rejected = 0;
  std::vector<std::int8_t> flags;  // per transaction id; -1 = rejected
  std::map<std::pair<std::uint64_t, std::uint16_t>, std::uint16_t> alerts;  // (txn, rule) -> severity
  std::array<std::uint64_t, kRuleCount> per_rule{};
  std::array<std::uint64_t, kSeverityCount> per_severity{};
};

Reference reference(const std::vector<Transaction>& txns) {
  struct Account {
    std::deque<std::uint64_t> recent, near;
    bool physical = false;
    std::uint16_t country = 0;
    std::uint64_t physical_ms = 0;
    std::uint32_t alerts = 0;
  };
  Reference r;
  r.flags.assign(txns.size(), -1);
  std::map<std::uint32_t, Account> accounts;
  for (const Transaction& x : txns) {
    const bool ok = x.amount_minor > 0 && x.currency < kCurrencies && x.country < kCountries && x.channel <= kAtm;
    if (!ok) {
      ++r.rejected;
      continue;
    }
    ++r.valid;
    Account& a = accounts[x.account];
    const std::int64_t cents = usd_cents(x.amount_minor, x.currency);
    const std::uint64_t t = x.event_time_ms;
    std::array<int, kRuleCount> sev{-1, -1, -1, -1};
    if (cents >= kLargeAmountCents) sev[kRuleAmount] = cents >= kVeryLargeAmountCents ? kHigh : kMedium;
    while (!a.recent.empty() && t - a.recent.front() > kVelocityWindowMs) a.recent.pop_front();
    if (a.recent.size() + 1 >= kVelocityCount) sev[kRuleVelocity] = kMedium;
    a.recent.push_back(t);
    if (x.channel != kOnline) {
      if (a.physical && a.country != x.country && t - a.physical_ms <= kTravelWindowMs) sev[kRuleGeo] = kHigh;
      a.physical = true;
      a.country = x.country;
      a.physical_ms = t;
    }
    if (cents >= kNearThresholdCents && cents < kLargeAmountCents) {
      while (!a.near.empty() && t - a.near.front() > kStructuringWindowMs) a.near.pop_front();
      if (a.near.size() + 1 >= kStructuringCount) sev[kRuleStructuring] = kLow;
      a.near.push_back(t);
    }
    std::int8_t f = 0;
    for (std::uint16_t rule = 0; rule < kRuleCount; ++rule) {
      if (sev[rule] < 0) continue;
      f = static_cast<std::int8_t>(f | (1 << rule));
      ++a.alerts;
      const auto s = static_cast<std::uint16_t>(a.alerts >= kEscalateAfter ? kCritical : sev[rule]);
      r.alerts[{x.id, rule}] = s;
      ++r.per_rule[rule];
      ++r.per_severity[s];
    }
    r.flags[x.id] = f;
  }
  return r;
}

// ---- collected results ----------------------------------------------------------------------------
struct ReceivedAlert {
  std::uint64_t alert_id, txn_id;
  std::uint16_t rule, severity;
  std::uint32_t redeliveries;
  std::string_view topic;
};

struct Results {
  std::vector<std::int8_t> flags;  // per transaction id; -1 = no verdict
  std::atomic<std::uint64_t> verdicts{0};
  std::atomic<std::uint64_t> duplicate_verdicts{0};
  std::atomic<std::uint64_t> alerts{0};
  std::atomic<std::uint64_t> hlc_checked{0};
  std::atomic<std::uint64_t> hlc_violations{0};
  std::vector<ReceivedAlert> alert_list;  // alert thread only, read after join
  std::uint64_t critical_seen = 0;        // alerts/critical/* subscription
  Clock::time_point last_verdict{};
};

std::string thousands(std::uint64_t v) {
  const std::string digits = std::to_string(v);
  std::string s;
  s.reserve(digits.size() + digits.size() / 3);
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) s.push_back(',');
    s.push_back(digits[i]);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const auto parsed = parse(argc, argv);
  if (!parsed) return 2;
  const Options opt = *parsed;
  // Progress: a line redrawn in place on a terminal; one line per second into a log.
  const bool tty = !opt.quiet && ::isatty(STDOUT_FILENO);
  const bool log_progress = !opt.quiet && !tty;

  try {
    std::printf("ringkernel showcase: streaming transaction monitoring with persistent actors\n");
    const auto gen_start = Clock::now();
    const std::vector<Transaction> txns = generate(opt);
    const Reference ref = reference(txns);
    std::printf("generated %s transactions over %u accounts (seed %" PRIu64 ") in %.2f s; reference: %s valid, %s malformed, %s alerts\n",
                thousands(txns.size()).c_str(), opt.accounts, opt.seed,
                std::chrono::duration<double>(Clock::now() - gen_start).count(), thousands(ref.valid).c_str(),
                thousands(ref.rejected).c_str(), thousands(ref.alerts.size()).c_str());

    // ---- runtime and actors -------------------------------------------------------------
    RingKernel rt = RingKernel::builder().backend(opt.backend).build().value();
    LaunchOptions lo{.block_size = 1, .input_queue_capacity = 4096, .output_queue_capacity = 4096,
                     .enable_k2k = true, .k2k_queue_capacity = 4096};
    lo.kernel_id = "ingest";
    KernelHandle ingest = rt.launch("showcase.ingest", lo).value();
    std::vector<KernelHandle> rules;
    rules.reserve(opt.shards);  // handles stay at their address: the telemetry pipeline watches them
    for (std::uint32_t s = 0; s < opt.shards; ++s) {
      lo.kernel_id = "rules/" + std::to_string(s);
      rules.push_back(rt.launch("showcase.rules", lo).value());
    }
    lo.kernel_id = "alerter";
    KernelHandle alerter = rt.launch("showcase.alerter", lo).value();
    for (KernelHandle& r : rules) {
      rt.connect(ingest, r).value();   // route s of ingest = shard s
      rt.connect(r, alerter).value();  // route 0 of each shard
    }
    std::map<std::uint32_t, std::uint32_t> shard_of_slot;
    for (std::uint32_t s = 0; s < opt.shards; ++s) shard_of_slot[rules[s].slot()] = s;
    std::printf("backend %s (%s): ingest -> rules/0..%u -> alerter -> alerts/<severity>/<rule>\n",
                to_string(ingest.backend()), availability(ingest.backend()).device.c_str(), opt.shards - 1);

    // ---- pub/sub -----------------------------------------------------------------------
    Broker& broker = rt.broker();
    for (std::uint32_t s = 0; s < kSeverityCount; ++s)
      for (std::uint32_t r = 0; r < kRuleCount; ++r) {
        const std::string name = std::string("alerts/") + severity_name(s) + "/" + rule_name(r);
        if (broker.topic<Alert>(name, TopicOptions{.retain = 8}).value() != alert_topic(s, r))
          throw ErrorException(Error(ErrorCode::InvalidState, "topic id mismatch for " + name));
      }
    const SubscriptionId all_alerts =
        broker.subscribe("alerts/#", SubscribeOptions{.qos = QoS::AtLeastOnce, .capacity = 8192, .ack_timeout = 5s}).value();
    const SubscriptionId critical =
        broker.subscribe("alerts/critical/*", SubscribeOptions{.capacity = 1u << 20, .overflow = OverflowPolicy::DropOldest})
            .value();

    // ---- telemetry ---------------------------------------------------------------------
    TelemetryPipeline telemetry({.interval = 250ms});
    telemetry.watch(ingest);
    for (const KernelHandle& r : rules) telemetry.watch(r);
    telemetry.watch(alerter);
    LatencyHistogram& e2e = telemetry.histogram("end_to_end");
    LatencyHistogram& alert_latency = telemetry.histogram("alert_delivery");
    (void)telemetry.add_gauge("showcase_alerts_published", "Alerts published to alerts/#.",
                              [&broker] { return double(broker.stats().published); });
    (void)telemetry.add_gauge("showcase_broker_refused", "Publishes refused by backpressure (retried by the alerter).",
                              [&broker] { return double(broker.stats().refused); });
    (void)telemetry.add_alert({.name = "input_backlog", .kind = AlertKind::QueueDepth, .threshold = 0.9, .target = "#"});
    (void)telemetry.add_alert({.name = "ingest_drops", .kind = AlertKind::DropRate, .threshold = 0.01, .target = "ingest"});
    std::atomic<std::uint64_t> telemetry_alerts{0};
    std::mutex telemetry_alert_mutex;
    std::map<std::string, std::uint64_t> telemetry_alert_counts;
    telemetry.on_alert([&](const TelemetryAlert& a) {
      if (!a.firing) return;
      telemetry_alerts.fetch_add(1);
      std::lock_guard lock(telemetry_alert_mutex);
      ++telemetry_alert_counts[a.rule + " on " + a.subject];
    });
    telemetry.start().value();
    std::optional<PrometheusServer> metrics;
    if (opt.port >= 0) {
      metrics.emplace(PrometheusServer::start(telemetry, static_cast<std::uint16_t>(opt.port)).value());
      std::printf("metrics: http://127.0.0.1:%u/metrics   (watch live: ringkernel top --port %u)\n", metrics->port(),
                  metrics->port());
    }
    std::optional<TraceRecorder> trace;
    if (!opt.trace_path.empty()) trace.emplace(1u << 18);
    const std::uint64_t trace_every = std::max<std::uint64_t>(1, txns.size() / 2000);
    std::fflush(stdout);

    // ---- consumers ---------------------------------------------------------------------
    Results res;
    res.flags.assign(txns.size(), -1);
    std::atomic<bool> stop{false};
    const auto start = Clock::now();

    std::thread verdict_thread([&] {
      std::array<Verdict, 512> buf;
      std::uint64_t got = 0;
      int idle = 0;
      while (got < ref.valid && !stop.load(std::memory_order_relaxed)) {
        std::size_t n_all = 0;
        for (std::uint32_t s = 0; s < opt.shards; ++s) {
          const std::size_t n = rules[s].try_receive_batch(std::span<Verdict>(buf));
          n_all += n;
          for (std::size_t i = 0; i < n; ++i) {
            const Verdict& v = buf[i];
            const HlcTimestamp recv = rt.clock().update(v.checked).value();
            res.hlc_checked.fetch_add(1, std::memory_order_relaxed);
            if (!(v.sent < v.checked && v.checked < recv)) res.hlc_violations.fetch_add(1, std::memory_order_relaxed);
            e2e.record(v.sent, recv);
            if (v.id >= res.flags.size() || res.flags[v.id] != -1) {
              res.duplicate_verdicts.fetch_add(1, std::memory_order_relaxed);
              continue;
            }
            res.flags[v.id] = static_cast<std::int8_t>(v.flags);
            if (trace && v.id % trace_every == 0)
              trace->message_lifecycle(v.id, "rules/" + std::to_string(shard_of_slot.count(v.shard) ? shard_of_slot.at(v.shard) : 0),
                                       v.sent, v.checked, recv);
          }
          got += n;
        }
        res.verdicts.store(got, std::memory_order_relaxed);
        if (n_all == 0) {
          if (++idle > 64) std::this_thread::sleep_for(50us);
          else std::this_thread::yield();
        } else {
          idle = 0;
          res.last_verdict = Clock::now();
        }
      }
    });

    std::thread alert_thread([&] {
      std::vector<Delivery> batch;
      std::uint64_t got = 0;
      std::map<std::pair<std::uint64_t, std::uint16_t>, bool> seen;
      while (got < ref.alerts.size() && !stop.load(std::memory_order_relaxed)) {
        batch.clear();
        auto n = broker.receive_batch(all_alerts, batch, 256, 50ms);
        if (!n) {
          std::fprintf(stderr, "\nshowcase: alert subscription failed: %s\n", n.error().what().c_str());
          return;
        }
        for (const Delivery& d : batch) {
          Alert a{};
          if (!d.get(a)) continue;
          const HlcTimestamp recv = rt.clock().update(d.timestamp).value();
          res.hlc_checked.fetch_add(1, std::memory_order_relaxed);
          if (!(a.sent < a.detected && a.detected < d.timestamp && d.timestamp < recv))
            res.hlc_violations.fetch_add(1, std::memory_order_relaxed);
          alert_latency.record(a.detected, recv);
          if (trace && a.alert_id % 16 == 0)
            trace->complete(std::string("alert ") + rule_name(a.rule), "alert", "alerter", a.detected, recv, a.txn_id);
          (void)broker.ack(all_alerts, d.delivery_id);
          if (!seen.emplace(std::make_pair(a.txn_id, a.rule), true).second) continue;  // an at-least-once repeat
          res.alert_list.push_back(ReceivedAlert{a.alert_id, a.txn_id, a.rule, a.severity, d.redeliveries, d.topic_name});
          ++got;
        }
        res.alerts.store(got, std::memory_order_relaxed);
      }
    });

    // ---- the stream --------------------------------------------------------------------
    auto progress = [&](bool final_line) {
      const double el = std::chrono::duration<double>(Clock::now() - start).count();
      const std::uint64_t v = res.verdicts.load();
      const double pct = ref.valid ? 100.0 * double(v) / double(ref.valid) : 100.0;
      char bar[21];
      const int fill = static_cast<int>(pct / 5.0);
      for (int i = 0; i < 20; ++i) bar[i] = i < fill ? '#' : '.';
      bar[20] = '\0';
      std::printf("%s  [%s] %5.1f%%  checked %s/%s  alerts %s  %.0fk tx/s  %.1f s", tty ? "\r\033[K" : "", bar, pct,
                  thousands(v).c_str(),
                  thousands(ref.valid).c_str(), thousands(res.alerts.load()).c_str(), el > 0 ? double(v) / el / 1e3 : 0.0,
                  el);
      if (final_line || !tty) std::printf("\n");
      std::fflush(stdout);
    };
    const auto progress_every = tty ? Clock::duration(100ms) : Clock::duration(1s);
    const bool show_progress = tty || log_progress;
    auto last_progress = Clock::now();
    // Unpaced: batches of 512. Paced: about 100 µs worth of transactions per batch.
    const std::size_t chunk =
        opt.rate > 0 ? static_cast<std::size_t>(std::clamp(opt.rate * 100e-6, 1.0, 512.0)) : std::size_t{512};
    for (std::size_t i = 0; i < txns.size(); i += chunk) {
      const std::size_t n = std::min(chunk, txns.size() - i);
      if (opt.rate > 0) {
        const auto due = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(double(i) / opt.rate));
        std::this_thread::sleep_until(due);
      }
      ingest.send_batch(std::span<const Transaction>(txns.data() + i, n), 30s).value();
      if (show_progress && Clock::now() - last_progress > progress_every) {
        progress(false);
        last_progress = Clock::now();
      }
    }
    const auto deadline = Clock::now() + 60s;
    while ((res.verdicts.load() < ref.valid || res.alerts.load() < ref.alerts.size()) && Clock::now() < deadline) {
      std::this_thread::sleep_for(20ms);
      if (show_progress && Clock::now() - last_progress > progress_every) {
        progress(false);
        last_progress = Clock::now();
      }
    }
    stop = true;
    verdict_thread.join();
    alert_thread.join();
    const auto end = res.last_verdict == Clock::time_point{} ? Clock::now() : res.last_verdict;
    if (show_progress) progress(true);
    const double seconds = std::chrono::duration<double>(end - start).count();

    // Alerts seen by the critical-only subscription (wildcard on the last level).
    while (auto d = broker.try_receive(critical).value()) ++res.critical_seen;

    // ---- verification ------------------------------------------------------------------
    std::uint64_t verdict_mismatch = 0, missing_verdicts = 0, unexpected_verdicts = 0;
    for (std::size_t id = 0; id < txns.size(); ++id) {
      if (ref.flags[id] < 0 && res.flags[id] >= 0) ++unexpected_verdicts;
      else if (ref.flags[id] >= 0 && res.flags[id] < 0) ++missing_verdicts;
      else if (ref.flags[id] != res.flags[id]) ++verdict_mismatch;
    }
    std::array<std::uint64_t, kRuleCount> found_rule{};
    std::array<std::uint64_t, kSeverityCount> found_severity{};
    std::uint64_t alert_mismatch = 0, redelivered = 0, topic_mismatch = 0;
    std::vector<std::uint64_t> ids;
    for (const ReceivedAlert& a : res.alert_list) {
      ++found_rule[a.rule % kRuleCount];
      ++found_severity[a.severity % kSeverityCount];
      redelivered += a.redeliveries != 0;
      ids.push_back(a.alert_id);
      auto it = ref.alerts.find({a.txn_id, a.rule});
      if (it == ref.alerts.end() || it->second != a.severity) ++alert_mismatch;
      const std::string expect_topic = std::string("alerts/") + severity_name(a.severity) + "/" + rule_name(a.rule);
      if (a.topic != expect_topic) ++topic_mismatch;
    }
    std::sort(ids.begin(), ids.end());
    bool ids_dense = true;
    for (std::size_t i = 0; i < ids.size(); ++i) ids_dense &= ids[i] == i + 1;

    const Snapshot snap = telemetry.snapshot_now();
    std::uint64_t ingest_dropped = 0, total_dropped = 0;
    for (const KernelSample& k : snap.kernels) {
      total_dropped += k.metrics.telemetry.raw.messages_dropped;
      if (k.id == "ingest") ingest_dropped = k.metrics.telemetry.raw.messages_dropped;
    }

    // ---- report ------------------------------------------------------------------------
    const LatencyHistogram::Summary lat = e2e.summary();
    const LatencyHistogram::Summary al = alert_latency.summary();
    std::printf("\nthroughput      %s transactions in %.3f s = %s tx/s end to end (%u rules shards)\n",
                thousands(txns.size()).c_str(), seconds, thousands(static_cast<std::uint64_t>(double(txns.size()) / seconds)).c_str(),
                opt.shards);
    std::printf("latency         send -> verdict (HLC stamps, µs): p50 %" PRIu64 "  p90 %" PRIu64 "  p99 %" PRIu64
                "  p99.9 %" PRIu64 "  max %" PRIu64 "%s\n",
                lat.p50_us, lat.p90_us, lat.p99_us, lat.p999_us, lat.max_us,
                opt.rate > 0 ? "" : "  (unpaced: includes queueing; try --rate)");
    std::printf("                detect -> alert received (µs):    p50 %" PRIu64 "  p99 %" PRIu64 "  max %" PRIu64 "\n",
                al.p50_us, al.p99_us, al.max_us);
    std::printf("\n%-14s %10s %10s %10s %12s %10s\n", "alerts", "amount", "velocity", "geo", "structuring", "total");
    std::printf("%-14s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %12" PRIu64 " %10zu\n", "  received", found_rule[0],
                found_rule[1], found_rule[2], found_rule[3], res.alert_list.size());
    std::printf("%-14s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %12" PRIu64 " %10zu\n", "  reference", ref.per_rule[0],
                ref.per_rule[1], ref.per_rule[2], ref.per_rule[3], static_cast<std::size_t>(ref.alerts.size()));
    std::printf("%-14s %10s %10s %10s %12s\n", "by severity", "low", "medium", "high", "critical");
    std::printf("%-14s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %12" PRIu64 "\n", "  received", found_severity[0],
                found_severity[1], found_severity[2], found_severity[3]);
    std::printf("%-14s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %12" PRIu64 "\n", "  reference", ref.per_severity[0],
                ref.per_severity[1], ref.per_severity[2], ref.per_severity[3]);
    const BrokerStats bs = broker.stats();
    std::printf("pub/sub         %s published on %" PRIu64 " topics; alerts/critical/* saw %s; %s publishes refused by "
                "backpressure and retried; %zu redelivered\n",
                thousands(bs.published).c_str(), bs.topics, thousands(res.critical_seen).c_str(),
                thousands(bs.refused).c_str(), static_cast<std::size_t>(redelivered));

    std::printf("\n%-10s %11s %9s %10s %12s %12s %10s\n", "kernel", "processed", "dropped", "k2k sent", "mean lat µs",
                "max lat µs", "max input");
    for (const KernelSample& k : snap.kernels) {
      const TelemetryBuffer& t = k.metrics.telemetry.raw;
      // Kernels fed only over K2K have no host input queue to report.
      const std::string max_input = k.metrics.input.enqueued ? thousands(k.metrics.input.max_depth) : "(k2k)";
      std::printf("%-10s %11s %9s %10s %12.1f %12" PRIu64 " %10s\n", k.id.c_str(), thousands(t.messages_processed).c_str(),
                  thousands(t.messages_dropped).c_str(), thousands(t.k2k_sent).c_str(),
                  k.metrics.telemetry.mean_latency_us(), t.max_latency_us, max_input.c_str());
    }
    {
      std::lock_guard lock(telemetry_alert_mutex);
      std::printf("telemetry       %" PRIu64 " snapshots; alert rules fired %" PRIu64 " time(s)", snap.sequence,
                  telemetry_alerts.load());
      for (const auto& [what, n] : telemetry_alert_counts) std::printf("; %s x%" PRIu64, what.c_str(), n);
      std::printf("\n");
    }

    const bool verdicts_ok = verdict_mismatch == 0 && missing_verdicts == 0 && unexpected_verdicts == 0 &&
                             res.duplicate_verdicts.load() == 0;
    const bool alerts_ok = alert_mismatch == 0 && res.alert_list.size() == ref.alerts.size() && ids_dense && topic_mismatch == 0;
    const bool drops_ok = ingest_dropped == ref.rejected && total_dropped == ref.rejected;
    const bool critical_ok = res.critical_seen == ref.per_severity[kCritical];
    const bool hlc_ok = res.hlc_violations.load() == 0;
    std::printf("\nchecks against the reference computation:\n");
    std::printf("  [%s] verdicts: %s of %s match (missing %" PRIu64 ", wrong flags %" PRIu64 ", unexpected %" PRIu64
                ", duplicates %" PRIu64 ")\n",
                verdicts_ok ? "ok" : "FAIL", thousands(ref.valid - missing_verdicts - verdict_mismatch).c_str(),
                thousands(ref.valid).c_str(), missing_verdicts, verdict_mismatch, unexpected_verdicts,
                res.duplicate_verdicts.load());
    std::printf("  [%s] alerts: %s of %s with the expected rule, severity and topic; alert ids 1..%s %s\n",
                alerts_ok ? "ok" : "FAIL", thousands(res.alert_list.size() - alert_mismatch).c_str(),
                thousands(ref.alerts.size()).c_str(), thousands(ids.size()).c_str(), ids_dense ? "without gaps" : "HAVE GAPS");
    std::printf("  [%s] drops: ingest dropped %s malformed transactions, reference says %s; other kernels dropped %s\n",
                drops_ok ? "ok" : "FAIL", thousands(ingest_dropped).c_str(), thousands(ref.rejected).c_str(),
                thousands(total_dropped - ingest_dropped).c_str());
    std::printf("  [%s] wildcard subscription alerts/critical/* received %s, reference %s\n", critical_ok ? "ok" : "FAIL",
                thousands(res.critical_seen).c_str(), thousands(ref.per_severity[kCritical]).c_str());
    std::printf("  [%s] causal order (HLC): %s messages checked, sent < detected < published < received; %" PRIu64
                " violations\n",
                hlc_ok ? "ok" : "FAIL", thousands(res.hlc_checked.load()).c_str(), res.hlc_violations.load());

    if (trace) {
      if (auto w = trace->write(opt.trace_path); w)
        std::printf("trace: %zu events written to %s (open in ui.perfetto.dev or chrome://tracing)\n", trace->size(),
                    opt.trace_path.c_str());
      else
        std::printf("trace: %s\n", w.error().what().c_str());
    }
    if (metrics && opt.linger_s > 0) {
      std::printf("serving metrics on http://127.0.0.1:%u/metrics for %.0f s more\n", metrics->port(), opt.linger_s);
      std::fflush(stdout);
      std::this_thread::sleep_for(std::chrono::duration<double>(opt.linger_s));
    }
    const bool ok = verdicts_ok && alerts_ok && drops_ok && critical_ok && hlc_ok;
    std::printf("\nRESULT: %s\n", ok ? "verified" : "MISMATCH");
    telemetry.stop();
    return ok ? 0 : 1;
  } catch (const ErrorException& e) {
    std::fprintf(stderr, "\nshowcase failed: %s\n", e.what());
    return 1;
  }
}
