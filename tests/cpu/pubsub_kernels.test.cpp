// Pub/sub with kernels on the CPU backend: kernels as publishers (ctx.publish) and as
// subscribers (messages delivered into their input queue).
#include <gtest/gtest.h>

#include <thread>

#include "product_kernels.hpp"

using namespace ringkernel;
using namespace std::chrono_literals;
using ptest::PublishReport;
using ptest::PublishRequest;
using ptest::Tick;

namespace {

class KernelPubSub : public ::testing::Test {
 protected:
  RingKernel rt = RingKernel::builder().backend(Backend::Cpu).build().value();
  LaunchOptions opts(const char* id) {
    LaunchOptions o{.block_size = 1, .input_queue_capacity = 256, .output_queue_capacity = 256};
    o.kernel_id = id;
    return o;
  }
};

}  // namespace

TEST_F(KernelPubSub, a_kernel_publishes_to_a_host_subscriber_with_its_own_stamp) {
  Broker& b = rt.broker();
  const TopicId t = b.topic<Tick>("sensors/a").value();
  const SubscriptionId s = b.subscribe("sensors/*").value();
  KernelHandle pub = rt.launch("ptest.publisher", opts("pub")).value();
  auto report = pub.call<PublishReport>(PublishRequest{t, 100, 50, 0}, 5s);
  ASSERT_TRUE(report.ok()) << report.error().what();
  EXPECT_EQ(report->ok, 50u);
  HlcTimestamp prev = report->request_stamp;
  for (std::uint64_t i = 0; i < 50; ++i) {
    auto d = b.receive(s, 2s);
    ASSERT_TRUE(d.ok()) << d.error().what();
    Tick tick{};
    ASSERT_TRUE(d->get(tick));
    EXPECT_EQ(tick.seq, 100 + i);
    EXPECT_EQ(d->source, pub.slot() + 1);  // published by the kernel
    EXPECT_EQ(d->topic_name, "sensors/a");
    EXPECT_GT(d->timestamp, prev) << "a publish must order after the request that caused it";
    prev = d->timestamp;
  }
  // Host events after the delivery order after the kernel's stamp (the broker merged it).
  EXPECT_GT(rt.clock().tick(), prev);
}

TEST_F(KernelPubSub, a_kernel_publishing_to_an_unknown_topic_gets_no_route) {
  KernelHandle pub = rt.launch("ptest.publisher", opts("pub")).value();
  auto report = pub.call<PublishReport>(PublishRequest{topic_id("nobody/registered/this"), 0, 3, 0}, 5s);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->no_route, 3u);
  EXPECT_EQ(rt.broker().stats().unroutable, 3u);
}

TEST_F(KernelPubSub, a_full_subscriber_pushes_back_on_a_kernel_that_never_blocks) {
  Broker& b = rt.broker();
  const TopicId t = b.topic<Tick>("feed").value();
  const SubscriptionId s = b.subscribe("feed", SubscribeOptions{.capacity = 4}).value();  // never read below
  KernelHandle pub = rt.launch("ptest.publisher", opts("pub")).value();
  const auto t0 = std::chrono::steady_clock::now();
  auto report = pub.call<PublishReport>(PublishRequest{t, 0, 10, 0}, 5s);
  ASSERT_TRUE(report.ok()) << report.error().what();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_EQ(report->ok, 4u);
  EXPECT_EQ(report->queue_full, 6u);
  EXPECT_EQ(b.stats(s)->refused, 6u);
  EXPECT_EQ(b.stats(s)->queued, 4u);
}

TEST_F(KernelPubSub, a_kernel_retrying_on_backpressure_delivers_everything_once_the_host_reads) {
  Broker& b = rt.broker();
  const TopicId t = b.topic<Tick>("feed").value();
  const SubscriptionId s = b.subscribe("feed", SubscribeOptions{.qos = QoS::AtLeastOnce, .capacity = 8}).value();
  KernelHandle pub = rt.launch("ptest.publisher", opts("pub")).value();
  ASSERT_EQ(pub.try_send(PublishRequest{t, 0, 500, 1}), Status::Ok);
  for (std::uint64_t i = 0; i < 500; ++i) {
    auto d = b.receive(s, 5s);
    ASSERT_TRUE(d.ok()) << "message " << i << ": " << d.error().what();
    Tick tick{};
    ASSERT_TRUE(d->get(tick));
    EXPECT_EQ(tick.seq, i);
    ASSERT_TRUE(b.ack(s, d->delivery_id).ok());
  }
  auto report = pub.receive<PublishReport>(5s);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->ok, 500u);
  EXPECT_GT(b.stats(s)->refused, 0u);  // it did push back along the way
}

