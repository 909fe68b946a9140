// Task events the shim publishes to containerd (containerd's /tasks/* topics):
// domain structs, and their encoding into the wire form containerd's
// events service takes (topic + Any with a BARE type URL such as
// "containerd.events.TaskExit"; never PackFrom, whose
// "type.googleapis.com/" prefix containerd 1.6 subscribers cannot decode).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace cask::shim {

using Timestamp = std::chrono::system_clock::time_point;

struct RootfsMount {
  std::string type;
  std::string source;
  std::string target;
  std::vector<std::string> options;
};

struct TaskCreateEvent {
  std::string container_id;
  std::string bundle;
  std::vector<RootfsMount> rootfs;
  std::string stdin_path, stdout_path, stderr_path;
  bool terminal = false;
  std::string checkpoint;
  uint32_t pid = 0;
};
struct TaskStartEvent {
  std::string container_id;
  uint32_t pid = 0;
};
struct TaskExitEvent {
  std::string container_id;
  std::string id;  // exec id, or the container id for the init process
  uint32_t pid = 0;
  uint32_t exit_status = 0;
  Timestamp exited_at;
};
struct TaskDeleteEvent {
  std::string container_id;
  std::string id;
  uint32_t pid = 0;
  uint32_t exit_status = 0;
  Timestamp exited_at;
};
struct TaskExecAddedEvent {
  std::string container_id;
  std::string exec_id;
};
struct TaskExecStartedEvent {
  std::string container_id;
  std::string exec_id;
  uint32_t pid = 0;
};
struct TaskPausedEvent {
  std::string container_id;
};
struct TaskResumedEvent {
  std::string container_id;
};
struct TaskOomEvent {
  std::string container_id;
};

using TaskEvent = std::variant<TaskCreateEvent, TaskStartEvent, TaskExitEvent, TaskDeleteEvent, TaskExecAddedEvent,
                               TaskExecStartedEvent, TaskPausedEvent, TaskResumedEvent, TaskOomEvent>;

// An event ready for an Envelope.
struct EncodedEvent {
  std::string topic;     // "/tasks/exit"
  std::string type_url;  // "containerd.events.TaskExit"
  std::string value;     // the serialized event message
};

EncodedEvent Encode(const TaskEvent& event);

// A serialized containerd.services.events.ttrpc.v1.ForwardRequest carrying
// one Envelope{timestamp, namespace, topic, event}. The timestamp is always
// set (containerd rejects a zero one).
std::string EncodeForwardRequest(const EncodedEvent& event, const std::string& ns, Timestamp when);

}  // namespace cask::shim
