// AgentClient: the host's typed view of the guest agent (cask.agent.v1.Agent,
// proto/agent.proto) over one ttrpc connection.
//
// This is the only host file, besides the shim's service adapter, that sees
// the generated protobuf types: callers work with the plain structs below and
// with lib/oci types. Every method is one RPC; errors come back with the
// agent's status code (NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION,
// INVALID_ARGUMENT, ...) and the RPC name as context.
//
// Timeouts: calls that the agent answers promptly carry
// Options::call_timeout (the guest runs under TCG and can be slow, so it is
// generous). Calls that block by design -- WaitProcess, ReadStdout,
// ReadStderr, WriteStdin, GetOOMEvent -- have no timeout: they return when
// the agent answers or when the connection closes (UNAVAILABLE).
//
// Thread safety: all methods are thread-safe and may be in flight
// concurrently (the connection multiplexes them).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/base/result.h"
#include "lib/base/unique_fd.h"
#include "lib/oci/spec.h"

namespace cask::rpc {
class Client;
}

namespace cask::sandbox {

// The ttrpc service name of the agent.
inline constexpr std::string_view kAgentService = "cask.agent.v1.Agent";

struct AgentInfo {
  std::string agent_version;
  std::string kernel_release;  // uname -r of the guest
  std::chrono::nanoseconds uptime{0};
};

struct GuestMount {
  std::string source;
  std::string target;  // guest path
  std::string fstype;
  std::vector<std::string> options;
};

struct SandboxSetup {
  std::string sandbox_id;
  std::string hostname;
  std::string resolv_conf;  // empty leaves the guest's alone
  std::vector<GuestMount> mounts;
};

struct ProcessExit {
  int status = 0;  // exit code, or 128 + signal
  uint64_t exited_at_ns = 0;  // Unix epoch nanoseconds
};

struct StreamChunk {
  std::string data;
  bool eof = false;  // the stream is closed and fully drained
};

struct ContainerStats {
  std::map<std::string, uint64_t> cpu_stat;
  uint64_t memory_current = 0;
  uint64_t memory_max = 0;  // 0 = max
  uint64_t memory_swap_current = 0;
  std::map<std::string, uint64_t> memory_stat;
  std::map<std::string, uint64_t> memory_events;
  uint64_t pids_current = 0;
  uint64_t pids_max = 0;  // 0 = max
  struct Io {
    uint64_t major = 0, minor = 0, rbytes = 0, wbytes = 0, rios = 0, wios = 0;
  };
  std::vector<Io> io;
};

class AgentClient {
 public:
  struct Options {
    // Timeout of the calls that do not block by design.
    std::chrono::milliseconds call_timeout{60'000};
    // Timeout of one Check attempt in WaitReady.
    std::chrono::milliseconds check_attempt_timeout{1'000};
  };

  // Takes the connected channel (a unix socket to QEMU's virtio-serial
  // chardev, a vsock, or one end of a socketpair in tests).
  explicit AgentClient(UniqueFd channel);
  AgentClient(UniqueFd channel, Options opts);
  ~AgentClient();  // Close()s and joins the connection's reader.
  AgentClient(const AgentClient&) = delete;
  AgentClient& operator=(const AgentClient&) = delete;

  // Retries Check until the agent answers, the connection closes, `abort`
  // returns true (polled between attempts; e.g. "the VM has exited" or "the
  // user pressed ^C"), or `timeout` passes (DEADLINE_EXCEEDED). On a serial
  // channel requests written before the guest opened its port are delivered
  // late, so each attempt has its own short timeout.
  Result<AgentInfo> WaitReady(std::chrono::milliseconds timeout, const std::function<bool()>& abort = {});

  Result<AgentInfo> Check();
  Status SetupSandbox(const SandboxSetup& setup);
  // The agent replies before powering the guest off. `timeout` bounds the
  // wait (defaults to Options::call_timeout).
  Status DestroySandbox(std::optional<std::chrono::milliseconds> timeout = std::nullopt);

  // `spec` is sent as JSON; its bind-mount sources must already be guest
  // paths (Sandbox::ShareMounts). Returns the guest pid of the init process.
  Result<uint32_t> CreateContainer(const std::string& container_id, const oci::Spec& spec,
                                   const std::string& rootfs_path, bool stdin);
  Result<uint32_t> StartContainer(const std::string& container_id);
  Status RemoveContainer(const std::string& container_id, bool force);

  Result<uint32_t> ExecProcess(const std::string& container_id, const std::string& exec_id,
                               const oci::Process& process, bool stdin);
  Status SignalProcess(const std::string& container_id, const std::string& exec_id, int signal,
                       bool all = false);
  Result<ProcessExit> WaitProcess(const std::string& container_id, const std::string& exec_id);
  Result<std::vector<uint32_t>> ListProcesses(const std::string& container_id);
  // Forgets a stopped exec in the guest (see RemoveProcess in agent.proto).
  Status RemoveProcess(const std::string& container_id, const std::string& exec_id);

  // Returns how many bytes the agent accepted (may be fewer than data.size()).
  Result<size_t> WriteStdin(const std::string& container_id, const std::string& exec_id,
                            std::string_view data);
  Status CloseStdin(const std::string& container_id, const std::string& exec_id);
  Result<StreamChunk> ReadStdout(const std::string& container_id, const std::string& exec_id,
                                 uint32_t max_len);
  Result<StreamChunk> ReadStderr(const std::string& container_id, const std::string& exec_id,
                                 uint32_t max_len);
  Status TtyWinResize(const std::string& container_id, const std::string& exec_id, uint32_t rows,
                      uint32_t cols);

  Result<ContainerStats> StatsContainer(const std::string& container_id);
  Status PauseContainer(const std::string& container_id);
  Status ResumeContainer(const std::string& container_id);
  Status UpdateContainer(const std::string& container_id, const oci::LinuxResources& resources);
  // Blocks until some container's process is OOM-killed; returns its id.
  Result<std::string> GetOOMEvent();

  // Shuts the connection down: pending and later calls fail with UNAVAILABLE.
  void Close();
  bool closed() const;

 private:
  std::unique_ptr<rpc::Client> client_;
  Options opts_;
};

}  // namespace cask::sandbox
