# shellcheck shell=bash
# Shared by the perf/ scripts (sourced, not run).
#
#   repo          the repository's root
#   find_sentry   sets $sentry: $SENTRY if set, else builds the release
#                 binary (honouring CARGO_TARGET_DIR) and uses it
#   make_workdir  sets $work to a fresh temporary directory, removed at exit
#   build_guest   compiles a static guest from C with gcc -O2 -static
#   die           prints its arguments on stderr and exits 1
#   usage         prints the script's "#   perf/..." comment lines, exits 2

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() {
	echo "$(basename "$0"): $*" >&2
	exit 1
}

usage() {
	grep '^#   perf/' "$0" | sed 's/^#   /usage: /' >&2
	exit 2
}

need() {
	command -v "$1" >/dev/null || die "$1 is not installed${2:+ ($2)}"
}

find_sentry() {
	if [[ -n "${SENTRY:-}" ]]; then
		sentry=$SENTRY
		[[ -x "$sentry" ]] || die "SENTRY=$sentry is not an executable file"
		return
	fi
	need cargo
	echo "building the sentry (cargo build --release; set SENTRY=PATH to skip)" >&2
	(cd "$repo" && cargo build --release --quiet) || die "cargo build --release failed"
	sentry=${CARGO_TARGET_DIR:-$repo/target}/release/sentry
	[[ -x "$sentry" ]] || die "the build did not produce $sentry"
}

make_workdir() {
	work=$(mktemp -d "${TMPDIR:-/tmp}/sentry-perf.XXXXXX")
	# shellcheck disable=SC2064 # expand $work now: it is fixed from here on
	trap "rm -rf '$work'" EXIT
}

# build_guest OUT SOURCE [GCC OPTIONS...]
build_guest() {
	local out=$1 src=$2
	shift 2
	need gcc "Debian: gcc"
	gcc -O2 -static "$@" -o "$out" "$src" || die "cannot compile $src"
}
