#!/bin/sh
# Makes a small base image for the examples without pulling anything: a busybox userland from
# Debian's busybox-static (apt-get install busybox-static), written as an OCI image layout.
#
#   sh examples/make-busybox-base.sh [DIR]      # default DIR: /tmp/stratum-busybox
#   FROM oci:/tmp/stratum-busybox:latest        # in a Dockerfile (or pass --build-arg BASE=...)
#
# DIR is replaced only when this script made it (it leaves a marker file there): an existing
# directory it did not make, or one another user owns, is refused, never removed.
#
# The layer is packed with sorted names, numeric owners and a fixed mtime, and gzip without a
# name or time, so the same busybox binary always gives the same image digest.
set -eu

out=${1:-/tmp/stratum-busybox}
marker=.made-by-make-busybox-base
busybox=${BUSYBOX:-/bin/busybox}
if ! "$busybox" --list >/dev/null 2>&1; then
  echo "make-busybox-base.sh: $busybox is not a busybox binary; apt-get install busybox-static" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/root" "$root/tmp" "$root/home/app" "$root/usr/bin" "$root/var"
chmod 1777 "$root/tmp"
chmod 700 "$root/root"
cp "$busybox" "$root/bin/busybox"
chmod 755 "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'daemon:x:1:1:daemon:/usr/sbin:/bin/false' \
  'app:x:1000:1000:app user:/home/app:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' \
  >"$root/etc/passwd"
printf '%s\n' 'root:x:0:' 'daemon:x:1:' 'app:x:1000:' 'staff:x:50:app' 'nogroup:x:65534:' >"$root/etc/group"
# As root, home/app belongs to app; otherwise every entry is recorded as root-owned.
owners=
if [ "$(id -u)" = 0 ]; then chown 1000:1000 "$root/home/app"; else owners='--owner=0 --group=0'; fi

# shellcheck disable=SC2086
tar -C "$root" --sort=name --numeric-owner $owners --mtime=@1700000000 -cf "$work/layer.tar" .
diff_id=$(sha256sum <"$work/layer.tar" | cut -d' ' -f1)
gzip -n -6 <"$work/layer.tar" >"$work/layer.tar.gz"
layer=$(sha256sum <"$work/layer.tar.gz" | cut -d' ' -f1)
layer_size=$(wc -c <"$work/layer.tar.gz" | tr -d ' ')

printf '{"architecture":"amd64","os":"linux","created":"2023-11-14T22:13:20Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"2023-11-14T22:13:20Z","created_by":"busybox base (examples/make-busybox-base.sh)"}]}' \
  "$diff_id" >"$work/config.json"
config=$(sha256sum <"$work/config.json" | cut -d' ' -f1)
config_size=$(wc -c <"$work/config.json" | tr -d ' ')
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
  "$config" "$config_size" "$layer" "$layer_size" >"$work/manifest.json"
manifest=$(sha256sum <"$work/manifest.json" | cut -d' ' -f1)
manifest_size=$(wc -c <"$work/manifest.json" | tr -d ' ')

printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
  "$manifest" "$manifest_size" >"$work/index.json"

if [ -e "$out" ] || [ -L "$out" ]; then
  if [ -d "$out" ] && [ ! -L "$out" ] && cmp -s "$work/index.json" "$out/index.json" &&
    [ -f "$out/blobs/sha256/$layer" ] && [ -f "$out/blobs/sha256/$config" ] && [ -f "$out/blobs/sha256/$manifest" ]; then
    # The same image is already there (the build is reproducible): nothing to replace.
    echo "oci:$out:latest"
    exit 0
  fi
  if [ -L "$out" ] || [ ! -d "$out" ] || [ ! -f "$out/$marker" ] || [ ! -O "$out" ]; then
    echo "make-busybox-base.sh: $out exists and was not made by this script as $(id -un); refusing to replace it (pass another DIR)" >&2
    exit 1
  fi
  rm -rf "$out"
fi
mkdir -p "$out/blobs/sha256"
: >"$out/$marker"
cp "$work/layer.tar.gz" "$out/blobs/sha256/$layer"
cp "$work/config.json" "$out/blobs/sha256/$config"
cp "$work/manifest.json" "$out/blobs/sha256/$manifest"
printf '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"
cp "$work/index.json" "$out/index.json"
echo "oci:$out:latest"
