#include "lib/rpc/wire.h"

namespace cask::rpc::internal {

void ErrorToStatus(const Error& error, ttrpc::Status* status) {
  status->set_code(static_cast<int32_t>(error.code()));
  status->set_message(error.ToString());
}

Error StatusToError(const ttrpc::Status& status) {
  const int32_t code = status.code();
  std::string message = status.message().size() > kMaxStatusMessage
                            ? status.message().substr(0, kMaxStatusMessage) + "...[truncated]"
                            : status.message();
  if (code < static_cast<int32_t>(Code::kCancelled) || code > static_cast<int32_t>(Code::kUnauthenticated))
    return Error(Code::kUnknown, "status code " + std::to_string(code) + ": " + message);
  return Error(static_cast<Code>(code), std::move(message));
}

std::string OversizeMessage(uint64_t length) {
  return "message length " + std::to_string(length) + " exceed maximum message size of " +
         std::to_string(kMaxMessageLength);
}

namespace {
void PutVarint(uint64_t v, std::string& out) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
}  // namespace

ResponseFrame EncodeResponseFrameParts(uint32_t stream_id, Result<std::string> result) {
  if (!result.ok() || result->size() < kInlinePayload) return {EncodeResponseFrame(stream_id, result), {}};
  // Response{status: {} (field 1, empty), payload (field 2, bytes)}, encoded
  // as protobuf does for the same message (fields in number order).
  std::string envelope = {'\x0a', '\x00', '\x12'};
  PutVarint(result->size(), envelope);
  const size_t body = envelope.size() + result->size();
  if (body > kMaxMessageLength) return {EncodeResponseFrame(stream_id, result), {}};
  FrameHeader h;
  h.length = static_cast<uint32_t>(body);
  h.stream_id = stream_id;
  h.type = static_cast<uint8_t>(MessageType::kResponse);
  ResponseFrame f;
  f.head.resize(kHeaderSize);
  EncodeHeader(h, f.head.data());
  f.head += envelope;
  f.payload = std::move(result).value();
  return f;
}

std::string EncodeResponseFrame(uint32_t stream_id, const Result<std::string>& result) {
  ttrpc::Response resp;
  if (result.ok()) {
    resp.mutable_status()->set_code(0);
    resp.set_payload(*result);
  } else {
    ErrorToStatus(result.error(), resp.mutable_status());
  }
  FrameHeader h;
  h.stream_id = stream_id;
  h.type = static_cast<uint8_t>(MessageType::kResponse);
  std::string body = resp.SerializeAsString();
  auto frame = EncodeFrame(h, body);
  if (frame.ok()) return std::move(frame).value();
  // The handler's reply does not fit in a frame: tell the caller why.
  ttrpc::Response err;
  err.mutable_status()->set_code(static_cast<int32_t>(Code::kResourceExhausted));
  err.mutable_status()->set_message("response: " + OversizeMessage(body.size()));
  return std::move(EncodeFrame(h, err.SerializeAsString())).value();
}

}  // namespace cask::rpc::internal
