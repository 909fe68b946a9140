// ReplyCoalescer: when an event reply that would carry only a little output
// goes to the host.
//
// Every GetEvents reply costs the guest a round of context switches, a
// serialization and a virtio-serial round trip (each paid in emulated
// instructions under TCG), whatever it carries. A producer of small writes
// (busybox `head`: 4 KiB at a time) would otherwise get one reply per
// write, and the replies, not the producer, would set the pace. So a reply
// of little output is held back for a short, bounded time while more output
// joins it:
//
//   - something urgent (an exit, an end of stream, an OOM kill, a stream
//     that cannot grow because it used up its credit) goes at once;
//   - output of at least min(min_bytes, what one reply may carry) goes at
//     once;
//   - smaller output waits until max_delay after the moment it was first
//     held (the bound is on the oldest held byte: later output does not
//     extend it), then goes. Interactive output (one `echo`, a terminal's
//     echo) therefore reaches the host at most max_delay late.
//
// The coalescer only decides; the owner waits (a bounded condition-variable
// wait, woken early when more output or something urgent arrives) and asks
// again. Times are passed in, so the policy is tested without a clock.
//
// Not thread-safe: the owner guards it (the Agent, under its event lock).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>

namespace cask::agent {

class ReplyCoalescer {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    // Output that goes at once. Kept well below a stream's buffer, so a
    // held stream never fills its buffer (which would pause the producer).
    size_t min_bytes = 64 * 1024;
    // The longest any output is held. A few milliseconds: unnoticeable
    // for interactive output, long enough for a small-write producer to
    // add several writes under TCG (docs/architecture.md has the
    // measurement behind 4 ms).
    std::chrono::microseconds max_delay{4000};
  };

  // What a reply could carry now.
  struct Pending {
    size_t output_bytes = 0;  // output the reply could carry now
    size_t limit = 0;         // the most output one reply may carry (0: no limit)
    bool urgent = false;      // an exit, an end of stream, an OOM kill, a credit-bound stream
  };

  struct Decision {
    // Reply now with what is pending (or, with nothing pending, build the
    // batch as usual: there is nothing to hold).
    bool reply = false;
    // Output is held: ask again at `until` at the latest.
    bool hold = false;
    Clock::time_point until{};
  };

  ReplyCoalescer() : ReplyCoalescer(Options{}) {}
  explicit ReplyCoalescer(Options opts) : opts_(opts) {}

  // Decides for `pending` at `now`. Holding starts with the first call that
  // holds and lasts until Sent() or until nothing is pending any more.
  Decision Decide(const Pending& pending, Clock::time_point now);
  // A reply went out: the next output starts a new hold.
  void Sent() { held_since_.reset(); }

  const Options& options() const { return opts_; }
  // Since when output has been held, if it is (tests).
  std::optional<Clock::time_point> held_since() const { return held_since_; }

 private:
  const Options opts_;
  std::optional<Clock::time_point> held_since_;
};

}  // namespace cask::agent
