#include "lib/net/netlink.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace cask::net {
namespace {

// One receive buffer: the kernel's dump messages fit in a page each; 32 KiB
// holds several per read and every single one.
constexpr size_t kRecvBuffer = 32 * 1024;

}  // namespace

NlMessage::NlMessage(uint16_t type, uint16_t flags) {
  buf_.resize(NLMSG_HDRLEN);
  nlmsghdr* h = header();
  h->nlmsg_len = NLMSG_HDRLEN;
  h->nlmsg_type = type;
  h->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | flags);
}

void NlMessage::Append(const void* data, size_t len) {
  size_t off = buf_.size();
  buf_.resize(off + NLMSG_ALIGN(len), 0);
  if (len) std::memcpy(buf_.data() + off, data, len);
  header()->nlmsg_len = static_cast<uint32_t>(buf_.size());
}

void NlMessage::PutAttr(uint16_t type, const void* data, size_t len) {
  rtattr a{};
  a.rta_len = static_cast<unsigned short>(RTA_LENGTH(len));
  a.rta_type = type;
  size_t off = buf_.size();
  buf_.resize(off + RTA_SPACE(len), 0);
  std::memcpy(buf_.data() + off, &a, sizeof a);
  if (len) std::memcpy(buf_.data() + off + RTA_LENGTH(0), data, len);
  header()->nlmsg_len = static_cast<uint32_t>(buf_.size());
}

void NlMessage::PutString(uint16_t type, std::string_view s) {
  std::string z(s);
  PutAttr(type, z.c_str(), z.size() + 1);
}

size_t NlMessage::BeginNest(uint16_t type) {
  size_t off = buf_.size();
  PutAttr(static_cast<uint16_t>(type | NLA_F_NESTED), nullptr, 0);
  return off;
}

void NlMessage::EndNest(size_t offset) {
  rtattr a;
  std::memcpy(&a, buf_.data() + offset, sizeof a);
  a.rta_len = static_cast<unsigned short>(buf_.size() - offset);
  std::memcpy(buf_.data() + offset, &a, sizeof a);
}

NlAttrs::NlAttrs(const void* start, size_t len, uint16_t max) : by_type_(static_cast<size_t>(max) + 1) {
  const uint8_t* p = static_cast<const uint8_t*>(start);
  while (len >= sizeof(rtattr)) {
    rtattr a;
    std::memcpy(&a, p, sizeof a);
    if (a.rta_len < sizeof(rtattr) || a.rta_len > len) break;
    uint16_t type = a.rta_type & NLA_TYPE_MASK;
    if (type <= max) by_type_[type] = std::span<const uint8_t>(p + RTA_LENGTH(0), a.rta_len - RTA_LENGTH(0));
    size_t step = RTA_ALIGN(a.rta_len);
    if (step >= len) break;
    p += step;
    len -= step;
  }
}

std::span<const uint8_t> NlAttrs::Get(uint16_t type) const {
  if (type >= by_type_.size()) return {};
  return by_type_[type];
}

uint32_t NlAttrs::U32(uint16_t type) const {
  auto s = Get(type);
  if (s.size() < sizeof(uint32_t)) return 0;
  uint32_t v;
  std::memcpy(&v, s.data(), sizeof v);
  return v;
}

uint8_t NlAttrs::U8(uint16_t type) const {
  auto s = Get(type);
  return s.empty() ? 0 : s[0];
}

std::string NlAttrs::String(uint16_t type) const {
  auto s = Get(type);
  std::string out(reinterpret_cast<const char*>(s.data()), s.size());
  if (auto nul = out.find('\0'); nul != std::string::npos) out.resize(nul);
  return out;
}

NlAttrs NlAttrs::Nested(uint16_t type, uint16_t max) const {
  auto s = Get(type);
  return NlAttrs(s.data(), s.size(), max);
}

