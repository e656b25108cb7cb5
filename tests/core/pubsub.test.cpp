// Broker: patterns, the subscription index, QoS, retained messages, bounded queues.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include <ringkernel/pubsub.hpp>

using namespace ringkernel;
using namespace std::chrono_literals;

namespace {

struct Tick {
  std::uint64_t seq;
  std::uint64_t producer;
};
RK_MESSAGE(Tick, "test.pubsub.Tick", seq, producer);

struct Other {
  std::uint32_t x;
  std::uint32_t y;
};
RK_MESSAGE(Other, "test.pubsub.Other", x, y);

std::uint64_t seq_of(const Delivery& d) {
  Tick t{};
  EXPECT_TRUE(d.get(t));
  return t.seq;
}

}  // namespace

// ---- patterns ---------------------------------------------------------------------------

TEST(TopicPattern, wildcards_match_one_level_or_the_rest) {
  struct Case {
    const char* pattern;
    const char* topic;
    bool match;
  } cases[] = {
      {"a/b/c", "a/b/c", true},   {"a/b/c", "a/b", false},    {"a/b", "a/b/c", false},
      {"a/*/c", "a/x/c", true},   {"a/*/c", "a/x/y/c", false}, {"a/*", "a", false},
      {"*", "a", true},           {"*", "a/b", false},         {"a/#", "a", true},
      {"a/#", "a/b/c/d", true},   {"a/#", "ab/c", false},      {"#", "x/y/z", true},
      {"*/b/#", "a/b", true},     {"*/b/#", "a/c/b", false},   {"alerts/*/velocity", "alerts/high/velocity", true},
      {"a/b", "a/bc", false},     {"a/bc", "a/b", false},
  };
  for (const Case& c : cases) {
    auto p = TopicPattern::parse(c.pattern);
    ASSERT_TRUE(p.ok()) << c.pattern << ": " << p.error().what();
    EXPECT_EQ(p->matches(c.topic), c.match) << c.pattern << " vs " << c.topic;
  }
}

TEST(TopicPattern, malformed_patterns_are_refused_with_the_reason) {
  for (const char* bad : {"", "a//b", "/a", "a/", "a/#/b", "#/a", "a/b*", "a/#b", "*a", "##", "a/**"}) {
    auto p = TopicPattern::parse(bad);
    ASSERT_FALSE(p.ok()) << "'" << bad << "' was accepted";
    EXPECT_EQ(p.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(p.error().message().find("malformed topic pattern"), std::string::npos) << p.error().message();
  }
  EXPECT_NE(TopicPattern::parse("a/#/b").error().message().find("last level"), std::string::npos);
  EXPECT_NE(TopicPattern::parse("a/b*").error().message().find("whole levels"), std::string::npos);
}

TEST(Broker, topic_names_with_wildcards_or_empty_levels_are_refused) {
  Broker b;
  EXPECT_FALSE(b.topic<Tick>("a/*").ok());
  EXPECT_FALSE(b.topic<Tick>("a/#").ok());
  EXPECT_FALSE(b.topic<Tick>("a//b").ok());
  EXPECT_FALSE(b.topic<Tick>("").ok());
  EXPECT_FALSE(b.subscribe("a/#/b").ok());
  EXPECT_EQ(b.stats().subscriptions, 0u);
}

TEST(Broker, a_topic_keeps_its_message_type) {
  Broker b;
  auto t = b.topic<Tick>("sensors/temp");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, topic_id("sensors/temp"));
  EXPECT_EQ(*b.topic<Tick>("sensors/temp"), *t);  // idempotent
  auto again = b.topic<Other>("sensors/temp");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(b.publish(*t, Other{1, 2}), Status::InvalidMessage);
  EXPECT_EQ(b.publish(topic_id("never/registered"), Tick{1, 0}), Status::NoRoute);
  EXPECT_EQ(b.stats().unroutable, 2u);
}

// ---- delivery through the index ---------------------------------------------------------

