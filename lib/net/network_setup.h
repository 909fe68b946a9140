// NetworkSetup: the pod network as the host hands it to the guest agent
// (ConfigureNetwork in proto/agent.proto, field for field): textual
// addresses and MACs, interfaces named as on the host. One struct for both
// ends of the agent wire. Nothing here is checked: the agent checks every
// field (ValidateNetworkRequest in cmd/cask-agent/network.h) before its
// first change.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace cask::net {

struct InterfaceSetup {
  std::string name, mac;
  uint32_t mtu = 0;
  std::vector<std::pair<std::string, uint32_t>> addresses;  // (address, prefix length)
  std::string current_mac;  // empty, or the MAC the NIC has now (it gets `mac`)
};
struct RouteSetup {
  std::string dest;  // empty: default
  uint32_t dest_prefix_len = 0;
  std::string gateway, source, device;
  uint32_t scope = 0;  // RT_SCOPE_*
};
struct NeighbourSetup {
  std::string address, mac, device;
};
struct NetworkSetup {
  std::vector<InterfaceSetup> interfaces;
  std::vector<RouteSetup> routes;
  std::vector<NeighbourSetup> neighbours;
};

}  // namespace cask::net
