// ringkernel — the command-line tool.
//
//   ringkernel check                     backends, devices, and why one is unavailable
//   ringkernel bench [--backend B] [--quick]
//                                        ping-pong round trip and batch streaming, as a table
//   ringkernel top --port N [--once] [--interval MS]
//                                        live per-kernel telemetry of a program serving
//                                        Prometheus metrics on 127.0.0.1:N
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench_kernels.hpp"

using namespace ringkernel;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

void usage(FILE* f) {
  std::fprintf(f,
               "usage: ringkernel <command> [options]\n"
               "\n"
               "commands:\n"
               "  check                      list backends and devices; say why a backend is unavailable\n"
               "  bench [--backend B] [--quick]\n"
               "                             ping-pong round trip and batch streaming through the public API\n"
               "  top --port N [--once] [--interval MS]\n"
               "                             live per-kernel telemetry of a program serving Prometheus\n"
               "                             metrics on 127.0.0.1:N (the showcase prints its port)\n"
               "  help                       this text\n");
}

std::optional<Backend> parse_backend(const std::string& s) {
  if (s == "auto") return Backend::Auto;
  if (s == "cpu") return Backend::Cpu;
  if (s == "cuda") return Backend::Cuda;
  if (s == "vulkan") return Backend::Vulkan;
  if (s == "metal") return Backend::Metal;
  return std::nullopt;
}

std::string thousands(std::uint64_t v) {
  const std::string digits = std::to_string(v);
  std::string s;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) s.push_back(',');
    s.push_back(digits[i]);
  }
  return s;
}

