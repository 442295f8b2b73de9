#!/usr/bin/env bash
# Profiles a sandboxed program with perf's cpu-clock software event (this VM
# has no hardware counters) and call graphs, then prints the hottest symbols
# per thread (worker-N are sentry workers; "sentry" threads in the stub
# process run the guest and the stub handler).
#
#   perf/profile.sh [sentry run options] -- PROGRAM [ARGS...]
#
# Output: perf.data in the current directory and a report on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "perf is not installed (Debian: linux-perf)" >&2; exit 1; }
cargo build --release --quiet
before=$(ls /tmp/perf-*.map 2>/dev/null || true)
SENTRY_PERF_MAP=1 perf record -e cpu-clock -F 10000 -g -o perf.data -- target/release/sentry run "$@" >/dev/null
perf report -i perf.data --no-children --sort comm,dso,sym --stdio 2>/dev/null >perf.report || true
grep -v '^$' perf.report | head -60 || true
rm -f perf.report
# Remove the stub symbol maps this run wrote (perf report needed them).
for m in $(ls /tmp/perf-*.map 2>/dev/null || true); do
  case " $before " in *" $m "*) ;; *) rm -f "$m" ;; esac
done
