#!/usr/bin/env bash
# Counts context switches and CPU migrations per system call: a `perf stat`
# recipe around the getpid loop (tests/guests/getpid_loop.c), natively and
# under the sentry on each platform.
#
#   perf/stat.sh [-n CALLS] [-a] [PLATFORM...]     (default: systrap ptrace)
#
# For each peer it runs the loop twice, with CALLS calls and with none, under
#   perf stat -e context-switches,cpu-migrations,task-clock
# and divides the difference by CALLS, so that start-up and exit drop out.
# Without -a, perf follows the command and all its children (the sentry, its
# workers and its stub processes: everything the sandbox costs, nothing
# else). With -a it counts system-wide (every CPU, every process: includes
# whatever else the machine is doing, so use it on a quiet machine); this
# also counts the idle task's switches, which a sleeping wait causes.
#
# Columns: cs/call and migr/call are context switches and CPU migrations per
# system call; cpu-ns/call is task-clock (CPU time of all threads) per call;
# wall-ns/call is what the guest measured around its loop.
#
# Environment: SENTRY=PATH uses that sentry binary instead of building one.
set -euo pipefail
# shellcheck source=perf/common.sh
source "$(dirname "$0")/common.sh"

calls=200000
scope=()
platforms=()
while [[ $# -gt 0 ]]; do
	case $1 in
	-n)
		[[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || die "-n needs a positive count"
		calls=$2
		shift 2
		;;
	-a) scope=(-a) && shift ;;
	-h | --help) usage ;;
	-*) die "unknown option $1 (see --help)" ;;
	*) platforms+=("$1") && shift ;;
	esac
done
[[ ${#platforms[@]} -gt 0 ]] || platforms=(systrap ptrace)

need perf "Debian: linux-perf"
find_sentry
make_workdir
build_guest "$work/getpid_loop" "$repo/tests/guests/getpid_loop.c"

# count N CMD...: runs CMD (the loop with N calls) under perf stat; prints
# "context-switches cpu-migrations task-clock-ms guest-ns", or returns 1
# with the reason in $work/why.
count() {
	local n=$1 status=0
	shift
	perf stat "${scope[@]}" -x, -e context-switches,cpu-migrations,task-clock \
		-o "$work/stat" -- "$@" "$work/getpid_loop" "$n" >"$work/out" 2>"$work/err" || status=$?
	if [[ $status != 0 ]]; then
		echo "exit status $status: $(grep -v '^$' "$work/err" | tail -1)" >"$work/why"
		return 1
	fi
	awk -F, -v ns="$(tail -1 "$work/out")" '
		$3 == "context-switches" { cs = $1 }
		$3 == "cpu-migrations" { mig = $1 }
		$3 == "task-clock" { tc = $1 }
		END { print cs + 0, mig + 0, tc + 0, ns + 0 }' "$work/stat"
}

printf '%-9s %9s %10s %10s %9s %10s %12s %13s\n' peer calls ctx-sw migr cs/call migr/call cpu-ns/call wall-ns/call
row() {
	local name=$1 full zero
	shift
	if ! full=$(count "$calls" "$@") || ! zero=$(count 0 "$@"); then
		printf '%-9s unavailable (%s)\n' "$name" "$(cat "$work/why")"
		return
	fi
	# shellcheck disable=SC2086 # two lists of four numbers
	set -- $full $zero
	awk -v name="$name" -v n="$calls" -v cs="$1" -v mig="$2" -v tc="$3" -v ns="$4" \
		-v cs0="$5" -v mig0="$6" -v tc0="$7" 'BEGIN {
		printf "%-9s %9d %10d %10d %9.3f %10.5f %12.0f %13.0f\n", name, n, cs, mig,
			(cs - cs0) / n, (mig - mig0) / n, (tc - tc0) * 1e6 / n, ns / n }'
}

row native
for p in "${platforms[@]}"; do
	row "$p" "$sentry" run --platform "$p" --
done
