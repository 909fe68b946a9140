#!/usr/bin/env bash
# bench/start-time.sh: how long cask takes to start a container, against
# runc on the same busybox rootfs in the same run.
#
#   bench/start-time.sh [--runs N] [--build DIR] [--runtime PATH] [--guest DIR]
#
# Measures, over N (default 7, at least 5) interleaved rounds:
#   boot   QEMU start -> agent answers Check (cask-runtime run --timing)
#   cask   wall time of `cask-runtime run --rootfs R -- true` (boot, create,
#          run, teardown: the whole command)
#   runc   wall time of `runc run` of a `runc spec` bundle on the same
#          rootfs running `true` (the baseline)
# and prints median, min, max and the spread (max - min) in milliseconds.
# Needs root, runc, busybox-static, and the guest assets (ninja guest-assets).
# Not part of ctest: wall times on a shared VM are noisy (docs: ±30 %).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
runs=7
build=$src/build
runtime= guest=
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --runtime) runtime=$2; shift 2 ;;
    --guest) guest=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "start-time: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
build=$(realpath -m "$build")
runtime=${runtime:-$build/cmd/cask-runtime/cask-runtime}
guest=${guest:-$build/guest}
BENCH_NAME=start-time
source "$here/lib.sh"
bench_require "$runs"
[ -x "$runtime" ] || die "cask-runtime not found at $runtime (build it, or pass --runtime)"
[ -f "$guest/vmlinux" ] && [ -f "$guest/initrd.img" ] || die "guest assets missing in $guest (ninja guest-assets)"

bench_workdir
bench_bundle "$src"
cat > "$W/cask.toml" <<TOML
[hypervisor]
kernel = "$guest/vmlinux"
initrd = "$guest/initrd.img"
[runtime]
state_dir = "$W/state"
TOML

boot=() cask=() runc_=()
for i in $(seq 1 "$runs"); do
  bench_cask_round "$runtime" "$W/cask.toml" "round $i"
  boot+=("$BOOT_MS")
  cask+=("$WALL_MS")
  bench_runc_round "bench-$i"
  runc_+=("$WALL_MS")
  echo "round $i/$runs: boot ${boot[-1]} ms, cask run ${cask[-1]} ms, runc run ${runc_[-1]} ms" >&2
done

echo
accel=$("$runtime" check --config "$W/cask.toml" 2>/dev/null | sed -n 's/.*; accel = \([a-z]*\).*/\1/p' || true)
echo "start time: $runs rounds, $(nproc) CPUs, host $(uname -r), accel ${accel:-?}, guest $(cat "$guest/kernel-release" 2>/dev/null || echo ?)"
bench_stats_header "(milliseconds)"
bench_stats "cask: QEMU start -> agent ready" 1 "${boot[@]}"
bench_stats "cask: cask-runtime run -- true (wall)" 1 "${cask[@]}"
bench_stats "runc: runc run true (wall, baseline)" 1 "${runc_[@]}"
