#!/usr/bin/env bash
# bench/warm-start.sh [N]: `ctr run --rm IMAGE ID true` through one private
# containerd: runc, cask cold (pool.enabled = false) and cask warm (a VM
# taken from `cask-runtime pool serve`, size 1), N (default 5, at least 5)
# interleaved rounds; prints every time, median, min, max, spread and the
# ratio to runc. Before each warm run the pool is given time to have its VM
# ready again (the time of a warm start, not of an empty pool). A benchmark,
# not a test. Environment as tests/pool/e2e.sh (SHIM_BIN, CASK_RUNTIME,
# GUEST_DIR).
E2E_KIND=containerd E2E_TMP_PREFIX=cask-pool-bench
source "$(dirname "$0")/../tests/lib/e2e.sh"
BENCH_NAME=warm-start
source "$(dirname "$0")/lib.sh"
: "${CASK_RUNTIME:?CASK_RUNTIME must point at cask-runtime}"

n=${1:-5}
[ "$n" -ge 5 ] 2>/dev/null || { echo "warm-start: N must be a number >= 5" >&2; exit 2; }
setup

POOL_DIR=$W/pool
write_cask_config "$W/cold.toml" '[pool]' 'enabled = false'
write_cask_config "$W/warm.toml" '[pool]' 'size = 1' "socket = \"$POOL_DIR/pool.sock\"" \
  "state_dir = \"$POOL_DIR\"" "cgroup_parent = \"cask-pool-bench-$$\""
"$CASK_RUNTIME" pool serve --config "$W/warm.toml" >> "$W/pool.log" 2>&1 &
POOL_PID=$!
stop_pool() {
  kill -TERM "$POOL_PID" 2>/dev/null || true
  wait "$POOL_PID" 2>/dev/null || true
  local d
  for d in $(find /sys/fs/cgroup -maxdepth 6 -type d -name "cask-pool-bench-$$" 2>/dev/null); do rmdir "$d" 2>/dev/null || true; done
}
e2e_defer stop_pool
pool_ready() { "$CASK_RUNTIME" pool status --config "$W/warm.toml" 2>/dev/null | grep -x "ready 1" >/dev/null; }

: > "$W/runc.times"; : > "$W/cold.times"; : > "$W/warm.times"
for i in $(seq 1 "$n"); do
  bench_timed ctr_ run --rm --runtime io.containerd.runc.v2 "$IMAGE" runc$i true >> "$W/runc.times"
  bench_timed ctr_ run --rm --runtime "$RUNTIME" --runtime-config-path "$W/cold.toml" "$IMAGE" cold$i true >> "$W/cold.times"
  wait_for 240 pool_ready || { cat "$W/pool.log" >&2; fail "the pool has no ready VM"; }
  sleep 1  # let the replacement's boot settle off the CPUs
  bench_timed ctr_ run --rm --runtime "$RUNTIME" --runtime-config-path "$W/warm.toml" "$IMAGE" warm$i true >> "$W/warm.times"
  echo "round $i/$n: runc $(tail -1 "$W/runc.times") s, cold $(tail -1 "$W/cold.times") s, warm $(tail -1 "$W/warm.times") s" >&2
done
warm_runs=$(grep -c 'from_pool=true' "$W/containerd.log" || true)

echo "ctr run --rm $IMAGE … true: $n interleaved rounds, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); $warm_runs of $n warm runs took the pool's VM"
bench_runc_table "$W/runc.times" "cask cold=$W/cold.times" "cask warm=$W/warm.times"
[ "$warm_runs" -eq "$n" ] || fail "only $warm_runs of $n warm runs took a VM from the pool"
