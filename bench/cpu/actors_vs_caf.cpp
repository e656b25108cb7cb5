// CPU-backend actors against CAF (C++ Actor Framework), in the same process:
//
//  * ping-pong — round trip host -> actor -> host, one message each way, per-round-trip
//    latency (p50/p99). ringkernel: KernelHandle::send + receive (and call, the request/
//    response form) to an actor-mode kernel with block_size 1. CAF: a scoped_actor on the
//    main thread does request(...).receive(...) to an event-based actor — the same shape
//    (a thread outside the runtime talking to an actor the runtime schedules). Also the
//    Savina form, two event-based actors ping-ponging inside CAF's scheduler, against ours:
//    two actor kernels ping-ponging over K2K, each round trip timed in the pinger. Every run
//    starts with 2,000 unrecorded round trips; an extra "after idle" run measures the first
//    5,000 round trips after 300 ms without traffic (ringkernel's kernel thread has parked,
//    CAF's workers have gone to sleep).
//  * counting (Savina "counting") — N increments sent to a counter actor, then a query for
//    the total, which is checked. ringkernel: send_batch (chunks of 256) or one send per
//    message, then a take request and receive. CAF: the scoped_actor sends N increments and
//    requests the total, and the Savina form with a producer actor.
//
// CAF runs in five scheduler configurations (work-stealing with its default thread count,
// 1 and 2 threads; work-sharing with 2 threads and the default), a fresh actor_system for
// each; the summary takes CAF's best configuration per figure as the baseline. Variants are interleaved repetition by
// repetition; each figure is the median over repetitions with min..max.
#include <caf/all.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "../harness.hpp"
#include "bench_kernels.hpp"

