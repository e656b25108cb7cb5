#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <thread>
#include <vector>

#include <ringkernel/hlc.hpp>

using namespace ringkernel;

TEST(Hlc, timestamps_are_totally_ordered_by_physical_logical_node) {
  EXPECT_LT((HlcTimestamp{1, 5, 9}), (HlcTimestamp{2, 0, 0}));
  EXPECT_LT((HlcTimestamp{2, 0, 9}), (HlcTimestamp{2, 1, 0}));
  EXPECT_LT((HlcTimestamp{2, 1, 0}), (HlcTimestamp{2, 1, 1}));
  EXPECT_EQ((HlcTimestamp{2, 1, 1}), (HlcTimestamp{2, 1, 1}));
}

TEST(Hlc, the_wall_clock_follows_the_system_clock_through_calibration_and_re_anchoring) {
  // Where the TSC is the kernel's clocksource, wall_clock_us() converts the counter itself
  // (measured against CLOCK_REALTIME for 10 ms, re-anchored every 100 ms). 350 ms cross the
  // calibration and three re-anchorings; every reading must lie between two system-clock
  // reads taken around it, give or take 50 µs of rate error.
  auto realtime_us = [] {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
  };
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(350);
  std::int64_t worst = 0;
  std::uint64_t readings = 0;
  while (std::chrono::steady_clock::now() < end) {
    const std::int64_t before = realtime_us();
    const auto w = static_cast<std::int64_t>(hlc::wall_clock_us());
    const std::int64_t after = realtime_us();
    if (after - before > 20) continue;  // descheduled between the reads: not a measurement
    const std::int64_t off = w < before ? before - w : (w > after ? w - after : 0);
    worst = std::max(worst, off);
    ++readings;
  }
  EXPECT_GT(readings, 1000u);
  EXPECT_LE(worst, 50) << "µs between wall_clock_us() and CLOCK_REALTIME";
}

TEST(Hlc, ticks_increase_and_track_the_wall_clock) {
  HlcClock c(3);
  HlcTimestamp prev = c.tick();
  const std::uint64_t wall = hlc::wall_clock_us();
  EXPECT_LE(prev.physical, wall + 1);
  EXPECT_GE(prev.physical + 1'000'000, wall);
  for (int i = 0; i < 100000; ++i) {
    const HlcTimestamp t = c.tick();
    ASSERT_LT(prev, t);
    prev = t;
  }
  EXPECT_EQ(prev.node_id, 3u);
  EXPECT_EQ(c.now(), prev);
}

TEST(Hlc, update_orders_after_the_remote_stamp) {
  HlcClock c(1);
  const HlcTimestamp local = c.tick();
  const HlcTimestamp remote{local.physical + 500, 7, 2};  // slightly ahead, within the bound
  auto merged = c.update(remote);
  ASSERT_TRUE(merged.ok());
  EXPECT_GT(hlc::pack(*merged), hlc::pack(remote));
  EXPECT_GT(c.tick(), *merged);
}

TEST(Hlc, an_update_beyond_the_skew_bound_is_an_error_and_changes_nothing) {
  HlcClock c(1, 1000);
  const HlcTimestamp before = c.tick();
  auto r = c.update(HlcTimestamp{hlc::wall_clock_us() + 60'000'000, 0, 2});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::ClockSkew);
  EXPECT_EQ(c.now(), before);
}

TEST(Hlc, observe_writes_nothing_for_a_stamp_behind_and_merges_one_ahead) {
  HlcClock c(1, 1000);
  const HlcTimestamp local = c.tick();
  // Behind the clock (a reply stamped before the host's latest send): the clock is unchanged,
  // and its next event still orders after the stamp.
  const HlcTimestamp behind{local.physical, local.logical > 0 ? local.logical - 1 : 0, 9};
  ASSERT_TRUE(c.observe(behind).ok());
  EXPECT_EQ(c.now(), local);
  EXPECT_GT(c.tick(), behind);
  // Ahead of the clock, within the bound: merged, so the next event orders after it.
  const HlcTimestamp ahead{c.now().physical + 200, 4000, 2};
  ASSERT_TRUE(c.observe(ahead).ok());
  EXPECT_GT(hlc::pack(c.now()), hlc::pack(ahead));
  EXPECT_GT(c.tick(), ahead);
  // Beyond the bound: an error, and the clock is left as it was.
  const HlcTimestamp before = c.now();
  auto r = c.observe(HlcTimestamp{hlc::wall_clock_us() + 60'000'000, 0, 2});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::ClockSkew);
  EXPECT_EQ(c.now(), before);
}

TEST(Hlc, concurrent_ticks_from_many_threads_never_repeat) {
  HlcClock c(1);
  constexpr int kThreads = 4, kPer = 50000;
  std::vector<std::vector<std::uint64_t>> seen(kThreads);
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      seen[t].reserve(kPer);
      for (int i = 0; i < kPer; ++i) seen[t].push_back(hlc::pack(c.tick()));
    });
  for (auto& t : ts) t.join();
  std::vector<std::uint64_t> all;
  for (auto& v : seen) {
    EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));
    all.insert(all.end(), v.begin(), v.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPer));
}

TEST(Hlc, a_batch_reservation_yields_consecutive_distinct_events) {
  HlcClock c(1);
  const HlcTimestamp a = c.tick();
  const std::uint64_t first = c.tick_batch(100);
  EXPECT_GT(first, hlc::pack(a));
  EXPECT_GT(hlc::pack(c.tick()), first + 99);
}
