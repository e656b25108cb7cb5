// ringkernel/pubsub.hpp — topic-based publish/subscribe between host code and kernels.
//
// Topics are '/'-separated level names ("alerts/high/velocity"). A subscription names a
// pattern: a level "*" matches exactly one level, a final level "#" matches the rest (zero
// or more levels, so "alerts/#" also matches "alerts"). Anything else containing '*' or
// '#', an empty level, or "#" before the last level is a malformed pattern, refused with
// ErrorCode::InvalidArgument.
//
// Publishers are host code (Broker::publish) and kernels (RingContext::publish). Every
// topic is registered first, with its message type; its id is the FNV-1a hash of the name
// (topic_id()), so a handler names a topic with a compile-time constant:
//
//     ctx.publish(topic_id("alerts/high/velocity"), alert);
//
// Each runtime owns one Broker (RingKernel::broker()); kernels of that runtime publish into
// it. A Broker can also be created on its own for host-only messaging.
//
// Delivery: a publish looks the topic up by id and finds its matching subscriptions in a
// per-topic list. That list is computed from the subscription index (a trie of pattern
// levels with '*' and '#' nodes) when the topic is registered, and updated for the affected
// topics on subscribe / unsubscribe; a publish never tests every subscription's pattern.
//
// Per subscription:
//  * QoS::AtMostOnce — a message is handed out once and never again.
//  * QoS::AtLeastOnce — a received message stays pending until ack(); one not acknowledged
//    within ack_timeout goes back to the front of the queue and is handed out again with
//    its redelivery count increased (after max_redeliveries, if set, it is dead-lettered
//    and counted). nack() asks for an immediate redelivery.
//  * A bounded queue: `capacity` counts queued plus unacknowledged messages. When it is
//    full the subscription's OverflowPolicy decides: Backpressure refuses the publish
//    (the publisher sees Status::QueueFull and nothing is delivered to anyone, so a retry
//    never duplicates), DropNewest / DropOldest discard a message and count it. No publish
//    ever blocks: publish() is non-blocking, publish_wait() retries within a deadline.
//  * Retained messages: a topic registered with TopicOptions::retain = N keeps its last N
//    messages; a new subscription receives the retained messages of every matching topic.
//  * Kernel subscribers: subscribe_kernel() delivers matching messages into a kernel's
//    input queue (topics of its request type), as if the host had sent them (at-most-once).
//    The kernel's input queue is the subscription's queue: when it is full, Backpressure
//    refuses the publish and both drop policies discard the new message (counted); a
//    message that loses a race for the last slot with another host sender is counted too.
//
// Thread-safety: every member function of Broker may be called from any thread. Publishing
// takes a shared lock on the index and the locks of the matching subscriptions in id order;
// subscribe / unsubscribe / topic registration take the index lock exclusively.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ringkernel/config.hpp"
#include "ringkernel/error.hpp"
#include "ringkernel/hlc.hpp"
#include "ringkernel/message.hpp"

namespace ringkernel {

class KernelHandle;
namespace detail {
class BrokerImpl;
class KernelCore;
}  // namespace detail

/// Numeric id of a topic: the 64-bit FNV-1a hash of its name.
using TopicId = std::uint64_t;
/// Id of a subscription on one Broker (never reused; 0 is never a valid id).
using SubscriptionId = std::uint64_t;

/// Topic id of a topic name; usable in handlers as a compile-time constant.
RK_HOST_DEVICE constexpr TopicId topic_id(std::string_view name) noexcept { return type_id_of_name(name); }
/// For string literals (the usual case in handlers): safe to evaluate at run time in device
/// code, where the std::string_view overload is not (see type_id_of_name(const char*)).
RK_HOST_DEVICE constexpr TopicId topic_id(const char* name) noexcept { return type_id_of_name(name); }

/// A validated subscription pattern.
class TopicPattern {
 public:
  /// Errors (InvalidArgument): empty pattern, empty level ("a//b", "/a", "a/"), a level
  /// mixing a wildcard with other characters ("a/b*", "a/#b"), "#" before the last level.
  static Result<TopicPattern> parse(std::string_view pattern);

  /// True when `topic` (a topic name, no wildcards) matches the pattern.
  bool matches(std::string_view topic) const noexcept;
  const std::string& str() const noexcept { return text_; }
  const std::vector<std::string>& levels() const noexcept { return levels_; }
  bool has_wildcards() const noexcept { return wildcards_; }

