#include "cmd/cask-agent/reply_coalescer.h"

#include <algorithm>

namespace cask::agent {

ReplyCoalescer::Decision ReplyCoalescer::Decide(const Pending& pending, Clock::time_point now) {
  Decision d;
  if (pending.urgent) {
    d.reply = true;
    return d;
  }
  if (pending.output_bytes == 0) {
    held_since_.reset();  // nothing held (e.g. the output was removed)
    d.reply = true;
    return d;
  }
  const size_t enough = pending.limit == 0 ? opts_.min_bytes : std::min(opts_.min_bytes, pending.limit);
  if (pending.output_bytes >= enough) {
    d.reply = true;
    return d;
  }
  if (!held_since_) held_since_ = now;
  const Clock::time_point until = *held_since_ + opts_.max_delay;
  if (now >= until) {
    d.reply = true;
    return d;
  }
  d.hold = true;
  d.until = until;
  return d;
}

}  // namespace cask::agent
