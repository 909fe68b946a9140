// The one fake pod VM for the host-side unit tests (lib/sandbox, lib/shim):
// a hypervisor::Hypervisor whose VMs are a FakeAgent on a socketpair, with
// a small guest model (process exits keyed by "container/exec") and knobs
// for failures and for a hostile guest. No QEMU, no guest.
//
// FakeWorld is shared by the test and every VM it starts; the knobs are read
// when a VM starts (boot failures) or on each call (hostile modes).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <sys/stat.h>

#include "lib/base/fs.h"
#include "lib/hypervisor/hypervisor.h"
#include "lib/sandbox/shared_dir.h"
#include "lib/sandbox/fake_agent_for_test.h"

namespace cask::sandbox::testing {

struct FakeWorld {
  // Boot failures.
  std::atomic<bool> start_fails{false};      // Hypervisor::Start fails (NOT_FOUND kernel)
  std::atomic<bool> vm_dies_at_boot{false};  // the agent channel closes at once
  std::atomic<bool> setup_fails{false};      // SetupSandbox fails
  std::atomic<bool> create_fails{false};     // CreateContainer fails (INTERNAL)
  // A hostile or broken agent.
  std::atomic<bool> oom_flood{false};        // GetOOMEvent answers at once, ids of oom_id_bytes
  std::atomic<size_t> oom_id_bytes{4u << 20};
  std::atomic<bool> empty_reads{false};      // ReadStdout/ReadStderr answer empty, non-EOF chunks
  std::atomic<bool> silent{false};           // calls other than Check/SetupSandbox never answer
  // A ready VM (TakeReady) with this NIC, once; none: TakeReady is
  // UNIMPLEMENTED. ConfigureNetwork fails for a request with a current_mac
  // when `ready_mac_fails`.
  std::optional<hypervisor::ReadyNic> ready_nic;
  std::atomic<bool> ready_mac_fails{false};
  // An exec of this program fails the way the agent reports a missing binary.
  std::string missing_program = "/bin/missing";

  // What happened.
  std::atomic<int> started{0}, stopped{0}, destroy_rpcs{0}, oom_sent{0}, set_times{0}, cold_starts{0};
  std::vector<pb::ConfigureNetworkRequest> networks;  // ConfigureNetwork calls
  std::atomic<int64_t> last_set_time_ns{0};
  std::map<std::string, uint64_t> oom_kills;  // container -> memory.events oom_kill (StatsContainer)
  std::mutex mu;
  // When each flooded GetOOMEvent call arrived (under mu; cv is notified).
  std::vector<std::chrono::steady_clock::time_point> oom_calls;
  std::condition_variable cv;
  hypervisor::VmSettings last_config;
  pb::SetupSandboxRequest last_setup;
  std::map<std::string, int> exits;       // "container/exec" -> status
  std::vector<std::string> removed;       // RemoveProcess calls, as keys
  std::vector<std::string> created;       // CreateContainer ids
  std::vector<std::string> removed_containers;
  std::set<std::string> live;             // execs started, as keys
  bool stopping = false;                  // the current VM is being stopped