std::string rate_text(double per_second) {
  char buf[32];
  if (per_second >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM/s", per_second / 1e6);
  else if (per_second >= 1e3) std::snprintf(buf, sizeof buf, "%.1fk/s", per_second / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f/s", per_second);
  return buf;
}

// =========================================================================================
// check
// =========================================================================================
int cmd_check() {
  std::printf("ringkernel %s\n\nbackends:\n", kVersion);
  bool any = false;
  for (const BackendAvailability& a : availability()) {
    any |= a.available;
    std::printf("  %-7s %-12s %s\n", to_string(a.backend), a.available ? "available" : "unavailable",
                a.available ? a.device.c_str() : a.reason.c_str());
    // Every further device of a GPU backend (MultiGpuCoordinator uses them all).
    for (std::uint32_t i = 1; a.available && a.backend != Backend::Cpu && i < a.device_count; ++i) {
      const BackendAvailability d = availability(a.backend, i);
      std::printf("  %-7s %-12s %s\n", "", ("device " + std::to_string(i)).c_str(),
                  d.available ? d.device.c_str() : d.reason.c_str());
    }
  }
  std::printf("\nkernels registered in this program:\n");
  for (const KernelInfo& k : registered_kernels()) {
    std::string builds;
    for (Backend b : {Backend::Cpu, Backend::Cuda, Backend::Vulkan})
      if (k.has_backend(b)) builds += std::string(builds.empty() ? "" : ", ") + to_string(b);
    std::printf("  %-26s %.*s -> %.*s  [%s]\n", std::string(k.name).c_str(), static_cast<int>(k.request_name.size()),
                k.request_name.data(), static_cast<int>(k.response_name.size()), k.response_name.data(), builds.c_str());
  }
  std::printf("\nhost sends: %s\n", detail::asymmetric_barriers()
                                       ? "asymmetric barriers (membarrier): one thread's sends take no full barrier"
                                       : "symmetric barriers (membarrier unavailable or RINGKERNEL_ASYMMETRIC_BARRIERS=0)");
  std::printf("\nBackend::Auto picks: ");
  const bool cuda = is_available(Backend::Cuda), vulkan = is_available(Backend::Vulkan);
  std::printf("%s\n", cuda ? "cuda (for kernels with a CUDA build), else the CPU"
                           : vulkan ? "vulkan (for kernels with a Vulkan build), else the CPU"
                                    : "the CPU");
  return any ? 0 : 1;
}

// =========================================================================================
// bench
// =========================================================================================
struct BenchRow {
  std::string name;
  std::uint64_t messages = 0;
  double p50_us = -1, p99_us = -1;
  double per_second = 0;
};

std::uint64_t pct(std::vector<std::uint64_t>& v, double q) {
  if (v.empty()) return 0;
  const std::size_t k = std::min(v.size() - 1, static_cast<std::size_t>(q * double(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

Result<BenchRow> bench_call(RingKernel& rt, std::uint32_t n) {
  auto k = rt.launch("ringkernel.bench.echo", LaunchOptions{.block_size = 1, .kernel_id = "bench.call"});
  if (!k) return k.error();
  for (std::uint32_t i = 0; i < 500; ++i)
    if (auto r = k->call<rkbench::Pong>(rkbench::Ping{i, i}); !r) return r.error();
  std::vector<std::uint64_t> ns(n);
  const auto t0 = Clock::now();
  for (std::uint32_t i = 0; i < n; ++i) {
    const auto a = Clock::now();
    auto r = k->call<rkbench::Pong>(rkbench::Ping{i, i});
    if (!r) return r.error();
    if (r->payload != i + 1u) return Error(ErrorCode::InvalidMessage, "echo answered the wrong value");
    ns[i] = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - a).count());
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  BenchRow row{"round trip, call() (request/response)", n};
  row.p50_us = double(pct(ns, 0.50)) / 1e3;
  row.p99_us = double(pct(ns, 0.99)) / 1e3;
  row.per_second = n / secs;
  return row;
}

Result<BenchRow> bench_ping_pong(RingKernel& rt, std::uint32_t n) {
  auto k = rt.launch("ringkernel.bench.echo", LaunchOptions{.block_size = 1, .kernel_id = "bench.pingpong"});
  if (!k) return k.error();
  std::vector<std::uint64_t> ns(n);
  auto t0 = Clock::now();
  for (std::uint32_t i = 0; i < n + 500; ++i) {
    if (i == 500) t0 = Clock::now();  // the first 500 warm up
    const auto a = Clock::now();
    while (k->try_send(rkbench::Ping{i, i}) != Status::Ok) {
    }
    rkbench::Pong p{};
    Status s;
    while ((s = k->try_receive(p)) == Status::QueueEmpty) {
    }
    if (s != Status::Ok) return Error(ErrorCode::KernelTerminated, std::string("ping-pong: ") + to_string(s));
    if (i >= 500) ns[i - 500] = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - a).count());
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  BenchRow row{"ping-pong, try_send/try_receive (spin)", n};
  row.p50_us = double(pct(ns, 0.50)) / 1e3;
  row.p99_us = double(pct(ns, 0.99)) / 1e3;
  row.per_second = n / secs;
  return row;
}

Result<BenchRow> bench_stream(RingKernel& rt, std::uint64_t n) {
  auto k = rt.launch("ringkernel.bench.echo", LaunchOptions{.block_size = 1, .input_queue_capacity = 4096,
                                                            .output_queue_capacity = 4096, .kernel_id = "bench.stream"});
  if (!k) return k.error();
  std::atomic<std::uint64_t> received{0};
  std::atomic<bool> bad{false};
  std::thread rx([&] {
    std::vector<rkbench::Pong> buf(1024);
    std::uint64_t next = 0;
    while (next < n) {
      auto got = k->receive_batch(std::span<rkbench::Pong>(buf), 10s);
      if (!got) {
        bad = true;
        return;
      }
      for (std::size_t i = 0; i < *got; ++i, ++next)
        if (buf[i].seq != next) bad = true;
      received.store(next, std::memory_order_relaxed);
    }
  });
  std::vector<rkbench::Ping> msgs(1024);
  const auto t0 = Clock::now();
  for (std::uint64_t sent = 0; sent < n;) {
    const std::size_t m = static_cast<std::size_t>(std::min<std::uint64_t>(msgs.size(), n - sent));
    for (std::size_t i = 0; i < m; ++i) msgs[i] = rkbench::Ping{sent + i, 0};
    auto r = k->send_batch(std::span<const rkbench::Ping>(msgs.data(), m), 10s);
    if (!r) {
      bad = true;
      break;
    }
    sent += *r;
  }
  rx.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  if (bad) return Error(ErrorCode::InvalidMessage, "streaming: messages lost, reordered or timed out");
  BenchRow row{"streaming, send_batch/receive_batch", n};
  row.per_second = double(n) / secs;
  return row;
}

int cmd_bench(int argc, char** argv) {
  Backend backend = Backend::Cpu;
  bool quick = false;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--backend" && i + 1 < argc) {
      auto b = parse_backend(argv[++i]);
      if (!b) {
        std::fprintf(stderr, "ringkernel bench: unknown backend '%s'\n", argv[i]);
        return 2;
      }
      backend = *b;
    } else {
      std::fprintf(stderr, "ringkernel bench: unknown option '%s'\n", a.c_str());
      return 2;
    }
  }
  auto rt = RingKernel::builder().backend(backend).build();
  if (!rt) {
    std::fprintf(stderr, "ringkernel bench: %s\n", rt.error().what().c_str());
    return 1;
  }
  const std::uint32_t calls = quick ? 2'000 : 20'000;
  const std::uint64_t stream = quick ? 200'000 : 2'000'000;
  std::printf("ringkernel bench: backend %s, %u hardware threads%s\n\n", to_string(backend),
              std::thread::hardware_concurrency(), quick ? " (quick)" : "");
  std::printf("%-42s %12s %10s %10s %12s\n", "benchmark", "messages", "p50 µs", "p99 µs", "rate");
  int failures = 0;
  auto show = [&](Result<BenchRow> r) {
    if (!r) {
      std::printf("  failed: %s\n", r.error().what().c_str());
      ++failures;
      return;
    }
    char p50[16] = "-", p99[16] = "-";
    if (r->p50_us >= 0) std::snprintf(p50, sizeof p50, "%.2f", r->p50_us);
    if (r->p99_us >= 0) std::snprintf(p99, sizeof p99, "%.2f", r->p99_us);
    std::printf("%-42s %12s %10s %10s %12s\n", r->name.c_str(), thousands(r->messages).c_str(), p50, p99,
                rate_text(r->per_second).c_str());
    std::fflush(stdout);
  };
  show(bench_call(*rt, calls));
  show(bench_ping_pong(*rt, calls));
  show(bench_stream(*rt, stream));
  std::printf("\nround trips: host -> kernel -> host through the queues, timed per message on the host clock;\n"
              "streaming: one host thread sends batches, another receives them, in order, end to end.\n");
  return failures ? 1 : 0;
}

// =========================================================================================
// top
// =========================================================================================
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

/// Parses Prometheus text exposition lines (`name{k="v",...} value`); comments skipped.
std::vector<Sample> parse_prometheus(const std::string& text) {
  std::vector<Sample> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty() || line[0] == '#') continue;
    Sample s;
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const std::size_t eq = line.find('=', i);
        if (eq == std::string::npos || eq + 1 >= line.size() || line[eq + 1] != '"') break;
        const std::string key = line.substr(i, eq - i);
        std::string val;
        std::size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) {
            ++j;
            val += line[j] == 'n' ? '\n' : line[j];
          } else {
            val += line[j];
          }
        }
        s.labels[key] = val;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;  // '}'
    }
    while (i < line.size() && line[i] == ' ') ++i;
    s.value = std::strtod(line.c_str() + i, nullptr);
    out.push_back(std::move(s));
  }
  return out;
}

