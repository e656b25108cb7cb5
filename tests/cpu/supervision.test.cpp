// Supervisors on the CPU backend: the registry, the three strategies, restart policies,
// K2K routes across restarts, and escalation beyond the restart limit.
#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <thread>

#include "product_kernels.hpp"

using namespace ringkernel;
using namespace std::chrono_literals;
using ptest::Job;
using ptest::JobDone;
using ptest::Tick;

namespace {

LaunchOptions worker_opts() { return LaunchOptions{.block_size = 1, .input_queue_capacity = 64, .output_queue_capacity = 64}; }

ChildSpec worker(const std::string& name, RestartPolicy p = RestartPolicy::Permanent) {
  return ChildSpec{.name = name, .kernel = "ptest.worker", .options = worker_opts(), .restart = p};
}

/// Sends a job to a child and returns how many jobs this incarnation has handled.
std::uint64_t handled(Supervisor& sup, const std::string& name, std::uint64_t value = 1) {
  auto r = sup.with_child(name, [&](KernelHandle& k) { return k.call<JobDone>(Job{value, 0, 0}, 2s); });
  EXPECT_TRUE(r.ok()) << name << ": " << (r.ok() ? "" : r.error().what());
  return r.ok() ? r->handled : 0;
}

/// Makes a child fault and waits until its kernel has stopped.
void crash(Supervisor& sup, const std::string& name, std::uint32_t code = 7) {
  auto r = sup.with_child(name, [&](KernelHandle& k) {
    EXPECT_TRUE(k.send(Job{0, code, 0}).ok());
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while (k.status().state != KernelState::Terminated && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(100us);
    EXPECT_EQ(k.status().state, KernelState::Terminated);
  });
  ASSERT_TRUE(r.ok());
}

class SupervisionTest : public ::testing::Test {
 protected:
  RingKernel rt = RingKernel::builder().backend(Backend::Cpu).build().value();
};

}  // namespace

TEST_F(SupervisionTest, the_registry_finds_children_by_wildcard) {
  Supervisor sup(rt);
  for (const char* n : {"workers/0", "workers/1", "workers/2", "db/main"}) ASSERT_TRUE(sup.add_child(worker(n)).ok()) << n;
  EXPECT_EQ(*sup.lookup("workers/*"), (std::vector<std::string>{"workers/0", "workers/1", "workers/2"}));
  EXPECT_EQ(sup.lookup("#")->size(), 4u);
  EXPECT_EQ(*sup.lookup("db/#"), (std::vector<std::string>{"db/main"}));
  EXPECT_TRUE(sup.lookup("nothing/*")->empty());
  EXPECT_FALSE(sup.lookup("workers/#/x").ok());
  EXPECT_TRUE(sup.contains("db/main"));
  EXPECT_EQ(*sup.generation("workers/1"), 1u);

  auto dup = sup.add_child(worker("workers/1"));
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code(), ErrorCode::InvalidArgument);
  EXPECT_FALSE(sup.add_child(worker("workers/*")).ok());
  EXPECT_FALSE(sup.add_child(worker("a//b")).ok());
  auto unknown_kernel = sup.add_child(ChildSpec{.name = "x", .kernel = "no.such.kernel"});
  ASSERT_FALSE(unknown_kernel.ok());
  EXPECT_EQ(unknown_kernel.error().code(), ErrorCode::UnknownKernel);
  auto missing = sup.with_child("workers/9", [](KernelHandle&) {});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ErrorCode::InvalidArgument);

  ASSERT_TRUE(sup.remove_child("workers/2").ok());
  EXPECT_EQ(sup.lookup("workers/*")->size(), 2u);
  EXPECT_FALSE(sup.remove_child("workers/2").ok());
  // The names are the kernels' ids.
  auto id = sup.with_child("db/main", [](KernelHandle& k) { return k.id().value; });
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, "db/main");
}

