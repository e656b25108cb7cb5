// Ping-pong: round trips host -> actor -> host, with the latency distribution.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "kernels.hpp"

using namespace ringkernel;
using examples::Ping;
using examples::Pong;

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 10000;
  try {
    RingKernel runtime = RingKernel::builder().backend(Backend::Auto).build().value();
    KernelHandle ponger = runtime.launch("ponger", LaunchOptions{.block_size = 1}).value();
    std::printf("ponger on the %s backend, %d round trips\n", to_string(ponger.backend()), rounds);
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(rounds));
    for (int i = 0; i < rounds; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      ponger.send(Ping{static_cast<std::uint64_t>(i), 0}).value();
      const Pong p = ponger.receive<Pong>().value();
      const auto t1 = std::chrono::steady_clock::now();
      if (p.seq != static_cast<std::uint64_t>(i)) {
        std::fprintf(stderr, "out of order: got %llu, expected %d\n", static_cast<unsigned long long>(p.seq), i);
        return 1;
      }
      us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    std::sort(us.begin(), us.end());
    auto pct = [&](double q) { return us[static_cast<std::size_t>(q * static_cast<double>(us.size() - 1))]; };
    std::printf("round trip: p50 %.2f us, p99 %.2f us, max %.2f us\n", pct(0.5), pct(0.99), us.back());
    const KernelMetrics m = ponger.metrics();
    std::printf("kernel processed %llu messages, dropped %llu\n",
                static_cast<unsigned long long>(m.telemetry.raw.messages_processed),
                static_cast<unsigned long long>(m.telemetry.raw.messages_dropped));
    ponger.terminate().value();
    return 0;
  } catch (const ErrorException& e) {
    std::fprintf(stderr, "ping_pong failed: %s\n", e.what());
    return 1;
  }
}
