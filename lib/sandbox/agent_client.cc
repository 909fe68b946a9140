#include "lib/sandbox/agent_client.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "lib/base/thread_annotations.h"
#include "lib/oci/parse.h"
#include "lib/rpc/client.h"
#include "proto/agent.pb.h"

namespace cask::sandbox {

namespace pb = ::cask::agent::v1;

namespace {

using Timeout = std::optional<std::chrono::nanoseconds>;

// One typed call with the method name as error context.
template <typename Resp, typename Req>
Result<Resp> Invoke(rpc::Client& client, std::string_view method, const Req& req, Timeout timeout) {
  return client.CallTyped<Resp>(kAgentService, method, req, timeout).Context("agent " + std::string(method));
}

template <typename Resp, typename Req>
Status InvokeVoid(rpc::Client& client, std::string_view method, const Req& req, Timeout timeout) {
  auto r = Invoke<Resp>(client, method, req, timeout);
  if (!r.ok()) return std::move(r).error();
  return Ok();
}

// The agent's strings are hostile input: cut before they are kept anywhere.
constexpr size_t kMaxGuestString = 4096;
std::string Bounded(const std::string& s) {
  return s.size() <= kMaxGuestString ? s : s.substr(0, kMaxGuestString) + "...[truncated]";
}

AgentInfo ToInfo(const pb::CheckResponse& r) {
  return AgentInfo{Bounded(r.agent_version()), Bounded(r.kernel_release()), std::chrono::nanoseconds(r.uptime_ns()),
                   r.agent_threads(), r.agent_rss_bytes()};
}

using Key = ProcessKey;

// The credit to grant `out` after a take: once half the window is used up
// (credit the agent still has plus output waiting here), back up to the
// window. One grant per half window, never one per chunk. The window is
// the initial credit while all streams' credit together is near the cap.
size_t GrantAfterTake(size_t credit, size_t buffered, bool eof, size_t window, size_t credit_total,
                      size_t buffered_total, size_t cap) {
  if (eof) return 0;
  if (credit_total + buffered_total + window > cap) window = kInitialOutputCredit;
  if (credit + buffered > window / 2) return 0;
  return window - credit - buffered;
}

Error ClosedError(std::string_view what) { return Error::Unavailable(std::string(what) + ": the agent connection is closed"); }

}  // namespace

// Everything the event stream delivered, waiting for the blocking methods.
struct AgentClient::Events {
  struct Output {
    std::string buf;
    size_t head = 0;
    bool eof = false;
    // Bytes the agent may still send (its credit, as the client sees it).
    size_t credit = kInitialOutputCredit;
    // Everything granted since the stream started (the initial credit
    // included): grants carry it, so that they are idempotent.
    uint64_t granted_total = kInitialOutputCredit;
    size_t buffered() const { return buf.size() - head; }
  };
  struct Proc {
    std::optional<ProcessExit> exit;
    Output out[2];  // stdout, stderr
    // Removed by the host before its exit arrived (e.g. RemoveContainer
    // with force): its output is gone, its exit still awaited.
    bool removed = false;
  };

  mutable Mutex mu;
  std::condition_variable_any cv;  // any change below
  bool started GUARDED_BY(mu) = false;
  bool legacy GUARDED_BY(mu) = false;
  // Set by the first GetEvents answer (or UNIMPLEMENTED): until then a
  // waiter cannot tell the event stream from the legacy calls.
  bool mode_known GUARDED_BY(mu) = false;
  bool closed GUARDED_BY(mu) = false;
  bool stopping GUARDED_BY(mu) = false;
  std::map<Key, Proc> procs GUARDED_BY(mu);
  std::map<Key, ProcessExit> unclaimed GUARDED_BY(mu);
  std::deque<Key> unclaimed_order GUARDED_BY(mu);
  std::deque<std::string> ooms GUARDED_BY(mu);
  size_t buffered_total GUARDED_BY(mu) = 0;
  // Sum of every tracked stream's credit (bytes the agent may still send).
  size_t credit_total GUARDED_BY(mu) = 0;
  // Credit freed by TryReadOutput, waiting for the grant thread.
  struct Grant {
    size_t bytes = 0;        // for an agent that does not know `total`
    uint64_t total = 0;      // granted_total of the stream
  };
  std::map<std::pair<Key, int>, Grant> pending_grants GUARDED_BY(mu);
  bool grant_started GUARDED_BY(mu) = false;
  std::thread grant_thread;  // started once under mu; joined by the destructor

  // The listener is called under listener_mu (not mu), so that clearing it
  // waits for a call in progress.
  std::mutex listener_mu;
  std::function<void(const std::vector<Key>&)> listener;

