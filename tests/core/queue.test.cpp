#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <ringkernel/queue.hpp>
#include <ringkernel/runtime.hpp>

using namespace ringkernel;
using namespace std::chrono_literals;

namespace {
/// Counts live instances: catches leaks and double destruction in queues.
struct Counted {
  static inline std::atomic<int> live{0};
  std::string payload;  // non-trivial on purpose
  Counted() { ++live; }
  explicit Counted(std::string s) : payload(std::move(s)) { ++live; }
  Counted(const Counted& o) : payload(o.payload) { ++live; }
  Counted(Counted&& o) noexcept : payload(std::move(o.payload)) { ++live; }
  Counted& operator=(const Counted&) = default;
  Counted& operator=(Counted&&) noexcept = default;
  ~Counted() { --live; }
};

struct Msg64 {
  std::uint64_t seq;
  std::uint64_t words[7];
};
}  // namespace

TEST(SpscQueue, fills_to_capacity_then_reports_backpressure) {
  SpscQueue<int> q(4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(q.try_push(i), Status::Ok);
  EXPECT_EQ(q.try_push(99), Status::QueueFull);
  EXPECT_EQ(q.push_or_drop(99), Status::QueueFull);
  int v = -1;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(q.try_pop(v), Status::Ok);
    EXPECT_EQ(v, i);
  }
  EXPECT_EQ(q.try_pop(v), Status::QueueEmpty);
  const QueueStats s = q.stats();
  EXPECT_EQ(s.enqueued, 4u);
  EXPECT_EQ(s.dequeued, 4u);
  EXPECT_EQ(s.dropped, 1u);
  EXPECT_EQ(s.depth, 0u);
  EXPECT_EQ(s.max_depth, 4u);
}

TEST(SpscQueue, rounds_capacity_up_to_a_power_of_two) {
  SpscQueue<int> q(5);
  EXPECT_EQ(q.capacity(), 8u);
}

TEST(SpscQueue, batches_publish_and_release_many_at_once) {
  SpscQueue<int> q(8);
  std::vector<int> in{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  EXPECT_EQ(q.try_push_batch(std::span<const int>(in)), 8u);
  std::vector<int> out(10, 0);
  EXPECT_EQ(q.try_pop_batch(std::span<int>(out)), 8u);
  EXPECT_EQ(out[7], 8);
}

TEST(SpscQueue, blocking_calls_time_out_with_a_status) {
  SpscQueue<int> q(2);
  int v;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(q.pop(v, 20ms), Status::Timeout);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 20ms);
  ASSERT_EQ(q.try_push(1), Status::Ok);
  ASSERT_EQ(q.try_push(2), Status::Ok);
  EXPECT_EQ(q.push(3, 20ms), Status::Timeout);
}

TEST(SpscQueue, destroys_every_element_exactly_once) {
  {
    SpscQueue<Counted> q(16);
    for (int i = 0; i < 10; ++i) {
      std::string name = std::to_string(i);
      name.insert(name.begin(), 'x');
      ASSERT_EQ(q.try_push(Counted(std::move(name))), Status::Ok);
    }
    Counted c;
    for (int i = 0; i < 4; ++i) ASSERT_EQ(q.try_pop(c), Status::Ok);
    EXPECT_EQ(c.payload, "x3");
  }
  EXPECT_EQ(Counted::live.load(), 0);
  {
    MpscQueue<Counted> q(16);
    for (int i = 0; i < 10; ++i) ASSERT_EQ(q.try_push(Counted("y")), Status::Ok);
  }
  EXPECT_EQ(Counted::live.load(), 0);
}

TEST(SpscQueue, two_threads_move_a_million_messages_with_matching_checksums) {
  SpscQueue<Msg64> q(1024);
  constexpr std::uint64_t kN = 1'000'000;
  std::uint64_t produced = 0, consumed = 0;
  std::thread producer([&] {
    std::vector<Msg64> batch(32);
    std::uint64_t i = 0;
    while (i < kN) {
      if (i % 3 == 0) {  // mix single and batch pushes
        Msg64 m{i, {i * 3, 0, 0, 0, 0, 0, i}};
        if (q.try_push(m) == Status::Ok) {
          produced += m.words[0];
          ++i;
        }
      } else {
        const std::uint64_t n = std::min<std::uint64_t>(32, kN - i);
        for (std::uint64_t k = 0; k < n; ++k) batch[k] = Msg64{i + k, {(i + k) * 3, 0, 0, 0, 0, 0, i + k}};
        const std::size_t pushed = q.try_push_batch(std::span<const Msg64>(batch.data(), n));
        for (std::size_t k = 0; k < pushed; ++k) produced += batch[k].words[0];
        i += pushed;
      }
    }
  });
  std::vector<Msg64> out(64);
  std::uint64_t expect = 0;
  while (expect < kN) {
    std::size_t n = 0;
    if (expect % 5 == 0) {  // mix single and batch pops
      n = q.try_pop(out[0]) == Status::Ok ? 1 : 0;
    } else {
      n = q.try_pop_batch(std::span<Msg64>(out));
    }
    for (std::size_t k = 0; k < n; ++k) {
      ASSERT_EQ(out[k].seq, expect);
      ASSERT_EQ(out[k].words[6], expect);
      consumed += out[k].words[0];
      ++expect;
    }
  }
  producer.join();
  EXPECT_EQ(produced, consumed);
  EXPECT_EQ(q.stats().enqueued, kN);
  EXPECT_EQ(q.stats().dequeued, kN);
}

