#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include <ringkernel/ringkernel.hpp>

using namespace ringkernel;

namespace wiretest {
struct Sample {
  MessageId id;
  float a;
  float b;
};
RK_MESSAGE(Sample, "wiretest.Sample", id, a, b);

struct Nested {
  HlcTimestamp when;
  Sample inner;
  std::uint32_t flags[2];
};
RK_MESSAGE_WITH_ID(Nested, "wiretest.Nested", 42, when, inner, flags);
}  // namespace wiretest

TEST(Wire, layouts_match_the_specification) {
  EXPECT_EQ(sizeof(MessageHeader), 256u);
  EXPECT_EQ(sizeof(ControlBlock), 128u);
  EXPECT_EQ(sizeof(TelemetryBuffer), 64u);
  EXPECT_EQ(sizeof(HlcTimestamp), 24u);
  EXPECT_EQ(sizeof(Envelope), 48u);
  EXPECT_EQ(kMessageMagic, 0x52494E474B45524EULL);
  const char magic[] = "RINGKERN";
  std::uint64_t be = 0;
  for (int i = 0; i < 8; ++i) be = (be << 8) | static_cast<unsigned char>(magic[i]);
  EXPECT_EQ(be, kMessageMagic);
}

TEST(Wire, type_ids_are_stable_hashes_of_declared_names) {
  EXPECT_EQ(type_id_of_name("a"), 0xaf63dc4c8601ec8cULL);  // published FNV-1a test vector
  EXPECT_EQ(type_id_v<wiretest::Sample>, type_id_of_name("wiretest.Sample"));
  EXPECT_EQ(type_id_v<wiretest::Nested>, 42u);
  EXPECT_EQ(type_name_v<wiretest::Sample>, "wiretest.Sample");
  static_assert(RingMessage<wiretest::Sample> && RingMessage<wiretest::Nested>);
  static_assert(GpuType<HlcTimestamp> && GpuType<std::uint32_t>);
  static_assert(!RingMessage<std::uint32_t>);  // plain data, but no message id
}

TEST(Wire, message_ids_are_unique_and_non_zero) {
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 1000; ++i) ids.push_back(MessageId::generate().value);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());
  EXPECT_NE(ids.front(), 0u);
}

TEST(Wire, a_message_round_trips_through_bytes) {
  std::vector<std::byte> buf(serialized_size_v<wiretest::Sample>);
  const wiretest::Sample s{MessageId{9}, 1.5f, -2.0f};
  auto bytes = serialize(s, std::span<std::byte>(buf), HlcTimestamp{10, 2, 3}, CorrelationId{77}, Priority::High);
  EXPECT_EQ(validate_bytes(bytes), ValidationError::Ok);
  MessageHeader h;
  std::memcpy(&h, bytes.data(), sizeof h);
  EXPECT_EQ(h.correlation_id, 77u);
  EXPECT_EQ(h.priority, static_cast<std::uint8_t>(Priority::High));
  EXPECT_EQ(h.timestamp, (HlcTimestamp{10, 2, 3}));
  auto back = deserialize<wiretest::Sample>(bytes);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->id, s.id);
  EXPECT_EQ(back->a, 1.5f);
}

TEST(Wire, every_malformed_field_is_named_by_validation) {
  std::vector<std::byte> buf(serialized_size_v<wiretest::Sample>);
  auto good = serialize(wiretest::Sample{}, std::span<std::byte>(buf));
  auto with = [&](auto mutate) {
    std::vector<std::byte> b(good.begin(), good.end());
    mutate(b);
    return b;
  };
  EXPECT_EQ(validate_bytes(std::span(good).first(100)), ValidationError::TooShort);
  EXPECT_EQ(validate_bytes(with([](auto& b) { b[3] = std::byte{0}; })), ValidationError::BadMagic);
  EXPECT_EQ(validate_bytes(with([](auto& b) { b[8] = std::byte{2}; })), ValidationError::BadVersion);
  EXPECT_EQ(validate_bytes(with([](auto& b) { b.push_back(std::byte{0}); })), ValidationError::SizeMismatch);
  EXPECT_EQ(validate_bytes(with([](auto& b) { b.back() ^= std::byte{0x40}; })), ValidationError::BadChecksum);
  EXPECT_EQ(validate_bytes(with([](auto& b) {
              const std::uint32_t big = kMaxPayloadSize + 1;
              std::memcpy(b.data() + 56, &big, 4);
            })),
            ValidationError::PayloadTooLarge);
  EXPECT_EQ(validate_bytes(good, type_id_v<wiretest::Nested>), ValidationError::UnknownType);
  auto wrong = deserialize<wiretest::Nested>(good);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code(), ErrorCode::UnknownMessageType);
}

TEST(Wire, result_value_throws_the_error_it_carries) {
  Result<int> bad = Error(ErrorCode::Timeout, "late");
  EXPECT_FALSE(bad.ok());
  try {
    (void)bad.value();
    FAIL();
  } catch (const ErrorException& e) {
    EXPECT_EQ(e.error().code(), ErrorCode::Timeout);
    EXPECT_STREQ(e.what(), "timeout: late");
  }
  Result<int> good = 5;
  EXPECT_EQ(*good, 5);
}