TEST_F(KernelPubSub, a_kernel_subscriber_receives_matching_messages_in_its_input) {
  Broker& b = rt.broker();
  const TopicId temp = b.topic<Tick>("sensors/room1/temp").value();
  const TopicId hum = b.topic<Tick>("sensors/room1/humidity").value();
  const TopicId other = b.topic<PublishReport>("sensors/room1/report").value();  // another type: not delivered
  KernelHandle sink = rt.launch("ptest.sink", opts("sink")).value();
  const SubscriptionId s = b.subscribe_kernel("sensors/*/temp", sink).value();
  for (std::uint64_t i = 0; i < 100; ++i) {
    ASSERT_EQ(b.publish(temp, Tick{i, 0}), Status::Ok);
    ASSERT_EQ(b.publish(hum, Tick{1000 + i, 0}), Status::Ok);
  }
  ASSERT_EQ(b.publish(other, PublishReport{}), Status::Ok);
  for (std::uint64_t i = 0; i < 100; ++i) {
    auto r = sink.receive<Tick>(2s);
    ASSERT_TRUE(r.ok()) << r.error().what();
    EXPECT_EQ(r->seq, i);
    EXPECT_EQ(r->value, i + 1);
  }
  EXPECT_FALSE(sink.receive<Tick>(50ms).ok());
  EXPECT_EQ(b.stats(s)->delivered, 100u);
  // A kernel subscription is read through the kernel, not the broker.
  auto direct = b.try_receive(s);
  ASSERT_FALSE(direct.ok());
  EXPECT_EQ(direct.error().code(), ErrorCode::InvalidState);
}

TEST_F(KernelPubSub, a_kernel_feeds_another_kernel_through_a_topic) {
  Broker& b = rt.broker();
  const TopicId t = b.topic<Tick>("pipeline/stage1").value();
  KernelHandle sink = rt.launch("ptest.sink", opts("sink")).value();
  KernelHandle pub = rt.launch("ptest.publisher", opts("pub")).value();
  ASSERT_TRUE(b.subscribe_kernel("pipeline/#", sink).ok());
  auto report = pub.call<PublishReport>(PublishRequest{t, 0, 200, 1}, 5s);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->ok, 200u);
  for (std::uint64_t i = 0; i < 200; ++i) {
    auto r = sink.receive<Tick>(2s);
    ASSERT_TRUE(r.ok()) << r.error().what();
    EXPECT_EQ(r->seq, i);
  }
}

TEST_F(KernelPubSub, a_full_kernel_subscriber_applies_its_overflow_policy) {
  Broker& b = rt.broker();
  const TopicId t = b.topic<Tick>("burst").value();
  LaunchOptions o = opts("sink");
  o.auto_activate = false;  // launched, not processing: its input queue fills
  o.input_queue_capacity = 8;
  KernelHandle sink = rt.launch("ptest.sink", o).value();
  const SubscriptionId back = b.subscribe_kernel("burst", sink).value();
  for (std::uint64_t i = 0; i < 8; ++i) ASSERT_EQ(b.publish(t, Tick{i, 0}), Status::Ok);
  EXPECT_EQ(b.publish(t, Tick{8, 0}), Status::QueueFull);
  EXPECT_EQ(b.stats(back)->refused, 1u);
  ASSERT_TRUE(b.unsubscribe(back).ok());
  const SubscriptionId drop =
      b.subscribe_kernel("burst", sink, SubscribeOptions{.overflow = OverflowPolicy::DropNewest}).value();
  EXPECT_EQ(b.publish(t, Tick{9, 0}), Status::Ok);
  EXPECT_EQ(b.stats(drop)->dropped, 1u);
  ASSERT_TRUE(sink.activate().ok());
  for (std::uint64_t i = 0; i < 8; ++i) {
    auto r = sink.receive<Tick>(2s);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->seq, i);
  }
}

TEST_F(KernelPubSub, kernel_subscriptions_end_with_the_kernel) {
  Broker& b = rt.broker();
  const TopicId t = b.topic<Tick>("x").value();
  {
    KernelHandle sink = rt.launch("ptest.sink", opts("sink")).value();
    ASSERT_TRUE(b.subscribe_kernel("x", sink).ok());
    EXPECT_EQ(b.stats().subscriptions, 1u);
  }
  EXPECT_EQ(b.stats().subscriptions, 0u);
  EXPECT_EQ(b.publish(t, Tick{1, 0}), Status::Ok);
}

TEST_F(KernelPubSub, kernel_subscriptions_are_checked) {
  KernelHandle sink = rt.launch("ptest.sink", opts("sink")).value();
  auto alo = rt.broker().subscribe_kernel("x", sink, SubscribeOptions{.qos = QoS::AtLeastOnce});
  ASSERT_FALSE(alo.ok());
  EXPECT_EQ(alo.error().code(), ErrorCode::NotImplemented);
  Broker standalone;
  auto foreign = standalone.subscribe_kernel("x", sink);
  ASSERT_FALSE(foreign.ok());
  EXPECT_EQ(foreign.error().code(), ErrorCode::InvalidArgument);
  EXPECT_FALSE(rt.broker().subscribe_kernel("x/#/y", sink).ok());
  ASSERT_TRUE(sink.terminate().ok());
  auto dead = rt.broker().subscribe_kernel("x", sink);
  ASSERT_FALSE(dead.ok());
  EXPECT_EQ(dead.error().code(), ErrorCode::KernelTerminated);
}