  // Forgets a process's output; returns whether the entry can go now (its
  // exit arrived) or must stay for the exit, which a waiter may still want.
  bool Forget(Proc& p) REQUIRES(mu) {
    for (auto& o : p.out) {
      buffered_total -= o.buffered();
      credit_total -= o.credit;
      o.credit = 0;
      o.buf.clear();
      o.head = 0;
      o.eof = true;
    }
    p.removed = true;
    return p.exit.has_value();
  }
  // Takes up to `cap` bytes of `out` into `chunk` (eof once it is drained);
  // returns the credit to grant back for it, already counted as given.
  size_t Take(Output& out, size_t cap, StreamChunk& chunk, size_t window, size_t max_buffered) REQUIRES(mu) {
    size_t n = std::min(cap, out.buffered());
    chunk.data.assign(out.buf, out.head, n);
    out.head += n;
    if (out.head == out.buf.size()) {
      out.buf.clear();
      out.head = 0;
    }
    buffered_total -= n;
    chunk.eof = out.eof && out.buffered() == 0;
    if (n == 0) return 0;
    size_t grant =
        GrantAfterTake(out.credit, out.buffered(), out.eof, window, credit_total, buffered_total, max_buffered);
    out.credit += grant;
    out.granted_total += grant;
    credit_total += grant;
    return grant;
  }
  EventStats stats GUARDED_BY(mu);
  std::thread thread;  // started once under mu; joined by the destructor
};

AgentClient::AgentClient(UniqueFd channel) : AgentClient(std::move(channel), Options{}) {}

AgentClient::AgentClient(UniqueFd channel, Options opts)
    : client_(std::make_unique<rpc::Client>(std::move(channel))), opts_(opts), events_(std::make_unique<Events>()) {}

AgentClient::~AgentClient() {
  {
    MutexLock lock(events_->mu);
    events_->stopping = true;
  }
  Close();
  if (events_->thread.joinable()) events_->thread.join();
  if (events_->grant_thread.joinable()) events_->grant_thread.join();
}

void AgentClient::Close() {
  client_->Close();
  {
    MutexLock lock(events_->mu);
    events_->closed = true;
    events_->cv.notify_all();
  }
  NotifyListener({});
}

bool AgentClient::closed() const { return client_->closed(); }

AgentClient::EventStats AgentClient::event_stats() const {
  MutexLock lock(events_->mu);
  return events_->stats;
}

bool AgentClient::using_event_stream() const {
  MutexLock lock(events_->mu);
  return events_->started && !events_->legacy && !events_->closed;
}

void AgentClient::EnsureEvents() {
  MutexLock lock(events_->mu);
  if (events_->started || events_->closed || events_->stopping) return;
  events_->started = true;
  events_->thread = std::thread([this] { EventLoop(); });
}

bool AgentClient::Track(const std::string& container_id, const std::string& exec_id) {
  MutexLock lock(events_->mu);
  auto [it, fresh] = events_->procs.try_emplace(Key{container_id, exec_id});
  if (!fresh && it->second.removed) {  // an id reused after its removal (its credit is 0)
    it->second = Events::Proc{};
    events_->credit_total += 2 * kInitialOutputCredit;
    return true;
  }
  if (fresh) events_->credit_total += 2 * kInitialOutputCredit;
  return fresh;
}

void AgentClient::Untrack(const std::string& container_id, const std::string& exec_id, bool exit_may_come) {
  {
  MutexLock lock(events_->mu);
  Key key{container_id, exec_id};
  auto it = events_->procs.find(key);
  if (it != events_->procs.end()) {
    const bool exit_known = events_->Forget(it->second);
    if (exit_known || !exit_may_come) events_->procs.erase(it);
  }
  events_->unclaimed.erase(key);
  events_->cv.notify_all();
  }
  NotifyListener({});
}

void AgentClient::UntrackContainer(const std::string& container_id) {
  {
  MutexLock lock(events_->mu);
  for (auto it = events_->procs.lower_bound(Key{container_id, ""});
       it != events_->procs.end() && it->first.first == container_id;) {
    if (events_->Forget(it->second))
      it = events_->procs.erase(it);
    else
      ++it;
  }
  std::erase_if(events_->unclaimed, [&](const auto& e) { return e.first.first == container_id; });
  events_->cv.notify_all();
  }
  NotifyListener({});
}

void AgentClient::EventLoop() {
  Events& ev = *events_;
  uint64_t ack = 0;
  bool first = true;
  const auto poll_timeout = opts_.event_wait + opts_.call_timeout;
  // Listeners hear of every way the stream ends or changes mode.
  struct NotifyAtEnd {
    AgentClient* c;
    ~NotifyAtEnd() { c->NotifyListener({}); }
  } notify_at_end{this};
  bool changed_all = false;
  for (;;) {
    {
      MutexLock lock(ev.mu);
      if (ev.closed || ev.stopping) return;
    }
    pb::GetEventsRequest req;
    req.set_ack(ack);
    // The first poll answers at once, so that waiters learn early whether
    // the agent has the event stream at all.
    req.set_wait_ms(first ? 0 : static_cast<uint32_t>(opts_.event_wait.count()));
    first = false;
    req.set_max_output_bytes(opts_.batch_output);
    auto r = Invoke<pb::GetEventsResponse>(*client_, "GetEvents", req, poll_timeout);
    if (!r.ok()) {
      Code code = r.error().code();
      MutexLock lock(ev.mu);
      if (code == Code::kUnimplemented) {
        // An agent without the event stream: the blocking methods use the
        // per-process calls from now on.
        ev.legacy = true;
        ev.mode_known = true;
        ev.cv.notify_all();
        return;
      }
      if (code == Code::kUnavailable || client_->closed()) {
        ev.closed = true;
        ev.cv.notify_all();
        return;
      }
      ++ev.stats.poll_errors;
      // DEADLINE_EXCEEDED: ask again (the agent resends an unacked batch).
      // Anything else is a confused or hostile agent: back off, never spin.
      if (code != Code::kDeadlineExceeded)
        ev.cv.wait_for(ev.mu, std::chrono::milliseconds(100), [&] {
          ev.mu.AssertHeld();
          return ev.closed || ev.stopping;
        });
      continue;
    }
    const pb::GetEventsResponse& b = *r;
    if (b.seq() == 0 || b.seq() == ack) {  // nothing new, or a duplicate
      bool now_known = false;
      {
        MutexLock lock(ev.mu);
        if (!ev.mode_known) {
          ev.mode_known = true;
          now_known = true;
          ev.cv.notify_all();
        }
      }
      if (now_known) NotifyListener({});
      continue;
    }
    ack = b.seq();
    std::vector<Key> changed;
    {
    MutexLock lock(ev.mu);
    const bool was_known = ev.mode_known;
    ev.mode_known = true;
    if (!was_known) changed_all = true;
    ++ev.stats.batches;
    uint64_t batch_output = 0;
    for (const auto& o : b.output()) {
      if (o.container_id().size() > kMaxGuestIdLength || o.exec_id().size() > kMaxGuestIdLength) {
        ++ev.stats.dropped_events;
        continue;
      }
      auto it = ev.procs.find(Key{o.container_id(), o.exec_id()});
      if (it == ev.procs.end()) {
        ++ev.stats.dropped_events;
        ev.stats.dropped_output_bytes += o.data().size();
        continue;
      }
      Events::Output& out = it->second.out[o.stream() == pb::STDERR ? 1 : 0];
      if (out.eof) {  // nothing may follow an EOF
        ev.stats.dropped_output_bytes += o.data().size();
        continue;
      }
      size_t n = std::min(o.data().size(), out.credit);
      if (ev.buffered_total + n > opts_.max_buffered_output) n = 0;
      ev.stats.dropped_output_bytes += o.data().size() - n;
      ev.stats.output_bytes += n;
      if (n > 0) {
        if (out.head > 0 && out.head >= out.buf.size() / 2) {
          out.buf.erase(0, out.head);
          out.head = 0;
        }
        out.buf.append(o.data(), 0, n);
        out.credit -= n;
        ev.credit_total -= n;
        ev.buffered_total += n;
        batch_output += n;
      }
      if (o.eof()) out.eof = true;
      if (n > 0 || o.eof()) {
        Key k{o.container_id(), o.exec_id()};
        if (changed.empty() || changed.back() != k) changed.push_back(std::move(k));
      }
    }
    ev.stats.max_batch_output = std::max(ev.stats.max_batch_output, batch_output);
    for (const auto& x : b.exits()) {
      if (x.container_id().size() > kMaxGuestIdLength || x.exec_id().size() > kMaxGuestIdLength) {
        ++ev.stats.dropped_events;
        continue;
      }
      Key key{x.container_id(), x.exec_id()};
      ProcessExit e{x.exit_status(), x.exited_at_ns()};
      ++ev.stats.exits;
      // Exit listeners (process_io.h) hear of it with the output.
      if (changed.empty() || changed.back() != key) changed.push_back(key);
      auto it = ev.procs.find(key);
      if (it != ev.procs.end() && !it->second.removed) {
        it->second.exit = e;
        continue;
      }
      // A removed process's exit: its waiters find it among the unclaimed.
      if (it != ev.procs.end()) ev.procs.erase(it);
      // Not (or no longer) tracked: kept a while for a late WaitProcess.
      if (opts_.max_unclaimed_exits == 0) {
        ++ev.stats.dropped_events;
        continue;
      }
      if (ev.unclaimed.insert_or_assign(key, e).second) ev.unclaimed_order.push_back(key);
      while (ev.unclaimed.size() > opts_.max_unclaimed_exits && !ev.unclaimed_order.empty()) {
        ev.unclaimed.erase(ev.unclaimed_order.front());
        ev.unclaimed_order.pop_front();
        ++ev.stats.dropped_events;
      }
      // Forgotten keys may linger in the order list; keep it bounded too.
      while (ev.unclaimed_order.size() > 2 * opts_.max_unclaimed_exits + 16) ev.unclaimed_order.pop_front();
    }
    for (const auto& id : b.oom_container_ids()) {
      if (id.size() > kMaxGuestIdLength ||
          std::find(ev.ooms.begin(), ev.ooms.end(), id) != ev.ooms.end()) {
        ++ev.stats.dropped_events;
        continue;
      }
      ev.ooms.push_back(id);
      while (ev.ooms.size() > opts_.max_queued_oom) {
        ev.ooms.pop_front();
        ++ev.stats.dropped_events;
      }
    }
    ev.cv.notify_all();
    }
    if (changed_all) {
      changed_all = false;
      NotifyListener({});
    } else if (!changed.empty()) {
      NotifyListener(changed);
    }
  }
}

void AgentClient::NotifyListener(const std::vector<Key>& changed) {
  std::lock_guard<std::mutex> l(events_->listener_mu);
  if (events_->listener) events_->listener(changed);
}

void AgentClient::SetOutputListener(std::function<void(const std::vector<ProcessKey>&)> listener) {
  std::lock_guard<std::mutex> l(events_->listener_mu);
  events_->listener = std::move(listener);
}

Result<AgentInfo> AgentClient::WaitReady(std::chrono::milliseconds timeout, const std::function<bool()>& abort) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int attempts = 0;
  for (;;) {
    if (abort && abort()) return Error(Code::kCancelled, "waiting for the agent: aborted");
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline)
      return Error::DeadlineExceeded("the agent did not answer Check within " + std::to_string(timeout.count()) +
                                     " ms (" + std::to_string(attempts) + " attempts)");
    auto attempt = std::min<std::chrono::nanoseconds>(opts_.check_attempt_timeout, deadline - now);
    auto start = std::chrono::steady_clock::now();
    ++attempts;
    auto r = Invoke<pb::CheckResponse>(*client_, "Check", pb::CheckRequest{}, attempt);
    if (r.ok()) return ToInfo(*r);
    if (client_->closed() || r.error().code() == Code::kUnavailable)
      return Error::Unavailable("the agent channel closed before the agent answered: " + r.error().ToString());
    if (r.error().code() != Code::kDeadlineExceeded) return std::move(r).error().Wrap("waiting for the agent");
    // Timed out: the guest has probably not opened its end yet. Avoid a busy
    // loop if the timeout fired early.
    auto spent = std::chrono::steady_clock::now() - start;
    if (spent < std::chrono::milliseconds(50)) std::this_thread::sleep_for(std::chrono::milliseconds(50) - spent);
  }
}

