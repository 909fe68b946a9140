// cask error values.
//
// An Error carries a category (a gRPC status code, so the service edges can
// map it to a ttrpc status without losing it), the errno that caused it (0 if
// none) and a chain of context strings, innermost first. Errors are cheap
// values: they are returned, never thrown across a library boundary.
//
// Thread safety: an Error is a plain value; distinct objects may be used from
// distinct threads.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cask {

// The gRPC status codes (the numbering ttrpc puts on the wire).
enum class Code : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

// Upper-case name of a code, e.g. "NOT_FOUND".
std::string_view CodeName(Code code);

class Error {
 public:
  Error(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  // An error from a failed system call: INTERNAL, errno kept (sys_errno()),
  // message "<what>: <strerror>". The errno alone never decides the
  // category: an ENOENT from deep inside a mount is not "no such task". A
  // call site that knows what a failure means names the category itself:
  //   Error::Sys(err == ENOENT ? Code::kNotFound : Code::kInternal, err, "open " + path)
  static Error Sys(int err, std::string what);
  static Error Sys(Code code, int err, std::string what);

  static Error InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Error NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Error AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Error FailedPrecondition(std::string m) { return {Code::kFailedPrecondition, std::move(m)}; }
  static Error Internal(std::string m) { return {Code::kInternal, std::move(m)}; }
  static Error Unimplemented(std::string m) { return {Code::kUnimplemented, std::move(m)}; }
  static Error Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Error DeadlineExceeded(std::string m) { return {Code::kDeadlineExceeded, std::move(m)}; }
  static Error ResourceExhausted(std::string m) { return {Code::kResourceExhausted, std::move(m)}; }

  Code code() const { return code_; }
  int sys_errno() const { return errno_; }
  // The innermost message, without context.
  const std::string& message() const { return message_; }

  // Adds a context string ("what the caller was doing"). Outer context is
  // added last and printed first.
  Error& Wrap(std::string context) & {
    context_.push_back(std::move(context));
    return *this;
  }
  Error&& Wrap(std::string context) && {
    context_.push_back(std::move(context));
    return std::move(*this);
  }

  // "outer: inner: message".
  std::string ToString() const;

  // The same error with the message and each context string cut to at most
  // `max_bytes` bytes (marked "...[N bytes cut]") and control characters
  // replaced by '?': for errors whose text came from the guest, before they
  // are logged or passed on.
  Error Bounded(size_t max_bytes) const;

 private:
  Code code_;
  int errno_ = 0;
  std::string message_;
  std::vector<std::string> context_;
};

// Cuts `s` to at most `max_bytes` bytes (plus a "...[N bytes cut]" mark)
// and replaces control characters with '?'. For strings from the guest.
std::string BoundedString(std::string_view s, size_t max_bytes);

// Why a process could not be executed. The guest reports it with code
// FAILED_PRECONDITION and a message that starts with a fixed marker
// (kExecNotFoundMarker, kExecDeniedMarker) followed by what was run; the
// host reads it with ExecFailureOf, wherever the marker ended up after
// context was added in front. The errno is not sent: the marker is the
// reason.
enum class ExecFailure { kNone, kNotFound, kPermissionDenied };
inline constexpr std::string_view kExecNotFoundMarker = "exec failed: not found: ";
inline constexpr std::string_view kExecDeniedMarker = "exec failed: permission denied: ";

// FAILED_PRECONDITION "<marker><what>: <strerror(err)>" for kNotFound and
// kPermissionDenied (err is kept as sys_errno()).
Error ExecFailedError(ExecFailure why, int err, std::string what);
// The reason an error carries, or kNone (any code other than
// FAILED_PRECONDITION, or no marker).
ExecFailure ExecFailureOf(const Error& e);

}  // namespace cask
