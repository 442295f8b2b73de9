#!/usr/bin/env bash
# The test suite: unit tests, the stub filter test, guest programs, busybox
# applets and bad inputs, on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo test --workspace --quiet
cargo bench --no-run --quiet
