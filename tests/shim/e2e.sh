#!/usr/bin/env bash
# tests/shim/e2e.sh CASE: one end-to-end test of containerd-shim-cask-v2
# against a private, real containerd 1.6 (tests/lib/e2e.sh), driven with ctr.
# Exit 0 = pass, 77 = skipped (no guest assets / not root), else fail.
# Every case also checks, on the way out, that no shim, QEMU or mount of
# its own is left behind.
E2E_KIND=containerd E2E_TMP_PREFIX=cask-shim-e2e
source "$(dirname "$0")/../lib/e2e.sh"

case_basic() {
  # PID 1 of a pid namespace only gets the signals it handles: trap TERM.
  run_cask -d "$IMAGE" bb sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
  ctr_ container ls | grep -E "^bb\s" | grep "$RUNTIME" >/dev/null || fail "RUNTIME column does not show $RUNTIME: $(ctr_ container ls)"
  expect_eq "$(task_status bb)" RUNNING "task status"
  local guest host
  guest=$(ctr_ task exec --exec-id e1 bb uname -r | tr -d '\r')
  host=$(uname -r)
  log "host kernel $host, container kernel $guest"
  [ -n "$guest" ] || fail "exec uname -r printed nothing"
  [ "$guest" != "$host" ] || fail "container runs on the host kernel ($host)"
  if [ -f "$GUEST_DIR/kernel-release" ]; then expect_eq "$guest" "$(cat "$GUEST_DIR/kernel-release")" "guest kernel"; fi
  expect_eq "$(qemu_count)" 1 "QEMU processes"
  # QEMU's kernel and initrd mappings were paged out once the agent
  # answered (hypervisor.release_boot_files, on by default).
  grep -q 'msg="boot files released" .*mappings=2 ' "$W/containerd.log" ||
    fail "the shim did not release the boot files: $(grep -i 'boot files' "$W/containerd.log")"
  [ "$(ctr_ task ps bb | tail -n +2 | grep -c .)" -ge 1 ] || fail "task ps is empty"
  ctr_ task kill bb
  wait_for 30 status_is bb STOPPED ||
    fail "task did not stop after kill: $(task_status bb)"
  ctr_ task rm bb
  ctr_ containers rm bb
  wait_for 20 no_qemu || fail "QEMU still running after rm"
}

case_exit_codes() {
  local rc=0
  run_cask --rm "$IMAGE" x1 sh -c 'exit 3' || rc=$?
  expect_eq "$rc" 3 "exit code"
  # 128 + signal: the init killed from outside (PID 1 ignores signals it
  # does not handle when they come from inside its namespace).
  run_cask --rm "$IMAGE" x2 sleep 1000 &
  local runner=$!
  wait_for 120 status_is x2 RUNNING || fail "x2 never ran"
  ctr_ task kill -s SIGKILL x2
  rc=0
  wait $runner || rc=$?
  expect_eq "$rc" 137 "exit code of a SIGKILLed process"
  rc=0
  run_cask --rm "$IMAGE" x3 true || rc=$?
  expect_eq "$rc" 0 "exit code of true"
}

case_stdio() {
  local out
  out=$(printf 'hello\nworld\n' | run_cask --rm "$IMAGE" s1 cat)
  expect_eq "$out" $'hello\nworld' "stdin copied through cat"
  # stdout and stderr both arrive, completely, before the exit.
  out=$(run_cask --rm "$IMAGE" s2 sh -c 'seq 1 20000; echo err >&2' 2>&1)
  expect_contains "$out" "err" "stderr"
  expect_eq "$(grep -c . <<<"$out")" 20001 "line count of stdout+stderr"
  expect_eq "$(grep -x 20000 <<<"$out")" 20000 "last stdout line"
}

case_tty() {
  local out raw="$W/tty.out"
  # script(1) gives ctr a 30x100 terminal; ctr sends that size to the task
  # (TtyWinResize) just after the start, so the container polls for it.
  # script's stdin stays open without data: at EOF script types ^D on ctr's
  # terminal, which Linux queues as a NUL placeholder that ctr, switching to
  # raw mode, then reads and sends (the container echoes "^@"). script
  # lasts until its stdin ends: 15 s is past ctr's start (and its raw mode).
  script -qec "stty rows 30 cols 100; ctr --address $CONTAINERD_ADDRESS -n $NS run --runtime $RUNTIME --runtime-config-path $W/cask.toml --rm -t $IMAGE t1 sh -c 'test -t 0 && test -t 1 && echo is-a-tty; tty; for i in \$(seq 40); do [ \"\$(stty size)\" = \"30 100\" ] && break; sleep 0.25; done; echo size=\$(stty size); echo ctty=\$(echo ok > /dev/tty && echo yes)'" /dev/null > "$raw" < <(sleep 15)
  out=$(tr -d '\r' < "$raw")
  log "tty: $out"
  expect_contains "$out" "is-a-tty" "stdin and stdout are a terminal inside the container"
  # As runc: a pty of the container's own devpts, controlling, sized by the host.
  grep -qx '/dev/pts/[0-9]*' <<<"$out" || fail "tty(1) names no /dev/pts device: $out"
  expect_contains "$out" "size=30 100" "stty size"
  expect_contains "$out" "ctty=yes" "/dev/tty (the controlling terminal) opens"
  expect_eq "$(tr -cd '\000' < "$raw" | wc -c)" 0 "NUL bytes in the terminal output"
  expect_eq "$(grep -c '\^@' "$raw")" 0 "echoed NUL input (^@) in the terminal output"
  # An exec with a terminal gets its own pty too.
  run_cask -d "$IMAGE" t2 sleep 1000
  script -qec "stty rows 30 cols 100; ctr --address $CONTAINERD_ADDRESS -n $NS task exec -t --exec-id et t2 sh -c 'tty; test -t 0 && echo exec-tty'" /dev/null > "$raw" < <(sleep 15)
  out=$(tr -d '\r' < "$raw")
  log "exec tty: $out"
  grep -qx '/dev/pts/[0-9]*' <<<"$out" || fail "tty(1) in an exec names no /dev/pts device: $out"
  expect_contains "$out" "exec-tty" "exec stdin is a terminal"
  expect_eq "$(tr -cd '\000' < "$raw" | wc -c)" 0 "NUL bytes in the exec terminal output"
  expect_eq "$(grep -c '\^@' "$raw")" 0 "echoed NUL input (^@) in the exec terminal output"
  ctr_ task kill -s SIGKILL t2
  wait_for 30 status_is t2 STOPPED || fail "not stopped"
  ctr_ task rm t2
  ctr_ containers rm t2
}

