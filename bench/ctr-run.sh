#!/usr/bin/env bash
# bench/ctr-run.sh [N]: `ctr run --rm IMAGE ID true` through one private
# containerd, cask versus runc in the same run, N (default 5) runs each,
# interleaved; prints every time, the medians and the ratio. A benchmark,
# not a test. Same environment as tests/shim/e2e.sh (SHIM_BIN, GUEST_DIR).
E2E_KIND=containerd E2E_TMP_PREFIX=cask-shim-e2e
source "$(dirname "$0")/../tests/lib/e2e.sh"

n=${1:-5}
setup
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
timed() {  # prints seconds
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l | xargs printf '%.3f\n'
}
: > "$W/cask.times"
: > "$W/runc.times"
for i in $(seq 1 "$n"); do
  timed ctr_ run --rm --runtime io.containerd.runc.v2 "$IMAGE" runc$i true >> "$W/runc.times"
  timed run_cask --rm "$IMAGE" cask$i true >> "$W/cask.times"
done
cask=$(median < "$W/cask.times")
runc=$(median < "$W/runc.times")
echo "runc runs (s): $(tr '\n' ' ' < "$W/runc.times")"
echo "cask runs (s): $(tr '\n' ' ' < "$W/cask.times")"
echo "median: runc ${runc}s, cask ${cask}s, cask/runc = $(echo "$cask / $runc" | bc -l | xargs printf '%.1f')x"
