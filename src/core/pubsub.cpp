// Broker: topic registry, subscription index (a trie of pattern levels), per-subscription
// bounded queues with QoS, retained messages.
//
// Lock order (never taken in the other direction):
//   index_mutex_ (shared: publish, lookups; exclusive: topics, subscribe, unsubscribe)
//     -> Topic::mutex -> Subscription::mutex of each matching subscription, by ascending id
// Receivers take only their subscription's mutex (they hold a shared_ptr to it, so an
// unsubscribe from another thread cannot free it under them).
#include "ringkernel/pubsub.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "ringkernel/runtime.hpp"

namespace ringkernel {

const char* to_string(QoS q) noexcept { return q == QoS::AtMostOnce ? "at-most-once" : "at-least-once"; }

const char* to_string(OverflowPolicy p) noexcept {
  switch (p) {
    case OverflowPolicy::Backpressure: return "backpressure";
    case OverflowPolicy::DropNewest: return "drop-newest";
    case OverflowPolicy::DropOldest: return "drop-oldest";
  }
  return "?";
}

namespace {

std::vector<std::string_view> split_levels(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = s.find('/', start);
    if (slash == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, slash - start));
    start = slash + 1;
  }
}

Error bad_pattern(std::string_view pattern, const std::string& why) {
  return Error(ErrorCode::InvalidArgument, "malformed topic pattern '" + std::string(pattern) + "': " + why);
}

}  // namespace

Result<TopicPattern> TopicPattern::parse(std::string_view pattern) {
  if (pattern.empty()) return bad_pattern(pattern, "it is empty");
  TopicPattern p;
  p.text_ = std::string(pattern);
  const auto levels = split_levels(pattern);
  for (std::size_t i = 0; i < levels.size(); ++i) {
    const std::string_view l = levels[i];
    if (l.empty()) return bad_pattern(pattern, "level " + std::to_string(i + 1) + " is empty (levels are separated by one '/')");
    if (l == "#") {
      if (i + 1 != levels.size()) return bad_pattern(pattern, "'#' matches the rest of a topic and must be the last level");
      p.wildcards_ = true;
    } else if (l == "*") {
      p.wildcards_ = true;
    } else if (l.find_first_of("*#") != std::string_view::npos) {
      return bad_pattern(pattern, "level '" + std::string(l) + "' mixes a wildcard with other characters ('*' and '#' must be whole levels)");
    }
    p.levels_.emplace_back(l);
  }
  return p;
}

bool TopicPattern::matches(std::string_view topic) const noexcept {
  std::size_t pos = 0;
  for (std::size_t i = 0; i < levels_.size(); ++i) {
    const std::string& l = levels_[i];
    if (l == "#") return true;  // the rest, zero levels included ("a/#" matches "a")
    if (pos > topic.size()) return false;  // topic has fewer levels
    const std::size_t slash = topic.find('/', pos);
    const std::size_t end = slash == std::string_view::npos ? topic.size() : slash;
    const std::string_view level = topic.substr(pos, end - pos);
    if (l != "*" && l != level) return false;
    pos = end + 1;  // past the '/', or topic.size() + 1 at the end
  }
  return pos == topic.size() + 1;
}

Result<void> validate_topic_name(std::string_view name) {
  if (name.empty()) return Error(ErrorCode::InvalidArgument, "topic name is empty");
  const auto levels = split_levels(name);
  for (std::size_t i = 0; i < levels.size(); ++i) {
    if (levels[i].empty())
      return Error(ErrorCode::InvalidArgument, "topic name '" + std::string(name) + "': level " + std::to_string(i + 1) + " is empty");
    if (levels[i].find_first_of("*#") != std::string_view::npos)
      return Error(ErrorCode::InvalidArgument, "topic name '" + std::string(name) +
                                                   "' contains a wildcard; wildcards belong in subscription patterns");
  }
  return {};
}

namespace detail {

namespace {

using Clock = std::chrono::steady_clock;

struct Topic;

struct Pending {
  std::uint64_t id = 0;
  const Topic* topic = nullptr;
  HlcTimestamp stamp{};
  std::uint32_t source = 0;
  std::uint32_t redeliveries = 0;
  bool retained = false;
  std::vector<std::byte> payload;
  Clock::time_point deadline{};  // in flight: when it is redelivered
};

struct Subscription {
  SubscriptionId id = 0;
  TopicPattern pattern;
  SubscribeOptions options;
  KernelCore* kernel = nullptr;  // kernel subscription: deliver into its input queue

