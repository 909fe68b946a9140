#include "lib/rpc/frame.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "lib/rpc/ttrpc.pb.h"
#include "lib/rpc/wire.h"

namespace cask::rpc {
namespace {

std::string Frame1(uint32_t sid, uint8_t type, const std::string& payload) {
  FrameHeader h;
  h.stream_id = sid;
  h.type = type;
  auto f = EncodeFrame(h, payload);
  EXPECT_TRUE(f.ok());
  return *f;
}

TEST(FrameHeader, EncodesBigEndian) {
  // The first frame containerd 1.6.20 sends a shim (reference, section 1.1).
  FrameHeader h{253, 1, 1, 0};
  char out[kHeaderSize];
  EncodeHeader(h, out);
  const unsigned char want[kHeaderSize] = {0, 0, 0, 0xfd, 0, 0, 0, 1, 1, 0};
  EXPECT_EQ(0, memcmp(out, want, kHeaderSize));
  FrameHeader back = DecodeHeader(out);
  EXPECT_EQ(back.length, 253u);
  EXPECT_EQ(back.stream_id, 1u);
  EXPECT_EQ(back.type, 1);
  EXPECT_EQ(back.flags, 0);
}

TEST(FrameHeader, RoundTripsHighBits) {
  FrameHeader h{0x00abcdef, 0xfedcba99, 0xff, 0x80};
  char out[kHeaderSize];
  EncodeHeader(h, out);
  FrameHeader back = DecodeHeader(out);
  EXPECT_EQ(back.length, h.length);
  EXPECT_EQ(back.stream_id, h.stream_id);
  EXPECT_EQ(back.type, h.type);
  EXPECT_EQ(back.flags, h.flags);
}

TEST(EncodeFrame, SetsLengthFromPayload) {
  FrameHeader h{999, 7, 2, 0};
  auto f = EncodeFrame(h, "hello");
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f->size(), kHeaderSize + 5);
  EXPECT_EQ(DecodeHeader(f->data()).length, 5u);
  EXPECT_EQ(f->substr(kHeaderSize), "hello");
}

TEST(EncodeFrame, RefusesOversizedPayload) {
  std::string big(kMaxMessageLength + 1, 'x');
  auto f = EncodeFrame(FrameHeader{}, big);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().code(), Code::kResourceExhausted);
  std::string max(kMaxMessageLength, 'x');
  EXPECT_TRUE(EncodeFrame(FrameHeader{}, max).ok());
}

TEST(FrameDecoder, DecodesByteAtATime) {
  std::string stream = Frame1(1, 1, "abc") + Frame1(3, 1, "") + Frame1(5, 2, std::string(1000, 'z'));
  FrameDecoder d;
  std::vector<Frame> got;
  for (char c : stream) {
    d.Feed(std::string_view(&c, 1));
    while (auto f = d.Next()) got.push_back(std::move(*f));
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].header.stream_id, 1u);
  EXPECT_EQ(got[0].payload, "abc");
  EXPECT_EQ(got[1].header.stream_id, 3u);
  EXPECT_EQ(got[1].payload, "");
  EXPECT_EQ(got[2].header.type, 2);
  EXPECT_EQ(got[2].payload, std::string(1000, 'z'));
  EXPECT_EQ(d.pending(), 0u);
}

TEST(FrameDecoder, DecodesManyFramesFromOneFeed) {
  std::string stream;
  for (uint32_t i = 0; i < 100; ++i) stream += Frame1(2 * i + 1, 1, std::to_string(i));
  FrameDecoder d;
  d.Feed(stream);
  for (uint32_t i = 0; i < 100; ++i) {
    auto f = d.Next();
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->header.stream_id, 2 * i + 1);
    EXPECT_EQ(f->payload, std::to_string(i));
  }
  EXPECT_FALSE(d.Next().has_value());
}

TEST(FrameDecoder, TruncatedFrameStaysPending) {
  std::string f = Frame1(1, 1, "payload");
  FrameDecoder d;
  d.Feed(std::string_view(f).substr(0, 4));  // half a header
  EXPECT_FALSE(d.Next().has_value());
  EXPECT_EQ(d.pending(), 4u);
  d.Feed(std::string_view(f).substr(4, f.size() - 5));  // all but one byte
  EXPECT_FALSE(d.Next().has_value());
  EXPECT_EQ(d.pending(), f.size() - 1);
  d.Feed(std::string_view(f).substr(f.size() - 1));
  auto got = d.Next();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->payload, "payload");
}

TEST(FrameDecoder, SkipsOversizedPayloadAndResyncs) {
  const uint32_t len = kMaxMessageLength + 100;
  FrameHeader h{len, 9, 1, 0};
  char hdr[kHeaderSize];
  EncodeHeader(h, hdr);
  FrameDecoder d;
  d.Feed(std::string_view(hdr, kHeaderSize));
  auto f = d.Next();
  ASSERT_TRUE(f.has_value());
  EXPECT_TRUE(f->oversized);
  EXPECT_EQ(f->header.stream_id, 9u);
  EXPECT_EQ(f->header.length, len);
  EXPECT_TRUE(f->payload.empty());
  EXPECT_TRUE(d.skipping());
  // Feed the payload in chunks; nothing is buffered while skipping.
  std::string chunk(64 * 1024, '\xff');
  uint32_t left = len;
  while (left > chunk.size()) {
    d.Feed(chunk);
    left -= chunk.size();
    EXPECT_FALSE(d.Next().has_value());
    EXPECT_EQ(d.pending(), 0u);
  }
  // The rest of the payload and the next frame arrive together.
  d.Feed(std::string(left, '\xff') + Frame1(11, 1, "next"));
  auto n = d.Next();
  ASSERT_TRUE(n.has_value());
  EXPECT_FALSE(n->oversized);
  EXPECT_EQ(n->header.stream_id, 11u);
  EXPECT_EQ(n->payload, "next");
  EXPECT_FALSE(d.skipping());
}