case_exec() {
  run_cask -d "$IMAGE" ex sleep 1000
  local rc=0 out
  ctr_ task exec --exec-id e1 ex sh -c 'exit 5' || rc=$?
  expect_eq "$rc" 5 "exec exit code"
  # ctr deletes the exec when it is done: the same id can be used again
  # (the guest agent forgets it too: RemoveProcess).
  rc=0
  out=$(ctr_ task exec --exec-id e1 ex sh -c 'echo again; exit 6' 2>&1) || rc=$?
  expect_eq "$rc" 6 "exit code of a second exec with the same id ($out)"
  expect_eq "$out" again "output of a second exec with the same id"
  out=$(ctr_ task exec --exec-id e2 ex sh -c 'echo from-exec; echo e >&2' 2>&1)
  expect_contains "$out" "from-exec" "exec stdout"
  out=$(echo piped | ctr_ task exec --exec-id e3 ex cat)
  expect_eq "$out" piped "exec stdin"
  rc=0
  ctr_ task exec --exec-id e4 ex /no/such/binary >/dev/null 2>&1 || rc=$?
  [ "$rc" -ne 0 ] || fail "exec of a missing binary succeeded"
  ctr_ task kill -s SIGKILL ex
  wait_for 30 status_is ex STOPPED || fail "not stopped"
  ctr_ task rm ex
  ctr_ containers rm ex
}

case_kill_all() {
  run_cask -d "$IMAGE" ka sh -c 'trap "" TERM; sleep 1000 & sleep 1000 & wait'
  sleep 1
  ctr_ task kill --all -s SIGKILL ka
  wait_for 30 status_is ka STOPPED || fail "kill --all did not stop the task"
  # Killing a stopped task is tolerated (NOT_FOUND is swallowed by ctr --all? check status only)
  ctr_ task rm ka
  ctr_ containers rm ka
}

case_pause_resume() {
  run_cask -d --log-uri "file://$W/pause.log" "$IMAGE" pr sh -c 'i=0; while :; do i=$((i+1)); echo $i; sleep 0.2; done'
  wait_for 30 test -s "$W/pause.log" || fail "no output from the counter"
  ctr_ task pause pr
  expect_eq "$(task_status pr)" PAUSED "status after pause"
  sleep 1
  local n1 n2 n3
  n1=$(wc -l < "$W/pause.log")
  sleep 3
  n2=$(wc -l < "$W/pause.log")
  expect_eq "$n2" "$n1" "lines written while paused"
  ctr_ task resume pr
  expect_eq "$(task_status pr)" RUNNING "status after resume"
  sleep 3
  n3=$(wc -l < "$W/pause.log")
  [ "$n3" -gt "$n2" ] || fail "no progress after resume ($n2 -> $n3)"
  ctr_ task kill -s SIGKILL pr
  wait_for 30 status_is pr STOPPED || fail "not stopped"
  ctr_ task rm pr
  ctr_ containers rm pr
}

case_metrics() {
  run_cask -d "$IMAGE" me sleep 1000
  local out
  out=$(ctr_ task metrics me)
  log "metrics: $out"
  expect_contains "$out" "memory" "metrics"
  expect_contains "$out" "cpu" "metrics"
  ctr_ task kill -s SIGKILL me
  wait_for 30 status_is me STOPPED || fail "not stopped"
  ctr_ task rm me
  ctr_ containers rm me
}

case_rm_leaves_nothing() {
  # The shim's socket is named after our containerd, namespace and id (other
  # containerds on the machine add and remove their own in the same dir).
  local sock
  sock=$(shim_socket_for_group rm1)
  run_cask --rm "$IMAGE" rm1 true
  expect_eq "$(ctr_ task ls -q)" "" "tasks after run --rm"
  expect_eq "$(ctr_ containers ls -q)" "" "containers after run --rm"
  wait_for 10 no_shim || fail "shim still running"
  expect_eq "$(qemu_count)" 0 "QEMU after run --rm"
  [ ! -e "$sock" ] || fail "shim socket $sock left in /run/containerd/s"
  [ -z "$(ls -A "$W/cask-state" 2>/dev/null)" ] || fail "cask state left: $(ls -A "$W/cask-state")"
}

case_pod() {
  run_cask -d --annotation io.kubernetes.cri.container-type=sandbox --annotation io.kubernetes.cri.sandbox-id=pod1 \
    "$IMAGE" pod1 sleep 1000
  run_cask -d --annotation io.kubernetes.cri.container-type=container --annotation io.kubernetes.cri.sandbox-id=pod1 \
    "$IMAGE" app1 sleep 1000
  expect_eq "$(task_status pod1)" RUNNING "sandbox status"
  expect_eq "$(task_status app1)" RUNNING "container status"
  expect_eq "$(qemu_count)" 1 "QEMU processes for a two-container pod"
  local b1 b2
  b1=$(ctr_ task exec --exec-id b1 pod1 cat /proc/sys/kernel/random/boot_id)
  b2=$(ctr_ task exec --exec-id b2 app1 cat /proc/sys/kernel/random/boot_id)
  expect_eq "$b2" "$b1" "boot id seen by both containers"
  expect_eq "$(cat "$W/state/io.containerd.runtime.v2.task/$NS/app1/address")" \
            "$(cat "$W/state/io.containerd.runtime.v2.task/$NS/pod1/address")" "shim address of both containers"
  ctr_ task kill -s SIGKILL app1
  wait_for 30 status_is app1 STOPPED || fail "app1 not stopped"
  ctr_ task rm app1
  ctr_ containers rm app1
  expect_eq "$(task_status pod1)" RUNNING "sandbox after deleting the container"
  expect_eq "$(ctr_ task exec --exec-id b3 pod1 echo alive)" alive "exec in the sandbox after deleting the container"
  expect_eq "$(qemu_count)" 1 "QEMU after deleting the container"
  ctr_ task kill -s SIGKILL pod1
  wait_for 30 status_is pod1 STOPPED || fail "pod1 not stopped"
  ctr_ task rm pod1
  ctr_ containers rm pod1
  wait_for 20 no_qemu || fail "QEMU still running after the pod was deleted"
}

