#!/usr/bin/env bash
# bench/density.sh: how many idle cask pods one host holds. A benchmark,
# not a test. Same environment as tests/shim/e2e.sh (SHIM_BIN, GUEST_DIR).
#
#   bench/density.sh [--pods N] [--floor-mib M] [--settle S] [--every K]
#
# Starts idle pods (`ctr run -d … sleep`, guest memory_mib = 256, cask's
# defaults otherwise) one after another through one private containerd,
# each once the previous one answers exec, until N pods (default 40) run or
# MemAvailable falls below M MiB (default 2048). After every K-th pod
# (default 5) it records, for all pods so far: the summed PSS of their
# shims, QEMUs and virtiofsds (/proc/PID/smaps_rollup, so memory the pods
# share, such as the kernel image mapping and QEMU's libraries, is split
# between them), the drop of MemAvailable since the start, and the load
# average (on a shared machine MemAvailable also moves with other work,
# so early samples can even show a rise). When the last pod is up it waits S seconds (default 10), asks
# every pod to answer exec again, and reports: pods up, pods answering,
# time per start as the count grew, PSS per pod, and what 20 GiB would hold
# at the measured per-pod cost (an extrapolation from the marginal cost of
# the pods measured here, not a run with that many pods). Then it removes
# every pod and checks that no QEMU, virtiofsd, shim, mount or pod cgroup is
# left. CASK_TOML_EXTRA: extra [hypervisor] lines.
#
# It loads the machine: every pod is a TCG guest. Run it alone.
E2E_KIND=containerd E2E_TMP_PREFIX=cask-density
source "$(dirname "$0")/../tests/lib/e2e.sh"

pods=40 floor=2048 settle=10 every=5
while [ $# -gt 0 ]; do
  case "$1" in
    --pods) pods=$2; shift 2 ;;
    --floor-mib) floor=$2; shift 2 ;;
    --settle) settle=$2; shift 2 ;;
    --every) every=$2; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "density: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for v in "$pods" "$floor" "$settle" "$every"; do
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "density: '$v' is not a number" >&2; exit 2; }
done
[ "$pods" -ge 1 ] && [ "$every" -ge 1 ] || { echo "density: --pods and --every must be at least 1" >&2; exit 2; }
setup

{
  echo '[hypervisor]'
  echo "kernel = \"$GUEST_DIR/vmlinux\""
  echo "initrd = \"$GUEST_DIR/initrd.img\""
  echo 'memory_mib = 256'
  [ -z "${CASK_TOML_EXTRA:-}" ] || printf '%s\n' "$CASK_TOML_EXTRA"
  echo '[agent]'
  echo 'connect_timeout_ms = 600000'
  echo '[runtime]'
  echo "state_dir = \"$CASK_STATE\""
} > "$W/density.toml"

# Pod ids carry this run's pid, so the leak check below can look for them.
tag=dens$$
pod_id() { echo "$tag-$1"; }
mem_avail_kib() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }
pss_kib() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
shim_of() { pgrep -f "containerd-shim-cask-v2 .*-id $1( |\$)" | head -1; }
pod_pss_kib() {  # pod_pss_kib ID: shim + QEMU + virtiofsd
  local s=0 p
  for p in $(shim_of "$1") $(qemu_pids "$1" | head -1) $(virtiofsd_pids "$1" | head -1); do
    s=$((s + $(pss_kib "$p")))
  done
  echo "$s"
}
answers() { [ "$(ctr_ task exec --exec-id "e$RANDOM" "$1" echo ok 2>/dev/null | tr -d '\r')" = ok ]; }
now_ms() { date +%s%3N; }
stop_pod() {
  ctr_ task kill -s SIGKILL "$1" >/dev/null 2>&1 || true
  wait_for 120 status_is "$1" STOPPED || true
  ctr_ task rm -f "$1" >/dev/null 2>&1 || true
  ctr_ container rm "$1" >/dev/null 2>&1 || true
}
pod_cgroups() { find /sys/fs/cgroup -mindepth 1 -maxdepth 6 -type d -name "*$tag-*" 2>/dev/null || true; }

