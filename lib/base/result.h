// Result<T>: a value or an Error. The return type of every fallible function.
//
//   Result<UniqueFd> OpenConfig(const std::string& path);
//   CASK_ASSIGN_OR_RETURN(UniqueFd fd, OpenConfig(path));
//   CASK_TRY(WriteAll(fd.get(), data));
//   return Err(Error::NotFound("no such container: " + id));
//
// Result<void> (alias Status) carries only success or an Error.
#pragma once

#include <cassert>
#include <optional>
#include <utility>
#include <variant>

#include "lib/base/error.h"

namespace cask {

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { assert(!ok()); return std::get<1>(v_); }
  Error&& error() && { assert(!ok()); return std::get<1>(std::move(v_)); }

  // Adds context to the error, if any.
  Result&& Context(std::string context) && {
    if (!ok()) std::get<1>(v_).Wrap(std::move(context));
    return std::move(*this);
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : e_(std::move(error)) {}  // NOLINT

  bool ok() const { return !e_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const& { assert(!ok()); return *e_; }
  Error&& error() && { assert(!ok()); return std::move(*e_); }
  Result&& Context(std::string context) && {
    if (e_) e_->Wrap(std::move(context));
    return std::move(*this);
  }

 private:
  std::optional<Error> e_;
};

using Status = Result<void>;

inline Status Ok() { return {}; }

}  // namespace cask

#define CASK_CONCAT_INNER(a, b) a##b
#define CASK_CONCAT(a, b) CASK_CONCAT_INNER(a, b)

// Returns the error of `expr` (a Result) from the enclosing function.
#define CASK_TRY(expr)                                   \
  do {                                                   \
    auto cask_try_result_ = (expr);                      \
    if (!cask_try_result_.ok())                          \
      return std::move(cask_try_result_).error();        \
  } while (0)

// Like CASK_TRY, adding a context string to the error.
#define CASK_TRY_CTX(expr, ctx)                                     \
  do {                                                              \
    auto cask_try_result_ = (expr);                                 \
    if (!cask_try_result_.ok())                                     \
      return std::move(cask_try_result_).error().Wrap(ctx);         \
  } while (0)

// Declares/assigns `lhs` from the value of `expr`, or returns its error.
#define CASK_ASSIGN_OR_RETURN(lhs, expr)                                  \
  auto CASK_CONCAT(cask_result_, __LINE__) = (expr);                      \
  if (!CASK_CONCAT(cask_result_, __LINE__).ok())                          \
    return std::move(CASK_CONCAT(cask_result_, __LINE__)).error();        \
  lhs = std::move(CASK_CONCAT(cask_result_, __LINE__)).value()