Result<AgentInfo> AgentClient::Check() {
  CASK_ASSIGN_OR_RETURN(auto r, Invoke<pb::CheckResponse>(*client_, "Check", pb::CheckRequest{}, opts_.call_timeout));
  return ToInfo(r);
}

Status AgentClient::SetupSandbox(const SandboxSetup& setup) {
  pb::SetupSandboxRequest req;
  req.set_sandbox_id(setup.sandbox_id);
  req.set_hostname(setup.hostname);
  req.set_resolv_conf(setup.resolv_conf);
  for (const auto& m : setup.mounts) {
    auto* pm = req.add_mounts();
    pm->set_source(m.source);
    pm->set_target(m.target);
    pm->set_fstype(m.fstype);
    for (const auto& o : m.options) pm->add_options(o);
  }
  return InvokeVoid<pb::Empty>(*client_, "SetupSandbox", req, opts_.call_timeout);
}

Status AgentClient::ConfigureNetwork(const NetworkSetup& net, std::chrono::milliseconds timeout) {
  pb::ConfigureNetworkRequest req;
  for (const auto& i : net.interfaces) {
    auto* pi = req.add_interfaces();
    pi->set_name(i.name);
    pi->set_mac(i.mac);
    pi->set_mtu(i.mtu);
    if (!i.current_mac.empty()) pi->set_current_mac(i.current_mac);
    for (const auto& [addr, plen] : i.addresses) {
      auto* a = pi->add_addresses();
      a->set_address(addr);
      a->set_prefix_len(plen);
    }
  }
  for (const auto& r : net.routes) {
    auto* pr = req.add_routes();
    pr->set_dest(r.dest);
    pr->set_dest_prefix_len(r.dest_prefix_len);
    pr->set_gateway(r.gateway);
    pr->set_source(r.source);
    pr->set_device(r.device);
    pr->set_scope(r.scope);
  }
  for (const auto& n : net.neighbours) {
    auto* pn = req.add_neighbours();
    pn->set_address(n.address);
    pn->set_mac(n.mac);
    pn->set_device(n.device);
  }
  return InvokeVoid<pb::Empty>(*client_, "ConfigureNetwork", req, timeout);
}

