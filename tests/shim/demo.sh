#!/usr/bin/env bash
# tests/shim/demo.sh: the user's flow of issue 3 through a private
# containerd (its own root, state and socket; see tests/lib/e2e.sh), printing the
# host's and the container's `uname -r`:
#   ctr run -d --runtime io.containerd.cask.v2 docker.io/library/busybox:latest busybox
#   ctr container ls; ctr task exec --exec-id e1 busybox uname -r
#   ctr task kill busybox; ctr containers rm busybox
# Same environment as e2e.sh (SHIM_BIN, GUEST_DIR). The image's default
# command waits for SIGTERM, so the plain `ctr task kill` ends it.
E2E_KIND=containerd E2E_TMP_PREFIX=cask-shim-e2e
source "$(dirname "$0")/../lib/e2e.sh"

[ -f "$GUEST_DIR/vmlinux" ] && [ -f "$GUEST_DIR/initrd.img" ] || { echo "demo: no guest assets in $GUEST_DIR" >&2; exit 1; }
write_cask_config "$W/cask.toml"
start_containerd
"$HERE/mkimage.sh" "$W/busybox.tar" "$IMAGE" '["sh","-c","trap \"exit 0\" TERM; while :; do sleep 1; done"]'
ctr_ image import "$W/busybox.tar" >/dev/null

say() { echo "\$ $*"; }
say ctr run -d --runtime $RUNTIME $IMAGE busybox
run_cask -d "$IMAGE" busybox
say ctr container ls
ctr_ container ls
say ctr task exec --exec-id e1 busybox uname -r
guest=$(ctr_ task exec --exec-id e1 busybox uname -r | tr -d '\r')
echo "$guest"
say ctr task kill busybox
ctr_ task kill busybox
wait_for 60 status_is busybox STOPPED || fail "busybox did not stop"
ctr_ task rm busybox >/dev/null
say ctr containers rm busybox
ctr_ containers rm busybox
echo
echo "host kernel:      $(uname -r)"
echo "container kernel: $guest"
