#!/usr/bin/env bash
# tests/pool/e2e.sh CASE: the pool of ready VMs (`cask-runtime pool serve`,
# lib/pool) with containerd-shim-cask-v2 through a private containerd
# (tests/lib/e2e.sh). The pool's socket, state dir and cgroup parent are the
# test's own ($W, a cgroup named after it), so nothing collides.
# Exit 0 = pass, 77 = skipped, else fail. Each case also checks that
# nothing is left: no QEMU or virtiofsd, mount, pool cgroup or socket.
E2E_KIND=containerd E2E_TMP_PREFIX=cask-pool-e2e
source "$(dirname "$0")/../lib/e2e.sh"
: "${CASK_RUNTIME:?CASK_RUNTIME must point at cask-runtime}"

POOL_DIR=$W/pool
POOL_SOCK=$POOL_DIR/pool.sock
POOL_CG=cask-pool-e2e-$$
POOL_PID=

# The test's configuration with a [pool] table: pool_config SIZE [MEMORY_MIB].
pool_config() {
  write_cask_config "$W/cask.toml" \
    '[agent]' 'connect_timeout_ms = 240000' \
    '[pool]' "size = $1" "socket = \"$POOL_SOCK\"" "state_dir = \"$POOL_DIR\"" "cgroup_parent = \"$POOL_CG\""
  [ -z "${2:-}" ] || sed -i "s/^memory_mib = .*/memory_mib = $2/" "$W/cask.toml"
}

pool_status() { "$CASK_RUNTIME" pool status --config "$W/cask.toml" 2>/dev/null; }
pool_ready() { pool_status | grep -x "ready $1" >/dev/null; }

start_pool() {
  "$CASK_RUNTIME" pool serve --config "$W/cask.toml" >> "$W/pool.log" 2>&1 &
  POOL_PID=$!
  wait_for 240 pool_ready "$1" || { cat "$W/pool.log" >&2; fail "the pool did not get $1 ready VM(s)"; }
}

stop_pool() {
  [ -n "$POOL_PID" ] || return 0
  kill -TERM "$POOL_PID" 2>/dev/null || true
  wait "$POOL_PID" 2>/dev/null || true
  POOL_PID=
}

# Every cgroup directory of the pool's parent that still exists.
pool_cgroups() { find /sys/fs/cgroup -maxdepth 6 -type d -name "$POOL_CG" 2>/dev/null || true; }
pool_cgroup_children() {
  local d
  for d in $(pool_cgroups); do find "$d" -mindepth 1 -maxdepth 1 -type d; done
}

# The processes of the pool's idle VMs: the members of its cgroups (a VM
# handed over leaves them; its command line still names the pool's path).
pool_vm_pids() {
  local d
  for d in $(pool_cgroup_children); do cat "$d/cgroup.procs" 2>/dev/null; done | sort -u
}
pids_gone() { [ -z "$(ps -o pid= -p "$(echo $1 | tr ' ' ,)" 2>/dev/null)" ]; }

# Stops the pool and fails if it left anything: a VM, a cgroup, the socket,
# a VM directory. Every case ends with it.
pool_cleanup_check() {
  stop_pool
  wait_for 20 test -z "$(pool_vm_pids)" || fail "pool VMs left: $(pool_vm_pids)"
  wait_for 10 test -z "$(pool_cgroup_children)" || fail "pool cgroups left: $(pool_cgroup_children)"
  [ ! -e "$POOL_SOCK" ] || fail "pool socket left"
  [ -z "$(ls -A "$POOL_DIR/vms" 2>/dev/null)" ] || fail "pool VM directories left: $(ls -A "$POOL_DIR/vms")"
  [ ! -e "$POOL_DIR/netns" ] || fail "the pool's holding network namespace is still mounted"
}
# On the way out (also after a failure): stop the pool, remove its cgroup
# parent; never fails, so the suite's own leak check still runs.
pool_teardown() {
  stop_pool
  local d
  for d in $(pool_cgroups); do rmdir "$d" 2>/dev/null || true; done
}
e2e_defer pool_teardown