 private:
  std::string text_;
  std::vector<std::string> levels_;
  bool wildcards_ = false;
};

/// Checks a topic name for publishing: non-empty levels, no '*' or '#'.
Result<void> validate_topic_name(std::string_view name);

enum class QoS : std::uint8_t {
  AtMostOnce,   ///< handed out once; lost if the subscriber does not process it
  AtLeastOnce,  ///< pending until acknowledged; redelivered after ack_timeout
};
const char* to_string(QoS q) noexcept;

/// What a full subscription does with one more message.
enum class OverflowPolicy : std::uint8_t {
  Backpressure,  ///< refuse: the publisher gets Status::QueueFull, nobody gets the message
  DropNewest,    ///< discard the new message for this subscription (counted)
  DropOldest,    ///< discard the oldest queued message to make room (counted)
};
const char* to_string(OverflowPolicy p) noexcept;

struct TopicOptions {
  std::uint32_t retain = 0;  ///< messages kept for subscriptions made later (the last N)
};

struct SubscribeOptions {
  QoS qos = QoS::AtMostOnce;
  std::uint32_t capacity = 1024;  ///< queued + unacknowledged messages (at least 1)
  OverflowPolicy overflow = OverflowPolicy::Backpressure;
  std::chrono::nanoseconds ack_timeout = std::chrono::milliseconds(500);  ///< AtLeastOnce
  std::uint32_t max_redeliveries = 0;  ///< AtLeastOnce: 0 = unlimited, else dead-letter after
  bool receive_retained = true;        ///< deliver matching retained messages on subscribe
};

/// One message handed to a host subscriber.
struct Delivery {
  SubscriptionId subscription = 0;
  std::uint64_t delivery_id = 0;  ///< what ack() / nack() take; kept across redeliveries
  TopicId topic = 0;
  std::string_view topic_name;    ///< owned by the broker (valid while it lives)
  TypeId type = 0;
  HlcTimestamp timestamp{};       ///< the publisher's clock at publish
  std::uint32_t source = 0;       ///< 0 = host, else the publishing kernel's slot + 1
  std::uint32_t redeliveries = 0; ///< 0 on first delivery
  bool retained = false;          ///< came from the topic's retained messages
  std::vector<std::byte> payload;

  /// The payload as T; false (out untouched) when the type or size differs.
  template <RingMessage T>
  bool get(T& out) const noexcept {
    if (type != type_id_v<T> || payload.size() != sizeof(T)) return false;
    std::memcpy(&out, payload.data(), sizeof(T));
    return true;
  }
};

struct SubscriptionStats {
  std::uint64_t delivered = 0;      ///< messages accepted into the subscription
  std::uint64_t received = 0;       ///< handed out (first deliveries and redeliveries)
  std::uint64_t acknowledged = 0;
  std::uint64_t redelivered = 0;
  std::uint64_t dead_lettered = 0;  ///< beyond max_redeliveries
  std::uint64_t dropped = 0;        ///< discarded under DropNewest / DropOldest
  std::uint64_t refused = 0;        ///< publishes refused under Backpressure
  std::uint64_t queued = 0;         ///< waiting now
  std::uint64_t in_flight = 0;      ///< handed out, not yet acknowledged
};

struct TopicStats {
  std::string name;
  TopicId id = 0;
  std::uint64_t published = 0;   ///< publishes accepted
  std::uint64_t refused = 0;     ///< publishes refused with QueueFull
  std::uint64_t retained = 0;    ///< messages kept now
  std::uint64_t subscribers = 0; ///< matching subscriptions now
};

struct BrokerStats {
  std::uint64_t topics = 0;
  std::uint64_t subscriptions = 0;
  std::uint64_t published = 0;    ///< accepted publishes
  std::uint64_t delivered = 0;    ///< copies accepted into subscriptions
  std::uint64_t refused = 0;      ///< publishes refused with QueueFull
  std::uint64_t dropped = 0;      ///< copies discarded by drop policies or dead-lettered
  std::uint64_t unroutable = 0;   ///< publishes to an unknown topic id, or of the wrong type
};

namespace detail {
/// A kernel subscription of a topic, as a backend that delivers kernel publishes on its
/// device sees it.
struct KernelRoute {
  SubscriptionId id = 0;
  KernelCore* kernel = nullptr;
  OverflowPolicy overflow = OverflowPolicy::Backpressure;
};
/// Who a registered topic feeds: its kernel subscriptions, and whether anything else
/// (a host subscription, retained messages) needs each publish to reach the broker.
struct TopicRoute {
  TopicId topic = 0;
  TypeId type = 0;
  std::uint32_t size = 0;
  bool others = false;
  std::vector<KernelRoute> kernels;
};
/// Called with a fresh snapshot (and an increasing version) whenever topics or
/// subscriptions change; runs under the broker's index lock, so it must not call the broker.
using RouteListener = std::function<void(std::uint64_t version, const std::vector<TopicRoute>& routes)>;
}  // namespace detail

class Broker {
 public:
  /// A stand-alone broker with its own clock (node id 0 unless given).
  explicit Broker(std::uint64_t node_id = 0);
  /// A broker stamping host publishes with `clock` (the runtime's clock); the clock must
  /// outlive the broker.
  explicit Broker(HlcClock& clock);
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;
  ~Broker();  ///< wakes blocked receivers (they get an error), frees every queue

