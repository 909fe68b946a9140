#!/usr/bin/env bash
# End-to-end tests of `cask-runtime run` under QEMU (TCG): one case per
# invocation, `runtime_e2e.sh CASE`. Every case boots real VMs with the
# build-tree guest assets, checks what the issue asks, and then checks that
# nothing is left behind (tests/lib/e2e.sh: assert_clean, and again on exit).
# Exit status: 0 pass, 1 fail, 77 skip (no guest assets / not root).
E2E_KIND=runtime E2E_TMP_PREFIX=cask-e2e
source "$(dirname "$0")/../lib/e2e.sh"

case_uname() {  # the guest kernel, not the host's
  run -- uname -r
  expect_rc 0
  local guest host
  guest=$(tr -d '\r\n' < "$OUT")
  host=$(uname -r)
  [ -n "$guest" ] || fail "empty uname -r"
  [ "$guest" != "$host" ] || fail "uname -r in the container is the host's ($host)"
  if [ -f "$GUEST_DIR/kernel-release" ]; then
    [ "$guest" = "$(cat "$GUEST_DIR/kernel-release")" ] || fail "uname -r '$guest' is not the guest kernel $(cat "$GUEST_DIR/kernel-release")"
  fi
  assert_clean
}

case_exit_code() {
  run -- sh -c 'exit 7'
  expect_rc 7
  run -- true
  expect_rc 0
  run -- false
  expect_rc 1
  assert_clean
}

