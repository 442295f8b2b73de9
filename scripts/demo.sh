#!/usr/bin/env bash
# The main job: build the sentry and run a real static program sandboxed.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --quiet
# (fork is not served yet, so each command is its own sandboxed program)
target/release/sentry run -- /bin/busybox sh -c 'echo "hello from pid $$ inside the sandbox"'
target/release/sentry run -- /bin/busybox uname -a
target/release/sentry run -- /bin/busybox ls /
