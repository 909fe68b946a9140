# tests/lib/e2e.sh: the one helper library of cask's end-to-end suites.
#
# Sourced by tests/shim/e2e.sh and tests/shim/demo.sh (containerd-shim-cask-v2
# through a private containerd), tests/e2e/runtime_e2e.sh (`cask-runtime
# run`), tests/security/security_e2e.sh (the attacker's view, through
# containerd) and bench/ctr-run.sh. The sourcing script sets E2E_KIND first:
#
#   E2E_KIND=containerd  a private containerd 1.6 driven with ctr. Needs
#                        SHIM_BIN (the containerd-shim-cask-v2 under test).
#   E2E_KIND=runtime     cask-runtime run on a busybox rootfs. Needs
#                        CASK_RUNTIME (the cask-runtime under test).
#   E2E_KIND=cri         a private containerd 1.6 with its CRI plugin, in a
#                        network namespace of its own, driven with cask-cri
#                        (tests/cri/cri_e2e.sh defines cri_setup and
#                        cri_teardown). Needs SHIM_BIN, CASK_CRI and
#                        CASK_RUNTIME (for `install --containerd`).
#
# Both need GUEST_DIR (vmlinux and initrd.img, from `ninja guest-assets`).
# KEEP=1 keeps the test's temp dir afterwards.
#
# Everything a test makes lives under one temp dir $W: containerd's root,
# state, sockets and log, the cask state dir, configurations, rootfs and
# bundles. That makes "what this test left behind" a question about $W:
# processes whose command line mentions $W (containerd, shims, QEMU,
# virtiofsd, cask-runtime), mounts under $W, files in the cask state dir. On
# exit every test removes its containerd objects, then fails if any of those
# is left (after removing it). The shims' own sockets live in
# /run/containerd/s (fixed by containerd's convention) but are named after
# the private containerd's address, so nothing collides with a containerd
# already running on the machine.
#
# Exit status convention of every case: 0 pass, 1 fail, 77 skip (not root,
# guest assets missing).

set -euo pipefail
# A command that fails under set -e says where, instead of ending the test
# in silence.
set -E
e2e_on_err() { echo "[$(date +%T)] error: status $1 at ${BASH_SOURCE[1]##*/}:$2: $3" >&2; }
trap 'e2e_on_err $? $LINENO "$BASH_COMMAND"' ERR

: "${E2E_KIND:?set E2E_KIND=containerd or E2E_KIND=runtime before sourcing tests/lib/e2e.sh}"
: "${GUEST_DIR:?GUEST_DIR must hold vmlinux and initrd.img}"
case "$E2E_KIND" in
  containerd) : "${SHIM_BIN:?SHIM_BIN must point at containerd-shim-cask-v2}" ;;
  runtime) : "${CASK_RUNTIME:?CASK_RUNTIME must point at cask-runtime}" ;;
  cri)
    : "${SHIM_BIN:?SHIM_BIN must point at containerd-shim-cask-v2}"
    : "${CASK_CRI:?CASK_CRI must point at cask-cri}"
    : "${CASK_RUNTIME:?CASK_RUNTIME must point at cask-runtime}"
    ;;
  *) echo "tests/lib/e2e.sh: unknown E2E_KIND '$E2E_KIND'" >&2; exit 2 ;;
esac

TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The directory of the script that sourced this library.
HERE=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)

W=$(mktemp -d "/tmp/${E2E_TMP_PREFIX:-cask-$E2E_KIND-e2e}.XXXXXX")

# ---------------------------------------------------------------------------
# Common helpers

log() { echo "[$(date +%T)] $*" >&2; }

# fail MESSAGE: prints MESSAGE and the suite's context (containerd's log or
# the last cask-runtime command), then exits 1 (the EXIT trap cleans up).
fail() {
  echo "FAIL: $*" >&2
  case "$E2E_KIND" in
    containerd|cri) dump_logs ;;
    runtime) show_last ;;
  esac
  exit 1
}

wait_for() {  # wait_for SECONDS CMD...: polls CMD until it succeeds
  local t=$1; shift
  local end=$(( $(date +%s) + t ))
  while ! "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.2
  done
}

