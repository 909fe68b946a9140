#!/usr/bin/env bash
# tests/cri/cri_e2e.sh CASE: one end-to-end test of cask through
# containerd's CRI plugin, the way kubelet drives a node: a private, real
# containerd 1.6 (tests/lib/e2e.sh, E2E_KIND=cri) with the CRI plugin on,
# real CNI plugins (bridge + host-local + portmap from
# containernetworking-plugins), a `cask` runtime handler written by
# `cask-runtime install --containerd`, a `runc` handler beside it, and
# cask-cri as the CRI client. Exit 0 = pass, 77 = skipped, else fail.
#
# Network safety: containerd runs inside a network namespace this test
# creates (ip netns add; nsenter --net, so it shares the host's mount
# namespace and every mount it makes is visible to the leak check). The
# CNI bridge, the pods' veths, every address (10.88.<n>.0/24) and the
# iptables rules portmap adds exist only in that namespace; the host's
# interfaces, routes and iptables are never touched and no packet leaves
# the machine. CNI's IPAM state lives under the test dir.
#
# Images: nothing is pulled. A busybox image and the sandbox (pause) image
# are built locally from busybox-static (tests/shim/mkimage.sh) and
# imported into containerd's k8s.io namespace.
#
# Helpers for cases (all take names, not ids, where they can):
#   cri ARGS...                 cask-cri against the private containerd
#   write_pod_config NAME [JQ]  $W/pods/NAME.json (a jq filter may amend it)
#   write_ctr_config NAME IMAGE [JQ] -- CMD...   $W/ctrs/NAME.json
#   runp NAME [HANDLER]         runs pod NAME, prints its id
#   create_start POD_ID POD_NAME CTR_NAME   creates and starts, prints the id
#   pod_json ID / ctr_json ID   inspectp / inspect as JSON
#   cask_pod_resources ID       what a cask pod holds on the host (for leak checks)
# Sourced with CRI_E2E_LIBRARY=1 (bench/cri-start.sh), it defines all of the
# above and runs no case: the sourcing script calls `setup` itself and the
# EXIT trap tears down and checks for leaks as it does for a case.
# Short paths: CRI sandbox ids are 64 hex digits and the VM's sockets
# (<state>/<id>/virtiofsd.sock) must fit a unix socket path (107 bytes).
E2E_KIND=cri E2E_TMP_PREFIX=cask-cri
source "$(dirname "${BASH_SOURCE[0]}")/../lib/e2e.sh"
CASK_STATE=$W/cs

