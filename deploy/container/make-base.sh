#!/usr/bin/env bash
# Make a local base image (Debian bookworm + python3 + python3-venv) for the Dockerfiles' build-arg
# when no registry is reachable, with debootstrap and buildah (both Debian packages; run as root).
#   deploy/container/make-base.sh [TAG] [ARCH]      default TAG localhost/edgewatch-base:bookworm, ARCH amd64
#   buildah build --isolation chroot --build-arg PYTHON_IMAGE=localhost/edgewatch-base:bookworm \
#     -f deploy/container/Dockerfile.cpu -t edgewatch:cpu .
# The root file system is cached in $EDGEWATCH_BASE_CACHE (default /var/cache/edgewatch-test), so a
# second run only re-imports it. The host's CA bundle is copied in (TLS may be intercepted on the way
# to the package index) and PIP_CERT points at it.
set -euo pipefail
TAG=${1:-localhost/edgewatch-base:bookworm}
ARCH=${2:-amd64}
CACHE=${EDGEWATCH_BASE_CACHE:-/var/cache/edgewatch-test}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOTFS="$CACHE/rootfs-bookworm-$ARCH"

if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
  rm -rf "$ROOTFS.partial"
  mkdir -p "$CACHE"
  debootstrap --arch="$ARCH" --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$ROOTFS.partial" "$MIRROR"
  rm -rf "$ROOTFS.partial/var/cache/apt/archives/"*.deb "$ROOTFS.partial/var/lib/apt/lists/"*
  mv "$ROOTFS.partial" "$ROOTFS"
fi
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
fi

if buildah inspect --type image "$TAG" >/dev/null 2>&1; then
  echo "$TAG already present"
  exit 0
fi
ctr=$(buildah from --arch "$ARCH" scratch)
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$(buildah mount "$ctr")
tar -C "$ROOTFS" -cf - . | tar -C "$mnt" -xf -
buildah umount "$ctr" >/dev/null
buildah config --arch "$ARCH" --os linux --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
  --env LANG=C.UTF-8 --cmd /usr/bin/python3 "$ctr"
buildah commit --quiet "$ctr" "$TAG" >/dev/null
echo "$TAG built from $ROOTFS"
