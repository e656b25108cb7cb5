#include "ringkernel/queue.hpp"

namespace ringkernel {

// Slot layout: a 16-byte prefix holding the message length, then the bytes.
static constexpr std::uint32_t kPrefix = 16;

SpscMessageQueue::SpscMessageQueue(std::size_t capacity, std::size_t max_message_size) {
  std::size_t cap = 2;
  while (cap < capacity) cap <<= 1;
  const auto slot = static_cast<std::uint32_t>((max_message_size + kPrefix + 15) & ~std::size_t{15});
  indices_ = detail::make_aligned_bytes(sizeof(RingIndices), kIndexAlign);
  storage_ = detail::make_aligned_bytes(cap * slot, 64);
  view_.indices = reinterpret_cast<RingIndices*>(indices_.get());
  view_.slots = storage_.get();
  view_.capacity = static_cast<std::uint32_t>(cap);
  view_.slot_size = slot;
  producer_ = RingProducer<>(view_);
  consumer_ = RingConsumer<>(view_);
}

Status SpscMessageQueue::try_enqueue(std::span<const std::byte> message) noexcept {
  if (message.size() > max_message_size()) return Status::TooLarge;
  if (producer_.reserve(1) == 0) return Status::QueueFull;
  std::byte* s = producer_.slot(0);
  const auto n = static_cast<std::uint32_t>(message.size());
  std::memcpy(s, &n, sizeof n);
  std::memcpy(s + kPrefix, message.data(), n);
  producer_.publish(1);
  return Status::Ok;
}

Status SpscMessageQueue::try_dequeue(std::span<std::byte> out, std::size_t& size) noexcept {
  if (consumer_.available(1) == 0) return Status::QueueEmpty;
  const std::byte* s = consumer_.slot(0);
  std::uint32_t n;
  std::memcpy(&n, s, sizeof n);
  size = n;
  if (out.size() < n) return Status::TooLarge;  // message stays queued
  std::memcpy(out.data(), s + kPrefix, n);
  consumer_.release(1);
  return Status::Ok;
}

}  // namespace ringkernel