TEST(Broker, a_publish_reaches_exactly_the_matching_subscriptions) {
  Broker b;
  const TopicId hv = *b.topic<Tick>("alerts/high/velocity");
  const TopicId lg = *b.topic<Tick>("alerts/low/geo");
  const TopicId other = *b.topic<Tick>("metrics/cpu");
  const SubscriptionId all = *b.subscribe("alerts/#");
  const SubscriptionId high = *b.subscribe("alerts/high/*");
  const SubscriptionId geo = *b.subscribe("alerts/*/geo");
  const SubscriptionId every = *b.subscribe("#");

  ASSERT_EQ(b.publish(hv, Tick{1, 0}), Status::Ok);
  ASSERT_EQ(b.publish(lg, Tick{2, 0}), Status::Ok);
  ASSERT_EQ(b.publish(other, Tick{3, 0}), Status::Ok);

  auto drain = [&](SubscriptionId s) {
    std::vector<std::uint64_t> seqs;
    while (auto d = *b.try_receive(s)) seqs.push_back(seq_of(*d));
    return seqs;
  };
  EXPECT_EQ(drain(all), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(drain(high), (std::vector<std::uint64_t>{1}));
  EXPECT_EQ(drain(geo), (std::vector<std::uint64_t>{2}));
  EXPECT_EQ(drain(every), (std::vector<std::uint64_t>{1, 2, 3}));

  auto topics = b.topics("alerts/#");
  ASSERT_TRUE(topics.ok());
  ASSERT_EQ(topics->size(), 2u);
  EXPECT_EQ((*topics)[0].name, "alerts/high/velocity");
  EXPECT_EQ((*topics)[0].subscribers, 3u);  // all, high, every
  EXPECT_EQ((*topics)[1].subscribers, 3u);  // all, geo, every
}

TEST(Broker, topics_registered_after_a_subscription_are_matched_too) {
  Broker b;
  const SubscriptionId s = *b.subscribe("jobs/*/done");
  const TopicId t = *b.topic<Tick>("jobs/42/done");
  ASSERT_EQ(b.publish(t, Tick{7, 0}), Status::Ok);
  auto d = b.receive(s, 1s);
  ASSERT_TRUE(d.ok()) << d.error().what();
  EXPECT_EQ(d->topic, t);
  EXPECT_EQ(d->topic_name, "jobs/42/done");
  EXPECT_EQ(d->source, 0u);
  EXPECT_FALSE(d->timestamp.is_zero());
}

TEST(Broker, an_unsubscribed_pattern_gets_nothing_more) {
  Broker b;
  const TopicId t = *b.topic<Tick>("x/y");
  const SubscriptionId s1 = *b.subscribe("x/*");
  const SubscriptionId s2 = *b.subscribe("x/*");
  ASSERT_TRUE(b.unsubscribe(s1).ok());
  ASSERT_EQ(b.publish(t, Tick{1, 0}), Status::Ok);
  EXPECT_TRUE(b.try_receive(s2)->has_value());
  EXPECT_EQ((*b.topics("x/y"))[0].subscribers, 1u);
}

TEST(Broker, stamps_of_one_topic_increase) {
  Broker b;
  const TopicId t = *b.topic<Tick>("s");
  const SubscriptionId s = *b.subscribe("s");
  for (std::uint64_t i = 0; i < 100; ++i) ASSERT_EQ(b.publish(t, Tick{i, 0}), Status::Ok);
  HlcTimestamp prev{};
  for (int i = 0; i < 100; ++i) {
    auto d = b.receive(s, 1s);
    ASSERT_TRUE(d.ok());
    EXPECT_GT(d->timestamp, prev);
    prev = d->timestamp;
  }
}

// ---- unknown ids ------------------------------------------------------------------------

TEST(Broker, unknown_subscription_ids_are_a_clear_error) {
  Broker b;
  const SubscriptionId s = *b.subscribe("a");
  ASSERT_TRUE(b.unsubscribe(s).ok());
  for (SubscriptionId id : {SubscriptionId{0}, s, SubscriptionId{999}}) {
    auto r1 = b.try_receive(id);
    ASSERT_FALSE(r1.ok());
    EXPECT_EQ(r1.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(r1.error().message().find("unknown subscription id"), std::string::npos);
    EXPECT_FALSE(b.receive(id, 1ms).ok());
    EXPECT_FALSE(b.ack(id, 1).ok());
    EXPECT_FALSE(b.nack(id, 1).ok());
    EXPECT_FALSE(b.unsubscribe(id).ok());
    EXPECT_FALSE(b.stats(id).ok());
  }
}

TEST(Broker, a_blocked_receiver_is_woken_by_unsubscribe) {
  Broker b;
  const SubscriptionId s = *b.subscribe("a");
  std::atomic<bool> done{false};
  Result<Delivery> got = Error(ErrorCode::Timeout, "not yet");
  std::thread t([&] {
    got = b.receive(s, 10s);
    done = true;
  });
  std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(b.unsubscribe(s).ok());
  t.join();
  EXPECT_TRUE(done);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().code(), ErrorCode::InvalidArgument);
}

TEST(Broker, receive_times_out_with_an_error) {
  Broker b;
  const SubscriptionId s = *b.subscribe("a");
  const auto t0 = std::chrono::steady_clock::now();
  auto r = b.receive(s, 20ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::Timeout);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 20ms);
}