  std::mutex mutex;
  std::condition_variable cv;
  std::deque<Pending> queue;                        // not handed out yet
  std::map<std::uint64_t, Pending> in_flight;       // at-least-once: handed out, unacknowledged
  std::deque<std::pair<Clock::time_point, std::uint64_t>> deadlines;  // in hand-out order
  std::uint64_t next_delivery = 1;
  bool closed = false;
  SubscriptionStats stats;

  std::size_t used() const noexcept { return queue.size() + in_flight.size(); }
  bool full() const noexcept {
    if (kernel) {
      const QueueStats q = kernel->input.stats();
      return q.enqueued - q.dequeued >= kernel->input.capacity;
    }
    return used() >= options.capacity;
  }
};

struct Topic {
  std::string name;
  TopicId id = 0;
  TypeId type = 0;
  std::uint32_t size = 0;
  TopicOptions options;
  std::mutex mutex;                        // publish order and the retained messages
  std::deque<Pending> retained;            // the last options.retain messages
  std::vector<Subscription*> subscribers;  // matching subscriptions, ascending id (index lock)
  std::atomic<std::uint64_t> published{0};
  std::atomic<std::uint64_t> refused{0};
};

/// The subscription index: one node per pattern level. A pattern's subscription sits on
/// the node of its last level (`exact`), or, for a final '#', on the node before it (`rest`).
struct TrieNode {
  std::map<std::string, std::unique_ptr<TrieNode>, std::less<>> children;
  std::unique_ptr<TrieNode> star;
  std::vector<Subscription*> exact;
  std::vector<Subscription*> rest;

  void insert(const std::vector<std::string>& levels, std::size_t i, Subscription* s) {
    if (i == levels.size()) {
      exact.push_back(s);
      return;
    }
    const std::string& l = levels[i];
    if (l == "#") {
      rest.push_back(s);
      return;
    }
    std::unique_ptr<TrieNode>& child = l == "*" ? star : children[l];
    if (!child) child = std::make_unique<TrieNode>();
    child->insert(levels, i + 1, s);
  }

  /// Removes `s`; true when this node became empty (the caller frees it).
  bool erase(const std::vector<std::string>& levels, std::size_t i, Subscription* s) {
    auto drop = [s](std::vector<Subscription*>& v) { v.erase(std::remove(v.begin(), v.end(), s), v.end()); };
    if (i == levels.size()) {
      drop(exact);
    } else if (levels[i] == "#") {
      drop(rest);
    } else if (levels[i] == "*") {
      if (star && star->erase(levels, i + 1, s)) star.reset();
    } else if (auto it = children.find(levels[i]); it != children.end()) {
      if (it->second->erase(levels, i + 1, s)) children.erase(it);
    }
    return exact.empty() && rest.empty() && children.empty() && !star;
  }

  /// Every subscription whose pattern matches the topic of `levels` (each at most once:
  /// a pattern has one path through the trie).
  void collect(const std::vector<std::string_view>& levels, std::size_t i, std::vector<Subscription*>& out) const {
    out.insert(out.end(), rest.begin(), rest.end());
    if (i == levels.size()) {
      out.insert(out.end(), exact.begin(), exact.end());
      return;
    }
    if (auto it = children.find(levels[i]); it != children.end()) it->second->collect(levels, i + 1, out);
    if (star) star->collect(levels, i + 1, out);
  }
};

Delivery to_delivery(const Subscription& s, const Pending& p) {
  Delivery d;
  d.subscription = s.id;
  d.delivery_id = p.id;
  d.topic = p.topic->id;
  d.topic_name = p.topic->name;
  d.type = p.topic->type;
  d.timestamp = p.stamp;
  d.source = p.source;
  d.redeliveries = p.redeliveries;
  d.retained = p.retained;
  d.payload = p.payload;
  return d;
}

}  // namespace

class BrokerImpl {
 public:
  explicit BrokerImpl(std::uint64_t node) : own_clock_(std::make_unique<HlcClock>(node)), clock_(own_clock_.get()) {}
  explicit BrokerImpl(HlcClock& c) : clock_(&c) {}

