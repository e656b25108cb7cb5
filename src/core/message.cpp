#include "ringkernel/message.hpp"

#include <atomic>
#include <chrono>
#include <random>

namespace ringkernel {

namespace {
// Process-unique ids: a random 24-bit prefix per process and a 40-bit counter.
std::uint64_t id_prefix() {
  static const std::uint64_t prefix = [] {
    std::random_device rd;
    return (std::uint64_t{rd()} & 0xFFFFFFu) << 40;
  }();
  return prefix;
}
std::atomic<std::uint64_t> g_message_counter{1};
std::atomic<std::uint64_t> g_correlation_counter{1};
}  // namespace

MessageId MessageId::generate() noexcept {
  return MessageId{id_prefix() | (g_message_counter.fetch_add(1, std::memory_order_relaxed) & 0xFFFFFFFFFFull)};
}

CorrelationId CorrelationId::generate() noexcept {
  return CorrelationId{id_prefix() | (g_correlation_counter.fetch_add(1, std::memory_order_relaxed) & 0xFFFFFFFFFFull)};
}

const char* to_string(ValidationError e) noexcept {
  switch (e) {
    case ValidationError::Ok: return "ok";
    case ValidationError::TooShort: return "shorter than a 256-byte message header";
    case ValidationError::BadMagic: return "wrong magic (expected \"RINGKERN\")";
    case ValidationError::BadVersion: return "unsupported wire version";
    case ValidationError::PayloadTooLarge: return "payload larger than 64 KiB";
    case ValidationError::SizeMismatch: return "payload size disagrees with the bytes present";
    case ValidationError::BadChecksum: return "payload checksum mismatch";
    case ValidationError::UnknownType: return "message type id not accepted here";
  }
  return "?";
}

ValidationError validate_bytes(std::span<const std::byte> bytes, TypeId expected_type) noexcept {
  if (bytes.size() < sizeof(MessageHeader)) return ValidationError::TooShort;
  MessageHeader h;
  std::memcpy(&h, bytes.data(), sizeof h);
  if (h.magic != kMessageMagic) return ValidationError::BadMagic;
  if (h.version != kWireVersion) return ValidationError::BadVersion;
  if (h.payload_size > kMaxPayloadSize) return ValidationError::PayloadTooLarge;
  if (bytes.size() != sizeof(MessageHeader) + h.payload_size) return ValidationError::SizeMismatch;
  const auto* payload = reinterpret_cast<const unsigned char*>(bytes.data() + sizeof(MessageHeader));
  if (payload_checksum(payload, h.payload_size) != h.payload_checksum) return ValidationError::BadChecksum;
  if (expected_type != 0 && h.type_id != expected_type) return ValidationError::UnknownType;
  return ValidationError::Ok;
}

}  // namespace ringkernel