case_pod_namespaces() {  # a pod container's namespace paths map to its sandbox's, in the guest
  local netns=/var/run/netns/cask-e2e-absent-$$
  [ ! -e "$netns" ] || fail "$netns exists on the host"
  # The sandbox's path is the pod's netns on the host: it must exist (the
  # shim joins its interfaces to the VM); an empty one gives no NIC.
  local podns=cask-e2e-podns-$$
  ip netns add "$podns"; e2e_defer ip netns del "$podns"
  run_cask -d --annotation io.kubernetes.cri.container-type=sandbox --annotation io.kubernetes.cri.sandbox-id=pod1 \
    --with-ns "network:/var/run/netns/$podns" "$IMAGE" pod1 sleep 1000
  # Host paths that mean nothing in the guest (the sandbox's host pid).
  run_cask -d --annotation io.kubernetes.cri.container-type=container --annotation io.kubernetes.cri.sandbox-id=pod1 \
    --with-ns "network:$netns" --with-ns "uts:/proc/4242/ns/uts" --with-ns "ipc:/proc/4242/ns/ipc" \
    "$IMAGE" app1 sleep 1000
  expect_eq "$(task_status app1)" RUNNING "container status"
  local t
  for t in net uts ipc; do
    expect_eq "$(ctr_ task exec --exec-id "a$t" app1 readlink /proc/self/ns/$t)" \
              "$(ctr_ task exec --exec-id "p$t" pod1 readlink /proc/self/ns/$t)" "$t namespace of the container and its sandbox"
  done
  # Its own pid and mount namespaces.
  [ "$(ctr_ task exec --exec-id apid app1 readlink /proc/self/ns/pid)" != \
    "$(ctr_ task exec --exec-id ppid pod1 readlink /proc/self/ns/pid)" ] || fail "the container shares the sandbox's pid namespace"
  # A path of a shape the host never sends is refused, not opened.
  set +e
  local out
  out=$(run_cask --annotation io.kubernetes.cri.container-type=container --annotation io.kubernetes.cri.sandbox-id=pod1 \
        --with-ns "network:/etc/passwd" "$IMAGE" app2 true 2>&1)
  local rc=$?
  set -e
  [ "$rc" -ne 0 ] || fail "a container with network namespace /etc/passwd ran"
  expect_contains "$out" "not a namespace path the host sends" "error for /etc/passwd"
  ctr_ task rm -f app2 >/dev/null 2>&1 || true
  ctr_ containers rm app2 >/dev/null 2>&1 || true
  [ ! -e "$netns" ] || fail "$netns was created on the host"
  local c
  for c in app1 pod1; do
    ctr_ task kill -s SIGKILL "$c"
    wait_for 30 status_is "$c" STOPPED || fail "$c not stopped"
    ctr_ task rm "$c"
    ctr_ containers rm "$c"
  done
  wait_for 20 no_qemu || fail "QEMU still running after the pod was deleted"
}

case_oom() {
  ctr_ events > "$W/events.log" 2>&1 &
  local ev=$!
  local rc=0
  run_cask --rm --memory-limit 33554432 "$IMAGE" oom1 sh -c 'x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done' || rc=$?
  sleep 1
  kill $ev 2>/dev/null; wait $ev 2>/dev/null || true
  expect_eq "$rc" 137 "exit status of the OOM-killed container"
  grep -q "/tasks/oom" "$W/events.log" || fail "no /tasks/oom event: $(cat "$W/events.log")"
}

case_restart() {
  run_cask -d "$IMAGE" rs sleep 1000
  stop_containerd
  start_containerd
  wait_for 30 status_is rs RUNNING ||
    fail "task not running after a containerd restart: $(ctr_ task ls)"
  expect_eq "$(ctr_ task exec --exec-id r1 rs echo reachable)" reachable "exec after restart"
  # The shim's event connection died with the old containerd: it must
  # reconnect, so the new one sees this exit.
  ctr_ events > "$W/events.log" 2>&1 &
  local ev=$!
  sleep 1
  ctr_ task kill -s SIGKILL rs
  wait_for 30 status_is rs STOPPED || fail "not stopped after restart"
  wait_for 30 grep -q "/tasks/exit" "$W/events.log" || fail "no /tasks/exit event after the restart: $(cat "$W/events.log")"
  kill $ev 2>/dev/null; wait $ev 2>/dev/null || true
  ctr_ task rm rs
  ctr_ containers rm rs
}

case_vm_death() {
  run_cask -d "$IMAGE" vd sleep 1000
  local q
  q=$(qemu_pids)
  [ -n "$q" ] || fail "no QEMU"
  kill -9 $q
  wait_for 60 status_is vd STOPPED || fail "task did not exit when QEMU died"
  ctr_ task rm vd
  ctr_ containers rm vd

  # Killing the shim: containerd notices, cleans up with `delete`, and the VM goes too.
  run_cask -d "$IMAGE" sd sleep 1000
  local shim
  shim=$(shim_pids | head -1)
  [ -n "$shim" ] || fail "no shim process"
  local sock
  sock=$(sed 's#^unix://##' "$W/state/io.containerd.runtime.v2.task/$NS/sd/address")
  # An operator's `tail -f` of the console log names the VM's directory on
  # its command line; the cleanup finds the VM by identity and spares it.
  bash -c "exec -a 'tail -f $W/cask-state/sd/console.log' sleep 1000" &
  local tailer=$!
  kill -9 "$shim"
  wait_for 60 status_is_not sd RUNNING || fail "task still running after the shim died"
  ctr_ task rm -f sd >/dev/null 2>&1 || true
  ctr_ containers rm sd
  wait_for 30 no_qemu || fail "QEMU left after the shim was killed"
  wait_for 10 test ! -e "$sock" || fail "the killed shim's socket $sock is left"
  kill -0 "$tailer" 2>/dev/null || fail "the dead-shim cleanup killed an operator's tail -f of the console log"
  kill "$tailer"; wait "$tailer" 2>/dev/null || true
}

virtiofsd_pids() { pgrep -f "virtiofsd.*$W/cask-state" || true; }
# The pod cgroup directories the VM recorded (hypervisor/vm_leftovers.h).
pod_cgroups() { sed -n 's/^cgroup //p' "$W/cask-state/$1/host-processes" 2>/dev/null; }

