#!/usr/bin/env bash
# Compares the sentry with its peers on one guest: the cost of a system call
# and the start-up time of a static /bin/true.
#
#   perf/peers.sh [-n CALLS] [-r RUNS] [-s STARTS] [--markdown]
#
# Peers, each run the same static binaries:
#   native            the program itself
#   sentry-systrap    sentry run --platform systrap
#   sentry-ptrace     sentry run --platform ptrace
#   runsc-ptrace      runsc --platform=ptrace --network=none do (gVisor; if
#                     runsc is on PATH: Debian package runsc)
#   proot             proot (ptrace-based; if installed)
# A peer that is missing or fails shows as "unavailable (reason)".
#
# Columns: ns/call is the guest's own measurement of CALLS raw getpid calls
# (tests/guests/getpid_loop.c, timed with CLOCK_MONOTONIC around the loop,
# so start-up is outside it), the median of RUNS (3) runs; start-up is the
# wall time of running a static `true` (main returns 0) under the peer, from
# fork to exit, the mean of STARTS (5) runs after one warm-up run; the
# x-columns are ratios to native and to sentry-systrap. Defaults: CALLS
# 100000.
#
# --markdown prints the table as Markdown, with the date, the CPU model and
# the number of CPUs in a caption line (for the README).
#
# Environment: SENTRY=PATH uses that sentry binary instead of building one.
set -euo pipefail
export LC_ALL=C
# shellcheck source=perf/common.sh
source "$(dirname "$0")/common.sh"

calls=100000
runs=3
starts=5
markdown=0
while [[ $# -gt 0 ]]; do
	case $1 in
	-n | -r | -s)
		[[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive count"
		case $1 in -n) calls=$2 ;; -r) runs=$2 ;; -s) starts=$2 ;; esac
		shift 2
		;;
	--markdown) markdown=1 && shift ;;
	-h | --help) usage ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done

find_sentry
make_workdir
build_guest "$work/getpid_loop" "$repo/tests/guests/getpid_loop.c"
printf 'int main(void) { return 0; }\n' >"$work/true.c"
build_guest "$work/true" "$work/true.c"

peers=(native sentry-systrap sentry-ptrace runsc-ptrace proot)

# wrapper PEER: sets the array $cmd to the command that runs a program under
# PEER, or returns 1 with the reason in $why.
wrapper() {
	case $1 in
	native) cmd=() ;;
	sentry-systrap) cmd=("$sentry" run --platform systrap --) ;;
	sentry-ptrace) cmd=("$sentry" run --platform ptrace --) ;;
	runsc-ptrace)
		if ! command -v runsc >/dev/null; then
			why="runsc is not installed: perf/install-peers.sh"
			return 1
		fi
		# No network: runsc's default sets up NAT with iptables.
		cmd=(runsc --platform=ptrace --network=none "do")
		;;
	proot)
		if ! command -v proot >/dev/null; then
			why="proot is not installed: perf/install-peers.sh"
			return 1
		fi
		cmd=(proot)
		;;
	esac
}

# run PROGRAM ARGS...: runs it under the current peer with its stdout
# captured (through a pipe: runsc writes a file stdout at offset 0); on
# failure sets $why and returns 1.
run() {
	local status=0
	"${cmd[@]}" "$@" </dev/null 2>"$work/err" | cat >"$work/out" || status=$?
	if [[ $status != 0 ]]; then
		why="exit status $status: $(grep -v '^$' "$work/err" | tail -1 | cut -c1-120)"
		return 1
	fi
}

# us T: $EPOCHREALTIME value T in microseconds.
us() {
	echo $((10#${1//[.,]/}))
}

# measure PEER: prints "NS_PER_CALL STARTUP_US", or returns 1 with the reason
# in $work/why (it runs in a command substitution: variables do not come back).
measure() {
	why=
	measure_peer "$1" || {
		echo "$why" >"$work/why"
		return 1
	}
}

measure_peer() {
	local i ns=() t0 t1 total=0
	wrapper "$1" || return 1
	for ((i = 0; i < runs; i++)); do
		run "$work/getpid_loop" "$calls" || return 1
		ns+=("$(tail -1 "$work/out")")
		[[ ${ns[-1]} =~ ^[0-9]+$ ]] || {
			why="the loop printed '${ns[-1]}', not a time"
			return 1
		}
	done
	run "$work/true" || return 1
	for ((i = 0; i < starts; i++)); do
		t0=$EPOCHREALTIME
		"${cmd[@]}" "$work/true" </dev/null >/dev/null 2>&1 || {
			why="static true failed under $1"
			return 1
		}
		t1=$EPOCHREALTIME
		total=$((total + $(us "$t1") - $(us "$t0")))
	done
	printf '%s\n' "${ns[@]}" | sort -n | awk -v n="$calls" -v startup="$((total / starts))" \
		'{ v[NR] = $1 } END { printf "%.1f %d\n", v[int((NR + 1) / 2)] / n, startup }'
}

for p in "${peers[@]}"; do
	echo "measuring $p..." >&2
	if r=$(measure "$p"); then
		echo "$p ok $r"
	else
		echo "$p unavailable $(cat "$work/why")"
	fi
done >"$work/results"

cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
awk -v md="$markdown" -v calls="$calls" -v runs="$runs" -v starts="$starts" -v cpu="${cpu:-unknown CPU}" \
	-v ncpu="$(nproc)" -v date="$(date '+%Y-%m-%d')" '
function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf(a / b < 1 ? "%.2f" : "%.1f", a / b) }
{
	name[NR] = $1; ok[NR] = ($2 == "ok")
	if (ok[NR]) { ns[NR] = $3; us[NR] = $4 }
	else { $1 = ""; $2 = ""; sub(/^ +/, ""); why[NR] = $0 }
	if ($1 == "native" && ok[NR]) { nns = ns[NR]; nus = us[NR] }
	if ($1 == "sentry-systrap" && ok[NR]) { sns = ns[NR]; sus = us[NR] }
}
END {
	if (md) {
		printf "getpid: %d raw calls, median of %d runs; start-up: static true, mean of %d runs. %s, %s (%d CPUs).\n\n", calls, runs, starts, date, cpu, ncpu
		print "| peer | ns/call | x native | x systrap | start-up (ms) | x native | x systrap |"
		print "|---|---:|---:|---:|---:|---:|---:|"
	} else {
		printf "getpid: %d raw calls (median of %d runs); start-up: static true (mean of %d runs)\n", calls, runs, starts
		printf "%s, %s, %d CPUs\n", date, cpu, ncpu
		printf "%-15s %9s %9s %9s %13s %9s %9s\n", "peer", "ns/call", "x native", "x systrap", "start-up ms", "x native", "x systrap"
	}
	for (i = 1; i <= NR; i++) {
		if (!ok[i]) {
			if (md) printf "| %s | unavailable (%s) | | | | | |\n", name[i], why[i]
			else printf "%-15s unavailable (%s)\n", name[i], why[i]
			continue
		}
		ms = sprintf("%.2f", us[i] / 1000)
		if (md) printf "| %s | %.1f | %s | %s | %s | %s | %s |\n", name[i], ns[i], ratio(ns[i], nns), ratio(ns[i], sns), ms, ratio(us[i], nus), ratio(us[i], sus)
		else printf "%-15s %9.1f %9s %9s %13s %9s %9s\n", name[i], ns[i], ratio(ns[i], nns), ratio(ns[i], sns), ms, ratio(us[i], nus), ratio(us[i], sus)
	}
}' "$work/results"