Result<std::set<uint16_t>> AgentClient::ListTcpListeners() {
  // The agent caps its list at 64; a longer one is not from a cask agent.
  constexpr int kMaxPorts = 64;
  CASK_ASSIGN_OR_RETURN(auto r, Invoke<pb::ListTcpListenersResponse>(*client_, "ListTcpListeners",
                                                                     pb::ListTcpListenersRequest{}, opts_.call_timeout));
  if (r.ports_size() > kMaxPorts)
    return Error::Internal("the guest listed " + std::to_string(r.ports_size()) + " listening ports (at most 64)");
  std::set<uint16_t> out;
  for (uint32_t p : r.ports()) {
    if (p == 0 || p > 65535) return Error::Internal("the guest listed port " + std::to_string(p));
    out.insert(static_cast<uint16_t>(p));
  }
  return out;
}

Status AgentClient::DestroySandbox(std::optional<std::chrono::milliseconds> timeout) {
  return InvokeVoid<pb::Empty>(*client_, "DestroySandbox", pb::DestroySandboxRequest{},
                               timeout.value_or(opts_.call_timeout));
}

Result<uint32_t> AgentClient::CreateContainer(const std::string& container_id, const oci::Spec& spec,
                                              const std::string& rootfs_path, bool stdin) {
  pb::CreateContainerRequest req;
  req.set_container_id(container_id);
  req.set_oci_spec_json(oci::ToJson(spec));
  req.set_rootfs_path(rootfs_path);
  req.set_stdin(stdin);
  const bool fresh = Track(container_id, "");
  EnsureEvents();
  auto r = Invoke<pb::CreateContainerResponse>(*client_, "CreateContainer", req, opts_.call_timeout);
  // A failed create leaves no process behind in the agent.
  if (!r.ok() && fresh) Untrack(container_id, "", /*exit_may_come=*/false);
  if (!r.ok()) return std::move(r).error();
  return r->pid();
}

