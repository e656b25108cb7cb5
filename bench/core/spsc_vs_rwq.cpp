// Two-thread SPSC throughput: ringkernel::SpscQueue (one at a time and batched) against
// moodycamel::ReaderWriterQueue, the baseline, and moodycamel's
// BlockingReaderWriterCircularBuffer, in the same process.
//
// One producer and one consumer thread, pinned to different CPUs when there are two or
// more; 64-byte messages; the same capacity for every queue. A failed try_ is retried
// after one CPU pause hint (rkbench::cpu_relax) on both sides, for every queue alike; the
// ".hotspin" rows retry with no pause at all, to show how much the spin policy matters.
// The consumer checks each message's sequence number and sums every word; the sum is
// compared with the closed form after the run, so no timed work can be optimised away.
#include <readerwriterqueue/readerwritercircularbuffer.h>
#include <readerwriterqueue/readerwriterqueue.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <ringkernel/queue.hpp>

#include "../harness.hpp"

namespace {

using rkbench::Clock;

struct Msg64 {
  std::uint64_t seq;
  std::uint64_t words[7];
};
static_assert(sizeof(Msg64) == 64);

inline Msg64 make_msg(std::uint64_t i) noexcept {
  Msg64 m;
  m.seq = i;
  for (std::uint64_t k = 0; k < 7; ++k) m.words[k] = i * (2 * k + 1) + k;
  return m;
}

/// Consumer side: order check and checksum of one message.
struct Checker {
  std::uint64_t expect = 0;
  std::uint64_t sum = 0;
  std::uint64_t out_of_order = 0;
  void take(const Msg64& m) noexcept {
    out_of_order += m.seq != expect;
    ++expect;
    std::uint64_t s = m.seq;
    for (std::uint64_t w : m.words) s += w;
    sum += s;
  }
  /// Sum of (50 i + 21) over i < n, the words make_msg(i) holds.
  static std::uint64_t expected_sum(std::uint64_t n) noexcept { return 25 * n * (n - 1) + 21 * n; }
};

constexpr std::size_t kCapacity = 4096;  // slots, every queue
constexpr std::size_t kBatchSizes[] = {32, 64};

template <bool Relax>
inline void relax() noexcept {
  if constexpr (Relax) rkbench::cpu_relax();
}

struct PairResult {
  double seconds = 0;
  Checker check;
};

/// Runs produce() and consume() on two threads (pinned apart when possible), both released
/// at once; the time is from the release to the consumer's last message.
PairResult run_pair(const std::function<void()>& produce, const std::function<Checker()>& consume) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  PairResult r;
  Clock::time_point t0, t1;
  std::thread consumer([&] {
    rkbench::pin_this_thread(1);
    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) {
    }
    r.check = consume();
    t1 = Clock::now();
  });
  std::thread producer([&] {
    rkbench::pin_this_thread(0);
    ready.fetch_add(1);
    while (ready.load() != 2) {
    }
    t0 = Clock::now();
    go.store(true, std::memory_order_release);
    produce();
  });
  producer.join();
  consumer.join();
  r.seconds = std::chrono::duration<double>(t1 - t0).count();
  return r;
}

template <bool Relax>
PairResult rk_single(std::uint64_t n) {
  ringkernel::SpscQueue<Msg64> q(kCapacity);
  return run_pair(
      [&] {
        for (std::uint64_t i = 0; i < n; ++i) {
          const Msg64 m = make_msg(i);
          while (q.try_push(m) != ringkernel::Status::Ok) relax<Relax>();
        }
      },
      [&] {
        Checker c;  // local, so the compiler keeps it in registers
        Msg64 m;
        for (std::uint64_t i = 0; i < n; ++i) {
          while (q.try_pop(m) != ringkernel::Status::Ok) relax<Relax>();
          c.take(m);
        }
        return c;
      });
}

template <bool Relax>
PairResult rk_batch(std::uint64_t n, std::size_t batch) {
  ringkernel::SpscQueue<Msg64> q(kCapacity);
  return run_pair(
      [&] {
        std::vector<Msg64> buf(batch);
        for (std::uint64_t i = 0; i < n;) {
          const std::size_t b = std::min<std::uint64_t>(batch, n - i);
          for (std::size_t k = 0; k < b; ++k) buf[k] = make_msg(i + k);
          for (std::size_t done = 0; done < b;) {
            const std::size_t k = q.try_push_batch(std::span<const Msg64>(buf.data() + done, b - done));
            if (k == 0) relax<Relax>();
            done += k;
          }
          i += b;
        }
      },
      [&] {
        Checker c;
        std::vector<Msg64> buf(batch);
        for (std::uint64_t got = 0; got < n;) {
          const std::size_t k = q.try_pop_batch(std::span<Msg64>(buf.data(), batch));
          if (k == 0) relax<Relax>();
          for (std::size_t j = 0; j < k; ++j) c.take(buf[j]);
          got += k;
        }
        return c;
      });
}

template <bool Relax>
PairResult rwq_single(std::uint64_t n) {
  moodycamel::ReaderWriterQueue<Msg64> q(kCapacity);
  return run_pair(
      [&] {
        for (std::uint64_t i = 0; i < n; ++i) {
          const Msg64 m = make_msg(i);
          while (!q.try_enqueue(m)) relax<Relax>();  // never allocates: the queue stays bounded
        }
      },
      [&] {
        Checker c;  // local, so the compiler keeps it in registers
        Msg64 m;
        for (std::uint64_t i = 0; i < n; ++i) {
          while (!q.try_dequeue(m)) relax<Relax>();
          c.take(m);
        }
        return c;
      });
}

