// The ttrpc adapter of the agent: "cask.agent.v1.Agent" (proto/agent.proto)
// on top of Agent. Converts protobuf messages to domain values and back;
// this is the one place where agent errors become ttrpc statuses (their
// Code is kept). Each call is logged at debug level, each failure at warn.
#pragma once

#include "cmd/cask-agent/agent.h"
#include "lib/base/log.h"
#include "lib/rpc/server.h"

namespace cask::agent {

inline constexpr char kAgentService[] = "cask.agent.v1.Agent";

// Registers every method of the Agent service on `server`. `agent` must
// outlive the server's serving.
void RegisterAgentService(rpc::Server& server, Agent& agent, const Logger& log);

// A GetEventsResponse (proto/agent.proto) for `batch`, serialized with each
// output block copied once, straight into the reply (building the message
// with protobuf would copy the bytes into it and again when serializing).
// Parses as the message protobuf would build from the same batch.
std::string SerializeEvents(const EventBatch& batch);

}  // namespace cask::agent