TEST(FrameDecoder, AcceptsExactlyMaxLength) {
  std::string payload(kMaxMessageLength, 'm');
  FrameDecoder d;
  d.Feed(Frame1(1, 1, payload));
  auto f = d.Next();
  ASSERT_TRUE(f.has_value());
  EXPECT_FALSE(f->oversized);
  EXPECT_EQ(f->payload.size(), kMaxMessageLength);
}

TEST(FrameDecoder, GarbageNeverCrashesAndStaysBounded) {
  std::mt19937 rng(12345);
  for (int round = 0; round < 200; ++round) {
    FrameDecoder d;
    size_t total = 0;
    for (int i = 0; i < 50; ++i) {
      std::string chunk(rng() % 512, '\0');
      for (auto& c : chunk) c = static_cast<char>(rng());
      d.Feed(chunk);
      total += chunk.size();
      while (auto f = d.Next()) {
        EXPECT_LE(f->payload.size(), kMaxMessageLength);
        if (!f->oversized) {
          EXPECT_EQ(f->payload.size(), f->header.length);
        }
      }
      EXPECT_LE(d.pending(), kMaxMessageLength + kHeaderSize);
      EXPECT_LE(d.pending(), total);
    }
  }
}

TEST(Wire, StatusRoundTrip) {
  ttrpc::Status st;
  internal::ErrorToStatus(Error::NotFound("no such container: c1").Wrap("wait"), &st);
  EXPECT_EQ(st.code(), 5);
  EXPECT_EQ(st.message(), "wait: no such container: c1");
  Error e = internal::StatusToError(st);
  EXPECT_EQ(e.code(), Code::kNotFound);
  EXPECT_EQ(e.message(), "wait: no such container: c1");
}

TEST(Wire, OutOfRangeCodeIsUnknown) {
  ttrpc::Status st;
  st.set_code(99);
  st.set_message("odd");
  Error e = internal::StatusToError(st);
  EXPECT_EQ(e.code(), Code::kUnknown);
  EXPECT_NE(e.message().find("99"), std::string::npos);
}

TEST(Wire, OversizedResponseBecomesResourceExhausted) {
  std::string frame = internal::EncodeResponseFrame(7, std::string(kMaxMessageLength, 'r'));
  FrameDecoder d;
  d.Feed(frame);
  auto f = d.Next();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->header.stream_id, 7u);
  EXPECT_EQ(f->header.type, static_cast<uint8_t>(MessageType::kResponse));
  ttrpc::Response resp;
  ASSERT_TRUE(resp.ParseFromString(f->payload));
  EXPECT_EQ(resp.status().code(), static_cast<int>(Code::kResourceExhausted));
  EXPECT_TRUE(resp.payload().empty());
}

TEST(Wire, OkResponseCarriesStatusZero) {
  std::string frame = internal::EncodeResponseFrame(1, std::string("pay"));
  ttrpc::Response resp;
  ASSERT_TRUE(resp.ParseFromString(frame.substr(kHeaderSize)));
  EXPECT_TRUE(resp.has_status());
  EXPECT_EQ(resp.status().code(), 0);
  EXPECT_EQ(resp.payload(), "pay");
}

}  // namespace
}  // namespace cask::rpc

namespace cask::rpc {
namespace {

// The two-piece response (header and envelope, then the payload moved in)
// is byte for byte the frame protobuf builds, for payload sizes around the
// inline limit and every varint length of the payload size.
TEST(Wire, ResponseFramePartsMatchTheWholeFrame) {
  for (size_t n : {size_t{0}, size_t{1}, internal::kInlinePayload - 1, internal::kInlinePayload, size_t{100'000},
                   size_t{1} << 20, size_t{3} << 20}) {
    std::string payload(n, '\0');
    for (size_t i = 0; i < n; ++i) payload[i] = static_cast<char>(i * 7 + 3);
    std::string whole = internal::EncodeResponseFrame(77, payload);
    internal::ResponseFrame parts = internal::EncodeResponseFrameParts(77, payload);
    EXPECT_EQ(parts.payload.empty(), n < internal::kInlinePayload) << n;
    EXPECT_TRUE(parts.head + parts.payload == whole) << n;
  }
}

TEST(Wire, ResponseFramePartsOfAnErrorOrOversizedPayloadAreOnePiece) {
  internal::ResponseFrame e = internal::EncodeResponseFrameParts(5, Error::NotFound("no such thing"));
  EXPECT_TRUE(e.payload.empty());
  EXPECT_EQ(e.head, internal::EncodeResponseFrame(5, Error::NotFound("no such thing")));
  std::string big(kMaxMessageLength, 'x');
  internal::ResponseFrame o = internal::EncodeResponseFrameParts(5, big);
  EXPECT_TRUE(o.payload.empty());
  EXPECT_EQ(o.head, internal::EncodeResponseFrame(5, big));  // RESOURCE_EXHAUSTED
}

}  // namespace
}  // namespace cask::rpc
