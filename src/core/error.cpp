#include "ringkernel/error.hpp"

namespace ringkernel {

const char* to_string(ErrorCode c) noexcept {
  switch (c) {
    case ErrorCode::InvalidArgument: return "invalid argument";
    case ErrorCode::InvalidState: return "invalid state";
    case ErrorCode::UnknownKernel: return "unknown kernel";
    case ErrorCode::KernelExists: return "kernel exists";
    case ErrorCode::BackendUnavailable: return "backend unavailable";
    case ErrorCode::NotImplemented: return "not implemented";
    case ErrorCode::QueueFull: return "queue full";
    case ErrorCode::Timeout: return "timeout";
    case ErrorCode::InvalidMessage: return "invalid message";
    case ErrorCode::UnknownMessageType: return "unknown message type";
    case ErrorCode::PayloadTooLarge: return "payload too large";
    case ErrorCode::ClockSkew: return "clock skew";
    case ErrorCode::KernelTerminated: return "kernel terminated";
    case ErrorCode::KernelFaulted: return "kernel faulted";
    case ErrorCode::LaunchFailed: return "launch failed";
    case ErrorCode::OutOfMemory: return "out of memory";
    case ErrorCode::BackendError: return "backend error";
    case ErrorCode::K2KError: return "k2k error";
  }
  return "unknown error";
}

std::string Error::what() const {
  std::string s = to_string(code_);
  s += ": ";
  s += message_;
  if (native_code_ != 0) {
    s += " (native code ";
    s += std::to_string(native_code_);
    s += ")";
  }
  return s;
}

ErrorCode to_error_code(Status s) noexcept {
  switch (s) {
    case Status::Ok: return ErrorCode::InvalidState;  // not an error; callers never map Ok
    case Status::QueueFull: return ErrorCode::QueueFull;
    case Status::QueueEmpty: return ErrorCode::Timeout;
    case Status::Timeout: return ErrorCode::Timeout;
    case Status::Closed: return ErrorCode::KernelTerminated;
    case Status::InvalidMessage: return ErrorCode::InvalidMessage;
    case Status::TooLarge: return ErrorCode::PayloadTooLarge;
    case Status::NoRoute: return ErrorCode::K2KError;
    case Status::TenantMismatch: return ErrorCode::K2KError;
    case Status::Faulted: return ErrorCode::KernelFaulted;
  }
  return ErrorCode::BackendError;
}

}  // namespace ringkernel
