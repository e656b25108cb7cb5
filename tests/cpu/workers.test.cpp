// LaunchOptions::cpu_worker: kernels sharing one OS thread on the CPU backend.
#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <ringkernel/ringkernel.hpp>

#include "../support/cpu_time.hpp"

using namespace ringkernel;
using namespace std::chrono_literals;

namespace wtest {
struct Who {
  std::uint64_t seq;
  std::uint64_t reserved;
};
RK_MESSAGE(Who, "wtest.Who", seq, reserved);
struct Tag {
  std::uint64_t seq;
  std::uint64_t thread;  ///< hash of the OS thread that ran the handler
};
RK_MESSAGE(Tag, "wtest.Tag", seq, thread);

/// Answers with the OS thread it runs on (CPU backend only).
struct WhoAmI {
  using Request = Who;
  using Response = Tag;
  bool operator()(RingContext&, NoState&, const Who& in, Tag& out) const {
    out = Tag{in.seq, static_cast<std::uint64_t>(std::hash<std::thread::id>{}(std::this_thread::get_id()))};
    return true;
  }
};

enum VolleyOp : std::uint32_t { kServe = 0, kBall = 1 };
struct Volley {
  std::uint32_t op;
  std::uint32_t reserved;
  std::uint64_t left;  ///< balls still to play
};
RK_MESSAGE(Volley, "wtest.Volley", op, reserved, left);
struct VolleyDone {
  std::uint64_t balls;
  std::uint64_t reserved;
};
RK_MESSAGE(VolleyDone, "wtest.VolleyDone", balls, reserved);
struct VolleyState {
  std::uint64_t balls;
};
RK_GPU_TYPE(VolleyState, balls);

/// Event-driven: the host serves, each returning ball goes out again until none is left.
struct Server {
  using Request = Volley;
  using Response = VolleyDone;
  using State = VolleyState;
  bool operator()(RingContext& ctx, VolleyState& s, const Volley& in, VolleyDone& out) const {
    if (in.op == kServe) s.balls = 0;
    else ++s.balls;
    if (in.left == 0) {
      out = VolleyDone{s.balls, 0};
      return true;
    }
    if (ctx.k2k_send(ctx.k2k_route(0), Volley{kBall, 0, in.left - 1}) == Status::Ok) return false;
    out = VolleyDone{~std::uint64_t{0}, 0};  // the ball could not go out: say so
    return true;
  }
};
/// Returns every ball.
struct Returner {
  using Request = Volley;
  using Response = void;
  void operator()(RingContext& ctx, NoState&, const Volley& in) const {
    (void)ctx.k2k_send(ctx.k2k_route(0), in);
  }
};
}  // namespace wtest

RK_KERNEL("wtest.who", wtest::WhoAmI);
RK_KERNEL("wtest.server", wtest::Server);
RK_KERNEL("wtest.returner", wtest::Returner);

namespace {
LaunchOptions on(const std::string& worker, const std::string& id, bool k2k = false) {
  LaunchOptions o{.block_size = 1, .enable_k2k = k2k};
  o.kernel_id = id;
  o.cpu_worker = worker;
  return o;
}
std::string numbered(const char* prefix, int i) {
  std::string s(prefix);
  s += std::to_string(i);
  return s;
}
std::uint64_t thread_of(KernelHandle& k, std::uint64_t seq) {
  auto r = k.call<wtest::Tag>(wtest::Who{seq, 0}, 5s);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().what());
  if (!r) return 0;
  EXPECT_EQ(r->seq, seq);
  return r->thread;
}
}  // namespace

TEST(CpuWorkers, kernels_naming_one_worker_share_its_thread_and_each_answers) {
  RingKernel rt = RingKernel::builder().backend(Backend::Cpu).build().value();
  std::vector<KernelHandle> ks;
  for (int i = 0; i < 4; ++i) ks.push_back(rt.launch("wtest.who", on("w", numbered("who", i))).value());
  KernelHandle alone = rt.launch("wtest.who", on("", "alone")).value();
  const std::uint64_t t0 = thread_of(ks[0], 0);
  for (std::uint64_t round = 0; round < 100; ++round)
    for (auto& k : ks) EXPECT_EQ(thread_of(k, round), t0);
  EXPECT_NE(thread_of(alone, 1), t0);
}

TEST(CpuWorkers, k2k_between_kernels_of_one_worker_plays_every_ball) {
  RingKernel rt = RingKernel::builder().backend(Backend::Cpu).build().value();
  KernelHandle server = rt.launch("wtest.server", on("pair", "server", true)).value();
  KernelHandle returner = rt.launch("wtest.returner", on("pair", "returner", true)).value();
  ASSERT_TRUE(rt.connect(server, returner).ok());
  ASSERT_TRUE(rt.connect(returner, server).ok());
  for (std::uint64_t n : {1ull, 1000ull, 20000ull}) {
    auto done = server.call<wtest::VolleyDone>(wtest::Volley{wtest::kServe, 0, n}, 20s);
    ASSERT_TRUE(done.ok()) << done.error().what();
    EXPECT_EQ(done->balls, n);
  }
}