  static std::string Key(const std::string& c, const std::string& e) { return c + "/" + e; }
  void Exit(const std::string& key, int status) {
    std::lock_guard l(mu);
    exits.emplace(key, status);
    cv.notify_all();
  }
  // Blocks a handler until the VM stops (for `silent` and long polls).
  void BlockUntilStopped() {
    std::unique_lock l(mu);
    cv.wait(l, [&] { return stopping; });
  }
  // Waits until `n` flooded GetOOMEvent calls have arrived and returns
  // their arrival times (fewer if `guard` passed first: a hang guard only).
  std::vector<std::chrono::steady_clock::time_point> WaitForOomCalls(size_t n, std::chrono::seconds guard) {
    std::unique_lock l(mu);
    cv.wait_for(l, guard, [&] { return oom_calls.size() >= n; });
    return oom_calls;
  }
};

class FakeVm : public hypervisor::Vm {
 public:
  explicit FakeVm(FakeWorld& w) : w_(w) {
    w_.started++;
    {
      std::lock_guard l(w_.mu);
      w_.stopping = false;
    }
    On<pb::CheckRequest, pb::CheckResponse>("Check", false, [](const pb::CheckRequest&) -> Result<pb::CheckResponse> {
      pb::CheckResponse r;
      r.set_kernel_release("6.1.0-fake");
      return r;
    });
    On<pb::SetupSandboxRequest, pb::Empty>("SetupSandbox", false, [this](const pb::SetupSandboxRequest& r) -> Result<pb::Empty> {
      std::lock_guard l(w_.mu);
      w_.last_setup = r;
      if (w_.setup_fails) return Error::Internal("mount virtiofs: boom");
      return pb::Empty{};
    });
    On<pb::ConfigureNetworkRequest, pb::Empty>("ConfigureNetwork", false, [this](const pb::ConfigureNetworkRequest& r) -> Result<pb::Empty> {
      std::lock_guard l(w_.mu);
      w_.networks.push_back(r);
      if (w_.ready_mac_fails && r.interfaces_size() > 0 && !r.interfaces(0).current_mac().empty())
        return Error::NotFound("no network interface with MAC " + r.interfaces(0).current_mac());
      return pb::Empty{};
    });
    On<pb::SetTimeRequest, pb::Empty>("SetTime", true, [this](const pb::SetTimeRequest& r) -> Result<pb::Empty> {
      w_.set_times++;
      w_.last_set_time_ns = r.realtime_ns();
      return pb::Empty{};
    });
    On<pb::StatsContainerRequest, pb::StatsContainerResponse>(
        "StatsContainer", true, [this](const pb::StatsContainerRequest& r) -> Result<pb::StatsContainerResponse> {
          pb::StatsContainerResponse resp;
          std::lock_guard l(w_.mu);
          auto it = w_.oom_kills.find(r.container_id());
          (*resp.mutable_memory_events())["oom_kill"] = it == w_.oom_kills.end() ? 0 : it->second;
          return resp;
        });
    On<pb::DestroySandboxRequest, pb::Empty>("DestroySandbox", true, [this](const pb::DestroySandboxRequest&) -> Result<pb::Empty> {
      w_.destroy_rpcs++;
      return pb::Empty{};
    });
    On<pb::CreateContainerRequest, pb::CreateContainerResponse>(
        "CreateContainer", true, [this](const pb::CreateContainerRequest& r) -> Result<pb::CreateContainerResponse> {
          if (w_.create_fails) return Error::Internal("pivot_root: Invalid argument");
          if (r.oci_spec_json().find("\"" + w_.missing_program + "\"") != std::string::npos)
            return ExecFailedError(ExecFailure::kNotFound, ENOENT, "executable \"" + w_.missing_program + "\"")
                .Wrap("container init");
          std::lock_guard l(w_.mu);
          w_.created.push_back(r.container_id());
          pb::CreateContainerResponse resp;
          resp.set_pid(10);
          return resp;
        });
    On<pb::StartContainerRequest, pb::StartContainerResponse>(
        "StartContainer", true, [](const pb::StartContainerRequest&) -> Result<pb::StartContainerResponse> {
          pb::StartContainerResponse r;
          r.set_pid(10);
          return r;
        });
    On<pb::ExecProcessRequest, pb::ExecProcessResponse>(
        "ExecProcess", true, [this](const pb::ExecProcessRequest& r) -> Result<pb::ExecProcessResponse> {
          if (r.process_json().find("\"" + w_.missing_program + "\"") != std::string::npos) {
            w_.Exit(FakeWorld::Key(r.container_id(), r.exec_id()), 127);
            return ExecFailedError(ExecFailure::kNotFound, ENOENT, "exec: " + w_.missing_program)
                .Wrap("exec " + r.exec_id());
          }
          {
            std::lock_guard l(w_.mu);
            w_.live.insert(FakeWorld::Key(r.container_id(), r.exec_id()));
          }
          pb::ExecProcessResponse resp;
          resp.set_pid(20);
          return resp;
        });
    On<pb::SignalProcessRequest, pb::Empty>("SignalProcess", true, [this](const pb::SignalProcessRequest& r) -> Result<pb::Empty> {
      w_.Exit(FakeWorld::Key(r.container_id(), r.exec_id()), 128 + static_cast<int>(r.signal()));
      return pb::Empty{};
    });
    On<pb::RemoveContainerRequest, pb::Empty>("RemoveContainer", true, [this](const pb::RemoveContainerRequest& r) -> Result<pb::Empty> {
      {
        std::lock_guard l(w_.mu);
        w_.removed_containers.push_back(r.container_id());
        // Every live process of the container is killed.
        for (const std::string& k : w_.live)
          if (k.rfind(r.container_id() + "/", 0) == 0) w_.exits.emplace(k, 137);
      }
      w_.Exit(FakeWorld::Key(r.container_id(), ""), 137);
      return pb::Empty{};
    });
    On<pb::RemoveProcessRequest, pb::Empty>("RemoveProcess", true, [this](const pb::RemoveProcessRequest& r) -> Result<pb::Empty> {
      std::lock_guard l(w_.mu);
      std::string k = FakeWorld::Key(r.container_id(), r.exec_id());
      if (!w_.exits.count(k)) return Error::FailedPrecondition(k + " is still running");
      w_.exits.erase(k);
      w_.removed.push_back(k);
      return pb::Empty{};
    });
    On<pb::WaitProcessRequest, pb::WaitProcessResponse>(
        "WaitProcess", true, [this](const pb::WaitProcessRequest& r) -> Result<pb::WaitProcessResponse> {
          std::unique_lock l(w_.mu);
          std::string k = FakeWorld::Key(r.container_id(), r.exec_id());
          w_.cv.wait(l, [&] { return w_.stopping || w_.exits.count(k); });
          if (!w_.exits.count(k)) return Error::Unavailable("agent going away");
          pb::WaitProcessResponse resp;
          resp.set_exit_status(w_.exits[k]);
          resp.set_exited_at_ns(1700000000ull * 1000000000ull);
          return resp;
        });
    auto read = [this](const pb::ReadStreamRequest&) -> Result<pb::ReadStreamResponse> {
      pb::ReadStreamResponse r;
      if (w_.empty_reads) return r;  // no data, no EOF, at once: a spinning trap
      r.set_eof(true);
      return r;
    };
    On<pb::ReadStreamRequest, pb::ReadStreamResponse>("ReadStdout", true, read);
    On<pb::ReadStreamRequest, pb::ReadStreamResponse>("ReadStderr", true, read);
    On<pb::ListProcessesRequest, pb::ListProcessesResponse>(
        "ListProcesses", true, [](const pb::ListProcessesRequest&) -> Result<pb::ListProcessesResponse> {
          pb::ListProcessesResponse r;
          r.add_pids(10);
          return r;
        });
    On<pb::PauseContainerRequest, pb::Empty>("PauseContainer", true,
                                             [](const pb::PauseContainerRequest&) -> Result<pb::Empty> { return pb::Empty{}; });
    On<pb::ResumeContainerRequest, pb::Empty>("ResumeContainer", true,
                                              [](const pb::ResumeContainerRequest&) -> Result<pb::Empty> { return pb::Empty{}; });
    On<pb::GetOOMEventRequest, pb::OOMEvent>("GetOOMEvent", true, [this](const pb::GetOOMEventRequest&) -> Result<pb::OOMEvent> {
      if (w_.oom_flood) {
        w_.oom_sent++;
        {
          std::lock_guard l(w_.mu);
          w_.oom_calls.push_back(std::chrono::steady_clock::now());
          w_.cv.notify_all();
        }
        pb::OOMEvent e;
        e.set_container_id(std::string(w_.oom_id_bytes.load(), 'x'));
        return e;
      }
      w_.BlockUntilStopped();
      return Error::Unavailable("agent going away");
    });
    if (w_.vm_dies_at_boot) {
      fake_.CloseWithoutServing();
      exited_ = true;
    } else {
      fake_.Serve();
    }
  }
  ~FakeVm() override { (void)Stop(std::chrono::seconds(1)); }
  pid_t pid() const override { return 4242; }
  hypervisor::Channel channel() const override { return hypervisor::Channel::kSerial; }
  Result<UniqueFd> ConnectAgent(std::chrono::milliseconds) override { return fake_.TakeClientEnd(); }
  Status Stop(std::chrono::milliseconds) override {
    if (!stopped_.exchange(true)) {
      w_.stopped++;
      {
        std::lock_guard l(w_.mu);
        w_.stopping = true;  // blocked handlers return, so the server can stop
      }
      w_.cv.notify_all();
      fake_.Stop();
      exited_ = true;
    }
    return Ok();
  }
  bool Exited() override { return exited_; }
  std::optional<hypervisor::ReadyNic> TakeReadyNic() override { return std::exchange(nic_, std::nullopt); }
  std::optional<hypervisor::ReadyNic> nic_;
  std::string console_log_path() const override { return ""; }
  std::string ConsoleTail(size_t) const override { return exited_ ? "Kernel panic - not syncing: fake" : ""; }

