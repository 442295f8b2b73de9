#!/usr/bin/env bash
# Installs what the sentry's demo and tests need on a fresh Debian machine:
# busybox-static (real static programs to run), gcc + musl-tools (test
# guests are compiled at test time). Idempotent and quiet when all is there.
set -euo pipefail
need=()
[ -x /bin/busybox ] || need+=(busybox-static)
command -v gcc >/dev/null || need+=(gcc)
command -v musl-gcc >/dev/null || need+=(musl-tools)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