shim_log_has() { grep -q "$1" "$W/containerd.log"; }

# A pod from the pool runs, tears down cleanly, and the pool replaces it;
# then `cask-runtime run` takes the replacement.
case_warm() {
  pool_config 1
  start_pool 1
  local first_vm out
  first_vm=$(pool_vm_pids)
  out=$(run_cask --rm "$IMAGE" w1 sh -c 'echo warm-ok; cat /proc/uptime')
  expect_contains "$out" "warm-ok" "output of a container in a pool VM"
  shim_log_has 'from_pool=true' || fail "the pod did not run in the pool's VM"
  ! shim_log_has 'no ready VM, booting one' || fail "the pod fell back to a cold boot"
  # The pool gave back its idle VM's kernel and initrd pages; the shim
  # asked again for the adopted VM (hypervisor.release_boot_files).
  grep -q 'msg="boot files released" .*mappings=2 ' "$W/pool.log" || fail "the pool did not release its VM's boot files: $(grep -i 'boot files' "$W/pool.log")"
  shim_log_has 'msg="boot files released" .*mappings=2 ' || fail "the shim did not release the adopted VM's boot files"
  # The VM that ran the pod is gone (stopped by its shim), its directory
  # too; the pool booted another one.
  wait_for 20 pids_gone "$first_vm" || fail "the handed-over VM's processes ($first_vm) still run"
  [ -z "$(ls -A "$CASK_STATE" 2>/dev/null)" ] || fail "state dir not empty: $(ls -A "$CASK_STATE")"
  wait_for 240 pool_ready 1 || fail "the pool did not replace its VM"
  pool_status | grep -x "handed_over 1" >/dev/null || fail "pool status: $(pool_status)"
  expect_eq "$(qemu_count)" 0 "pod QEMU processes after rm"
  # `cask-runtime run` takes the pool's VMs too.
  "$TESTS_DIR/e2e/make-rootfs.sh" "$W/rootfs"
  local run_vm
  run_vm=$(pool_vm_pids)
  out=$("$CASK_RUNTIME" run --config "$W/cask.toml" --rootfs "$W/rootfs" --timing -- sh -c 'echo run-warm-ok' 2>&1) ||
    fail "cask-runtime run in a pool VM failed: $out"
  expect_contains "$out" "run-warm-ok" "output of cask-runtime run"
  expect_contains "$out" "vm=pool" "cask-runtime run's VM (its --timing line)"
  pool_status | grep -x "handed_over 2" >/dev/null || fail "pool status after cask-runtime run: $(pool_status)"
  [ -z "$(ls -A "$CASK_STATE" 2>/dev/null)" ] || fail "state dir not empty after run: $(ls -A "$CASK_STATE")"
  wait_for 20 pids_gone "$run_vm" || fail "the VM cask-runtime run took ($run_vm) still runs"
  # The taken VMs' NICs (unused: no network namespace) went with them: the
  # holding namespace has the replacement's TAP at most.
  holding_taps() { nsenter --net="$POOL_DIR/netns" ip -o link show type tun | grep -c cpool || true; }
  wait_for 20 test "$(holding_taps)" -le 1 || fail "TAPs left in the pool's holding namespace: $(holding_taps)"
  pool_cleanup_check
}

# A pod whose size does not match the pool's VMs boots cold; the pool keeps its VM.
case_mismatch() {
  pool_config 1
  start_pool 1
  local out
  out=$(run_cask --rm --annotation io.cask.memory_mib=320 "$IMAGE" m1 sh -c 'echo cold-ok')
  expect_contains "$out" "cold-ok" "output of a container in a cold VM"
  shim_log_has 'memory_mib: wanted 320' || fail "no mismatch reason in the shim's log"
  ! shim_log_has 'took a ready VM from the pool' || fail "a mismatched pod took the pool's VM"
  pool_ready 1 || fail "the pool lost its VM: $(pool_status)"
  pool_cleanup_check
}

