// ringkernel/error.hpp — the error convention of the host API.
//
// * Hot paths (try_send, try_receive, queue push/pop, K2K send) return Status, a
//   [[nodiscard]] enum; they never throw and never allocate.
// * Setup and lifecycle calls return Result<T>: either a value or an Error that carries an
//   ErrorCode, the native code of the backend (cudaError_t, VkResult) where there is one,
//   and a sentence a user can act on. Result<T>::value() throws ErrorException for callers
//   who prefer exceptions; nothing else in the library throws.
#pragma once

#include <cstdint>
#include <exception>
#include <string>
#include <utility>
#include <variant>

namespace ringkernel {

/// Outcome of a non-blocking or hot-path operation.
enum class [[nodiscard]] Status : std::uint8_t {
  Ok = 0,
  QueueFull,       ///< no room: backpressure, nothing was written
  QueueEmpty,      ///< nothing to read
  Timeout,         ///< a blocking call's deadline passed
  Closed,          ///< the peer was terminated; nothing was written
  InvalidMessage,  ///< bytes failed validation (magic, version, size, type id)
  TooLarge,        ///< payload larger than the queue's slot or the 64 KiB limit
  NoRoute,         ///< K2K: no route to the destination (counted as a dead letter)
  TenantMismatch,  ///< K2K: destination belongs to another tenant (rejected, counted)
  Faulted,         ///< the kernel stopped with an error
};

constexpr const char* to_string(Status s) noexcept {
  switch (s) {
    case Status::Ok: return "ok";
    case Status::QueueFull: return "queue full";
    case Status::QueueEmpty: return "queue empty";
    case Status::Timeout: return "timeout";
    case Status::Closed: return "closed";
    case Status::InvalidMessage: return "invalid message";
    case Status::TooLarge: return "too large";
    case Status::NoRoute: return "no route";
    case Status::TenantMismatch: return "tenant mismatch";
    case Status::Faulted: return "faulted";
  }
  return "?";
}

/// Error categories of setup and lifecycle calls (the seed's RingKernelError variants).
enum class ErrorCode : std::uint16_t {
  InvalidArgument = 1,   ///< an option or argument is out of range
  InvalidState,          ///< lifecycle transition not allowed from the current state
  UnknownKernel,         ///< no kernel registered under that name
  KernelExists,          ///< a kernel with that id is already launched
  BackendUnavailable,    ///< the backend is not built or has no device
  NotImplemented,        ///< the feature does not exist on this backend
  QueueFull,             ///< blocking send timed out on a full queue
  Timeout,               ///< a blocking call's deadline passed
  InvalidMessage,        ///< malformed bytes, wrong magic / version / size
  UnknownMessageType,    ///< the kernel does not accept this message type id
  PayloadTooLarge,       ///< payload above 64 KiB or above the kernel's slot size
  ClockSkew,             ///< HLC update from a clock too far ahead
  KernelTerminated,      ///< the kernel was terminated; nothing was sent
  KernelFaulted,         ///< the device kernel stopped with an error (trap, bad address)
  LaunchFailed,          ///< the backend refused the launch (occupancy, resources)
  OutOfMemory,           ///< allocation failed
  BackendError,          ///< any other native error; native_code says which
  K2KError,              ///< K2K routing error (unknown destination, tenant mismatch)
};

const char* to_string(ErrorCode c) noexcept;

/// A setup or lifecycle failure: a code, the backend's native code (0 if none), and a
/// sentence that says what happened and what to do.
class Error {
 public:
  Error(ErrorCode code, std::string message, std::int64_t native_code = 0)
      : code_(code), native_code_(native_code), message_(std::move(message)) {}

  ErrorCode code() const noexcept { return code_; }
  std::int64_t native_code() const noexcept { return native_code_; }
  const std::string& message() const noexcept { return message_; }
  /// "<category>: <message>" — what to print.
  std::string what() const;

 private:
  ErrorCode code_;
  std::int64_t native_code_;
  std::string message_;
};

/// Thrown only by Result<T>::value() on an error.
class ErrorException : public std::exception {
 public:
  explicit ErrorException(Error e) : error_(std::move(e)), text_(error_.what()) {}
  const char* what() const noexcept override { return text_.c_str(); }
  const Error& error() const noexcept { return error_; }

 private:
  Error error_;
  std::string text_;
};

/// A value or an Error. Check with `if (r)` / `r.ok()`, read with `*r` / `r->`, or call
/// `value()` which throws ErrorException on an error.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & {
    if (!ok()) throw ErrorException(std::get<1>(v_));
    return std::get<0>(v_);
  }
  T&& value() && {
    if (!ok()) throw ErrorException(std::get<1>(v_));
    return std::get<0>(std::move(v_));
  }
  const T& value() const& {
    if (!ok()) throw ErrorException(std::get<1>(v_));
    return std::get<0>(v_);
  }
  T& operator*() & { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  /// The error; only valid when !ok().
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  void value() const {
    if (!ok_) throw ErrorException(error_);
  }
  const Error& error() const { return error_; }

 private:
  Error error_{ErrorCode::InvalidState, {}};
  bool ok_ = true;
};

/// Map a hot-path Status to the ErrorCode used by the blocking host calls.
ErrorCode to_error_code(Status s) noexcept;

}  // namespace ringkernel
