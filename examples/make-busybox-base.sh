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
# The image is made by examples/busybox-base.js (node), the builder the tests and benchmarks use:
# sorted names, numeric owners, a fixed mtime, gzip without a name or time, so the same busybox
# binary always gives the same image digest.
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
# The image itself comes from the builder the tests and benchmarks use.
BUSYBOX=$busybox node "$(dirname "$0")/busybox-base.js" "$work/image" 'busybox base (examples/make-busybox-base.sh)'
index=$work/image/index.json
blobs_present=true
for blob in "$work"/image/blobs/sha256/*; do
  [ -f "$out/blobs/sha256/${blob##*/}" ] || blobs_present=false
done

if [ -e "$out" ] || [ -L "$out" ]; then
  if [ -d "$out" ] && [ ! -L "$out" ] && cmp -s "$index" "$out/index.json" && $blobs_present; then
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
mkdir -p "$out"
: >"$out/$marker"
cp -R "$work/image/blobs" "$work/image/oci-layout" "$out/"
cp "$index" "$out/index.json"
echo "oci:$out:latest"