# Two pods at once from a pool of one: one warm, one cold, both run.
case_concurrent() {
  pool_config 1
  start_pool 1
  local a b rc_a=0 rc_b=0
  run_cask --rm "$IMAGE" c1 sh -c 'echo c1-ok' > "$W/c1.out" 2>&1 & a=$!
  run_cask --rm "$IMAGE" c2 sh -c 'echo c2-ok' > "$W/c2.out" 2>&1 & b=$!
  wait $a || rc_a=$?
  wait $b || rc_b=$?
  expect_eq "$rc_a/$rc_b" 0/0 "exit codes of the two pods"
  expect_contains "$(cat "$W/c1.out")" c1-ok "c1 output"
  expect_contains "$(cat "$W/c2.out")" c2-ok "c2 output"
  expect_eq "$(grep -c 'from_pool=true' "$W/containerd.log")" 1 "pods that ran in the pool's one VM"
  expect_eq "$(qemu_count)" 0 "pod QEMU processes after rm"
  pool_cleanup_check
}

# The pool SIGKILLed: a pod that took its VM before keeps running; a pod
# taking one at that moment still runs (warm if the handover was done,
# cold otherwise); the pool's watchdog kills its idle VMs; a restarted pool
# starts clean.
case_pool_killed() {
  pool_config 1
  start_pool 1
  run_cask -d "$IMAGE" k0 sleep 1000
  shim_log_has 'sandbox=k0 container=k0 vmm_pid=[0-9]* from_pool=true' || fail "k0 did not run in the pool's VM"
  wait_for 240 pool_ready 1 || fail "the pool did not replace its VM"
  local runner rc=0
  run_cask --rm "$IMAGE" k1 sh -c 'echo k1-ok' > "$W/k1.out" 2>&1 & runner=$!
  # Mid-handover: as soon as k1's shim runs.
  wait_for 30 test "$(shim_pids | grep -c .)" -ge 2 || true
  kill -KILL "$POOL_PID"
  wait "$POOL_PID" 2>/dev/null || true
  POOL_PID=
  wait $runner || rc=$?
  expect_eq "$rc" 0 "exit code of the pod started while the pool died"
  expect_contains "$(cat "$W/k1.out")" k1-ok "output of the pod started while the pool died"
  expect_eq "$(ctr_ task exec --exec-id e1 k0 echo still-here)" still-here "exec in the pod taken before the pool died"
  wait_for 30 test -z "$(pool_vm_pids)" || fail "pool VMs survived the pool: $(pool_vm_pids)"
  wait_for 10 test -z "$(pool_cgroup_children)" || fail "pool cgroups survived the pool: $(pool_cgroup_children)"
  wait_for 10 test ! -e "$POOL_DIR/netns" || fail "the holding network namespace survived the pool"
  ctr_ task kill -s SIGKILL k0
  wait_for 30 status_is k0 STOPPED || fail "k0 did not stop"
  ctr_ task rm k0
  ctr_ containers rm k0
  wait_for 30 no_qemu || fail "pod QEMU still running"
  # A restarted pool starts clean.
  start_pool 1
  pool_cleanup_check
}

