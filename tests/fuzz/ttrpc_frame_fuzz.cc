// Fuzz target for the ttrpc wire input a peer controls: the frame decoder
// (fed in peer-chosen chunk sizes) and the Request/Response envelopes.
//
// Input layout: byte 0 picks the chunk size used to feed the rest (1..256),
// so the fuzzer explores frames split at every boundary.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "lib/rpc/frame.h"
#include "lib/rpc/ttrpc.pb.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckFrame(const cask::rpc::Frame& f) {
  using cask::rpc::kMaxMessageLength;
  if (f.oversized) {
    Check(f.header.length > kMaxMessageLength);
    Check(f.payload.empty());
    return;
  }
  Check(f.header.length <= kMaxMessageLength);
  Check(f.payload.size() == f.header.length);
  // Re-encoding gives back the same header and payload.
  auto again = cask::rpc::EncodeFrame(f.header, f.payload);
  Check(again.ok());
  cask::rpc::FrameHeader h = cask::rpc::DecodeHeader(again->data());
  Check(h.length == f.header.length && h.stream_id == f.header.stream_id && h.type == f.header.type &&
        h.flags == f.header.flags);
  Check(std::string_view(*again).substr(cask::rpc::kHeaderSize) == f.payload);

  // What the server and the client do with the payload.
  ttrpc::Request req;
  if (req.ParseFromString(f.payload)) {
    std::string out = req.SerializeAsString();
    ttrpc::Request back;
    Check(back.ParseFromString(out));
    Check(back.service() == req.service() && back.method() == req.method() && back.payload() == req.payload() &&
          back.timeout_nano() == req.timeout_nano() && back.metadata_size() == req.metadata_size());
  }
  ttrpc::Response resp;
  if (resp.ParseFromString(f.payload)) {
    (void)resp.status().code();
    (void)resp.status().message();
    (void)resp.payload();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = 1 + data[0] % 256;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  cask::rpc::FrameDecoder decoder;
  size_t fed = 0;
  while (!in.empty()) {
    std::string_view part = in.substr(0, chunk);
    in.remove_prefix(part.size());
    decoder.Feed(part);
    fed += part.size();
    while (auto f = decoder.Next()) CheckFrame(*f);
    // The decoder never holds more than it was given, nor more than a frame.
    Check(decoder.pending() <= fed);
    Check(decoder.pending() < cask::rpc::kHeaderSize + cask::rpc::kMaxMessageLength);
  }
  return 0;
}