avail0=$(mem_avail_kib)
log "density: up to $pods pods, MemAvailable floor $floor MiB; MemAvailable now $((avail0 / 1024)) MiB, load $(cut -d' ' -f1-3 /proc/loadavg)"
: > "$W/starts" ; : > "$W/samples"
n=0 stop_reason="reached --pods $pods"
for i in $(seq 1 "$pods"); do
  if [ "$(mem_avail_kib)" -lt $((floor * 1024)) ]; then
    stop_reason="MemAvailable below $floor MiB"
    break
  fi
  id=$(pod_id "$i")
  t0=$(now_ms)
  if ! ctr_ run -d --runtime "$RUNTIME" --runtime-config-path "$W/density.toml" "$IMAGE" "$id" sleep 1000000 >/dev/null 2>"$W/run-$i.err"; then
    stop_reason="pod $i failed to start: $(tail -c 300 "$W/run-$i.err")"
    break
  fi
  if ! wait_for 600 answers "$id"; then
    stop_reason="pod $i did not answer exec within 600 s"
    break
  fi
  t1=$(now_ms)
  n=$i
  echo "$i $((t1 - t0))" >> "$W/starts"
  if [ $((i % every)) -eq 0 ] || [ "$i" -eq 1 ] || [ "$i" -eq "$pods" ]; then
    total=0
    for j in $(seq 1 "$i"); do total=$((total + $(pod_pss_kib "$(pod_id "$j")"))); done
    avail=$(mem_avail_kib)
    load=$(cut -d' ' -f1 /proc/loadavg)
    echo "$i $total $((avail0 - avail)) $load" >> "$W/samples"
    log "pod $i up in $((t1 - t0)) ms; $i pods: PSS $((total / 1024)) MiB ($((total / i / 1024)) MiB/pod), MemAvailable drop $(((avail0 - avail) / 1024)) MiB, load $load"
  fi
done
log "stopped adding pods: $stop_reason"

sleep "$settle"
ok=0
for j in $(seq 1 "$n"); do answers "$(pod_id "$j")" && ok=$((ok + 1)); done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

echo "density: $n pods up ($stop_reason); $ok/$n answer exec ${settle}s after the last start; load at the end $load_end; $(nproc) CPUs, guest 256 MiB each"
echo "start time (ctr run -d until the pod answers exec) as the count grew, ms:"
awk -v k="$every" '{b = int(($1 - 1) / k); s[b] += $2; c[b]++; if (!(b in lo) || $2 < lo[b]) lo[b] = $2; if ($2 > hi[b]) hi[b] = $2}
  END {for (b = 0; b in c; b++) printf "  pods %3d-%-3d mean %6d  min %6d  max %6d\n", b * k + 1, b * k + c[b], s[b] / c[b], lo[b], hi[b]}' "$W/starts"
echo "memory as the count grew (PSS of shim + QEMU + virtiofsd of every pod; MemAvailable drop since the start):"
printf '  %5s %12s %12s %16s %8s\n' pods "PSS MiB" "PSS/pod MiB" "MemAvail drop" load
awk '{printf "  %5d %12.1f %12.1f %16.1f %8s\n", $1, $2 / 1024, $2 / $1 / 1024, $3 / 1024, $4}' "$W/samples"
# Marginal cost: the slope between the first and the last sample (what one
# more pod adds once the shared pages are already paid for).
read -r n1 pss1 drop1 _ < <(head -1 "$W/samples")
read -r n2 pss2 drop2 _ < <(tail -1 "$W/samples")
if [ "${n2:-0}" -gt "${n1:-0}" ]; then
  awk -v n1="$n1" -v n2="$n2" -v p1="$pss1" -v p2="$pss2" -v d1="$drop1" -v d2="$drop2" 'BEGIN {
    mp = (p2 - p1) / (n2 - n1) / 1024; md = (d2 - d1) / (n2 - n1) / 1024
    printf "marginal cost per pod (pods %d..%d): PSS %.1f MiB, MemAvailable %.1f MiB\n", n1, n2, mp, md
    printf "extrapolated to 20 GiB of memory for pods: %d pods at the PSS cost, %d at the MemAvailable cost (memory alone: CPU for that many TCG guests is another matter)\n", 20480 / mp, (md > 0 ? 20480 / md : 0)
  }'
fi

log "removing $n pods"
# Eight at a time; `wait PIDS`, never a bare `wait`, which would also wait
# for the private containerd (a child of this shell).
batch=()
for j in $(seq 1 "$n"); do
  stop_pod "$(pod_id "$j")" & batch+=($!)
  if [ ${#batch[@]} -ge 8 ] || [ "$j" -eq "$n" ]; then wait "${batch[@]}"; batch=(); fi
done
wait_for 60 no_qemu || true
left_q=$(qemu_count) left_v=$(virtiofsd_pids | grep -c . || true) left_cg=$(pod_cgroups)
echo "after removal: $left_q QEMU, $left_v virtiofsd, $(echo -n "$left_cg" | grep -c . || true) pod cgroups left"
[ "$left_q" = 0 ] && [ "$left_v" = 0 ] && [ -z "$left_cg" ] || fail "pods left behind: $left_q QEMU, $left_v virtiofsd, cgroups: $left_cg"
[ "$ok" = "$n" ] || fail "$((n - ok)) of $n pods stopped answering exec"