case_virtiofsd_death() {
  run_cask -d "$IMAGE" fd sleep 1000
  local q v cgs d p
  q=$(qemu_pids)
  v=$(virtiofsd_pids)
  [ -n "$q" ] || fail "no QEMU"
  [ -n "$v" ] || fail "no virtiofsd"
  # The pod's host cgroup holds QEMU and every virtiofsd process.
  cgs=$(pod_cgroups fd)
  [ -n "$cgs" ] || fail "no pod cgroup recorded in $W/cask-state/fd/host-processes"
  for d in $cgs; do
    [ -d "$d" ] || fail "pod cgroup $d does not exist"
    for p in $q $v; do
      grep -qx "$p" "$d/cgroup.procs" || fail "process $p ($(tr '\0' ' ' < /proc/$p/cmdline | cut -c1-60)) is not in $d"
    done
    log "pod cgroup $d: $(tr '\n' ' ' < "$d/cgroup.procs")"
  done
  case "$cgs" in *memory*) log "memory limit $(cat "$(grep memory <<<"$cgs")/memory.limit_in_bytes")";; esac
  # QEMU dropped root where the host has nobody (hypervisor.runas = auto).
  if getent passwd nobody >/dev/null; then
    expect_eq "$(ps -o user= -p "$q" | tr -d ' ')" nobody "QEMU's user"
  fi
  kill -9 $v
  wait_for 60 status_is fd STOPPED || fail "task did not exit when virtiofsd died: $(task_status fd)"
  ctr_ task rm fd
  ctr_ containers rm fd
  wait_for 30 no_qemu || fail "QEMU left after virtiofsd died"
  [ -z "$(virtiofsd_pids)" ] || fail "virtiofsd left: $(virtiofsd_pids)"
  for d in $cgs; do wait_for 10 test ! -d "$d" || fail "pod cgroup $d left after delete"; done
  [ -z "$(ls -A "$W/cask-state" 2>/dev/null)" ] || fail "cask state left: $(ls -A "$W/cask-state")"
}

expect_create_fails() {  # expect_create_fails WHAT NEEDLE ctr-run-args...
  local what=$1 needle=$2; shift 2
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" -ne 0 ] || fail "$what: ctr run succeeded"
  log "$what: $out"
  expect_contains "$out" "$needle" "$what error message"
  expect_eq "$(qemu_count)" 0 "QEMU left after $what"
  local cid
  for cid in $(ctr_ containers ls -q); do ctr_ containers rm "$cid" >/dev/null 2>&1 || true; done
}

