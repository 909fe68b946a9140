#!/usr/bin/env bash
# tests/e2e/make-rootfs.sh DIR: a minimal busybox root filesystem for tests.
#
# DIR/bin/busybox (Debian busybox-static) with a symlink for every applet it
# lists, /etc/passwd and /etc/group with root and nobody, /etc/hostname, and
# empty mount points (proc, sys, dev, tmp, run, etc). Idempotent; DIR is
# created if needed. Needs nothing but busybox-static.
set -euo pipefail

die() { echo "make-rootfs: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: make-rootfs.sh DIR"
dir=$1
bb=${BUSYBOX:-/bin/busybox}
[ -x "$bb" ] || die "$bb not found (apt-get install busybox-static)"
# A dynamically linked busybox would need libraries inside the rootfs.
if file_out=$(LC_ALL=C readelf -l "$bb" 2>/dev/null) && grep -q 'INTERP' <<<"$file_out"; then
  die "$bb is dynamically linked; install busybox-static"
fi

mkdir -p "$dir"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,var,home}
chmod 1777 "$dir/tmp"
install -m 0755 "$bb" "$dir/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] && continue
  [ -e "$dir/bin/$applet" ] || ln -s busybox "$dir/bin/$applet"
done
cat > "$dir/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$dir/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
echo rootfs > "$dir/etc/hostname"
: > "$dir/etc/hosts"
: > "$dir/etc/resolv.conf"
