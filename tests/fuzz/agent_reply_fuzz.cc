// Fuzz target for the host's agent client (lib/sandbox AgentClient): the
// input is what a hostile guest writes on its side of the agent channel.
//
// A fake agent thread holds the other end of a socketpair. For each record
// of the input it waits for the client's next request frame, then answers
// it; the main thread calls the AgentClient method the record names, one at
// a time, so the run is deterministic. Only the public API of AgentClient is
// used.
//
// Input: records of [method:1][mode:1][len:2 little-endian][len bytes].
//   mode % 3 == 0: the bytes are a ttrpc.Response payload, framed as the
//                  response to the pending request (exercises the envelope
//                  and the per-method reply decoding);
//   mode % 3 == 1: the bytes become Response.payload of a status-OK reply
//                  (the method's own protobuf reply, straight);
//   mode % 3 == 2: the bytes are written raw (any framing, any stream id),
//                  then the agent hangs up: every later call must fail
//                  promptly instead of hanging.
//
// Checks, besides "no crash, no leak, no UB, no hang": what the client
// returns is bounded (stream chunks by max_len).
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "lib/base/unique_fd.h"
#include "lib/oci/spec.h"
#include "lib/rpc/frame.h"
#include "lib/rpc/ttrpc.pb.h"
#include "lib/sandbox/agent_client.h"

namespace {

using cask::UniqueFd;
namespace rpc = cask::rpc;

struct Record {
  uint8_t method = 0;
  uint8_t mode = 0;
  std::string bytes;
};

std::vector<Record> Split(const uint8_t* data, size_t size) {
  std::vector<Record> out;
  size_t pos = 0;
  while (pos + 4 <= size && out.size() < 64) {
    Record r;
    r.method = data[pos];
    r.mode = data[pos + 1];
    size_t len = data[pos + 2] | (static_cast<size_t>(data[pos + 3]) << 8);
    pos += 4;
    if (len > size - pos) len = size - pos;
    r.bytes.assign(reinterpret_cast<const char*>(data + pos), len);
    pos += len;
    out.push_back(std::move(r));
  }
  return out;
}

bool WriteAll(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n < 0) return false;
    s.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads one request frame from `fd`; false at EOF or error.
bool ReadRequest(int fd, rpc::FrameDecoder& dec, rpc::Frame& out) {
  for (;;) {
    if (auto f = dec.Next()) {
      out = std::move(*f);
      return true;
    }
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return false;
    dec.Feed(std::string_view(buf, static_cast<size_t>(n)));
  }
}

void FakeAgent(UniqueFd fd, const std::vector<Record>* records) {
  rpc::FrameDecoder dec;
  for (const Record& r : *records) {
    rpc::Frame req;
    if (!ReadRequest(fd.get(), dec, req)) return;
    rpc::FrameHeader h;
    h.stream_id = req.header.stream_id;
    h.type = static_cast<uint8_t>(rpc::MessageType::kResponse);
    switch (r.mode % 3) {
      case 0: {
        auto frame = rpc::EncodeFrame(h, r.bytes);
        if (!frame.ok() || !WriteAll(fd.get(), *frame)) return;
        break;
      }
      case 1: {
        ttrpc::Response resp;
        resp.set_payload(r.bytes);
        auto frame = rpc::EncodeFrame(h, resp.SerializeAsString());
        if (!frame.ok() || !WriteAll(fd.get(), *frame)) return;
        break;
      }
      default:
        (void)WriteAll(fd.get(), r.bytes);
        return;  // hang up
    }
  }
  // Out of records: hang up, so any call still waiting fails.
}

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "check failed: %s\n", what);
    std::abort();
  }
}

void Call(cask::sandbox::AgentClient& c, uint8_t method) {
  const std::string cid = "c1", eid = "e1";
  constexpr uint32_t kMaxLen = 4096;
  switch (method % 16) {
    case 0: (void)c.Check(); break;
    case 1: (void)c.CreateContainer(cid, cask::oci::Spec{}, "/run/cask/shared/c1/rootfs", false); break;
    case 2: (void)c.StartContainer(cid); break;
    case 3: (void)c.ExecProcess(cid, eid, cask::oci::Process{}, true); break;
    case 4: (void)c.WaitProcess(cid, eid); break;
    case 5: (void)c.ListProcesses(cid); break;
    case 6: {
      auto n = c.WriteStdin(cid, eid, "input");
      if (n.ok()) Check(*n <= 5, "WriteStdin accepted more bytes than it was given");
      break;
    }
    case 7:
    case 8: {
      auto chunk = method % 16 == 7 ? c.ReadStdout(cid, eid, kMaxLen) : c.ReadStderr(cid, eid, kMaxLen);
      if (chunk.ok()) Check(chunk->data.size() <= kMaxLen, "stream chunk longer than max_len");
      break;
    }
    case 9: (void)c.StatsContainer(cid); break;
    case 10: (void)c.GetOOMEvent(); break;
    case 11: (void)c.SignalProcess(cid, eid, 15); break;
    case 12: (void)c.RemoveProcess(cid, eid); break;
    case 13: (void)c.SetupSandbox(cask::sandbox::SandboxSetup{"pod", "host", "", {}}); break;
    case 14: (void)c.TtyWinResize(cid, eid, 24, 80); break;
    default: (void)c.RemoveContainer(cid, true); break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<Record> records = Split(data, size);
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
  UniqueFd host(sv[0]), guest(sv[1]);
  std::thread agent(FakeAgent, std::move(guest), &records);
  {
    cask::sandbox::AgentClient::Options opts;
    // Every call is answered or the agent hangs up, so a call that times
    // out is a client that missed its reply: libFuzzer reports the hang.
    opts.call_timeout = std::chrono::seconds(20);
    cask::sandbox::AgentClient client(std::move(host), opts);
    for (const Record& r : records) Call(client, r.method);
    client.Close();
  }
  agent.join();
  return 0;
}
