// The showcase's messages and actors: a streaming transaction-monitoring pipeline.
//
//   host ──send_batch──▶ ingest ──K2K (by account)──▶ rules[0..S-1] ──K2K──▶ alerter
//                                                       │                    │
//                                          verdicts ◀───┘      ctx.publish("alerts/<severity>/<rule>")
//                                                                            ▼
//                                                              host subscribers (Broker)
//
// * ingest   validates each transaction (bad ones are counted drops), converts the amount
//            to US cents, keeps the host's send stamp, and routes it to the rules shard
//            that owns the account (account % S), so an account's history lives in one
//            actor's persistent state.
// * rules    keeps per-account state (recent event times, last physical country,
//            near-threshold amounts) and checks four rules: large amount, velocity (5
//            transactions within 60 s), impossible travel (card used in another country
//            within 2 h), structuring (3 amounts just under $10,000 within 24 h). It sends
//            a verdict per transaction to the host and an alert event per rule that fired
//            to the alerter.
// * alerter  numbers alerts, counts them per account (escalating an account's 5th and
//            later alerts to "critical"), and publishes each to alerts/<severity>/<rule>.
//
// Every handler is a const RK_HOST_DEVICE call operator that uses only RingContext, so the
// same source builds for the CPU backend and (compiled by nvcc) for CUDA.
#pragma once

#include <ringkernel/ringkernel.hpp>

