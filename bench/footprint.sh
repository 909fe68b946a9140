#!/usr/bin/env bash
# bench/footprint.sh: host memory of idle cask pods through one private
# containerd. A benchmark, not a test. Same environment as
# tests/shim/e2e.sh (SHIM_BIN, GUEST_DIR).
#
#   bench/footprint.sh [--rounds R] [--pods N] [--settle S] [--variant NAME=TOML]...
#
# Part 1 (R rounds, default 5, interleaved over kernels x variants): one
# idle pod (`ctr run -d … sleep`, guest memory_mib = 256) per configuration
# at a time; records how long it took from `ctr run -d` until it answers
# exec and QEMU's CPU time by then, and S seconds (default 5) later, the PSS (/proc/PID/smaps_rollup)
# of its shim, QEMU and virtiofsd, and where QEMU's memory is: its RSS, the
# guest RAM the guest has touched (RSS of the memfd backing guest RAM), the
# vmlinux file mapping's PSS, the TCG translation buffer's RSS, and QEMU's
# other anonymous memory (heap, malloc arenas, stacks). Prints median, min,
# max per configuration.
#
# Part 2 (--pods N, default 0 = skip): concurrent starts. Starts N idle pods
# of the first configuration at once, checks that every one still answers
# exec, and reports their summed PSS and the drop of MemAvailable
# (bench/density.sh adds pods one by one instead).
#
# CASK_KERNELS="lean=DIR debian=DIR" names the guest asset dirs to compare
# (default: GUEST_DIR, named "cask"). --variant NAME=TOML (repeatable) adds
# a configuration whose [hypervisor] section has these extra lines (';'
# separates lines), e.g. --variant 'tb16=tcg_tb_size_mib = 16'; without
# --variant one variant, "default", runs cask's defaults. CASK_TOML_EXTRA:
# extra [hypervisor] lines for every configuration.
E2E_KIND=containerd E2E_TMP_PREFIX=cask-shim-e2e
source "$(dirname "$0")/../tests/lib/e2e.sh"

rounds=5 pods=0 settle=5
variants=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --pods) pods=$2; shift 2 ;;
    --settle) settle=$2; shift 2 ;;
    --variant) [[ "$2" == ?*=* ]] || { echo "footprint: --variant wants NAME=TOML, got '$2'" >&2; exit 2; }
      variants+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "footprint: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
setup

