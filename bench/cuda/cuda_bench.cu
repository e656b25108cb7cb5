// CUDA backend benchmarks (issue: CUDA backend, item 9). Every baseline runs in the same
// process on the same GPU. Prints a table last; pass --json FILE to also write the figures.
//  a. one message host -> actor -> host through the public API, vs an empty kernel launch
//     + sync, a 1-node CUDA graph + sync, and copy-in + kernel + copy-out + sync;
//  b. streaming 16-byte requests -> 16-byte responses through the batch API, 1/2/4/8 kernels
//     (a producer and a consumer thread per kernel), and one message per send call;
//  c. K2K one hop between two kernels: latency measured on the device (globaltimer at send
//     and at receipt), and throughput over kernel pairs;
//  m. several devices (ringkernel/multi_gpu.hpp): streaming through a KernelGroup on one
//     device and on all of them; a round trip through a Pipe between two devices, against
//     the same two kernels on one device;
//  s. a heat-equation actor (ringkernel/stencil.hpp) stepping a grid in device memory,
//     against a kernel launch per step;
//  d. upstream RingKernel's definitions: "command injection" (host cost to store one
//     command) and K2K as a host-observed round trip (host -> A -K2K-> B -> host).
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <ringkernel/ringkernel.hpp>
#include <ringkernel/stencil.hpp>

#include "../clock.hpp"

using namespace ringkernel;
using Clock = std::chrono::steady_clock;

namespace bench {
struct Req16 {
  std::uint64_t a;
  std::uint64_t b;
};
RK_MESSAGE(Req16, "bench.Req16", a, b);
struct Resp16 {
  std::uint64_t a;
  std::uint64_t b;
};
RK_MESSAGE(Resp16, "bench.Resp16", a, b);

struct Echo16 {
  using Request = Req16;
  using Response = Resp16;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Req16& in, Resp16& out) const {
    out = Resp16{in.a, in.b + 1};
    return ctx.mode() == KernelMode::Parallel || ctx.thread_id() == 0;
  }
};

/// A pipeline stage whose output is echo16's input (b + 1).
struct Fwd16 {
  using Request = Req16;
  using Response = Req16;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Req16& in, Req16& out) const {
    out = Req16{in.a, in.b + 1};
    return ctx.mode() == KernelMode::Parallel || ctx.thread_id() == 0;
  }
};

/// s. A heat-equation actor: `steps` 5-point stencil steps over float grids in device memory.
struct HeatRun {
  std::uint64_t a, b;
  std::uint32_t nx, ny;
  std::uint32_t steps;
  float alpha;
};
RK_MESSAGE(HeatRun, "bench.HeatRun", a, b, nx, ny, steps, alpha);
struct Heat {
  float alpha;
  RK_HOST_DEVICE float operator()(const stencil::GridPos<float>& p) const {
    return p.center() + alpha * (p.north() + p.south() + p.east() + p.west() - 4.0f * p.center());
  }
};
struct HeatActor {
  using Request = HeatRun;
  using Response = Resp16;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const HeatRun& in, Resp16& out) const {
    auto* a = reinterpret_cast<float*>(static_cast<std::uintptr_t>(in.a));
    auto* b = reinterpret_cast<float*>(static_cast<std::uintptr_t>(in.b));
    const float* r = stencil::run(ctx, a, b, stencil::Extent{in.nx, in.ny, 1}, stencil::Boundary::Fixed, in.steps, Heat{in.alpha});
    out = Resp16{r == a ? 0u : 1u, in.steps};
    return ctx.thread_id() == 0;
  }
};

struct Stamp {
  std::uint64_t sent_ns;
  std::uint64_t seq;
};
RK_MESSAGE(Stamp, "bench.Stamp", sent_ns, seq);

/// Sends `a` K2K stamps over route 0 (retrying on backpressure). In actor mode it replies
/// with the sender's cost of its last send (ns, measured on the device).
struct K2KSource {
  using Request = Req16;
  using Response = Resp16;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Req16& in, Resp16& out) const {
    if (ctx.mode() == KernelMode::Actor && ctx.thread_id() != 0) return false;
    const std::uint32_t dest = ctx.k2k_route(0);
    std::uint64_t cost = 0;
    for (std::uint64_t i = 0; i < in.a; ++i) {
      const std::uint64_t t0 = rkbench::clock_ns();
      while (ctx.k2k_send(dest, Stamp{t0, in.b + i}) == Status::QueueFull) {
      }
      cost = rkbench::clock_ns() - t0;
    }
    out = Resp16{cost, in.b};
    return ctx.mode() == KernelMode::Actor;
  }
};

struct PingStats {
  std::uint64_t round_trip_ns;  ///< mean
  std::uint64_t send_ns;        ///< mean cost of the k2k_send call
  std::uint64_t sm_mhz;
  std::uint64_t lost;
};
RK_MESSAGE(PingStats, "bench.PingStats", round_trip_ns, send_ns, sm_mhz, lost);

/// Sends `a` stamps over route 0 in batches of 32 per thread (k2k_send_batch: a warp's
/// 32 threads publish 1,024 messages with one claim), retrying on backpressure.
struct K2KBatchSource {
  using Request = Req16;
  using Response = void;
  RK_HOST_DEVICE void operator()(RingContext& ctx, NoState&, const Req16& in) const {
    const std::uint32_t dest = ctx.k2k_route(0);
    Stamp batch[32];
    for (std::uint64_t i = 0; i < in.a; i += 32) {
      const auto n = static_cast<std::uint32_t>(in.a - i < 32 ? in.a - i : 32);
      for (std::uint32_t k = 0; k < n; ++k) batch[k] = Stamp{0, in.b + i + k};
      while (ctx.k2k_send_batch(dest, batch, n) == Status::QueueFull) {
      }
    }
  }
};

