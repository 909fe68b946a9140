#!/usr/bin/env bash
# tests/security/security_e2e.sh CASE: the attacker's view of the VM
# boundary (docs/security.md), through a private containerd and real QEMU
# VMs (tests/lib/e2e.sh, E2E_KIND=containerd).
#
#   fault_isolation  pod A panics its guest kernel; pod B answers exec all
#                    along; A's tasks exit with a recorded status; nothing
#                    of A is left.
#   leak_cycles      100 create/start/exec/delete cycles in one pod VM:
#                    the shim's fds, RSS and threads, mounts, processes,
#                    cgroups and state files are the same before and after.
#   escape_probes    a privileged container looks for the host: kernel,
#                    pids, files, devices, and the agent's channel.
#   bad_spec         hostile OCI specs, spec mounts and pod annotations.
#   bad_config       hostile cask configurations.
#   bad_frames       raw ttrpc frames against the shim (ttrpc_probe.py).
#
# Every rejected input must come back with a clear error (the test names the
# text it expects) and leave nothing: no VM, virtiofsd, shim, mount, socket,
# state directory, bundle or cgroup.
# Exit status: 0 pass, 1 fail, 77 skip (not root, guest assets missing).
E2E_KIND=containerd E2E_TMP_PREFIX=cask-sec-e2e
source "$(dirname "$0")/../lib/e2e.sh"

# A token in every id and marker of this run, so that host-wide searches
# (cgroups, /tmp) find only what this run made.
TOK=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')

# ---------------------------------------------------------------------------
# What a container or pod leaves on the host

# Host cgroup directories whose path names ID (pod and container cgroups are
# named after the sandbox or container id).
cgroups_named() { find /sys/fs/cgroup -mindepth 1 -maxdepth 6 -type d -path "*$1*" 2>/dev/null | sort || true; }

# Everything that should be gone once container ID of pod GROUP (default:
# its own pod) is deleted; prints one line per leftover.
leftovers_of() {
  local id=$1 group=${2:-$1}
  [ -z "$(qemu_pids "$group/")" ] || echo "QEMU of $group: $(qemu_pids "$group/" | tr '\n' ' ')"
  [ -z "$(virtiofsd_pids "$group/")" ] || echo "virtiofsd of $group: $(virtiofsd_pids "$group/" | tr '\n' ' ')"
  [ -z "$(pgrep -f "containerd-shim-cask-v2.*-id $group -address $W/" || true)" ] || echo "shim of $group still running"
  [ ! -e "$CASK_STATE/$group" ] || echo "state dir $CASK_STATE/$group"
  [ ! -e "$(bundle_dir "$id")" ] || echo "bundle $(bundle_dir "$id")"
  [ ! -e "$(shim_socket_for_group "$group")" ] || echo "shim socket $(shim_socket_for_group "$group")"
  local m
  m=$(mounts_of_test | grep -E "/($id|$group)(/|$)" || true)
  [ -z "$m" ] || echo "mounts: $m"
  m=$(cgroups_named "$id"; [ "$group" = "$id" ] || cgroups_named "$group")
  [ -z "$m" ] || echo "cgroups: $m"
}
nothing_left_of() { [ -z "$(leftovers_of "$@")" ]; }
assert_nothing_left_of() {  # assert_nothing_left_of WHAT ID [GROUP]
  local what=$1; shift
  wait_for 30 nothing_left_of "$@" || fail "$what: left behind: $(leftovers_of "$@")"
}

# Removes container ID from containerd (after a failed run, or once it has
# stopped); never fails.
forget() {
  ctr_ task rm -f "$1" >/dev/null 2>&1 || true
  ctr_ containers rm "$1" >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------------------
# The catalog of rejected inputs

KINDS=0
FAILED_KINDS=()
# expect_rejected KIND NEEDLE ID [GROUP] -- CMD...: CMD (a ctr run) must fail,
# its output must contain NEEDLE, and nothing of ID must be left. A kind
# that fails is recorded and the catalog goes on (one unfixed finding must
# not hide the others); catalog_verdict fails the case at the end.
expect_rejected() {
  local kind=$1 needle=$2 id=$3 group=$3
  shift 3
  if [ "$1" != -- ]; then group=$1; shift; fi
  shift
  # timeout(1) runs programs, not the shell functions ctr_ and run_cask.
  case "$1" in
    ctr_) shift; set -- ctr --address "$CONTAINERD_ADDRESS" -n "$NS" "$@" ;;
    run_cask) shift; set -- ctr --address "$CONTAINERD_ADDRESS" -n "$NS" run --runtime "$RUNTIME" --runtime-config-path "$W/cask.toml" "$@" ;;
  esac
  KINDS=$((KINDS + 1))
  local out rc=0 why=
  out=$(timeout -k 10 300 "$@" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ]; then
    why="accepted (ctr exited 0): $(head -c 300 <<<"$out")"
  elif [ "$rc" -eq 124 ]; then
    why="ctr hung (timeout): $(head -c 300 <<<"$out")"
  elif ! grep -qF -- "$needle" <<<"$out"; then
    why="the error does not say '$needle': $(head -c 500 <<<"$out")"
  fi
  forget "$id"
  if ! wait_for 30 nothing_left_of "$id" "$group"; then
    why="${why:+$why; }left behind: $(leftovers_of "$id" "$group")"
  fi
  if [ -n "$why" ]; then
    echo "FAIL ($KINDS) $kind: $why" >&2
    FAILED_KINDS+=("$kind")
    return 0
  fi
  log "rejected ($KINDS) $kind: $(grep -F -- "$needle" <<<"$out" | head -1 | cut -c1-220)"
}

