#!/usr/bin/env bash
# The main job: build the sentry and run a real static program sandboxed.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --quiet
# A busybox shell with a pipeline, a subshell and a background job, on the
# default platform (systrap), then the same on the ptrace platform.
script='echo "hello from pid $$ inside the sandbox"; busybox ls / | busybox wc -l; (exit 3); echo "subshell said $?"; busybox sleep 0.1 & wait; busybox uname -a'
target/release/sentry run -- /bin/busybox sh -c "$script"
target/release/sentry run --platform ptrace -- /bin/busybox sh -c "$script"
