// The spec `runc spec` writes (runc 1.1, libcontainer/specconv/example.go),
// field for field. default_spec_test.cc compares it with runc's output.
#include "lib/oci/parse.h"

namespace cask::oci {

Spec DefaultSpec(const std::vector<std::string>& args, bool terminal) {
  Spec s;
  s.oci_version = "1.0.2-dev";
  s.root = Root{.path = "rootfs", .readonly = true};
  s.hostname = "runc";

  Process p;
  p.terminal = terminal;
  p.user = User{};
  p.args = args;
  p.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"};
  p.cwd = "/";
  const std::vector<std::string> caps = {"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"};
  p.capabilities = Capabilities{
      .bounding = caps, .effective = caps, .inheritable = {}, .permitted = caps, .ambient = caps};
  p.rlimits = {Rlimit{.type = "RLIMIT_NOFILE", .hard = 1024, .soft = 1024}};
  p.no_new_privileges = true;
  s.process = std::move(p);

  s.mounts = {
      {.destination = "/proc", .type = "proc", .source = "proc", .options = {}},
      {.destination = "/dev",
       .type = "tmpfs",
       .source = "tmpfs",
       .options = {"nosuid", "strictatime", "mode=755", "size=65536k"}},
      {.destination = "/dev/pts",
       .type = "devpts",
       .source = "devpts",
       .options = {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
      {.destination = "/dev/shm",
       .type = "tmpfs",
       .source = "shm",
       .options = {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
      {.destination = "/dev/mqueue",
       .type = "mqueue",
       .source = "mqueue",
       .options = {"nosuid", "noexec", "nodev"}},
      {.destination = "/sys",
       .type = "sysfs",
       .source = "sysfs",
       .options = {"nosuid", "noexec", "nodev", "ro"}},
      {.destination = "/sys/fs/cgroup",
       .type = "cgroup",
       .source = "cgroup",
       .options = {"nosuid", "noexec", "nodev", "relatime", "ro"}},
  };

  Linux l;
  LinuxResources r;
  r.devices = {DeviceCgroup{.allow = false, .type = "", .major = {}, .minor = {}, .access = "rwm"}};
  l.resources = std::move(r);
  l.namespaces = {{"pid", ""}, {"network", ""}, {"ipc", ""}, {"uts", ""}, {"mount", ""}};
  l.masked_paths = {"/proc/acpi",          "/proc/asound",     "/proc/kcore",
                    "/proc/keys",          "/proc/latency_stats", "/proc/timer_list",
                    "/proc/timer_stats",   "/proc/sched_debug", "/sys/firmware",
                    "/proc/scsi"};
  l.readonly_paths = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
  s.linux = std::move(l);
  return s;
}

}  // namespace cask::oci