BUSYBOX_IMAGE=docker.io/library/busybox:latest
PAUSE_IMAGE=localhost/cask-e2e-pause:latest
# A /24 of 10.88.0.0/16 per test dir, so two runs never share a subnet
# (they are in different network namespaces anyway).
SUBNET_N=$(( $(printf '%s' "$W" | cksum | cut -d' ' -f1) % 200 + 20 ))
POD_SUBNET=10.88.$SUBNET_N.0/24
NETNS=cask-cri-${W##*.}
NETNS_MADE=0
# Base deadline of each CRI call (cask-cri doubles it for runp): a VM boots
# inside RunPodSandbox, under TCG on a loaded machine.
CRI_TIMEOUT=${CRI_TIMEOUT:-180}

cri() { "$CASK_CRI" -r "unix://$W/containerd.sock" -t "$CRI_TIMEOUT" "$@"; }

# The guest kernel's release (the cask guest assets), if recorded.
guest_release() { cat "$GUEST_DIR/kernel-release" 2>/dev/null || true; }

write_cri_cask_config() {
  cask_toml "$CASK_STATE" 240000 > "$W/cask.toml"  # a long agent timeout: TCG on a loaded 2-CPU machine
}

write_containerd_cri_config() {
  mkdir -p "$W/cni/net.d" "$W/cni/ipam" "$W/logs" "$W/pods" "$W/ctrs"
  containerd_toml > "$W/config.toml"
  cat >> "$W/config.toml" <<TOML
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Pod netns files under the CRI state dir (inside \$W), not /var/run/netns.
  netns_mounts_under_state_dir = true
  # runc cannot lower oom_score_adj to -998 from inside this machine's
  # sandbox: clamp it to containerd's own.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$W/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$W/cni/net.d"
TOML
  cat > "$W/cni/net.d/10-cask-e2e.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "cask-e2e-${W##*.}",
  "plugins": [
    {"type": "bridge", "bridge": "cni-cask0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_SUBNET"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$W/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

cri_setup() {
  skip_unless_runnable
  local p
  for p in bridge host-local loopback portmap; do
    [ -x "/usr/lib/cni/$p" ] || { echo "SKIP: /usr/lib/cni/$p missing (apt-get install containernetworking-plugins)" >&2; exit 77; }
  done
  command -v jq >/dev/null || { echo "SKIP: jq missing (apt-get install jq)" >&2; exit 77; }
  [ -x "$CASK_CRI" ] || fail "$CASK_CRI is not executable"
  [ -x "$CASK_RUNTIME" ] || fail "$CASK_RUNTIME is not executable"

  write_cri_cask_config
  write_containerd_cri_config
  # The cask handler comes from the installer under test.
  "$CASK_RUNTIME" install --containerd --config "$W/config.toml" --cask-config "$W/cask.toml" > "$W/install.out" 2>&1 ||
    { cat "$W/install.out" >&2; fail "cask-runtime install --containerd failed"; }
  [ -f "$W/conf.d/cask.toml" ] || fail "install wrote no drop-in at $W/conf.d/cask.toml: $(cat "$W/install.out")"

  ip netns add "$NETNS"
  NETNS_MADE=1
  ip -n "$NETNS" link set lo up

  mkdir -p "$W/bin"
  ln -sf "$SHIM_BIN" "$W/bin/containerd-shim-cask-v2"
  # nsenter execs containerd (same pid): only the network namespace changes.
  PATH="$W/bin:$PATH" nsenter --net="/var/run/netns/$NETNS" containerd --config "$W/config.toml" >> "$W/containerd.log" 2>&1 &
  CD_PID=$!
  wait_for 30 cri version || fail "containerd's CRI did not come up"

  "$TESTS_DIR/shim/mkimage.sh" "$W/busybox.tar" "$BUSYBOX_IMAGE"
  "$TESTS_DIR/shim/mkimage.sh" "$W/pause.tar" "$PAUSE_IMAGE" '["/bin/sleep","2147483647"]'
  ctr_ image import "$W/busybox.tar" >/dev/null
  ctr_ image import "$W/pause.tar" >/dev/null
}

# Stops and removes every pod (their containers go with them), then
# containerd, then the network namespace.
cri_teardown() {
  if [ -n "$CD_PID" ]; then
    local id
    for id in $(cri pods -q 2>/dev/null); do
      cri stopp "$id" >/dev/null 2>&1 || log "teardown: stopp $id failed"
      cri rmp "$id" >/dev/null 2>&1 || log "teardown: rmp $id failed"
    done
  fi
  containerd_teardown
  if [ "$NETNS_MADE" = 1 ]; then
    ip netns delete "$NETNS" 2>/dev/null || log "teardown: ip netns delete $NETNS failed"
    NETNS_MADE=0
  fi
}

# write_pod_config NAME [JQ-FILTER]: a pod config as kubelet would send it
# (crictl's JSON field names), hostname NAME, logs under $W/logs/NAME.
write_pod_config() {
  local name=$1 filter=${2:-.}
  mkdir -p "$W/logs/$name"
  jq -n --arg name "$name" --arg logs "$W/logs/$name" '{
      metadata: {name: $name, namespace: "cask-e2e", uid: ($name + "-uid"), attempt: 0},
      hostname: $name,
      log_directory: $logs,
      linux: {security_context: {namespace_options: {network: 0, pid: 1, ipc: 0}}}
    }' | jq "$filter" > "$W/pods/$name.json"
}

# write_ctr_config NAME IMAGE [JQ-FILTER] -- CMD...: a container config,
# log file NAME.log in the pod's log directory.
write_ctr_config() {
  local name=$1 image=$2 filter=.
  shift 2
  if [ "${1:-}" != -- ]; then filter=$1; shift; fi
  [ "${1:-}" = -- ] && shift
  # The command as a JSON array, one --arg at a time (jq would take a "-c"
  # in --args for its own option).
  local cmd='[]' a
  for a in "$@"; do cmd=$(jq -c --arg a "$a" '. + [$a]' <<<"$cmd"); done
  jq -n --arg name "$name" --arg image "$image" --argjson cmd "$cmd" '{
      metadata: {name: $name, attempt: 0},
      image: {image: $image},
      command: $cmd,
      log_path: ($name + ".log"),
      linux: {}
    }' | jq "$filter" > "$W/ctrs/$name.json"
}

# runp NAME [HANDLER]: RunPodSandbox with $W/pods/NAME.json; prints the id.
runp() {
  if [ -n "${2:-}" ]; then cri runp --runtime "$2" "$W/pods/$1.json"; else cri runp "$W/pods/$1.json"; fi
}

# create_start POD_ID POD_NAME CTR_NAME: prints the container id.
create_start() {
  local id
  id=$(cri create "$1" "$W/ctrs/$3.json" "$W/pods/$2.json") || return 1
  cri start "$id" >/dev/null || return 1
  echo "$id"
}

pod_json() { cri inspectp "$1"; }
ctr_json() { cri inspect "$1"; }
pod_state() { pod_json "$1" | jq -r .status.state; }
ctr_state() { ctr_json "$1" | jq -r .status.state; }
ctr_state_is() { [ "$(ctr_state "$1")" = "$2" ]; }

# The log file of container ID has a line matching the fixed string TEXT.
log_has() { grep -qF -- "$2" "$(ctr_json "$1" | jq -r .status.logPath)"; }

# QEMU and virtiofsd of the whole test (cask state dir under $W).
all_qemu_count() { qemu_count; }

# cask_pod_resources ID: lists what the cask pod ID holds on the host, one
# "kind path-or-pid" per line: its state dir, shim socket, QEMU and
# virtiofsd pids, and host cgroups (as the VM recorded them).
cask_pod_resources() {
  local id=$1 p
  echo "state $CASK_STATE/$id"
  echo "socket $(shim_socket_for_group "$id")"
  for p in $(qemu_pids "$id"); do echo "pid $p"; done
  for p in $(virtiofsd_pids "$id"); do echo "pid $p"; done
  sed -n 's/^cgroup /cgroup /p' "$CASK_STATE/$id/host-processes" 2>/dev/null || true
}

# resources_gone FILE: every resource listed by cask_pod_resources is gone.
resources_gone() {
  local kind what
  while read -r kind what; do
    case "$kind" in
      state|socket|cgroup) [ ! -e "$what" ] || { echo "$kind $what"; return 1; } ;;
      pid) [ ! -e "/proc/$what" ] || { echo "$kind $what"; return 1; } ;;
    esac
  done < "$1"
}

# No pod or container of the test is known to CRI, and no cask VM, shim,
# virtiofsd or mount of a pod is left.
assert_no_pods_left() {
  expect_eq "$(cri pods -q)" "" "pods left"
  expect_eq "$(cri ps -a -q)" "" "containers left"
  wait_for 30 no_qemu || fail "QEMU left: $(qemu_pids)"
  [ -z "$(virtiofsd_pids)" ] || fail "virtiofsd left: $(virtiofsd_pids)"
  wait_for 20 no_shim || fail "shims left: $(shim_pids)"
  # Pod mounts: the CRI state dir's (shm, netns), containerd's snapshots
  # (rootfs) and cask's.
  local m
  m=$(mounts_of_test)
  [ -z "$m" ] || fail "mounts left: $m"
  [ -z "$(ls -A "$CASK_STATE" 2>/dev/null)" ] || fail "cask state left: $(ls -A "$CASK_STATE")"
}

# ---------------------------------------------------------------------------
# Cases

case_version() {
  local out
  out=$(cri version)
  log "version: $(tr '\n' ' ' <<<"$out")"
  expect_contains "$out" "RuntimeName:  containerd" "cask-cri version"
  expect_contains "$out" "RuntimeApiVersion:  v1" "cask-cri version"
  expect_eq "$(cri version -o json | jq -r .runtimeApiVersion)" v1 "runtimeApiVersion in JSON"
  expect_eq "$(cri version -o json | jq -r .runtimeName)" containerd "runtimeName in JSON"
  # The CNI config was loaded (NetworkReady) and the runtime is ready.
  out=$(cri info -o json)
  expect_eq "$(jq -r '.status.conditions[] | select(.type=="RuntimeReady") | .status' <<<"$out")" true "RuntimeReady"
  expect_eq "$(jq -r '.status.conditions[] | select(.type=="NetworkReady") | .status' <<<"$out")" true "NetworkReady"
  # containerd loaded the drop-in the installer wrote: the cask handler is
  # in the effective CRI config, with the options it was given.
  expect_eq "$(jq -r '.info.config.containerd.runtimes.cask.runtimeType' <<<"$out")" io.containerd.cask.v2 "cask runtime_type"
  expect_eq "$(jq -r '.info.config.containerd.runtimes.cask.PodAnnotations[0] // .info.config.containerd.runtimes.cask.podAnnotations[0]' <<<"$out")" \
    'io.cask.*' "cask pod_annotations"
  # ... next to everything the main config's CRI section said.
  expect_eq "$(jq -r '.info.config.sandboxImage' <<<"$out")" "$PAUSE_IMAGE" "sandbox image kept"
  expect_eq "$(jq -r '.info.config.containerd.runtimes.runc.runtimeType' <<<"$out")" io.containerd.runc.v2 "runc kept"
  expect_eq "$(jq -r '.info.config.cni.confDir' <<<"$out")" "$W/cni/net.d" "CNI conf dir kept"
  # `cask-runtime check` sees the handler too.
  out=$("$CASK_RUNTIME" check --config "$W/cask.toml" --containerd-config "$W/config.toml" || true)
  grep -E '^containerd +ok ' <<<"$out" >/dev/null || fail "cask-runtime check does not report the containerd handler: $out"
  # Both local images are listed.
  out=$(cri images)
  expect_contains "$out" "docker.io/library/busybox" "images"
  expect_contains "$out" "localhost/cask-e2e-pause" "images"
  expect_eq "$(cri inspecti "$BUSYBOX_IMAGE" | jq -r '.status.repoTags[0]')" "$BUSYBOX_IMAGE" "inspecti"
  # The containerd lives in the test's network namespace, not the host's.
  expect_eq "$(ip netns identify "$CD_PID")" "$NETNS" "network namespace of containerd"
  [ "$(readlink "/proc/$CD_PID/ns/net")" != "$(readlink /proc/self/ns/net)" ] || fail "containerd runs in the host's network namespace"
}

case_runc_pod() {
  write_pod_config rp
  write_ctr_config app "$BUSYBOX_IMAGE" -- sh -c 'echo hello-stdout; echo hello-stderr >&2; exec sleep 1000'
  local pod ctr out rc
  pod=$(runp rp)
  log "runc pod $pod"
  expect_eq "$(pod_state "$pod")" SANDBOX_READY "pod state"
  expect_eq "$(pod_json "$pod" | jq -r .status.runtimeHandler)" "" "runtime handler of a default pod"
  out=$(pod_json "$pod" | jq -r .status.network.ip)
  case "$out" in "${POD_SUBNET%.0/24}".*) ;; *) fail "pod IP $out is not in $POD_SUBNET" ;; esac
  ctr=$(create_start "$pod" rp app) || fail "create/start failed"
  expect_eq "$(ctr_state "$ctr")" CONTAINER_RUNNING "container state"
  cri ps | grep "^${ctr:0:13} " >/dev/null || fail "ps does not list $ctr: $(cri ps)"
  expect_eq "$(cri exec "$ctr" echo from-exec)" from-exec "ExecSync output"
  rc=0; cri exec "$ctr" sh -c 'exit 3' || rc=$?
  expect_eq "$rc" 3 "ExecSync exit code"
  # runc runs on the host kernel.
  expect_eq "$(cri exec "$ctr" uname -r)" "$(uname -r)" "runc container kernel"
  wait_for 30 log_has "$ctr" hello-stderr || fail "stderr line not in the CRI log"
  expect_eq "$(cri logs "$ctr" 2>/dev/null)" hello-stdout "logs (stdout)"
  expect_eq "$(cri logs "$ctr" 2>&1 >/dev/null)" hello-stderr "logs (stderr)"
  out=$(cri stats -o json "$ctr")
  [ "$(jq -r '.stats[0].memory.workingSetBytes.value' <<<"$out")" -gt 0 ] || fail "no memory in stats: $out"
  jq -e '.stats[0].cpu.usageCoreNanoSeconds.value | tonumber > 0' <<<"$out" >/dev/null || fail "no cpu in stats: $out"
  # UpdateContainerResources reaches the container's cgroup.
  cri update --memory 96Mi --cpu-period 100000 --cpu-quota 50000 "$ctr" >/dev/null
  expect_eq "$(cri exec "$ctr" cat /sys/fs/cgroup/memory/memory.limit_in_bytes)" $((96 << 20)) "memory limit after update"
  expect_eq "$(cri exec "$ctr" cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)" 50000 "cpu quota after update"
  expect_eq "$(ctr_json "$ctr" | jq -r .status.resources.linux.memoryLimitInBytes)" $((96 << 20)) "resources in the status"
  cri stop --timeout 2 "$ctr" >/dev/null
  expect_eq "$(ctr_state "$ctr")" CONTAINER_EXITED "state after stop"
  cri rm "$ctr" >/dev/null
  cri stopp "$pod" >/dev/null
  expect_eq "$(pod_state "$pod")" SANDBOX_NOTREADY "pod state after stopp"
  cri rmp "$pod" >/dev/null
  rc=0; cri inspectp "$pod" >/dev/null 2>"$W/err" || rc=$?
  [ "$rc" -ne 0 ] || fail "inspectp of a removed pod succeeded"
  expect_contains "$(cat "$W/err")" "NOT_FOUND" "inspectp of a removed pod"
  assert_no_pods_left
}