template <bool Relax>
PairResult rwcb_single(std::uint64_t n) {
  moodycamel::BlockingReaderWriterCircularBuffer<Msg64> q(kCapacity);
  return run_pair(
      [&] {
        for (std::uint64_t i = 0; i < n; ++i) {
          const Msg64 m = make_msg(i);
          while (!q.try_enqueue(m)) relax<Relax>();
        }
      },
      [&] {
        Checker c;  // local, so the compiler keeps it in registers
        Msg64 m;
        for (std::uint64_t i = 0; i < n; ++i) {
          while (!q.try_dequeue(m)) relax<Relax>();
          c.take(m);
        }
        return c;
      });
}

struct Variant {
  std::string key;
  std::string label;
  std::function<PairResult(std::uint64_t)> run;
  std::vector<double> rates;  // messages per second, one per repetition
};

}  // namespace

int main(int argc, char** argv) {
  const auto opt = rkbench::Options::parse(argc, argv, 11);
  const std::uint64_t n = opt.count(10'000'000);
  const bool pinned = rkbench::usable_cpus() >= 2;

  std::vector<Variant> variants;
  variants.push_back({"spsc.rwq", "moodycamel::ReaderWriterQueue try_enqueue/try_dequeue", rwq_single<true>, {}});
  variants.push_back({"spsc.rk_single", "ringkernel::SpscQueue try_push/try_pop", rk_single<true>, {}});
  for (std::size_t b : kBatchSizes)
    variants.push_back({"spsc.rk_batch" + std::to_string(b),
                        "ringkernel::SpscQueue try_push_batch/try_pop_batch (" + std::to_string(b) + ")",
                        [b](std::uint64_t m) { return rk_batch<true>(m, b); }, {}});
  variants.push_back({"spsc.rwcb", "moodycamel::BlockingReaderWriterCircularBuffer try_*", rwcb_single<true>, {}});
  variants.push_back({"spsc.rwq.hotspin", "moodycamel::ReaderWriterQueue, retry without pause", rwq_single<false>, {}});
  variants.push_back({"spsc.rk_single.hotspin", "ringkernel::SpscQueue try_push/try_pop, retry without pause",
                      rk_single<false>, {}});

  std::printf("SPSC throughput: %llu messages of %zu bytes, capacity %zu, %d repetitions, threads %s\n",
              static_cast<unsigned long long>(n), sizeof(Msg64), kCapacity, opt.reps,
              pinned ? "pinned to two CPUs" : "unpinned (one CPU)");
  // Warm-up: one short run of each (page faults, frequency, thread start-up).
  for (auto& v : variants) (void)v.run(std::min<std::uint64_t>(n, 1'000'000));
  // Interleaved repetitions: background load, if any, spreads over every variant.
  std::vector<double> c2c;
  for (int rep = 0; rep < opt.reps; ++rep) {
    c2c.push_back(rkbench::cache_line_round_trip_ns());
    for (auto& v : variants) {
      const PairResult r = v.run(n);
      if (r.check.out_of_order != 0 || r.check.expect != n || r.check.sum != Checker::expected_sum(n))
        rkbench::fail(v.label + ": consumer saw wrong or reordered messages");
      v.rates.push_back(static_cast<double>(n) / r.seconds);
    }
  }
  std::printf("messages per second (median of %d):\n", opt.reps);
  rkbench::report("spsc.cache_line_round_trip", "cache-line round trip CPU0<->CPU1 (machine state)",
                  rkbench::spread_of(c2c), "ns");
  // Ratios are paired: variant / ReaderWriterQueue (same spin policy) within one
  // repetition, then the median over repetitions. On a virtual machine whose vCPU placement
  // changes over time, this is steadier than a ratio of medians.
  std::map<std::string, const Variant*> by_key;
  for (auto& v : variants) by_key[v.key] = &v;
  for (auto& v : variants) {
    rkbench::report(v.key, v.label, rkbench::spread_of(v.rates), "Mmsg/s", 1e-6);
    const std::string base = v.key.ends_with(".hotspin") ? "spsc.rwq.hotspin" : "spsc.rwq";
    if (v.key == base) continue;
    std::vector<double> ratios;
    for (std::size_t i = 0; i < v.rates.size(); ++i) ratios.push_back(v.rates[i] / by_key[base]->rates[i]);
    rkbench::report(v.key + ".ratio", "  ratio to ReaderWriterQueue (paired)", rkbench::spread_of(ratios), "x");
  }
  const std::vector<double>& rwq = by_key["spsc.rwq"]->rates;
  for (const char* key : {"spsc.rk_single", "spsc.rk_batch32", "spsc.rk_batch64"}) {
    const std::vector<double>& ours = by_key[key]->rates;
    rkbench::summary(key, rkbench::spread_of(ours).median * 1e-6, rkbench::spread_of(rwq).median * 1e-6,
                     rkbench::paired_ratio(ours, rwq), "Mmsg/s", "moodycamel::ReaderWriterQueue");
  }
  return 0;
}