TEST(CpuWorkers, a_kernel_leaving_or_pausing_does_not_stop_the_others_of_its_worker) {
  RingKernel rt = RingKernel::builder().backend(Backend::Cpu).build().value();
  KernelHandle a = rt.launch("wtest.who", on("w", "a")).value();
  KernelHandle b = rt.launch("wtest.who", on("w", "b")).value();
  const std::uint64_t t = thread_of(a, 1);
  // Deactivated, a keeps its queued message; b goes on answering.
  ASSERT_TRUE(a.deactivate().ok());
  ASSERT_TRUE(a.send(wtest::Who{7, 0}).ok());
  EXPECT_EQ(thread_of(b, 2), t);
  wtest::Tag none{};
  EXPECT_EQ(a.try_receive(none), Status::QueueEmpty);
  ASSERT_TRUE(a.activate().ok());
  auto r = a.receive<wtest::Tag>(5s);
  ASSERT_TRUE(r.ok()) << r.error().what();
  EXPECT_EQ(r->seq, 7u);
  // a leaves; b stays; a newcomer joins the same thread.
  ASSERT_TRUE(a.terminate().ok());
  EXPECT_EQ(thread_of(b, 3), t);
  KernelHandle c = rt.launch("wtest.who", on("w", "c")).value();
  EXPECT_EQ(thread_of(c, 4), t);
  EXPECT_EQ(thread_of(b, 5), t);
}

TEST(CpuWorkers, an_idle_shared_worker_parks) {
  RingKernel rt = RingKernel::builder().backend(Backend::Cpu).build().value();
  std::vector<KernelHandle> ks;
  for (int i = 0; i < 16; ++i) ks.push_back(rt.launch("wtest.who", on("idle", numbered("k", i))).value());
  for (std::uint64_t i = 0; i < ks.size(); ++i) (void)thread_of(ks[i], i);
  std::this_thread::sleep_for(200ms);  // past the spin phase
  const double c0 = rktest::process_cpu_seconds();
  std::this_thread::sleep_for(500ms);
  const double used = rktest::process_cpu_seconds() - c0;
  EXPECT_LT(used, 0.1) << "an idle shared worker used " << used << " s of CPU in 0.5 s";
  EXPECT_EQ(thread_of(ks[3], 99), thread_of(ks[0], 98));  // and wakes for work
}

TEST(CpuWorkers, a_host_thread_sharing_the_kernels_cpu_does_not_spin_it_out) {
  // Pinned to one CPU before the launch, the kernel's thread inherits the pin: host and
  // kernel share that CPU for good (as in a container limited to one CPU, or for a while
  // after a wake-up placed the kernel on the waker's CPU). A host that spun on the reply
  // would hold the CPU the kernel needs until the time slice ends: ~64-94 us per round
  // trip here before the waits yielded to each other; now a few microseconds.
  cpu_set_t before;
  ASSERT_EQ(sched_getaffinity(0, sizeof before, &before), 0);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  {
    RingKernel rt = RingKernel::builder().backend(Backend::Cpu).build().value();
    KernelHandle k = rt.launch("wtest.who", on("", "pinned")).value();
    (void)thread_of(k, 0);
    // The median round trip, not the total: another process on this CPU (a build, say)
    // takes whole time slices now and then, which stretches a few round trips; spinning
    // each other out stretched every one of them.
    constexpr int kRounds = 2000;
    std::vector<double> us;
    us.reserve(kRounds);
    for (int i = 1; i <= kRounds; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      ASSERT_NE(thread_of(k, static_cast<std::uint64_t>(i)), 0u);
      us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    std::nth_element(us.begin(), us.begin() + kRounds / 2, us.end());
    const double median = us[kRounds / 2];
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
    (void)median;  // sanitizers slow every round trip; the check is for the optimised build
#else
    EXPECT_LT(median, 30.0) << "median round trip on one shared CPU: " << median << " us";
#endif
  }
  ASSERT_EQ(sched_setaffinity(0, sizeof before, &before), 0);
}

TEST(CpuStreamHold, a_held_stream_arrives_whole_and_in_order_and_a_request_alone_is_not_held) {
  // A long hold makes any wrongly held message visible: each would cost 100 ms.
  RingKernel rt = RingKernel::builder().backend(Backend::Cpu).build().value();
  LaunchOptions o = on("", "held");
  o.input_queue_capacity = 4096;
  o.output_queue_capacity = 4096;
  o.cpu_stream_hold = 100ms;
  KernelHandle k = rt.launch("wtest.who", o).value();
  constexpr std::uint64_t kStream = 3000;
  const auto t0 = std::chrono::steady_clock::now();
  for (std::uint64_t i = 0; i < kStream; ++i) ASSERT_TRUE(k.send(wtest::Who{i, 0}).ok());
  for (std::uint64_t i = 0; i < kStream; ++i) {
    auto r = k.receive<wtest::Tag>(5s);
    ASSERT_TRUE(r.ok()) << r.error().what();
    ASSERT_EQ(r->seq, i);
  }
  // Held for at most a few holds: the stream comes in batches, and a full one is not held.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  // Request / response is not a stream: the next request only comes after the response.
  constexpr int kCalls = 50;
  const auto t1 = std::chrono::steady_clock::now();
  for (int i = 0; i < kCalls; ++i) ASSERT_NE(thread_of(k, kStream + static_cast<std::uint64_t>(i)), 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - t1, 2500ms) << "request/response calls were held";
}
