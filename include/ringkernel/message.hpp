// ringkernel/message.hpp — message identity, the wire header, and the compile-time
// contract every message type meets.
//
// A message type is a plain struct declared once with RK_MESSAGE (the counterpart of the
// seed's #[derive(RingMessage)]):
//
//     struct AddRequest { MessageId id; float a; float b; };
//     RK_MESSAGE(AddRequest, "quickstart.AddRequest", id, a, b);
//
// The macro lists the fields so the library can prove there is no padding (sizeof equals
// the sum of the fields) and gives the type a stable id: the 64-bit FNV-1a hash of the
// declared name, identical on every compiler, process and backend. RK_GPU_TYPE declares a
// plain data type (state, nested structs) with the same padding check but no message id.
#pragma once

#include <concepts>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <type_traits>

#include "ringkernel/config.hpp"
#include "ringkernel/error.hpp"
#include "ringkernel/hlc.hpp"

namespace ringkernel {

// ---------------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------------

/// Stable 64-bit message type id.
using TypeId = std::uint64_t;

/// 64-bit FNV-1a of a name: the type id of a message declared under that name.
RK_HOST_DEVICE constexpr TypeId type_id_of_name(std::string_view name) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}
/// The same hash of a NUL-terminated name. Device code reaches this overload for a string
/// literal evaluated at run time: std::string_view's constructor measures the string with a
/// host-only builtin, which must not be called from a GPU thread.
RK_HOST_DEVICE constexpr TypeId type_id_of_name(const char* name) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (; *name != '\0'; ++name) {
    h ^= static_cast<unsigned char>(*name);
    h *= 0x100000001b3ULL;
  }
  return h;
}

/// Unique message identifier. generate() is process-unique and never 0.
struct MessageId {
  std::uint64_t value = 0;
  static MessageId generate() noexcept;
  friend constexpr bool operator==(MessageId, MessageId) = default;
  friend constexpr auto operator<=>(MessageId, MessageId) = default;
};

/// Ties a response to its request (KernelHandle::call). 0 means "none".
struct CorrelationId {
  std::uint64_t value = 0;
  static CorrelationId generate() noexcept;
  friend constexpr bool operator==(CorrelationId, CorrelationId) = default;
};

enum class Priority : std::uint8_t { Low = 0, Normal = 1, High = 2, Critical = 3 };

