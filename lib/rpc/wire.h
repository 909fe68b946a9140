// The ttrpc envelope (internal to lib/rpc): the one place where cask Errors
// become ttrpc statuses and back, and where Request/Response frames are
// built. See docs/protocol.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "lib/base/result.h"
#include "lib/rpc/frame.h"
#include "lib/rpc/ttrpc.pb.h"

namespace cask::rpc::internal {

// The status of a failed call: the error's code and its full message
// (context chain included). Details are never sent.
void ErrorToStatus(const Error& error, ttrpc::Status* status);

// The longest status message kept from a peer: the message is peer
// controlled (a guest agent is hostile input), so a longer one is cut here,
// before it is stored, logged or forwarded.
inline constexpr size_t kMaxStatusMessage = 4096;

// The Error for a non-OK status. Codes outside the gRPC range become UNKNOWN
// (the number is kept in the message). The message is cut to
// kMaxStatusMessage bytes (marked "...[truncated]").
Error StatusToError(const ttrpc::Status& status);

// A whole Response frame on `stream_id` carrying `result`. A response payload
// too large for one frame becomes a RESOURCE_EXHAUSTED status instead.
std::string EncodeResponseFrame(uint32_t stream_id, const Result<std::string>& result);

// The same frame in two pieces, written one after the other: `head` is the
// frame header and the envelope up to the payload's bytes, `payload` the
// reply bytes themselves, moved from `result` rather than copied (a large
// reply, such as a batch of container output, is not copied twice more
// into an envelope and a frame). Payloads below kInlinePayload are put in
// `head` (one write), leaving `payload` empty.
struct ResponseFrame {
  std::string head;
  std::string payload;
};
inline constexpr size_t kInlinePayload = 16 * 1024;
ResponseFrame EncodeResponseFrameParts(uint32_t stream_id, Result<std::string> result);

// The status message ttrpc uses for oversized messages.
std::string OversizeMessage(uint64_t length);

}  // namespace cask::rpc::internal