// ---- QoS ----------------------------------------------------------------------------------

TEST(Broker, at_most_once_deliveries_are_never_repeated) {
  Broker b;
  const TopicId t = *b.topic<Tick>("q");
  const SubscriptionId s = *b.subscribe("q", SubscribeOptions{.qos = QoS::AtMostOnce, .ack_timeout = 5ms});
  ASSERT_EQ(b.publish(t, Tick{1, 0}), Status::Ok);
  ASSERT_TRUE(b.receive(s, 1s).ok());
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(b.try_receive(s)->has_value());
  auto ack = b.ack(s, 1);
  ASSERT_FALSE(ack.ok());
  EXPECT_EQ(ack.error().code(), ErrorCode::InvalidState);
}

TEST(Broker, at_least_once_redelivers_until_acknowledged) {
  Broker b;
  const TopicId t = *b.topic<Tick>("q");
  const SubscriptionId s = *b.subscribe("q", SubscribeOptions{.qos = QoS::AtLeastOnce, .ack_timeout = 20ms});
  ASSERT_EQ(b.publish(t, Tick{1, 0}), Status::Ok);
  auto first = b.receive(s, 1s);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->redeliveries, 0u);
  EXPECT_FALSE(b.try_receive(s)->has_value());  // pending, not yet expired

  const auto t0 = std::chrono::steady_clock::now();
  auto again = b.receive(s, 1s);  // wakes up when the ack deadline passes
  ASSERT_TRUE(again.ok()) << again.error().what();
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 10ms);
  EXPECT_EQ(again->delivery_id, first->delivery_id);
  EXPECT_EQ(again->redeliveries, 1u);
  EXPECT_EQ(seq_of(*again), 1u);

  ASSERT_TRUE(b.ack(s, again->delivery_id).ok());
  std::this_thread::sleep_for(40ms);
  EXPECT_FALSE(b.try_receive(s)->has_value());
  auto twice = b.ack(s, again->delivery_id);
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code(), ErrorCode::InvalidArgument);
  const SubscriptionStats st = *b.stats(s);
  EXPECT_EQ(st.redelivered, 1u);
  EXPECT_EQ(st.acknowledged, 1u);
  EXPECT_EQ(st.in_flight, 0u);
}