/// Device-timed ping-pong: sends a stamp to its route 0 and pulls the echo back, `a`
/// times; replies with the mean round trip and send cost in ns (one clock, so no cross-SM
/// timer skew). Launched with K2KDelivery::Pull.
struct K2KPinger {
  using Request = Req16;
  using Response = PingStats;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Req16& in, PingStats& out) const {
    if (ctx.thread_id() != 0) return false;
    const std::uint32_t dest = ctx.k2k_route(0);
    const std::uint64_t t0 = rkbench::clock_ns();
#if RK_DEVICE_PASS
    const std::uint64_t c0 = clock64();
#endif
    std::uint64_t lost = 0, send = 0;
    for (std::uint64_t i = 0; i < in.a; ++i) {
      const std::uint64_t s0 = rkbench::clock_ns();
      while (ctx.k2k_send(dest, Stamp{0, i}) == Status::QueueFull) {
      }
      send += rkbench::clock_ns() - s0;
      Stamp back{};
      std::uint64_t spins = 0;
      while (ctx.k2k_try_receive(back) != Status::Ok) {
        if (++spins > (1ull << 26)) {  // no echo: report it instead of spinning forever
          ++lost;
          break;
        }
      }
    }
    const std::uint64_t ns = rkbench::clock_ns() - t0;
#if RK_DEVICE_PASS
    const std::uint64_t cycles = clock64() - c0;
#else
    const std::uint64_t cycles = 0;
#endif
    const std::uint64_t n = in.a ? in.a : 1;
    out = PingStats{ns / n, send / n, ns ? cycles * 1000 / ns : 0, lost};
    return true;
  }
};

/// Echoes each stamp back over its route 0 (the pinger's partner).
struct K2KPonger {
  using Request = Stamp;
  using Response = void;
  RK_HOST_DEVICE void operator()(RingContext& ctx, NoState&, const Stamp& in) const {
    if (ctx.thread_id() != 0) return;
    while (ctx.k2k_send(ctx.k2k_route(0), in) == Status::QueueFull) {
    }
  }
};

/// Replies with the one-hop latency measured on the device.
struct K2KLatencySink {
  using Request = Stamp;
  using Response = Resp16;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, NoState&, const Stamp& in, Resp16& out) const {
    out = Resp16{rkbench::clock_ns() - in.sent_ns, in.seq};
    return ctx.thread_id() == 0;
  }
};

/// Publishes one stamp to topic `a` (sequence `b`): publish -> delivery latency.
struct StampPublisher {
  using Request = Req16;
  using Response = void;
  RK_HOST_DEVICE void operator()(RingContext& ctx, NoState&, const Req16& in) const {
    if (ctx.thread_id() != 0) return;
    while (ctx.publish(in.a, Stamp{rkbench::clock_ns(), in.b}) == Status::QueueFull) {
    }
  }
};

/// Counts what arrives (no reply): throughput is read from its telemetry.
struct K2KCountSink {
  using Request = Stamp;
  using Response = void;
  RK_HOST_DEVICE void operator()(RingContext&, NoState&, const Stamp&) const {}
};
}  // namespace bench

namespace bench {
/// An actor pool's message and State (create / restart latency).
struct PoolReq {
  std::uint32_t actor;
  std::uint32_t reserved;
  std::uint64_t value;
};
RK_MESSAGE(PoolReq, "bench.PoolReq", actor, reserved, value);
struct PoolState {
  std::uint64_t total;
  std::uint64_t history[7];
};
RK_GPU_TYPE(PoolState, total, history);
struct PoolActor {
  using Request = PoolReq;
  using Response = Resp16;
  using State = PoolState;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, PoolState& s, const PoolReq& in, Resp16& out) const {
    if (ctx.thread_id() != 0) return false;
    s.total += in.value;
    out = Resp16{ctx.actor_index(), s.total};
    return true;
  }
};
}  // namespace bench
RK_KERNEL("bench.echo16", bench::Echo16);
RK_KERNEL("bench.fwd16", bench::Fwd16);
RK_KERNEL("bench.heat", bench::HeatActor);
RK_KERNEL("bench.pool", bench::PoolActor);
RK_KERNEL("bench.k2k_source", bench::K2KSource);
RK_KERNEL("bench.k2k_latency_sink", bench::K2KLatencySink);
RK_KERNEL("bench.k2k_count_sink", bench::K2KCountSink);
RK_KERNEL("bench.k2k_pinger", bench::K2KPinger);
RK_KERNEL("bench.k2k_batch_source", bench::K2KBatchSource);
RK_KERNEL("bench.stamp_publisher", bench::StampPublisher);
RK_KERNEL("bench.k2k_ponger", bench::K2KPonger);

__global__ void empty_kernel() {}
/// Smallest step of %globaltimer seen in a tight loop (its resolution on this GPU).
__global__ void timer_step(unsigned long long* out) {
  unsigned long long prev = rkbench::clock_ns(), best = ~0ull;
  for (int i = 0; i < 100000; ++i) {
    const unsigned long long t = rkbench::clock_ns();
    if (t != prev && t - prev < best) best = t - prev;
    prev = t;
  }
  *out = best;
}
/// Baseline for section s: one step of the same stencil as a grid-wide kernel.
__global__ void heat_step_kernel(const float* in, float* out, std::uint32_t nx, std::uint32_t ny, float alpha) {
  const std::uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= nx * ny) return;
  const std::uint32_t x = i % nx, y = i / nx;
  if (x == 0 || y == 0 || x == nx - 1 || y == ny - 1) {
    out[i] = in[i];
    return;
  }
  const float c = in[i];
  out[i] = c + alpha * (in[i - nx] + in[i + nx] + in[i + 1] + in[i - 1] - 4.0f * c);
}

__global__ void add_kernel(const bench::Req16* in, bench::Resp16* out) { *out = bench::Resp16{in->a, in->b + 1}; }

namespace {

#define CK(x)                                                                              \
  do {                                                                                     \
    cudaError_t e_ = (x);                                                                  \
    if (e_ != cudaSuccess) {                                                               \
      std::fprintf(stderr, "%s failed: %s\n", #x, cudaGetErrorString(e_));                 \
      std::exit(1);                                                                        \
    }                                                                                      \
  } while (0)

struct Percentiles {
  double p50 = 0, p99 = 0;
};
Percentiles percentiles(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)]};
}
double us_since(Clock::time_point t0) { return std::chrono::duration<double, std::micro>(Clock::now() - t0).count(); }

