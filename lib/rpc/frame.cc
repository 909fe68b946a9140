#include "lib/rpc/frame.h"

#include <algorithm>
#include <cstring>

namespace cask::rpc {
namespace {

void PutBe32(uint32_t v, char* out) {
  out[0] = static_cast<char>((v >> 24) & 0xff);
  out[1] = static_cast<char>((v >> 16) & 0xff);
  out[2] = static_cast<char>((v >> 8) & 0xff);
  out[3] = static_cast<char>(v & 0xff);
}

uint32_t GetBe32(const char* in) {
  const auto* p = reinterpret_cast<const unsigned char*>(in);
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// The buffer is compacted once this many consumed bytes sit at its front,
// so a long-lived connection does not keep growing it.
constexpr size_t kCompactThreshold = 64 * 1024;

}  // namespace

void EncodeHeader(const FrameHeader& h, char out[kHeaderSize]) {
  PutBe32(h.length, out);
  PutBe32(h.stream_id, out + 4);
  out[8] = static_cast<char>(h.type);
  out[9] = static_cast<char>(h.flags);
}

FrameHeader DecodeHeader(const char in[kHeaderSize]) {
  FrameHeader h;
  h.length = GetBe32(in);
  h.stream_id = GetBe32(in + 4);
  h.type = static_cast<uint8_t>(in[8]);
  h.flags = static_cast<uint8_t>(in[9]);
  return h;
}

void FrameDecoder::Feed(std::string_view bytes) {
  // Bytes of an oversized payload are dropped as they arrive, never buffered.
  if (skip_remaining_ > 0 && pending() == 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(skip_remaining_, bytes.size()));
    skip_remaining_ -= n;
    bytes.remove_prefix(n);
  }
  if (bytes.empty()) return;
  if (pos_ > 0 && (pos_ == buf_.size() || pos_ >= kCompactThreshold)) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes.data(), bytes.size());
}

std::optional<Frame> FrameDecoder::Next() {
  if (skip_remaining_ > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(skip_remaining_, pending()));
    skip_remaining_ -= n;
    pos_ += n;
    if (skip_remaining_ > 0) return std::nullopt;
  }
  if (pending() < kHeaderSize) return std::nullopt;
  Frame f;
  f.header = DecodeHeader(buf_.data() + pos_);
  const uint32_t length = f.header.length;
  if (length > kMaxMessageLength) {
    // Reported at once (the server answers RESOURCE_EXHAUSTED without
    // waiting for the payload); the payload is then discarded as it comes.
    pos_ += kHeaderSize;
    skip_remaining_ = length;
    f.oversized = true;
    return f;
  }
  if (pending() < kHeaderSize + length) return std::nullopt;
  f.payload.assign(buf_.data() + pos_ + kHeaderSize, length);
  pos_ += kHeaderSize + length;
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  }
  return f;
}

Result<std::string> EncodeFrame(const FrameHeader& h, std::string_view payload) {
  if (payload.size() > kMaxMessageLength)
    return Error::ResourceExhausted("message length " + std::to_string(payload.size()) +
                                    " exceeds maximum message size of " + std::to_string(kMaxMessageLength));
  FrameHeader hh = h;
  hh.length = static_cast<uint32_t>(payload.size());
  std::string out(kHeaderSize + payload.size(), '\0');
  EncodeHeader(hh, out.data());
  if (!payload.empty()) std::memcpy(out.data() + kHeaderSize, payload.data(), payload.size());
  return out;
}

}  // namespace cask::rpc