namespace showcase {
using namespace ringkernel;

// ---- vocabulary ---------------------------------------------------------------------------
inline constexpr std::uint32_t kAccountsPerShard = 4096;
inline constexpr std::uint32_t kMaxShards = 8;
inline constexpr std::uint32_t kMaxAccounts = kAccountsPerShard * kMaxShards;
inline constexpr std::uint32_t kCurrencies = 4;  // USD, EUR, GBP, JPY
inline constexpr std::uint32_t kCountries = 12;

enum Channel : std::uint16_t { kCardPresent = 0, kOnline = 1, kAtm = 2 };
enum Rule : std::uint16_t { kRuleAmount = 0, kRuleVelocity = 1, kRuleGeo = 2, kRuleStructuring = 3, kRuleCount = 4 };
enum Severity : std::uint16_t { kLow = 0, kMedium = 1, kHigh = 2, kCritical = 3, kSeverityCount = 4 };

inline constexpr std::int64_t kLargeAmountCents = 1'000'000;      // $10,000
inline constexpr std::int64_t kVeryLargeAmountCents = 5'000'000;  // $50,000
inline constexpr std::int64_t kNearThresholdCents = 900'000;      // $9,000 .. $9,999.99
inline constexpr std::uint64_t kVelocityWindowMs = 60'000;
inline constexpr std::uint32_t kVelocityCount = 5;                // this many within the window
inline constexpr std::uint64_t kTravelWindowMs = 2 * 3'600'000;
inline constexpr std::uint64_t kStructuringWindowMs = 24 * 3'600'000;
inline constexpr std::uint32_t kStructuringCount = 3;
inline constexpr std::uint32_t kEscalateAfter = 5;                // an account's 5th alert is critical

RK_HOST_DEVICE constexpr const char* rule_name(std::uint32_t r) {
  return r == kRuleAmount ? "amount" : r == kRuleVelocity ? "velocity" : r == kRuleGeo ? "geo" : "structuring";
}
RK_HOST_DEVICE constexpr const char* severity_name(std::uint32_t s) {
  return s == kLow ? "low" : s == kMedium ? "medium" : s == kHigh ? "high" : "critical";
}

/// Topic of an alert: alerts/<severity>/<rule>, as a compile-time constant per case (a
/// switch rather than a table, so device code needs no global array).
RK_HOST_DEVICE constexpr TopicId alert_topic(std::uint32_t severity, std::uint32_t rule) {
  switch (severity * 4 + rule) {
    case kLow * 4 + kRuleAmount: return topic_id("alerts/low/amount");
    case kLow * 4 + kRuleVelocity: return topic_id("alerts/low/velocity");
    case kLow * 4 + kRuleGeo: return topic_id("alerts/low/geo");
    case kLow * 4 + kRuleStructuring: return topic_id("alerts/low/structuring");
    case kMedium * 4 + kRuleAmount: return topic_id("alerts/medium/amount");
    case kMedium * 4 + kRuleVelocity: return topic_id("alerts/medium/velocity");
    case kMedium * 4 + kRuleGeo: return topic_id("alerts/medium/geo");
    case kMedium * 4 + kRuleStructuring: return topic_id("alerts/medium/structuring");
    case kHigh * 4 + kRuleAmount: return topic_id("alerts/high/amount");
    case kHigh * 4 + kRuleVelocity: return topic_id("alerts/high/velocity");
    case kHigh * 4 + kRuleGeo: return topic_id("alerts/high/geo");
    case kHigh * 4 + kRuleStructuring: return topic_id("alerts/high/structuring");
    case kCritical * 4 + kRuleAmount: return topic_id("alerts/critical/amount");
    case kCritical * 4 + kRuleVelocity: return topic_id("alerts/critical/velocity");
    case kCritical * 4 + kRuleGeo: return topic_id("alerts/critical/geo");
    default: return topic_id("alerts/critical/structuring");
  }
}

/// Minor units of each currency -> US cents, in millionths (integer math: every backend
/// and the host reference compute the same cents).
RK_HOST_DEVICE constexpr std::int64_t usd_cents(std::int64_t amount_minor, std::uint32_t currency) {
  const std::int64_t ppm = currency == 0 ? 1'000'000 : currency == 1 ? 1'085'000 : currency == 2 ? 1'270'000 : 670'000;
  return amount_minor * ppm / 1'000'000;
}

// ---- messages -------------------------------------------------------------------------------
/// host -> ingest
struct Transaction {
  std::uint64_t id;
  std::uint64_t event_time_ms;  // when the payment happened (event time, not processing time)
  std::uint32_t account;
  std::uint32_t merchant;
  std::int64_t amount_minor;    // in the currency's minor unit (yen for JPY)
  std::uint16_t currency;
  std::uint16_t country;
  std::uint16_t channel;
  std::uint16_t reserved;
};
RK_MESSAGE(Transaction, "showcase.Transaction", id, event_time_ms, account, merchant, amount_minor, currency, country,
           channel, reserved);

/// ingest -> rules (K2K)
struct ScoredTxn {
  std::uint64_t id;
  std::uint64_t event_time_ms;
  std::int64_t amount_cents;  // US cents
  std::uint32_t account;
  std::uint16_t country;
  std::uint16_t channel;
  std::uint32_t account_index;  // the account's place in its shard's state (account / S)
  std::uint32_t reserved;
  HlcTimestamp sent;            // the host's send stamp of the transaction
};
RK_MESSAGE(ScoredTxn, "showcase.ScoredTxn", id, event_time_ms, amount_cents, account, country, channel, account_index,
           reserved, sent);

/// rules -> host, one per valid transaction
struct Verdict {
  std::uint64_t id;
  std::uint32_t flags;  // bit r set when rule r fired
  std::uint32_t shard;
  HlcTimestamp sent;
  HlcTimestamp checked;  // the rules actor's clock when it decided
};
RK_MESSAGE(Verdict, "showcase.Verdict", id, flags, shard, sent, checked);

/// rules -> alerter (K2K)
struct AlertEvent {
  std::uint64_t txn_id;
  std::int64_t amount_cents;
  std::uint32_t account;
  std::uint16_t rule;
  std::uint16_t severity;
  HlcTimestamp sent;
  HlcTimestamp detected;
};
RK_MESSAGE(AlertEvent, "showcase.AlertEvent", txn_id, amount_cents, account, rule, severity, sent, detected);

/// alerter -> topic alerts/<severity>/<rule>
struct Alert {
  std::uint64_t alert_id;  // 1, 2, ... in the alerter's order
  std::uint64_t txn_id;
  std::int64_t amount_cents;
  std::uint32_t account;
  std::uint16_t rule;
  std::uint16_t severity;
  std::uint32_t account_alerts;  // alerts of this account so far, this one included
  std::uint32_t reserved;
  HlcTimestamp sent;
  HlcTimestamp detected;
};
RK_MESSAGE(Alert, "showcase.Alert", alert_id, txn_id, amount_cents, account, rule, severity, account_alerts, reserved,
           sent, detected);

// ---- persistent state -----------------------------------------------------------------------
struct AccountState {
  std::uint64_t recent[kVelocityCount - 1];      // event times of the latest transactions (ring)
  std::uint64_t near[kStructuringCount - 1];     // event times of the latest near-threshold amounts (ring)
  std::uint64_t last_physical_ms;                // latest card-present / ATM transaction
  std::uint32_t count;                           // transactions seen
  std::uint16_t last_country;
  std::uint16_t near_count;
  std::uint32_t physical_seen;                   // 1 once a card-present / ATM transaction was seen
  std::uint32_t reserved;
};
RK_GPU_TYPE(AccountState, recent, near, last_physical_ms, count, last_country, near_count, physical_seen, reserved);

struct RulesState {
  AccountState accounts[kAccountsPerShard];
  std::uint64_t transactions;
  std::uint64_t alerts;
};
RK_GPU_TYPE(RulesState, accounts, transactions, alerts);

struct AlerterState {
  std::uint32_t per_account[kMaxAccounts];
  std::uint64_t next_alert;
  std::uint64_t published;
  std::uint64_t publish_retries;
};
RK_GPU_TYPE(AlerterState, per_account, next_alert, published, publish_retries);

/// Spins on backpressure (a full K2K ring or a full subscriber queue) a bounded number of
/// times, then gives up and counts a drop: a consumer that never drains cannot wedge a kernel.
inline constexpr std::uint32_t kMaxRetries = 1u << 26;

// ---- actors ----------------------------------------------------------------------------------
struct Ingest {
  using Request = Transaction;
  using Response = void;
  RK_HOST_DEVICE void operator()(RingContext& ctx, NoState&, const Transaction& t) const {
    if (ctx.thread_id() != 0) return;
    if (t.amount_minor <= 0 || t.currency >= kCurrencies || t.country >= kCountries || t.channel > kAtm) {
      ctx.count_dropped();  // malformed input: counted, never forwarded
      return;
    }
    ScoredTxn s;
    s.id = t.id;
    s.event_time_ms = t.event_time_ms;
    s.amount_cents = usd_cents(t.amount_minor, t.currency);
    s.account = t.account;
    s.country = t.country;
    s.channel = t.channel;
    s.sent = ctx.message_timestamp();
    const std::uint32_t shards = ctx.k2k_route_count();  // one route per rules shard
    s.account_index = shards == 0 ? kAccountsPerShard : t.account / shards;
    s.reserved = 0;
    if (s.account_index >= kAccountsPerShard) {
      ctx.count_dropped();  // no shard can hold this account
      return;
    }
    const std::uint32_t dest = ctx.k2k_route(t.account % shards);
    Status st = ctx.k2k_send(dest, s);
    for (std::uint32_t i = 0; st == Status::QueueFull && i < kMaxRetries; ++i) st = ctx.k2k_send(dest, s);
    if (st != Status::Ok) ctx.count_dropped();
  }
};

/// The rules, as pure functions of one account's state (updated in place). Returns the
/// bit set of rules that fired; `severity[r]` receives each one's severity.
RK_HOST_DEVICE inline std::uint32_t check_rules(AccountState& a, const ScoredTxn& t, std::uint16_t* severity) {
  std::uint32_t flags = 0;
  // Large amount.
  if (t.amount_cents >= kLargeAmountCents) {
    flags |= 1u << kRuleAmount;
    severity[kRuleAmount] = t.amount_cents >= kVeryLargeAmountCents ? kHigh : kMedium;
  }
  // Velocity: with the previous kVelocityCount-1 transactions all inside the window.
  const std::uint32_t slot = a.count % (kVelocityCount - 1);
  if (a.count >= kVelocityCount - 1 && t.event_time_ms - a.recent[slot] <= kVelocityWindowMs) {
    flags |= 1u << kRuleVelocity;
    severity[kRuleVelocity] = kMedium;
  }
  a.recent[slot] = t.event_time_ms;
  ++a.count;
  // Impossible travel: a physical transaction in another country soon after the last one.
  if (t.channel != kOnline) {
    if (a.physical_seen && t.country != a.last_country && t.event_time_ms - a.last_physical_ms <= kTravelWindowMs) {
      flags |= 1u << kRuleGeo;
      severity[kRuleGeo] = kHigh;
    }
    a.physical_seen = 1;
    a.last_country = t.country;
    a.last_physical_ms = t.event_time_ms;
  }
  // Structuring: amounts just under the reporting threshold, repeatedly.
  if (t.amount_cents >= kNearThresholdCents && t.amount_cents < kLargeAmountCents) {
    const std::uint32_t n = a.near_count % (kStructuringCount - 1);
    if (a.near_count >= kStructuringCount - 1 && t.event_time_ms - a.near[n] <= kStructuringWindowMs) {
      flags |= 1u << kRuleStructuring;
      severity[kRuleStructuring] = kLow;
    }
    a.near[n] = t.event_time_ms;
    ++a.near_count;
  }
  return flags;
}

struct Rules {
  using Request = ScoredTxn;
  using Response = Verdict;
  using State = RulesState;
  RK_HOST_DEVICE bool operator()(RingContext& ctx, RulesState& s, const ScoredTxn& t, Verdict& out) const {
    if (ctx.thread_id() != 0) return false;
    AccountState& a = s.accounts[t.account_index % kAccountsPerShard];  // ingest checked the bound
    std::uint16_t severity[kRuleCount] = {0, 0, 0, 0};
    const std::uint32_t flags = check_rules(a, t, severity);
    ++s.transactions;
    const HlcTimestamp now = ctx.hlc_tick();
    for (std::uint32_t r = 0; r < kRuleCount; ++r) {
      if (!(flags & (1u << r))) continue;
      AlertEvent e;
      e.txn_id = t.id;
      e.amount_cents = t.amount_cents;
      e.account = t.account;
      e.rule = static_cast<std::uint16_t>(r);
      e.severity = severity[r];
      e.sent = t.sent;
      e.detected = now;
      Status st = ctx.k2k_send(ctx.k2k_route(0), e);
      for (std::uint32_t i = 0; st == Status::QueueFull && i < kMaxRetries; ++i) st = ctx.k2k_send(ctx.k2k_route(0), e);
      if (st == Status::Ok) ++s.alerts;
      else ctx.count_dropped();
    }
    out.id = t.id;
    out.flags = flags;
    out.shard = ctx.kernel_slot();
    out.sent = t.sent;
    out.checked = now;
    return true;
  }
};

struct Alerter {
  using Request = AlertEvent;
  using Response = void;
  using State = AlerterState;
  RK_HOST_DEVICE void operator()(RingContext& ctx, AlerterState& s, const AlertEvent& e) const {
    if (ctx.thread_id() != 0) return;
    const std::uint32_t n = ++s.per_account[e.account % kMaxAccounts];
    Alert a;
    a.alert_id = ++s.next_alert;
    a.txn_id = e.txn_id;
    a.amount_cents = e.amount_cents;
    a.account = e.account;
    a.rule = e.rule;
    a.severity = n >= kEscalateAfter ? static_cast<std::uint16_t>(kCritical) : e.severity;
    a.account_alerts = n;
    a.reserved = 0;
    a.sent = e.sent;
    a.detected = e.detected;
    const TopicId topic = alert_topic(a.severity, a.rule);
    Status st = ctx.publish(topic, a);
    for (std::uint32_t i = 0; st == Status::QueueFull && i < kMaxRetries; ++i) {
      ++s.publish_retries;
      st = ctx.publish(topic, a);
    }
    if (st == Status::Ok) ++s.published;
    else ctx.count_dropped();
  }
};

}  // namespace showcase