TEST_F(SupervisionTest, one_for_one_restarts_only_the_failed_child_with_fresh_state) {
  Supervisor sup(rt, {.strategy = RestartStrategy::OneForOne});
  std::vector<SupervisorEvent> events;
  sup.on_event([&](const SupervisorEvent& e) { events.push_back(e); });
  for (const char* n : {"w/a", "w/b", "w/c"}) ASSERT_TRUE(sup.add_child(worker(n)).ok());
  for (const char* n : {"w/a", "w/b", "w/c"}) EXPECT_EQ(handled(sup, n), 1u);
  EXPECT_EQ(*sup.check(), 0u);  // nothing failed

  crash(sup, "w/b");
  auto r = sup.check();
  ASSERT_TRUE(r.ok()) << r.error().what();
  EXPECT_EQ(*r, 1u);
  EXPECT_EQ(*sup.generation("w/a"), 1u);
  EXPECT_EQ(*sup.generation("w/b"), 2u);
  EXPECT_EQ(*sup.generation("w/c"), 1u);
  EXPECT_EQ(handled(sup, "w/a"), 2u);  // state kept
  EXPECT_EQ(handled(sup, "w/b"), 1u);  // fresh state
  EXPECT_EQ(handled(sup, "w/c"), 2u);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, SupervisorEvent::Kind::ChildFailed);
  EXPECT_EQ(events[0].child, "w/b");
  EXPECT_NE(events[0].reason.find("device error 7"), std::string::npos) << events[0].reason;
  EXPECT_EQ(events[1].kind, SupervisorEvent::Kind::ChildRestarted);
  EXPECT_EQ(sup.total_restarts(), 1u);
}

TEST_F(SupervisionTest, one_for_all_restarts_every_child) {
  Supervisor sup(rt, {.strategy = RestartStrategy::OneForAll});
  for (const char* n : {"w/a", "w/b", "w/c"}) ASSERT_TRUE(sup.add_child(worker(n)).ok());
  for (const char* n : {"w/a", "w/b", "w/c"}) EXPECT_EQ(handled(sup, n), 1u);
  crash(sup, "w/c");
  ASSERT_EQ(*sup.check(), 3u);
  for (const char* n : {"w/a", "w/b", "w/c"}) {
    EXPECT_EQ(*sup.generation(n), 2u) << n;
    EXPECT_EQ(handled(sup, n), 1u) << n;
  }
}

TEST_F(SupervisionTest, rest_for_one_restarts_the_failed_child_and_those_started_after_it) {
  Supervisor sup(rt, {.strategy = RestartStrategy::RestForOne});
  for (const char* n : {"w/a", "w/b", "w/c", "w/d"}) ASSERT_TRUE(sup.add_child(worker(n)).ok());
  crash(sup, "w/b");
  ASSERT_EQ(*sup.check(), 3u);
  EXPECT_EQ(*sup.generation("w/a"), 1u);
  EXPECT_EQ(*sup.generation("w/b"), 2u);
  EXPECT_EQ(*sup.generation("w/c"), 2u);
  EXPECT_EQ(*sup.generation("w/d"), 2u);
}

TEST_F(SupervisionTest, restart_policies_decide_which_stopped_children_come_back) {
  Supervisor sup(rt);
  ASSERT_TRUE(sup.add_child(worker("perm", RestartPolicy::Permanent)).ok());
  ASSERT_TRUE(sup.add_child(worker("trans", RestartPolicy::Transient)).ok());
  ASSERT_TRUE(sup.add_child(worker("trans2", RestartPolicy::Transient)).ok());
  ASSERT_TRUE(sup.add_child(worker("temp", RestartPolicy::Temporary)).ok());
  crash(sup, "perm", ptest::kStopCleanly);    // a clean exit: permanent children come back
  crash(sup, "trans", ptest::kStopCleanly);   // clean exit: gone
  crash(sup, "trans2", 5);                    // fault: comes back
  crash(sup, "temp", 5);                      // never comes back
  ASSERT_EQ(*sup.check(), 2u);
  EXPECT_EQ(*sup.lookup("#"), (std::vector<std::string>{"perm", "trans2"}));
  EXPECT_EQ(*sup.generation("perm"), 2u);
  EXPECT_EQ(*sup.generation("trans2"), 2u);
}