TEST(SpscQueue, a_copy_that_throws_mid_batch_leaves_the_elements_before_it_queued) {
  struct Fussy {
    int v = 0;
    Fussy() = default;
    explicit Fussy(int x) : v(x) {}
    Fussy(const Fussy& o) : v(o.v) {
      if (o.v < 0) throw std::runtime_error("refused");
    }
    Fussy(Fussy&&) noexcept = default;
    Fussy& operator=(Fussy&&) noexcept = default;
  };
  SpscQueue<Fussy> q(8);
  std::vector<Fussy> in;
  for (int x : {1, 2, -1, 4}) in.emplace_back(x);
  EXPECT_THROW(q.try_push_batch(std::span<const Fussy>(in)), std::runtime_error);
  EXPECT_EQ(q.stats().enqueued, 2u);
  Fussy f;
  ASSERT_EQ(q.try_pop(f), Status::Ok);
  EXPECT_EQ(f.v, 1);
  ASSERT_EQ(q.try_pop(f), Status::Ok);
  EXPECT_EQ(f.v, 2);
  EXPECT_EQ(q.try_pop(f), Status::QueueEmpty);
  EXPECT_EQ(q.try_push(Fussy(5)), Status::Ok);  // the queue goes on working
  ASSERT_EQ(q.try_pop(f), Status::Ok);
  EXPECT_EQ(f.v, 5);
}

TEST(SpscQueue, max_depth_is_sampled_at_the_first_pop_and_once_per_4096) {
  SpscQueue<int> q(8192);
  std::vector<int> in(5000, 7), out(5000);
  ASSERT_EQ(q.try_push_batch(std::span<const int>(in.data(), 3)), 3u);
  int v;
  ASSERT_EQ(q.try_pop(v), Status::Ok);  // position 0: sampled
  EXPECT_EQ(q.stats().max_depth, 3u);
  ASSERT_EQ(q.try_pop_batch(std::span<int>(out.data(), 2)), 2u);
  ASSERT_EQ(q.try_push_batch(std::span<const int>(in)), 5000u);
  // Popping across position 4096 samples the depth then (5000 queued at position 3).
  ASSERT_EQ(q.try_pop_batch(std::span<int>(out)), 5000u);
  EXPECT_EQ(q.stats().max_depth, 5000u);
  EXPECT_EQ(q.stats().depth, 0u);
}

TEST(MpscQueue, many_producers_one_consumer_lose_nothing_and_keep_per_producer_order) {
  MpscQueue<std::uint64_t> q(256);
  constexpr int kProducers = 4;
  constexpr std::uint64_t kPer = 100'000;
  std::vector<std::thread> ps;
  for (int p = 0; p < kProducers; ++p)
    ps.emplace_back([&, p] {
      for (std::uint64_t i = 0; i < kPer;) {
        if (q.try_push((std::uint64_t(p) << 32) | i) == Status::Ok) ++i;
      }
    });
  std::vector<std::uint64_t> next(kProducers, 0);
  std::uint64_t got = 0;
  while (got < kProducers * kPer) {
    std::uint64_t v;
    if (q.try_pop(v) != Status::Ok) continue;
    const auto p = static_cast<std::size_t>(v >> 32);
    ASSERT_EQ(v & 0xFFFFFFFFu, next[p]);
    ++next[p];
    ++got;
  }
  for (auto& t : ps) t.join();
  EXPECT_EQ(q.stats().enqueued, kProducers * kPer);
  EXPECT_EQ(q.stats().dequeued, kProducers * kPer);
}

TEST(MessageQueue, carries_variable_length_messages_behind_the_interface) {
  SpscMessageQueue q(4, 100);
  MessageQueue& mq = q;
  const std::byte a[3] = {std::byte{1}, std::byte{2}, std::byte{3}};
  EXPECT_EQ(mq.try_enqueue(a), Status::Ok);
  std::vector<std::byte> big(200);
  EXPECT_EQ(mq.try_enqueue(big), Status::TooLarge);
  std::byte out[100];
  std::size_t n = 0;
  EXPECT_EQ(mq.try_dequeue(out, n), Status::Ok);
  EXPECT_EQ(n, 3u);
  EXPECT_EQ(out[2], std::byte{3});
  EXPECT_EQ(mq.try_dequeue(out, n), Status::QueueEmpty);
}

// A kernel whose control block is read across a bus (a BAR mapping) has its termination
// flag read on every 64th call of a message path; once seen, it stays seen.
TEST(KernelCore, a_termination_flag_across_a_bus_is_read_every_64th_call_and_then_remembered) {
  ringkernel::ControlBlock control{};
  ringkernel::detail::KernelCore core;
  core.control = &control;
  std::uint32_t checks = 0;
  // In ordinary memory: every call reads it.
  EXPECT_FALSE(core.kernel_terminated(checks));
  EXPECT_FALSE(core.kernel_terminated_now());
  core.control_uncached = true;
  checks = 0;
  EXPECT_FALSE(core.kernel_terminated(checks));  // call 0 reads: not set
  control.has_terminated = 1;
  for (int i = 1; i < 64; ++i) EXPECT_FALSE(core.kernel_terminated(checks)) << "call " << i << " read the flag";
  EXPECT_FALSE(core.kernel_terminated_now());  // not read across the bus before it was seen
  EXPECT_TRUE(core.kernel_terminated(checks));   // call 64 reads it
  control.has_terminated = 0;                    // (never happens; shows the flag is remembered)
  std::uint32_t other = 5;
  EXPECT_TRUE(core.kernel_terminated(other));
  EXPECT_TRUE(core.kernel_terminated_now());
}
