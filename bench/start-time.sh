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
die() { echo "start-time: $*" >&2; exit 1; }
[ "$runs" -ge 5 ] 2>/dev/null || die "--runs must be a number >= 5"
[ "$(id -u)" = 0 ] || die "needs root"
[ -x "$runtime" ] || die "cask-runtime not found at $runtime (build it, or pass --runtime)"
[ -f "$guest/vmlinux" ] && [ -f "$guest/initrd.img" ] || die "guest assets missing in $guest (ninja guest-assets)"
command -v runc >/dev/null || die "runc not installed (the baseline)"

W=$(mktemp -d /tmp/cask-bench.XXXXXX)
cleanup() {
  runc --root "$W/runc-root" list -q 2>/dev/null | xargs -r -n1 runc --root "$W/runc-root" delete -f 2>/dev/null || true
  if grep -qsF "$W" /proc/self/mountinfo; then
    echo "start-time: mounts left under $W" >&2
  else
    rm -rf "$W"
  fi
}
trap cleanup EXIT

"$src/tests/e2e/make-rootfs.sh" "$W/bundle/rootfs"
cat > "$W/cask.toml" <<TOML
[hypervisor]
kernel = "$guest/vmlinux"
initrd = "$guest/initrd.img"
[runtime]
state_dir = "$W/state"
TOML
(cd "$W/bundle" && runc spec)
sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"sh"$/"true"/' "$W/bundle/config.json"
grep -q '"true"' "$W/bundle/config.json" || die "could not set the runc bundle's command"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

boot=() cask=() runc_=()
for i in $(seq 1 "$runs"); do
  t0=$(now_ms)
  "$runtime" run --timing --config "$W/cask.toml" --rootfs "$W/bundle/rootfs" -- true 2> "$W/timing" ||
    { cat "$W/timing" >&2; die "cask-runtime run failed (round $i)"; }
  t1=$(now_ms)
  b=$(sed -n 's/.* boot_ms=\([0-9]*\).*/\1/p' "$W/timing")
  [ -n "$b" ] || { cat "$W/timing" >&2; die "no boot_ms in the --timing output"; }
  boot+=("$b")
  cask+=($((t1 - t0)))

  t0=$(now_ms)
  runc --root "$W/runc-root" run --bundle "$W/bundle" "bench-$i" > /dev/null || die "runc run failed (round $i)"
  t1=$(now_ms)
  runc_+=($((t1 - t0)))
  echo "round $i/$runs: boot ${b} ms, cask run ${cask[-1]} ms, runc run ${runc_[-1]} ms" >&2
done

stats() {  # stats NAME VALUES...: name median min max spread
  local name=$1; shift
  local sorted n med
  sorted=($(printf '%s\n' "$@" | sort -n))
  n=${#sorted[@]}
  if [ $((n % 2)) -eq 1 ]; then
    med=${sorted[$((n / 2))]}
  else
    med=$(( (sorted[n / 2 - 1] + sorted[n / 2]) / 2 ))
  fi
  printf '%-44s %8s %8s %8s %8s\n' "$name" "$med" "${sorted[0]}" "${sorted[-1]}" "$((sorted[-1] - sorted[0]))"
}

echo
accel=$("$runtime" check --config "$W/cask.toml" 2>/dev/null | sed -n 's/.*; accel = \([a-z]*\).*/\1/p' || true)
echo "start time: $runs rounds, $(nproc) CPUs, host $(uname -r), accel ${accel:-?}, guest $(cat "$guest/kernel-release" 2>/dev/null || echo ?)"
printf '%-44s %8s %8s %8s %8s\n' "(milliseconds)" median min max spread
stats "cask: QEMU start -> agent ready" "${boot[@]}"
stats "cask: cask-runtime run -- true (wall)" "${cask[@]}"
stats "runc: runc run true (wall, baseline)" "${runc_[@]}"
