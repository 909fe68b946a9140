#include "lib/net/tc.h"

#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/tc_act/tc_mirred.h>
#include <arpa/inet.h>

#include <cstring>

namespace cask::net {
namespace {

tcmsg IngressMsg(int ifindex) {
  tcmsg t{};
  t.tcm_family = AF_UNSPEC;
  t.tcm_ifindex = ifindex;
  t.tcm_handle = kIngressHandle;
  t.tcm_parent = TC_H_INGRESS;
  return t;
}

// Filter priority: one filter per ingress qdisc; any fixed value works.
constexpr uint32_t kFilterPrio = 49152;
// Before it (lower numbers run first): local-delivery exceptions.
constexpr uint32_t kLocalPrio = 49000;

}  // namespace

Status AddIngressQdisc(NetlinkSocket& nl, int ifindex) {
  NlMessage m(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL);
  m.PutHeader(IngressMsg(ifindex));
  m.PutString(TCA_KIND, "ingress");
  return nl.Request(m, "add ingress qdisc on link " + std::to_string(ifindex));
}

Status DeleteIngressQdisc(NetlinkSocket& nl, int ifindex) {
  NlMessage m(RTM_DELQDISC, 0);
  m.PutHeader(IngressMsg(ifindex));
  m.PutString(TCA_KIND, "ingress");
  auto st = nl.Request(m, "delete ingress qdisc on link " + std::to_string(ifindex));
  // The kernel says EINVAL when the link has no ingress qdisc.
  if (!st.ok() && st.error().sys_errno() == EINVAL)
    return Error::Sys(Code::kNotFound, EINVAL, "no ingress qdisc on link " + std::to_string(ifindex));
  return st;
}

namespace {

// A new u32 filter on the link's ingress qdisc at PRIO for PROTOCOL, up to
// its options.
NlMessage NewU32Filter(int ifindex, uint32_t prio, uint16_t protocol) {
  NlMessage m(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL);
  tcmsg t{};
  t.tcm_family = AF_UNSPEC;
  t.tcm_ifindex = ifindex;
  t.tcm_parent = kIngressHandle;
  t.tcm_info = TC_H_MAKE(prio << 16, htons(protocol));
  m.PutHeader(t);
  m.PutString(TCA_KIND, "u32");
  return m;
}

// TCA_U32_SEL: a terminal selector (a match ends the classification) with
// the one key `key`.
void PutTerminalSelector(NlMessage& m, const tc_u32_key& key) {
  uint8_t buf[sizeof(tc_u32_sel) + sizeof(tc_u32_key)] = {};
  tc_u32_sel sel{};
  sel.flags = TC_U32_TERMINAL;
  sel.nkeys = 1;
  std::memcpy(buf, &sel, sizeof sel);
  std::memcpy(buf + sizeof sel, &key, sizeof key);
  m.PutAttr(TCA_U32_SEL, buf, sizeof buf);
}

}  // namespace

Status AddRedirectFilter(NetlinkSocket& nl, int from_ifindex, int to_ifindex) {
  NlMessage m = NewU32Filter(from_ifindex, kFilterPrio, ETH_P_ALL);
  size_t opts = m.BeginNest(TCA_OPTIONS);
  {
    // One key, mask 0 value 0 at offset 0: matches every packet.
    PutTerminalSelector(m, tc_u32_key{});
    size_t acts = m.BeginNest(TCA_U32_ACT);
    size_t act1 = m.BeginNest(1);  // action order 1
    m.PutString(TCA_ACT_KIND, "mirred");
    size_t aopts = m.BeginNest(TCA_ACT_OPTIONS);
    tc_mirred p{};
    p.action = TC_ACT_STOLEN;
    p.eaction = TCA_EGRESS_REDIR;
    p.ifindex = static_cast<uint32_t>(to_ifindex);
    m.PutAttr(TCA_MIRRED_PARMS, &p, sizeof p);
    m.EndNest(aopts);
    m.EndNest(act1);
    m.EndNest(acts);
  }
  m.EndNest(opts);
  return nl.Request(m, "add u32 redirect filter from link " + std::to_string(from_ifindex) + " to link " +
                           std::to_string(to_ifindex));
}

Status AddLocalDeliveryFilter(NetlinkSocket& nl, int ifindex, uint32_t ipv4) {
  NlMessage m = NewU32Filter(ifindex, kLocalPrio, ETH_P_IP);
  size_t opts = m.BeginNest(TCA_OPTIONS);
  tc_u32_key key{};
  key.mask = 0xffffffffu;
  key.val = ipv4;
  key.off = 16;  // the destination address in the IPv4 header
  PutTerminalSelector(m, key);
  m.PutU32(TCA_U32_CLASSID, TC_H_MAKE(1u << 16, 1));
  m.EndNest(opts);
  return nl.Request(m, "add u32 local-delivery filter on link " + std::to_string(ifindex));
}

Result<std::vector<QdiscInfo>> ListQdiscs(NetlinkSocket& nl) {
  NlMessage m(RTM_GETQDISC, 0);
  m.PutHeader(tcmsg{});  // AF_UNSPEC, every link
  std::vector<QdiscInfo> out;
  CASK_TRY(DumpEach<tcmsg>(nl, m, "list qdiscs", RTM_NEWQDISC, TCA_MAX, [&](const tcmsg& q, const NlAttrs& a) -> Status {
    out.push_back(QdiscInfo{q.tcm_ifindex, a.String(TCA_KIND), q.tcm_handle, q.tcm_parent});
    return Ok();
  }));
  return out;
}

namespace {

// The first action of a u32 filter's action list (its kind and, for mirred,
// the target link and egress action) into `fi`.
void ReadFirstAction(const NlAttrs& u32, FilterInfo& fi) {
  NlAttrs act = u32.Nested(TCA_U32_ACT, 32).Nested(1, TCA_ACT_MAX);  // action order 1
  fi.action = act.String(TCA_ACT_KIND);
  auto parms = act.Nested(TCA_ACT_OPTIONS, TCA_MIRRED_MAX).Get(TCA_MIRRED_PARMS);
  if (parms.size() < sizeof(tc_mirred)) return;
  tc_mirred p;
  std::memcpy(&p, parms.data(), sizeof p);
  fi.redirect_ifindex = static_cast<int>(p.ifindex);
  fi.mirred_eaction = p.eaction;
}

}  // namespace

Result<std::vector<FilterInfo>> ListIngressFilters(NetlinkSocket& nl, int ifindex) {
  NlMessage m(RTM_GETTFILTER, 0);
  tcmsg t{};
  t.tcm_family = AF_UNSPEC;
  t.tcm_ifindex = ifindex;
  t.tcm_parent = kIngressHandle;
  m.PutHeader(t);
  std::vector<FilterInfo> out;
  CASK_TRY(DumpEach<tcmsg>(nl, m, "list filters of link " + std::to_string(ifindex), RTM_NEWTFILTER, TCA_MAX,
                           [&](const tcmsg& f, const NlAttrs& a) -> Status {
    // u32 lists its hash table and each bucket as filters too; only the
    // ones with a selector are rules.
    NlAttrs o = a.Nested(TCA_OPTIONS, TCA_U32_MAX);
    auto sel = o.Get(TCA_U32_SEL);
    if (sel.size() < sizeof(tc_u32_sel)) return Ok();
    FilterInfo fi;
    fi.ifindex = f.tcm_ifindex;
    fi.kind = a.String(TCA_KIND);
    fi.protocol = ntohs(static_cast<uint16_t>(TC_H_MIN(f.tcm_info)));
    tc_u32_sel s;
    std::memcpy(&s, sel.data(), sizeof s);
    fi.terminal = (s.flags & TC_U32_TERMINAL) != 0;
    ReadFirstAction(o, fi);
    out.push_back(std::move(fi));
    return Ok();
  }));
  return out;
}

}  // namespace cask::net