Result<uint32_t> AgentClient::StartContainer(const std::string& container_id) {
  pb::StartContainerRequest req;
  req.set_container_id(container_id);
  CASK_ASSIGN_OR_RETURN(auto r,
                        Invoke<pb::StartContainerResponse>(*client_, "StartContainer", req, opts_.call_timeout));
  return r.pid();
}

Status AgentClient::RemoveContainer(const std::string& container_id, bool force) {
  pb::RemoveContainerRequest req;
  req.set_container_id(container_id);
  req.set_force(force);
  Status st = InvokeVoid<pb::Empty>(*client_, "RemoveContainer", req, opts_.call_timeout);
  if (st.ok() || st.error().code() == Code::kNotFound) UntrackContainer(container_id);
  return st;
}

Result<uint32_t> AgentClient::ExecProcess(const std::string& container_id, const std::string& exec_id,
                                          const oci::Process& process, bool stdin) {
  pb::ExecProcessRequest req;
  req.set_container_id(container_id);
  req.set_exec_id(exec_id);
  req.set_process_json(oci::ToJson(process));
  req.set_stdin(stdin);
  const bool fresh = Track(container_id, exec_id);
  EnsureEvents();
  auto r = Invoke<pb::ExecProcessResponse>(*client_, "ExecProcess", req, opts_.call_timeout);
  if (!r.ok()) {
    // Refused before a process existed: forget it. Other failures (an exec
    // that failed to start) leave a stopped process whose exit will come.
    Code c = r.error().code();
    if (fresh && (c == Code::kInvalidArgument || c == Code::kAlreadyExists || c == Code::kFailedPrecondition))
      Untrack(container_id, exec_id, /*exit_may_come=*/false);
    return std::move(r).error();
  }
  return r->pid();
}

Status AgentClient::SignalProcess(const std::string& container_id, const std::string& exec_id, int signal,
                                  bool all) {
  if (signal <= 0 || signal >= 65) return Error::InvalidArgument("signal " + std::to_string(signal) + " out of range");
  pb::SignalProcessRequest req;
  req.set_container_id(container_id);
  req.set_exec_id(exec_id);
  req.set_signal(static_cast<uint32_t>(signal));
  req.set_all(all);
  return InvokeVoid<pb::Empty>(*client_, "SignalProcess", req, opts_.call_timeout);
}