case_bad_input() {
  expect_create_fails "missing rootfs" "$W/no-such-rootfs" \
    ctr_ run --runtime "$RUNTIME" --runtime-config-path "$W/cask.toml" --rootfs "$W/no-such-rootfs" b1 /bin/true

  mkdir -p "$W/rootfs-ok"
  cat > "$W/bad-spec.json" <<JSON
{"ociVersion":"1.0.2","process":{"args":["/bin/true"],"cwd":"relative/dir","user":{"uid":0,"gid":0}},
 "root":{"path":"$W/rootfs-ok"},"linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"network"},{"type":"ipc"}]}}
JSON
  expect_create_fails "invalid spec" "process.cwd" \
    ctr_ run --runtime "$RUNTIME" --runtime-config-path "$W/cask.toml" --config "$W/bad-spec.json" b2

  write_cask_config "$W/unknown-key.toml" "bogus_key = 1"
  expect_create_fails "unknown config key" "bogus_key" \
    ctr_ run --runtime "$RUNTIME" --runtime-config-path "$W/unknown-key.toml" "$IMAGE" b3 true

  GUEST_DIR=/nonexistent/guest write_cask_config "$W/no-kernel.toml"
  expect_create_fails "missing kernel" "/nonexistent/guest/vmlinux" \
    ctr_ run --runtime "$RUNTIME" --runtime-config-path "$W/no-kernel.toml" "$IMAGE" b4 true

  [ -z "$(ls -A "$W/cask-state" 2>/dev/null)" ] || fail "cask state left after failed creates: $(ls -A "$W/cask-state")"
}

# The pod's virtio-fs share as a hostile root container sees it: it mounts
# the share itself (tag "cask") and tries to change its top and the
# directories between the containers' binds. All of that must fail (the
# export is read-only); only the container's own rootfs is writable.
case_share_readonly() {
  run_cask -d --privileged "$IMAGE" sr1 sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
  local out
  out=$(ctr_ task exec --exec-id a1 sr1 sh -c '
    mkdir -p /tmp/share && mount -t virtiofs cask /tmp/share || { echo MOUNT-FAILED; exit 0; }
    d=$(ls /tmp/share | head -1)
    echo "container dir: $d"
    try() { if "$@" 2>/dev/null; then echo "ALLOWED: $*"; else echo "refused: $*"; fi; }
    try mkdir /tmp/share/evil-dir
    try touch /tmp/share/evil-file
    try ln -s /etc /tmp/share/evil-link
    try mv /tmp/share/$d /tmp/share/evil-moved
    try ln -s /etc /tmp/share/$d/evil-link
    try mkdir /tmp/share/$d/mounts
    try rmdir /tmp/share/$d/rootfs
    try mv /tmp/share/$d/rootfs /tmp/share/$d/evil-rootfs
    try rm -rf /tmp/share/$d
    echo through-share > /tmp/share/$d/rootfs/tmp/written-through-share && echo "share rootfs writable"
    echo own > /tmp/own-file && echo "own rootfs writable"
    cat /tmp/written-through-share
    umount /tmp/share
  ' 2>&1)
  log "$out"
  grep -q MOUNT-FAILED <<<"$out" && fail "the container could not mount the share (tag cask): $out"
  grep -q "ALLOWED" <<<"$out" && fail "the guest changed the top of the share: $(grep ALLOWED <<<"$out")"
  expect_eq "$(grep -c '^refused: ' <<<"$out")" 9 "refused operations"
  expect_contains "$out" "share rootfs writable" "the container's rootfs through the share"
  expect_contains "$out" "own rootfs writable" "the container's own rootfs"
  expect_contains "$out" "through-share" "the write through the share reached the rootfs"
  # Nothing of the attempts reached the host's view of the share.
  local sb
  for sb in "$W"/cask-state/*/; do
    [ -z "$(find "$sb/mounts" "$sb/shared" -maxdepth 2 -name 'evil*' 2>/dev/null)" ] ||
      fail "the guest created entries in the share: $(find "$sb/mounts" "$sb/shared" -maxdepth 2 -name 'evil*')"
  done
  ctr_ task kill sr1
  wait_for 60 status_is sr1 STOPPED || fail "sr1 did not stop"
  ctr_ task rm sr1
  ctr_ containers rm sr1
  wait_for 30 no_qemu || fail "QEMU still running after rm"
  # A spec mount of the share's tag is refused before anything starts.
  expect_create_fails "virtiofs mount of the share's tag" 'virtio-fs tag "cask"' \
    ctr_ run --runtime "$RUNTIME" --runtime-config-path "$W/cask.toml" \
      --mount type=virtiofs,src=cask,dst=/mnt,options=rw "$IMAGE" sr2 true
}

# Bytes of regular files directly in the pod state dirs (logs, records,
# sockets): what a guest could grow on the host's /run. The rootfs and
# volume binds below mounts/ and shared/ are the container's own storage.
state_bytes() {
  find "$W/cask-state" -maxdepth 2 -type f -printf '%s\n' 2>/dev/null | awk '{s+=$1} END {print s+0}'
}
shim_rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# A root container floods the guest console (ttyS0, the device QEMU's
# -serial is wired to) with up to 256 MiB: the host keeps a bounded tail,
# the shim's memory stays flat, the writer keeps making progress (its
# output reaches the host), and the pod still answers exec. An emulated
# UART under TCG moves a few KiB/s to MiB/s, so the flood runs for
# CASK_E2E_CONSOLE_SECS (default 30 s) and is then stopped.
case_console_flood() {
  local mib=${CASK_E2E_CONSOLE_MIB:-256} secs=${CASK_E2E_CONSOLE_SECS:-30}
  run_cask -d --privileged "$IMAGE" cf1 sh -c 'trap "exit 0" TERM; while :; do sleep 1; done'
  local shim rss0
  shim=$(shim_pids | head -1)
  [ -n "$shim" ] || fail "no shim"
  rss0=$(shim_rss_kib "$shim")
  ctr_ task exec --exec-id flood cf1 sh -c "
    # /dev is a tmpfs: device nodes cannot be made on the rootfs, which is
    # on the virtio-fs share (virtiofsd runs without CAP_MKNOD).
    [ -c /dev/ttyS0 ] || mknod /dev/ttyS0 c 4 64 || exit 90
    head -c $((mib * 1024 * 1024)) /dev/zero | tr '\\0' 'x' | fold -w 200 > /dev/ttyS0
    echo FLOOD-DONE" > "$W/flood.out" 2>&1 &
  local flood=$! max_state=0 max_rss=0 b r t0=$SECONDS con first=""
  while kill -0 $flood 2>/dev/null && [ $((SECONDS - t0)) -lt "$secs" ]; do
    b=$(state_bytes); r=$(shim_rss_kib "$shim")
    [ "$b" -gt "$max_state" ] && max_state=$b
    [ "$r" -gt "$max_rss" ] && max_rss=$r
    con=$(ls "$W"/cask-state/*/console.log 2>/dev/null | head -1)
    [ -z "$first" ] && [ -n "$con" ] && grep -q xxxxxxxxxx "$con" && first=$((SECONDS - t0))
    sleep 2
  done
  log "console flood: ${secs}s window, first flood bytes on the host after ${first:-never} s, state dir max $max_state bytes, shim RSS $rss0 -> max $max_rss KiB"
  [ -n "$first" ] || fail "no flood output reached the host's console log"
  [ "$max_state" -lt $((4 * 1024 * 1024)) ] || fail "pod state dir grew to $max_state bytes (bound 4 MiB)"
  [ "$max_rss" -lt $((rss0 + 32 * 1024)) ] || fail "shim RSS grew from $rss0 to $max_rss KiB"
  tail -c 1000 "$con" | grep xxxxxxxxxx >/dev/null || fail "console.log does not end with the flood"
  expect_eq "$(ctr_ task exec --exec-id during cf1 echo alive)" alive "exec during the flood"
  ctr_ task kill -s SIGKILL cf1
  wait $flood 2>/dev/null || true
  wait_for 60 status_is cf1 STOPPED || fail "cf1 did not stop"
  ctr_ task rm cf1
  ctr_ containers rm cf1
  wait_for 30 no_qemu || fail "QEMU still running after rm"
}

# The pod network, Kata's way, in namespaces this test makes: a "pod"
# netns P (as CNI leaves it: eth0 10.231.$n.2/24, default route via .1) and
# a "peer" netns Q holding the other veth end (10.231.$n.1/24). The host's
# own interfaces, routes and iptables are never touched.
net_setup() {  # net_setup SUFFIX -> sets NETP, NETQ
  NETP=cask-net-p-$1-$$ NETQ=cask-net-q-$1-$$
  ip netns add "$NETP"; e2e_defer ip netns del "$NETP"
  ip netns add "$NETQ"; e2e_defer ip netns del "$NETQ"
  ip -n "$NETP" link set lo up; ip -n "$NETQ" link set lo up
  ip -n "$NETP" link add eth0 type veth peer name veth0 netns "$NETQ"
  ip -n "$NETP" link set eth0 mtu 1400
  ip -n "$NETQ" link set veth0 mtu 1400
  ip -n "$NETP" addr add 10.231.0.2/24 dev eth0; ip -n "$NETP" link set eth0 up
  ip -n "$NETQ" addr add 10.231.0.1/24 dev veth0; ip -n "$NETQ" link set veth0 up
  ip -n "$NETP" route add default via 10.231.0.1
}

net_diag() {  # what the datapath saw, for a failure message
  { ip -n "$NETP" -s link show; tc -s -n "$NETP" filter show dev eth0 ingress
    tc -s -n "$NETP" filter show dev tap0_cask ingress
    ctr_ task exec --exec-id diag1 "$1" ip -s link show eth0; ctr_ task exec --exec-id diag2 "$1" ip neigh
  } 2>&1 | sed 's/^/  diag: /' >&2
}

net_leftovers() {  # TAPs or ingress qdiscs left in the pod netns
  ip -n "$NETP" -o link show type tun 2>/dev/null
  tc -n "$NETP" qdisc show 2>/dev/null | grep ingress
}

case_pod_network() {
  net_setup pn
  local mac_host
  mac_host=$(ip -n "$NETP" -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
  run_cask -d --annotation io.kubernetes.cri.container-type=sandbox --annotation io.kubernetes.cri.sandbox-id=pn1 \
    --with-ns "network:/var/run/netns/$NETP" "$IMAGE" pn1 \
    sh -c 'mkdir -p /www && echo hello-from-guest > /www/index.html && exec httpd -f -p 8080 -h /www'
  wait_for 60 status_is pn1 RUNNING || fail "pn1 not running"
  # The TAP and both redirects exist in the pod netns.
  ip -n "$NETP" -o link show tap0_cask >/dev/null || fail "no tap0_cask in the pod netns"
  tc -n "$NETP" filter show dev eth0 ingress | grep "Egress Redirect to device tap0_cask" >/dev/null ||
    fail "no eth0 -> tap0_cask redirect: $(tc -n "$NETP" filter show dev eth0 ingress)"
  tc -n "$NETP" filter show dev tap0_cask ingress | grep "Egress Redirect to device eth0" >/dev/null ||
    fail "no tap0_cask -> eth0 redirect"
  # The guest holds the pod's address and the veth's MAC and MTU.
  local gaddr
  gaddr=$(ctr_ task exec --exec-id a1 pn1 ip -o addr show eth0)
  expect_contains "$gaddr" "10.231.0.2/24" "guest eth0 address"
  expect_contains "$(ctr_ task exec --exec-id a2 pn1 ip -o link show eth0)" "$mac_host" "guest eth0 MAC"
  expect_contains "$(ctr_ task exec --exec-id a3 pn1 ip -o link show eth0)" "mtu 1400" "guest eth0 MTU"
  expect_contains "$(ctr_ task exec --exec-id a4 pn1 ip route)" "default via 10.231.0.1" "guest default route"
  # Peer -> guest: ping and TCP (the guest's httpd).
  ip netns exec "$NETQ" busybox ping -c 2 -W 10 10.231.0.2 >/dev/null || { net_diag pn1; fail "peer cannot ping the guest"; }
  local body
  body=$(ip netns exec "$NETQ" curl -s --max-time 30 http://10.231.0.2:8080/index.html) || true
  expect_eq "$body" "hello-from-guest" "HTTP from the peer to the guest"
  # Port forwarding as containerd does it: dial 127.0.0.1:PORT inside the
  # pod's netns on the host.
  pf_fetch() { nsenter --net="/var/run/netns/$NETP" curl -s --max-time 10 http://127.0.0.1:8080/index.html; }
  wait_for 30 pf_fetch >/dev/null || true
  expect_eq "$(pf_fetch)" "hello-from-guest" "port-forward: 127.0.0.1:8080 in the pod netns on the host"
  # Guest -> peer: ping and TCP (a server in the peer netns).
  mkdir -p "$W/peer-www"; echo hello-from-peer > "$W/peer-www/index.html"
  ip netns exec "$NETQ" busybox httpd -f -p 10.231.0.1:8081 -h "$W/peer-www" &
  local srv=$!
  ctr_ task exec --exec-id p1 pn1 ping -c 2 -W 10 10.231.0.1 >/dev/null || fail "guest cannot ping the peer"
  body=$(ctr_ task exec --exec-id w1 pn1 sh -c "printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc 10.231.0.1 8081" | tr -d '\r') || true
  expect_contains "$body" "hello-from-peer" "HTTP from the guest to the peer"
  kill "$srv" 2>/dev/null; wait "$srv" 2>/dev/null || true
  ctr_ task kill -s SIGKILL pn1
  wait_for 30 status_is pn1 STOPPED || fail "pn1 not stopped"
  ctr_ task rm pn1
  ctr_ containers rm pn1
  wait_for 30 no_qemu || fail "QEMU still running after rm"
  wait_for 20 test -z "$(net_leftovers)" || fail "left in the pod netns: $(net_leftovers)"
  # The veth stays as CNI made it.
  ip -n "$NETP" -o addr show eth0 | grep "10.231.0.2/24" >/dev/null || fail "the pod veth lost its address"
}

case_host_network_refused() {
  set +e
  local out rc
  out=$(run_cask --net-host "$IMAGE" hn1 true 2>&1); rc=$?
  set -e
  [ "$rc" -ne 0 ] || fail "a container asking for the host network ran"
  expect_contains "$out" "hostNetwork" "error for the host network"
  ctr_ task rm -f hn1 >/dev/null 2>&1 || true
  ctr_ containers rm hn1 >/dev/null 2>&1 || true
  expect_eq "$(qemu_count)" 0 "QEMU after a refused host-network pod"
  [ -z "$(ls -A "$W/cask-state" 2>/dev/null)" ] || fail "cask state left: $(ls -A "$W/cask-state")"
}

# 20 MB of small writes (`seq | cat`: one pipe-sized write at a time, the
# pattern that used to collapse) through `ctr task exec` arrive complete and
# in order: the checksum is compared with the same output made on the host.
case_exec_output() {
  local lines=${CASK_E2E_OUTPUT_LINES:-3000000} want got rc=0
  run_cask -d "$IMAGE" eo sleep 100000
  want=$(seq 1 "$lines" | sha256sum | cut -d' ' -f1)
  timeout 900 ctr --address "$CONTAINERD_ADDRESS" -n "$NS" task exec --exec-id small eo \
    sh -c "seq 1 $lines | cat" < /dev/null > "$W/exec_output" || rc=$?
  expect_eq "$rc" 0 "exit status of the exec (or of its timeout)"
  log "exec output: $(wc -c < "$W/exec_output") bytes (expected $(seq 1 "$lines" | wc -c))"
  got=$(sha256sum < "$W/exec_output" | cut -d' ' -f1)
  rm -f "$W/exec_output"
  expect_eq "$got" "$want" "sha256 of $lines lines of seq | cat through ctr task exec"
  # Bulk: one large write stream, counted.
  got=$(ctr_ task exec --exec-id bulk eo head -c 16777216 /dev/zero < /dev/null | wc -c)
  expect_eq "$got" 16777216 "bytes of head -c 16M /dev/zero through ctr task exec"
  ctr_ task kill -s SIGKILL eo
  wait_for 30 status_is eo STOPPED || fail "eo did not stop"
  ctr_ task rm eo
  ctr_ containers rm eo
}

# --- pod semantics and containerd behaviours (issue: Kubernetes pods) ------

# ctr_exec ID CMD...: a one-off exec with a unique exec id (also from
# inside a command substitution).
ctr_exec() { local id=$1; shift; ctr_ task exec --exec-id "x$RANDOM$RANDOM" "$id" "$@" | tr -d '\r'; }

# Stops and removes tasks and containers, sandboxes last: rm_tasks ID...
rm_tasks() {
  local c
  for c in "$@"; do
    ctr_ task kill -s SIGKILL "$c" 2>/dev/null || true
    wait_for 60 status_is_not "$c" RUNNING || fail "$c did not stop"
    ctr_ task rm "$c" >/dev/null 2>&1 || true
    ctr_ containers rm "$c" >/dev/null 2>&1 || true
  done
}

# spec_file OUT ARGS-JSON [JQ-FILTER]: ctr's default spec over a busybox
# rootfs in $W/rootfs, with process.args and an optional jq edit.
spec_file() {
  local out=$1 args=$2 edit=${3:-.}
  [ -d "$W/rootfs/bin" ] || "$TESTS_DIR/e2e/make-rootfs.sh" "$W/rootfs" >/dev/null
  ctr oci spec | jq --arg root "$W/rootfs" --argjson args "$args" \
    '.root.path = $root | .root.readonly = false | .process.args = $args | .process.terminal = false' | jq "$edit" > "$out"
}

case_exec_not_found() {  # a missing program fails Create (not Start), as with runc, and leaves no VM
  expect_create_fails "missing program by path" 'executable "/no/such/program"' \
    run_cask "$IMAGE" nf1 /no/such/program
  expect_create_fails "missing program in PATH" 'executable "nosuchcmd" in $PATH' \
    run_cask "$IMAGE" nf2 nosuchcmd
  expect_eq "$(virtiofsd_pids | grep -c . || true)" 0 "virtiofsd left after the failed creates"
  [ -z "$(ls -A "$W/cask-state" 2>/dev/null)" ] || fail "cask state left: $(ls -A "$W/cask-state")"
  # In a pod: the container fails, the pod VM and its sandbox stay.
  run_cask -d $(pod_args pnf sandbox) "$IMAGE" pnf sleep 1000
  local out rc=0
  out=$(run_cask $(pod_args pnf container) "$IMAGE" pnf-app nosuchcmd 2>&1) || rc=$?
  [ "$rc" -ne 0 ] || fail "a pod container with a missing program was created"
  expect_contains "$out" 'executable "nosuchcmd"' "error of the pod container"
  expect_eq "$(qemu_count)" 1 "QEMU processes of the pod after the failed container"
  expect_eq "$(ctr_exec pnf echo alive)" alive "exec in the sandbox after the failed container"
  ctr_ containers rm pnf-app >/dev/null 2>&1 || true
  rm_tasks pnf
  wait_for 30 no_qemu || fail "QEMU still running after the pod was deleted"
}

case_runc_options() {  # runc's CreateOptions (ctr run --no-pivot sends them to any runtime) are accepted
  # --no-pivot puts runc's CreateOptions in the task options, which replace
  # the runtime options and with them the configuration path: the shim falls
  # back to the default configuration, so a machine without it fails later,
  # at the default kernel, which proves the options were taken.
  if [ -e /etc/cask/configuration.toml ] || [ -e /usr/share/cask/vmlinux ]; then
    log "an installed cask configuration or kernel exists: only checking that the options are not refused"
  fi
  local out rc=0 had_state=0
  [ -d /run/cask ] && had_state=1  # the default state_dir
  out=$(ctr_ run --runtime "$RUNTIME" --no-pivot --rm "$IMAGE" ro1 true 2>&1) || rc=$?
  [ "$had_state" = 1 ] || rmdir /run/cask 2>/dev/null || true
  log "ctr run --no-pivot: rc=$rc: $out"
  grep -q "unsupported runtime options" <<<"$out" && fail "runc's CreateOptions were refused: $out"
  if [ ! -e /etc/cask/configuration.toml ] && [ ! -e /usr/share/cask/vmlinux ]; then
    expect_contains "$out" "/usr/share/cask/vmlinux" "the create got as far as the default kernel"
  fi
  ctr_ containers rm ro1 >/dev/null 2>&1 || true
  expect_eq "$(qemu_count)" 0 "QEMU left"
}

case_clock() {  # the guest clock is the host's; exit times are stamped by the host
  run_cask -d "$IMAGE" ck sleep 1000
  local g h d
  g=$(ctr_exec ck date +%s)
  h=$(date +%s)
  d=$((g > h ? g - h : h - g))
  log "guest clock $g, host clock $h"
  [ "$d" -le 5 ] || fail "the guest clock is ${d}s off the host's"
  rm_tasks ck
  # A container that sets the guest clock to 2001 and exits: containerd's
  # exit time is still the host's.
  ctr_ events > "$W/events.log" 2>&1 &
  local ev=$!
  run_cask --rm --privileged "$IMAGE" ck2 sh -c 'date -s "2001-01-01 00:00:00" >/dev/null; date +%Y'
  sleep 1
  kill $ev 2>/dev/null; wait $ev 2>/dev/null || true
  local exit_line
  exit_line=$(grep "/tasks/exit" "$W/events.log" | grep ck2 | head -1)
  log "exit event: $exit_line"
  [ -n "$exit_line" ] || fail "no /tasks/exit event for ck2: $(cat "$W/events.log")"
  grep -q "2001" <<<"$exit_line" && fail "the exit was stamped with the guest's clock: $exit_line"
  expect_contains "$exit_line" "$(date +%Y)" "year of the exit time"
  wait_for 30 no_qemu || fail "QEMU still running"
}

case_pod_volumes() {  # volumes: shared rw between containers, read-only recursively, missing source refused
  mkdir -p "$W/vol" "$W/hp/sub"
  echo host > "$W/hp/file"
  mount -t tmpfs -o size=1m tmpfs "$W/hp/sub"
  e2e_defer umount -l "$W/hp/sub"
  echo sub > "$W/hp/sub/f"
  run_cask -d $(pod_args pv sandbox) --mount "type=bind,src=$W/vol,dst=/vol,options=rbind:rw" "$IMAGE" pv sleep 1000
  run_cask -d $(pod_args pv container) --mount "type=bind,src=$W/vol,dst=/vol,options=rbind:rw" \
    --mount "type=bind,src=$W/hp,dst=/hp,options=rbind:ro" "$IMAGE" pv-app sleep 1000
  ctr_exec pv sh -c 'echo from-sandbox > /vol/x'
  expect_eq "$(ctr_exec pv-app cat /vol/x)" from-sandbox "emptyDir-like volume written by one container, read by the other"
  expect_eq "$(cat "$W/vol/x")" from-sandbox "the volume on the host"
  local out
  out=$(ctr_exec pv-app sh -c 'echo a > /hp/file 2>/dev/null && echo WROTE-TOP; echo b > /hp/sub/f 2>/dev/null && echo WROTE-SUB;
                             touch /hp/sub/new 2>/dev/null && echo WROTE-NEW; cat /hp/file /hp/sub/f')
  log "read-only hostPath: $out"
  grep -q WROTE <<<"$out" && fail "a read-only hostPath was written: $out"
  expect_eq "$out" $'host\nsub' "read-only hostPath and its sub-mount as the host has them"
  expect_eq "$(cat "$W/hp/sub/f")" sub "the host's sub-mount"
  # A volume whose host path does not exist: a clear error, the pod unharmed.
  local rc=0
  out=$(run_cask $(pod_args pv container) --mount "type=bind,src=$W/no-such-dir,dst=/m,options=rbind:ro" \
    "$IMAGE" pv-bad true 2>&1) || rc=$?
  [ "$rc" -ne 0 ] || fail "a volume with a missing host path was accepted"
  expect_contains "$out" "$W/no-such-dir does not exist" "error naming the missing host path"
  ctr_ containers rm pv-bad >/dev/null 2>&1 || true
  expect_eq "$(qemu_count)" 1 "QEMU processes of the pod"
  [ -z "$(find "$W"/cask-state/*/mounts -maxdepth 1 -name pv-bad 2>/dev/null)" ] || fail "share of pv-bad left"
  rm_tasks pv-app pv
  wait_for 30 no_qemu || fail "QEMU still running after the pod was deleted"
}

case_pod_shm() {  # /dev/shm: one tmpfs per pod in the guest, shared by its containers, not by another pod
  mkdir -p "$W/shm-host"  # stands for CRI's sandbox shm directory on the host
  local shm_ro="type=bind,src=$W/shm-host,dst=/dev/shm,options=rbind:ro"
  local shm_rw="type=bind,src=$W/shm-host,dst=/dev/shm,options=rbind:rw"
  run_cask -d $(pod_args ps1 sandbox) --mount "$shm_ro" "$IMAGE" ps1 sleep 1000
  run_cask -d $(pod_args ps1 container) --mount "$shm_rw" "$IMAGE" ps1-app sleep 1000
  run_cask -d $(pod_args ps1 container) --mount "$shm_rw" "$IMAGE" ps1-app2 sleep 1000
  ctr_exec ps1-app sh -c 'echo pod1 > /dev/shm/marker'
  expect_eq "$(ctr_exec ps1-app2 cat /dev/shm/marker)" pod1 "/dev/shm shared by the pod's containers"
  expect_eq "$(ctr_exec ps1 cat /dev/shm/marker)" pod1 "/dev/shm of the pod's sandbox"
  [ ! -e "$W/shm-host/marker" ] || fail "the pod's /dev/shm is the host's directory"
  local m
  m=$(ctr_exec ps1-app sh -c "grep ' /dev/shm ' /proc/mounts")
  log "/dev/shm in the container: $m"
  expect_contains "$m" "tmpfs" "/dev/shm file system"
  expect_contains "$m" "size=65536k" "/dev/shm size"
  run_cask -d $(pod_args ps2 sandbox) --mount "$shm_ro" "$IMAGE" ps2 sleep 1000
  expect_eq "$(ctr_exec ps2 ls -A /dev/shm)" "" "/dev/shm of another pod"
  expect_eq "$(qemu_count)" 2 "QEMU processes for two pods"
  rm_tasks ps1-app ps1-app2 ps1 ps2
  wait_for 30 no_qemu || fail "QEMU still running after the pods were deleted"
}

case_sysctl() {  # namespaced sysctls apply in the container's namespaces; global ones are refused
  spec_file "$W/sysctl.json" '["sh","-c","cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax"]' \
    '.linux.sysctl = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "12345678"}'
  local out
  out=$(run_cask --rm --config "$W/sysctl.json" sy1 | tr -d '\r')
  expect_eq "$out" $'1\n12345678' "sysctls seen by the container"
  spec_file "$W/sysctl-bad.json" '["true"]' '.linux.sysctl = {"kernel.panic": "1"}'
  expect_create_fails "global sysctl" "sysctl kernel.panic: not a namespaced sysctl" \
    run_cask --config "$W/sysctl-bad.json" sy2
}

case_update_oom() {  # Update reaches the guest cgroup; resize without a tty is a no-op; OOM is published before the exit
  [ -x "${SHIM_CALL:-}" ] || fail "SHIM_CALL (the shim_call test tool) is not set"
  # ctr's spec mounts no cgroup file system: ask for one (read-only).
  run_cask -d --memory-limit 67108864 --mount "type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid:noexec:nodev" \
    "$IMAGE" up1 sleep 1000
  local cg
  cg=$(ctr_exec up1 sh -c 'd=/sys/fs/cgroup; [ -f $d/memory.max ] || d=/sys/fs/cgroup$(sed -n "s/^0:://p" /proc/self/cgroup); echo $d')
  expect_eq "$(ctr_exec up1 cat "$cg/memory.max")" 67108864 "memory.max before the update"
  # What CRI's UpdateContainerResources sends (ctr has no update command).
  "$SHIM_CALL" "$(shim_socket up1)" update up1 '{"memory":{"limit":100663296},"cpu":{"quota":50000,"period":100000}}' ||
    fail "Update failed"
  expect_eq "$(ctr_exec up1 cat "$cg/memory.max")" 100663296 "memory.max after the update"
  expect_eq "$(ctr_exec up1 cat "$cg/cpu.max")" "50000 100000" "cpu.max after the update"
  # ResizePty of a process without a terminal: a no-op, as with runc.
  "$SHIM_CALL" "$(shim_socket up1)" resize up1 "" 120 40 || fail "ResizePty without a terminal was refused"
  rm_tasks up1
  ctr_ events > "$W/events.log" 2>&1 &
  local ev=$! rc=0
  run_cask --rm --memory-limit 33554432 "$IMAGE" oom2 sh -c 'x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done' || rc=$?
  sleep 1
  kill $ev 2>/dev/null; wait $ev 2>/dev/null || true
  expect_eq "$rc" 137 "exit status of the OOM-killed container"
  local oom_at exit_at
  oom_at=$(grep -n "/tasks/oom" "$W/events.log" | grep oom2 | head -1 | cut -d: -f1)
  exit_at=$(grep -n "/tasks/exit" "$W/events.log" | grep oom2 | head -1 | cut -d: -f1)
  [ -n "$oom_at" ] || fail "no /tasks/oom event for oom2: $(cat "$W/events.log")"
  [ -n "$exit_at" ] || fail "no /tasks/exit event for oom2"
  [ "$oom_at" -lt "$exit_at" ] || fail "TaskOOM (line $oom_at) after TaskExit (line $exit_at): $(cat "$W/events.log")"
  wait_for 30 no_qemu || fail "QEMU still running"
}

case_output_before_exit() {  # output written just before the exit reaches the FIFO, for inits and execs
  local out i
  for i in 1 2 3; do
    out=$(run_cask --rm "$IMAGE" ob$i sh -c 'seq 1 3000; printf last-line-without-newline; printf err-last >&2' 2>&1)
    expect_eq "$(grep -c . <<<"$out")" 3001 "lines of run $i"
    expect_contains "$out" "last-line-without-newline" "last stdout bytes of run $i"
    expect_contains "$out" "err-last" "last stderr bytes of run $i"
  done
  run_cask -d "$IMAGE" ob sleep 1000
  for i in $(seq 1 20); do
    expect_eq "$(ctr_exec ob sh -c "echo exec-$i; exit 3" || true)" "exec-$i" "output of exec $i that exits at once"
  done
  rm_tasks ob
  wait_for 30 no_qemu || fail "QEMU still running"
}

e2e_main "$@"