namespace {

using rkbench::Clock;
namespace rk = ringkernel;

constexpr std::uint32_t kCountChunk = 256;  // messages per send_batch call
constexpr std::uint64_t kWarmRounds = 2'000;  // unrecorded round trips before each ping-pong run
constexpr auto kIdle = std::chrono::milliseconds(300);  // idle time before the "after idle" runs

double micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

/// Per-round-trip samples of one run, reduced to (p50, p99) in microseconds.
struct Latency {
  double p50 = 0, p99 = 0;
};
Latency latency_of(std::vector<double>& us) {
  std::sort(us.begin(), us.end());
  return {rkbench::quantile(us, 0.50), rkbench::quantile(us, 0.99)};
}

/// All repetitions of one variant.
struct Figures {
  std::string label;
  std::vector<double> p50, p99, rate;
};
std::map<std::string, Figures> results;  // key -> figures, filled in the order keys are met
std::vector<std::string> order;

Figures& fig(const std::string& key, const std::string& label) {
  auto [it, fresh] = results.try_emplace(key);
  if (fresh) {
    it->second.label = label;
    order.push_back(key);
  }
  return it->second;
}

// =========================================================================================
// ringkernel
// =========================================================================================

/// `warm` round trips first, not recorded (the same for every ping-pong variant), then
/// `rounds` recorded ones.
Latency rk_ping_pong(rk::KernelHandle& k, std::uint64_t warm, std::uint64_t rounds, std::vector<double>& us) {
  us.clear();
  for (std::uint64_t i = 0; i < warm + rounds; ++i) {
    const auto t0 = Clock::now();
    if (auto s = k.send(rkbench::Ping{i, i}); !s) rkbench::fail("rk send: " + s.error().what());
    auto r = k.receive<rkbench::Pong>();
    const auto t1 = Clock::now();
    if (!r) rkbench::fail("rk receive: " + r.error().what());
    if (r->seq != i || r->value != i + 1) rkbench::fail("rk ping-pong: wrong pong");
    if (i >= warm) us.push_back(micros(t1 - t0));
  }
  return latency_of(us);
}

Latency rk_call(rk::KernelHandle& k, std::uint64_t warm, std::uint64_t rounds, std::vector<double>& us) {
  us.clear();
  for (std::uint64_t i = 0; i < warm + rounds; ++i) {
    const auto t0 = Clock::now();
    auto r = k.call<rkbench::Pong>(rkbench::Ping{i, i});
    const auto t1 = Clock::now();
    if (!r) rkbench::fail("rk call: " + r.error().what());
    if (r->seq != i || r->value != i + 1) rkbench::fail("rk call: wrong pong");
    if (i >= warm) us.push_back(micros(t1 - t0));
  }
  return latency_of(us);
}

/// Savina's form: two actor kernels ping-pong over K2K; the pinger times each round trip.
Latency rk_actor_pair(rk::KernelHandle& pinger, std::uint64_t warm, std::uint64_t rounds) {
  if (warm) (void)pinger.call<rkbench::PairResult>(rkbench::PairRun{warm, 0}, std::chrono::seconds(60));
  auto r = pinger.call<rkbench::PairResult>(rkbench::PairRun{rounds, 0}, std::chrono::seconds(60));
  if (!r) rkbench::fail("rk actor pair: " + r.error().what());
  if (r->lost != 0) rkbench::fail("rk actor pair: pongs lost");
  return {double(r->p50_ns) * 1e-3, double(r->p99_ns) * 1e-3};
}

/// The event-driven pair on one worker thread: `rounds` balls, each round trip timed by the pinger.
Latency rk_volley(rk::KernelHandle& pinger, std::uint64_t warm, std::uint64_t rounds) {
  if (warm) (void)pinger.call<rkbench::PairResult>(rkbench::Volley{rkbench::kServe, 0, warm, 0, 0}, std::chrono::seconds(60));
  auto r = pinger.call<rkbench::PairResult>(rkbench::Volley{rkbench::kServe, 0, rounds, 0, 0}, std::chrono::seconds(60));
  if (!r) rkbench::fail("rk volley: " + r.error().what());
  if (r->lost != 0) rkbench::fail("rk volley: a ball could not be sent");
  return {double(r->p50_ns) * 1e-3, double(r->p99_ns) * 1e-3};
}

/// Returns messages per second (the N increments plus the take, over the whole exchange).
double rk_count(rk::KernelHandle& k, std::uint64_t n, bool batched) {
  std::vector<rkbench::CountMsg> chunk(kCountChunk, rkbench::CountMsg{rkbench::kIncrement, 0, 1});
  const auto t0 = Clock::now();
  if (batched) {
    for (std::uint64_t sent = 0; sent < n;) {
      const auto m = static_cast<std::size_t>(std::min<std::uint64_t>(kCountChunk, n - sent));
      auto r = k.send_batch(std::span<const rkbench::CountMsg>(chunk.data(), m));
      if (!r || *r != m) rkbench::fail("rk send_batch failed");
      sent += m;
    }
  } else {
    for (std::uint64_t i = 0; i < n; ++i)
      if (auto s = k.send(rkbench::CountMsg{rkbench::kIncrement, 0, 1}); !s) rkbench::fail("rk send: " + s.error().what());
  }
  if (auto s = k.send(rkbench::CountMsg{rkbench::kTake, 0, 0}); !s) rkbench::fail("rk send take: " + s.error().what());
  auto total = k.receive<rkbench::CountTotal>(std::chrono::seconds(60));
  const double secs = rkbench::seconds_since(t0);
  if (!total) rkbench::fail("rk receive total: " + total.error().what());
  if (total->total != n || total->increments != n) rkbench::fail("rk counting: wrong total");
  return static_cast<double>(n + 1) / secs;
}

// =========================================================================================
// CAF 0.17
// =========================================================================================

using ping_atom = caf::atom_constant<caf::atom("ping")>;
using pong_atom = caf::atom_constant<caf::atom("pong")>;
using start_atom = caf::atom_constant<caf::atom("start")>;
using inc_atom = caf::atom_constant<caf::atom("inc")>;
using take_atom = caf::atom_constant<caf::atom("take")>;

/// The echo actor: answers each ping to its sender (a response to a request, or a plain
/// message back to an actor that used send).
caf::behavior caf_echo(caf::event_based_actor*) {
  return {
      [](ping_atom, std::uint64_t seq, std::uint64_t value) { return caf::make_message(pong_atom::value, seq, value + 1); },
  };
}

struct PingerState {
  caf::actor echo;
  std::vector<double>* samples = nullptr;
  std::uint64_t rounds = 0, seq = 0, errors = 0;
  Clock::time_point t0;
  caf::response_promise done;
};

/// Savina ping: sends a ping, times the round trip when the pong arrives, sends the next.
caf::behavior caf_pinger(caf::stateful_actor<PingerState>* self, caf::actor echo, std::vector<double>* samples) {
  self->state.echo = std::move(echo);
  self->state.samples = samples;
  return {
      [=](start_atom, std::uint64_t rounds) {
        auto& s = self->state;
        s.rounds = rounds;
        s.seq = 0;
        s.errors = 0;
        s.samples->clear();
        s.done = self->make_response_promise();
        s.t0 = Clock::now();
        self->send(s.echo, ping_atom::value, s.seq, s.seq);
        return s.done;
      },
      [=](pong_atom, std::uint64_t seq, std::uint64_t value) {
        auto& s = self->state;
        const auto t1 = Clock::now();
        s.samples->push_back(micros(t1 - s.t0));
        s.errors += seq != s.seq || value != seq + 1;
        if (++s.seq == s.rounds) {
          s.done.deliver(s.errors);
          return;
        }
        s.t0 = Clock::now();
        self->send(s.echo, ping_atom::value, s.seq, s.seq);
      },
  };
}

struct CounterState {
  std::uint64_t total = 0, increments = 0;
};

/// Savina counting actor.
caf::behavior caf_counter(caf::stateful_actor<CounterState>* self) {
  return {
      [=](inc_atom, std::uint64_t v) {
        self->state.total += v;
        ++self->state.increments;
      },
      [=](take_atom) {
        auto reply = caf::make_message(self->state.total, self->state.increments);
        self->state = CounterState{};
        return reply;
      },
  };
}

/// Savina producer: sends N increments, then asks for the total and forwards it.
caf::behavior caf_producer(caf::event_based_actor* self, caf::actor counter) {
  return {
      [=](start_atom, std::uint64_t n) {
        for (std::uint64_t i = 0; i < n; ++i) self->send(counter, inc_atom::value, std::uint64_t{1});
        auto rp = self->make_response_promise();
        self->request(counter, caf::infinite, take_atom::value).then([=](std::uint64_t total, std::uint64_t incs) mutable {
          rp.deliver(total, incs);
        });
        return rp;
      },
  };
}

Latency caf_scoped_ping_pong(caf::actor_system& sys, const caf::actor& echo, std::uint64_t warm, std::uint64_t rounds,
                             std::vector<double>& us) {
  caf::scoped_actor self{sys};
  us.clear();
  for (std::uint64_t i = 0; i < warm + rounds; ++i) {
    const auto t0 = Clock::now();
    bool ok = false;
    self->request(echo, caf::infinite, ping_atom::value, i, i)
        .receive([&](pong_atom, std::uint64_t seq, std::uint64_t value) { ok = seq == i && value == i + 1; },
                 [&](caf::error& e) { rkbench::fail("caf request: " + sys.render(e)); });
    const auto t1 = Clock::now();
    if (!ok) rkbench::fail("caf ping-pong: wrong pong");
    if (i >= warm) us.push_back(micros(t1 - t0));
  }
  return latency_of(us);
}

Latency caf_actor_ping_pong(caf::actor_system& sys, const caf::actor& echo, std::uint64_t warm, std::uint64_t rounds,
                            std::vector<double>& us) {
  us.reserve(std::max(warm, rounds));
  auto pinger = sys.spawn(caf_pinger, echo, &us);
  caf::scoped_actor self{sys};
  for (std::uint64_t n : {warm, rounds}) {  // the first run warms up and is discarded
    if (n == 0) continue;
    std::uint64_t errors = 1;
    self->request(pinger, caf::infinite, start_atom::value, n)
        .receive([&](std::uint64_t e) { errors = e; }, [&](caf::error& e) { rkbench::fail("caf pinger: " + sys.render(e)); });
    if (errors != 0 || us.size() != n) rkbench::fail("caf actor ping-pong: wrong pongs");
  }
  self->send_exit(pinger, caf::exit_reason::user_shutdown);
  return latency_of(us);
}

double caf_scoped_count(caf::actor_system& sys, const caf::actor& counter, std::uint64_t n) {
  caf::scoped_actor self{sys};
  const auto t0 = Clock::now();
  for (std::uint64_t i = 0; i < n; ++i) self->send(counter, inc_atom::value, std::uint64_t{1});
  std::uint64_t total = 0, incs = 0;
  self->request(counter, caf::infinite, take_atom::value)
      .receive([&](std::uint64_t t, std::uint64_t c) { total = t, incs = c; },
               [&](caf::error& e) { rkbench::fail("caf take: " + sys.render(e)); });
  const double secs = rkbench::seconds_since(t0);
  if (total != n || incs != n) rkbench::fail("caf counting: wrong total");
  return static_cast<double>(n + 1) / secs;
}

double caf_actor_count(caf::actor_system& sys, const caf::actor& counter, std::uint64_t n) {
  auto producer = sys.spawn(caf_producer, counter);
  caf::scoped_actor self{sys};
  std::uint64_t total = 0, incs = 0;
  const auto t0 = Clock::now();
  self->request(producer, caf::infinite, start_atom::value, n)
      .receive([&](std::uint64_t t, std::uint64_t c) { total = t, incs = c; },
               [&](caf::error& e) { rkbench::fail("caf producer: " + sys.render(e)); });
  const double secs = rkbench::seconds_since(t0);
  self->send_exit(producer, caf::exit_reason::user_shutdown);
  if (total != n || incs != n) rkbench::fail("caf Savina counting: wrong total");
  return static_cast<double>(n + 1) / secs;
}

}  // namespace