  ~BrokerImpl() {
    std::unique_lock lock(index_mutex_);
    for (auto& [id, s] : subs_) close(*s);
  }

  HlcClock& clock() noexcept { return *clock_; }

  // -- topics ---------------------------------------------------------------------------
  Result<TopicId> add_topic(std::string_view name, TypeId type, std::uint32_t size, TopicOptions opt) {
    if (auto ok = validate_topic_name(name); !ok) return ok.error();
    if (size == 0 || size > kMaxPayloadSize)
      return Error(ErrorCode::PayloadTooLarge, "topic '" + std::string(name) + "': message size " + std::to_string(size) +
                                                   " is outside 1.." + std::to_string(kMaxPayloadSize) + " bytes");
    const TopicId id = topic_id(name);
    std::unique_lock lock(index_mutex_);
    if (auto it = topics_.find(id); it != topics_.end()) {
      const Topic& t = *it->second;
      if (t.name != name)
        return Error(ErrorCode::InvalidArgument, "topic '" + std::string(name) + "' has the same id as '" + t.name +
                                                     "' (hash collision): rename one of them");
      if (t.type != type || t.size != size)
        return Error(ErrorCode::InvalidArgument, "topic '" + t.name + "' is registered with message type id " +
                                                     std::to_string(t.type) + "; it cannot carry type id " + std::to_string(type));
      return id;
    }
    auto t = std::make_unique<Topic>();
    t->name = std::string(name);
    t->id = id;
    t->type = type;
    t->size = size;
    t->options = opt;
    refresh_subscribers(*t);
    topics_.emplace(id, std::move(t));
    notify_locked();
    return id;
  }

  std::optional<std::string> topic_name(TopicId id) const {
    std::shared_lock lock(index_mutex_);
    auto it = topics_.find(id);
    if (it == topics_.end()) return std::nullopt;
    return it->second->name;
  }

  Result<std::vector<TopicStats>> topic_list(std::string_view pattern) const {
    auto p = TopicPattern::parse(pattern);
    if (!p) return p.error();
    std::vector<TopicStats> out;
    std::shared_lock lock(index_mutex_);
    for (const auto& [id, t] : topics_) {
      if (!p->matches(t->name)) continue;
      TopicStats ts;
      ts.name = t->name;
      ts.id = id;
      ts.published = t->published.load(std::memory_order_relaxed);
      ts.refused = t->refused.load(std::memory_order_relaxed);
      {
        std::lock_guard tl(t->mutex);
        ts.retained = t->retained.size();
      }
      ts.subscribers = t->subscribers.size();
      out.push_back(std::move(ts));
    }
    std::sort(out.begin(), out.end(), [](const TopicStats& a, const TopicStats& b) { return a.name < b.name; });
    return out;
  }

  // -- publishing -----------------------------------------------------------------------
  Status publish(TopicId id, TypeId type, const void* payload, std::uint32_t size, const HlcTimestamp* kernel_stamp,
                 std::uint32_t source, std::span<const SubscriptionId> skip = {}) noexcept {
    try {
      return publish_impl(id, type, payload, size, kernel_stamp, source, skip);
    } catch (const std::bad_alloc&) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      return Status::QueueFull;  // no memory for the copies: nothing was delivered
    }
  }

  // -- subscriptions --------------------------------------------------------------------
  Result<SubscriptionId> subscribe(std::string_view pattern, const SubscribeOptions& opt, KernelCore* kernel) {
    auto p = TopicPattern::parse(pattern);
    if (!p) return p.error();
    if (opt.capacity == 0) return Error(ErrorCode::InvalidArgument, "subscription capacity must be at least 1");
    if (opt.qos == QoS::AtLeastOnce && opt.ack_timeout <= std::chrono::nanoseconds::zero())
      return Error(ErrorCode::InvalidArgument, "at-least-once subscriptions need a positive ack_timeout");
    auto sub = std::make_shared<Subscription>();
    sub->pattern = std::move(*p);
    sub->options = opt;
    sub->kernel = kernel;
    std::unique_lock lock(index_mutex_);
    sub->id = next_sub_++;
    trie_.insert(sub->pattern.levels(), 0, sub.get());
    subs_.emplace(sub->id, sub);
    std::vector<Topic*> matching;
    for (auto& [id, t] : topics_) {
      refresh_subscribers(*t);
      if (std::find(t->subscribers.begin(), t->subscribers.end(), sub.get()) != t->subscribers.end())
        matching.push_back(t.get());
    }
    if (opt.receive_retained) deliver_retained(*sub, matching);
    notify_locked();
    return sub->id;
  }

