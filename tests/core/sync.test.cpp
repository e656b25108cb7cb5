// The host-side synchronisation of kernel handles: the biased lock and the doorbell, each
// with asymmetric barriers (when the kernel grants membarrier) and without.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

#include <ringkernel/runtime.hpp>

using namespace ringkernel;
using namespace std::chrono_literals;
using detail::BiasedLock;
using detail::Doorbell;

namespace {
/// Runs `body(asymmetric)` for both forms; the asymmetric one only where the process has it.
template <class Body>
void both_forms(Body&& body) {
  body(false);
  if (!detail::asymmetric_barriers()) {
    GTEST_SKIP() << "membarrier(PRIVATE_EXPEDITED) unavailable here (or RINGKERNEL_ASYMMETRIC_BARRIERS=0): "
                    "only the symmetric form was tested";
  }
  body(true);
}
}  // namespace

TEST(BiasedLock, the_first_thread_holds_the_bias_until_another_thread_takes_the_lock) {
  if (!detail::asymmetric_barriers()) GTEST_SKIP() << "membarrier(PRIVATE_EXPEDITED) unavailable: no bias here";
  BiasedLock lock;
  lock.lock();  // the first acquisition is the ordinary one; it records the owner
  lock.unlock();
  EXPECT_TRUE(lock.biased_to_caller());
  std::thread([&] {
    EXPECT_FALSE(lock.biased_to_caller());
    lock.lock();  // revokes
    lock.unlock();
  }).join();
  EXPECT_FALSE(lock.biased_to_caller());
  lock.lock();  // the former owner now takes the spin lock like everyone
  lock.unlock();
  EXPECT_FALSE(lock.biased_to_caller());
}

TEST(BiasedLock, excludes_other_threads_before_during_and_after_revocation) {
  both_forms([](bool asymmetric) {
    BiasedLock lock(asymmetric);
    std::uint64_t counter = 0;  // plain: the lock is all that protects it (TSan checks)
    constexpr int kOwnerRounds = 200'000, kOthers = 3, kOtherRounds = 50'000;
    std::atomic<bool> others_go{false};
    std::thread owner([&] {
      for (int i = 0; i < kOwnerRounds; ++i) {
        lock.lock();
        ++counter;
        lock.unlock();
        if (i == kOwnerRounds / 4) others_go.store(true);  // contenders arrive mid-run
      }
    });
    std::vector<std::thread> others;
    for (int t = 0; t < kOthers; ++t)
      others.emplace_back([&] {
        while (!others_go.load()) std::this_thread::yield();
        for (int i = 0; i < kOtherRounds; ++i) {
          lock.lock();
          ++counter;
          lock.unlock();
        }
      });
    owner.join();
    for (auto& t : others) t.join();
    EXPECT_EQ(counter, std::uint64_t{kOwnerRounds} + std::uint64_t{kOthers} * kOtherRounds) << "asymmetric " << asymmetric;
  });
}

TEST(Doorbell, a_sleeper_never_misses_work_published_while_it_goes_to_sleep) {
  // The consumer parks (with a timeout far longer than the test) whenever it finds nothing;
  // a lost wake-up would leave it asleep for 30 s, so the run's time tells.
  both_forms([](bool asymmetric) {
    Doorbell bell(!asymmetric || !detail::asymmetric_barriers());
    std::atomic<std::uint64_t> published{0};
    constexpr std::uint64_t kItems = 20'000;
    const auto t0 = std::chrono::steady_clock::now();
    std::thread consumer([&] {
      std::uint64_t seen = 0;
      while (seen < kItems) {
        const std::uint64_t p = published.load(std::memory_order_acquire);
        if (p != seen) {
          seen = p;
          continue;
        }
        bell.wait([&] { return published.load(std::memory_order_acquire) != seen; }, 30s);
      }
    });
    for (std::uint64_t i = 1; i <= kItems; ++i) {
      published.store(i, std::memory_order_release);
      bell.ring();
      if (i % 64 == 0) std::this_thread::sleep_for(1us);  // let the consumer park now and then
    }
    consumer.join();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 20s) << "asymmetric " << asymmetric;
  });
}

TEST(AsymmetricBarriers, a_forked_child_can_still_issue_the_heavy_barrier) {
  if (!detail::asymmetric_barriers()) GTEST_SKIP() << "membarrier(PRIVATE_EXPEDITED) unavailable here";
  EXPECT_EXIT(
      {
        detail::heavy_barrier();
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}