int main(int argc, char** argv) {
  const auto opt = rkbench::Options::parse(argc, argv, 7);
  const std::uint64_t rounds = opt.count(20'000);
  const std::uint64_t count_n = opt.count(1'000'000);
  const std::uint64_t warm_rounds = std::min<std::uint64_t>(rounds, kWarmRounds);
  const std::uint64_t idle_rounds = std::min<std::uint64_t>(rounds, 5'000);
  // CAF scheduler configurations tried; the report's baseline is CAF's best one per figure.
  struct CafConfig {
    const char* policy;   // "stealing" (CAF's default) or "sharing"
    std::size_t threads;  // scheduler.max-threads; 0 = CAF's default (max(4, cores))
  };
  const CafConfig caf_configs[] = {{"stealing", 0}, {"stealing", 1}, {"stealing", 2}, {"sharing", 2}, {"sharing", 0}};

  auto runtime = rk::RingKernel::builder().backend(rk::Backend::Cpu).build();
  if (!runtime) rkbench::fail(runtime.error().what());
  auto echo = runtime->launch("bench.echo", rk::LaunchOptions{.block_size = 1});
  auto counter = runtime->launch("bench.counter", rk::LaunchOptions{.block_size = 1, .input_queue_capacity = 4096});
  const rk::LaunchOptions pair_opts{.block_size = 1, .enable_k2k = true};
  rk::LaunchOptions pinger_opts = pair_opts;
  pinger_opts.k2k_delivery = rk::K2KDelivery::Pull;
  auto pinger = runtime->launch("bench.pair_pinger", pinger_opts);
  auto ponger = runtime->launch("bench.pair_ponger", pair_opts);
  // The same exchange between event-driven actors sharing one thread (CAF's shape).
  rk::LaunchOptions volley_opts = pair_opts;
  volley_opts.cpu_worker = "volley";
  auto volley_pinger = runtime->launch("bench.volley_pinger", volley_opts);
  auto volley_ponger = runtime->launch("bench.volley_ponger", volley_opts);
  // The same counter without the stream hold (LaunchOptions::cpu_stream_hold = 0): each
  // look at the input ring is taken as soon as the last batch is done.
  auto counter_no_hold = runtime->launch(
      "bench.counter", rk::LaunchOptions{.block_size = 1, .input_queue_capacity = 4096, .kernel_id = "counter_no_hold",
                                         .cpu_stream_hold = rk::Duration::zero()});
  if (!echo || !counter || !counter_no_hold || !pinger || !ponger || !volley_pinger || !volley_ponger)
    rkbench::fail("launch failed");
  if (!runtime->connect(*pinger, *ponger) || !runtime->connect(*ponger, *pinger)) rkbench::fail("connect failed");
  if (!runtime->connect(*volley_pinger, *volley_ponger) || !runtime->connect(*volley_ponger, *volley_pinger))
    rkbench::fail("connect failed");

  std::printf("Actors on %d CPUs: ping-pong %llu round trips, counting %llu increments, %d repetitions\n",
              rkbench::usable_cpus(), static_cast<unsigned long long>(rounds),
              static_cast<unsigned long long>(count_n), opt.reps);
  std::printf("ringkernel: %s; CAF %d.%d.%d, scheduler configurations:", runtime->device_name().c_str(),
              CAF_MAJOR_VERSION, CAF_MINOR_VERSION, CAF_VERSION % 100);
  for (const CafConfig& c : caf_configs) std::printf(" %s/%s", c.policy, c.threads ? std::to_string(c.threads).c_str() : "default");
  std::printf("\n");

  std::vector<double> us;
  us.reserve(rounds);
  std::vector<double> c2c;
  for (int rep = 0; rep <= opt.reps; ++rep) {
    const bool warm_up = rep == 0;  // repetition 0 warms everything up and is not reported
    const std::uint64_t r = warm_up ? warm_rounds : rounds;
    const std::uint64_t c = warm_up ? count_n / 10 : count_n;
    if (!warm_up) c2c.push_back(rkbench::cache_line_round_trip_ns());
    auto keep_latency = [&](const std::string& key, const std::string& label, Latency l) {
      if (warm_up) return;
      Figures& f = fig(key, label);
      f.p50.push_back(l.p50);
      f.p99.push_back(l.p99);
    };
    auto keep_rate = [&](const std::string& key, const std::string& label, double rate) {
      if (!warm_up) fig(key, label).rate.push_back(rate);
    };

    keep_latency("pingpong.rk_send_receive", "ringkernel send+receive (host<->actor kernel)",
                 rk_ping_pong(*echo, kWarmRounds, r, us));
    keep_latency("pingpong.rk_call", "ringkernel call (host<->actor kernel)", rk_call(*echo, kWarmRounds, r, us));
    keep_latency("pingpong.rk_actors", "ringkernel actor<->actor (two kernels, K2K)",
                 rk_actor_pair(*pinger, kWarmRounds, r));
    keep_latency("pingpong.rk_actors_one_worker", "ringkernel actor<->actor, one worker thread (cpu_worker)",
                 rk_volley(*volley_pinger, kWarmRounds, r));
    std::this_thread::sleep_for(kIdle);  // the kernel parks
    keep_latency("pingpong_idle.rk_send_receive", "ringkernel send+receive, first round trips after idle",
                 rk_ping_pong(*echo, 0, idle_rounds, us));
    keep_rate("count.rk_batch", "ringkernel send_batch(256) + take", rk_count(*counter, c, true));
    keep_rate("count.rk_single", "ringkernel send x N + take", rk_count(*counter, c, false));
    keep_rate("count.rk_single_no_hold", "ringkernel send x N + take, no stream hold (cpu_stream_hold = 0)",
              rk_count(*counter_no_hold, c, false));

    for (const CafConfig& conf : caf_configs) {
      caf::actor_system_config cfg;
      cfg.set("scheduler.policy", std::string_view(conf.policy) == "sharing" ? caf::atom("sharing") : caf::atom("stealing"));
      if (conf.threads != 0) cfg.set("scheduler.max-threads", conf.threads);
      caf::actor_system sys{cfg};
      const std::string t = std::string(conf.policy) + "_" + std::to_string(sys.scheduler().num_workers());
      auto caf_echo_actor = sys.spawn(caf_echo);
      auto caf_counter_actor = sys.spawn(caf_counter);
      keep_latency("pingpong.caf_scoped." + t, "CAF scoped_actor request/receive (" + t + ")",
                   caf_scoped_ping_pong(sys, caf_echo_actor, kWarmRounds, r, us));
      keep_latency("pingpong.caf_actors." + t, "CAF actor<->actor, Savina (" + t + ")",
                   caf_actor_ping_pong(sys, caf_echo_actor, kWarmRounds, r, us));
      std::this_thread::sleep_for(kIdle);  // the workers go idle
      keep_latency("pingpong_idle.caf_scoped." + t, "CAF scoped_actor request/receive, after idle (" + t + ")",
                   caf_scoped_ping_pong(sys, caf_echo_actor, 0, idle_rounds, us));
      keep_rate("count.caf_scoped." + t, "CAF scoped_actor send x N + request (" + t + ")",
                caf_scoped_count(sys, caf_counter_actor, c));
      keep_rate("count.caf_actors." + t, "CAF Savina producer actor (" + t + ")",
                caf_actor_count(sys, caf_counter_actor, c));
      caf::anon_send_exit(caf_echo_actor, caf::exit_reason::user_shutdown);
      caf::anon_send_exit(caf_counter_actor, caf::exit_reason::user_shutdown);
    }
    if (!warm_up) std::printf("  repetition %d of %d done\n", rep, opt.reps), std::fflush(stdout);
  }

  rkbench::report("actors.cache_line_round_trip", "cache-line round trip CPU0<->CPU1 (machine state)",
                  rkbench::spread_of(c2c), "ns");
  std::printf("ping-pong round trip, microseconds (median over repetitions of each run's p50 / p99):\n");
  for (const auto& key : order) {
    const Figures& f = results[key];
    if (f.p50.empty()) continue;
    rkbench::report(key + ".p50", f.label + " p50", rkbench::spread_of(f.p50), "us");
    rkbench::report(key + ".p99", f.label + " p99", rkbench::spread_of(f.p99), "us");
  }
  std::printf("counting, messages per second:\n");
  for (const auto& key : order) {
    const Figures& f = results[key];
    if (f.rate.empty()) continue;
    rkbench::report(key, f.label, rkbench::spread_of(f.rate), "Mmsg/s", 1e-6);
  }

  // Summary against CAF's best configuration for each figure (lowest median latency,
  // highest median rate), ratios paired repetition by repetition.
  auto best = [&](const std::string& prefix, auto field, bool lower_is_better) {
    std::string best_key;
    double best_value = 0;
    for (const auto& key : order) {
      if (key.rfind(prefix, 0) != 0) continue;
      const double m = rkbench::spread_of(results[key].*field).median;
      if (best_key.empty() || (lower_is_better ? m < best_value : m > best_value)) best_key = key, best_value = m;
    }
    return best_key;
  };
  struct LatencyRow {
    const char* key;
    const char* ours;
    const char* baseline_prefix;
  };
  const LatencyRow rows[] = {{"pingpong", "pingpong.rk_send_receive", "pingpong.caf_scoped."},
                             {"pingpong_idle", "pingpong_idle.rk_send_receive", "pingpong_idle.caf_scoped."},
                             {"pingpong_vs_actor_pair", "pingpong.rk_send_receive", "pingpong.caf_actors."},
                             {"actor_pair", "pingpong.rk_actors", "pingpong.caf_actors."},
                             {"actor_pair_one_worker", "pingpong.rk_actors_one_worker", "pingpong.caf_actors."}};
  for (const LatencyRow& row : rows) {
    for (const char* q : {"p50", "p99"}) {
      const auto field = std::string(q) == "p50" ? &Figures::p50 : &Figures::p99;
      const Figures& ours = results[row.ours];
      const Figures& base = results[best(row.baseline_prefix, field, true)];
      rkbench::summary(std::string(row.key) + "." + q, rkbench::spread_of(ours.*field).median,
                       rkbench::spread_of(base.*field).median, rkbench::paired_ratio(base.*field, ours.*field), "us",
                       base.label);
    }
  }
  const Figures& caf_count = results[best("count.caf_", &Figures::rate, false)];
  {  // the stream hold against none, same process, paired per repetition
    const Figures& held = results["count.rk_single"];
    const Figures& none = results["count.rk_single_no_hold"];
    rkbench::summary("count.stream_hold", rkbench::spread_of(held.rate).median * 1e-6,
                     rkbench::spread_of(none.rate).median * 1e-6, rkbench::paired_ratio(held.rate, none.rate), "Mmsg/s",
                     none.label);
  }
  for (const char* key : {"count.rk_batch", "count.rk_single"}) {
    const Figures& ours = results[key];
    rkbench::summary(key, rkbench::spread_of(ours.rate).median * 1e-6, rkbench::spread_of(caf_count.rate).median * 1e-6,
                     rkbench::paired_ratio(ours.rate, caf_count.rate), "Mmsg/s", caf_count.label);
  }
  return 0;
}
