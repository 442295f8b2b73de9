#!/usr/bin/env bash
# Profiles a sandboxed program with perf's cpu-clock software event (this VM
# has no hardware counters) and frame-pointer call graphs, renders a flame
# graph and prints the hottest functions per thread kind.
#
#   perf/profile.sh [-o OUT.svg] [sentry run options] -- PROGRAM [ARGS...]
#   perf/profile.sh --check [-o OUT.svg] [sentry run options]
#
# Output: the flame graph (default perf/flamegraph.svg), perf.data beside
# it, and on stdout the top functions by self time. The roots of the flame
# graph are the threads: worker-N and sentry are the sentry's own threads,
# stub is the stub process, where the guest's code and the stub's signal
# handler run.
#
# Symbols: sentry frames come from the sentry binary; stub frames from
# /tmp/perf-PID.map, which the sentry writes for each stub process when
# SENTRY_PERF_MAP=1 (set here, and removed again after the report); guest
# frames from the guest ELF's symbol table (see perf/guest-frames.awk:
# the guest's code is mapped from the sentry's memory file, which perf
# cannot read, so the script names those frames itself). Guest frames are
# named for PROGRAM when it is a static non-PIE ELF with a symbol table;
# build guests with -fno-omit-frame-pointer for whole guest call chains.
#
# --check compiles perf/spin.c, profiles it, and checks that the flame graph
# names sentry, stub and guest functions (exit 1 if one kind is missing).
#
# Environment: SENTRY=PATH uses that sentry binary instead of building one;
# PERF_FREQ=HZ sets the sampling rate (default 10000).
set -euo pipefail
# shellcheck source=perf/common.sh
source "$(dirname "$0")/common.sh"

out=$repo/perf/flamegraph.svg
check=0
sentry_opts=()
program=()
while [[ $# -gt 0 ]]; do
	case $1 in
	-o | --output)
		[[ $# -ge 2 ]] || usage
		out=$2
		shift 2
		;;
	--check)
		check=1
		shift
		;;
	-h | --help) usage ;;
	--)
		shift
		program=("$@")
		break
		;;
	*)
		sentry_opts+=("$1")
		shift
		;;
	esac