constexpr const char* to_string(Priority p) noexcept {
  switch (p) {
    case Priority::Low: return "low";
    case Priority::Normal: return "normal";
    case Priority::High: return "high";
    case Priority::Critical: return "critical";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------
// Compile-time contract
// ---------------------------------------------------------------------------------------

/// What RK_MESSAGE / RK_GPU_TYPE record about a type (found by argument-dependent lookup
/// of rk_type_info(const T*)).
struct TypeInfo {
  std::string_view name;
  TypeId id;                 ///< 0 for RK_GPU_TYPE (not a message)
  std::size_t fields_size;   ///< sum of sizeof of the listed fields
  bool fields_ok;            ///< every field is arithmetic, enum, array of those, or GpuType
};

namespace detail {
template <class T>
concept HasTypeInfo = requires { { rk_type_info(static_cast<const T*>(nullptr)) } -> std::same_as<TypeInfo>; };

template <class T>
constexpr bool plain_field() {
  using U = std::remove_cv_t<std::remove_all_extents_t<T>>;
  if constexpr (std::is_arithmetic_v<U> || std::is_enum_v<U>) {
    return true;
  } else if constexpr (HasTypeInfo<U>) {
    return rk_type_info(static_cast<const U*>(nullptr)).fields_ok &&
           rk_type_info(static_cast<const U*>(nullptr)).fields_size == sizeof(U);
  } else {
    return false;
  }
}
}  // namespace detail

// The built-in vocabulary types are plain data too.
constexpr TypeInfo rk_type_info(const MessageId*) noexcept {
  return {"ringkernel.MessageId", 0, sizeof(std::uint64_t), true};
}
constexpr TypeInfo rk_type_info(const CorrelationId*) noexcept {
  return {"ringkernel.CorrelationId", 0, sizeof(std::uint64_t), true};
}
constexpr TypeInfo rk_type_info(const HlcTimestamp*) noexcept {
  return {"ringkernel.HlcTimestamp", 0, 3 * sizeof(std::uint64_t), true};
}

/// Plain data that may live in device memory or cross a queue: trivially copyable,
/// standard layout, declared with RK_GPU_TYPE or RK_MESSAGE, and without padding.
template <class T>
concept GpuType = std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T> &&
                  (std::is_arithmetic_v<T> || detail::plain_field<T>());

/// A GpuType with a stable message type id (declared with RK_MESSAGE).
template <class T>
concept RingMessage = GpuType<T> && detail::HasTypeInfo<T> &&
                      (rk_type_info(static_cast<const T*>(nullptr)).id != 0) &&
                      sizeof(T) <= kMaxPayloadSize;

/// Stable type id of a message type.
template <RingMessage T>
inline constexpr TypeId type_id_v = rk_type_info(static_cast<const T*>(nullptr)).id;

/// Declared name of a message type.
template <RingMessage T>
inline constexpr std::string_view type_name_v = rk_type_info(static_cast<const T*>(nullptr)).name;

namespace detail {
// Checks that produce readable diagnostics at the declaration site.
template <class T>
constexpr bool check_declared(std::size_t fields_size, bool fields_ok) {
  return std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T> &&
         fields_size == sizeof(T) && fields_ok;
}
}  // namespace detail

}  // namespace ringkernel

// ---- the declaration macros --------------------------------------------------------------
#define RK_DETAIL_EXPAND(x) x
#define RK_DETAIL_NARG(...) RK_DETAIL_EXPAND(RK_DETAIL_NARG_(__VA_ARGS__, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0))
#define RK_DETAIL_NARG_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, _18, _19, _20, _21, _22, _23, _24, N, ...) N
#define RK_DETAIL_CAT(a, b) RK_DETAIL_CAT_(a, b)
#define RK_DETAIL_CAT_(a, b) a##b
// RK_DETAIL_FOLD(OP, T, f1, f2, ...) -> OP(T, f1) OP(T, f2) ...
#define RK_DETAIL_F1(OP, T, a) OP(T, a)
#define RK_DETAIL_F2(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F1(OP, T, __VA_ARGS__))
#define RK_DETAIL_F3(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F2(OP, T, __VA_ARGS__))
#define RK_DETAIL_F4(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F3(OP, T, __VA_ARGS__))
#define RK_DETAIL_F5(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F4(OP, T, __VA_ARGS__))
#define RK_DETAIL_F6(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F5(OP, T, __VA_ARGS__))
#define RK_DETAIL_F7(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F6(OP, T, __VA_ARGS__))
#define RK_DETAIL_F8(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F7(OP, T, __VA_ARGS__))
#define RK_DETAIL_F9(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F8(OP, T, __VA_ARGS__))
#define RK_DETAIL_F10(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F9(OP, T, __VA_ARGS__))
#define RK_DETAIL_F11(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F10(OP, T, __VA_ARGS__))
#define RK_DETAIL_F12(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F11(OP, T, __VA_ARGS__))
#define RK_DETAIL_F13(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F12(OP, T, __VA_ARGS__))
#define RK_DETAIL_F14(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F13(OP, T, __VA_ARGS__))
#define RK_DETAIL_F15(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F14(OP, T, __VA_ARGS__))
#define RK_DETAIL_F16(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F15(OP, T, __VA_ARGS__))
#define RK_DETAIL_F17(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F16(OP, T, __VA_ARGS__))
#define RK_DETAIL_F18(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F17(OP, T, __VA_ARGS__))
#define RK_DETAIL_F19(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F18(OP, T, __VA_ARGS__))
#define RK_DETAIL_F20(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F19(OP, T, __VA_ARGS__))
#define RK_DETAIL_F21(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F20(OP, T, __VA_ARGS__))
#define RK_DETAIL_F22(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F21(OP, T, __VA_ARGS__))
#define RK_DETAIL_F23(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F22(OP, T, __VA_ARGS__))
#define RK_DETAIL_F24(OP, T, a, ...) OP(T, a) RK_DETAIL_EXPAND(RK_DETAIL_F23(OP, T, __VA_ARGS__))
#define RK_DETAIL_FOLD(OP, T, ...) \
  RK_DETAIL_EXPAND(RK_DETAIL_CAT(RK_DETAIL_F, RK_DETAIL_NARG(__VA_ARGS__))(OP, T, __VA_ARGS__))
#define RK_DETAIL_SIZE(T, f) +sizeof(T::f)
#define RK_DETAIL_PLAIN(T, f) &&::ringkernel::detail::plain_field<decltype(T::f)>()

#define RK_DETAIL_DECLARE(T, NAME, ID, ...)                                                   \
  [[maybe_unused]] constexpr ::ringkernel::TypeInfo rk_type_info(const T*) noexcept {         \
    return {NAME, ID, 0 RK_DETAIL_FOLD(RK_DETAIL_SIZE, T, __VA_ARGS__),                       \
            true RK_DETAIL_FOLD(RK_DETAIL_PLAIN, T, __VA_ARGS__)};                            \
  }                                                                                           \
  static_assert(std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T>,             \
                #T " must be trivially copyable and standard-layout to cross a queue");       \
  static_assert((0 RK_DETAIL_FOLD(RK_DETAIL_SIZE, T, __VA_ARGS__)) == sizeof(T),              \
                #T " has padding or unlisted fields: list every field, and add explicit "     \
                "reserved fields so that sizeof equals the sum of the fields");               \
  static_assert(true RK_DETAIL_FOLD(RK_DETAIL_PLAIN, T, __VA_ARGS__),                         \
                #T " has a field that is not plain data: use arithmetic, enum, arrays of "    \
                "those, or types declared with RK_GPU_TYPE / RK_MESSAGE")

/// Declare a message type: RK_MESSAGE(Type, "stable.name", field1, field2, ...). Use at
/// the namespace scope of Type. The type id is the FNV-1a hash of the name.
#define RK_MESSAGE(T, NAME, ...)                                                           \
  RK_DETAIL_DECLARE(T, NAME, ::ringkernel::type_id_of_name(NAME), __VA_ARGS__);            \
  static_assert(sizeof(T) <= ::ringkernel::kMaxPayloadSize, #T " exceeds the 64 KiB payload limit")

/// Declare a message type with an explicit numeric id (non-zero).
#define RK_MESSAGE_WITH_ID(T, NAME, ID, ...)                    \
  RK_DETAIL_DECLARE(T, NAME, ID, __VA_ARGS__);                  \
  static_assert((ID) != 0, #T ": message type id 0 is reserved")

/// Declare plain data (kernel state, nested structs) that may live on the device.
#define RK_GPU_TYPE(T, ...) RK_DETAIL_DECLARE(T, #T, 0, __VA_ARGS__)

namespace ringkernel {

// ---------------------------------------------------------------------------------------
// Wire header (256 bytes): the self-describing form of a message outside a queue — bytes
// handed to send_bytes(), stored, or received from another process.
// ---------------------------------------------------------------------------------------
struct alignas(64) MessageHeader {
  std::uint64_t magic;            //   0  kMessageMagic
  std::uint32_t version;          //   8  kWireVersion
  std::uint32_t flags;            //  12  reserved for flags, 0
  std::uint64_t message_id;       //  16
  std::uint64_t correlation_id;   //  24  0 = none
  std::uint64_t type_id;          //  32  stable type id of the payload
  std::uint64_t source_kernel;    //  40  numeric id of the sender (0 = host)
  std::uint64_t dest_kernel;      //  48  numeric id of the receiver
  std::uint32_t payload_size;     //  56  bytes following the header
  std::uint8_t priority;          //  60  Priority
  std::uint8_t reserved0[3];      //  61
  HlcTimestamp timestamp;         //  64  stamped by the sender's clock
  std::uint64_t tenant_id;        //  88
  std::uint64_t deadline_us;      //  96  0 = none
  std::uint32_t payload_checksum; // 104  FNV-1a 32 of the payload bytes
  std::uint32_t reserved1;        // 108
  std::uint8_t reserved2[144];    // 112 .. 256
};
static_assert(sizeof(MessageHeader) == 256);
static_assert(alignof(MessageHeader) == 64);
static_assert(std::is_trivially_copyable_v<MessageHeader> && std::is_standard_layout_v<MessageHeader>);
static_assert(offsetof(MessageHeader, magic) == 0);
static_assert(offsetof(MessageHeader, version) == 8);
static_assert(offsetof(MessageHeader, flags) == 12);
static_assert(offsetof(MessageHeader, message_id) == 16);
static_assert(offsetof(MessageHeader, correlation_id) == 24);
static_assert(offsetof(MessageHeader, type_id) == 32);
static_assert(offsetof(MessageHeader, source_kernel) == 40);
static_assert(offsetof(MessageHeader, dest_kernel) == 48);
static_assert(offsetof(MessageHeader, payload_size) == 56);
static_assert(offsetof(MessageHeader, priority) == 60);
static_assert(offsetof(MessageHeader, timestamp) == 64);
static_assert(offsetof(MessageHeader, tenant_id) == 88);
static_assert(offsetof(MessageHeader, deadline_us) == 96);
static_assert(offsetof(MessageHeader, payload_checksum) == 104);
static_assert(offsetof(MessageHeader, reserved2) == 112);

/// FNV-1a 32-bit checksum of payload bytes.
RK_HOST_DEVICE constexpr std::uint32_t payload_checksum(const unsigned char* p, std::size_t n) noexcept {
  std::uint32_t h = 0x811c9dc5u;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x01000193u;
  }
  return h;
}

// ---------------------------------------------------------------------------------------
// Envelope (48 bytes): the header of a message inside a ring slot. The slot is the
// envelope followed by the payload; the slot size is fixed per ring (a 16-byte payload
// fits a 64-byte slot). The full 256-byte MessageHeader is rebuilt from it on demand.
// ---------------------------------------------------------------------------------------
struct Envelope {
  std::uint64_t type_id;          //  0
  std::uint64_t correlation_id;   //  8
  HlcTimestamp timestamp;         // 16
  std::uint32_t payload_size;     // 40
  std::uint16_t source_kernel;    // 44  0 = host, else kernel slot + 1
  std::uint8_t priority;          // 46
  std::uint8_t flags;             // 47  EnvelopeFlags
};
static_assert(sizeof(Envelope) == 48);
static_assert(offsetof(Envelope, timestamp) == 16);
static_assert(offsetof(Envelope, payload_size) == 40);
static_assert(offsetof(Envelope, source_kernel) == 44);
static_assert(offsetof(Envelope, flags) == 47);

enum EnvelopeFlags : std::uint8_t {
  kEnvelopeResponse = 1u << 0,   ///< a response to the request with the same correlation id
  kEnvelopeK2K = 1u << 1,        ///< arrived from another kernel
};

/// Slot size for a payload of `payload` bytes: envelope + payload rounded up to 16.
RK_HOST_DEVICE constexpr std::uint32_t slot_size_for(std::uint32_t payload) noexcept {
  return (static_cast<std::uint32_t>(sizeof(Envelope)) + payload + 15u) & ~15u;
}

// ---------------------------------------------------------------------------------------
// Serialization of a whole message to / from bytes, with validation.
// ---------------------------------------------------------------------------------------

/// What validate_bytes() found wrong (Ok when the bytes can be trusted).
enum class ValidationError : std::uint8_t {
  Ok = 0,
  TooShort,         ///< fewer bytes than a header
  BadMagic,
  BadVersion,
  PayloadTooLarge,  ///< payload_size above 64 KiB
  SizeMismatch,     ///< payload_size disagrees with the bytes present
  BadChecksum,
  UnknownType,      ///< type id differs from the one expected
};
const char* to_string(ValidationError e) noexcept;

/// Checks every field a receiver depends on. `expected_type` 0 accepts any type id.
ValidationError validate_bytes(std::span<const std::byte> bytes, TypeId expected_type = 0) noexcept;

/// Serialized size of a message of type T.
template <RingMessage T>
inline constexpr std::size_t serialized_size_v = sizeof(MessageHeader) + sizeof(T);

/// Writes header + payload into `out` (at least serialized_size_v<T> bytes).
template <RingMessage T>
std::span<std::byte> serialize(const T& msg, std::span<std::byte> out, const HlcTimestamp& ts = {},
                               CorrelationId corr = {}, Priority prio = Priority::Normal) noexcept {
  MessageHeader h{};
  h.magic = kMessageMagic;
  h.version = kWireVersion;
  h.message_id = MessageId::generate().value;
  h.correlation_id = corr.value;
  h.type_id = type_id_v<T>;
  h.payload_size = sizeof(T);
  h.priority = static_cast<std::uint8_t>(prio);
  h.timestamp = ts;
  h.payload_checksum =
      payload_checksum(reinterpret_cast<const unsigned char*>(&msg), sizeof(T));
  std::memcpy(out.data(), &h, sizeof h);
  std::memcpy(out.data() + sizeof h, &msg, sizeof(T));
  return out.first(sizeof h + sizeof(T));
}

/// Validated read of a message of type T from bytes.
template <RingMessage T>
Result<T> deserialize(std::span<const std::byte> bytes) {
  const ValidationError v = validate_bytes(bytes, type_id_v<T>);
  if (v != ValidationError::Ok) {
    return Error(v == ValidationError::UnknownType ? ErrorCode::UnknownMessageType
                                                   : ErrorCode::InvalidMessage,
                 std::string("message bytes rejected: ") + to_string(v));
  }
  MessageHeader h;
  std::memcpy(&h, bytes.data(), sizeof h);
  if (h.payload_size != sizeof(T)) {
    return Error(ErrorCode::InvalidMessage, "message bytes rejected: payload size " +
                                                std::to_string(h.payload_size) +
                                                " does not match the type's size " +
                                                std::to_string(sizeof(T)));
  }
  T out;
  std::memcpy(&out, bytes.data() + sizeof h, sizeof(T));
  return out;
}

}  // namespace ringkernel
