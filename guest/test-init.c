// cask-test-init: a tiny static /init used to test the guest assets and the
// hypervisor driver without the real agent.
//
// It mounts devtmpfs, proc and sysfs, loads every module listed in
// /lib/modules/<release>/modules.cask (dependency order, written by
// guest/build-assets; absent for a kernel with everything built in), finds the virtio-serial port named "cask.agent", and
// writes to the console and to that port:
//
//   CASK-TEST-INIT-OK <uname -r>
//   CASK-TEST-CMDLINE <kernel command line>
//   CASK-TEST-SHARE <first line of cask-test.txt on the virtio-fs share "cask">
//                   (only when the share mounts; "CASK-TEST-SHARE none" else)
//
// Then it reads lines from the port: "poweroff" powers the VM off; anything
// else is echoed back as "ECHO <line>". On any failure it prints
// "CASK-TEST-INIT-FAIL <what>" on the console and powers off.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static int console_fd = 2;

static void say(int fd, const char* fmt, ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  const char* p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, (size_t)n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= (int)w;
  }
}

static void power_off(void) {
  sync();
  reboot(RB_POWER_OFF);
  for (;;) pause();
}

static void fail(const char* what) {
  say(console_fd, "CASK-TEST-INIT-FAIL %s: %s\n", what, strerror(errno));
  power_off();
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

static void read_small(const char* path, char* buf, size_t size) {
  buf[0] = '\0';
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n < 0) n = 0;
  buf[n] = '\0';
  char* nl = strchr(buf, '\n');
  if (nl) *nl = '\0';
}

static void load_modules(const char* release) {
  char list[256];
  snprintf(list, sizeof list, "/lib/modules/%s/modules.cask", release);
  FILE* f = fopen(list, "re");
  if (!f && errno == ENOENT) return;  // lean kernel: no modules, all built in
  if (!f) fail("open modules.cask");
  // modules.dep maps "kernel/.../name.ko: deps"; find each module's path there.
  char dep_path[256];
  snprintf(dep_path, sizeof dep_path, "/lib/modules/%s/modules.dep", release);
  char name[128];
  while (fgets(name, sizeof name, f)) {
    name[strcspn(name, "\n")] = '\0';
    if (!name[0]) continue;
    FILE* dep = fopen(dep_path, "re");
    if (!dep) fail("open modules.dep");
    char line[1024], want[160], rel[512] = "";
    snprintf(want, sizeof want, "/%s.ko:", name);
    while (fgets(line, sizeof line, dep)) {
      char* colon = strchr(line, ':');
      if (!colon) continue;
      colon[1] = '\0';
      size_t ll = strlen(line), wl = strlen(want);
      if (ll >= wl && strcmp(line + ll - wl, want) == 0) {
        *colon = '\0';
        snprintf(rel, sizeof rel, "%s", line);
        break;
      }
    }
    fclose(dep);
    if (!rel[0]) {
      errno = ENOENT;
      say(console_fd, "CASK-TEST-INIT-FAIL module %s not in modules.dep\n", name);
      power_off();
    }
    char path[800];
    snprintf(path, sizeof path, "/lib/modules/%s/%s", release, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(path);
    if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST) {
      say(console_fd, "CASK-TEST-INIT-FAIL finit_module %s: %s\n", path, strerror(errno));
      power_off();
    }
    close(fd);
  }
  fclose(f);
}

// Returns an fd for the virtio-serial port named "cask.agent", or -1.
static int open_agent_port(void) {
  for (int attempt = 0; attempt < 100; attempt++) {
    DIR* d = opendir("/sys/class/virtio-ports");
    if (d) {
      struct dirent* e;
      while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[512], n[128];
        snprintf(p, sizeof p, "/sys/class/virtio-ports/%s/name", e->d_name);
        read_small(p, n, sizeof n);
        if (strcmp(n, "cask.agent") == 0) {
          snprintf(p, sizeof p, "/dev/%s", e->d_name);
          int fd = open(p, O_RDWR | O_CLOEXEC);
          if (fd >= 0) {
            closedir(d);
            return fd;
          }
        }
      }
      closedir(d);
    }
    sleep_ms(50);
  }
  return -1;
}

int main(void) {
  mkdir("/dev", 0755);
  if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0 && errno != EBUSY)
    fail("mount /dev");
  int c = open("/dev/console", O_RDWR | O_CLOEXEC);
  if (c >= 0) console_fd = c;
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) fail("mount /proc");
  if (mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) fail("mount /sys");

  struct utsname u;
  if (uname(&u) < 0) fail("uname");
  load_modules(u.release);

  char cmdline[2048];
  read_small("/proc/cmdline", cmdline, sizeof cmdline);

  char share[512] = "none";
  mkdir("/run/cask", 0755);
  mkdir("/run/cask/shared", 0755);
  if (mount("cask", "/run/cask/shared", "virtiofs", 0, NULL) == 0) {
    read_small("/run/cask/shared/cask-test.txt", share, sizeof share);
    if (!share[0]) snprintf(share, sizeof share, "empty");
  }

  int port = open_agent_port();
  if (port < 0) {
    errno = ENODEV;
    fail("no virtio-serial port named cask.agent");
  }
  const char* fmt = "CASK-TEST-INIT-OK %s\nCASK-TEST-CMDLINE %s\nCASK-TEST-SHARE %s\n";
  say(console_fd, fmt, u.release, cmdline, share);
  say(port, fmt, u.release, cmdline, share);

  // Command loop. read() returns 0 while no host is connected: poll.
  char line[512];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(port, line + len, sizeof line - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("read port");
    if (n == 0) {
      sleep_ms(50);
      continue;
    }
    len += (size_t)n;
    line[len] = '\0';
    char* nl;
    while ((nl = strchr(line, '\n'))) {
      *nl = '\0';
      if (strcmp(line, "poweroff") == 0) {
        say(console_fd, "CASK-TEST-INIT powering off\n");
        power_off();
      }
      say(port, "ECHO %s\n", line);
      size_t rest = len - (size_t)(nl + 1 - line);
      memmove(line, nl + 1, rest);
      len = rest;
      line[len] = '\0';
    }
    if (len == sizeof line - 1) len = 0;  // overlong line: drop it
  }
}
