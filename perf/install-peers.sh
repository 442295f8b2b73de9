#!/usr/bin/env bash
# Installs what the perf/ scripts use and checks that the peers run here:
#   perf (Debian linux-perf), gVisor's runsc (Debian runsc), proot (Debian
#   proot), and the inferno flame graph tools (cargo install inferno).
#
#   perf/install-peers.sh        (as root; uses apt-get and cargo)
#
# gVisor: Debian bookworm ships runsc 0.0~20221219 as package `runsc` (from
# source package golang-gvisor-gvisor; there is no package named `gvisor`).
# `runsc --platform=ptrace do PROGRAM` works as root here only with
# --network=none: by default it sets up NAT with iptables, which is absent.
set -euo pipefail

[[ $(id -u) == 0 ]] || {
	echo "$0: run as root (apt-get install)" >&2
	exit 1
}
missing=()
command -v perf >/dev/null || missing+=(linux-perf)
command -v runsc >/dev/null || missing+=(runsc)
command -v proot >/dev/null || missing+=(proot)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
if [[ ${#missing[@]} -gt 0 ]]; then
	echo "installing ${missing[*]} with apt-get" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
if ! command -v inferno-flamegraph >/dev/null; then
	echo "installing inferno with cargo install inferno --locked" >&2
	cargo install inferno --locked --quiet
fi

# Check that each peer runs a static program.
work=$(mktemp -d "${TMPDIR:-/tmp}/sentry-peers.XXXXXX")
trap 'rm -rf "$work"' EXIT
printf 'int main(void) { return 0; }\n' >"$work/true.c"
gcc -O2 -static -o "$work/true" "$work/true.c"
failed=0
check() {
	if "$@" "$work/true" </dev/null >/dev/null 2>"$work/err"; then
		echo "ok: $*"
	else
		echo "FAILED: $* (exit status $?: $(tail -1 "$work/err"))" >&2
		failed=1
	fi
}
check runsc --platform=ptrace --network=none "do"
check proot
exit "$failed"