case_cask_pod() {
  write_pod_config cp
  write_ctr_config app "$BUSYBOX_IMAGE" -- sh -c 'echo cask-hello-stdout; echo cask-hello-stderr >&2; exec sleep 1000'
  local pod ctr out guest host
  pod=$(runp cp cask) || fail "RunPodSandbox with the cask handler failed"
  log "cask pod $pod"
  expect_eq "$(pod_state "$pod")" SANDBOX_READY "pod state"
  expect_eq "$(pod_json "$pod" | jq -r .status.runtimeHandler)" cask "runtime handler"
  expect_eq "$(qemu_count "$pod")" 1 "QEMU processes of the pod after runp"
  ctr=$(create_start "$pod" cp app) || fail "create/start in a cask pod failed"
  expect_eq "$(ctr_state "$ctr")" CONTAINER_RUNNING "container state"
  expect_eq "$(cri ps --pod "$pod" -o json | jq -r '.containers[0].id')" "$ctr" "ps --pod"
  expect_eq "$(cri pods --name cp -q)" "$pod" "pods --name"
  # The container runs on the guest kernel, in the pod's one VM.
  guest=$(cri exec "$ctr" uname -r)
  host=$(uname -r)
  log "host kernel $host, container kernel $guest"
  [ -n "$guest" ] || fail "ExecSync uname -r printed nothing"
  [ "$guest" != "$host" ] || fail "the cask container runs on the host kernel ($host)"
  [ -z "$(guest_release)" ] || expect_eq "$guest" "$(guest_release)" "guest kernel release"
  expect_eq "$(qemu_count "$pod")" 1 "QEMU processes of the pod with a container"
  expect_eq "$(qemu_count)" 1 "QEMU processes of the whole test"
  # The sandbox and the container share the VM.
  expect_eq "$(cri exec "$ctr" cat /proc/sys/kernel/random/boot_id)" \
            "$(cri exec "$ctr" cat /proc/sys/kernel/random/boot_id)" "boot id"
  # Output reaches the CRI log file containerd writes.
  wait_for 60 log_has "$ctr" cask-hello-stdout || fail "stdout line not in the CRI log"
  wait_for 60 log_has "$ctr" cask-hello-stderr || fail "stderr line not in the CRI log"
  expect_eq "$(cri logs "$ctr" 2>/dev/null)" cask-hello-stdout "logs (stdout)"
  expect_eq "$(cri logs "$ctr" 2>&1 >/dev/null)" cask-hello-stderr "logs (stderr)"
  out=$(cri stats -o json "$ctr")
  log "stats: $(jq -c '.stats[0] | {cpu, memory}' <<<"$out")"
  jq -e '.stats[0].memory.workingSetBytes.value | tonumber > 0' <<<"$out" >/dev/null || fail "no memory in stats: $out"
  # UpdateContainerResources reaches the container's cgroup in the guest.
  cri update --memory 96Mi "$ctr" >/dev/null
  expect_eq "$(cri exec "$ctr" cat /sys/fs/cgroup/memory.max)" $((96 << 20)) "guest memory.max after update"

  cask_pod_resources "$pod" > "$W/pod-resources"
  log "pod holds: $(tr '\n' ' ' < "$W/pod-resources")"
  grep -q '^pid ' "$W/pod-resources" || fail "no QEMU/virtiofsd recorded for the pod"
  [ -d "$CASK_STATE/$pod" ] || fail "no cask state dir $CASK_STATE/$pod"

  cri stopp "$pod" >/dev/null
  expect_eq "$(pod_state "$pod")" SANDBOX_NOTREADY "pod state after stopp"
  expect_eq "$(ctr_state "$ctr")" CONTAINER_EXITED "container state after stopp"
  cri rmp "$pod" >/dev/null
  local left
  wait_for 30 resources_gone "$W/pod-resources" || { left=$(resources_gone "$W/pod-resources" || true); fail "left after rmp: $left"; }
  assert_no_pods_left
}