  // -- topics ---------------------------------------------------------------------------
  /// Registers topic `name` carrying messages of type T; returns topic_id(name). Calling it
  /// again with the same type returns the same id (options of the first call stay).
  /// Errors: InvalidArgument (malformed name, or registered with another type).
  template <RingMessage T>
  Result<TopicId> topic(std::string_view name, TopicOptions options = {}) {
    return topic_raw(name, type_id_v<T>, sizeof(T), options);
  }
  Result<TopicId> topic_raw(std::string_view name, TypeId type, std::uint32_t size, TopicOptions options = {});
  /// Name of a registered topic.
  std::optional<std::string> topic_name(TopicId id) const;
  /// Registered topics matching `pattern` (every topic for "#"), sorted by name.
  Result<std::vector<TopicStats>> topics(std::string_view pattern = "#") const;

  // -- publishing (any thread, never blocks) --------------------------------------------
  /// Ok: every matching subscription accepted it or dropped a message under its policy.
  /// QueueFull: a Backpressure subscription is full; nobody received the message.
  /// NoRoute: no topic with this id. InvalidMessage: T is not the topic's type.
  template <RingMessage T>
  Status publish(TopicId topic, const T& msg) noexcept {
    return publish_bytes(topic, type_id_v<T>, &msg, sizeof(T));
  }
  Status publish_bytes(TopicId topic, TypeId type, const void* payload, std::uint32_t size) noexcept;
  /// Retries a QueueFull publish until `timeout`; errors: QueueFull (still full), or the
  /// publish's error.
  template <RingMessage T>
  Result<void> publish_wait(TopicId topic, const T& msg, std::chrono::nanoseconds timeout) {
    return publish_wait_bytes(topic, type_id_v<T>, &msg, sizeof(T), timeout);
  }
  Result<void> publish_wait_bytes(TopicId topic, TypeId type, const void* payload, std::uint32_t size,
                                  std::chrono::nanoseconds timeout);
  /// Backends' entry point: a message published by kernel `source_slot` with the kernel's
  /// own stamp (merged into the broker's clock, so host events after it order after it).
  /// `delivered` names kernel subscriptions the backend has already delivered this
  /// message to on its device: the broker skips them.
  Status publish_from_kernel(TopicId topic, TypeId type, const void* payload, std::uint32_t size,
                             const HlcTimestamp& stamp, std::uint32_t source_slot,
                             std::span<const SubscriptionId> delivered = {}) noexcept;

  // -- subscribing ----------------------------------------------------------------------
  /// Errors: InvalidArgument (malformed pattern, capacity 0).
  Result<SubscriptionId> subscribe(std::string_view pattern, const SubscribeOptions& options = {});
  /// Delivers matching messages into `kernel`'s input queue (topics of its request type
  /// only). Only the runtime's own broker can feed its kernels; QoS must be AtMostOnce.
  /// The subscription ends by itself when the kernel's handle is destroyed.
  Result<SubscriptionId> subscribe_kernel(std::string_view pattern, const KernelHandle& kernel,
                                          const SubscribeOptions& options = {});
  /// Errors: InvalidArgument (unknown subscription). Blocked receivers get an error.
  Result<void> unsubscribe(SubscriptionId id);

  /// Takes the next message if one is there (an expired unacknowledged one first).
  /// Errors: InvalidArgument (unknown subscription), InvalidState (kernel subscription).
  Result<std::optional<Delivery>> try_receive(SubscriptionId id);
  /// Waits up to `timeout`. Errors: Timeout, InvalidArgument (unknown subscription, or
  /// unsubscribed while waiting), InvalidState (kernel subscription).
  Result<Delivery> receive(SubscriptionId id, std::chrono::nanoseconds timeout);
  /// Waits up to `timeout` for one message, then takes up to `max` that are there;
  /// appends to `out` and returns how many (0 after a timeout: not an error).
  Result<std::size_t> receive_batch(SubscriptionId id, std::vector<Delivery>& out, std::size_t max,
                                    std::chrono::nanoseconds timeout);
  /// At-least-once: the delivery is done. Errors: InvalidArgument (unknown subscription or
  /// delivery not pending — already acknowledged, or dead-lettered), InvalidState
  /// (at-most-once subscription).
  Result<void> ack(SubscriptionId id, std::uint64_t delivery_id);
  /// At-least-once: hand the delivery out again now (counts as a redelivery).
  Result<void> nack(SubscriptionId id, std::uint64_t delivery_id);

  // -- inspection -----------------------------------------------------------------------
  Result<SubscriptionStats> stats(SubscriptionId id) const;
  BrokerStats stats() const;
  HlcClock& clock() noexcept;

  /// Runtime hook: drops kernel subscriptions feeding `core` (its handle is going away).
  void forget_kernel(const detail::KernelCore& core) noexcept;
  /// Backend hooks for publish delivery on a device: `listener` gets the current routes
  /// at once and after every change, until cleared. One listener per owner.
  void set_route_listener(const void* owner, detail::RouteListener listener);
  void clear_route_listener(const void* owner) noexcept;
  /// Counts publishes a backend delivered on its device without the broker, so that
  /// BrokerStats::published / delivered / dropped cover them (per-subscription and
  /// per-topic figures do not).
  void count_device_deliveries(std::uint64_t published, std::uint64_t delivered, std::uint64_t dropped) noexcept;

 private:
  std::unique_ptr<detail::BrokerImpl> impl_;
};

}  // namespace ringkernel
