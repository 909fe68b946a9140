# bench/lib.sh: what the benchmarks share. Those that run `cask-runtime
# run` themselves (start-time.sh, kernels.sh) use the messages and checks,
# the scratch directory and its cleanup, a busybox rootfs with a `runc spec`
# bundle around it running `true` (the baseline), one timed round of each
# runtime, and the median/min/max/spread line; those through a private
# containerd (ctr-run.sh, warm-start.sh) the timed command and the table
# against runc at the end. Source it after setting BENCH_NAME (the prefix
# of every message). Needs bash; defines functions only.
die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# bench_require RUNS: at least 5 rounds, root, and runc for the baseline.
bench_require() {
  [ "$1" -ge 5 ] 2>/dev/null || die "--runs must be a number >= 5"
  [ "$(id -u)" = 0 ] || die "needs root"
  command -v runc >/dev/null || die "runc not installed (the baseline)"
}

# bench_workdir: W, a fresh scratch directory, removed on exit after the
# runc containers under W/runc-root are deleted and the process BENCH_HOST
# (when set) is stopped. Left in place, with a message, if anything is
# still mounted below it.
bench_workdir() {
  W=$(mktemp -d "/tmp/cask-bench-$BENCH_NAME.XXXXXX")
  BENCH_HOST=
  trap bench_cleanup EXIT
}
bench_cleanup() {
  runc --root "$W/runc-root" list -q 2>/dev/null | xargs -r -n1 runc --root "$W/runc-root" delete -f 2>/dev/null || true
  if [ -n "$BENCH_HOST" ]; then kill -TERM "$BENCH_HOST" 2>/dev/null || true; wait "$BENCH_HOST" 2>/dev/null || true; fi
  if grep -qsF "$W" /proc/self/mountinfo; then echo "$BENCH_NAME: mounts left under $W" >&2; else rm -rf "$W"; fi
}

# bench_bundle SRC: a busybox rootfs at W/bundle/rootfs (SRC is the source
# tree) and a runc bundle W/bundle whose process runs `true`.
bench_bundle() {
  "$1/tests/e2e/make-rootfs.sh" "$W/bundle/rootfs"
  (cd "$W/bundle" && runc spec)
  sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"sh"$/"true"/' "$W/bundle/config.json"
  grep -q '"true"' "$W/bundle/config.json" || die "could not set the runc bundle's command"
}

# bench_cask_round RUNTIME CONFIG WHAT: one `cask-runtime run --timing --
# true` on the bundle's rootfs. Sets WALL_MS (the whole command), BOOT_MS
# (QEMU start -> agent ready) and UPTIME_MS (the guest's uptime when the
# agent first answered); WHAT names the round in errors.
bench_cask_round() {
  local t0 t1
  t0=$(now_ms)
  "$1" run --timing --config "$2" --rootfs "$W/bundle/rootfs" -- true 2> "$W/timing" ||
    { cat "$W/timing" >&2; die "cask-runtime run failed ($3)"; }
  t1=$(now_ms)
  WALL_MS=$((t1 - t0))
  BOOT_MS=$(sed -n 's/.* boot_ms=\([0-9]*\).*/\1/p' "$W/timing")
  UPTIME_MS=$(sed -n 's/.* guest_uptime_ms=\([0-9]*\).*/\1/p' "$W/timing")
  [ -n "$BOOT_MS" ] && [ -n "$UPTIME_MS" ] || { cat "$W/timing" >&2; die "no boot_ms/guest_uptime_ms in the --timing output"; }
}

# bench_runc_round NAME: one `runc run` of the bundle as container NAME.
# Sets WALL_MS.
bench_runc_round() {
  local t0 t1
  t0=$(now_ms)
  runc --root "$W/runc-root" run --bundle "$W/bundle" "$1" > /dev/null || die "runc run failed ($1)"
  t1=$(now_ms)
  WALL_MS=$((t1 - t0))
}

# bench_stats NAME DIVISOR VALUES...: one line, NAME then the median, min,
# max and spread (max - min) of VALUES / DIVISOR (integers when DIVISOR is
# 1, one decimal otherwise). bench_stats_header prints the column heads.
bench_stats_header() { printf '%-46s %9s %9s %9s %9s\n' "$1" median min max spread; }
bench_stats() {
  local name=$1 div=$2; shift 2
  printf '%s\n' "$@" | sort -n | awk -v n="$name" -v d="$div" '{a[NR]=$1/d}
    END {m = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; f = (d == 1) ? "%9.0f" : "%9.1f";
         printf "%-46s " f " " f " " f " " f "\n", n, m, a[1], a[NR], a[NR]-a[1]}'
}

# What the benchmarks through a private containerd (ctr-run.sh,
# warm-start.sh) share: one timed command, and the table of the runtimes'
# times against runc's.
# bench_timed CMD...: runs CMD (its stdout dropped); prints its wall time
# in seconds.
bench_timed() {
  local t0 t1
  t0=$(date +%s%N)
  "$@" >/dev/null
  t1=$(date +%s%N)
  echo "$(( (t1 - t0) / 1000000 ))" | awk '{printf "%.3f\n", $1 / 1000}'
}
# bench_file_stats FILE: "median min max spread" of FILE's numbers, one a line.
bench_file_stats() {
  sort -n "$1" | awk '{a[NR]=$1} END {m = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2;
                       printf "%.3f %.3f %.3f %.3f\n", m, a[1], a[NR], a[NR]-a[1]}'
}
# bench_runc_table RUNC_FILE NAME=FILE...: the head, runc's row, then a row
# per NAME with the ratio of its median to runc's.
bench_runc_table() {
  local rfile=$1 kv name file rmed rmin rmax rspread med min max spread; shift
  printf '%-10s %8s %8s %8s %8s %8s   %s\n' "(seconds)" median min max spread "x runc" runs
  read -r rmed rmin rmax rspread < <(bench_file_stats "$rfile")
  printf '%-10s %8s %8s %8s %8s %8s   %s\n' runc "$rmed" "$rmin" "$rmax" "$rspread" 1.0 "$(tr '\n' ' ' < "$rfile")"
  for kv in "$@"; do
    name=${kv%%=*} file=${kv#*=}
    read -r med min max spread < <(bench_file_stats "$file")
    printf '%-10s %8s %8s %8s %8s %8s   %s\n' "$name" "$med" "$min" "$max" "$spread" \
      "$(awk -v a="$med" -v b="$rmed" 'BEGIN {printf "%.1f", a / b}')" "$(tr '\n' ' ' < "$file")"
  done
}