case_bad_handler() {
  write_pod_config bh
  local rc=0
  cri runp --runtime nope "$W/pods/bh.json" > "$W/out" 2> "$W/err" || rc=$?
  [ "$rc" -ne 0 ] || fail "runp with an unknown handler succeeded: $(cat "$W/out")"
  log "runp --runtime nope: $(cat "$W/err")"
  expect_contains "$(cat "$W/err")" 'no runtime for "nope" is configured' "error of an unknown handler"
  expect_contains "$(cat "$W/err")" "code UNKNOWN (2)" "gRPC code of an unknown handler"
  assert_no_pods_left
  # The same pod name is free again.
  local pod
  pod=$(runp bh) || fail "runp after a failed runp"
  cri stopp "$pod" >/dev/null
  cri rmp "$pod" >/dev/null
  assert_no_pods_left
}

case_bad_volume() {
  write_pod_config bv
  local pod ctr rc out
  pod=$(runp bv cask) || fail "RunPodSandbox with the cask handler failed"
  # A host path that cannot exist (under a regular file): CreateContainer
  # fails, naming it.
  echo file > "$W/not-a-dir"
  write_ctr_config nodir "$BUSYBOX_IMAGE" \
    ".mounts = [{container_path: \"/data\", host_path: \"$W/not-a-dir/sub\"}]" -- sleep 1000
  rc=0
  cri create "$pod" "$W/ctrs/nodir.json" "$W/pods/bv.json" > "$W/out" 2> "$W/err" || rc=$?
  [ "$rc" -ne 0 ] || fail "create with an impossible host path succeeded"
  log "create: $(cat "$W/err")"
  expect_contains "$(cat "$W/err")" "$W/not-a-dir/sub" "CreateContainer error names the path"
  # A host path that disappears between CreateContainer (which makes a
  # missing one) and StartContainer: the shim's Create fails naming it,
  # and the pod goes on.
  write_ctr_config gone "$BUSYBOX_IMAGE" \
    ".mounts = [{container_path: \"/data\", host_path: \"$W/vol-gone\"}]" -- sleep 1000
  ctr=$(cri create "$pod" "$W/ctrs/gone.json" "$W/pods/bv.json") || fail "create with a missing host path failed"
  [ -d "$W/vol-gone" ] || fail "CreateContainer did not make the missing host path (containerd 1.6 does)"
  rmdir "$W/vol-gone"
  rc=0
  cri start "$ctr" > "$W/out" 2> "$W/err" || rc=$?
  [ "$rc" -ne 0 ] || fail "start with a vanished host path succeeded"
  log "start: $(cat "$W/err")"
  expect_contains "$(cat "$W/err")" "vol-gone" "StartContainer error names the path"
  out=$(ctr_json "$ctr")
  expect_eq "$(jq -r .status.state <<<"$out")" CONTAINER_EXITED "state of a container that failed to start"
  expect_eq "$(jq -r .status.reason <<<"$out")" StartError "reason of a container that failed to start"
  expect_eq "$(pod_state "$pod")" SANDBOX_READY "pod after a failed start"
  expect_eq "$(qemu_count "$pod")" 1 "QEMU of the pod after a failed start"
  cri rm "$ctr" >/dev/null
  cask_pod_resources "$pod" > "$W/pod-resources"
  cri stopp "$pod" >/dev/null
  cri rmp "$pod" >/dev/null
  wait_for 30 resources_gone "$W/pod-resources" || fail "left after rmp: $(resources_gone "$W/pod-resources" || true)"
  assert_no_pods_left
}