TEST(Broker, redelivered_messages_come_before_newer_ones) {
  Broker b;
  const TopicId t = *b.topic<Tick>("q");
  const SubscriptionId s = *b.subscribe("q", SubscribeOptions{.qos = QoS::AtLeastOnce, .ack_timeout = 10ms});
  ASSERT_EQ(b.publish(t, Tick{1, 0}), Status::Ok);
  ASSERT_TRUE(b.receive(s, 1s).ok());
  ASSERT_EQ(b.publish(t, Tick{2, 0}), Status::Ok);
  std::this_thread::sleep_for(15ms);
  auto d = b.receive(s, 1s);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(seq_of(*d), 1u);
  EXPECT_EQ(d->redeliveries, 1u);
}

TEST(Broker, nack_redelivers_at_once_and_max_redeliveries_dead_letters) {
  Broker b;
  const TopicId t = *b.topic<Tick>("q");
  const SubscriptionId s =
      *b.subscribe("q", SubscribeOptions{.qos = QoS::AtLeastOnce, .ack_timeout = 10s, .max_redeliveries = 2});
  ASSERT_EQ(b.publish(t, Tick{1, 0}), Status::Ok);
  for (std::uint32_t i = 0; i <= 2; ++i) {
    auto d = b.try_receive(s);
    ASSERT_TRUE(d.ok() && d->has_value()) << "round " << i;
    EXPECT_EQ((*d)->redeliveries, i);
    ASSERT_TRUE(b.nack(s, (*d)->delivery_id).ok());
  }
  EXPECT_FALSE(b.try_receive(s)->has_value());  // third nack: dead-lettered
  const SubscriptionStats st = *b.stats(s);
  EXPECT_EQ(st.dead_lettered, 1u);
  EXPECT_EQ(st.redelivered, 2u);
  EXPECT_EQ(b.stats().dropped, 1u);
}

// ---- retained -----------------------------------------------------------------------------

TEST(Broker, a_new_subscription_receives_the_last_retained_messages) {
  Broker b;
  const TopicId t = *b.topic<Tick>("status/a", TopicOptions{.retain = 3});
  const TopicId u = *b.topic<Tick>("status/b", TopicOptions{.retain = 1});
  const TopicId none = *b.topic<Tick>("status/c");
  for (std::uint64_t i = 1; i <= 5; ++i) ASSERT_EQ(b.publish(t, Tick{i, 0}), Status::Ok);
  ASSERT_EQ(b.publish(u, Tick{100, 0}), Status::Ok);
  ASSERT_EQ(b.publish(none, Tick{200, 0}), Status::Ok);

  const SubscriptionId s = *b.subscribe("status/*");
  std::vector<std::uint64_t> seqs;
  while (auto d = *b.try_receive(s)) {
    EXPECT_TRUE(d->retained);
    seqs.push_back(seq_of(*d));
  }
  EXPECT_EQ(seqs, (std::vector<std::uint64_t>{3, 4, 5, 100}));

  const SubscriptionId fresh = *b.subscribe("status/a", SubscribeOptions{.receive_retained = false});
  EXPECT_FALSE(b.try_receive(fresh)->has_value());
  EXPECT_EQ((*b.topics("status/a"))[0].retained, 3u);
}

// ---- bounded queues and backpressure ------------------------------------------------------

TEST(Broker, a_subscriber_that_stops_reading_applies_backpressure_without_blocking) {
  Broker b;
  const TopicId t = *b.topic<Tick>("feed");
  const SubscriptionId slow = *b.subscribe("feed", SubscribeOptions{.capacity = 4});  // never reads
  const SubscriptionId fast = *b.subscribe("feed", SubscribeOptions{.capacity = 1024, .overflow = OverflowPolicy::DropNewest});
  for (std::uint64_t i = 0; i < 4; ++i) ASSERT_EQ(b.publish(t, Tick{i, 0}), Status::Ok);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(b.publish(t, Tick{4, 0}), Status::QueueFull);
  auto waited = b.publish_wait(t, Tick{4, 0}, 30ms);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);  // bounded, never forever
  ASSERT_FALSE(waited.ok());
  EXPECT_EQ(waited.error().code(), ErrorCode::QueueFull);
  // All or nothing: the other subscriber did not get the refused message either.
  EXPECT_EQ(b.stats(fast)->queued, 4u);
  EXPECT_GE(b.stats(slow)->refused, 2u);
  EXPECT_GE(b.stats().refused, 2u);
  EXPECT_GE((*b.topics("feed"))[0].refused, 2u);
  // Room again once the slow subscriber reads.
  ASSERT_TRUE(b.try_receive(slow)->has_value());
  EXPECT_EQ(b.publish(t, Tick{4, 0}), Status::Ok);
}