TEST_F(SupervisionTest, a_restart_storm_beyond_the_limit_escalates) {
  Supervisor sup(rt, {.max_restarts = 2, .window = 10s});
  std::vector<std::string> escalations;
  sup.on_escalate([&](const Error& e) { escalations.push_back(e.message()); });
  ASSERT_TRUE(sup.add_child(worker("w/a")).ok());
  ASSERT_TRUE(sup.add_child(worker("w/b")).ok());
  for (int round = 0; round < 2; ++round) {
    crash(sup, "w/a");
    auto r = sup.check();
    ASSERT_TRUE(r.ok()) << "round " << round << ": " << r.error().what();
  }
  EXPECT_EQ(*sup.generation("w/a"), 3u);
  crash(sup, "w/a");
  auto r = sup.check();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::KernelFaulted);
  EXPECT_NE(r.error().message().find("3 restarts within 10000 ms exceed the limit of 2"), std::string::npos)
      << r.error().message();
  EXPECT_NE(r.error().message().find("w/a"), std::string::npos);
  ASSERT_EQ(escalations.size(), 1u);
  EXPECT_TRUE(sup.escalated());
  EXPECT_TRUE(sup.lookup("#")->empty());  // every child terminated
  EXPECT_TRUE(rt.kernels().empty());
  // Once escalated, the supervisor refuses work and keeps reporting the escalation.
  EXPECT_FALSE(sup.check().ok());
  auto add = sup.add_child(worker("w/c"));
  ASSERT_FALSE(add.ok());
  EXPECT_EQ(add.error().code(), ErrorCode::InvalidState);
  EXPECT_EQ(escalations.size(), 1u);
}

TEST_F(SupervisionTest, restarts_outside_the_window_do_not_add_up) {
  Supervisor sup(rt, {.max_restarts = 1, .window = 30ms});
  ASSERT_TRUE(sup.add_child(worker("w")).ok());
  for (int round = 0; round < 3; ++round) {
    crash(sup, "w");
    auto r = sup.check();
    ASSERT_TRUE(r.ok()) << r.error().what();
    std::this_thread::sleep_for(40ms);
  }
  EXPECT_EQ(*sup.generation("w"), 4u);
  EXPECT_FALSE(sup.escalated());
}