[ ${#variants[@]} -gt 0 ] || variants=("default=")
kernels=()
for kv in ${CASK_KERNELS:-cask=$GUEST_DIR}; do
  kname=${kv%%=*} dir=${kv#*=}
  [ -f "$dir/vmlinux" ] && [ -f "$dir/initrd.img" ] || { echo "footprint: no guest assets in $dir" >&2; exit 1; }
  for v in "${variants[@]}"; do
    vname=${v%%=*} vtoml=${v#*=}
    name=$kname
    [ ${#variants[@]} -eq 1 ] && [ "$vname" = default ] || name=$kname-$vname
    {
      echo '[hypervisor]'
      echo "kernel = \"$dir/vmlinux\""
      echo "initrd = \"$dir/initrd.img\""
      echo 'memory_mib = 256'
      [ -z "${CASK_TOML_EXTRA:-}" ] || printf '%s\n' "$CASK_TOML_EXTRA"
      [ -z "$vtoml" ] || printf '%s\n' "$vtoml" | tr ';' '\n'
      echo '[agent]'
      echo 'connect_timeout_ms = 600000'
      echo '[runtime]'
      echo "state_dir = \"$CASK_STATE\""
    } > "$W/cask-$name.toml"
    kernels+=("$name")
    : > "$W/$name.mem"
  done
done

pss_kib() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# PSS of QEMU's mappings of the kernel image file.
kernel_map_pss_kib() {
  awk -v f="$2" '/^[0-9a-f]+-[0-9a-f]+ / {m = ($6 == f)} m && /^Pss:/ {s += $2} END {print s + 0}' "/proc/$1/smaps" 2>/dev/null || echo 0
}
# RSS of the guest RAM QEMU maps (the memfd backend: what the guest touched
# and has not given back).
guest_ram_rss_kib() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / {m = ($6 ~ /^\/memfd:/)} m && /^Rss:/ {s += $2} END {print s + 0}' "/proc/$1/smaps" 2>/dev/null || echo 0
}
# QEMU's anonymous memory other than the TCG buffer (heap, malloc arenas,
# thread stacks, ROM copies).
other_anon_kib() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / {m = (NF == 5 && $2 != "rwxp") || $6 == "[heap]"} m && /^Rss:/ {s += $2} END {print s + 0}' "/proc/$1/smaps" 2>/dev/null || echo 0
}
# RSS of QEMU's TCG translation buffer (its anonymous rwx mapping).
tcg_buffer_rss_kib() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / {m = ($2 == "rwxp" && NF == 5)} m && /^Rss:/ {s += $2} END {print s + 0}' "/proc/$1/smaps" 2>/dev/null || echo 0
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

now_ms() { date +%s%3N; }
# CPU time (user + system) a process has used, ms: QEMU's once the pod
# answers is what booting cost, far less sensitive to load than wall time.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$1/stat" 2>/dev/null || echo 0; }
for r in $(seq 1 "$rounds"); do
  for k in "${kernels[@]}"; do
    id=fp-$k-$r
    t0=$(now_ms)
    start_idle "$k" "$id"
    wait_for 300 answers "$id" || fail "pod $id does not answer exec"
    t1=$(now_ms)
    boot_cpu_ms=$(cpu_ms "$(qemu_pids "$id" | head -1)")
    sleep "$settle"
    read -r shim qemu vfs < <(pod_pids "$id")
    [ -n "$qemu" ] && [ -n "$shim" ] && [ -n "$vfs" ] || fail "pod $id: shim '$shim' qemu '$qemu' virtiofsd '$vfs' not all found"
    vmlinux=$(sed -n 's/^kernel = "\(.*\)"/\1/p' "$W/cask-$k.toml")
    # Fields: shim qemu virtiofsd PSS, QEMU RSS, vmlinux map PSS, TCG buffer,
    # guest RAM, other anon (KiB); start → exec answers, QEMU CPU by then (ms).
    line="$(pss_kib "$shim") $(pss_kib "$qemu") $(pss_kib "$vfs") $(rss_kib "$qemu") $(kernel_map_pss_kib "$qemu" "$vmlinux") $(tcg_buffer_rss_kib "$qemu") $(guest_ram_rss_kib "$qemu") $(other_anon_kib "$qemu") $((t1 - t0)) $boot_cpu_ms"
    echo "$line" >> "$W/$k.mem"
    set -- $line
    echo "round $r/$rounds $k: PSS KiB shim $1 qemu $2 virtiofsd $3; QEMU RSS $4 = guest RAM $7 + TCG buffer $6 + other anon $8 + files (vmlinux PSS $5); up in $9 ms, QEMU CPU ${10} ms" >&2
    stop_pod "$id"
  done
done

med() { sort -n | awk '{a[NR]=$1} END {m = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%.1f [%.1f-%.1f]", m/1024, a[1]/1024, a[NR]/1024}'; }
echo "idle pod memory: $rounds interleaved rounds, settle ${settle}s, guest 256 MiB, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "MiB, median [min-max]; up_s: ctr run -d until the pod answers exec, s; boot_CPU_s: QEMU's CPU time by then, s"
cols=(pod_PSS shim_PSS QEMU_PSS virtiofsd_PSS QEMU_RSS guest_RAM TCG_buffer other_anon vmlinux_PSS up_s boot_CPU_s)
printf '%-14s' config; printf ' %-19s' "${cols[@]}"; echo
for k in "${kernels[@]}"; do
  f=$W/$k.mem
  printf '%-14s' "$k"
  for c in sum 1 2 3 4 7 6 8 5 9 10; do
    case $c in
      sum) v=$(awk '{print $1 + $2 + $3}' "$f" | med) ;;
      9|10) v=$(cut -d' ' -f$c "$f" | awk '{print $1 * 1.024}' | med) ;;  # med divides by 1024: ms -> s
      *) v=$(cut -d' ' -f$c "$f" | med) ;;
    esac
    printf ' %-19s' "$v"
  done
  echo
done
for k in "${kernels[@]}"; do echo "$k: $(grep -v '^\[' "$W/cask-$k.toml" | grep -v -e '^kernel \|^initrd\|^state_dir\|^connect_timeout' | tr '\n' ' ')"; done

[ "$pods" -gt 0 ] 2>/dev/null || exit 0
k=${kernels[0]}
avail0=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
t0=$(date +%s)
# `wait PIDS`, not a bare `wait` (that would wait for containerd too).
starts=()
for i in $(seq 1 "$pods"); do start_idle "$k" "dn-$i" & starts+=($!); done
wait "${starts[@]}" || true
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
stops=()
for i in $(seq 1 "$pods"); do stop_pod "dn-$i" & stops+=($!); done
wait "${stops[@]}"
