// A NETLINK_ROUTE socket and a message builder: the transport under
// rtnl.h (links, addresses, routes, neighbours) and tc.h (qdiscs and
// filters). libc only, so the static guest agent links it too.
//
// A netlink socket belongs to the network namespace of the thread that
// created it, for its whole life: open it inside a pod's namespace
// (netns.h) and use it from any thread afterwards.
//
// Thread safety: a NetlinkSocket serves one request at a time; callers
// serialise (it is not shared between threads in cask).
#pragma once

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"

namespace cask::net {

// One request: a nlmsghdr, a family header (ifinfomsg, tcmsg...) and
// attributes, nested with BeginNest/EndNest.
class NlMessage {
 public:
  NlMessage(uint16_t type, uint16_t flags);

  // Appends the family header (padded to NLMSG_ALIGNTO). Call once, first.
  template <typename T>
  void PutHeader(const T& hdr) {
    Append(&hdr, sizeof(hdr));
  }
  void PutAttr(uint16_t type, const void* data, size_t len);
  void PutU8(uint16_t type, uint8_t v) { PutAttr(type, &v, sizeof v); }
  void PutU16(uint16_t type, uint16_t v) { PutAttr(type, &v, sizeof v); }
  void PutU32(uint16_t type, uint32_t v) { PutAttr(type, &v, sizeof v); }
  void PutString(uint16_t type, std::string_view s);  // NUL-terminated
  // Returns the offset of the nest attribute, for EndNest.
  size_t BeginNest(uint16_t type);
  void EndNest(size_t offset);

  nlmsghdr* header() { return reinterpret_cast<nlmsghdr*>(buf_.data()); }
  std::span<const uint8_t> bytes() const { return buf_; }

 private:
  void Append(const void* data, size_t len);
  std::vector<uint8_t> buf_;
};

// The attributes of one message (or of a nest), by type; a type not
// present (or beyond `max`) is an empty span. Lengths come from the
// kernel and are checked against the buffer.
class NlAttrs {
 public:
  NlAttrs(const void* start, size_t len, uint16_t max);
  std::span<const uint8_t> Get(uint16_t type) const;
  bool Has(uint16_t type) const { return !Get(type).empty(); }
  // 0 when absent or too short.
  uint32_t U32(uint16_t type) const;
  uint8_t U8(uint16_t type) const;
  std::string String(uint16_t type) const;
  // The attributes nested in attribute `type`, indexed up to `max` (none
  // when it is absent).
  NlAttrs Nested(uint16_t type, uint16_t max) const;

 private:
  std::vector<std::span<const uint8_t>> by_type_;
};

// Attributes following a family header of type T inside `h`.
template <typename T>
NlAttrs AttrsAfter(const nlmsghdr* h, uint16_t max) {
  const uint8_t* p = static_cast<const uint8_t*>(NLMSG_DATA(h)) + NLMSG_ALIGN(sizeof(T));
  size_t hdr = NLMSG_LENGTH(NLMSG_ALIGN(sizeof(T)));
  size_t len = h->nlmsg_len > hdr ? h->nlmsg_len - hdr : 0;
  return NlAttrs(p, len, max);
}

class NetlinkSocket {
 public:
  // socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_ROUTE) in the calling
  // thread's network namespace.
  static Result<NetlinkSocket> Open();

  // Sends `msg` with NLM_F_ACK and waits for the kernel's answer. A
  // negative errno in the ack is Error::Sys(errno) (ENOENT/ENODEV map to
  // NOT_FOUND, EEXIST to ALREADY_EXISTS) with `what` as context.
  Status Request(NlMessage& msg, const std::string& what);
  // Sends `msg` with NLM_F_DUMP and calls `each` for every answer until
  // NLMSG_DONE. Stops at the first error `each` returns.
  Status Dump(NlMessage& msg, const std::string& what,
              const std::function<Status(const nlmsghdr*)>& each);

 private:
  explicit NetlinkSocket(UniqueFd fd) : fd_(std::move(fd)) {}
  Status Send(NlMessage& msg, const std::string& what);
  // One recv into `buf`, retried on EINTR; `what` is the error's context.
  Result<size_t> Receive(std::vector<uint8_t>& buf, const std::string& what);
  UniqueFd fd_;
  uint32_t seq_ = 1;
};

// Sends the dump request `msg` and calls `each(hdr, attrs)` (returning
// Status) for every answer of type `type` that holds a whole family header
// T, with the attributes after it indexed up to `max`; other answers
// (another type, or too short for T) are skipped. Stops at the first error
// `each` returns, like NetlinkSocket::Dump.
template <typename T, typename F>
Status DumpEach(NetlinkSocket& nl, NlMessage& msg, const std::string& what, uint16_t type, uint16_t max, F&& each) {
  return nl.Dump(msg, what, [&](const nlmsghdr* h) -> Status {
    if (h->nlmsg_type != type || h->nlmsg_len < NLMSG_LENGTH(sizeof(T))) return Ok();
    T hdr;
    std::memcpy(&hdr, NLMSG_DATA(h), sizeof hdr);
    return each(static_cast<const T&>(hdr), AttrsAfter<T>(h, max));
  });
}

// Maps a netlink errno to the error categories callers branch on.
Error NetlinkError(int err, const std::string& what);

}  // namespace cask::net