# A pod with a network namespace (made here: eth0 10.232.0.2/24 in P, its
# veth peer 10.232.0.1/24 in Q; nothing on the host's interfaces) takes the
# pool's VM: the VM's TAP moves from the pool's holding namespace into P,
# the guest NIC gets the veth's MAC and the pod's address, and reaches the
# peer; the peer reaches the pod's server, and so does port forwarding as
# containerd does it (127.0.0.1:PORT dialed inside P). Nothing is left: no
# TAP in P, no pool TAP on the host, no holding namespace once the pool
# stops.
case_netns() {
  pool_config 1
  start_pool 1
  local p=cask-pool-p-$$ q=cask-pool-q-$$ mac out body
  ip netns add "$p"; e2e_defer ip netns del "$p"
  ip netns add "$q"; e2e_defer ip netns del "$q"
  ip -n "$p" link add eth0 type veth peer name veth0 netns "$q"
  ip -n "$p" addr add 10.232.0.2/24 dev eth0; ip -n "$p" link set eth0 up
  ip -n "$p" link set lo up  # as CNI's loopback plugin leaves it: port forwarding dials 127.0.0.1 there
  ip -n "$q" addr add 10.232.0.1/24 dev veth0; ip -n "$q" link set veth0 up
  mac=$(ip -n "$p" -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
  run_cask -d $(pod_args n1 sandbox) --with-ns "network:/var/run/netns/$p" "$IMAGE" n1 \
    sh -c 'mkdir -p /www && echo hello-from-warm-pod > /www/index.html && exec httpd -f -p 8080 -h /www'
  wait_for 60 status_is n1 RUNNING || fail "n1 not running"
  shim_log_has 'sandbox=n1 container=n1 vmm_pid=[0-9]* from_pool=true' ||
    { grep -i 'ready VM' "$W/containerd.log" >&2; fail "n1 did not run in the pool's VM"; }
  out=$(ctr_ task exec --exec-id e1 n1 \
    sh -c 'ip -o addr show eth0; ip -o link show eth0; ping -c 1 -W 20 10.232.0.1 >/dev/null && echo ping-ok')
  expect_contains "$out" "10.232.0.2/24" "the guest NIC's address"
  expect_contains "$out" "$mac" "the guest NIC's MAC (the pod veth's)"
  expect_contains "$out" "ping-ok" "ping from the guest to the pod's peer"
  body=$(ip netns exec "$q" curl -s --max-time 30 http://10.232.0.2:8080/index.html) || true
  expect_eq "$body" "hello-from-warm-pod" "HTTP from the peer to the warm pod"
  pf_fetch() { nsenter --net="/var/run/netns/$p" curl -s --max-time 10 http://127.0.0.1:8080/index.html; }
  wait_for 30 pf_fetch >/dev/null || true
  expect_eq "$(pf_fetch)" "hello-from-warm-pod" "port-forward: 127.0.0.1:8080 in the warm pod's netns on the host"
  ctr_ task kill -s SIGKILL n1
  wait_for 30 status_is n1 STOPPED || fail "n1 not stopped"
  ctr_ task rm n1 >/dev/null
  ctr_ containers rm n1
  [ -z "$(ip -n "$p" -o link show type tun)" ] || fail "TAP left in the pod netns: $(ip -n "$p" -o link show type tun)"
  [ -z "$(ip -o link show | grep cpool)" ] || fail "a pool TAP is in the host's namespace"
  pool_cleanup_check
}

rm_service_cgroups() {
  local d rc=0
  for d in $(find /sys/fs/cgroup -maxdepth 2 -type d -name cask-pool.service 2>/dev/null); do rmdir "$d" 2>/dev/null || rc=1; done
  return $rc
}

# pool.autostart: the first pod finds no socket, boots cold and starts the
# pool (detached, in a cgroup of its own); a later pod runs warm.
case_autostart() {
  pool_config 1
  printf 'autostart = true\nruntime_path = "%s"\n' "$CASK_RUNTIME" >> "$W/cask.toml"
  expect_eq "$(run_cask --rm "$IMAGE" a1 sh -c 'echo a1-ok')" a1-ok "output of the first pod"
  shim_log_has 'started the VM pool' || fail "the shim did not start the pool"
  POOL_PID=$(pgrep -f -- "pool serve --config $W/cask.toml" | head -1)
  [ -n "$POOL_PID" ] || fail "no autostarted pool process"
  wait_for 240 pool_ready 1 || fail "the autostarted pool has no ready VM"
  expect_eq "$(run_cask --rm "$IMAGE" a2 sh -c 'echo a2-ok')" a2-ok "output of the second pod"
  shim_log_has 'sandbox=a2 container=a2 vmm_pid=[0-9]* from_pool=true' || fail "a2 did not run in the pool's VM"
  # Not this shell's child: stop it by its pid and wait for it to go.
  kill -TERM "$POOL_PID"
  wait_for 30 pids_gone "$POOL_PID" || fail "the autostarted pool did not stop"
  POOL_PID=
  # Its cgroup (node-wide name: another pool may use it, so best effort)
  # empties once its watchdog is done.
  wait_for 10 rm_service_cgroups || true
  pool_cleanup_check
}

e2e_main "$@"
