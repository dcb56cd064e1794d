#!/usr/bin/env bash
# Observability prerequisites for CI and a fresh Debian 12 host (as root):
# promtool, from Debian's prometheus package, checks the /metrics page in the
# tests. Only the binary is wanted: the package's service is neither enabled nor
# started here. Idempotent; run by .ci/run (every .ci/setup.d/*.sh in order).
set -euo pipefail

log() { echo "[setup observability] $*" >&2; }

if command -v promtool >/dev/null; then
  log "promtool present: $(promtool --version 2>&1 | head -n 1)"
  exit 0
fi

log "installing prometheus (for promtool)"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d exit 101 keeps the package's maintainer scripts from starting the
# service where an init system would; removed again afterwards.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  created_policy=1
fi
cleanup() { if ((created_policy)); then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v systemctl >/dev/null && systemctl disable --now prometheus >/dev/null 2>&1 || true

log "promtool installed: $(promtool --version 2>&1 | head -n 1)"
