#!/usr/bin/env bash
# bench/kernels.sh: the Debian cloud kernel against the lean guest kernel,
# and runc as the baseline, in the same interleaved rounds.
#
#   bench/kernels.sh [--runs N] [--build DIR] [--lean DIR] [--debian DIR]
#
# Per round and kernel: `cask-runtime run --timing -- true` on a busybox
# rootfs gives QEMU start -> agent ready (boot_ms), the guest's own uptime
# when the agent first answered (guest_uptime_ms; it under-reads on an ACPI
# microvm, whose clock stands still for a while in early boot: compare wall
# times) and the whole command's wall time; `runc run true` on the same
# rootfs is the baseline. Then, per kernel, three idle VMs one after the
# other (`cask-runtime run -- sh -c 'echo ready; sleep 15'`): QEMU's RSS and PSS, virtiofsd's PSS
# and cask-runtime's PSS (the host side that the shim is in a pod), read
# 5 s after the container started. Prints median, min, max, spread.
#
# --lean DIR defaults to BUILD/guest (ninja guest-assets); --debian DIR
# defaults to assets built here with guest/build-assets --kernel debian
# (the kernel package is cached in BUILD/guest-cache). Needs root and runc.
# Not part of ctest: wall times on a shared VM are noisy.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
runs=7 build=$src/build lean= debian=
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --lean) lean=$2; shift 2 ;;
    --debian) debian=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "kernels: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
build=$(realpath -m "$build")
runtime=$build/cmd/cask-runtime/cask-runtime
agent=$build/cmd/cask-agent/cask-agent
lean=${lean:-$build/guest}
BENCH_NAME=kernels
source "$here/lib.sh"
bench_require "$runs"
[ -x "$runtime" ] || die "cask-runtime not found at $runtime"

bench_workdir  # BENCH_HOST: the idle cask-runtime being measured

if [ -z "$debian" ]; then
  debian=$W/guest-debian
  "$src/guest/build-assets" --kernel debian --agent "$agent" --out "$debian" --cache "$build/guest-cache" 2>"$W/build-assets.log" ||
    { cat "$W/build-assets.log" >&2; die "building the debian guest assets failed"; }
fi
for d in "$lean" "$debian"; do
  [ -f "$d/vmlinux" ] && [ -f "$d/initrd.img" ] || die "guest assets missing in $d"
done

bench_bundle "$src"
kernels=(lean debian)
declare -A dir=([lean]=$lean [debian]=$debian)
for k in "${kernels[@]}"; do
  cat > "$W/$k.toml" <<TOML
[hypervisor]
kernel = "${dir[$k]}/vmlinux"
initrd = "${dir[$k]}/initrd.img"
memory_mib = 256
[agent]
connect_timeout_ms = 600000
[runtime]
state_dir = "$W/state-$k"
TOML
done
declare -A boot uptime wall
runc_=()
for i in $(seq 1 "$runs"); do
  line="round $i/$runs:"
  for k in "${kernels[@]}"; do
    bench_cask_round "$runtime" "$W/$k.toml" "$k, round $i"
    boot[$k]+="$BOOT_MS " uptime[$k]+="$UPTIME_MS " wall[$k]+="$WALL_MS "
    line+=" $k boot $BOOT_MS ms (guest uptime $UPTIME_MS ms), run $WALL_MS ms;"
  done
  bench_runc_round "bench-$i"
  runc_+=("$WALL_MS")
  echo "$line runc $WALL_MS ms" >&2
done

# Idle memory: three VMs per kernel, one at a time, interleaved.
pss() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
declare -A qrss qpss vpss hpss
for i in 1 2 3; do
  for k in "${kernels[@]}"; do
    rm -f "$W/ready"
    "$runtime" run --config "$W/$k.toml" --rootfs "$W/bundle/rootfs" -- sh -c 'echo ready; sleep 15' \
      > "$W/ready" 2>"$W/idle.err" &
    BENCH_HOST=$!
    for _ in $(seq 1 3000); do grep -q ready "$W/ready" 2>/dev/null && break; sleep 0.1; done
    grep -q ready "$W/ready" || { cat "$W/idle.err" >&2; die "idle VM ($k) did not start"; }
    sleep 5
    q=$(pgrep -f "qemu-system.*$W/state-$k" | head -1)
    v=$(pgrep -f "virtiofsd.*$W/state-$k" | head -1)
    qrss[$k]+="$(rss "$q") " qpss[$k]+="$(pss "$q") " vpss[$k]+="$(pss "$v") " hpss[$k]+="$(pss "$BENCH_HOST") "
    echo "idle $k #$i: QEMU RSS $(rss "$q") KiB PSS $(pss "$q") KiB, virtiofsd PSS $(pss "$v") KiB, cask-runtime PSS $(pss "$BENCH_HOST") KiB" >&2
    # The container ends by itself (a signal to PID 1 of the container
    # without a handler would be ignored).
    wait "$BENCH_HOST" 2>/dev/null || true
    BENCH_HOST=
    for _ in $(seq 1 100); do pgrep -f "qemu-system.*$W/state-$k" >/dev/null || break; sleep 0.1; done
  done
done

echo
echo "guest kernels: $runs interleaved rounds, $(nproc) CPUs, host $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
for k in "${kernels[@]}"; do
  echo "  $k: $(cat "${dir[$k]}/kernel-release" 2>/dev/null), vmlinux $(stat -c %s "${dir[$k]}/vmlinux") bytes, initrd $(stat -c %s "${dir[$k]}/initrd.img") bytes"
done
bench_stats_header ""
for k in "${kernels[@]}"; do
  bench_stats "$k: QEMU start -> agent ready (ms)" 1 ${boot[$k]}
  bench_stats "$k: guest uptime at agent ready (ms)" 1 ${uptime[$k]}
  bench_stats "$k: cask-runtime run -- true (ms)" 1 ${wall[$k]}
done
bench_stats "runc: runc run true (ms)" 1 "${runc_[@]}"
for k in "${kernels[@]}"; do
  bench_stats "$k: idle QEMU RSS (MiB)" 1024 ${qrss[$k]}
  bench_stats "$k: idle QEMU PSS (MiB)" 1024 ${qpss[$k]}
  bench_stats "$k: idle virtiofsd PSS (MiB)" 1024 ${vpss[$k]}
  bench_stats "$k: idle cask-runtime PSS (MiB)" 1024 ${hpss[$k]}
done
