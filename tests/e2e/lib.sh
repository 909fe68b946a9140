# tests/e2e/lib.sh: helpers for the end-to-end tests of `cask-runtime run`.
#
# Sourced by runtime_e2e.sh. Each test gets its own temp dir $W holding the
# busybox rootfs, the configuration (build-tree guest assets, state_dir
# $W/state) and any bundle. On exit every test checks that nothing was left
# behind -- no QEMU or virtiofsd process mentioning $W, no mount under $W,
# an empty state dir -- and fails if something was (after removing it).
#
# Inputs (environment):
#   CASK_RUNTIME  the cask-runtime binary under test
#   GUEST_DIR     directory with vmlinux and initrd.img (ninja guest-assets)
#   KEEP=1        keep $W afterwards
#   E2E_DEBUG=1   run cask-runtime with --debug

set -euo pipefail

: "${CASK_RUNTIME:?CASK_RUNTIME must point at cask-runtime}"
: "${GUEST_DIR:?GUEST_DIR must hold vmlinux and initrd.img}"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

W=$(mktemp -d /tmp/cask-e2e.XXXXXX)
ROOTFS=$W/rootfs
STATE=$W/state
CONF=$W/cask.toml
OUT=$W/stdout
ERR=$W/stderr
RC=0
LAST_CMD=

log() { echo "[$(date +%T)] $*" >&2; }

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

fail() {
  echo "FAIL: $*" >&2
  show_last
  exit 1
}

write_config() {  # write_config FILE [extra TOML lines, appended to [runtime]...]
  local f=$1; shift
  {
    echo '[hypervisor]'
    echo "kernel = \"$GUEST_DIR/vmlinux\""
    echo "initrd = \"$GUEST_DIR/initrd.img\""
    echo '[agent]'
    echo 'connect_timeout_ms = 240000  # TCG on a loaded 2-CPU machine'
    echo '[runtime]'
    echo "state_dir = \"$STATE\""
    for line in "$@"; do echo "$line"; done
  } > "$f"
}

# rt ARGS...: runs cask-runtime with a generous timeout, recording stdout,
# stderr and the exit status in $OUT, $ERR, $RC. Never fails itself.
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
expect_out_has() { tr -d '\r' < "$OUT" | grep -qF -- "$1" || fail "expected stdout to contain '$1'"; }
expect_err_has() { grep -qF -- "$1" "$ERR" || fail "expected stderr to contain '$1'"; }

# Processes (qemu, virtiofsd, cask-runtime) whose command line mentions $W.
procs_of_test() { pgrep -f -- "$W" | grep -vx "$$" || true; }

# Fails if anything of a run is left: processes, mounts, state.
assert_clean() {
  local what=${1:-after the run}
  local left
  left=$(procs_of_test)
  [ -z "$left" ] || { ps -o pid,args -p "$(echo $left | tr ' ' ,)" >&2 || true; fail "processes left $what"; }
  if grep -qsF "$W" /proc/self/mountinfo; then
    awk '{print $5}' /proc/self/mountinfo | grep -F "$W" >&2
    fail "mounts left $what"
  fi
  if [ -d "$STATE" ] && [ -n "$(ls -A "$STATE")" ]; then
    ls -laR "$STATE" >&2
    fail "state dir $STATE not empty $what"
  fi
}

cleanup() {
  local rc=$?
  set +e
  local left
  left=$(procs_of_test)
  if [ -n "$left" ]; then
    echo "LEAK: processes left: $(ps -o pid=,args= -p "$(echo $left | tr ' ' ,)")" >&2
    kill -9 $left 2>/dev/null
    rc=1
  fi
  if grep -qsF "$W" /proc/self/mountinfo; then
    echo "LEAK: mounts left under $W" >&2
    awk '{print $5}' /proc/self/mountinfo | grep -F "$W" | sort -r | xargs -r -n1 umount -l
    rc=1
  fi
  if [ "${KEEP:-0}" = 1 ] || [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
    echo "test dir kept: $W" >&2
  else
    rm -rf "$W"
  fi
  exit $rc
}
trap cleanup EXIT

setup() {
  [ "$(id -u)" = 0 ] || { echo "SKIP: needs root" >&2; exit 77; }
  [ -x "$CASK_RUNTIME" ] || fail "$CASK_RUNTIME is not executable"
  if [ ! -f "$GUEST_DIR/vmlinux" ] || [ ! -f "$GUEST_DIR/initrd.img" ]; then
    echo "SKIP: guest assets missing in $GUEST_DIR (run: ninja guest-assets)" >&2
    exit 77
  fi
  "$HERE/make-rootfs.sh" "$ROOTFS"
  write_config "$CONF"
}

wait_for() {  # wait_for SECONDS CMD...: polls CMD until it succeeds
  local t=$1; shift
  local end=$(( $(date +%s) + t ))
  while ! "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.1
  done
}