Result<ProcessExit> AgentClient::WaitProcess(const std::string& container_id, const std::string& exec_id) {
  EnsureEvents();
  {
    Events& ev = *events_;
    const Key key{container_id, exec_id};
    MutexLock lock(ev.mu);
    for (;;) {
      if (ev.legacy) break;
      if (!ev.mode_known && !ev.closed) {
        ev.cv.wait(ev.mu);
        continue;
      }
      auto it = ev.procs.find(key);
      if (it != ev.procs.end() && it->second.exit) return *it->second.exit;
      auto u = ev.unclaimed.find(key);
      if (u != ev.unclaimed.end()) return u->second;
      if (ev.closed) return ClosedError("agent WaitProcess");
      if (it == ev.procs.end())
        return Error::NotFound("agent WaitProcess: process " + exec_id + " of container " + container_id +
                               " is not known");
      ev.cv.wait(ev.mu);
    }
  }
  // Legacy agent: one blocking call per process.
  pb::WaitProcessRequest req;
  req.set_container_id(container_id);
  req.set_exec_id(exec_id);
  CASK_ASSIGN_OR_RETURN(auto r, Invoke<pb::WaitProcessResponse>(*client_, "WaitProcess", req, std::nullopt));
  return ProcessExit{r.exit_status(), r.exited_at_ns()};
}

Result<std::optional<ProcessExit>> AgentClient::TryWaitProcess(const std::string& container_id,
                                                              const std::string& exec_id) {
  EnsureEvents();
  Events& ev = *events_;
  const Key key{container_id, exec_id};
  MutexLock lock(ev.mu);
  if (ev.legacy) return Error::Unimplemented("agent WaitProcess: the agent has no event stream");
  auto it = ev.procs.find(key);
  if (it != ev.procs.end() && it->second.exit) return std::optional<ProcessExit>(*it->second.exit);
  auto u = ev.unclaimed.find(key);
  if (u != ev.unclaimed.end()) return std::optional<ProcessExit>(u->second);
  if (ev.closed) return ClosedError("agent WaitProcess");
  if (!ev.mode_known) return std::optional<ProcessExit>();
  if (it == ev.procs.end())
    return Error::NotFound("agent WaitProcess: process " + exec_id + " of container " + container_id +
                           " is not known");
  return std::optional<ProcessExit>();
}

Result<std::vector<uint32_t>> AgentClient::ListProcesses(const std::string& container_id) {
  pb::ListProcessesRequest req;
  req.set_container_id(container_id);
  CASK_ASSIGN_OR_RETURN(auto r,
                        Invoke<pb::ListProcessesResponse>(*client_, "ListProcesses", req, opts_.call_timeout));
  return std::vector<uint32_t>(r.pids().begin(), r.pids().end());
}

Result<size_t> AgentClient::WriteStdin(const std::string& container_id, const std::string& exec_id,
                                       std::string_view data) {
  pb::WriteStreamRequest req;
  req.set_container_id(container_id);
  req.set_exec_id(exec_id);
  req.set_data(std::string(data));
  CASK_ASSIGN_OR_RETURN(auto r, Invoke<pb::WriteStreamResponse>(*client_, "WriteStdin", req, opts_.call_timeout));
  if (r.len() > data.size())
    return Error::Internal("agent WriteStdin: agent claims " + std::to_string(r.len()) + " bytes written of " +
                           std::to_string(data.size()));
  return static_cast<size_t>(r.len());
}

Status AgentClient::RemoveProcess(const std::string& container_id, const std::string& exec_id) {
  pb::RemoveProcessRequest req;
  req.set_container_id(container_id);
  req.set_exec_id(exec_id);
  Status st = InvokeVoid<pb::Empty>(*client_, "RemoveProcess", req, opts_.call_timeout);
  if (st.ok() || st.error().code() == Code::kNotFound) Untrack(container_id, exec_id, /*exit_may_come=*/true);
  return st;
}

Status AgentClient::CloseStdin(const std::string& container_id, const std::string& exec_id) {
  pb::CloseStdinRequest req;
  req.set_container_id(container_id);
  req.set_exec_id(exec_id);
  return InvokeVoid<pb::Empty>(*client_, "CloseStdin", req, opts_.call_timeout);
}

namespace {
Result<StreamChunk> ReadStream(rpc::Client& client, std::string_view method, const std::string& container_id,
                               const std::string& exec_id, uint32_t max_len) {
  pb::ReadStreamRequest req;
  req.set_container_id(container_id);
  req.set_exec_id(exec_id);
  req.set_max_len(max_len);
  CASK_ASSIGN_OR_RETURN(auto r, Invoke<pb::ReadStreamResponse>(client, method, req, std::nullopt));
  // The agent caps replies at 1 MiB; a longer one means a confused peer.
  if (r.data().size() > max_len && max_len != 0)
    return Error::Internal("agent " + std::string(method) + ": " + std::to_string(r.data().size()) +
                           " bytes returned for max_len " + std::to_string(max_len));
  return StreamChunk{std::move(*r.mutable_data()), r.eof()};
}
}  // namespace