  Result<void> unsubscribe(SubscriptionId id) {
    std::unique_lock lock(index_mutex_);
    auto it = subs_.find(id);
    if (it == subs_.end()) return unknown(id);
    remove_locked(it);
    notify_locked();
    return {};
  }

  void forget_kernel(const KernelCore& core) noexcept {
    std::unique_lock lock(index_mutex_);
    for (auto it = subs_.begin(); it != subs_.end();) {
      auto next = std::next(it);
      if (it->second->kernel == &core) remove_locked(it);
      it = next;
    }
    notify_locked();
  }

  void set_listener(const void* owner, RouteListener listener) {
    std::unique_lock lock(index_mutex_);
    std::erase_if(listeners_, [owner](const auto& l) { return l.first == owner; });
    listeners_.emplace_back(owner, std::move(listener));
    const auto routes = snapshot_locked();
    listeners_.back().second(route_version_, routes);
  }

  void clear_listener(const void* owner) noexcept {
    std::unique_lock lock(index_mutex_);
    std::erase_if(listeners_, [owner](const auto& l) { return l.first == owner; });
  }

  Result<std::shared_ptr<Subscription>> find(SubscriptionId id, bool host_only) const {
    std::shared_lock lock(index_mutex_);
    auto it = subs_.find(id);
    if (it == subs_.end()) return unknown(id);
    if (host_only && it->second->kernel)
      return Error(ErrorCode::InvalidState, "subscription " + std::to_string(id) +
                                                " delivers into a kernel's input queue; receive from the kernel instead");
    return it->second;
  }

  BrokerStats stats() const {
    BrokerStats s;
    {
      std::shared_lock lock(index_mutex_);
      s.topics = topics_.size();
      s.subscriptions = subs_.size();
    }
    s.published = published_.load(std::memory_order_relaxed);
    s.delivered = delivered_.load(std::memory_order_relaxed);
    s.refused = refused_.load(std::memory_order_relaxed);
    s.dropped = dropped_.load(std::memory_order_relaxed);
    s.unroutable = unroutable_.load(std::memory_order_relaxed);
    return s;
  }

  void count_dropped(std::uint64_t n) noexcept { dropped_.fetch_add(n, std::memory_order_relaxed); }
  /// Publishes a backend delivered on its device, without the broker.
  void count_device(std::uint64_t published, std::uint64_t delivered, std::uint64_t dropped) noexcept {
    published_.fetch_add(published, std::memory_order_relaxed);
    delivered_.fetch_add(delivered, std::memory_order_relaxed);
    dropped_.fetch_add(dropped, std::memory_order_relaxed);
  }

  static Error unknown(SubscriptionId id) {
    return Error(ErrorCode::InvalidArgument,
                 "unknown subscription id " + std::to_string(id) + " (never subscribed on this broker, or unsubscribed)");
  }

  /// Moves expired in-flight deliveries back to the front of the queue (or dead-letters
  /// them). Caller holds s.mutex.
  void expire(Subscription& s, Clock::time_point now) {
    std::vector<Pending> again;
    while (!s.deadlines.empty() && s.deadlines.front().first <= now) {
      const auto [deadline, id] = s.deadlines.front();
      s.deadlines.pop_front();
      auto it = s.in_flight.find(id);
      if (it == s.in_flight.end() || it->second.deadline != deadline) continue;  // acked, or handed out again
      Pending p = std::move(it->second);
      s.in_flight.erase(it);
      if (s.options.max_redeliveries != 0 && p.redeliveries >= s.options.max_redeliveries) {
        ++s.stats.dead_lettered;
        count_dropped(1);
        continue;
      }
      ++p.redeliveries;
      ++s.stats.redelivered;
      again.push_back(std::move(p));
    }
    s.queue.insert(s.queue.begin(), std::make_move_iterator(again.begin()), std::make_move_iterator(again.end()));
  }

