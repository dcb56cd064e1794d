#!/usr/bin/env bash
# Sandbox prerequisites for CI and a fresh Debian 12 host (as root): bubblewrap,
# a Docker engine, mmdebstrap; then the base sandbox image (a rootfs directory
# for bwrap, imported into Docker). Idempotent: each step is skipped when done.
# Run by .ci/run (every .ci/setup.d/*.sh in order); safe to run by hand.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
log() { echo "[setup sandbox] $*" >&2; }

need=()
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v newuidmap >/dev/null || need+=(uidmap)
command -v prlimit >/dev/null || need+=(util-linux)
command -v docker >/dev/null || need+=(docker.io)
command -v dockerd >/dev/null || need+=(docker.io)
command -v runsc >/dev/null || need+=(runsc)
if ((${#need[@]})); then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" ca-certificates iptables >/dev/null
fi

# gVisor as a Docker runtime named runsc (test/integration/sandbox/docker-gvisor.test.ts),
# with no network of its own: the sandbox's network is Docker's (none by default).
# Merged into an existing daemon.json; a running engine reloads runtimes on SIGHUP.
runsc_path="$(command -v runsc)"
mkdir -p /etc/docker
changed="$(node - "$runsc_path" <<'JS'
const fs = require('node:fs');
const file = '/etc/docker/daemon.json';
const config = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : {};
const want = { path: process.argv[2], runtimeArgs: ['--network=none'] };
const before = JSON.stringify(config.runtimes?.runsc ?? null);
config.runtimes = { ...config.runtimes, runsc: want };
if (before !== JSON.stringify(want)) fs.writeFileSync(file, JSON.stringify(config, null, 2) + '\n');
process.stdout.write(before !== JSON.stringify(want) ? 'yes' : 'no');
JS
)"
if [[ "$changed" == yes ]] && docker info >/dev/null 2>&1; then
  log "registered the runsc runtime; reloading the running dockerd"
  pkill -HUP -x dockerd || true
  for _ in $(seq 1 20); do
    docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"' && break
    sleep 0.5
  done
fi

# Start an engine when none answers (no systemd on CI machines). Bounded wait.
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p /var/log
  setsid nohup dockerd >/var/log/dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  if ! docker info >/dev/null 2>&1; then
    log "dockerd did not answer within 30 s; last lines of /var/log/dockerd.log:"
    tail -n 20 /var/log/dockerd.log >&2 || true
    exit 1
  fi
  log "dockerd answers"
fi

"$repo/sandbox-images/base/build.sh"
