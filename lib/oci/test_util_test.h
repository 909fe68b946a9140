// Helpers shared by the lib/oci tests.
#pragma once

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "lib/base/result.h"

namespace cask::oci::testing {

// `base` with the value at JSON pointer `ptr` replaced by `value` (created
// if absent).
inline std::string With(const char* base, const std::string& ptr, const nlohmann::json& value) {
  nlohmann::json j = nlohmann::json::parse(base);
  j[nlohmann::json::json_pointer(ptr)] = value;
  return j.dump();
}

// `base` without the value at JSON pointer `ptr`.
inline std::string Without(const char* base, const std::string& ptr) {
  nlohmann::json j = nlohmann::json::parse(base);
  nlohmann::json::json_pointer p(ptr);
  j[p.parent_pointer()].erase(p.back());
  return j.dump();
}

// Asserts that `r` failed with INVALID_ARGUMENT and a message containing `text`.
template <typename T>
::testing::AssertionResult FailsWith(const Result<T>& r, const std::string& text) {
  if (r.ok()) return ::testing::AssertionFailure() << "succeeded, expected error: " << text;
  if (r.error().code() != Code::kInvalidArgument) {
    return ::testing::AssertionFailure() << "code " << CodeName(r.error().code()) << ": "
                                         << r.error().ToString();
  }
  if (r.error().ToString().find(text) == std::string::npos) {
    return ::testing::AssertionFailure() << "error \"" << r.error().ToString()
                                         << "\" does not contain \"" << text << "\"";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace cask::oci::testing