  /// Hands out the queue's front. Caller holds s.mutex; the queue is not empty.
  Delivery take(Subscription& s, Clock::time_point now) {
    Pending p = std::move(s.queue.front());
    s.queue.pop_front();
    ++s.stats.received;
    if (s.options.qos == QoS::AtMostOnce) {
      Delivery d = to_delivery(s, p);
      d.payload = std::move(p.payload);
      return d;
    }
    Delivery d = to_delivery(s, p);
    p.deadline = now + s.options.ack_timeout;
    s.deadlines.emplace_back(p.deadline, p.id);
    s.in_flight.emplace(p.id, std::move(p));
    return d;
  }

 private:
  Status publish_impl(TopicId id, TypeId type, const void* payload, std::uint32_t size,
                      const HlcTimestamp* kernel_stamp, std::uint32_t source, std::span<const SubscriptionId> skip) {
    auto skipped = [&](const Subscription* s) { return std::find(skip.begin(), skip.end(), s->id) != skip.end(); };
    std::shared_lock lock(index_mutex_);
    auto it = topics_.find(id);
    if (it == topics_.end() || it->second->type != type || it->second->size != size) {
      unroutable_.fetch_add(1, std::memory_order_relaxed);
      return it == topics_.end() ? Status::NoRoute : Status::InvalidMessage;
    }
    Topic& t = *it->second;
    std::unique_lock topic_lock(t.mutex);
    // Stamp inside the topic lock: messages of one topic carry increasing stamps.
    HlcTimestamp stamp;
    if (kernel_stamp) {
      stamp = *kernel_stamp;
      (void)clock_->observe(stamp);  // later host events order after it (a skewed stamp is kept as is)
    } else {
      stamp = clock_->tick();
    }
    std::vector<std::unique_lock<std::mutex>> locks;
    locks.reserve(t.subscribers.size());
    for (Subscription* s : t.subscribers) locks.emplace_back(s->mutex);
    // Phase 1: a full Backpressure subscription refuses the message for everyone.
    for (Subscription* s : t.subscribers) {
      if (s->options.overflow == OverflowPolicy::Backpressure && !skipped(s) && s->full()) {
        ++s->stats.refused;
        t.refused.fetch_add(1, std::memory_order_relaxed);
        refused_.fetch_add(1, std::memory_order_relaxed);
        return Status::QueueFull;
      }
    }
    // Phase 2: deliver.
    Pending p;
    p.topic = &t;
    p.stamp = stamp;
    p.source = source;
    p.payload.assign(static_cast<const std::byte*>(payload), static_cast<const std::byte*>(payload) + size);
    std::vector<Subscription*> woken;
    for (Subscription* s : t.subscribers) {
      if (!skipped(s) && offer(*s, p)) woken.push_back(s);
    }
    if (t.options.retain != 0) {
      p.retained = true;
      t.retained.push_back(std::move(p));
      while (t.retained.size() > t.options.retain) t.retained.pop_front();
    }
    t.published.fetch_add(1, std::memory_order_relaxed);
    published_.fetch_add(1, std::memory_order_relaxed);
    locks.clear();
    for (Subscription* s : woken) s->cv.notify_all();
    return Status::Ok;
  }

  /// Who each topic feeds (caller holds the index lock).
  std::vector<TopicRoute> snapshot_locked() const {
    std::vector<TopicRoute> out;
    out.reserve(topics_.size());
    for (const auto& [id, t] : topics_) {
      TopicRoute r;
      r.topic = id;
      r.type = t->type;
      r.size = t->size;
      r.others = t->options.retain != 0;
      for (const Subscription* s : t->subscribers) {
        if (s->kernel)
          r.kernels.push_back(KernelRoute{s->id, s->kernel, s->options.overflow});
        else
          r.others = true;
      }
      out.push_back(std::move(r));
    }
    return out;
  }

  /// Tells the backends' listeners that routes changed (caller holds the index lock
  /// exclusively, so listeners see the versions in order).
  void notify_locked() {
    ++route_version_;
    if (listeners_.empty()) return;
    const auto routes = snapshot_locked();
    for (auto& [owner, listener] : listeners_) listener(route_version_, routes);
  }