Result<StreamChunk> AgentClient::ReadOutput(const std::string& container_id, const std::string& exec_id, int stream,
                                            uint32_t max_len) {
  const char* method = stream == 0 ? "ReadStdout" : "ReadStderr";
  EnsureEvents();
  Events& ev = *events_;
  const size_t cap = max_len == 0 ? size_t{1} << 20 : max_len;
  StreamChunk chunk;
  size_t grant = 0;
  uint64_t granted_total = 0;
  {
    MutexLock lock(ev.mu);
    for (;;) {
      if (ev.legacy) break;
      if (!ev.mode_known && !ev.closed) {
        ev.cv.wait(ev.mu);
        continue;
      }
      auto it = ev.procs.find(Key{container_id, exec_id});
      if (it == ev.procs.end() || it->second.removed) {
        if (ev.closed) return ClosedError(std::string("agent ") + method);
        return StreamChunk{"", true};  // removed (or never ours): nothing more comes
      }
      Events::Output& out = it->second.out[stream];
      if (out.buffered() > 0) {
        grant = ev.Take(out, cap, chunk, opts_.output_window, opts_.max_buffered_output);
        granted_total = out.granted_total;
        break;
      }
      if (out.eof) return StreamChunk{"", true};
      if (ev.closed) return ClosedError(std::string("agent ") + method);
      ev.cv.wait(ev.mu);
    }
  }
  if (chunk.data.empty() && !chunk.eof) return ReadStream(*client_, method, container_id, exec_id, max_len);
  if (grant > 0) {
    pb::GrantOutputRequest req;
    auto* c = req.add_credits();
    c->set_container_id(container_id);
    c->set_exec_id(exec_id);
    c->set_stream(stream == 0 ? pb::STDOUT : pb::STDERR);
    c->set_bytes(static_cast<uint32_t>(grant));
    c->set_total(granted_total);
    // A failed grant means the connection is going away (then every reader
    // ends anyway) or the process is gone: nothing to retry.
    (void)InvokeVoid<pb::Empty>(*client_, "GrantOutput", req, opts_.call_timeout);
    MutexLock lock(ev.mu);
    ++ev.stats.grants;
  }
  return chunk;
}

Result<StreamChunk> AgentClient::TryReadOutput(const std::string& container_id, const std::string& exec_id,
                                               int stream, size_t max_len) {
  const char* method = stream == 0 ? "agent ReadStdout" : "agent ReadStderr";
  if (stream != 0 && stream != 1) return Error::InvalidArgument("output stream " + std::to_string(stream));
  EnsureEvents();
  Events& ev = *events_;
  StreamChunk chunk;
  MutexLock lock(ev.mu);
  if (ev.legacy) return Error::Unimplemented(std::string(method) + ": the agent has no event stream");
  auto it = ev.procs.find(Key{container_id, exec_id});
  if (it == ev.procs.end() || it->second.removed) {
    if (ev.closed) return ClosedError(method);
    if (!ev.mode_known) return chunk;  // not yet known whether the stream exists
    return StreamChunk{"", true};      // removed (or never ours): nothing more comes
  }
  Events::Output& out = it->second.out[stream];
  if (out.buffered() == 0 && !out.eof) {
    if (ev.closed) return ClosedError(method);
    return chunk;
  }
  size_t grant =
      ev.Take(out, max_len == 0 ? size_t{1} << 20 : max_len, chunk, opts_.output_window, opts_.max_buffered_output);
  if (grant > 0) {
    Events::Grant& g = ev.pending_grants[{it->first, stream}];
    g.bytes += grant;
    g.total = out.granted_total;
    if (!ev.grant_started && !ev.closed && !ev.stopping) {
      ev.grant_started = true;
      ev.grant_thread = std::thread([this] { GrantLoop(); });
    }
    ev.cv.notify_all();
  }
  return chunk;
}

void AgentClient::GrantLoop() {
  Events& ev = *events_;
  // Grants are idempotent (they carry the stream's total), so one that
  // timed out is simply sent again with the next round: a reply that is
  // late or lost never holds a stream's credit back for long.
  constexpr auto kGrantTimeout = std::chrono::seconds(5);
  for (;;) {
    pb::GrantOutputRequest req;
    std::map<std::pair<Key, int>, Events::Grant> sending;
    {
      MutexLock lock(ev.mu);
      ev.cv.wait(ev.mu, [&] {
        ev.mu.AssertHeld();
        return ev.closed || ev.stopping || !ev.pending_grants.empty();
      });
      if (ev.closed || ev.stopping) return;
      sending.swap(ev.pending_grants);
      ++ev.stats.grants;
    }
    for (const auto& [k, g] : sending) {
      auto* c = req.add_credits();
      c->set_container_id(k.first.first);
      c->set_exec_id(k.first.second);
      c->set_stream(k.second == 0 ? pb::STDOUT : pb::STDERR);
      c->set_bytes(static_cast<uint32_t>(std::min<size_t>(g.bytes, UINT32_MAX)));
      c->set_total(g.total);
    }
    Status st = InvokeVoid<pb::Empty>(*client_, "GrantOutput", req, kGrantTimeout);
    if (st.ok() || st.error().code() != Code::kDeadlineExceeded) continue;  // done, or nothing to retry
    MutexLock lock(ev.mu);
    ++ev.stats.grant_retries;
    for (auto& [k, g] : sending) {
      Events::Grant& p = ev.pending_grants[k];
      // Not `bytes`: an agent without totals may have counted them already.
      p.total = std::max(p.total, g.total);
    }
  }
}

