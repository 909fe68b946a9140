#!/usr/bin/env bash
# bench/cri-start.sh [N]: pod start through containerd's CRI plugin, the
# way kubelet starts a pod, cask handler versus runc handler through the
# same private containerd, N (default 5, at least 5) rounds, interleaved
# (odd rounds cask first, even rounds runc first). A benchmark, not a test.
#
# One round per handler: RunPodSandbox + CreateContainer + StartContainer
# of a busybox container that prints a marker line, timed until the marker
# is in the container's CRI log file (containerd writes it from the
# runtime's stdout), then StopPodSandbox + RemovePodSandbox (not timed).
# Prints median and min–max per handler, the ratio cask/runc of the medians,
# and the split (RunPodSandbox alone; create + start; start → printed).
#
# Footprint: when the cask pod's marker is in the log, the PSS
# (/proc/PID/smaps_rollup) of its shim, QEMU and virtiofsd, summed; the
# median over rounds is the input for deploy/runtimeclass.yaml's
# overhead.podFixed memory (guest memory_mib = 256, the CRI e2e harness's
# cask config).
#
# Environment as tests/cri (SHIM_BIN, CASK_CRI, CASK_RUNTIME, GUEST_DIR;
# root, CNI plugins, jq): it reuses that harness (tests/cri/cri_e2e.sh,
# sourced with CRI_E2E_LIBRARY=1): a private containerd inside a network
# namespace the harness creates, CNI bridge and pod addresses only in it,
# local busybox and pause images. `ninja -C build bench-cri-start`.
E2E_BENCH_N=${1:-5}
[ "$E2E_BENCH_N" -ge 5 ] 2>/dev/null || { echo "cri-start: N must be a number >= 5" >&2; exit 2; }
set --
CRI_E2E_LIBRARY=1
source "$(dirname "$0")/../tests/cri/cri_e2e.sh"
n=$E2E_BENCH_N
MARKER=cask-bench-printed
# Per round and handler: the longest wait for the marker.
#
# CRI_BENCH_POOL=1: the cask pods take their VMs from a `cask-runtime pool
# serve` (size 1) started for the run, given time to have its VM ready
# before each cask round (the time of a warm start, not of an empty pool):
# the pod's TAP is moved into the CRI pod's network namespace at handover.
# Its QEMU and virtiofsd are then found by the pod's host-processes record.
PRINT_TIMEOUT=${PRINT_TIMEOUT:-600}

setup
POOL=${CRI_BENCH_POOL:-0}
POOL_PID=
if [ "$POOL" = 1 ]; then
  printf '[pool]\nsize = 1\nsocket = "%s"\nstate_dir = "%s"\ncgroup_parent = "%s"\n' \
    "$W/pool/pool.sock" "$W/pool" "cask-bench-pool-$$" >> "$W/cask.toml"
  "$CASK_RUNTIME" pool serve --config "$W/cask.toml" > "$W/pool.log" 2>&1 &
  POOL_PID=$!
  stop_bench_pool() {
    [ -n "$POOL_PID" ] && kill -TERM "$POOL_PID" 2>/dev/null && wait "$POOL_PID" 2>/dev/null
    find /sys/fs/cgroup -maxdepth 6 -type d -name "cask-bench-pool-$$" -exec rmdir {} + 2>/dev/null
    return 0
  }
  e2e_defer stop_bench_pool
fi
pool_ready() { "$CASK_RUNTIME" pool status --config "$W/cask.toml" 2>/dev/null | grep -x "ready 1" > /dev/null; }
# recorded_pid POD KEY: the pid the pod's host-processes record names for KEY.
recorded_pid() { sed -n "s/^$2 \([0-9]*\) .*/\1/p" "$CASK_STATE/$1/host-processes" 2>/dev/null; }
write_ctr_config bench "$BUSYBOX_IMAGE" -- sh -c "echo $MARKER; exec sleep 100000"
for h in cask runc; do : > "$W/$h.total"; : > "$W/$h.runp"; : > "$W/$h.start"; : > "$W/$h.print"; done
: > "$W/pss.total"; : > "$W/pss.shim"; : > "$W/pss.qemu"; : > "$W/pss.vfs"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
pss_kib() { awk '/^Pss:/ {s += $2} END {print s + 0}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
# The pod's virtiofsd processes: the harness's virtiofsd_pids matches every
# command line naming virtiofsd before the pod's state dir, QEMU's included
# (its vhost-user socket is virtiofsd.sock); keep only virtiofsd itself.
pod_virtiofsd_pids() {
  local p
  for p in $(virtiofsd_pids "$1"); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = virtiofsd ] && echo "$p"; done
  return 0
}
sum_pss() { local p s=0; for p in "$@"; do s=$(( s + $(pss_kib "$p") )); done; echo "$s"; }