Error NetlinkError(int err, const std::string& what) {
  Code c = Code::kInternal;
  if (err == ENOENT || err == ENODEV || err == ESRCH) c = Code::kNotFound;
  else if (err == EEXIST) c = Code::kAlreadyExists;
  else if (err == EINVAL || err == ERANGE || err == EAFNOSUPPORT) c = Code::kInvalidArgument;
  else if (err == EPERM || err == EACCES) c = Code::kFailedPrecondition;
  return Error::Sys(c, err, what);
}

Result<NetlinkSocket> NetlinkSocket::Open() {
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return Error::Sys(errno, "netlink socket");
  UniqueFd owned(fd);
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return Error::Sys(errno, "bind netlink socket");
  int one = 1;
  // Extended acks carry the kernel's message ("TC classifier not found").
  (void)::setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  (void)::setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  return NetlinkSocket(std::move(owned));
}

Status NetlinkSocket::Send(NlMessage& msg, const std::string& what) {
  msg.header()->nlmsg_seq = ++seq_;
  sockaddr_nl to{};
  to.nl_family = AF_NETLINK;
  auto b = msg.bytes();
  ssize_t n;
  do {
    n = ::sendto(fd_.get(), b.data(), b.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Error::Sys(errno, "send netlink request: " + what);
  if (static_cast<size_t>(n) != b.size()) return Error::Internal("short netlink send: " + what);
  return Ok();
}

namespace {

// The kernel's extended-ack message, if any, after the nlmsgerr.
std::string ExtAckMessage(const nlmsghdr* h) {
  if (!(h->nlmsg_flags & NLM_F_ACK_TLVS)) return {};
  size_t base = NLMSG_HDRLEN + sizeof(nlmsgerr);
  if (!(h->nlmsg_flags & NLM_F_CAPPED)) {
    const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
    base += e->msg.nlmsg_len - NLMSG_HDRLEN;
  }
  if (h->nlmsg_len <= base) return {};
  NlAttrs a(reinterpret_cast<const uint8_t*>(h) + base, h->nlmsg_len - base, NLMSGERR_ATTR_MSG);
  return a.String(NLMSGERR_ATTR_MSG);
}

}  // namespace

Result<size_t> NetlinkSocket::Receive(std::vector<uint8_t>& buf, const std::string& what) {
  for (;;) {
    ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), 0);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return Error::Sys(errno, what);
  }
}

Status NetlinkSocket::Request(NlMessage& msg, const std::string& what) {
  msg.header()->nlmsg_flags |= NLM_F_ACK;
  CASK_TRY(Send(msg, what));
  const uint32_t seq = seq_;
  std::vector<uint8_t> buf(kRecvBuffer);
  for (;;) {
    CASK_ASSIGN_OR_RETURN(size_t len, Receive(buf, "receive netlink answer: " + what));
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != seq) continue;
      if (h->nlmsg_type != NLMSG_ERROR) continue;
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return Error::Internal("truncated netlink ack: " + what);
      const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
      if (e->error == 0) return Ok();
      std::string ext = ExtAckMessage(h);
      return NetlinkError(-e->error, ext.empty() ? what : what + " (" + ext + ")");
    }
  }
}

Status NetlinkSocket::Dump(NlMessage& msg, const std::string& what,
                           const std::function<Status(const nlmsghdr*)>& each) {
  msg.header()->nlmsg_flags |= NLM_F_DUMP;
  CASK_TRY(Send(msg, what));
  const uint32_t seq = seq_;
  std::vector<uint8_t> buf(kRecvBuffer);
  std::optional<Error> first;
  for (;;) {
    CASK_ASSIGN_OR_RETURN(size_t len, Receive(buf, "receive netlink dump: " + what));
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != seq) continue;
      if (h->nlmsg_type == NLMSG_DONE) {
        if (first) return std::move(*first);
        return Ok();
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
        if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(nlmsgerr)) && e->error != 0)
          return NetlinkError(-e->error, what);
        continue;
      }
      // Keep reading to the end of the dump even after an error, so the
      // next request does not see this dump's tail.
      if (!first) {
        Status st = each(h);
        if (!st.ok()) first = std::move(st).error();
      }
    }
  }
}

}  // namespace cask::net
