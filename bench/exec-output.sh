#!/usr/bin/env bash
# bench/exec-output.sh [N]: exec output throughput through one private
# containerd (`ctr task exec`), cask versus runc in the same run, N (default
# 5) runs of each measurement, interleaved. A benchmark, not a test. Same
# environment as tests/shim/e2e.sh (SHIM_BIN, GUEST_DIR).
#
#   bulk   head -c $BULK_MIB MiB of /dev/zero (default 64), counted on the host
#          (busybox head copies byte by byte through stdio: under TCG the
#          guest alone cannot produce it much faster than ~15 MB/s)
#   dd     dd if=/dev/zero bs=1M count=$BULK_MIB: the same bytes from a
#          producer that costs the guest little, i.e. what the channel
#          carries (dd.guest: the same into /dev/null inside the container)
#   small  seq 1 $SMALL_LINES | cat (default 1000000 lines, 6.9 MB): one
#          pipe-sized write at a time through a pipe in the container
#   guest  the same small-write command into /dev/null inside the cask
#          container: the time the guest needs to produce the output,
#          including the cost of one exec (bulk.guest: the same for bulk)
#
# Prints every time, the median and spread (min-max) of each, MB/s, the
# cask/runc ratios and small/guest (issue targets: bulk >= 50 MB/s, small
# output no slower than 4x the guest's own time), and the load average
# before and after (the machine is shared: TCG throughput is CPU-bound).
E2E_KIND=containerd E2E_TMP_PREFIX=cask-bench-exec-output
source "$(dirname "$0")/../tests/lib/e2e.sh"

n=${1:-5}
bulk_mib=${BULK_MIB:-64}
small_lines=${SMALL_LINES:-1000000}
setup

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
spread() { sort -n | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%.2f-%.2f", lo, hi}'; }
now() { date +%s.%N; }

# exec_timed ID EXEC_ID BYTES CMD...: runs CMD in container ID through ctr,
# checks the byte count (when BYTES is not -), prints the seconds.
exec_timed() {
  local id=$1 eid=$2 want=$3 t0 t1 got
  shift 3
  t0=$(now)
  got=$(ctr_ task exec --exec-id "$eid" "$id" "$@" < /dev/null | wc -c)
  t1=$(now)
  if [ "$want" != - ] && [ "$got" != "$want" ]; then
    fail "exec $eid in $id: $got bytes, expected $want"
  fi
  echo "$t1 - $t0" | bc -l | xargs printf '%.3f\n'
}

bulk_bytes=$((bulk_mib * 1024 * 1024))
small_bytes=$(seq 1 "$small_lines" | wc -c)
ctr_ run -d --runtime io.containerd.runc.v2 "$IMAGE" runc-eo sleep 100000 >/dev/null
run_cask -d "$IMAGE" cask-eo sleep 100000 >/dev/null
shim_threads() { awk '/^Threads:/ {print $2}' "/proc/$(shim_pids | head -1)/status" 2>/dev/null; }
log "shim threads with the cask container running: $(shim_threads)"
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for f in runc.bulk cask.bulk cask.bulk.guest runc.dd cask.dd cask.dd.guest runc.small cask.small cask.guest; do
  : > "$W/$f"
done
for i in $(seq 1 "$n"); do
  exec_timed runc-eo b$i "$bulk_bytes" head -c "$bulk_bytes" /dev/zero >> "$W/runc.bulk"
  exec_timed cask-eo b$i "$bulk_bytes" head -c "$bulk_bytes" /dev/zero >> "$W/cask.bulk"
  exec_timed cask-eo bg$i 0 sh -c "head -c $bulk_bytes /dev/zero > /dev/null" >> "$W/cask.bulk.guest"
  exec_timed runc-eo d$i "$bulk_bytes" dd if=/dev/zero bs=1M count="$bulk_mib" status=none >> "$W/runc.dd"
  exec_timed cask-eo d$i "$bulk_bytes" dd if=/dev/zero bs=1M count="$bulk_mib" status=none >> "$W/cask.dd"
  exec_timed cask-eo dg$i 0 sh -c "dd if=/dev/zero bs=1M count=$bulk_mib status=none > /dev/null" >> "$W/cask.dd.guest"
  exec_timed runc-eo s$i "$small_bytes" sh -c "seq 1 $small_lines | cat" >> "$W/runc.small"
  exec_timed cask-eo s$i "$small_bytes" sh -c "seq 1 $small_lines | cat" >> "$W/cask.small"
  exec_timed cask-eo g$i 0 sh -c "seq 1 $small_lines | cat > /dev/null" >> "$W/cask.guest"
  log "run $i: bulk runc $(tail -1 "$W/runc.bulk")s cask $(tail -1 "$W/cask.bulk")s;" \
    "dd runc $(tail -1 "$W/runc.dd")s cask $(tail -1 "$W/cask.dd")s;" \
    "small runc $(tail -1 "$W/runc.small")s cask $(tail -1 "$W/cask.small")s guest $(tail -1 "$W/cask.guest")s"
done

report() {  # report NAME BYTES
  local f=$W/$1 m
  m=$(median < "$f")
  printf '%-15s runs (s): %s\n' "$1" "$(tr '\n' ' ' < "$f")"
  printf '%-15s median %.2f s (spread %s s), %.1f MB/s\n' "$1" "$m" "$(spread < "$f")" \
    "$(echo "$2 / $m / 1000000" | bc -l)"
}
echo "bulk: $bulk_bytes bytes; small: $small_bytes bytes ($small_lines lines of seq | cat); $n runs each"
report runc.bulk "$bulk_bytes"
report cask.bulk "$bulk_bytes"
report cask.bulk.guest "$bulk_bytes"
report runc.dd "$bulk_bytes"
report cask.dd "$bulk_bytes"
report cask.dd.guest "$bulk_bytes"
report runc.small "$small_bytes"
report cask.small "$small_bytes"
report cask.guest "$small_bytes"
ratio() { echo "$(median < "$W/$1") / $(median < "$W/$2")" | bc -l | xargs printf '%.1f'; }
echo "cask/runc: bulk $(ratio cask.bulk runc.bulk)x, small $(ratio cask.small runc.small)x;" \
  "cask small / guest's own time: $(ratio cask.small cask.guest)x (target <= 4x);" \
  "cask bulk / guest's own time: $(ratio cask.bulk cask.bulk.guest)x;" \
  "dd $(ratio cask.dd runc.dd)x runc, $(ratio cask.dd cask.dd.guest)x the guest's own time"
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
for id in runc-eo cask-eo; do
  ctr_ task kill -s SIGKILL "$id" >/dev/null 2>&1 || true
done
wait_for 60 status_is cask-eo STOPPED || true
wait_for 60 status_is runc-eo STOPPED || true