# The container's init killed by SIGKILL -> 128 + 9. Inside its own pid
# namespace a process cannot SIGKILL its init (the kernel ignores it), so
# this case uses a bundle whose spec has no pid namespace: there
# `kill -9 $$` really kills the init process.
case_killed() {
  mkdir -p "$W/bundle"
  cat > "$W/bundle/config.json" <<JSON
{
  "ociVersion": "1.0.2",
  "process": {"args": ["sh", "-c", "kill -9 \$\$; echo survived"], "cwd": "/",
              "env": ["PATH=/bin:/sbin:/usr/bin:/usr/sbin"]},
  "root": {"path": "$ROOTFS"},
  "hostname": "nopidns",
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
  "linux": {"namespaces": [{"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]}
}
JSON
  rt run --config "$CONF" --bundle "$W/bundle"
  expect_rc 137
  [ ! -s "$OUT" ] || fail "the process survived SIGKILL"
  assert_clean
}

case_missing_command() {
  run -- /bin/no-such-command arg
  expect_rc 127
  expect_err_has "no-such-command"
  expect_err_has "exec"
  assert_clean
}

case_stdin() {
  echo hi > "$W/input"
  RT_STDIN=$W/input run -i -- cat
  expect_rc 0
  expect_out "hi"
  # A larger input arrives intact, and EOF reaches the container.
  seq 1 20000 > "$W/input"
  RT_STDIN=$W/input run -i -- sh -c 'cat > /tmp/in; wc -l < /tmp/in; md5sum < /tmp/in; rm /tmp/in'
  expect_rc 0
  local want
  want=$(md5sum < "$W/input" | cut -d' ' -f1)
  expect_out_has "20000"
  expect_out_has "$want"
  # Without -i the container's stdin is empty.
  RT_STDIN=$W/input run -- sh -c 'wc -c'
  expect_rc 0
  expect_out "0"
  assert_clean
}

case_stdout_stderr() {
  run -- sh -c 'echo to-out; echo to-err >&2; exit 3'
  expect_rc 3
  expect_out "to-out"
  grep -qx "to-err" "$ERR" || fail "stderr of the container missing"
  # A lot of output is delivered completely before the exit is reported.
  run -- sh -c 'seq 1 50000'
  expect_rc 0
  [ "$(wc -l < "$OUT")" -eq 50000 ] || fail "expected 50000 lines, got $(wc -l < "$OUT")"
  [ "$(tail -1 "$OUT")" = 50000 ] || fail "last line is $(tail -1 "$OUT")"
  assert_clean
}

case_tty() {
  command -v script >/dev/null || { echo "SKIP: script(1) missing" >&2; exit 77; }
  # script(1) gives cask-runtime a pty (30x100) as its terminal; the
  # container gets a pty of its own in the guest, of the same size.
  LAST_CMD="script -qec 'cask-runtime run -t ...' /dev/null"
  set +e
  timeout -k 10 300 script -qec "stty rows 30 cols 100; $CASK_RUNTIME run --config $CONF --rootfs $ROOTFS -t -- sh -c 'test -t 0 && test -t 1 && echo yes-tty; tty; stty size; echo ok > /dev/tty && echo ctty-ok; exit 4'" /dev/null \
    > "$OUT" 2> "$ERR" < /dev/null
  RC=$?
  set -e
  log "$LAST_CMD -> $RC"
  expect_rc 4
  expect_out_has "yes-tty"
  # As runc: the pty is of the container's own devpts (so tty(1) names a
  # /dev/pts device it can see, not /dev/console), it is the controlling
  # terminal (/dev/tty opens), has the host's size, and nothing precedes
  # the output (no stray NUL).
  tr -d '\r' < "$OUT" | grep -E '^/dev/pts/[0-9]+$' >/dev/null || fail "tty(1) names no /dev/pts device"
  tr -d '\r' < "$OUT" | grep -x "30 100" >/dev/null || fail "stty size is not 30 100"
  expect_out_has "ctty-ok"
  [ "$(tr -cd '\000' < "$OUT" | wc -c)" -eq 0 ] || fail "NUL bytes in the terminal output"
  [ "$(head -c 6 "$OUT")" = "yes-tt" ] || fail "the output does not start with the container's first line"
  # -t -i: an interactive shell reads what is typed on our terminal.
  LAST_CMD="script -qec 'cask-runtime run -t -i -- sh' (typing a command)"
  set +e
  printf 'echo interactive-$((6*7))\nexit 3\n' |
    timeout -k 10 300 script -qec "$CASK_RUNTIME run --config $CONF --rootfs $ROOTFS -t -i -- sh" /dev/null > "$OUT" 2> "$ERR"
  RC=$?
  set -e
  log "$LAST_CMD -> $RC"
  expect_rc 3
  tr -d '\r' < "$OUT" | grep -x "interactive-42" >/dev/null || fail "the interactive shell did not run the typed command"
  # Without -t there is no terminal.
  run -- sh -c 'test -t 0 || test -t 1 || echo no-tty'
  expect_rc 0
  expect_out "no-tty"
  assert_clean
}

case_pid1() {
  run -- sh -c 'echo $$'
  expect_rc 0
  expect_out "1"
  assert_clean
}

case_hostname() {
  run --hostname e2e-host -- hostname
  expect_rc 0
  expect_out "e2e-host"
  run --id e2e-id-1 -- hostname
  expect_rc 0
  expect_out "e2e-id-1"
  assert_clean
}

case_isolation() {  # the agent's files are not visible in the container
  run -- sh -c 'ls -a /; test -e /init && echo INIT-VISIBLE; test -e /run/cask && echo CASK-VISIBLE; test -e /run/cask/shared && echo SHARED-VISIBLE; ls /proc | grep -c "^[0-9]"'
  expect_rc 0
  ! grep -q VISIBLE "$OUT" || fail "agent files are visible in the container"
  expect_out_has "bin"
  # Only the container's own processes: sh and ls/grep (< 5), not the agent.
  local n
  n=$(tail -1 "$OUT" | tr -d '\r')
  [ "$n" -lt 5 ] || fail "$n processes visible in the container"
  assert_clean
}

case_memory_limit() {
  # /sys/fs/cgroup in the container is its own cgroup (a cgroup namespace,
  # or a mount of that cgroup's directory, as runc does without one).
  local show='cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max; sed -n "s/^0:://p" /proc/self/cgroup; awk "\$5 == \"/sys/fs/cgroup\" {print \$4}" /proc/self/mountinfo'
  run --memory 64 -- sh -c "$show"
  expect_rc 0
  local lines
  mapfile -t lines < <(tr -d '\r' < "$OUT")
  [ "${lines[0]:-}" = 67108864 ] || fail "memory.max is '${lines[0]:-}', expected 67108864"
  [ "${lines[1]:-}" = "max 100000" ] || fail "cpu.max is '${lines[1]:-}' without --cpus"
  [ "${lines[2]:-}" = / ] || [ "${lines[2]:-}" = "${lines[3]:-}" ] ||
    fail "/sys/fs/cgroup (${lines[3]:-}) is not the container's cgroup (${lines[2]:-})"
  run --cpus 1 -- sh -c "$show"
  expect_rc 0
  mapfile -t lines < <(tr -d '\r' < "$OUT")
  [ "${lines[0]:-}" = max ] || fail "memory.max is '${lines[0]:-}' without --memory"
  [ "${lines[1]:-}" = "100000 100000" ] || fail "cpu.max is '${lines[1]:-}', expected '100000 100000'"
  assert_clean
}

case_bundle() {
  mkdir -p "$W/bundle"
  ln -s "$ROOTFS" "$W/bundle/rootfs"
  cat > "$W/bundle/config.json" <<'JSON'
{
  "ociVersion": "1.0.2",
  "process": {"args": ["sh", "-c", "echo from-bundle $(hostname); touch /x 2>/dev/null || echo read-only"],
              "cwd": "/", "env": ["PATH=/bin"]},
  "root": {"path": "rootfs", "readonly": true},
  "hostname": "bundlehost",
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
  "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]}
}
JSON
  rt run --config "$CONF" --bundle "$W/bundle"
  expect_rc 0
  expect_out_has "from-bundle bundlehost"
  expect_out_has "read-only"
  [ ! -e "$ROOTFS/x" ] || fail "the read-only rootfs was written"
  # A command after -- replaces process.args.
  rt run --config "$CONF" --bundle "$W/bundle" -- echo replaced
  expect_rc 0
  expect_out "replaced"
  assert_clean
}

case_signals() {
  # SIGTERM to cask-runtime reaches the container's init (it traps it).
  set +e
  "$CASK_RUNTIME" run --config "$CONF" --rootfs "$ROOTFS" --id e2e-sig -- \
    sh -c 'trap "echo got-term; exit 3" TERM; echo ready; while :; do sleep 0.1; done' > "$OUT" 2> "$ERR" &
  local pid=$!
  set -e
  LAST_CMD="cask-runtime run ... (SIGTERM once ready)"
  wait_for 240 grep -q ready "$OUT" || { kill -9 $pid; fail "the container did not start"; }
  kill -TERM $pid
  set +e
  wait $pid
  RC=$?
  set -e
  expect_rc 3
  expect_out_has "got-term"
  assert_clean

  # SIGINT while the VM is still booting: the boot is abandoned, and
  # everything is cleaned up.
  set +e
  "$CASK_RUNTIME" run --config "$CONF" --rootfs "$ROOTFS" --id e2e-boot -- sleep 100 > "$OUT" 2> "$ERR" &
  pid=$!
  set -e
  LAST_CMD="cask-runtime run ... (SIGINT during boot)"
  wait_for 60 test -S "$STATE/e2e-boot/qmp.sock" || wait_for 60 test -d "$STATE/e2e-boot" || true
  kill -INT $pid
  set +e
  wait $pid
  RC=$?
  set -e
  expect_rc 130
  assert_clean "after an interrupted boot"
}

case_runtime_killed() {
  # cask-runtime itself SIGKILLed while the container runs: its cleanup
  # watchdog removes the VM, the mounts and the state.
  set +e
  "$CASK_RUNTIME" run --config "$CONF" --rootfs "$ROOTFS" --id e2e-kill9 -- \
    sh -c 'echo ready; sleep 1000' > "$OUT" 2> "$ERR" &
  local pid=$!
  set -e
  LAST_CMD="cask-runtime run ... (SIGKILL once ready)"
  wait_for 240 grep -q ready "$OUT" || { kill -9 $pid; fail "the container did not start"; }
  pgrep -f -- "$STATE/e2e-kill9/" > /dev/null || fail "no VM process found for the running container"
  kill -KILL $pid
  wait $pid 2>/dev/null || true
  no_leftovers() { [ -z "$(procs_of_test)" ] && ! grep -qsF "$W" /proc/self/mountinfo && [ -z "$(ls -A "$STATE")" ]; }
  wait_for 60 no_leftovers || true
  assert_clean "after cask-runtime was SIGKILLed"
}

case_bad_input() {
  # Each bad input: clear message, non-zero exit, no VM started, nothing left.
  rt run --config "$CONF" --rootfs "$W/no-such-rootfs" -- true
  expect_rc 125
  expect_err_has "$W/no-such-rootfs"

  mkdir -p "$W/bad-bundle"
  echo '{"ociVersion": "1.0.2", "process": {' > "$W/bad-bundle/config.json"
  rt run --config "$CONF" --bundle "$W/bad-bundle"
  expect_rc 125
  expect_err_has "config.json"

  echo '{"ociVersion": "1.0.2", "root": {"path": "'"$ROOTFS"'"}, "process": {"args": [], "cwd": "/"}}' \
    > "$W/bad-bundle/config.json"
  rt run --config "$CONF" --bundle "$W/bad-bundle"
  expect_rc 125
  expect_err_has "process.args"

  rt run --config "$CONF" --rootfs "$ROOTFS" --no-such-option -- true
  expect_rc 2
  expect_err_has "--no-such-option"

  write_config "$W/badkey.toml" "no_such_key = 1"
  rt run --config "$W/badkey.toml" --rootfs "$ROOTFS" -- true
  expect_rc 125
  expect_err_has "no_such_key"

  rt run --config "$W/nonexistent.toml" --rootfs "$ROOTFS" -- true
  expect_rc 125
  expect_err_has "$W/nonexistent.toml"

  sed "s#^kernel = .*#kernel = \"$W/no-vmlinux\"#" "$CONF" > "$W/nokernel.toml"
  rt run --config "$W/nokernel.toml" --rootfs "$ROOTFS" -- true
  expect_rc 125
  expect_err_has "$W/no-vmlinux"

  sed "s#^initrd = .*#initrd = \"$W/no-initrd.img\"#" "$CONF" > "$W/noinitrd.toml"
  rt run --config "$W/noinitrd.toml" --rootfs "$ROOTFS" -- true
  expect_rc 125
  expect_err_has "$W/no-initrd.img"

  { echo '[hypervisor]'; echo "path = \"$W/no-qemu-system-x86_64\""; sed -n '2,$p' "$CONF"; } > "$W/noqemu.toml"
  rt run --config "$W/noqemu.toml" --rootfs "$ROOTFS" -- true
  expect_rc 125
  expect_err_has "$W/no-qemu-system-x86_64"

  rt run --config "$CONF" --rootfs "$ROOTFS" --id "../escape" -- true
  expect_rc 125
  expect_err_has "--id"

  assert_clean "after bad input"
}

case_check_env() {
  rt check --config "$CONF"
  expect_rc 0
  expect_out_has "qemu"
  expect_out_has "kernel"
  rt env --config "$CONF"
  expect_rc 0
  expect_out_has "state_dir = \"$STATE\""
  rt version
  expect_rc 0
  expect_out_has "cask-runtime"
  sed "s#^kernel = .*#kernel = \"$W/no-vmlinux\"#" "$CONF" > "$W/nokernel.toml"
  rt check --config "$W/nokernel.toml"
  [ "$RC" -ne 0 ] || fail "check passed without a kernel"
  expect_out_has "$W/no-vmlinux"
}

# --- issue 6 item 6: the guest side of the boundary -----------------------

# bundle_spec NAME ARGS_JSON MOUNTS_JSON LINUX_EXTRA_JSON [ANNOTATIONS_JSON]:
# writes $W/NAME/config.json for a root process with the capabilities a
# default container has plus CAP_MKNOD, on the test rootfs.
bundle_spec() {
  local name=$1 args=$2 mounts=$3 linux=$4 annotations=${5:-'{}'}
  mkdir -p "$W/$name"
  ln -sfn "$ROOTFS" "$W/$name/rootfs"
  local caps='["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FOWNER","CAP_SETUID","CAP_SETGID","CAP_KILL","CAP_MKNOD"]'
  cat > "$W/$name/config.json" <<JSON
{
  "ociVersion": "1.0.2",
  "process": {"args": $args, "cwd": "/", "env": ["PATH=/bin"],
              "capabilities": {"bounding": $caps, "effective": $caps, "permitted": $caps}},
  "root": {"path": "rootfs", "readonly": true},
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
             {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755", "size=64k"]},
             {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}$mounts],
  "annotations": $annotations,
  "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]$linux}
}
JSON
}

case_device_cgroup() {  # the device cgroup holds in the guest (BPF_CGROUP_DEVICE)
  # A node made on the host reaches the guest through the share: opening it
  # in the container is the device cgroup's to refuse (4:64 is the guest's
  # ttyS0, its console).
  mkdir -p "$W/devs"
  mknod "$W/devs/ttyS0" c 4 64
  local probe='mknod /tmp/ttyS0 c 4 64 2>/dev/null && echo mknod-ok; (echo x > /devs/ttyS0) 2>/dev/null && echo write-ok; echo y > /dev/null && echo null-ok; head -c 4 /dev/urandom | wc -c; echo done'
  bundle_spec dev "[\"sh\", \"-c\", \"$probe\"]" \
    ",{\"destination\": \"/devs\", \"type\": \"bind\", \"source\": \"$W/devs\", \"options\": [\"rbind\"]}" \
    ', "resources": {"devices": [{"allow": false, "access": "rwm"}]}'
  rt run --config "$CONF" --bundle "$W/dev"
  expect_rc 0
  expect_out "$(printf 'null-ok\n4\ndone')"
  # Privileged (a rule allowing every device): mknod works.
  bundle_spec priv '["sh", "-c", "mknod /tmp/ttyS0 c 4 64 && echo mknod-ok"]' "" \
    ', "resources": {"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "a", "access": "rwm"}]}'
  rt run --config "$CONF" --bundle "$W/priv"
  expect_rc 0
  expect_out "mknod-ok"
  assert_clean
}

case_default_seccomp() {  # runtime.default_seccomp: on by default, a spec's own profile wins
  local probe='["sh", "-c", "unshare -U true 2>/dev/null && echo unshare-ok; (echo forked); echo done"]'
  bundle_spec plain "$probe" "" ""
  rt run --config "$CONF" --bundle "$W/plain"
  expect_rc 0
  expect_out "$(printf 'forked\ndone')"
  bundle_spec own "$probe" "" ', "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}'
  rt run --config "$CONF" --bundle "$W/own"
  expect_rc 0
  expect_out "$(printf 'unshare-ok\nforked\ndone')"
  write_config "$W/noseccomp.toml" "default_seccomp = false"
  rt run --config "$W/noseccomp.toml" --bundle "$W/plain"
  expect_rc 0
  expect_out "$(printf 'unshare-ok\nforked\ndone')"
  assert_clean
}

case_readonly_submount() {  # a read-only bind (or path) is read-only in its sub-mounts
  mkdir -p "$W/src/sub"
  mount -t tmpfs -o size=64k tmpfs "$W/src/sub"
  local probe='touch /ro/top 2>/dev/null && echo ro-top-written; touch /ro/sub/x 2>/dev/null && echo ro-sub-written; touch /data/sub/y 2>/dev/null && echo path-sub-written; touch /data/sub/../z 2>/dev/null && echo path-top-written; echo done'
  bundle_spec ro "[\"sh\", \"-c\", \"$probe\"]" \
    ",{\"destination\": \"/ro\", \"type\": \"bind\", \"source\": \"$W/src\", \"options\": [\"rbind\", \"ro\"]},
      {\"destination\": \"/data\", \"type\": \"tmpfs\", \"source\": \"tmpfs\", \"options\": [\"size=64k\"]},
      {\"destination\": \"/data/sub\", \"type\": \"tmpfs\", \"source\": \"tmpfs\", \"options\": [\"size=64k\"]}" \
    ', "readonlyPaths": ["/data"]'
  rt run --config "$CONF" --bundle "$W/ro"
  local rc=$RC
  umount "$W/src/sub"
  RC=$rc
  expect_rc 0
  expect_out "done"
  [ ! -e "$W/src/sub/x" ] && [ ! -e "$W/src/top" ] || fail "the read-only bind was written"
  assert_clean
}

case_namespace_paths() {  # host namespace paths are mapped in the guest, never opened
  local netns=/var/run/netns/cask-e2e-absent-$$
  [ ! -e "$netns" ] || fail "$netns exists on the host"
  local ns=', "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}, {"type": "network", "path": "'"$netns"'"}]'
  # No pod: nothing to map to, a clear error.
  bundle_spec solo '["echo", "ran"]' "" "$ns"
  rt run --config "$CONF" --bundle "$W/solo"
  [ "$RC" -ne 0 ] || fail "a container with a host netns path and no pod ran"
  expect_err_has "belongs to no pod"
  expect_err_has "$netns"
  # A pod container whose sandbox is not in this VM: a clear error.
  bundle_spec member '["echo", "ran"]' "" "$ns" \
    '{"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "cask-e2e-pod"}'
  rt run --config "$CONF" --bundle "$W/member"
  [ "$RC" -ne 0 ] || fail "a pod container without its sandbox ran"
  expect_err_has "pod sandbox cask-e2e-pod is not running in this VM"
  # The pod sandbox: its network is the VM's own.
  bundle_spec sandbox '["sh", "-c", "grep -q lo: /proc/net/dev && echo ran"]' "" "$ns" \
    '{"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": "cask-e2e-pod"}'
  rt run --config "$CONF" --bundle "$W/sandbox"
  expect_rc 0
  expect_out "ran"
  [ ! -e "$netns" ] || fail "$netns was created on the host"
  assert_clean
}

e2e_main "$@"