std::vector<std::string> rows;
void row(const char* what, const std::string& value) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-58s %s", what, value.c_str());
  rows.emplace_back(buf);
  std::printf("%s\n", buf);
  std::fflush(stdout);
}
template <class... A>
std::string fmt(const char* f, A... a) {
  char buf[192];
  std::snprintf(buf, sizeof buf, f, static_cast<double>(a)...);
  return buf;
}

/// `n` timed host -> kernel -> host round trips (after `warm` untimed ones) into `out`.
void round_trips(KernelHandle& k, int warm, int n, std::vector<double>& out) {
  for (int i = -warm; i < n; ++i) {
    const auto t0 = Clock::now();
    if (k.try_send(bench::Req16{static_cast<std::uint64_t>(i), 1}) != Status::Ok) std::abort();
    bench::Resp16 r{};
    while (k.try_receive(r) != Status::Ok) {
    }
    const double us = us_since(t0);
    if (r.b != 2) std::abort();
    if (i >= 0) out.push_back(us);
  }
}

void bench_one_message(RingKernel& rt, int iters) {
  // The express line off (RINGKERNEL_CUDA_EXPRESS=0, read at launch) in interleaved rounds:
  // what it gives, in the same process.
  std::vector<double> ours, plain;
  for (int round = 0; round < 3; ++round) {
    for (const bool express : {true, false}) {
      if (!express) setenv("RINGKERNEL_CUDA_EXPRESS", "0", 1);
      auto kk = rt.launch("bench.echo16", LaunchOptions{.block_size = 32}).value();
      unsetenv("RINGKERNEL_CUDA_EXPRESS");
      round_trips(kk, 1000, iters / 3, express ? ours : plain);
      kk.terminate().value();
    }
  }
  auto k = rt.launch("bench.echo16", LaunchOptions{.block_size = 32}).value();
  // Upstream's "command injection": host cost to store one command.
  std::vector<double> inject;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = Clock::now();
    if (k.try_send(bench::Req16{static_cast<std::uint64_t>(i), 1}) != Status::Ok) std::abort();
    inject.push_back(us_since(t0) * 1000.0);
    bench::Resp16 r{};
    while (k.try_receive(r) != Status::Ok) {
    }
  }
  k.terminate().value();

  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  std::vector<double> launch, graph, copy;
  for (int i = -200; i < iters; ++i) {
    const auto t0 = Clock::now();
    empty_kernel<<<1, 1, 0, s>>>();
    CK(cudaStreamSynchronize(s));
    if (i >= 0) launch.push_back(us_since(t0));
  }
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  empty_kernel<<<1, 1, 0, s>>>();
  CK(cudaStreamEndCapture(s, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  for (int i = -200; i < iters; ++i) {
    const auto t0 = Clock::now();
    CK(cudaGraphLaunch(ge, s));
    CK(cudaStreamSynchronize(s));
    if (i >= 0) graph.push_back(us_since(t0));
  }
  bench::Req16 *hin, *din;
  bench::Resp16 *hout, *dout;
  CK(cudaMallocHost(&hin, 64));
  CK(cudaMallocHost(&hout, 64));
  CK(cudaMalloc(&din, 64));
  CK(cudaMalloc(&dout, 64));
  for (int i = -200; i < iters; ++i) {
    *hin = bench::Req16{static_cast<std::uint64_t>(i), 1};
    const auto t0 = Clock::now();
    CK(cudaMemcpyAsync(din, hin, sizeof *hin, cudaMemcpyHostToDevice, s));
    add_kernel<<<1, 1, 0, s>>>(din, dout);
    CK(cudaMemcpyAsync(hout, dout, sizeof *hout, cudaMemcpyDeviceToHost, s));
    CK(cudaStreamSynchronize(s));
    if (i >= 0) copy.push_back(us_since(t0));
    if (hout->b != 2) std::abort();
  }
  const Percentiles o = percentiles(ours), l = percentiles(launch), gr = percentiles(graph), c = percentiles(copy),
                    inj = percentiles(inject), pl = percentiles(plain);
  row("a. host->actor->host round trip (public API)", fmt("p50 %.2f us  p99 %.2f us", o.p50, o.p99));
  row("a. same, express line off (slot read across PCIe)", fmt("p50 %.2f us  p99 %.2f us", pl.p50, pl.p99));
  row("a. baseline: empty kernel launch + sync", fmt("p50 %.2f us  p99 %.2f us", l.p50, l.p99));
  row("a. baseline: 1-node CUDA graph launch + sync", fmt("p50 %.2f us  p99 %.2f us", gr.p50, gr.p99));
  row("a. baseline: copy in + kernel + copy out + sync", fmt("p50 %.2f us  p99 %.2f us", c.p50, c.p99));
  row("a. speed-up vs launch + sync (p50)", fmt("%.1fx", l.p50 / o.p50));
  row("d. command injection (host cost of one try_send)", fmt("p50 %.0f ns  p99 %.0f ns", inj.p50, inj.p99));
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  cudaStreamDestroy(s);
}

/// Streaming through the batch API: per kernel a producer and a consumer thread.
double bench_streaming(RingKernel& rt, int kernels, std::uint64_t per_kernel, bool batched,
                       TelemetryPipeline* telemetry = nullptr) {
  std::vector<KernelHandle> ks;
  for (int i = 0; i < kernels; ++i)
    ks.push_back(rt.launch("bench.echo16", LaunchOptions{.mode = KernelMode::Parallel, .block_size = 512,
                                                         .input_queue_capacity = 1u << 16,
                                                         .output_queue_capacity = 1u << 16,
                                                         .kernel_id = "stream" + std::to_string(i)})
                     .value());
  if (telemetry)
    for (auto& k : ks) telemetry->watch(k);
  std::atomic<int> go{0};
  std::vector<std::thread> threads;
  std::vector<std::uint64_t> checks(kernels, 0);
  for (int i = 0; i < kernels; ++i) {
    threads.emplace_back([&, i] {
      std::vector<bench::Req16> batch(4096);
      while (!go.load()) {
      }
      std::uint64_t sent = 0;
      while (sent < per_kernel) {
        if (batched) {
          const std::size_t want = std::min<std::uint64_t>(batch.size(), per_kernel - sent);
          for (std::size_t j = 0; j < want; ++j) batch[j] = bench::Req16{sent + j, sent + j};
          sent += ks[i].try_send_batch(std::span<const bench::Req16>(batch.data(), want));
        } else if (ks[i].try_send(bench::Req16{sent, sent}) == Status::Ok) {
          ++sent;
        }
      }
    });
    threads.emplace_back([&, i] {
      std::vector<bench::Resp16> out(4096);
      while (!go.load()) {
      }
      std::uint64_t got = 0, sum = 0;
      while (got < per_kernel) {
        const std::size_t n = ks[i].try_receive_batch(std::span<bench::Resp16>(out));
        for (std::size_t j = 0; j < n; ++j) sum += out[j].b;
        got += n;
      }
      checks[i] = sum;
    });
  }
  const auto t0 = Clock::now();
  go.store(1);
  for (auto& t : threads) t.join();
  const double secs = us_since(t0) * 1e-6;
  const std::uint64_t expect = per_kernel * (per_kernel - 1) / 2 + per_kernel;  // sum of (i + 1)
  for (int i = 0; i < kernels; ++i)
    if (checks[i] != expect) {
      std::fprintf(stderr, "streaming checksum mismatch on kernel %d\n", i);
      std::exit(1);
    }
  if (telemetry)
    for (auto& k : ks) telemetry->unwatch(k);
  for (auto& k : ks) k.terminate().value();
  return double(per_kernel) * kernels / secs;
}

void bench_k2k(RingKernel& rt, int hops, int pairs, std::uint64_t per_pair) {
  {  // latency, measured on the device; K2K express lines off in interleaved rounds
    std::vector<double> device_ns, host_us, send_ns, plain_ns;
    for (int round = 0; round < 4; ++round) {
      const bool express = round % 2 == 0;
      if (!express) setenv("RINGKERNEL_CUDA_EXPRESS", "0", 1);
      auto src = rt.launch("bench.k2k_source", LaunchOptions{.block_size = 32, .enable_k2k = true}).value();
      auto sink = rt.launch("bench.k2k_latency_sink", LaunchOptions{.block_size = 32, .enable_k2k = true}).value();
      unsetenv("RINGKERNEL_CUDA_EXPRESS");
      rt.connect(src, sink).value();
      for (int i = -500; i < hops / 2; ++i) {
        const auto t0 = Clock::now();
        src.send(bench::Req16{1, static_cast<std::uint64_t>(i)}).value();
        const bench::Resp16 r = sink.receive<bench::Resp16>(std::chrono::seconds(5)).value();
        const double us = us_since(t0);
        const bench::Resp16 cost = src.receive<bench::Resp16>(std::chrono::seconds(5)).value();
        if (i >= 0 && !express) plain_ns.push_back(double(r.a));
        if (i >= 0 && express) {
          device_ns.push_back(double(r.a));
          host_us.push_back(us);
          send_ns.push_back(double(cost.a));
        }
      }
      src.terminate().value();
      sink.terminate().value();
    }
    const Percentiles d = percentiles(device_ns), h = percentiles(host_us), sc = percentiles(send_ns),
                      pl = percentiles(plain_ns);
    row("c. K2K one hop, measured on the device", fmt("p50 %.0f ns  p99 %.0f ns", d.p50, d.p99));
    row("c. same, K2K express line off", fmt("p50 %.0f ns  p99 %.0f ns", pl.p50, pl.p99));
    row("c. K2K sender's cost of one send (device)", fmt("p50 %.0f ns  p99 %.0f ns", sc.p50, sc.p99));
    row("d. K2K host-observed round trip (host->A->B->host)", fmt("p50 %.2f us  p99 %.2f us", h.p50, h.p99));
  }
  {  // ping-pong timed by one clock: hop = round trip / 2
    auto ping = rt.launch("bench.k2k_pinger", LaunchOptions{.block_size = 32, .enable_k2k = true,
                                                            .k2k_delivery = K2KDelivery::Pull})
                    .value();
    auto pong = rt.launch("bench.k2k_ponger", LaunchOptions{.block_size = 32, .enable_k2k = true}).value();
    rt.connect(ping, pong).value();
    rt.connect(pong, ping).value();
    ping.call<bench::PingStats>(bench::Req16{1000, 0}, std::chrono::seconds(10)).value();  // warm-up
    const bench::PingStats r =
        ping.call<bench::PingStats>(bench::Req16{std::uint64_t(hops), 0}, std::chrono::seconds(20)).value();
    row("c. K2K ping-pong on the device, mean hop (round trip / 2)",
        fmt("%.0f ns  (%.0f lost)", double(r.round_trip_ns) / 2.0, double(r.lost)));
    row("c. K2K ping-pong: mean cost of one k2k_send", fmt("%.0f ns", double(r.send_ns)));
    row("c. SM clock during the ping-pong", fmt("%.0f MHz", double(r.sm_mhz)));
    ping.terminate().value();
    pong.terminate().value();
  }
  // Throughput: source/sink pairs; each source runs 256 sending threads, sending one
  // message per call, or 32 per call (k2k_send_batch); each sink 512 threads.
  struct Config {
    int pairs;
    bool batched;
  };
  const Config configs[] = {{pairs, false}, {pairs, true}, {2 * pairs, true}};
  int round = 0;
  for (const Config& cfg : configs) {
    const bool batched = cfg.batched;
    std::vector<KernelHandle> srcs, sinks;
    const std::string tag = std::to_string(round++) + "-";
    for (int p = 0; p < cfg.pairs; ++p) {
      srcs.push_back(rt.launch(batched ? "bench.k2k_batch_source" : "bench.k2k_source",
                               LaunchOptions{.mode = KernelMode::Parallel, .block_size = 256, .enable_k2k = true,
                                             .k2k_queue_capacity = 1u << 14, .kernel_id = "src" + tag + std::to_string(p)})
                         .value());
      sinks.push_back(rt.launch("bench.k2k_count_sink", LaunchOptions{.mode = KernelMode::Parallel, .block_size = 512,
                                                                      .enable_k2k = true,
                                                                      .kernel_id = "sink" + tag + std::to_string(p)})
                          .value());
      rt.connect(srcs.back(), sinks.back()).value();
    }
    const std::uint64_t per_thread = per_pair / 256;
    std::vector<bench::Req16> triggers(256);
    for (int t = 0; t < 256; ++t) triggers[t] = bench::Req16{per_thread, std::uint64_t(t) * per_thread};
    const auto t0 = Clock::now();
    for (auto& s : srcs) s.send_batch(std::span<const bench::Req16>(triggers)).value();
    for (auto& s : sinks)
      while (s.metrics().telemetry.raw.messages_processed < per_thread * 256) {
      }
    const double secs = us_since(t0) * 1e-6;
    row(("c. K2K throughput, " + std::to_string(cfg.pairs) + " kernel pairs, " +
         (batched ? "k2k_send_batch of 32" : "one message per send"))
            .c_str(),
        fmt("%.1f M msg/s", double(per_thread * 256 * cfg.pairs) / secs / 1e6));
    for (auto& k : srcs) k.terminate().value();
    for (auto& k : sinks) k.terminate().value();
  }
}

/// Publish -> delivery between two kernels: measured on the device (stamp at publish, read
/// in the subscriber's handler), with the subscriber served on the device, and the same
/// publish through the host broker (a pull-mode subscriber is one the device does not
/// serve) in the same run.
void bench_publish(RingKernel& rt, int iters) {
  Broker& b = rt.broker();
  const TopicId topic = b.topic<bench::Stamp>("bench/stamps").value();
  // Device delivery with the K2K express line, without it (RINGKERNEL_CUDA_EXPRESS=0 at
  // launch), then through the host broker.
  for (const int kind : {0, 1, 2}) {
    const bool device = kind != 2;
    const std::string tag = kind == 0 ? "dev" : kind == 1 ? "dev-plain" : "host";
    if (kind == 1) setenv("RINGKERNEL_CUDA_EXPRESS", "0", 1);
    auto pub = rt.launch("bench.stamp_publisher", LaunchOptions{.block_size = 32, .kernel_id = "publisher-" + tag}).value();
    LaunchOptions so{.block_size = 32, .kernel_id = "stamp_sink-" + tag};
    if (!device) so.k2k_delivery = K2KDelivery::Pull;
    auto sink = rt.launch("bench.k2k_latency_sink", so).value();
    unsetenv("RINGKERNEL_CUDA_EXPRESS");
    const SubscriptionId sub = b.subscribe_kernel("bench/stamps", sink).value();
    std::vector<double> ns;
    for (int i = -500; i < iters; ++i) {
      pub.send(bench::Req16{topic, static_cast<std::uint64_t>(i)}).value();
      const bench::Resp16 r = sink.receive<bench::Resp16>(std::chrono::seconds(5)).value();
      if (i >= 0) ns.push_back(double(r.a));
    }
    b.unsubscribe(sub).value();
    pub.terminate().value();
    sink.terminate().value();
    const Percentiles p = percentiles(ns);
    row(kind == 0   ? "g. publish -> delivery, kernel to kernel on the device"
        : kind == 1 ? "g. same, K2K express line off"
                    : "g. baseline: the same publish via the host broker",
        fmt("p50 %.0f ns  p99 %.0f ns", p.p50, p.p99));
  }
}

/// Actor pool: host-observed latency of creating / restarting an actor inside the running
/// kernel (spawn_actor / restart_actor return once the kernel acknowledged), and a message
/// round trip to a pool actor beside one to a plain kernel (the pool's poller also watches
/// the command word).
struct PoolTimes {
  std::vector<double> spawn, restart, destroy, msg;
};

void pool_round(KernelHandle& pool, int warm, int iters, PoolTimes& t) {
  auto& [spawn, restart, destroy, msg] = t;
  for (int i = -warm; i < iters; ++i) {
    auto t0 = Clock::now();
    const ActorRef a = pool.spawn_actor().value();
    const double s_us = us_since(t0);
    t0 = Clock::now();
    const ActorRef b = pool.restart_actor(a).value();
    const double r_us = us_since(t0);
    t0 = Clock::now();
    if (pool.try_send(bench::PoolReq{b.index, 0, 3}) != Status::Ok) std::abort();
    bench::Resp16 out{};
    while (pool.try_receive(out) != Status::Ok) {
    }
    const double m_us = us_since(t0);
    if (out.a != b.index || out.b != 3) {
      std::fprintf(stderr, "actor pool: wrong reply (actor %llu total %llu)\n", (unsigned long long)out.a,
                   (unsigned long long)out.b);
      std::exit(1);
    }
    t0 = Clock::now();
    pool.destroy_actor(b).value();
    const double d_us = us_since(t0);
    if (i >= 0) {
      spawn.push_back(s_us);
      restart.push_back(r_us);
      msg.push_back(m_us);
      destroy.push_back(d_us);
    }
  }
}

void bench_actor_pool(RingKernel& rt, int iters) {
  auto pool = rt.launch("bench.pool", LaunchOptions{.block_size = 32, .actor_slots = 1024}).value();
  PoolTimes t;
  pool_round(pool, 100, iters, t);
  pool.terminate().value();
  const Percentiles s = percentiles(t.spawn), r = percentiles(t.restart), d = percentiles(t.destroy),
                    m = percentiles(t.msg);
  row("e. actor pool: create an actor in a running kernel", fmt("p50 %.2f us  p99 %.2f us", s.p50, s.p99));
  row("e. actor pool: restart an actor (fresh State)", fmt("p50 %.2f us  p99 %.2f us", r.p50, r.p99));
  row("e. actor pool: destroy an actor", fmt("p50 %.2f us  p99 %.2f us", d.p50, d.p99));
  row("e. actor pool: message round trip to a pool actor", fmt("p50 %.2f us  p99 %.2f us", m.p50, m.p99));
}

/// Streaming with a TelemetryPipeline sampling every kernel each millisecond vs without
/// (the device-side TelemetryBuffer is always kept); order rotated, median of 6 each.
void bench_telemetry_cost(RingKernel& rt, int kernels, std::uint64_t per_kernel, int reps) {
  TelemetryPipeline tp({.interval = std::chrono::milliseconds(1)});
  tp.start().value();
  // `reps` rounds of each condition, the order rotated every round (a run's place in a
  // round moved the figures by 10-20 % on the lent VM); medians, and the median of the
  // per-round ratios. "No pipeline" runs with the pipeline's thread running but watching
  // nothing. A second pipeline sampling every 10 ms shows whether a cost scales with the
  // sampling rate.
  TelemetryPipeline slow_tp({.interval = std::chrono::milliseconds(10)});
  slow_tp.start().value();
  std::vector<double> off, on, slow, cost;
  for (int rep = 0; rep < reps; ++rep) {
    double r_off = 0, r_on = 0;
    for (int k = 0; k < 3; ++k) {
      switch ((rep + k) % 3) {
        case 0: off.push_back(r_off = bench_streaming(rt, kernels, per_kernel, true, nullptr)); break;
        case 1: on.push_back(r_on = bench_streaming(rt, kernels, per_kernel, true, &tp)); break;
        default: slow.push_back(bench_streaming(rt, kernels, per_kernel, true, &slow_tp)); break;
      }
    }
    cost.push_back((r_off - r_on) / r_off * 100.0);
  }
  tp.stop();
  slow_tp.stop();
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  };
  auto lowest = [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); };
  const std::string tag = "f. streaming, " + std::to_string(kernels) + " kernel(s), ";
  const std::string of = " (median of " + std::to_string(reps) + ", min %.1f)";
  row((tag + "pipeline sampling every 10 ms").c_str(), fmt(("%.1f M msg/s" + of).c_str(), median(slow) / 1e6, lowest(slow) / 1e6));
  row((tag + "no telemetry pipeline").c_str(), fmt(("%.1f M msg/s" + of).c_str(), median(off) / 1e6, lowest(off) / 1e6));
  row((tag + "pipeline sampling every 1 ms").c_str(), fmt(("%.1f M msg/s" + of).c_str(), median(on) / 1e6, lowest(on) / 1e6));
  row(("f. telemetry cost, " + std::to_string(kernels) + " kernel(s)").c_str(),
      fmt("%.1f %% of throughput (medians); per-round cost: median %.1f %%, range %.1f .. %.1f %%",
          (median(off) - median(on)) / median(off) * 100.0, median(cost), lowest(cost),
          *std::max_element(cost.begin(), cost.end())));
}

}  // namespace

