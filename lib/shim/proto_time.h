// google.protobuf.Timestamp <-> std::chrono, for the proto adapters only.
#pragma once

#include <google/protobuf/timestamp.pb.h>

#include <chrono>

namespace cask::shim {

inline void SetTimestamp(google::protobuf::Timestamp* ts, std::chrono::system_clock::time_point t) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  int64_t sec = ns / 1000000000;
  int64_t nsec = ns % 1000000000;
  if (nsec < 0) {
    nsec += 1000000000;
    --sec;
  }
  ts->set_seconds(sec);
  ts->set_nanos(static_cast<int32_t>(nsec));
}

}  // namespace cask::shim
