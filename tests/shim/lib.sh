# tests/shim/lib.sh: a private containerd for the shim's end-to-end tests.
#
# Sourced by e2e.sh. Everything lives under one temp dir ($W): containerd's
# root, state, sockets and log, the cask state dir and configuration. The
# shim's own sockets are in /run/containerd/s (fixed by convention) but are
# named after our private containerd address, so nothing collides with a
# containerd already running on the machine.
#
# Inputs (environment):
#   SHIM_BIN   the containerd-shim-cask-v2 to test (put first in containerd's PATH)
#   GUEST_DIR  directory with vmlinux and initrd.img
#   KEEP=1     keep $W after the test for debugging

set -euo pipefail

: "${SHIM_BIN:?SHIM_BIN must point at containerd-shim-cask-v2}"
: "${GUEST_DIR:?GUEST_DIR must hold vmlinux and initrd.img}"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUNTIME=io.containerd.cask.v2
IMAGE=docker.io/library/busybox:latest
NS=default

W=$(mktemp -d /tmp/cask-shim-e2e.XXXXXX)
CD_PID=
export CONTAINERD_ADDRESS=$W/containerd.sock
export CONTAINERD_NAMESPACE=$NS

log() { echo "[$(date +%T)] $*" >&2; }
fail() { echo "FAIL: $*" >&2; dump_logs; exit 1; }

dump_logs() {
  echo "---- containerd log (tail) ----" >&2
  tail -n 80 "$W/containerd.log" >&2 2>/dev/null || true
}

ctr_() { ctr --address "$CONTAINERD_ADDRESS" -n "$NS" "$@"; }

write_cask_config() {  # write_cask_config FILE [extra TOML lines...]
  local f=$1; shift
  {
    echo '[hypervisor]'
    echo "kernel = \"$GUEST_DIR/vmlinux\""
    echo "initrd = \"$GUEST_DIR/initrd.img\""
    echo 'memory_mib = 256'
    echo '[runtime]'
    echo "state_dir = \"$W/cask-state\""
    for line in "$@"; do echo "$line"; done
  } > "$f"
}

start_containerd() {
  mkdir -p "$W/bin"
  ln -sf "$SHIM_BIN" "$W/bin/containerd-shim-cask-v2"
  if [ ! -f "$W/config.toml" ]; then
    cat > "$W/config.toml" <<TOML
version = 2
root = "$W/root"
state = "$W/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$W/containerd.sock"
[ttrpc]
  address = "$W/containerd.sock.ttrpc"
[debug]
  level = "debug"
TOML
  fi
  PATH="$W/bin:$PATH" containerd --config "$W/config.toml" >> "$W/containerd.log" 2>&1 &
  CD_PID=$!
  for _ in $(seq 1 100); do
    ctr_ version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "containerd did not come up"
}

stop_containerd() {
  [ -n "$CD_PID" ] || return 0
  kill "$CD_PID" 2>/dev/null || true
  wait "$CD_PID" 2>/dev/null || true
  CD_PID=
}

import_image() {
  "$HERE/mkimage.sh" "$W/busybox.tar" "$IMAGE"
  ctr_ image import "$W/busybox.tar" >/dev/null
}

# QEMU processes whose command line mentions our private state dir.
qemu_pids() { pgrep -f "qemu-system.*$W/cask-state" || true; }
qemu_count() { qemu_pids | grep -c . || true; }

wait_for() {  # wait_for SECONDS CMD...: polls CMD until it succeeds
  local t=$1; shift
  local end=$(( $(date +%s) + t ))
  while ! "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.2
  done
}

task_status() {  # task_status ID -> RUNNING/STOPPED/PAUSED/CREATED or empty
  ctr_ task ls 2>/dev/null | awk -v id="$1" '$1 == id { print $3 }'
}
status_is() { [ "$(task_status "$1")" = "$2" ]; }
status_is_not() { [ "$(task_status "$1")" != "$2" ]; }
no_qemu() { [ "$(qemu_count)" = 0 ]; }
shim_pids() { pgrep -f "containerd-shim-cask-v2.*-address $W/containerd.sock" || true; }
no_shim() { [ -z "$(shim_pids)" ]; }

cleanup() {
  local rc=$?
  set +e
  if [ -n "$CD_PID" ]; then
    for t in $(ctr_ task ls -q 2>/dev/null); do ctr_ task kill -s SIGKILL "$t" >/dev/null 2>&1; done
    sleep 1
    for t in $(ctr_ task ls -q 2>/dev/null); do ctr_ task rm -f "$t" >/dev/null 2>&1; done
    for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers rm "$c" >/dev/null 2>&1; done
    for i in $(ctr_ image ls -q 2>/dev/null); do ctr_ image rm "$i" >/dev/null 2>&1; done
  fi
  stop_containerd
  # Shims of this containerd, and their VMs, must all be gone.
  local left
  left=$(pgrep -f "containerd-shim-cask-v2.*-address $W/containerd.sock" || true)
  if [ -n "$left" ]; then
    echo "LEAK: shim processes left: $left" >&2
    kill -9 $left 2>/dev/null
    rc=1
  fi
  left=$(qemu_pids)
  if [ -n "$left" ]; then
    echo "LEAK: qemu processes left: $left" >&2
    kill -9 $left 2>/dev/null
    rc=1
  fi
  if grep -qs "$W" /proc/self/mountinfo; then
    echo "LEAK: mounts left under $W:" >&2
    grep "$W" /proc/self/mountinfo | awk '{print $5}' >&2
    grep "$W" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
    rc=1
  fi
  if [ "${KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then
    echo "test dir kept: $W" >&2
  else
    rm -rf "$W"
  fi
  exit $rc
}
trap cleanup EXIT

setup() {
  [ -f "$GUEST_DIR/vmlinux" ] && [ -f "$GUEST_DIR/initrd.img" ] || {
    echo "SKIP: guest assets missing in $GUEST_DIR (ninja guest-assets)" >&2
    exit 77
  }
  [ "$(id -u)" = 0 ] || { echo "SKIP: needs root" >&2; exit 77; }
  write_cask_config "$W/cask.toml"
  start_containerd
  import_image
}

# ctr run with the cask runtime and the test configuration.
run_cask() { ctr_ run --runtime "$RUNTIME" --runtime-config-path "$W/cask.toml" "$@"; }
