#include "lib/base/error.h"

#include <cerrno>
#include <cstring>

namespace cask {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "OK";
    case Code::kCancelled: return "CANCELLED";
    case Code::kUnknown: return "UNKNOWN";
    case Code::kInvalidArgument: return "INVALID_ARGUMENT";
    case Code::kDeadlineExceeded: return "DEADLINE_EXCEEDED";
    case Code::kNotFound: return "NOT_FOUND";
    case Code::kAlreadyExists: return "ALREADY_EXISTS";
    case Code::kPermissionDenied: return "PERMISSION_DENIED";
    case Code::kResourceExhausted: return "RESOURCE_EXHAUSTED";
    case Code::kFailedPrecondition: return "FAILED_PRECONDITION";
    case Code::kAborted: return "ABORTED";
    case Code::kOutOfRange: return "OUT_OF_RANGE";
    case Code::kUnimplemented: return "UNIMPLEMENTED";
    case Code::kInternal: return "INTERNAL";
    case Code::kUnavailable: return "UNAVAILABLE";
    case Code::kDataLoss: return "DATA_LOSS";
    case Code::kUnauthenticated: return "UNAUTHENTICATED";
  }
  return "UNKNOWN";
}

Error Error::Sys(int err, std::string what) { return Sys(Code::kInternal, err, std::move(what)); }

Error Error::Sys(Code code, int err, std::string what) {
  Error e(code, std::move(what) + ": " + std::strerror(err));
  e.errno_ = err;
  return e;
}

std::string BoundedString(std::string_view s, size_t max_bytes) {
  std::string out(s.substr(0, max_bytes));
  for (char& c : out) {
    unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\n' && c != '\t') || u == 0x7f) c = '?';
  }
  if (s.size() > max_bytes) out += "...[" + std::to_string(s.size() - max_bytes) + " bytes cut]";
  return out;
}

Error Error::Bounded(size_t max_bytes) const {
  Error e(code_, BoundedString(message_, max_bytes));
  e.errno_ = errno_;
  for (const auto& c : context_) e.context_.push_back(BoundedString(c, max_bytes));
  return e;
}

Error ExecFailedError(ExecFailure why, int err, std::string what) {
  std::string_view marker = why == ExecFailure::kPermissionDenied ? kExecDeniedMarker : kExecNotFoundMarker;
  return Error::Sys(Code::kFailedPrecondition, err, std::string(marker) + what);
}

ExecFailure ExecFailureOf(const Error& e) {
  if (e.code() != Code::kFailedPrecondition) return ExecFailure::kNone;
  const std::string& m = e.message();
  if (m.find(kExecNotFoundMarker) != std::string::npos) return ExecFailure::kNotFound;
  if (m.find(kExecDeniedMarker) != std::string::npos) return ExecFailure::kPermissionDenied;
  return ExecFailure::kNone;
}

std::string Error::ToString() const {
  std::string out;
  for (auto it = context_.rbegin(); it != context_.rend(); ++it) {
    out += *it;
    out += ": ";
  }
  out += message_;
  return out;
}

}  // namespace cask
