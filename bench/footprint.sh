#!/usr/bin/env bash
# bench/footprint.sh: host memory of idle cask pods through one private
# containerd. A benchmark, not a test. Same environment as
# tests/shim/e2e.sh (SHIM_BIN, GUEST_DIR).
#
#   bench/footprint.sh [--rounds R] [--pods N] [--settle S]
#
# Part 1 (R rounds, default 5, interleaved over the kernels): one idle pod
# (`ctr run -d … sleep`, guest memory_mib = 256) per kernel at a time; once
# it answers exec and S seconds (default 5) have passed, reads the PSS
# (/proc/PID/smaps_rollup) of its shim, QEMU and virtiofsd, QEMU's RSS and
# the part of QEMU's PSS that is the vmlinux file mapping. Prints median,
# min, max per kernel.
#
# Part 2 (--pods N, default 0 = skip): density. Starts N idle pods of the
# first kernel, all running at once, checks that every one still answers
# exec, and reports their summed PSS, the drop of MemAvailable, and the
# number of such pods 20 GiB would hold at that cost (an extrapolation:
# on a shared machine the host cannot hold many more).
#
# CASK_KERNELS="lean=DIR debian=DIR" names the guest asset dirs to compare
# (default: GUEST_DIR, named "cask"). CASK_TOML_EXTRA: extra [hypervisor]
# lines (e.g. 'tcg_tb_size_mib = 0') for every config.
E2E_KIND=containerd E2E_TMP_PREFIX=cask-shim-e2e
source "$(dirname "$0")/../tests/lib/e2e.sh"

rounds=5 pods=0 settle=5
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --pods) pods=$2; shift 2 ;;
    --settle) settle=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "footprint: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
setup