 private:
  // Registers a handler; `may_go_silent`: with FakeWorld::silent set, the
  // call blocks until the VM stops, as a wedged agent does.
  template <typename Req, typename Resp>
  void On(const std::string& method, bool may_go_silent, std::function<Result<Resp>(const Req&)> fn) {
    fake_.On<Req, Resp>(method, [this, may_go_silent, fn = std::move(fn)](const Req& r) -> Result<Resp> {
      if (may_go_silent && w_.silent) {
        w_.BlockUntilStopped();
        return Error::Unavailable("agent going away");
      }
      return fn(r);
    });
  }

  FakeWorld& w_;
  FakeAgent fake_;
  std::atomic<bool> exited_{false};
  std::atomic<bool> stopped_{false};
};

class FakeHypervisor : public hypervisor::Hypervisor {
 public:
  explicit FakeHypervisor(FakeWorld& w) : w_(w) {}
  Result<std::unique_ptr<hypervisor::Vm>> Start(const hypervisor::VmSettings& cfg) override {
    {
      std::lock_guard l(w_.mu);
      w_.last_config = cfg;
    }
    if (w_.start_fails) return Error::NotFound("hypervisor.kernel: /nonexistent/vmlinux: No such file");
    w_.cold_starts++;
    return std::unique_ptr<hypervisor::Vm>(new FakeVm(w_));
  }
  // A pool's VM, as the pooled backend leaves it: cfg.state_dir made with
  // a fresh share (kernel mounts only), the NIC of FakeWorld::ready_nic.
  Result<std::unique_ptr<hypervisor::Vm>> TakeReady(const hypervisor::VmSettings& cfg) override {
    std::optional<hypervisor::ReadyNic> nic;
    {
      std::lock_guard l(w_.mu);
      if (!w_.ready_nic) return Error::Unimplemented("no ready VM");
      nic = std::exchange(w_.ready_nic, std::nullopt);
    }
    if (::mkdir(cfg.state_dir.c_str(), 0700) != 0) return Error::Sys(errno, "mkdir " + cfg.state_dir);
    auto shared = SharedDir::Create(JoinPath(cfg.state_dir, "mounts"), JoinPath(cfg.state_dir, "shared"));
    if (!shared.ok()) return std::move(shared).error();
    (*shared)->Release();
    auto vm = std::make_unique<FakeVm>(w_);
    vm->nic_ = std::move(nic);
    return std::unique_ptr<hypervisor::Vm>(std::move(vm));
  }

 private:
  FakeWorld& w_;
};

}  // namespace cask::sandbox::testing