TEST(Broker, unacknowledged_messages_count_against_the_capacity) {
  Broker b;
  const TopicId t = *b.topic<Tick>("feed");
  const SubscriptionId s = *b.subscribe("feed", SubscribeOptions{.qos = QoS::AtLeastOnce, .capacity = 2, .ack_timeout = 10s});
  ASSERT_EQ(b.publish(t, Tick{1, 0}), Status::Ok);
  ASSERT_EQ(b.publish(t, Tick{2, 0}), Status::Ok);
  auto d1 = b.receive(s, 1s);
  ASSERT_TRUE(d1.ok());
  EXPECT_EQ(b.publish(t, Tick{3, 0}), Status::QueueFull);  // one queued + one in flight
  ASSERT_TRUE(b.ack(s, d1->delivery_id).ok());
  EXPECT_EQ(b.publish(t, Tick{3, 0}), Status::Ok);
}

TEST(Broker, drop_policies_count_what_they_discard) {
  Broker b;
  const TopicId t = *b.topic<Tick>("feed");
  const SubscriptionId newest = *b.subscribe("feed", SubscribeOptions{.capacity = 4, .overflow = OverflowPolicy::DropNewest});
  const SubscriptionId oldest = *b.subscribe("feed", SubscribeOptions{.capacity = 4, .overflow = OverflowPolicy::DropOldest});
  for (std::uint64_t i = 0; i < 10; ++i) ASSERT_EQ(b.publish(t, Tick{i, 0}), Status::Ok);
  auto drain = [&](SubscriptionId s) {
    std::vector<std::uint64_t> seqs;
    while (auto d = *b.try_receive(s)) seqs.push_back(seq_of(*d));
    return seqs;
  };
  EXPECT_EQ(b.stats(newest)->dropped, 6u);
  EXPECT_EQ(b.stats(oldest)->dropped, 6u);
  EXPECT_EQ(drain(newest), (std::vector<std::uint64_t>{0, 1, 2, 3}));
  EXPECT_EQ(drain(oldest), (std::vector<std::uint64_t>{6, 7, 8, 9}));
  EXPECT_EQ(b.stats().dropped, 12u);
}

TEST(Broker, capacity_zero_is_refused) {
  Broker b;
  auto s = b.subscribe("a", SubscribeOptions{.capacity = 0});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::InvalidArgument);
}

// ---- concurrency --------------------------------------------------------------------------

TEST(Broker, concurrent_publishers_lose_nothing_and_keep_per_publisher_order) {
  Broker b;
  const TopicId t = *b.topic<Tick>("load/x");
  const SubscriptionId s = *b.subscribe("load/#", SubscribeOptions{.qos = QoS::AtLeastOnce, .capacity = 256, .ack_timeout = 10s});
  constexpr int kProducers = 3;
  constexpr std::uint64_t kEach = 5000;
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (std::uint64_t i = 0; i < kEach; ++i) {
        auto r = b.publish_wait(t, Tick{i, static_cast<std::uint64_t>(p)}, 10s);
        ASSERT_TRUE(r.ok()) << r.error().what();
      }
    });
  }
  std::vector<std::uint64_t> next(kProducers, 0);
  std::vector<Delivery> batch;
  std::uint64_t total = 0;
  while (total < kProducers * kEach) {
    batch.clear();
    auto n = b.receive_batch(s, batch, 64, 5s);
    ASSERT_TRUE(n.ok());
    ASSERT_GT(*n, 0u) << "stalled after " << total;
    for (const Delivery& d : batch) {
      Tick tk{};
      ASSERT_TRUE(d.get(tk));
      EXPECT_EQ(tk.seq, next[tk.producer]) << "producer " << tk.producer;
      next[tk.producer] = tk.seq + 1;
      ASSERT_TRUE(b.ack(s, d.delivery_id).ok());
    }
    total += *n;
  }
  for (auto& th : producers) th.join();
  EXPECT_EQ(b.stats().published, kProducers * kEach);
  EXPECT_EQ(b.stats(s)->acknowledged, kProducers * kEach);
}