/// m. Several devices: a KernelGroup streaming over 1 and over every device, a Pipe's round
/// trip across devices against the same pipe on one device, and the pipe's throughput.
void bench_multi_device(bool quick) {
  const std::uint32_t n = availability(Backend::Cuda).device_count;
  std::vector<std::uint32_t> devs;
  for (std::uint32_t i = 0; i < n; ++i) devs.push_back(i);
  if (n == 1) devs = {0, 0};  // two runtimes on the one GPU: the same code paths, no second device
  MultiGpuCoordinator c = MultiGpuCoordinator::builder().backend(Backend::Cuda).preferred_devices(devs).build().value();
  row("m. devices", n >= 2 ? fmt("%.0f GPUs", double(n)) : std::string("one GPU (two runtimes on it)"));
  const LaunchOptions par{.mode = KernelMode::Parallel, .block_size = 512, .input_queue_capacity = 1u << 16,
                          .output_queue_capacity = 1u << 16};
  auto stream = [&](std::vector<std::size_t> on, std::uint64_t total) {
    KernelGroup g = c.launch_group("bench.echo16", par, on).value();
    const std::size_t threads = on.size();
    std::atomic<int> go{0};
    std::atomic<std::uint64_t> received{0}, sum{0};
    std::vector<std::thread> ts;
    for (std::size_t t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        std::vector<bench::Req16> batch(4096);
        while (!go.load()) {
        }
        const std::uint64_t mine = total / threads, base = t * mine;
        for (std::uint64_t sent = 0; sent < mine;) {
          const std::size_t want = std::min<std::uint64_t>(batch.size(), mine - sent);
          for (std::size_t j = 0; j < want; ++j) batch[j] = bench::Req16{base + sent + j, base + sent + j};
          sent += g.send_batch(std::span<const bench::Req16>(batch.data(), want), std::chrono::seconds(10)).value();
        }
      });
      ts.emplace_back([&] {
        std::vector<bench::Resp16> out(4096);
        while (!go.load()) {
        }
        std::uint64_t local = 0;
        while (received.load(std::memory_order_relaxed) < total) {
          auto r = g.receive_batch(std::span<bench::Resp16>(out), std::chrono::milliseconds(50));
          if (!r) continue;
          for (std::size_t j = 0; j < *r; ++j) local += out[j].b;
          received.fetch_add(*r, std::memory_order_relaxed);
        }
        sum.fetch_add(local);
      });
    }
    const auto t0 = Clock::now();
    go.store(1);
    for (auto& t : ts) t.join();
    const double secs = us_since(t0) * 1e-6;
    const std::uint64_t all = total / threads * threads;
    if (received.load() != all || sum.load() != all * (all - 1) / 2 + all) {
      std::fprintf(stderr, "group streaming: %llu received, checksum mismatch\n",
                   static_cast<unsigned long long>(received.load()));
      std::exit(1);
    }
    std::string split;
    for (std::size_t i = 0; i < g.size(); ++i) split += (i ? " / " : "") + std::to_string(g.sent_to(i));
    g.terminate().value();
    return std::make_pair(double(all) / secs, split);
  };
  const std::uint64_t total = quick ? 4'000'000 : 40'000'000;
  std::vector<std::size_t> everyone;
  for (std::size_t i = 0; i < c.device_count(); ++i) everyone.push_back(i);
  const auto one = stream({0}, total / 2);
  const auto all = stream(everyone, total);
  row("m. KernelGroup streaming 16 B, batch API, 1 device (1+1 threads)", fmt("%.1f M msg/s", one.first / 1e6));
  row(("m. KernelGroup streaming 16 B, batch API, " + std::to_string(everyone.size()) + " devices").c_str(),
      fmt("%.1f M msg/s", all.first / 1e6) + " (per replica " + all.second + ")");

  auto pipe_round_trips = [&](std::size_t d0, std::size_t d1, int iters) {
    // Latency: one-warp actors, as in section a. The baseline forwards by hand in the
    // calling thread (receive from A, send to B): what a program does without a Pipe.
    std::vector<double> out, by_hand;
    {
      KernelHandle a = c.launch_on(d0, "bench.fwd16", LaunchOptions{.block_size = 32, .kernel_id = "lat.a"}).value();
      KernelHandle b = c.launch_on(d1, "bench.echo16", LaunchOptions{.block_size = 32, .kernel_id = "lat.b"}).value();
      for (int i = -1000; i < iters; ++i) {
        const auto t0 = Clock::now();
        if (a.try_send(bench::Req16{static_cast<std::uint64_t>(i), 1}) != Status::Ok) std::abort();
        bench::Req16 mid{};
        while (a.try_receive(mid) != Status::Ok) {
        }
        if (b.try_send(mid) != Status::Ok) std::abort();
        bench::Resp16 r{};
        while (b.try_receive(r) != Status::Ok) {
        }
        if (i >= 0) by_hand.push_back(us_since(t0));
        if (r.b != 3) std::abort();
      }
      Pipe p = pipe(a, b).value();
      for (int i = -1000; i < iters; ++i) {
        const auto t0 = Clock::now();
        if (a.try_send(bench::Req16{static_cast<std::uint64_t>(i), 1}) != Status::Ok) std::abort();
        bench::Resp16 r{};
        while (b.try_receive(r) != Status::Ok) {
        }
        if (i >= 0) out.push_back(us_since(t0));
        if (r.b != 3) std::abort();
      }
    }
    LaunchOptions o = par;
    o.block_size = 256;
    o.kernel_id = "pipe.a";
    KernelHandle a = c.launch_on(d0, "bench.fwd16", o).value();
    o.kernel_id = "pipe.b";
    KernelHandle b = c.launch_on(d1, "bench.echo16", o).value();
    Pipe p = pipe(a, b).value();
    // Throughput: a producer into a, a consumer out of b, the relay between.
    constexpr std::uint64_t kN = 2'000'000;
    const std::uint64_t per = quick ? kN / 10 : kN;
    std::thread prod([&] {
      std::vector<bench::Req16> batch(4096);
      for (std::uint64_t sent = 0; sent < per;) {
        const std::size_t want = std::min<std::uint64_t>(batch.size(), per - sent);
        for (std::size_t j = 0; j < want; ++j) batch[j] = bench::Req16{sent + j, 0};
        sent += a.try_send_batch(std::span<const bench::Req16>(batch.data(), want));
      }
    });
    const auto t0 = Clock::now();
    std::vector<bench::Resp16> rx(4096);
    std::uint64_t got = 0, next = 0;
    while (got < per) {
      const std::size_t m = b.try_receive_batch(std::span<bench::Resp16>(rx));
      for (std::size_t j = 0; j < m; ++j)
        if (rx[j].a != next++ || rx[j].b != 2) std::abort();  // in order, both stages ran
      got += m;
    }
    const double rate = double(per) / (us_since(t0) * 1e-6);
    prod.join();
    return std::make_tuple(percentiles(out), rate, percentiles(by_hand));
  };
  const int iters = quick ? 2000 : 20000;
  const auto cross = pipe_round_trips(0, 1, iters);
  const auto same = pipe_round_trips(0, 0, iters);
  row("m. host -> A (dev 0) -> Pipe -> B (dev 1) -> host, round trip",
      fmt("p50 %.2f us  p99 %.2f us", std::get<0>(cross).p50, std::get<0>(cross).p99));
  row("m. baseline: the same, forwarded by hand in the caller",
      fmt("p50 %.2f us  p99 %.2f us", std::get<2>(cross).p50, std::get<2>(cross).p99));
  row("m. baseline: Pipe with A and B on device 0",
      fmt("p50 %.2f us  p99 %.2f us", std::get<0>(same).p50, std::get<0>(same).p99));
  row("m. Pipe throughput dev 0 -> dev 1 (in order, checked)", fmt("%.1f M msg/s", std::get<1>(cross) / 1e6));
  row("m. baseline: Pipe throughput on device 0", fmt("%.1f M msg/s", std::get<1>(same) / 1e6));
}

