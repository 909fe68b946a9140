#!/usr/bin/env bash
# bench/ctr-run.sh [N]: `ctr run --rm IMAGE ID true` through one private
# containerd, cask versus runc in the same run, N (default 5, at least 5)
# rounds, interleaved; prints every time, median, min, max, spread and the
# ratio to runc. A benchmark, not a test. Same environment as
# tests/shim/e2e.sh (SHIM_BIN, GUEST_DIR).
#
# CASK_KERNELS="lean=DIR debian=DIR" compares several guest asset dirs
# (vmlinux + initrd.img) in the same rounds, each with its own runtime
# config; the default is GUEST_DIR alone, named "cask".
E2E_KIND=containerd E2E_TMP_PREFIX=cask-shim-e2e
source "$(dirname "$0")/../tests/lib/e2e.sh"
BENCH_NAME=ctr-run
source "$(dirname "$0")/lib.sh"

n=${1:-5}
[ "$n" -ge 5 ] 2>/dev/null || { echo "ctr-run: N must be a number >= 5" >&2; exit 2; }
setup

kernels=()
for kv in ${CASK_KERNELS:-cask=$GUEST_DIR}; do
  name=${kv%%=*} dir=${kv#*=}
  [ -f "$dir/vmlinux" ] && [ -f "$dir/initrd.img" ] || { echo "ctr-run: no guest assets in $dir" >&2; exit 1; }
  GUEST_DIR=$dir write_cask_config "$W/cask-$name.toml"
  kernels+=("$name")
  : > "$W/$name.times"
done
: > "$W/runc.times"

for i in $(seq 1 "$n"); do
  bench_timed ctr_ run --rm --runtime io.containerd.runc.v2 "$IMAGE" runc$i true >> "$W/runc.times"
  for k in "${kernels[@]}"; do
    bench_timed ctr_ run --rm --runtime "$RUNTIME" --runtime-config-path "$W/cask-$k.toml" "$IMAGE" "$k$i" true >> "$W/$k.times"
  done
  echo "round $i/$n: runc $(tail -1 "$W/runc.times") s$(for k in "${kernels[@]}"; do printf ', %s %s s' "$k" "$(tail -1 "$W/$k.times")"; done)" >&2
done

echo "ctr run --rm $IMAGE … true: $n interleaved rounds, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
rows=()
for k in "${kernels[@]}"; do rows+=("$k=$W/$k.times"); done
bench_runc_table "$W/runc.times" "${rows[@]}"