  /// Puts a copy of `p` into `s` under its overflow policy. Caller holds s.mutex.
  /// True when a host receiver should be woken.
  bool offer(Subscription& s, const Pending& p) {
    if (s.kernel) {
      // Into the kernel's input queue, stamped by the host clock after the publish stamp.
      const Status st = s.kernel->try_send_raw(p.topic->type, p.payload.data(), p.topic->size, 0, Priority::Normal);
      if (st == Status::Ok) {
        ++s.stats.delivered;
        ++s.stats.received;
        delivered_.fetch_add(1, std::memory_order_relaxed);
      } else {
        ++s.stats.dropped;  // full (lost a race with another sender) or the kernel is gone
        count_dropped(1);
      }
      return false;
    }
    if (s.full()) {
      if (s.options.overflow == OverflowPolicy::DropOldest && !s.queue.empty()) {
        s.queue.pop_front();
      } else {
        // DropNewest, DropOldest with everything in flight, or Backpressure while
        // delivering retained messages: the new message is the one discarded.
        ++s.stats.dropped;
        count_dropped(1);
        return false;
      }
      ++s.stats.dropped;
      count_dropped(1);
    }
    Pending copy;
    copy.id = s.next_delivery++;
    copy.topic = p.topic;
    copy.stamp = p.stamp;
    copy.source = p.source;
    copy.retained = p.retained;
    copy.payload = p.payload;
    s.queue.push_back(std::move(copy));
    ++s.stats.delivered;
    delivered_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  void deliver_retained(Subscription& s, std::vector<Topic*>& topics) {
    std::sort(topics.begin(), topics.end(), [](const Topic* a, const Topic* b) { return a->name < b->name; });
    bool any = false;
    for (Topic* t : topics) {
      std::lock_guard tl(t->mutex);
      std::lock_guard sl(s.mutex);
      for (const Pending& p : t->retained) any |= offer(s, p);
    }
    if (any) s.cv.notify_all();
  }

  /// Recomputes the topic's subscriber list from the index. Caller holds the index lock
  /// exclusively.
  void refresh_subscribers(Topic& t) {
    const auto levels = split_levels(t.name);
    std::vector<Subscription*> subs;
    trie_.collect(levels, 0, subs);
    subs.erase(std::remove_if(subs.begin(), subs.end(),
                              [&](const Subscription* s) {
                                return s->kernel && (s->kernel->request_type != t.type || s->kernel->request_size != t.size);
                              }),
               subs.end());
    std::sort(subs.begin(), subs.end(), [](const Subscription* a, const Subscription* b) { return a->id < b->id; });
    t.subscribers = std::move(subs);
  }

  void remove_locked(std::unordered_map<SubscriptionId, std::shared_ptr<Subscription>>::iterator it) {
    Subscription* s = it->second.get();
    trie_.erase(s->pattern.levels(), 0, s);
    for (auto& [id, t] : topics_)
      t->subscribers.erase(std::remove(t->subscribers.begin(), t->subscribers.end(), s), t->subscribers.end());
    close(*s);
    subs_.erase(it);
  }

  static void close(Subscription& s) {
    {
      std::lock_guard sl(s.mutex);
      s.closed = true;
    }
    s.cv.notify_all();
  }

  std::unique_ptr<HlcClock> own_clock_;
  HlcClock* clock_;
  mutable std::shared_mutex index_mutex_;
  std::unordered_map<TopicId, std::unique_ptr<Topic>> topics_;
  std::unordered_map<SubscriptionId, std::shared_ptr<Subscription>> subs_;
  TrieNode trie_;
  SubscriptionId next_sub_ = 1;
  std::vector<std::pair<const void*, RouteListener>> listeners_;
  std::uint64_t route_version_ = 0;
  std::atomic<std::uint64_t> published_{0}, delivered_{0}, refused_{0}, dropped_{0}, unroutable_{0};
};

}  // namespace detail

// =========================================================================================
// Broker
// =========================================================================================

Broker::Broker(std::uint64_t node_id) : impl_(std::make_unique<detail::BrokerImpl>(node_id)) {}
Broker::Broker(HlcClock& clock) : impl_(std::make_unique<detail::BrokerImpl>(clock)) {}
Broker::~Broker() = default;