/// s. A simulation in a persistent actor: heat-equation steps over a grid in device memory,
/// many steps per message, against one kernel launch per step (synchronised each step, and
/// queued on a stream with one synchronisation at the end). Both results are compared.
void bench_stencil(RingKernel& rt, bool quick) {
  auto mem = rt.device_memory().value();
  for (const std::uint32_t n : {64u, 256u}) {
    const std::uint32_t steps = quick ? 200 : (n == 64 ? 20000 : 2000);
    std::vector<float> init(std::size_t{n} * n, 0.0f);
    for (std::uint32_t y = 0; y < n; ++y) init[std::size_t{y} * n] = 100.0f;
    auto bytes = std::as_bytes(std::span(init));
    auto a = mem->allocate(bytes.size()).value(), b = mem->allocate(bytes.size()).value();
    auto c = mem->allocate(bytes.size()).value(), d = mem->allocate(bytes.size()).value();
    auto addr = [](const std::unique_ptr<GpuBuffer>& g) { return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(g->device_ptr())); };
    // The actor: 512 threads, every step in one message.
    const char* env_threads = std::getenv("RK_HEAT_THREADS");  // the actor's block size (default 512)
    const std::uint32_t threads = env_threads ? static_cast<std::uint32_t>(std::atoi(env_threads)) : 512u;
    KernelHandle k = rt.launch("bench.heat", LaunchOptions{.block_size = threads, .kernel_id = "heat"}).value();
    if (!a->copy_from_host(bytes) || !b->copy_from_host(bytes)) std::abort();
    (void)k.call<bench::Resp16>(bench::HeatRun{addr(a), addr(b), n, n, 2, 0.2f}).value();  // warm (even: back in a)
    if (!a->copy_from_host(bytes)) std::abort();
    const auto t0 = Clock::now();
    const bench::Resp16 r = k.call<bench::Resp16>(bench::HeatRun{addr(a), addr(b), n, n, steps, 0.2f}, std::chrono::seconds(60)).value();
    const double actor_us = us_since(t0);
    if (auto t = k.terminate(); !t) {
      const KernelStatus st = k.status();
      std::fprintf(stderr, "heat %ux%u, %u threads: result in %s after %.0f us; terminate: %s (processed %llu)\n", n, n,
                   threads, r.a == 0 ? "a" : "b", actor_us, t.error().what().c_str(),
                   static_cast<unsigned long long>(st.messages_processed));
      std::exit(1);
    }
    // Baselines: the same steps as grid-wide kernels.
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    auto run_launches = [&](bool sync_each) {
      if (!c->copy_from_host(bytes) || !d->copy_from_host(bytes)) std::abort();
      auto* in = static_cast<float*>(c->device_ptr());
      auto* out = static_cast<float*>(d->device_ptr());
      const auto t = Clock::now();
      for (std::uint32_t i = 0; i < steps; ++i) {
        heat_step_kernel<<<(n * n + 255) / 256, 256, 0, s>>>(in, out, n, n, 0.2f);
        if (sync_each) CK(cudaStreamSynchronize(s));
        std::swap(in, out);
      }
      CK(cudaStreamSynchronize(s));
      return us_since(t);
    };
    const double each_us = run_launches(true);
    const double queued_us = run_launches(false);
    cudaStreamDestroy(s);
    // Same answer (within float rounding: nvcc may fuse the stencil's multiply-adds).
    std::vector<float> x(init.size()), y(init.size());
    if (!(r.a == 0 ? a : b)->copy_to_host(std::as_writable_bytes(std::span(x)))) std::abort();
    if (!(steps % 2 == 0 ? c : d)->copy_to_host(std::as_writable_bytes(std::span(y)))) std::abort();
    double worst = 0;
    for (std::size_t i = 0; i < x.size(); ++i) worst = std::max(worst, double(std::abs(x[i] - y[i])));
    if (worst > 1e-2) {
      std::fprintf(stderr, "stencil: actor and kernels disagree by %g\n", worst);
      std::exit(1);
    }
    const std::string g = std::to_string(n) + "x" + std::to_string(n);
    row(("s. heat " + g + ", actor (" + std::to_string(threads) + " threads), " + std::to_string(steps) +
         " steps in one message").c_str(),
        fmt("%.2f us/step", actor_us / steps));
    row(("s. baseline: heat " + g + ", a kernel launch + sync per step").c_str(), fmt("%.2f us/step", each_us / steps));
    row(("s. baseline: heat " + g + ", kernel launches queued, one sync").c_str(),
        fmt("%.2f us/step (results agree within %.1e)", queued_us / steps, worst));
  }
}