kernels=()
for kv in ${CASK_KERNELS:-cask=$GUEST_DIR}; do
  name=${kv%%=*} dir=${kv#*=}
  [ -f "$dir/vmlinux" ] && [ -f "$dir/initrd.img" ] || { echo "footprint: no guest assets in $dir" >&2; exit 1; }
  {
    echo '[hypervisor]'
    echo "kernel = \"$dir/vmlinux\""
    echo "initrd = \"$dir/initrd.img\""
    echo 'memory_mib = 256'
    [ -z "${CASK_TOML_EXTRA:-}" ] || printf '%s\n' "$CASK_TOML_EXTRA"
    echo '[agent]'
    echo 'connect_timeout_ms = 600000'
    echo '[runtime]'
    echo "state_dir = \"$CASK_STATE\""
  } > "$W/cask-$name.toml"
  kernels+=("$name")
  : > "$W/$name.mem"
done

pss_kib() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# PSS of QEMU's mappings of the kernel image file.
kernel_map_pss_kib() {
  awk -v f="$2" '/^[0-9a-f]+-[0-9a-f]+ / {m = ($6 == f)} m && /^Pss:/ {s += $2} END {print s + 0}' "/proc/$1/smaps" 2>/dev/null || echo 0
}
shim_of() { pgrep -f "containerd-shim-cask-v2 .*-id $1( |\$)" | head -1; }
pod_pids() {  # pod_pids ID -> "shim qemu virtiofsd"
  echo "$(shim_of "$1") $(qemu_pids "$1" | head -1) $(virtiofsd_pids "$1" | head -1)"
}
start_idle() {  # start_idle KERNEL ID
  ctr_ run -d --runtime "$RUNTIME" --runtime-config-path "$W/cask-$1.toml" "$IMAGE" "$2" sleep 100000 >/dev/null
}
answers() { [ "$(ctr_ task exec --exec-id "e$RANDOM" "$1" echo ok 2>/dev/null | tr -d '\r')" = ok ]; }
stop_pod() {
  ctr_ task kill -s SIGKILL "$1" >/dev/null 2>&1 || true
  wait_for 60 status_is "$1" STOPPED || true
  ctr_ task rm -f "$1" >/dev/null 2>&1 || true
  ctr_ container rm "$1" >/dev/null 2>&1 || true
}

for r in $(seq 1 "$rounds"); do
  for k in "${kernels[@]}"; do
    id=fp-$k-$r
    start_idle "$k" "$id"
    wait_for 300 answers "$id" || fail "pod $id does not answer exec"
    sleep "$settle"
    read -r shim qemu vfs < <(pod_pids "$id")
    [ -n "$qemu" ] && [ -n "$shim" ] && [ -n "$vfs" ] || fail "pod $id: shim '$shim' qemu '$qemu' virtiofsd '$vfs' not all found"
    vmlinux=$(sed -n 's/^kernel = "\(.*\)"/\1/p' "$W/cask-$k.toml")
    line="$(pss_kib "$shim") $(pss_kib "$qemu") $(pss_kib "$vfs") $(rss_kib "$qemu") $(kernel_map_pss_kib "$qemu" "$vmlinux")"
    echo "$line" >> "$W/$k.mem"
    echo "round $r/$rounds $k: PSS KiB shim qemu virtiofsd = $(echo "$line" | cut -d' ' -f1-3), QEMU RSS $(echo "$line" | cut -d' ' -f4) KiB, vmlinux mapping PSS $(echo "$line" | cut -d' ' -f5) KiB" >&2
    stop_pod "$id"
  done
done

med() { sort -n | awk '{a[NR]=$1} END {m = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%.1f [%.1f-%.1f]", m/1024, a[1]/1024, a[NR]/1024}'; }
echo "idle pod memory: $rounds interleaved rounds, settle ${settle}s, guest 256 MiB, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %-22s %-22s %-22s %-22s %-22s %-22s %s\n' kernel "pod PSS MiB" "shim PSS" "QEMU PSS" "virtiofsd PSS" "QEMU RSS" "vmlinux map PSS" vmlinux
for k in "${kernels[@]}"; do
  f=$W/$k.mem
  vmlinux=$(sed -n 's/^kernel = "\(.*\)"/\1/p' "$W/cask-$k.toml")
  printf '%-8s %-22s %-22s %-22s %-22s %-22s %-22s %s\n' "$k" \
    "$(awk '{print $1 + $2 + $3}' "$f" | med)" "$(cut -d' ' -f1 "$f" | med)" "$(cut -d' ' -f2 "$f" | med)" \
    "$(cut -d' ' -f3 "$f" | med)" "$(cut -d' ' -f4 "$f" | med)" "$(cut -d' ' -f5 "$f" | med)" \
    "$(stat -c %s "$vmlinux") bytes"
done

[ "$pods" -gt 0 ] 2>/dev/null || exit 0
k=${kernels[0]}
avail0=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
t0=$(date +%s)
for i in $(seq 1 "$pods"); do start_idle "$k" "dn-$i" & done
wait
for i in $(seq 1 "$pods"); do wait_for 600 answers "dn-$i" || fail "density: pod dn-$i of $pods does not answer exec"; done
t1=$(date +%s)
sleep "$settle"
ok=0
for i in $(seq 1 "$pods"); do answers "dn-$i" && ok=$((ok + 1)); done
total=0
for i in $(seq 1 "$pods"); do
  for p in $(pod_pids "dn-$i"); do total=$((total + $(pss_kib "$p"))); done
done
avail1=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
per=$((total / pods))
echo "density ($k): $pods pods started at once, all answering exec after $((t1 - t0)) s; $ok/$pods answer again after ${settle}s"
echo "  summed PSS $((total / 1024)) MiB = $((per / 1024)) MiB per pod; MemAvailable dropped $(((avail0 - avail1) / 1024)) MiB ($(((avail0 - avail1) / pods / 1024)) MiB per pod)"
echo "  extrapolated: 20 GiB holds $((20 * 1024 * 1024 / per)) such pods at the PSS cost, $((20 * 1024 * 1024 / ((avail0 - avail1) / pods + 1))) at the MemAvailable cost"
for i in $(seq 1 "$pods"); do stop_pod "dn-$i" & done
wait