Result<TopicId> Broker::topic_raw(std::string_view name, TypeId type, std::uint32_t size, TopicOptions options) {
  return impl_->add_topic(name, type, size, options);
}
std::optional<std::string> Broker::topic_name(TopicId id) const { return impl_->topic_name(id); }
Result<std::vector<TopicStats>> Broker::topics(std::string_view pattern) const { return impl_->topic_list(pattern); }

Status Broker::publish_bytes(TopicId topic, TypeId type, const void* payload, std::uint32_t size) noexcept {
  return impl_->publish(topic, type, payload, size, nullptr, 0);
}

Status Broker::publish_from_kernel(TopicId topic, TypeId type, const void* payload, std::uint32_t size,
                                   const HlcTimestamp& stamp, std::uint32_t source_slot,
                                   std::span<const SubscriptionId> delivered) noexcept {
  return impl_->publish(topic, type, payload, size, &stamp, source_slot + 1, delivered);
}

Result<void> Broker::publish_wait_bytes(TopicId topic, TypeId type, const void* payload, std::uint32_t size,
                                        std::chrono::nanoseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto step = std::chrono::microseconds(1);
  for (;;) {
    const Status s = publish_bytes(topic, type, payload, size);
    if (s == Status::Ok) return {};
    if (s != Status::QueueFull) {
      return Error(to_error_code(s), std::string("publish to topic ") + std::to_string(topic) + " failed: " + to_string(s) +
                                         (s == Status::NoRoute ? " (no topic registered with this id)" : ""));
    }
    if (std::chrono::steady_clock::now() >= deadline)
      return Error(ErrorCode::QueueFull, "publish: a subscription of topic " +
                                             (topic_name(topic).value_or(std::to_string(topic))) +
                                             " stayed full (backpressure); nothing was delivered");
    std::this_thread::sleep_for(step);
    step = std::min<std::chrono::microseconds>(step * 2, std::chrono::microseconds(500));
  }
}

Result<SubscriptionId> Broker::subscribe(std::string_view pattern, const SubscribeOptions& options) {
  return impl_->subscribe(pattern, options, nullptr);
}

Result<SubscriptionId> Broker::subscribe_kernel(std::string_view pattern, const KernelHandle& kernel,
                                                const SubscribeOptions& options) {
  if (!kernel.valid()) return Error(ErrorCode::InvalidArgument, "subscribe_kernel: empty kernel handle");
  detail::KernelCore* core = kernel.core_ptr();
  if (core->broker != this)
    return Error(ErrorCode::InvalidArgument, "subscribe_kernel: kernel '" + core->id.value +
                                                 "' belongs to another runtime; use that runtime's broker()");
  if (options.qos != QoS::AtMostOnce)
    return Error(ErrorCode::NotImplemented,
                 "subscribe_kernel: a kernel's input queue has no acknowledgements; use QoS::AtMostOnce");
  const KernelState s = kernel.state();
  if (s == KernelState::Terminating || s == KernelState::Terminated)
    return Error(ErrorCode::KernelTerminated, "subscribe_kernel: kernel '" + core->id.value + "' is " + to_string(s));
  return impl_->subscribe(pattern, options, core);
}

Result<void> Broker::unsubscribe(SubscriptionId id) { return impl_->unsubscribe(id); }

Result<std::optional<Delivery>> Broker::try_receive(SubscriptionId id) {
  auto sub = impl_->find(id, true);
  if (!sub) return sub.error();
  detail::Subscription& s = **sub;
  std::lock_guard lock(s.mutex);
  if (s.closed) return detail::BrokerImpl::unknown(id);
  const auto now = std::chrono::steady_clock::now();
  impl_->expire(s, now);
  if (s.queue.empty()) return std::optional<Delivery>{};
  return std::optional<Delivery>{impl_->take(s, now)};
}

Result<Delivery> Broker::receive(SubscriptionId id, std::chrono::nanoseconds timeout) {
  std::vector<Delivery> one;
  auto r = receive_batch(id, one, 1, timeout);
  if (!r) return r.error();
  if (one.empty())
    return Error(ErrorCode::Timeout, "no message for subscription " + std::to_string(id) + " within " +
                                         std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()) +
                                         " ms");
  return std::move(one.front());
}

