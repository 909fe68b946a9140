#!/usr/bin/env bash
# tests/shim/mkimage.sh OUT.tar [NAME:TAG] [CMD-JSON]
#
# Writes a busybox OCI image as an oci-layout tar for `ctr image import`,
# without a registry: one layer holding Debian's static /bin/busybox and a
# symlink per applet, a config, a manifest and index.json annotated with
# io.containerd.image.name. The output is reproducible (fixed mtimes,
# sorted entries, gzip -n).
set -euo pipefail

out=${1:?usage: mkimage.sh OUT.tar [NAME:TAG] [CMD-JSON]}
name=${2:-docker.io/library/busybox:latest}
cmd=${3:-'["sh"]'}
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "mkimage.sh: $busybox not found (apt-get install busybox-static)" >&2; exit 1; }
file "$busybox" 2>/dev/null | grep 'statically linked' >/dev/null || \
  { echo "mkimage.sh: $busybox is not statically linked" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,dev,etc,proc,sys,tmp,root,run,var} "$work/layout/blobs/sha256"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
# One process for the ~400 applet links (a fork of ln each took seconds).
"$busybox" --list | perl -e 'my $d = shift; while (<STDIN>) { chomp; next if $_ eq "busybox";
  unlink "$d/$_"; symlink("busybox", "$d/$_") or die "symlink $d/$_: $!\n" }' "$root/bin"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/layer.tar" .
diff_id=$(sha "$work/layer.tar")
gzip -n -9 < "$work/layer.tar" > "$work/layer.tar.gz"
layer_digest=$(sha "$work/layer.tar.gz")
layer_size=$(size "$work/layer.tar.gz")
cp "$work/layer.tar.gz" "$work/layout/blobs/sha256/$layer_digest"

cat > "$work/config.json" <<JSON
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":$cmd,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},"history":[{"created_by":"cask tests/shim/mkimage.sh"}]}
JSON
config_digest=$(sha "$work/config.json")
config_size=$(size "$work/config.json")
cp "$work/config.json" "$work/layout/blobs/sha256/$config_digest"

cat > "$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config_digest","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$layer_digest","size":$layer_size}]}
JSON
manifest_digest=$(sha "$work/manifest.json")
manifest_size=$(size "$work/manifest.json")
cp "$work/manifest.json" "$work/layout/blobs/sha256/$manifest_digest"

tag=${name##*:}
cat > "$work/layout/index.json" <<JSON
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest_digest","size":$manifest_size,"annotations":{"io.containerd.image.name":"$name","org.opencontainers.image.ref.name":"$tag"}}]}
JSON
echo '{"imageLayoutVersion":"1.0.0"}' > "$work/layout/oci-layout"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/layout" -cf "$out" .