case_bad_host_namespaces() {
  # A VM cannot share the host's network, PID or IPC namespace: RunPodSandbox
  # fails naming what was asked, and no VM, shim or pod is left.
  local field word rc
  for field in network pid ipc; do
    case $field in network) word=hostNetwork ;; pid) word=hostPID ;; ipc) word=hostIPC ;; esac
    # kubelet sends no hostname for a hostNetwork pod (it has the node's).
    if [ $field = network ]; then
      write_pod_config "host-$field" ".linux.security_context.namespace_options.$field = 2 | .hostname = \"\""
    else
      write_pod_config "host-$field" ".linux.security_context.namespace_options.$field = 2"
    fi
    rc=0
    cri runp --runtime cask "$W/pods/host-$field.json" > "$W/out" 2> "$W/err" || rc=$?
    [ "$rc" -ne 0 ] || fail "a cask pod with $word started: $(cat "$W/out")"
    log "runp $word: $(cat "$W/err")"
    expect_contains "$(cat "$W/err")" "$word" "error of a cask pod with $word"
    assert_no_pods_left
  done
  # The same pod runs with runc, which shares the host's namespaces.
  local pod
  pod=$(runp host-network) || fail "a hostNetwork runc pod failed"
  expect_eq "$(pod_json "$pod" | jq -r ".status.network.ip // \"\"")" "" "pod IP of a hostNetwork pod"
  cri stopp "$pod" >/dev/null
  cri rmp "$pod" >/dev/null
  assert_no_pods_left
}