TEST_F(SupervisionTest, the_monitor_thread_restarts_and_escalates_by_itself) {
  Supervisor sup(rt, {.max_restarts = 1, .window = 10s, .poll_interval = 1ms});
  std::atomic<int> escalated{0};
  sup.on_escalate([&](const Error&) { ++escalated; });
  ASSERT_TRUE(sup.add_child(worker("w")).ok());
  ASSERT_TRUE(sup.start_monitor().ok());
  EXPECT_FALSE(sup.start_monitor().ok());
  crash(sup, "w");
  auto deadline = std::chrono::steady_clock::now() + 3s;
  while (*sup.generation("w") < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(*sup.generation("w"), 2u);
  EXPECT_EQ(handled(sup, "w"), 1u);
  crash(sup, "w");
  deadline = std::chrono::steady_clock::now() + 3s;
  while (!sup.escalated() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  EXPECT_TRUE(sup.escalated());
  sup.stop_monitor();
  EXPECT_EQ(escalated.load(), 1);
}

TEST_F(SupervisionTest, k2k_routes_survive_a_restart_of_the_receiver) {
  Supervisor sup(rt);
  LaunchOptions k2k{.block_size = 1, .input_queue_capacity = 64, .output_queue_capacity = 64, .enable_k2k = true,
                    .k2k_queue_capacity = 64};
  ASSERT_TRUE(sup.add_child({.name = "stage/fwd", .kernel = "ptest.forwarder", .options = k2k}).ok());
  ASSERT_TRUE(sup.add_child({.name = "stage/sink", .kernel = "ptest.fragile_sink", .options = k2k}).ok());
  ASSERT_TRUE(sup.connect("stage/fwd", "stage/sink").ok());
  EXPECT_FALSE(sup.connect("stage/fwd", "nope").ok());

  auto send = [&](std::uint64_t seq) {
    auto r = sup.with_child("stage/fwd", [&](KernelHandle& k) { return k.send(Tick{seq, 0}); });
    ASSERT_TRUE(r.ok()) << r.error().what();
  };
  auto receive = [&]() -> Tick {
    auto r = sup.with_child("stage/sink", [](KernelHandle& k) { return k.receive<Tick>(2s); });
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().what());
    return r.ok() ? *r : Tick{};
  };
  for (std::uint64_t i = 0; i < 5; ++i) send(i);
  for (std::uint64_t i = 0; i < 5; ++i) EXPECT_EQ(receive().value, i + 1);

  send(ptest::kFaultSeq);  // the sink faults on it (delivered over K2K)
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  std::uint32_t restarted = 0;
  while (restarted == 0 && std::chrono::steady_clock::now() < deadline) {
    restarted = sup.check().value();
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(restarted, 1u);
  EXPECT_EQ(*sup.generation("stage/sink"), 2u);
  EXPECT_EQ(*sup.generation("stage/fwd"), 1u);  // the receiver got its K2K address back

  for (std::uint64_t i = 10; i < 15; ++i) send(i);
  for (std::uint64_t i = 0; i < 5; ++i) {
    const Tick t = receive();
    EXPECT_EQ(t.seq, 10 + i);
    EXPECT_EQ(t.value, i + 1);  // fresh state
  }
}

TEST_F(SupervisionTest, a_sender_restarts_too_when_its_receiver_comes_back_at_another_address) {
  // A kernel launched first and destroyed later leaves the lowest K2K address free, so the
  // restarted receiver gets another address than before.
  std::optional<KernelHandle> placeholder = rt.launch("ptest.sink", LaunchOptions{.block_size = 1}).value();
  Supervisor sup(rt);
  LaunchOptions k2k{.block_size = 1, .input_queue_capacity = 64, .output_queue_capacity = 64, .enable_k2k = true,
                    .k2k_queue_capacity = 64};
  ASSERT_TRUE(sup.add_child({.name = "fwd", .kernel = "ptest.forwarder", .options = k2k}).ok());
  ASSERT_TRUE(sup.add_child({.name = "sink", .kernel = "ptest.fragile_sink", .options = k2k}).ok());
  ASSERT_TRUE(sup.connect("fwd", "sink").ok());
  const std::uint32_t old_slot = *sup.slot("sink");
  placeholder.reset();

  ASSERT_TRUE(sup.with_child("fwd", [](KernelHandle& k) { return k.send(Tick{ptest::kFaultSeq, 0}); }).ok());
  std::uint32_t restarted = 0;
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (restarted == 0 && std::chrono::steady_clock::now() < deadline) restarted = sup.check().value();
  EXPECT_EQ(restarted, 2u);  // the failed receiver ...
  EXPECT_NE(*sup.slot("sink"), old_slot);
  EXPECT_EQ(*sup.generation("fwd"), 2u);  // ... and the sender, restarted with it
  EXPECT_EQ(sup.total_restarts(), 2u);

  ASSERT_TRUE(sup.with_child("fwd", [](KernelHandle& k) { return k.send(Tick{1, 0}); }).ok());
  auto r = sup.with_child("sink", [](KernelHandle& k) { return k.receive<Tick>(2s); });
  ASSERT_TRUE(r.ok()) << r.error().what();
  EXPECT_EQ(r->seq, 1u);
}

// ---- actor pools: failed actors are restarted inside the running kernel ---------------------

namespace {
ChildSpec pool(const std::string& name, std::uint32_t actors, RestartPolicy p = RestartPolicy::Permanent) {
  LaunchOptions o = worker_opts();
  o.actor_slots = 8;
  return ChildSpec{.name = name, .kernel = "ptest.pool_worker", .options = o, .restart = p, .actors = actors};
}

/// Sends a job to actor `index` of pool child `name`; returns how many jobs it has handled.
std::uint64_t actor_handled(Supervisor& sup, const std::string& name, std::uint32_t index) {
  auto r = sup.with_child(name, [&](KernelHandle& k) { return k.call<JobDone>(ptest::ActorJob{index, 0, 1}, 2s); });
  EXPECT_TRUE(r.ok()) << name << "[" << index << "]: " << (r.ok() ? "" : r.error().what());
  return r.ok() ? r->handled : 0;
}

/// Makes actor `index` fail and waits until the kernel reports it.
void fail_actor(Supervisor& sup, const std::string& name, std::uint32_t index, std::uint32_t code = 9) {
  auto r = sup.with_child(name, [&](KernelHandle& k) {
    EXPECT_TRUE(k.send(ptest::ActorJob{index, code, 0}).ok());
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while (k.actor_faults().empty() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(100us);
    EXPECT_FALSE(k.actor_faults().empty());
  });
  ASSERT_TRUE(r.ok());
}

std::vector<std::uint32_t> generations(Supervisor& sup, const std::string& name) {
  std::vector<std::uint32_t> g;
  (void)sup.with_child(name, [&](KernelHandle& k) {
    for (const ActorRef& a : k.actors()) g.push_back(a.generation);
  });
  return g;
}
}  // namespace

TEST_F(SupervisionTest, a_pool_child_starts_its_actors_and_restarts_a_failed_one_alone) {
  Supervisor sup(rt, {.strategy = RestartStrategy::OneForOne});
  std::vector<SupervisorEvent> events;
  sup.on_event([&](const SupervisorEvent& e) { events.push_back(e); });
  ASSERT_TRUE(sup.add_child(pool("pool", 3)).ok());
  for (std::uint32_t i = 0; i < 3; ++i) EXPECT_EQ(actor_handled(sup, "pool", i), 1u);
  const auto before = generations(sup, "pool");
  const std::uint32_t kernel_slot = sup.slot("pool").value();
  fail_actor(sup, "pool", 1, 42);
  EXPECT_EQ(sup.check().value(), 1u);
  const auto after = generations(sup, "pool");
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after[0], before[0]);
  EXPECT_NE(after[1], before[1]);
  EXPECT_EQ(after[2], before[2]);
  EXPECT_EQ(actor_handled(sup, "pool", 0), 2u);  // kept its State
  EXPECT_EQ(actor_handled(sup, "pool", 1), 1u);  // fresh State
  EXPECT_EQ(sup.slot("pool").value(), kernel_slot);  // the kernel was not relaunched
  EXPECT_EQ(sup.generation("pool").value(), 1u);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[0].kind, SupervisorEvent::Kind::ChildFailed);
  EXPECT_EQ(events[0].child, "pool[1]");
  EXPECT_NE(events[0].reason.find("42"), std::string::npos);
  EXPECT_EQ(events[1].kind, SupervisorEvent::Kind::ChildRestarted);
  EXPECT_EQ(events[1].child, "pool[1]");
}

TEST_F(SupervisionTest, pool_strategies_restart_every_actor_or_the_rest_by_index) {
  {
    Supervisor sup(rt, {.strategy = RestartStrategy::OneForAll});
    ASSERT_TRUE(sup.add_child(pool("all", 3)).ok());
    const auto before = generations(sup, "all");
    fail_actor(sup, "all", 1);
    EXPECT_EQ(sup.check().value(), 3u);
    const auto after = generations(sup, "all");
    for (std::size_t i = 0; i < 3; ++i) EXPECT_NE(after[i], before[i]);
  }
  {
    Supervisor sup(rt, {.strategy = RestartStrategy::RestForOne});
    ASSERT_TRUE(sup.add_child(pool("rest", 3)).ok());
    const auto before = generations(sup, "rest");
    fail_actor(sup, "rest", 1);
    EXPECT_EQ(sup.check().value(), 2u);
    const auto after = generations(sup, "rest");
    EXPECT_EQ(after[0], before[0]);
    EXPECT_NE(after[1], before[1]);
    EXPECT_NE(after[2], before[2]);
  }
}

TEST_F(SupervisionTest, a_temporary_pool_destroys_failed_actors_and_actor_storms_escalate) {
  {
    Supervisor sup(rt);
    ASSERT_TRUE(sup.add_child(pool("temp", 2, RestartPolicy::Temporary)).ok());
    fail_actor(sup, "temp", 0);
    EXPECT_EQ(sup.check().value(), 0u);
    EXPECT_EQ(generations(sup, "temp").size(), 1u);  // actor 0 is gone, actor 1 stays
  }
  Supervisor sup(rt, {.max_restarts = 2, .window = 10s});
  ASSERT_TRUE(sup.add_child(pool("storm", 1)).ok());
  for (int i = 0; i < 2; ++i) {
    fail_actor(sup, "storm", 0);
    ASSERT_TRUE(sup.check().ok());
  }
  fail_actor(sup, "storm", 0);
  auto r = sup.check();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::KernelFaulted);
  EXPECT_NE(r.error().message().find("storm[0]"), std::string::npos);
  EXPECT_FALSE(sup.contains("storm"));
}

TEST_F(SupervisionTest, a_relaunched_pool_child_gets_its_actors_again) {
  Supervisor sup(rt);
  ASSERT_TRUE(sup.add_child(pool("relaunched", 2)).ok());
  // The whole kernel stops (not one actor): the child is relaunched and its actors spawned.
  auto stop = sup.with_child("relaunched", [](KernelHandle& k) { return k.terminate(); });
  ASSERT_TRUE(stop.ok());
  EXPECT_EQ(sup.check().value(), 1u);
  EXPECT_EQ(sup.generation("relaunched").value(), 2u);
  EXPECT_EQ(generations(sup, "relaunched").size(), 2u);
  EXPECT_EQ(actor_handled(sup, "relaunched", 1), 1u);
}