std::atomic<bool> g_interrupted{false};

std::string render_top(const std::vector<Sample>& samples, std::uint16_t port) {
  struct Row {
    std::string state, backend;
    double processed = 0, dropped = 0, rate = 0, drop_rate = 0, mean = 0, max = 0, depth = 0, capacity = 0, k2k = 0;
  };
  std::map<std::string, Row> kernels;
  struct Hist {
    double p50 = 0, p99 = 0, p999 = 0, max = 0, count = 0;
  };
  std::map<std::string, Hist> hists;
  std::vector<std::pair<std::string, double>> gauges;
  double snapshot = 0;
  for (const Sample& s : samples) {
    if (s.name == "ringkernel_telemetry_snapshot") {
      snapshot = s.value;
    } else if (s.name.rfind("ringkernel_kernel_", 0) == 0) {
      auto it = s.labels.find("kernel");
      if (it == s.labels.end()) continue;
      Row& r = kernels[it->second];
      const std::string m = s.name.substr(18);
      if (auto b = s.labels.find("backend"); b != s.labels.end()) r.backend = b->second;
      if (m == "state") r.state = s.labels.count("state") ? s.labels.at("state") : "?";
      else if (m == "messages_processed_total") r.processed = s.value;
      else if (m == "messages_dropped_total") r.dropped = s.value;
      else if (m == "messages_per_second") r.rate = s.value;
      else if (m == "drop_rate") r.drop_rate = s.value;
      else if (m == "latency_mean_us") r.mean = s.value;
      else if (m == "latency_max_us") r.max = s.value;
      else if (m == "input_queue_depth") r.depth = s.value;
      else if (m == "input_queue_capacity") r.capacity = s.value;
      else if (m == "k2k_sent_total") r.k2k = s.value;
    } else if (s.name == "ringkernel_latency_us" || s.name == "ringkernel_latency_us_count" ||
               s.name == "ringkernel_latency_max_us") {
      auto it = s.labels.find("histogram");
      if (it == s.labels.end()) continue;
      Hist& h = hists[it->second];
      if (s.name == "ringkernel_latency_us_count") h.count = s.value;
      else if (s.name == "ringkernel_latency_max_us") h.max = s.value;
      else if (s.labels.count("quantile")) {
        const std::string& q = s.labels.at("quantile");
        if (q == "0.5") h.p50 = s.value;
        else if (q == "0.99") h.p99 = s.value;
        else if (q == "0.999") h.p999 = s.value;
      }
    } else if (s.name.rfind("ringkernel_", 0) != 0 && s.labels.empty()) {
      gauges.emplace_back(s.name, s.value);
    }
  }
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "ringkernel top — 127.0.0.1:%u  snapshot %.0f  %zu kernels\n\n", port, snapshot,
                kernels.size());
  out += line;
  std::snprintf(line, sizeof line, "%-16s %-8s %-11s %13s %11s %10s %7s %9s %9s %11s %10s\n", "KERNEL", "BACKEND", "STATE",
                "PROCESSED", "RATE", "DROPPED", "DROP%", "MEAN µs", "MAX µs", "QUEUE", "K2K SENT");
  out += line;
  for (const auto& [id, r] : kernels) {
    char queue[32];
    std::snprintf(queue, sizeof queue, "%.0f/%.0f", r.depth, r.capacity);
    std::snprintf(line, sizeof line, "%-16s %-8s %-11s %13s %11s %10s %6.2f%% %9.1f %9.0f %11s %10s\n", id.c_str(),
                  r.backend.c_str(), r.state.c_str(), thousands(static_cast<std::uint64_t>(r.processed)).c_str(),
                  rate_text(r.rate).c_str(), thousands(static_cast<std::uint64_t>(r.dropped)).c_str(), r.drop_rate * 100,
                  r.mean, r.max, queue, thousands(static_cast<std::uint64_t>(r.k2k)).c_str());
    out += line;
  }
  if (!hists.empty()) {
    std::snprintf(line, sizeof line, "\n%-24s %12s %10s %10s %10s %10s\n", "HISTOGRAM", "COUNT", "p50 µs", "p99 µs",
                  "p99.9 µs", "max µs");
    out += line;
    for (const auto& [name, h] : hists) {
      std::snprintf(line, sizeof line, "%-24s %12s %10.0f %10.0f %10.0f %10.0f\n", name.c_str(),
                    thousands(static_cast<std::uint64_t>(h.count)).c_str(), h.p50, h.p99, h.p999, h.max);
      out += line;
    }
  }
  if (!gauges.empty()) {
    out += "\n";
    for (const auto& [name, v] : gauges) {
      std::snprintf(line, sizeof line, "%-40s %g\n", name.c_str(), v);
      out += line;
    }
  }
  return out;
}

