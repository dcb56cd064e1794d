#!/usr/bin/env bash
# Builds the `base` sandbox image: a Debian rootfs made with mmdebstrap (no
# container registry needed), used as a directory by the bwrap driver and
# imported into Docker as sandbox-runner/base:latest when an engine answers.
#
#   sandbox-images/base/build.sh [--force] [--no-docker]
#
# Env: SANDBOX_IMAGES_OUT (default sandbox-images/out), DEBIAN_SUITE (bookworm),
#      DEBIAN_MIRROR (default: mmdebstrap's, deb.debian.org; point it at a local
#      mirror on an air-gapped site), APT_CACHE_DIR (default OUT/.apt-cache).
# Idempotent: a stamp (hash of this script and the package list) skips the
# rootfs build and the import when nothing changed; --force rebuilds both.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
name="$(basename "$here")"
out_root="${SANDBOX_IMAGES_OUT:-$here/../out}"
mkdir -p "$out_root"
out_root="$(cd "$out_root" && pwd)"
out="$out_root/$name"
rootfs="$out/rootfs"
suite="${DEBIAN_SUITE:-bookworm}"
cache="${APT_CACHE_DIR:-$out_root/.apt-cache}"
tag="sandbox-runner/$name:latest"

force=0
docker_import=1
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --no-docker) docker_import=0 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $arg; use --force or --no-docker" >&2; exit 2 ;;
  esac
done

log() { echo "[image $name] $*" >&2; }

packages="$(grep -v '^\s*#' "$here/packages.txt" | grep -v '^\s*$' | paste -sd, -)"
stamp_value="$( { cat "$here/build.sh" "$here/packages.txt"; echo "$suite ${DEBIAN_MIRROR:-}"; } | sha256sum | cut -c1-16)"
stamp_file="$out/stamp"

if [[ $force == 0 && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp_value" && -x "$rootfs/bin/bash" ]]; then
  log "rootfs up to date ($rootfs)"
else
  command -v mmdebstrap >/dev/null || { echo "mmdebstrap is not installed; run: apt-get install -y mmdebstrap" >&2; exit 1; }
  log "building rootfs with mmdebstrap ($suite: $packages)"
  mkdir -p "$out" "$cache"
  tmp="$out/rootfs.tmp"
  rm -rf "$tmp" "$stamp_file"
  mirror_args=()
  [[ -n "${DEBIAN_MIRROR:-}" ]] && mirror_args=("$DEBIAN_MIRROR")
  # The apt cache is synced in and out so that a rebuild downloads nothing new.
  # Docs, man pages and locales are left out: the image is for running code.
  mmdebstrap --variant=minbase --mode=root --format=directory \
    --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --skip=essential/unlink --skip=cleanup/run \
    --setup-hook='mkdir -p "$1/var/cache/apt/archives/"' \
    --setup-hook="sync-in '$cache' /var/cache/apt/archives/" \
    --customize-hook="sync-out /var/cache/apt/archives '$cache'" \
    --customize-hook='chroot "$1" groupadd --gid 1000 sandbox' \
    --customize-hook='chroot "$1" useradd --uid 1000 --gid 1000 --create-home --home-dir /home/sandbox --shell /bin/bash sandbox' \
    --customize-hook='mkdir -p "$1/workspace" "$1/run/sandbox-egress" && chown 1000:1000 "$1/workspace" && chmod 0755 "$1/workspace"' \
    --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb "$1"/etc/machine-id; echo sandbox > "$1/etc/hostname"' \
    "$suite" "$tmp" "${mirror_args[@]}"
  rm -rf "$rootfs"
  mv "$tmp" "$rootfs"
  echo "$stamp_value" > "$stamp_file"
  log "rootfs ready: $rootfs ($(du -sh "$rootfs" | cut -f1))"
fi

if [[ $docker_import == 1 ]]; then
  if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
    log "no Docker engine answers; skipped docker import (the bwrap image is ready)"
    exit 0
  fi
  current="$(docker image inspect -f '{{index .Config.Labels "sandbox-runner.stamp"}}' "$tag" 2>/dev/null || true)"
  if [[ $force == 0 && "$current" == "$stamp_value" ]]; then
    log "docker image $tag up to date"
  else
    log "importing $tag into Docker"
    tar -C "$rootfs" --numeric-owner -cf - . | docker import \
      --change 'USER 1000:1000' \
      --change 'WORKDIR /workspace' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["/bin/bash"]' \
      --change "LABEL sandbox-runner.image=$name sandbox-runner.stamp=$stamp_value" \
      - "$tag" >/dev/null
    log "docker image $tag imported"
  fi
fi