expect_eq() { [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"; }
expect_contains() { grep -qF -- "$2" <<<"$1" || fail "$3: expected output to contain '$2', got: $1"; }

# Processes whose command line mentions $W (containerd, shims, QEMU,
# virtiofsd, cask-runtime), except this shell.
procs_of_test() { pgrep -f -- "$W" | grep -vx "$$" || true; }
# Mount points under $W, deepest last.
mounts_of_test() { awk '{print $5}' /proc/self/mountinfo | grep -F -- "$W" || true; }

skip_unless_runnable() {
  [ "$(id -u)" = 0 ] || { echo "SKIP: needs root" >&2; exit 77; }
  if [ ! -f "$GUEST_DIR/vmlinux" ] || [ ! -f "$GUEST_DIR/initrd.img" ]; then
    echo "SKIP: guest assets missing in $GUEST_DIR (run: ninja guest-assets)" >&2
    exit 77
  fi
}

# ---------------------------------------------------------------------------
# E2E_KIND=containerd: a private containerd driven with ctr

RUNTIME=io.containerd.cask.v2
IMAGE=docker.io/library/busybox:latest
NS=default
# CRI works in containerd namespace k8s.io.
[ "$E2E_KIND" = cri ] && NS=k8s.io
CD_PID=
if [ "$E2E_KIND" = containerd ] || [ "$E2E_KIND" = cri ]; then
  export CONTAINERD_ADDRESS=$W/containerd.sock
  export CONTAINERD_NAMESPACE=$NS
fi
CASK_STATE=$W/cask-state

dump_logs() {
  echo "---- containerd log (tail) ----" >&2
  tail -n 80 "$W/containerd.log" >&2 2>/dev/null || true
}

ctr_() { ctr --address "$CONTAINERD_ADDRESS" -n "$NS" "$@"; }

# cask_toml STATE_DIR AGENT_TIMEOUT_MS [LINES...]: prints a cask configuration
# for the guest assets in GUEST_DIR (256 MiB guests) keeping its state under
# STATE_DIR. AGENT_TIMEOUT_MS is agent.connect_timeout_ms ("": no [agent]
# section, the default). LINES are appended to the last section, [runtime].
cask_toml() {
  local state=$1 agent_timeout=$2; shift 2
  echo '[hypervisor]'
  echo "kernel = \"$GUEST_DIR/vmlinux\""
  echo "initrd = \"$GUEST_DIR/initrd.img\""
  echo 'memory_mib = 256'
  if [ -n "$agent_timeout" ]; then
    echo '[agent]'
    echo "connect_timeout_ms = $agent_timeout"
  fi
  echo '[runtime]'
  echo "state_dir = \"$state\""
  for line in "$@"; do echo "$line"; done
}

write_cask_config() {  # write_cask_config FILE [extra TOML lines, appended to [runtime]...]
  local f=$1; shift
  cask_toml "$CASK_STATE" "" "$@" > "$f"
}

# containerd_toml [TOP-LEVEL LINES...]: prints the start of a private
# containerd's configuration: root, state and sockets under W, debug logs;
# the lines go before the first table. Plugin tables may be appended.
containerd_toml() {
  cat <<TOML
version = 2
root = "$W/root"
state = "$W/state"
$(printf '%s\n' "$@")
[grpc]
  address = "$W/containerd.sock"
[ttrpc]
  address = "$W/containerd.sock.ttrpc"
[debug]
  level = "debug"
TOML
}

start_containerd() {
  mkdir -p "$W/bin"
  ln -sf "$SHIM_BIN" "$W/bin/containerd-shim-cask-v2"
  if [ ! -f "$W/config.toml" ]; then
    containerd_toml 'disabled_plugins = ["io.containerd.grpc.v1.cri"]' > "$W/config.toml"
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
  "$TESTS_DIR/shim/mkimage.sh" "$W/busybox.tar" "$IMAGE"
  ctr_ image import "$W/busybox.tar" >/dev/null
}

# ctr run with the cask runtime and the test configuration.
run_cask() { ctr_ run --runtime "$RUNTIME" --runtime-config-path "$W/cask.toml" "$@"; }

# The ctr run flags that put a container into pod POD through the CRI
# annotations: pod_args POD sandbox|container.
pod_args() { echo "--annotation io.kubernetes.cri.container-type=$2 --annotation io.kubernetes.cri.sandbox-id=$1"; }

# QEMU / virtiofsd processes whose command line mentions our cask state dir
# (optionally one sandbox's: qemu_pids [SANDBOX]).
qemu_pids() { pgrep -f "qemu-system.*$CASK_STATE/${1:-}" || true; }
qemu_count() { qemu_pids "$@" | grep -c . || true; }
# argv[0] ends in virtiofsd (QEMU's own command line names virtiofsd.sock).
virtiofsd_pids() { pgrep -f "^[^ ]*virtiofsd .*$CASK_STATE/${1:-}" || true; }

task_status() {  # task_status ID -> RUNNING/STOPPED/PAUSED/CREATED or empty
  ctr_ task ls 2>/dev/null | awk -v id="$1" '$1 == id { print $3 }'
}
status_is() { [ "$(task_status "$1")" = "$2" ]; }
status_is_not() { [ "$(task_status "$1")" != "$2" ]; }
no_qemu() { [ "$(qemu_count "$@")" = 0 ]; }
shim_pids() { pgrep -f "containerd-shim-cask-v2.*-address $W/containerd.sock" || true; }
no_shim() { [ -z "$(shim_pids)" ]; }
# The bundle containerd made for container ID, and the shim socket serving it.
bundle_dir() { echo "$W/state/io.containerd.runtime.v2.task/$NS/$1"; }
shim_socket() { sed 's#^unix://##' "$(bundle_dir "$1")/address"; }
# The shim socket containerd's address, namespace and group id GROUP name
# (the shim's own rule: /run/containerd/s/sha256(path.Join(address, ns, group))).
shim_socket_for_group() {
  echo "/run/containerd/s/$(printf '%s' "$W/containerd.sock/$NS/$1" | sha256sum | cut -d' ' -f1)"
}

# Removes every task, container and image of the private containerd, then
# stops it.
containerd_teardown() {
  if [ -n "$CD_PID" ]; then
    local t c i
    for t in $(ctr_ task ls -q 2>/dev/null); do ctr_ task kill -s SIGKILL "$t" >/dev/null 2>&1; done
    sleep 1
    for t in $(ctr_ task ls -q 2>/dev/null); do ctr_ task rm -f "$t" >/dev/null 2>&1; done
    for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers rm "$c" >/dev/null 2>&1; done
    for i in $(ctr_ image ls -q 2>/dev/null); do ctr_ image rm "$i" >/dev/null 2>&1; done
  fi
  stop_containerd
}

containerd_setup() {
  skip_unless_runnable
  write_cask_config "$W/cask.toml"
  start_containerd
  import_image
}

# ---------------------------------------------------------------------------
# E2E_KIND=runtime: cask-runtime run on a busybox rootfs

ROOTFS=$W/rootfs
STATE=$W/state
CONF=$W/cask.toml
OUT=$W/stdout
ERR=$W/stderr
RC=0
LAST_CMD=

show_last() {
  {
    echo "---- command: $LAST_CMD"
    echo "---- exit status: $RC"
    echo "---- stdout:"
    cat "$OUT" 2>/dev/null || true
    echo "---- stderr:"
    cat "$ERR" 2>/dev/null || true
    echo "----"
  } >&2
}

write_config() {  # write_config FILE [extra TOML lines, appended to [runtime]...]
  local f=$1; shift
  cask_toml "$STATE" 240000 "$@" > "$f"  # a long agent timeout: TCG on a loaded 2-CPU machine
}

# rt ARGS...: runs cask-runtime with a generous timeout, recording stdout,
# stderr and the exit status in $OUT, $ERR, $RC. Never fails itself.
# E2E_DEBUG=1 adds --debug to `run`.
rt() {
  local dbg=()
  [ "${E2E_DEBUG:-0}" = 1 ] && dbg=(--debug)
  LAST_CMD="cask-runtime $*"
  set +e
  if [ "${1:-}" = run ] && [ ${#dbg[@]} -gt 0 ]; then
    shift
    timeout -k 10 300 "$CASK_RUNTIME" run "${dbg[@]}" "$@" > "$OUT" 2> "$ERR" < "${RT_STDIN:-/dev/null}"
  else
    timeout -k 10 300 "$CASK_RUNTIME" "$@" > "$OUT" 2> "$ERR" < "${RT_STDIN:-/dev/null}"
  fi
  RC=$?
  set -e
  log "$LAST_CMD -> $RC"
}

# run ARGS... -- CMD...: `cask-runtime run` with the test config and rootfs.
run() { rt run --config "$CONF" --rootfs "$ROOTFS" "$@"; }

expect_rc() { [ "$RC" -eq "$1" ] || fail "expected exit status $1, got $RC"; }
expect_out() { [ "$(tr -d '\r' < "$OUT")" = "$1" ] || fail "expected stdout '$1'"; }
expect_out_has() { tr -d '\r' < "$OUT" | grep -F -- "$1" >/dev/null || fail "expected stdout to contain '$1'"; }
expect_err_has() { grep -qF -- "$1" "$ERR" || fail "expected stderr to contain '$1'"; }

# Fails if anything of a run is left: processes, mounts, state.
assert_clean() {
  local what=${1:-after the run}
  local left
  left=$(procs_of_test)
  [ -z "$left" ] || { ps -o pid,args -p "$(echo $left | tr ' ' ,)" >&2 || true; fail "processes left $what"; }
  if [ -n "$(mounts_of_test)" ]; then
    mounts_of_test >&2
    fail "mounts left $what"
  fi
  if [ -d "$STATE" ] && [ -n "$(ls -A "$STATE")" ]; then
    ls -laR "$STATE" >&2
    fail "state dir $STATE not empty $what"
  fi
}

runtime_setup() {
  skip_unless_runnable
  [ -x "$CASK_RUNTIME" ] || fail "$CASK_RUNTIME is not executable"
  "$TESTS_DIR/e2e/make-rootfs.sh" "$ROOTFS"
  write_config "$CONF"
}

# ---------------------------------------------------------------------------
# Setup and the exit check shared by both kinds

setup() {
  case "$E2E_KIND" in
    containerd) containerd_setup ;;
    runtime) runtime_setup ;;
    cri) cri_setup ;;
  esac
}

# e2e_defer CMD ARGS...: run CMD when the test exits, before the leak check
# (e.g. remove a marker file the test put outside $W).
E2E_DEFERRED=()
e2e_defer() { E2E_DEFERRED+=("$(printf '%q ' "$@")"); }

e2e_cleanup() {
  local rc=$?
  set +e
  local d
  for d in "${E2E_DEFERRED[@]}"; do eval "$d"; done
  case "$E2E_KIND" in
    containerd) containerd_teardown ;;
    cri) cri_teardown ;;
  esac
  # Shims finish their teardown (and reap QEMU and virtiofsd) on their own
  # after containerd's last call: give them a moment.
  wait_for 20 test -z "$(procs_of_test)"
  # What is left now leaked: kill it, unmount it, and fail the test.
  local left
  left=$(procs_of_test)
  if [ -n "$left" ]; then
    echo "LEAK: processes left: $(ps -o pid=,args= -p "$(echo $left | tr ' ' ,)")" >&2
    kill -9 $left 2>/dev/null
    rc=1
  fi
  if [ -n "$(mounts_of_test)" ]; then
    echo "LEAK: mounts left under $W:" >&2
    mounts_of_test >&2
    mounts_of_test | sort -r | xargs -r -n1 umount -l
    rc=1
  fi
  if [ "${KEEP:-0}" = 1 ] || { [ $rc -ne 0 ] && [ $rc -ne 77 ]; }; then
    echo "test dir kept: $W" >&2
  else
    rm -rf "$W"
  fi
  exit $rc
}
trap e2e_cleanup EXIT

# e2e_main "$@": runs case_$1 of the sourcing script after setup.
e2e_main() {
  [ $# -eq 1 ] || { echo "usage: $0 CASE" >&2; exit 2; }
  declare -F "case_$1" >/dev/null || { echo "unknown case '$1'" >&2; exit 2; }
  setup
  log "case $1 in $W"
  "case_$1"
  log "case $1: PASS"
}
