// ttrpc framing (docs/protocol.md, containerd ttrpc channel.go).
//
// Every message is a 10-byte header followed by `length` bytes:
//   0..3 length (big-endian uint32, excludes the header; at most 4 MiB)
//   4..7 stream id (big-endian uint32; odd = client initiated)
//   8    message type (1 request, 2 response, 3 data)
//   9    flags (0 for unary calls)
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "lib/base/result.h"

namespace cask::rpc {

inline constexpr size_t kHeaderSize = 10;
// ttrpc's messageLengthMax: a longer message is refused by both ends.
inline constexpr uint32_t kMaxMessageLength = 4u << 20;

enum class MessageType : uint8_t { kRequest = 1, kResponse = 2, kData = 3 };

struct FrameHeader {
  uint32_t length = 0;
  uint32_t stream_id = 0;
  uint8_t type = 0;
  uint8_t flags = 0;
};

void EncodeHeader(const FrameHeader& h, char out[kHeaderSize]);
FrameHeader DecodeHeader(const char in[kHeaderSize]);

// A decoded frame. `oversized` frames carry no payload: the decoder returns
// them as soon as their header is complete and then discards their `length`
// payload bytes as they arrive; the server answers them with
// RESOURCE_EXHAUSTED.
struct Frame {
  FrameHeader header;
  std::string payload;
  bool oversized = false;
};

// Incremental decoder over an arbitrary byte stream: feed bytes as they
// arrive, pop whole frames. Whatever the input, the decoder buffers at most
// one frame (kMaxMessageLength plus a header) beyond the bytes of the latest
// Feed(): the length field is peer-controlled, so it is capped, and the
// bytes of an oversized payload are dropped instead of buffered. Callers that
// feed bounded chunks and drain Next() after each get bounded memory.
// Not thread-safe.
class FrameDecoder {
 public:
  void Feed(std::string_view bytes);
  // The next complete frame, if any.
  std::optional<Frame> Next();
  // Bytes buffered but not yet returned as a frame (a truncated frame at EOF).
  size_t pending() const { return buf_.size() - pos_; }
  bool skipping() const { return skip_remaining_ > 0; }

 private:
  std::string buf_;
  size_t pos_ = 0;
  // While skipping an oversized payload: bytes still to discard.
  uint64_t skip_remaining_ = 0;
};

// Header + payload, ready to write; the header's length is set from the
// payload (h.length is ignored). Fails with RESOURCE_EXHAUSTED when the
// payload exceeds kMaxMessageLength.
Result<std::string> EncodeFrame(const FrameHeader& h, std::string_view payload);

}  // namespace cask::rpc