int main(int argc, char** argv) {
  // --quick: fewer iterations; --only=LETTERS: the sections to run (a b c e f g m s; default all).
  bool quick = false;
  std::string only = "abcefgms";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") quick = true;
    else if (arg.rfind("--only=", 0) == 0) only = arg.substr(7);
    else {
      std::fprintf(stderr, "usage: cuda_bench [--quick] [--only=abcefgms]\n");
      return 2;
    }
  }
  auto want = [&](char c) { return only.find(c) != std::string::npos; };
  const BackendAvailability a = availability(Backend::Cuda);
  if (!a.available) {
    std::printf("CUDA backend not available: %s\n", a.reason.c_str());
    return 0;
  }
  std::printf("device: %s\n", a.device.c_str());
  RingKernel rt = RingKernel::builder().backend(Backend::Cuda).build().value();
  {
    unsigned long long* step = nullptr;
    CK(cudaMallocHost(&step, sizeof *step));
    timer_step<<<1, 1>>>(step);
    CK(cudaDeviceSynchronize());
    row("%globaltimer resolution (smallest step seen)", fmt("%.0f ns", double(*step)));
    cudaFreeHost(step);
  }
  if (want('a')) bench_one_message(rt, quick ? 2000 : 20000);
  if (want('b')) {
    const std::uint64_t n = quick ? 2'000'000 : 20'000'000;
    for (int k : {1, 2, 4, 8}) {
      const double rate = bench_streaming(rt, k, n / std::uint64_t(k) * std::uint64_t(k) / k, true);
      row(("b. streaming 16 B, batch API, " + std::to_string(k) + " kernel(s)").c_str(), fmt("%.1f M msg/s", rate / 1e6));
    }
    row("b. streaming 16 B, one message per send, 1 kernel",
        fmt("%.1f M msg/s", bench_streaming(rt, 1, quick ? 200'000 : 2'000'000, false) / 1e6));
    row("b. streaming 16 B, one message per send, 4 kernels",
        fmt("%.1f M msg/s", bench_streaming(rt, 4, quick ? 200'000 : 1'000'000, false) / 1e6));
  }
  if (want('c')) bench_k2k(rt, quick ? 2000 : 20000, 8, quick ? 1u << 20 : 1u << 23);
  if (want('e')) bench_actor_pool(rt, quick ? 1000 : 5000);
  if (want('f')) {
    bench_telemetry_cost(rt, 4, quick ? 2'000'000 : 20'000'000, 6);
    bench_telemetry_cost(rt, 1, quick ? 1'000'000 : 10'000'000, 9);
  }
  if (want('g')) bench_publish(rt, quick ? 2000 : 20000);
  if (want('m')) bench_multi_device(quick);
  if (want('s')) bench_stencil(rt, quick);
  std::printf("\n==== summary (%s) ====\n", a.device.c_str());
  for (const auto& r : rows) std::printf("%s\n", r.c_str());
  return 0;
}