# --- pod networking (the pod's address lives in the VM) -------------------

# pod_ip ID: the pod's IP as CRI reports it (from CNI).
pod_ip() { pod_json "$1" | jq -r .status.network.ip; }
# in_test_ns CMD...: run on the host side, in the test's namespace (where
# the CNI bridge is).
in_test_ns() { ip netns exec "$NETNS" "$@"; }
# The pod network namespace files CRI made (under its state dir).
pod_netns_files() { find "$W/state" -path '*netns/cni-*' 2>/dev/null || true; }

case_cask_pod_network() {  # two containers over localhost; the pod IP from the bridge side; port-forward
  write_pod_config np
  write_ctr_config web "$BUSYBOX_IMAGE" -- \
    sh -c 'mkdir -p /www && echo hello-from-cask-pod > /www/index.html && exec httpd -f -p 8080 -h /www'
  write_ctr_config fetch "$BUSYBOX_IMAGE" -- sleep 1000
  local pod web fetch ip body nsf
  pod=$(runp np cask) || fail "RunPodSandbox with the cask handler failed"
  ip=$(pod_ip "$pod")
  log "cask pod $pod at $ip"
  case "$ip" in "${POD_SUBNET%.0/24}".*) ;; *) fail "pod IP $ip is not in $POD_SUBNET" ;; esac
  web=$(create_start "$pod" np web) || fail "create/start web"
  fetch=$(create_start "$pod" np fetch) || fail "create/start fetch"
  expect_eq "$(qemu_count)" 1 "QEMU processes for the two-container pod"
  [ "$(cri exec "$fetch" uname -r)" != "$(uname -r)" ] || fail "ExecSync uname -r shows the host kernel"
  # The guest holds the pod IP.
  expect_contains "$(cri exec "$fetch" ip -o addr show eth0)" "$ip/" "pod IP on the guest's eth0"
  # The other container, over localhost.
  localhost_ok() { cri exec "$fetch" sh -c "printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc 127.0.0.1 8080" | grep hello-from-cask-pod >/dev/null; }
  wait_for 60 localhost_ok || fail "the second container cannot fetch over localhost"
  # A client in the test's namespace, at the pod IP (through the bridge,
  # the veth, the tc redirect and the TAP).
  body=$(in_test_ns curl -s --max-time 30 "http://$ip:8080/index.html") || true
  expect_eq "$body" hello-from-cask-pod "HTTP from the bridge side to the pod IP"
  in_test_ns busybox ping -c 2 -W 10 "$ip" >/dev/null || fail "the bridge side cannot ping the pod"
  # Port-forward as containerd serves it: 127.0.0.1:PORT dialed inside
  # the pod's network namespace on the host.
  nsf=$(pod_netns_files)
  [ "$(grep -c . <<<"$nsf")" = 1 ] || fail "expected one pod netns file, got: $nsf"
  pf_get() { nsenter --net="$nsf" curl -s --max-time 10 http://127.0.0.1:8080/index.html; }
  wait_for 30 pf_get >/dev/null || true
  expect_eq "$(pf_get)" hello-from-cask-pod "port-forward to 8080"
  # The TAP and the tc redirects are there while the pod runs...
  nsenter --net="$nsf" ip -o link show tap0_cask >/dev/null || fail "no TAP in the pod netns"
  cri stopp "$pod" >/dev/null
  # ...and gone after StopPodSandbox (CNI removed the netns too).
  if [ -e "$nsf" ]; then
    [ -z "$(nsenter --net="$nsf" ip -o link show type tun 2>/dev/null)" ] || fail "TAP left after stopp"
    [ -z "$(nsenter --net="$nsf" tc qdisc show 2>/dev/null | grep ingress)" ] || fail "ingress qdisc left after stopp"
  fi
  cri rmp "$pod" >/dev/null
  assert_no_pods_left
}

case_cask_runc_network() {  # a cask pod and a runc pod on one bridge reach each other both ways
  write_pod_config nc1
  write_pod_config nr1
  write_ctr_config cweb "$BUSYBOX_IMAGE" -- \
    sh -c 'mkdir -p /www && echo from-cask > /www/index.html && exec httpd -f -p 8080 -h /www'
  write_ctr_config rweb "$BUSYBOX_IMAGE" -- \
    sh -c 'mkdir -p /www && echo from-runc > /www/index.html && exec httpd -f -p 8080 -h /www'
  local cpod rpod cc rc cip rip
  cpod=$(runp nc1 cask) || fail "runp cask"
  rpod=$(runp nr1) || fail "runp runc"
  cc=$(create_start "$cpod" nc1 cweb) || fail "create/start in the cask pod"
  rc=$(create_start "$rpod" nr1 rweb) || fail "create/start in the runc pod"
  cip=$(pod_ip "$cpod"); rip=$(pod_ip "$rpod")
  log "cask pod $cip, runc pod $rip"
  get() { cri exec "$1" sh -c "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc $2 8080"; }
  expect_contains "$(get "$cc" "$rip")" from-runc "TCP cask -> runc"
  expect_contains "$(get "$rc" "$cip")" from-cask "TCP runc -> cask"
  cri exec "$cc" ping -c 2 -W 10 "$rip" >/dev/null || fail "ping cask -> runc"
  cri exec "$rc" ping -c 2 -W 10 "$cip" >/dev/null || fail "ping runc -> cask"
  cri stopp "$cpod" >/dev/null; cri rmp "$cpod" >/dev/null
  cri stopp "$rpod" >/dev/null; cri rmp "$rpod" >/dev/null
  assert_no_pods_left
}