Result<std::size_t> Broker::receive_batch(SubscriptionId id, std::vector<Delivery>& out, std::size_t max,
                                          std::chrono::nanoseconds timeout) {
  auto sub = impl_->find(id, true);
  if (!sub) return sub.error();
  std::shared_ptr<detail::Subscription> hold = std::move(*sub);  // survives an unsubscribe meanwhile
  detail::Subscription& s = *hold;
  detail::BrokerImpl& impl = *impl_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(s.mutex);
  for (;;) {
    if (s.closed) return detail::BrokerImpl::unknown(id);
    const auto now = std::chrono::steady_clock::now();
    impl.expire(s, now);
    if (!s.queue.empty()) break;
    if (now >= deadline || max == 0) return std::size_t{0};
    auto wake = deadline;
    if (!s.deadlines.empty()) wake = std::min(wake, s.deadlines.front().first);
    s.cv.wait_until(lock, wake);
  }
  const auto now = std::chrono::steady_clock::now();
  std::size_t n = 0;
  while (n < max && !s.queue.empty()) {
    out.push_back(impl.take(s, now));
    ++n;
  }
  return n;
}

Result<void> Broker::ack(SubscriptionId id, std::uint64_t delivery_id) {
  auto sub = impl_->find(id, true);
  if (!sub) return sub.error();
  detail::Subscription& s = **sub;
  std::lock_guard lock(s.mutex);
  if (s.options.qos != QoS::AtLeastOnce)
    return Error(ErrorCode::InvalidState, "subscription " + std::to_string(id) + " is at-most-once: nothing to acknowledge");
  auto it = s.in_flight.find(delivery_id);
  if (it == s.in_flight.end())
    return Error(ErrorCode::InvalidArgument, "delivery " + std::to_string(delivery_id) + " of subscription " + std::to_string(id) +
                                                 " is not pending (already acknowledged, waiting for redelivery, or dead-lettered)");
  s.in_flight.erase(it);
  ++s.stats.acknowledged;
  return {};
}

Result<void> Broker::nack(SubscriptionId id, std::uint64_t delivery_id) {
  auto sub = impl_->find(id, true);
  if (!sub) return sub.error();
  detail::Subscription& s = **sub;
  {
    std::lock_guard lock(s.mutex);
    if (s.options.qos != QoS::AtLeastOnce)
      return Error(ErrorCode::InvalidState, "subscription " + std::to_string(id) + " is at-most-once: nothing to redeliver");
    auto it = s.in_flight.find(delivery_id);
    if (it == s.in_flight.end())
      return Error(ErrorCode::InvalidArgument, "delivery " + std::to_string(delivery_id) + " of subscription " +
                                                   std::to_string(id) + " is not pending");
    detail::Pending p = std::move(it->second);
    s.in_flight.erase(it);
    if (s.options.max_redeliveries != 0 && p.redeliveries >= s.options.max_redeliveries) {
      ++s.stats.dead_lettered;
      impl_->count_dropped(1);
      return {};
    }
    ++p.redeliveries;
    ++s.stats.redelivered;
    s.queue.push_front(std::move(p));
  }
  s.cv.notify_all();
  return {};
}

Result<SubscriptionStats> Broker::stats(SubscriptionId id) const {
  auto sub = impl_->find(id, false);
  if (!sub) return sub.error();
  detail::Subscription& s = **sub;
  std::lock_guard lock(s.mutex);
  SubscriptionStats st = s.stats;
  st.queued = s.queue.size();
  st.in_flight = s.in_flight.size();
  return st;
}

BrokerStats Broker::stats() const { return impl_->stats(); }
HlcClock& Broker::clock() noexcept { return impl_->clock(); }
void Broker::forget_kernel(const detail::KernelCore& core) noexcept { impl_->forget_kernel(core); }
void Broker::set_route_listener(const void* owner, detail::RouteListener listener) {
  impl_->set_listener(owner, std::move(listener));
}
void Broker::clear_route_listener(const void* owner) noexcept { impl_->clear_listener(owner); }
void Broker::count_device_deliveries(std::uint64_t published, std::uint64_t delivered, std::uint64_t dropped) noexcept {
  impl_->count_device(published, delivered, dropped);
}

}  // namespace ringkernel