# one_round HANDLER NAME: times one pod start and appends to $W/HANDLER.*.
one_round() {
  local h=$1 name=$2 t0 t1 t2 t3 pod c logf end
  write_pod_config "$name"
  logf=$W/logs/$name/bench.log
  if [ "$h" = cask ] && [ "$POOL" = 1 ]; then
    wait_for 240 pool_ready || fail "the pool has no ready VM: $(cat "$W/pool.log")"
  fi
  t0=$(now_ms)
  pod=$(runp "$name" "$h") || fail "$h: RunPodSandbox of $name failed"
  t1=$(now_ms)
  c=$(create_start "$pod" "$name" bench) || fail "$h: create/start in $name failed"
  t2=$(now_ms)
  end=$(( t2 + PRINT_TIMEOUT * 1000 ))
  until grep -qF -- "$MARKER" "$logf" 2>/dev/null; do
    [ "$(now_ms)" -lt "$end" ] || fail "$h: no '$MARKER' in $logf after ${PRINT_TIMEOUT}s"
    sleep 0.01
  done
  t3=$(now_ms)
  if [ "$h" = cask ]; then
    local shim qemu vfs
    if [ "$POOL" = 1 ]; then
      shim=$(shim_pids) qemu=$(recorded_pid "$pod" vmm) vfs=$(recorded_pid "$pod" virtiofsd)
      grep -F "sandbox=$pod" "$W/containerd.log" | grep "from_pool=true" > /dev/null ||
        fail "cask pod $name did not take the pool's VM"
    else
      shim=$(shim_pids) qemu=$(qemu_pids "$pod") vfs=$(pod_virtiofsd_pids "$pod")
    fi
    [ "$(wc -w <<<"$shim")" = 1 ] && [ "$(wc -w <<<"$qemu")" = 1 ] ||
      fail "expected one cask shim and one QEMU, got shim '$shim' qemu '$qemu'"
    local ps pq pv
    ps=$(sum_pss $shim) pq=$(sum_pss $qemu) pv=$(sum_pss $vfs)
    echo "$ps" >> "$W/pss.shim"; echo "$pq" >> "$W/pss.qemu"; echo "$pv" >> "$W/pss.vfs"
    echo $(( ps + pq + pv )) >> "$W/pss.total"
    log "  cask PSS at print: shim $ps KiB, QEMU $pq KiB, virtiofsd $pv KiB ($(wc -w <<<"$vfs") proc)"
  fi
  echo $(( t3 - t0 )) >> "$W/$h.total"
  echo $(( t1 - t0 )) >> "$W/$h.runp"
  echo $(( t2 - t1 )) >> "$W/$h.start"
  echo $(( t3 - t2 )) >> "$W/$h.print"
  log "  $h: $(( t3 - t0 )) ms (runp $(( t1 - t0 )), create+start $(( t2 - t1 )), →printed $(( t3 - t2 )))"
  cri stopp "$pod" >/dev/null || fail "$h: stopp $name failed"
  cri rmp "$pod" >/dev/null || fail "$h: rmp $name failed"
  # The next round starts on a machine without this pod's processes.
  if [ "$h" = cask ]; then
    wait_for 60 no_qemu || fail "QEMU of $name left after rmp"
    wait_for 30 no_shim || fail "shim of $name left after rmp"
  fi
}

loads=()
for i in $(seq 1 "$n"); do
  log "round $i/$n (load $(cut -d' ' -f1 /proc/loadavg))"
  loads+=("$(cut -d' ' -f1 /proc/loadavg)")
  if [ $(( i % 2 )) = 1 ]; then order="cask runc"; else order="runc cask"; fi
  for h in $order; do one_round "$h" "cb-$h-$i"; done
done

stats() {  # stats FILE DIVISOR -> "median min max" (values / DIVISOR)
  sort -n "$1" | awk -v d="$2" '{a[NR]=$1/d} END {m = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2;
                                 printf "%.3f %.3f %.3f\n", m, a[1], a[NR]}'
}
row() {  # row LABEL FILE DIVISOR
  local med min max
  read -r med min max < <(stats "$2" "$3")
  printf '%-44s %9s  [%s–%s]   %s\n' "$1" "$med" "$min" "$max" "$(tr '\n' ' ' < "$2")"
}
echo "CRI pod start (RunPodSandbox + CreateContainer + StartContainer → marker in the CRI log)$([ "$POOL" = 1 ] && echo ", cask pods from the pool"):"
echo "$n interleaved rounds, $(nproc) CPUs, load at round starts: ${loads[*]}, now $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-44s %9s  %s   %s\n' "" median "[min–max]" "raw (ms or KiB)"
for h in cask runc; do
  row "$h: total (s)" "$W/$h.total" 1000
  row "$h:   RunPodSandbox (s)" "$W/$h.runp" 1000
  row "$h:   CreateContainer + StartContainer (s)" "$W/$h.start" 1000
  row "$h:   started → printed (s)" "$W/$h.print" 1000
done
read -r cmed _ < <(stats "$W/cask.total" 1)
read -r rmed _ < <(stats "$W/runc.total" 1)
echo "ratio cask/runc (medians of total): $(awk -v a="$cmed" -v b="$rmed" 'BEGIN {printf "%.1f", a / b}')"
echo "cask pod host footprint when the workload printed (PSS, guest memory_mib = 256):"
row "  shim + QEMU + virtiofsd (MiB)" "$W/pss.total" 1024
row "  shim (MiB)" "$W/pss.shim" 1024
row "  QEMU (MiB)" "$W/pss.qemu" 1024
row "  virtiofsd (MiB)" "$W/pss.vfs" 1024