# --- pod semantics in a cask pod ---------------------------------------------

# The cgroup directory of container ID as it sees it (its own cgroup at
# /sys/fs/cgroup with a cgroup namespace, else below it).
guest_cgroup_dir() {
  cri exec "$1" sh -c 'd=/sys/fs/cgroup; [ -f $d/memory.max ] || d=/sys/fs/cgroup$(sed -n "s/^0:://p" /proc/self/cgroup); echo $d'
}

case_pod_semantics() {  # emptyDir, read-only hostPath (and sub-mount), /dev/shm, hosts/resolv.conf/hostname
  mkdir -p "$W/empty" "$W/hp/sub"
  echo host > "$W/hp/file"
  mount -t tmpfs -o size=1m tmpfs "$W/hp/sub"
  e2e_defer sh -c "umount -l '$W/hp/sub' 2>/dev/null || true"  # if the case did not get to it
  echo sub > "$W/hp/sub/f"
  write_pod_config ps '.hostname = "pshost" |
    .dns_config = {servers: ["10.96.0.10"], searches: ["ns1.svc.cluster.local"], options: ["ndots:5"]}'
  write_ctr_config writer "$BUSYBOX_IMAGE" ".mounts = [{container_path: \"/cache\", host_path: \"$W/empty\"}]" \
    -- sh -c 'echo shared > /cache/x; echo shm-data > /dev/shm/m; exec sleep 1000'
  write_ctr_config reader "$BUSYBOX_IMAGE" ".mounts = [{container_path: \"/cache\", host_path: \"$W/empty\"},
    {container_path: \"/hp\", host_path: \"$W/hp\", readonly: true}]" -- sleep 1000
  local pod w r out
  pod=$(runp ps cask) || fail "RunPodSandbox failed"
  w=$(create_start "$pod" ps writer) || fail "writer failed"
  r=$(create_start "$pod" ps reader) || fail "reader failed"
  wait_for 60 test -e "$W/empty/x" || fail "the writer's file did not reach the emptyDir on the host"
  expect_eq "$(cri exec "$r" cat /cache/x)" shared "emptyDir written by one container, read by the other"
  expect_eq "$(cri exec "$r" cat /dev/shm/m)" shm-data "/dev/shm shared by the pod's containers"
  [ -z "$(ls -A "$W"/state/io.containerd.grpc.v1.cri/sandboxes/"$pod"/shm 2>/dev/null)" ] ||
    fail "the pod's /dev/shm is CRI's host directory"
  out=$(cri exec "$r" sh -c 'echo a > /hp/file 2>/dev/null && echo WROTE-TOP; echo b > /hp/sub/f 2>/dev/null && echo WROTE-SUB;
                              cat /hp/file /hp/sub/f')
  grep -q WROTE <<<"$out" && fail "a read-only hostPath was written: $out"
  expect_eq "$out" $'host\nsub' "read-only hostPath and its sub-mount"
  expect_eq "$(cri exec "$r" hostname)" pshost "hostname"
  expect_eq "$(cri exec "$r" cat /etc/hostname)" pshost "/etc/hostname"
  out=$(cri exec "$r" cat /etc/resolv.conf)
  expect_contains "$out" "nameserver 10.96.0.10" "resolv.conf"
  expect_contains "$out" "search ns1.svc.cluster.local" "resolv.conf"
  expect_contains "$out" "options ndots:5" "resolv.conf"
  local hosts="$W/root/io.containerd.grpc.v1.cri/sandboxes/$pod/hosts"
  [ -f "$hosts" ] && expect_eq "$(cri exec "$r" cat /etc/hosts)" "$(cat "$hosts")" "/etc/hosts as CRI wrote it"
  # Another pod does not see this pod's /dev/shm.
  write_pod_config ps2
  write_ctr_config lone "$BUSYBOX_IMAGE" -- sleep 1000
  local pod2 c2
  pod2=$(runp ps2 cask) || fail "second pod failed"
  c2=$(create_start "$pod2" ps2 lone) || fail "container of the second pod failed"
  expect_eq "$(cri exec "$c2" ls -A /dev/shm)" "" "/dev/shm of another pod"
  expect_eq "$(qemu_count)" 2 "QEMU processes for two pods"
  local p
  for p in "$pod" "$pod2"; do
    cri stopp "$p" >/dev/null
    cri rmp "$p" >/dev/null
  done
  umount -l "$W/hp/sub"
  assert_no_pods_left
}

case_status_stats_update() {  # exit codes, OOMKilled, stats, UpdateContainerResources in the guest cgroup
  write_pod_config su
  write_ctr_config ex "$BUSYBOX_IMAGE" -- sh -c 'echo about-to-exit; exit 7'
  write_ctr_config up "$BUSYBOX_IMAGE" '.linux.resources = {memory_limit_in_bytes: 67108864}' -- sleep 1000
  write_ctr_config mem "$BUSYBOX_IMAGE" '.linux.resources = {memory_limit_in_bytes: 33554432}' \
    -- sh -c 'x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done'
  local pod e u m out cg
  pod=$(runp su cask) || fail "RunPodSandbox failed"
  e=$(create_start "$pod" su ex) || fail "ex failed"
  wait_for 120 ctr_state_is "$e" CONTAINER_EXITED || fail "ex did not exit"
  out=$(ctr_json "$e")
  expect_eq "$(jq -r .status.exitCode <<<"$out")" 7 "exit code"
  expect_eq "$(jq -r .status.reason <<<"$out")" Error "reason of exit 7"
  log_has "$e" about-to-exit || fail "the output written just before the exit is not in the CRI log"
  u=$(create_start "$pod" su up) || fail "up failed"
  out=$(cri stats -o json "$u")
  log "stats: $(jq -c '.stats[0] | {cpu, memory}' <<<"$out")"
  jq -e '.stats[0].memory.workingSetBytes.value | tonumber > 0' <<<"$out" >/dev/null || fail "no memory in stats: $out"
  jq -e '.stats[0].cpu.usageCoreNanoSeconds.value | tonumber > 0' <<<"$out" >/dev/null || fail "no cpu in stats: $out"
  cg=$(guest_cgroup_dir "$u")
  expect_eq "$(cri exec "$u" cat "$cg/memory.max")" 67108864 "guest memory.max before the update"
  cri update --memory 100663296 --cpu-period 100000 --cpu-quota 50000 "$u" >/dev/null || fail "UpdateContainerResources failed"
  expect_eq "$(cri exec "$u" cat "$cg/memory.max")" 100663296 "guest memory.max after the update"
  expect_eq "$(cri exec "$u" cat "$cg/cpu.max")" "50000 100000" "guest cpu.max after the update"
  m=$(create_start "$pod" su mem) || fail "mem failed"
  wait_for 180 ctr_state_is "$m" CONTAINER_EXITED || fail "mem did not exit"
  out=$(ctr_json "$m")
  expect_eq "$(jq -r .status.exitCode <<<"$out")" 137 "exit code of the OOM-killed container"
  expect_eq "$(jq -r .status.reason <<<"$out")" OOMKilled "reason of the OOM-killed container"
  cri stopp "$pod" >/dev/null
  cri rmp "$pod" >/dev/null
  assert_no_pods_left
}

case_bad_annotation() {  # an out-of-bounds io.cask.* annotation refuses the pod; nothing is left
  write_pod_config ba '.annotations = {"io.cask.vcpus": "999"}'
  local rc=0
  cri runp --runtime cask "$W/pods/ba.json" > "$W/out" 2> "$W/err" || rc=$?
  [ "$rc" -ne 0 ] || fail "runp with io.cask.vcpus=999 succeeded: $(cat "$W/out")"
  log "runp: $(cat "$W/err")"
  expect_contains "$(cat "$W/err")" 'io.cask.vcpus="999"' "error names the annotation"
  expect_contains "$(cat "$W/err")" "between 1 and" "error gives the bounds"
  assert_no_pods_left
  # Within bounds: the VM gets what the pod asked for.
  write_pod_config bb '.annotations = {"io.cask.memory_mib": "384"}'
  local pod
  pod=$(runp bb cask) || fail "runp with io.cask.memory_mib=384 failed"
  ps -o args= -p "$(qemu_pids "$pod" | head -1)" | grep -E -- '-m (size=)?384' >/dev/null ||
    fail "QEMU does not have 384 MiB: $(ps -o args= -p "$(qemu_pids "$pod" | head -1)")"
  cri stopp "$pod" >/dev/null
  cri rmp "$pod" >/dev/null
  assert_no_pods_left
}

case_ten_pods() {  # 10 pods started concurrently all run and answer ExecSync; teardown leaves nothing
  local i n=10
  write_ctr_config tpc "$BUSYBOX_IMAGE" -- sleep 1000
  for i in $(seq 1 $n); do write_pod_config "tp$i"; done
  # Wait for these jobs only: a bare `wait` would also wait for containerd,
  # which is this script's child too.
  local jobs=()
  for i in $(seq 1 $n); do
    ( pod=$(runp "tp$i" cask) && c=$(create_start "$pod" "tp$i" tpc) && echo "$pod $c" > "$W/tp$i.ids" ) &
    jobs+=($!)
  done
  wait "${jobs[@]}" || true
  local pod c
  for i in $(seq 1 $n); do
    [ -s "$W/tp$i.ids" ] || fail "pod tp$i did not start"
    read -r pod c < "$W/tp$i.ids"
    expect_eq "$(pod_state "$pod")" SANDBOX_READY "state of pod tp$i"
    expect_eq "$(cri exec "$c" echo "alive-$i")" "alive-$i" "ExecSync in pod tp$i"
    cask_pod_resources "$pod" >> "$W/all-resources"
  done
  expect_eq "$(qemu_count)" "$n" "QEMU processes"
  jobs=()
  for i in $(seq 1 $n); do
    read -r pod c < "$W/tp$i.ids"
    ( cri stopp "$pod" >/dev/null && cri rmp "$pod" >/dev/null ) &
    jobs+=($!)
  done
  wait "${jobs[@]}" || true
  wait_for 60 resources_gone "$W/all-resources" || fail "left after teardown: $(resources_gone "$W/all-resources" || true)"
  assert_no_pods_left
}

[ "${CRI_E2E_LIBRARY:-0}" = 1 ] || e2e_main "$@"