done
[[ $out == /* ]] || out=$PWD/$out
[[ $check == 1 || ${#program[@]} -gt 0 ]] || usage

need perf "Debian: linux-perf"
need nm "Debian: binutils"
need readelf "Debian: binutils"
if ! command -v inferno-collapse-perf >/dev/null || ! command -v inferno-flamegraph >/dev/null; then
	need cargo
	echo "inferno (flame graph tools) is missing: installing it with cargo install inferno --locked" >&2
	cargo install inferno --locked --quiet >&2 || die "cargo install inferno failed"
	export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
	need inferno-flamegraph
fi
find_sentry
make_workdir

if [[ $check == 1 ]]; then
	build_guest "$work/spin" "$repo/perf/spin.c" -g -fno-omit-frame-pointer
	program=("$work/spin" 20000)
fi

# The guest ELF, to name guest frames: PROGRAM as given, or found on PATH.
guest=${program[0]}
[[ $guest == */* ]] || guest=$(command -v "$guest" || echo "$guest")
syms=
lo=0
hi=0
if [[ -f $guest ]] && readelf -h "$guest" 2>/dev/null | grep -q 'Type: *EXEC'; then
	nm -n -S --defined-only "$guest" 2>/dev/null |
		awk 'NF == 4 && $3 ~ /^[tTwWi]$/ { print $1, $2, $4 }
		     NF == 3 && $2 ~ /^[tTwWi]$/ { print $1, 0, $3 }' >"$work/syms"
	# The executable LOAD segments' span: [lowest vaddr, highest vaddr + memsz).
	read -r lo hi < <(readelf -lW "$guest" | awk '
		function hex(s,  i, n) { sub(/^0x/, "", s); n = 0
			for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
			return n }
		$1 == "LOAD" && $0 ~ / R?W?E +0x/ { a = hex($3); e = a + hex($6)
			if (lo == "" || a < lo) lo = a; if (e > hi) hi = e }
		END { printf "%x %x\n", lo, hi }')
	if [[ -s $work/syms && $lo != "$hi" ]]; then
		syms=$work/syms
	else
		echo "note: $guest has no function symbols: guest frames stay unnamed" >&2
	fi
else
	echo "note: $guest is not a static non-PIE ELF: guest frames stay unnamed" >&2
fi

# Record. The guest's stdout goes to stderr so that stdout is the report.
data=${out%.svg}.perf.data
status=0
SENTRY_PERF_MAP=1 perf record -q -e cpu-clock -F "${PERF_FREQ:-10000}" -g -o "$data" -- \
	"$sentry" run "${sentry_opts[@]}" -- "${program[@]}" >&2 || status=$?
[[ $status == 0 ]] || echo "note: sentry run exited with status $status" >&2
[[ -s $data ]] || die "perf record wrote no data"

# Name guest frames, collapse the stacks, render.
perf script -i "$data" --show-mmap-events --show-task-events \
	-F comm,pid,tid,time,event,ip,sym,symoff,dso 2>/dev/null |
	awk -v syms="$syms" -v guest="$guest" -v lo="$lo" -v hi="$hi" \
		-v stubs_out="$work/stubs" -f "$repo/perf/guest-frames.awk" >"$work/script"
# The stub maps were read: remove those of this run's stub processes.
if [[ -s $work/stubs ]]; then
	while read -r pid; do rm -f "/tmp/perf-$pid.map"; done <"$work/stubs"
fi
inferno-collapse-perf --all "$work/script" >"$work/folded" 2>/dev/null ||
	die "inferno-collapse-perf could not read the perf script output"
[[ -s $work/folded ]] || die "no samples with call chains were recorded"
title="sentry run ${sentry_opts[*]} -- ${program[*]}"
inferno-flamegraph --title "${title//  / }" --subtitle "cpu-clock, $(date '+%F %H:%M')" \
	<"$work/folded" >"$out" || die "inferno-flamegraph failed"

# The report: self samples by thread kind (the stack's root) and leaf function.
awk '{ n = $NF; $NF = ""; sub(/ $/, ""); k = split($0, f, ";")
       comm = f[1]; sub(/-[0-9]+$/, "-N", comm)
       self[comm "\t" f[k]] += n; total += n }
     END { printf "%d samples; self time by thread (stack root) and function:\n", total
           for (s in self) printf "%6.2f%%\t%s\n", 100 * self[s] / total, s | "sort -t\"\t\" -k1,1 -rn" }' \
	"$work/folded" | awk -F'\t' 'NR == 1 { print; next } NR <= 41 { printf "%s  %-10s %s\n", $1, $2, $3 }'
echo "flame graph: $out (perf data: $data)"

if [[ $check == 1 ]]; then
	failed=0
	stub="stub:sentry_stub_"
	# On ptrace the stub's code runs only for memory commands (the guest's
	# syscalls stop under PTRACE_SYSEMU), too rarely to be sampled for sure:
	# there the check asks for the stub process's root frame instead.
	[[ " ${sentry_opts[*]} " != *" --platform ptrace "* && " ${sentry_opts[*]} " != *" --platform=ptrace "* ]] ||
		stub="stub process:sentry_stub_|stub \\("
	for kind in "sentry:worker_main|serve_until_idle" "$stub" "guest:guest_compute|guest_syscalls"; do
		if grep -Eq "<title>[^<]*(${kind#*:})" "$out"; then
			echo "check: $out names ${kind%%:*} functions (${kind#*:})"
		else
			echo "check: FAILED: $out names no ${kind%%:*} function (${kind#*:})" >&2
			failed=1
		fi
	done
	exit "$failed"
fi
exit 0