int cmd_top(int argc, char** argv) {
  long port = -1;
  bool once = false;
  long interval_ms = 1000;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--once") {
      once = true;
    } else if (a == "--port" && i + 1 < argc) {
      port = std::strtol(argv[++i], nullptr, 10);
    } else if (a == "--interval" && i + 1 < argc) {
      interval_ms = std::strtol(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "ringkernel top: unknown option '%s'\n", a.c_str());
      return 2;
    }
  }
  if (port <= 0 || port > 65535) {
    std::fprintf(stderr, "ringkernel top: --port N (1..65535) is required: the port of the program's /metrics endpoint\n");
    return 2;
  }
  interval_ms = std::clamp(interval_ms, 50L, 60'000L);
  std::signal(SIGINT, [](int) { g_interrupted = true; });
  const bool tty = ::isatty(STDOUT_FILENO);
  for (;;) {
    auto body = http_get_local(static_cast<std::uint16_t>(port), "/metrics");
    if (!body) {
      std::fprintf(stderr, "ringkernel top: %s\n", body.error().what().c_str());
      if (once) return 1;
    } else {
      const std::string screen = render_top(parse_prometheus(*body), static_cast<std::uint16_t>(port));
      if (!once && tty) std::fputs("\033[H\033[2J", stdout);
      std::fputs(screen.c_str(), stdout);
      if (!once && !tty) std::fputs("\n", stdout);
      std::fflush(stdout);
      if (once) return 0;
    }
    for (long waited = 0; waited < interval_ms && !g_interrupted; waited += 50) std::this_thread::sleep_for(50ms);
    if (g_interrupted) return 0;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  try {
    if (cmd == "check") return cmd_check();
    if (cmd == "bench") return cmd_bench(argc - 2, argv + 2);
    if (cmd == "top") return cmd_top(argc - 2, argv + 2);
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
      usage(stdout);
      return 0;
    }
  } catch (const ErrorException& e) {
    std::fprintf(stderr, "ringkernel %s: %s\n", cmd.c_str(), e.what());
    return 1;
  }
  std::fprintf(stderr, "ringkernel: unknown command '%s'\n\n", cmd.c_str());
  usage(stderr);
  return 2;
}