catalog_verdict() {  # catalog_verdict CASE
  log "$1: $KINDS kinds, ${#FAILED_KINDS[@]} failed"
  [ ${#FAILED_KINDS[@]} -eq 0 ] || fail "$1: kinds not rejected cleanly: $(printf '[%s] ' "${FAILED_KINDS[@]}")"
}

# A minimal valid spec for `ctr run --config`, as JSON on stdout, with the
# jq filter $1 applied (root.path: an empty directory of the test).
spec_with() {
  [ -x "$W/spec-rootfs/bin/busybox" ] || "$TESTS_DIR/e2e/make-rootfs.sh" "$W/spec-rootfs"
  jq -c "$1" <<JSON
{"ociVersion":"1.0.2",
 "process":{"args":["/bin/true"],"cwd":"/","env":["PATH=/bin"],"user":{"uid":0,"gid":0}},
 "root":{"path":"$W/spec-rootfs"},
 "hostname":"h",
 "mounts":[{"destination":"/proc","type":"proc","source":"proc"}],
 "linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"uts"},{"type":"ipc"},{"type":"network"}]}}
JSON
}

# spec_rejected KIND NEEDLE JQ-FILTER: a spec made by spec_with must be refused.
N=0
spec_rejected() {
  N=$((N + 1))
  local id="s${TOK}n$N"
  spec_with "$3" > "$W/spec-$N.json"
  expect_rejected "$1" "$2" "$id" -- \
    ctr_ run --runtime "$RUNTIME" --runtime-config-path "$W/cask.toml" --config "$W/spec-$N.json" "$id"
}

case_bad_spec() {
  # The OCI spec (validated before any side effect: no VM boots for these).
  # Already in tests/shim/e2e.sh bad_input, not repeated: a relative
  # process.cwd, a missing rootfs.
  spec_rejected "unsupported ociVersion" 'unsupported version "2.0.0"' '.ociVersion = "2.0.0"'
  spec_rejected "empty process.args" "process.args: must be a non-empty array" '.process.args = []'
  spec_rejected "NUL byte in an argument" "process.args[1]: must not contain a NUL byte" '.process.args = ["/bin/echo", "a\u0000b"]'
  spec_rejected "env entry without '='" 'process.env[1]: expected KEY=value, got "NOEQUALS"' '.process.env += ["NOEQUALS"]'
  spec_rejected "unknown capability" 'unknown capability "CAP_TOTAL_CONTROL"' '.process.capabilities = {"bounding":["CAP_TOTAL_CONTROL"]}'
  spec_rejected "unknown rlimit" 'unknown rlimit "RLIMIT_EVERYTHING"' '.process.rlimits = [{"type":"RLIMIT_EVERYTHING","soft":1,"hard":1}]'
  spec_rejected "rlimit soft above hard" "exceeds hard limit" '.process.rlimits = [{"type":"RLIMIT_NOFILE","soft":4096,"hard":1024}]'
  spec_rejected "oomScoreAdj out of range" "process.oomScoreAdj: must be between -1000 and 1000" '.process.oomScoreAdj = -5000'
  spec_rejected "duplicate namespace" 'duplicate namespace "pid"' '.linux.namespaces += [{"type":"pid"}]'
  spec_rejected "unknown namespace type" 'unknown namespace type "hostroot"' '.linux.namespaces += [{"type":"hostroot"}]'
  spec_rejected "relative namespace path" "linux.namespaces[5].path: must be an absolute path" '.linux.namespaces += [{"type":"cgroup","path":"proc/1/ns/cgroup"}]'
  spec_rejected "hostname without a uts namespace" "needs a uts namespace" '.linux.namespaces |= map(select(.type != "uts"))'
  spec_rejected "oversized hostname" "hostname: longer than" '.hostname = ("x" * 300)'
  spec_rejected "id mappings without a user namespace" "id mappings need a user namespace" '.linux.uidMappings = [{"containerID":0,"hostID":0,"size":65536}]'
  spec_rejected "sysctl name escaping /proc/sys" "invalid sysctl name" '.linux.sysctl = {"../../../proc/sysrq-trigger":"c"}'
  spec_rejected "unknown seccomp action" 'unknown seccomp action "SCMP_ACT_PWN"' '.linux.seccomp = {"defaultAction":"SCMP_ACT_PWN"}'
  spec_rejected "device node of unknown type" "linux.devices[0].type: must be one of c, b, u, p" '.linux.devices = [{"path":"/dev/x","type":"z","major":8,"minor":0}]'
  spec_rejected "cgroup file outside the cgroup" "expected a cgroup v2 file name" '.linux.resources = {"unified":{"../../cgroup.procs":"1"}}'
  spec_rejected "zero memory limit" "linux.resources.memory.limit: must be positive or -1" '.linux.resources = {"memory":{"limit":0}}'
  spec_rejected "relative masked path" "linux.maskedPaths[0]: must be an absolute path" '.linux.maskedPaths = ["proc/kcore"]'
  spec_rejected "no process" "process: required to run a task" 'del(.process)'

  # Spec mounts.
  spec_rejected "relative mount destination" "mounts[1].destination: must be an absolute path" '.mounts += [{"destination":"../../etc","type":"tmpfs","source":"tmpfs"}]'
  spec_rejected "NUL byte in a mount option" "must not contain a NUL byte" '.mounts += [{"destination":"/x","type":"tmpfs","source":"tmpfs","options":["size=1m\u0000,exec"]}]'
  # The pod's own virtio-fs share, by its tag: that would hand the
  # container every container's rootfs of the pod (issue 6 item 1).
  spec_rejected "virtio-fs mount of the pod's share" "virtiofs" '.mounts += [{"destination":"/share","type":"virtiofs","source":"cask"}]'
  # These boot the VM before failing: the VM must go with the failure.
  spec_rejected "bind source missing on the host" "$W/no-such-volume does not exist on the host" ".mounts += [{\"destination\":\"/v\",\"type\":\"bind\",\"source\":\"$W/no-such-volume\",\"options\":[\"rbind\"]}]"
  spec_rejected "unknown filesystem type" "nosuchfs" '.mounts += [{"destination":"/x","type":"nosuchfs","source":"none"}]'

  # Pod grouping annotations (CRI).
  local id="g${TOK}a"
  expect_rejected "container type without a sandbox id" "needs a non-empty io.kubernetes.cri.sandbox-id" "$id" -- \
    run_cask --annotation io.kubernetes.cri.container-type=container "$IMAGE" "$id" true
  id="g${TOK}b"
  expect_rejected "unknown container type" 'has unknown value "hypervisor"' "$id" -- \
    run_cask --annotation io.kubernetes.cri.container-type=hypervisor "$IMAGE" "$id" true
  id="g${TOK}c"
  expect_rejected "sandbox id naming the container itself" "names the container itself" "$id" -- \
    run_cask $(pod_args "$id" container) "$IMAGE" "$id" true
  id="g${TOK}d"
  expect_rejected "container joining a pod that does not exist" "pod nopod$TOK" "$id" "nopod$TOK" -- \
    run_cask $(pod_args "nopod$TOK" container) "$IMAGE" "$id" true

  [ -z "$(ls -A "$CASK_STATE" 2>/dev/null)" ] || fail "cask state left: $(ls -A "$CASK_STATE")"
  catalog_verdict bad_spec
}

# config_rejected KIND NEEDLE TOML-LINES...: a configuration made of the
# test's own plus TOML-LINES must be refused (a later key wins in the
# sections written by write_cask_config; an own section header starts a new
# table).
config_rejected() {
  N=$((N + 1))
  local kind=$1 needle=$2 id="c${TOK}n$N"
  shift 2
  write_cask_config "$W/cfg-$N.toml"
  printf '%s\n' "$@" >> "$W/cfg-$N.toml"
  expect_rejected "$kind" "$needle" "$id" -- \
    ctr_ run --runtime "$RUNTIME" --runtime-config-path "$W/cfg-$N.toml" "$IMAGE" "$id" true
}

# config_file_rejected KIND NEEDLE FILE: the configuration FILE as is.
config_file_rejected() {
  N=$((N + 1))
  local id="c${TOK}n$N"
  expect_rejected "$1" "$2" "$id" -- \
    ctr_ run --runtime "$RUNTIME" --runtime-config-path "$3" "$IMAGE" "$id" true
}

case_bad_config() {
  # Already in tests/shim/e2e.sh bad_input, not repeated: an unknown key,
  # a missing kernel.
  config_file_rejected "configuration file missing" "$W/no-such.toml" "$W/no-such.toml"
  printf '[hypervisor\nkernel = "x"\n' > "$W/syntax.toml"
  config_file_rejected "TOML syntax error" "line 1" "$W/syntax.toml"
  printf '[runtime]\nstate_dir = "relative/state"\n' > "$W/relstate.toml"
  config_file_rejected "relative state_dir" "runtime.state_dir: must be an absolute path" "$W/relstate.toml"
  bad_hv() {  # bad_hv KIND NEEDLE LINE: the test's configuration with one hypervisor key set to LINE
    N=$((N + 1))
    local f="$W/cfg-$N.toml" id="c${TOK}n$N"
    write_cask_config "$f.base"
    LINE=$3 KEY=${3%% =*} awk '
      index($0, ENVIRON["KEY"] " = ") == 1 { next }
      { print }
      $0 == "[hypervisor]" { print ENVIRON["LINE"] }' "$f.base" > "$f"
    expect_rejected "$1" "$2" "$id" -- \
      ctr_ run --runtime "$RUNTIME" --runtime-config-path "$f" "$IMAGE" "$id" true
  }
  bad_hv "memory below the minimum" "hypervisor.memory_mib: must be between" 'memory_mib = 0'
  bad_hv "absurd vCPU count" "hypervisor.vcpus: must be between" 'vcpus = 100000'
  bad_hv "value of the wrong type" "hypervisor.memory_mib: expected" 'memory_mib = "lots"'
  bad_hv "unknown machine type" 'hypervisor.machine_type: must be one of' 'machine_type = "isapc"'
  bad_hv "control characters in kernel parameters" "hypervisor.kernel_params: must not contain control characters" 'kernel_params = "quiet\u001binit=/bin/sh"'
  bad_hv "relative QEMU path" "hypervisor.path: must be an absolute path" 'path = "qemu-system-x86_64"'
  bad_hv "missing initrd" "$W/no-initrd.img" "initrd = \"$W/no-initrd.img\""
  bad_hv "missing QEMU binary" "$W/no-qemu" "path = \"$W/no-qemu\""
  bad_hv "missing virtiofsd binary" "$W/no-virtiofsd" "virtiofsd_path = \"$W/no-virtiofsd\""
  config_rejected "unknown agent channel" 'agent.channel: must be one of' '[agent]' 'channel = "ethernet"'
  config_rejected "agent timeout out of range" "agent.connect_timeout_ms: must be between" '[agent]' 'connect_timeout_ms = 0'
  config_rejected "unknown section" "escape" '[escape]' 'to = "host"'
  [ -z "$(ls -A "$CASK_STATE" 2>/dev/null)" ] || fail "cask state left: $(ls -A "$CASK_STATE")"
  catalog_verdict bad_config
}

# Bundles whose config.json ctr could not have written: each DIR/<task id>
# holds config.json, the kind's name ("kind") and the error text ("needle").
make_hostile_bundles() {
  local d=$1
  hb() {  # hb ID KIND NEEDLE: then config.json from stdin (none when empty)
    mkdir -p "$d/$1"
    echo "$2" > "$d/$1/kind"
    echo "$3" > "$d/$1/needle"
    local body
    body=$(cat)
    [ -z "$body" ] || printf '%s' "$body" > "$d/$1/config.json"
  }
  hb hb1 "bundle without config.json" "config.json" < /dev/null
  echo '{"ociVersion": "1.0.2", "process": {' | hb hb2 "config.json that is not JSON" "invalid OCI spec"
  echo '[1, 2, 3]' | hb hb3 "config.json that is not an object" "invalid OCI spec"
  echo '{"ociVersion":"1.0.2","process":{"args":["true"],"cwd":"/"},"annotations":{"io.kubernetes.cri.container-type":7}}' |
    hb hb4 "annotation that is not a string" "annotations"
  { printf '{"ociVersion":"1.0.2","x":'; printf '[%.0s' $(seq 1 100000); printf ']%.0s' $(seq 1 100000); echo '}'; } |
    hb hb5 "JSON nested 100,000 deep" "nested deeper than"
}

case_bad_frames() {
  local id="f$TOK"
  run_cask -d "$IMAGE" "$id" sleep 100000
  wait_for 120 status_is "$id" RUNNING || fail "$id never ran"
  local shim sock rss0 rss1 fds0 fds1
  sock=$(shim_socket "$id")
  # The rule the leftover checks use to name a pod's socket.
  expect_eq "$(shim_socket_for_group "$id")" "$sock" "shim socket of $id"
  shim=$(pgrep -f "containerd-shim-cask-v2.*-id $id -address $W/" | head -1)
  [ -n "$shim" ] || fail "no shim for $id"
  rss0=$(awk '/^VmRSS/ {print $2}' "/proc/$shim/status")
  fds0=$(ls "/proc/$shim/fd" | wc -l)
  local out rc=0
  make_hostile_bundles "$W/hostile-bundles"
  out=$(timeout -k 10 600 python3 "$HERE/ttrpc_probe.py" "$sock" "$id" "$W/hostile-bundles" 2>&1) || rc=$?
  echo "$out" >&2
  [ "$rc" -eq 0 ] || fail "hostile ttrpc frames: $(grep '^FAIL' <<<"$out" | head -5)"
  rss1=$(awk '/^VmRSS/ {print $2}' "/proc/$shim/status")
  # Connections are closed by then; their fds must be too.
  fds_back() { [ "$(ls "/proc/$shim/fd" | wc -l)" -le "$fds0" ]; }
  wait_for 20 fds_back || fail "shim fds $fds0 -> $(ls "/proc/$shim/fd" | wc -l) after the probes"
  fds1=$(ls "/proc/$shim/fd" | wc -l)
  log "shim RSS ${rss0} kB -> ${rss1} kB, fds $fds0 -> $fds1 across the probes"
  # A 4 GiB length announced, a 4 MiB frame sent: nothing of that is kept.
  [ $((rss1 - rss0)) -le 16384 ] || fail "shim RSS grew by $((rss1 - rss0)) kB across the probes"
  kill -0 "$shim" || fail "the shim died"
  expect_eq "$(ctr_ task exec --exec-id after "$id" echo still-serving)" still-serving "exec after the probes"
  ctr_ task kill -s SIGKILL "$id"
  wait_for 60 status_is "$id" STOPPED || fail "$id did not stop"
  forget "$id"
  assert_nothing_left_of "after the ttrpc probes" "$id"
  log "bad_frames: $(grep -c '^ok ' <<<"$out") kinds of hostile frames answered"
}

# ---------------------------------------------------------------------------
# Fault isolation

case_fault_isolation() {
  local a="pa$TOK" b="pb$TOK"
  ctr_ events > "$W/events.log" 2>&1 &
  local ev=$!
  # Pod A: a sandbox and a privileged container in one VM. Pod B: its own VM.
  run_cask -d $(pod_args "$a" sandbox) "$IMAGE" "$a" sleep 100000
  run_cask -d --privileged $(pod_args "$a" container) "$IMAGE" "$a-app" sleep 100000
  run_cask -d "$IMAGE" "$b" sleep 100000
  expect_eq "$(qemu_count)" 2 "QEMU processes (one per pod)"
  local sock_a
  sock_a=$(shim_socket "$a")

  # B answers exec in a loop while A panics.
  (
    i=0
    while [ ! -e "$W/stop-loop" ]; do
      i=$((i + 1))
      if out=$(timeout 120 ctr --address "$CONTAINERD_ADDRESS" -n "$NS" task exec --exec-id "l$i" "$b" echo alive 2>&1) &&
         [ "$(tr -d '\r' <<<"$out")" = alive ]; then
        echo "ok $i $(date +%s)"
      else
        echo "FAIL $i $(date +%s) $out"
      fi
    done
  ) > "$W/loop.log" 2>&1 &
  local loop=$!
  oks() { grep -c '^ok' "$W/loop.log" || true; }
  at_least_oks() { [ "$(oks)" -ge "$1" ]; }
  wait_for 240 at_least_oks 2 || { touch "$W/stop-loop"; wait $loop; fail "pod B did not answer exec before the panic: $(cat "$W/loop.log")"; }

  log "panicking pod A's guest kernel"
  local t0
  t0=$(date +%s)
  timeout -k 5 120 ctr --address "$CONTAINERD_ADDRESS" -n "$NS" task exec --exec-id panic "$a-app" sh -c 'echo c > /proc/sysrq-trigger' >"$W/panic.out" 2>&1 &
  local panic=$!
  all_a_stopped() { status_is "$a" STOPPED && status_is "$a-app" STOPPED; }
  if ! wait_for 180 all_a_stopped; then
    touch "$W/stop-loop"; wait $loop || true
    fail "pod A's tasks did not exit after its kernel panicked: $a=$(task_status "$a") $a-app=$(task_status "$a-app")"
  fi
  log "pod A's tasks stopped $(( $(date +%s) - t0 )) s after the panic"
  wait $panic 2>/dev/null || true
  # B keeps answering after A is gone too.
  local n
  n=$(oks)
  wait_for 240 at_least_oks $((n + 2)) || true
  touch "$W/stop-loop"
  wait $loop || true
  log "pod B exec loop: $(oks) answered, $(grep -c '^FAIL' "$W/loop.log" || true) failed"
  ! grep -q '^FAIL' "$W/loop.log" || fail "pod B stopped answering exec while pod A panicked: $(grep '^FAIL' "$W/loop.log" | head -3)"
  [ "$(oks)" -ge $((n + 2)) ] || fail "pod B answered no exec after pod A's panic"

  # The exit status containerd recorded for A's tasks.
  local ex
  for t in "$a" "$a-app"; do
    wait_for 30 grep -q "/tasks/exit.*\"container_id\":\"$t\"" "$W/events.log" || fail "no /tasks/exit event for $t: $(cat "$W/events.log")"
    ex=$(grep "/tasks/exit.*\"container_id\":\"$t\"" "$W/events.log" | head -1)
    log "exit of $t: $ex"
    grep -q '"exit_status":[1-9]' <<<"$ex" || fail "the exit of $t after a kernel panic is not a failure: $ex"
  done
  kill $ev 2>/dev/null; wait $ev 2>/dev/null || true

  # Nothing of A is left after delete; B is untouched.
  forget "$a-app"
  forget "$a"
  assert_nothing_left_of "pod A after its panic" "$a-app" "$a"
  assert_nothing_left_of "pod A after its panic" "$a"
  [ ! -e "$sock_a" ] || fail "pod A's shim socket $sock_a is left"
  expect_eq "$(task_status "$b")" RUNNING "pod B after pod A was deleted"
  expect_eq "$(qemu_count)" 1 "QEMU processes after pod A was deleted"
  expect_eq "$(ctr_ task exec --exec-id last "$b" echo alive | tr -d '\r')" alive "exec in pod B at the end"
  ctr_ task kill -s SIGKILL "$b"
  wait_for 60 status_is "$b" STOPPED || fail "$b did not stop"
  forget "$b"
  assert_nothing_left_of "pod B" "$b"
}

# ---------------------------------------------------------------------------
# Leak check

# One line per resource of the pod's shim and of the test, for comparison.
shim_of_pod() { pgrep -f "containerd-shim-cask-v2.*-id $1 -address $W/" | head -1; }
snapshot() {  # snapshot SHIM POD -> prints "name value" lines
  local shim=$1 pod=$2
  echo "fds $(ls "/proc/$shim/fd" | wc -l)"
  echo "threads $(awk '/^Threads/ {print $2}' "/proc/$shim/status")"
  echo "children $(pgrep -P "$shim" | wc -l)"
  echo "processes $(procs_of_test | wc -l)"
  echo "mounts $(grep -cF "$W" "/proc/$shim/mountinfo" || true)"
  echo "host-mounts $(mounts_of_test | wc -l)"
  echo "cgroups $( (cgroups_named "$TOK") | wc -l)"
  echo "state-files $(find "$CASK_STATE" "$W/state" 2>/dev/null | wc -l)"
  echo "shim-sockets $(ls /run/containerd/s 2>/dev/null | grep -cxF -f <(for i in $(seq 0 ${CYCLES:-100}); do basename "$(shim_socket_for_group "lk$TOK-$i")"; done) || true)"
}
# same_or_fewer BEFORE AFTER: prints the resources that differ. Threads may
# be fewer after (helper threads of the last warm-up cycle still ending when
# "before" was taken); everything else must be equal.
same_or_fewer() {
  paste "$1" "$2" | awk '$1 == "threads" && $4 <= $2 { next } $2 != $4 { printf "%s %s -> %s; ", $1, $2, $4 }'
}
rss_of() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

cycle() {  # cycle POD I: one container through create, start, exec, delete
  local pod=$1 c="lk$TOK-$2"
  run_cask -d $(pod_args "$pod" container) "$IMAGE" "$c" sleep 100000
  local out
  out=$(ctr_ task exec --exec-id e "$c" echo "cycle-$2") || fail "exec in $c failed: $out"
  [ "$(tr -d '\r' <<<"$out")" = "cycle-$2" ] || fail "exec in $c printed '$out'"
  ctr_ task rm -f "$c" >/dev/null
  ctr_ containers rm "$c"
}

case_leak_cycles() {
  local pod="lk$TOK" cycles=${CYCLES:-100} warmup=3
  run_cask -d $(pod_args "$pod" sandbox) "$IMAGE" "$pod" sleep 100000
  wait_for 120 status_is "$pod" RUNNING || fail "the pod sandbox never ran"
  local shim
  shim=$(shim_of_pod "$pod")
  [ -n "$shim" ] || fail "no shim for pod $pod"
  # Warm up: the first containers grow thread pools and allocator arenas.
  local i
  for i in $(seq 1 $warmup); do cycle "$pod" "w$i"; done
  sleep 2
  snapshot "$shim" "$pod" > "$W/before"
  local rss0 rss_mid rss1 t0
  rss0=$(rss_of "$shim")
  t0=$(date +%s)
  for i in $(seq 1 "$cycles"); do
    cycle "$pod" "$i"
    [ "$i" -ne $((cycles / 2)) ] || rss_mid=$(rss_of "$shim")
    [ $((i % 10)) -ne 0 ] || log "cycle $i/$cycles: shim RSS $(rss_of "$shim") kB, fds $(ls "/proc/$shim/fd" | wc -l), $(( $(date +%s) - t0 )) s"
  done
  # Exits, event publishing and unmounts finish asynchronously: settle.
  same() { snapshot "$shim" "$pod" > "$W/after"; [ -z "$(same_or_fewer "$W/before" "$W/after")" ]; }
  wait_for 30 same || true
  rss1=$(rss_of "$shim")
  log "$cycles cycles in $(( $(date +%s) - t0 )) s; shim RSS ${rss0} kB -> ${rss_mid} kB (half) -> ${rss1} kB"
  paste "$W/before" "$W/after" | awk '{printf "  %-13s before %6s  after %6s\n", $1, $2, $4}' >&2
  local grown
  grown=$(same_or_fewer "$W/before" "$W/after")
  [ -z "$grown" ] || fail "resources grew over $cycles cycles: $grown"
  # Flat RSS: a fixed slack for allocator noise, and no growth in the
  # second half (a leak of even 20 kB a cycle would show 1 MiB there).
  [ $((rss1 - rss0)) -le 3072 ] || fail "shim RSS grew by $((rss1 - rss0)) kB over $cycles cycles"
  [ $((rss1 - rss_mid)) -le 1024 ] || fail "shim RSS grew by $((rss1 - rss_mid)) kB over the last $((cycles / 2)) cycles"
  expect_eq "$(qemu_count)" 1 "QEMU processes (the pod's VM booted once)"
  ctr_ task kill -s SIGKILL "$pod"
  wait_for 60 status_is "$pod" STOPPED || fail "the pod sandbox did not stop"
  forget "$pod"
  assert_nothing_left_of "the pod" "$pod"
}

# ---------------------------------------------------------------------------
# Escape probes

case_escape_probes() {
  local id="esc$TOK" secret="SECRET-$TOK-$RANDOM$RANDOM"
  mkdir -p "$W/vol"
  echo volume-ok > "$W/vol/inside"
  # Positive control of the search below: the one file named after the token
  # that the container may see.
  echo volume-ok > "$W/vol/inside-$TOK"
  # Host files the container must not reach: in /tmp, beside its volume,
  # at the top of the cask state dir, and (below, once the VM is up) in the
  # pod's own state dir, the parent of the virtio-fs export.
  local m_tmp="/tmp/cask-sec-marker-$TOK" m_vol="$W/marker-$TOK" m_state="$CASK_STATE/marker-$TOK"
  mkdir -p "$CASK_STATE"
  for f in "$m_tmp" "$m_vol" "$m_state"; do echo "$secret" > "$f"; done
  e2e_defer rm -f "$m_tmp"

  run_cask -d --privileged --mount "type=bind,src=$W/vol,dst=/vol,options=rbind:rw" "$IMAGE" "$id" sleep 100000
  wait_for 120 status_is "$id" RUNNING || fail "$id never ran"
  local m_pod="$CASK_STATE/$id/marker-$TOK"
  echo "$secret" > "$m_pod"
  ex() { ctr_ task exec --exec-id "p$RANDOM" "$id" sh -c "$1" 2>&1 | tr -d '\r'; }

  # Positive control: the volume is there.
  expect_eq "$(ex 'cat /vol/inside')" volume-ok "the container's own volume"

  # The kernel is the guest's.
  local host_rel guest_rel
  host_rel=$(uname -r)
  guest_rel=$(ex 'uname -r')
  log "host kernel $host_rel, container kernel $guest_rel"
  [ -n "$guest_rel" ] && [ "$guest_rel" != "$host_rel" ] || fail "the container runs on the host kernel ($guest_rel)"
  ex 'cat /proc/version' | grep -F "$host_rel" >/dev/null && fail "/proc/version in the container names the host kernel"

  # No host pid: not the shim's, containerd's, QEMU's or virtiofsd's, and no
  # process of the guest mentions them.
  local shim qemu vfsd p out
  shim=$(pgrep -f "containerd-shim-cask-v2.*-id $id -address $W/" | head -1)
  qemu=$(qemu_pids "$id/" | head -1)
  vfsd=$(virtiofsd_pids "$id/" | head -1)
  for p in $shim $CD_PID $qemu $vfsd; do
    out=$(ex "cat /proc/$p/cmdline 2>/dev/null | tr '\0' ' '")
    if grep -qE 'containerd|qemu|virtiofsd' <<<"$out"; then fail "host pid $p is visible in the container: $out"; fi
  done
  out=$(ex 'for c in /proc/[0-9]*/cmdline; do tr "\0" " " < $c; echo; done')
  ! grep -qE 'containerd|qemu-system|virtiofsd|cask-sec-e2e' <<<"$out" || fail "host processes listed in the container's /proc: $(grep -E 'containerd|qemu|virtiofsd' <<<"$out" | head -3)"
  # A fresh procfs of its own pid namespace shows no more.
  out=$(ex 'mkdir -p /p2 && mount -t proc proc /p2 && for c in /p2/[0-9]*/cmdline; do tr "\0" " " < $c; echo; done; umount /p2')
  ! grep -qE 'containerd|qemu-system|virtiofsd' <<<"$out" || fail "host processes in a fresh procfs"

  # No host file outside its rootfs and volume, by name or by content.
  out=$(ex "find / -path /proc -prune -o -path /sys -prune -o -path /dev -prune -o -name '*$TOK*' -print 2>/dev/null")
  [ "$out" = "/vol/inside-$TOK" ] || fail "files named after the token found in the container (only /vol/inside-$TOK may be): $out"
  out=$(ex "for f in /proc/1/root$m_tmp /proc/1/root$m_state /proc/1/root$m_pod /tmp/cask-sec-marker-$TOK \
              /vol/../marker-$TOK /vol/../../marker-$TOK /vol/../../../../../../tmp/cask-sec-marker-$TOK \
              /../../../../tmp/cask-sec-marker-$TOK /run/cask/shared/../marker-$TOK /proc/1/root/run/cask/marker-$TOK \
              /proc/self/cwd/../../../../tmp/cask-sec-marker-$TOK; do cat \$f 2>/dev/null; done; true")
  ! grep -qF "$secret" <<<"$out" || fail "a host marker file was read from the container: $out"
  # The pod's virtio-fs export, mounted by the privileged container itself:
  # only the pod's shared tree, nothing of the VM's state dir beside it.
  out=$(ex "mkdir -p /m && mount -t virtiofs cask /m && echo mounted; \
            find /m -maxdepth 3 -name '*.sock' -o -maxdepth 3 -name '*$TOK*' -o -maxdepth 3 -name 'console*' | grep -v '^/m/$id/' ; \
            for f in /m/../marker-$TOK /m/../../marker-$TOK /m/../../../tmp/cask-sec-marker-$TOK; do cat \$f 2>/dev/null; done; \
            umount /m 2>/dev/null; true")
  log "share mounted from inside: $(head -1 <<<"$out")"
  ! grep -qF "$secret" <<<"$out" || fail "a host marker was read through the virtio-fs share: $out"
  ! grep -qE '\.sock|console' <<<"$out" || fail "the VM's state dir is visible through the share: $out"
  out=$(ex "mkdir -p /m2 && for t in / .. ../.. /etc shared; do mount -t virtiofs \$t /m2 2>/dev/null && echo tag-\$t-mounted && umount /m2; done; true")
  [ -z "$out" ] || fail "virtio-fs tags other than the pod's mount: $out"

  # No host device: the host's first disk, by its major:minor, reads
  # nothing of the host from the container. Either the guest has no such
  # device (the read fails), or it is a guest device (listed in the guest's
  # /sys/dev/block) whose first block differs from the host's (when the host
  # lets this test read its own disk at all).
  local disk majmin host_sum
  disk=$(lsblk -dnpo NAME,TYPE 2>/dev/null | awk '$2 == "disk" && $1 !~ /zram|loop|nbd/ {print $1; exit}')
  if [ -n "$disk" ]; then
    majmin=$(lsblk -dno MAJ:MIN "$disk" | tr -d ' ')
    host_sum=$(dd if="$disk" bs=4096 count=1 2>/dev/null | md5sum | cut -d' ' -f1) || host_sum=unreadable-on-the-host
    out=$(ex "mknod /tmp/hostdisk b ${majmin%%:*} ${majmin##*:} || echo mknod-failed
              if dd if=/tmp/hostdisk of=/tmp/hd.bin bs=4096 count=1 2>/dev/null; then
                echo read \$(md5sum < /tmp/hd.bin | cut -d' ' -f1)
                [ -e /sys/dev/block/$majmin ] && echo guest-device
              else echo unreadable; fi; rm -f /tmp/hostdisk /tmp/hd.bin")
    log "host disk $disk ($majmin) from the container: $(tr '\n' ' ' <<<"$out")"
    if ! grep -q unreadable <<<"$out"; then
      grep -q guest-device <<<"$out" || fail "the host disk $disk ($majmin) read from the container is no guest device: $out"
      ! grep -qF "$host_sum" <<<"$out" || fail "the host disk $disk ($majmin) is readable from the container"
    fi
  fi
  out=$(ex 'ls /dev/kvm /dev/vhost-vsock /dev/vhost-net 2>/dev/null; cat /sys/class/block/*/dev 2>/dev/null; true')
  ! grep -q 'kvm\|vhost' <<<"$out" || fail "host virtualization devices in the guest: $out"

  # The agent's channel: the virtio-serial port is held by the agent, so a
  # second opener fails (EBUSY); with vsock, a second connection to the
  # agent's port from inside the guest must be refused.
  # A zero-length request on stream 1 would get an UNIMPLEMENTED reply from
  # an agent that served it.
  out=$(ex 'for p in /sys/class/virtio-ports/*; do [ "$(cat $p/name 2>/dev/null)" = cask.agent ] || continue;
              echo "port $p"; d=$(cat $p/dev); mknod /tmp/agentport c ${d%%:*} ${d##*:} || echo mknod-failed;
              if (exec 3<>/tmp/agentport) 2>/dev/null; then
                r=$(exec 3<>/tmp/agentport; printf "\0\0\0\0\0\0\0\1\1\0" >&3; timeout 10 head -c 64 <&3 | od -An -tx1 | head -1)
                echo "OPENED reply=[$r]";
              else echo refused; fi; rm -f /tmp/agentport; done; true')
  log "agent port from the container: $out"
  grep -q 'refused\|OPENED reply=\[\]' <<<"$out" || fail "the agent's virtio-serial port: $out"
  grep -q 'OPENED reply=\[ *[0-9a-f]' <<<"$out" && fail "a second connection to the agent's port got an answer: $out"
  if grep -q 'cask.channel=vsock' <<<"$(ex 'cat /proc/cmdline')"; then
    log "channel is vsock: a second connection is refused by the agent's port (not probed: no vsock client in the image)"
  fi

  # The markers go before the delete: the pod's state dir must be removable
  # by the shim as it left it.
  rm -f "$m_pod" "$m_state"
  ctr_ task kill -s SIGKILL "$id"
  wait_for 60 status_is "$id" STOPPED || fail "$id did not stop"
  forget "$id"
  assert_nothing_left_of "the probe container" "$id"
  [ "$(cat "$W/vol/inside")" = volume-ok ] || fail "the volume's file changed"
}

e2e_main "$@"