TEST(Broker, subscribing_while_publishing_is_safe) {
  Broker b;
  const TopicId t = *b.topic<Tick>("churn/a");
  std::atomic<bool> stop{false};
  std::thread publisher([&] {
    std::uint64_t i = 0;
    while (!stop.load()) (void)b.publish(t, Tick{i++, 0});
  });
  for (int i = 0; i < 200; ++i) {
    auto s = b.subscribe(i % 2 ? "churn/#" : "churn/*", SubscribeOptions{.capacity = 8, .overflow = OverflowPolicy::DropOldest});
    ASSERT_TRUE(s.ok());
    (void)b.try_receive(*s);
    ASSERT_TRUE(b.unsubscribe(*s).ok());
  }
  stop = true;
  publisher.join();
  EXPECT_EQ(b.stats().subscriptions, 0u);
}

TEST(Broker, a_route_listener_sees_every_change_in_order) {
  Broker b;
  std::vector<std::uint64_t> versions;
  std::vector<detail::TopicRoute> last;
  b.set_route_listener(&b, [&](std::uint64_t v, const std::vector<detail::TopicRoute>& r) {
    versions.push_back(v);
    last = r;
  });
  ASSERT_EQ(versions.size(), 1u);  // the current routes at once
  EXPECT_TRUE(last.empty());
  const TopicId t = b.topic<Tick>("a/b").value();
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].topic, t);
  EXPECT_EQ(last[0].type, type_id_v<Tick>);
  EXPECT_FALSE(last[0].others);  // nobody listens yet
  const SubscriptionId s = b.subscribe("a/#").value();
  EXPECT_TRUE(last[0].others);   // a host subscriber: the broker must see each publish
  EXPECT_TRUE(last[0].kernels.empty());
  ASSERT_TRUE(b.unsubscribe(s).ok());
  EXPECT_FALSE(last[0].others);
  (void)b.topic<Other>("kept", TopicOptions{.retain = 2}).value();
  for (const auto& r : last) {
    if (r.topic == topic_id("kept")) {
      EXPECT_TRUE(r.others);  // retained messages live in the broker
    }
  }
  ASSERT_EQ(versions.size(), 5u);
  for (std::size_t i = 1; i < versions.size(); ++i) EXPECT_GT(versions[i], versions[i - 1]);
  b.clear_route_listener(&b);
  (void)b.subscribe("a/#").value();
  EXPECT_EQ(versions.size(), 5u);
}

TEST(Broker, a_kernel_publish_skips_the_subscriptions_its_device_already_served) {
  Broker b;
  const TopicId t = b.topic<Tick>("served").value();
  const SubscriptionId served = b.subscribe("served").value();
  const SubscriptionId other = b.subscribe("#").value();
  const SubscriptionId skip[] = {served};
  const Tick tick{7, 0};
  ASSERT_EQ(b.publish_from_kernel(t, type_id_v<Tick>, &tick, sizeof tick, HlcTimestamp{1, 0, 9}, 3, skip),
            Status::Ok);
  EXPECT_FALSE(b.try_receive(served).value().has_value());
  auto d = b.try_receive(other).value();
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(seq_of(*d), 7u);
  EXPECT_EQ(d->source, 4u);
  b.count_device_deliveries(2, 3, 1);
  const BrokerStats st = b.stats();
  EXPECT_EQ(st.published, 3u);
  EXPECT_EQ(st.delivered, 4u);
  EXPECT_EQ(st.dropped, 1u);
}
