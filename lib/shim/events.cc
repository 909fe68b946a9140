#include "lib/shim/events.h"

#include <algorithm>

#include "github.com/containerd/containerd/api/events/task.pb.h"
#include "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb.h"
#include "lib/shim/proto_time.h"

namespace cask::shim {
namespace {

namespace ev = ::containerd::events;

template <typename M>
EncodedEvent Make(std::string topic, const M& msg) {
  // The bare full name, as containerd's typeurl v1 registers it.
  return EncodedEvent{std::move(topic), std::string(M::descriptor()->full_name()), msg.SerializeAsString()};
}

// TaskExit and TaskDelete carry the same fields.
template <typename M, typename E>
EncodedEvent MakeExit(std::string topic, const E& e) {
  M m;
  m.set_container_id(e.container_id);
  m.set_id(e.id);
  m.set_pid(e.pid);
  m.set_exit_status(e.exit_status);
  SetTimestamp(m.mutable_exited_at(), e.exited_at);
  return Make(std::move(topic), m);
}

struct Encoder {
  EncodedEvent operator()(const TaskCreateEvent& e) const {
    ev::TaskCreate m;
    m.set_container_id(e.container_id);
    m.set_bundle(e.bundle);
    for (const auto& r : e.rootfs) {
      auto* mm = m.add_rootfs();
      mm->set_type(r.type);
      mm->set_source(r.source);
      mm->set_target(r.target);
      for (const auto& o : r.options) mm->add_options(o);
    }
    auto* io = m.mutable_io();
    io->set_stdin(e.stdin_path);
    io->set_stdout(e.stdout_path);
    io->set_stderr(e.stderr_path);
    io->set_terminal(e.terminal);
    m.set_checkpoint(e.checkpoint);
    m.set_pid(e.pid);
    return Make("/tasks/create", m);
  }
  EncodedEvent operator()(const TaskStartEvent& e) const {
    ev::TaskStart m;
    m.set_container_id(e.container_id);
    m.set_pid(e.pid);
    return Make("/tasks/start", m);
  }
  EncodedEvent operator()(const TaskExitEvent& e) const {
    return MakeExit<ev::TaskExit>("/tasks/exit", e);
  }
  EncodedEvent operator()(const TaskDeleteEvent& e) const {
    return MakeExit<ev::TaskDelete>("/tasks/delete", e);
  }
  EncodedEvent operator()(const TaskExecAddedEvent& e) const {
    ev::TaskExecAdded m;
    m.set_container_id(e.container_id);
    m.set_exec_id(e.exec_id);
    return Make("/tasks/exec-added", m);
  }
  EncodedEvent operator()(const TaskExecStartedEvent& e) const {
    ev::TaskExecStarted m;
    m.set_container_id(e.container_id);
    m.set_exec_id(e.exec_id);
    m.set_pid(e.pid);
    return Make("/tasks/exec-started", m);
  }
  EncodedEvent operator()(const TaskPausedEvent& e) const {
    ev::TaskPaused m;
    m.set_container_id(e.container_id);
    return Make("/tasks/paused", m);
  }
  EncodedEvent operator()(const TaskResumedEvent& e) const {
    ev::TaskResumed m;
    m.set_container_id(e.container_id);
    return Make("/tasks/resumed", m);
  }
  EncodedEvent operator()(const TaskOomEvent& e) const {
    ev::TaskOOM m;
    m.set_container_id(e.container_id);
    return Make("/tasks/oom", m);
  }
};

}  // namespace

EncodedEvent Encode(const TaskEvent& event) { return std::visit(Encoder{}, event); }

std::string EncodeForwardRequest(const EncodedEvent& event, const std::string& ns, Timestamp when) {
  ::containerd::services::events::ttrpc::v1::ForwardRequest req;
  auto* env = req.mutable_envelope();
  SetTimestamp(env->mutable_timestamp(), when);
  env->set_namespace_(ns);
  env->set_topic(event.topic);
  // Set by hand: Any::PackFrom would prefix "type.googleapis.com/".
  env->mutable_event()->set_type_url(event.type_url);
  env->mutable_event()->set_value(event.value);
  return req.SerializeAsString();
}

bool OomEventFilter::Accept(const std::string& id, bool known, Clock::time_point now) {
  if (!known) {
    ++unknown_;
    return false;
  }
  auto it = last_.find(id);
  if (it != last_.end() && now - it->second < opts_.coalesce) {
    ++coalesced_;
    return false;
  }
  if (last_refill_ != Clock::time_point{}) {
    double secs = std::chrono::duration<double>(now - last_refill_).count();
    tokens_ = std::min(opts_.max_per_second, tokens_ + secs * opts_.max_per_second);
  }
  last_refill_ = now;
  if (tokens_ < 1) {
    ++rate_limited_;
    return false;
  }
  tokens_ -= 1;
  last_[id] = now;
  return true;
}

}  // namespace cask::shim