Result<StreamChunk> AgentClient::ReadStdout(const std::string& container_id, const std::string& exec_id,
                                            uint32_t max_len) {
  return ReadOutput(container_id, exec_id, 0, max_len);
}

Result<StreamChunk> AgentClient::ReadStderr(const std::string& container_id, const std::string& exec_id,
                                            uint32_t max_len) {
  return ReadOutput(container_id, exec_id, 1, max_len);
}

Status AgentClient::TtyWinResize(const std::string& container_id, const std::string& exec_id, uint32_t rows,
                                 uint32_t cols) {
  pb::TtyWinResizeRequest req;
  req.set_container_id(container_id);
  req.set_exec_id(exec_id);
  req.set_rows(rows);
  req.set_cols(cols);
  return InvokeVoid<pb::Empty>(*client_, "TtyWinResize", req, opts_.call_timeout);
}

Result<sys::CgroupStats> AgentClient::StatsContainer(const std::string& container_id) {
  pb::StatsContainerRequest req;
  req.set_container_id(container_id);
  CASK_ASSIGN_OR_RETURN(auto r,
                        Invoke<pb::StatsContainerResponse>(*client_, "StatsContainer", req, opts_.call_timeout));
  sys::CgroupStats s;
  s.cpu_stat.insert(r.cpu_stat().begin(), r.cpu_stat().end());
  s.memory_current = r.memory_current();
  s.memory_max = r.memory_max();
  s.memory_swap_current = r.memory_swap_current();
  s.memory_stat.insert(r.memory_stat().begin(), r.memory_stat().end());
  s.memory_events.insert(r.memory_events().begin(), r.memory_events().end());
  s.pids_current = r.pids_current();
  s.pids_max = r.pids_max();
  for (const auto& io : r.io())
    s.io.push_back(sys::CgroupStats::Io{io.major(), io.minor(), io.rbytes(), io.wbytes(), io.rios(), io.wios()});
  return s;
}

Status AgentClient::SetTime(std::chrono::system_clock::time_point now) {
  pb::SetTimeRequest req;
  req.set_realtime_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count());
  return InvokeVoid<pb::Empty>(*client_, "SetTime", req, opts_.call_timeout);
}

Status AgentClient::PauseContainer(const std::string& container_id) {
  pb::PauseContainerRequest req;
  req.set_container_id(container_id);
  return InvokeVoid<pb::Empty>(*client_, "PauseContainer", req, opts_.call_timeout);
}

Status AgentClient::ResumeContainer(const std::string& container_id) {
  pb::ResumeContainerRequest req;
  req.set_container_id(container_id);
  return InvokeVoid<pb::Empty>(*client_, "ResumeContainer", req, opts_.call_timeout);
}

Status AgentClient::UpdateContainer(const std::string& container_id, const oci::LinuxResources& resources) {
  pb::UpdateContainerRequest req;
  req.set_container_id(container_id);
  req.set_resources_json(oci::ToJson(resources));
  return InvokeVoid<pb::Empty>(*client_, "UpdateContainer", req, opts_.call_timeout);
}

Result<std::string> AgentClient::GetOOMEvent() {
  EnsureEvents();
  {
    Events& ev = *events_;
    MutexLock lock(ev.mu);
    for (;;) {
      if (ev.legacy) break;
      if (!ev.ooms.empty()) {
        std::string id = std::move(ev.ooms.front());
        ev.ooms.pop_front();
        return id;
      }
      if (ev.closed) return ClosedError("agent GetOOMEvent");
      ev.cv.wait(ev.mu);
    }
  }
  CASK_ASSIGN_OR_RETURN(auto r, Invoke<pb::OOMEvent>(*client_, "GetOOMEvent", pb::GetOOMEventRequest{}, std::nullopt));
  if (r.container_id().size() > kMaxGuestIdLength)
    return Error::Internal("agent GetOOMEvent: container id of " + std::to_string(r.container_id().size()) +
                           " bytes (at most " + std::to_string(kMaxGuestIdLength) + ")");
  return std::string(r.container_id());
}

}  // namespace cask::sandbox
