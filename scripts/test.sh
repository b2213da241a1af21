#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests against a real moto server (started by
# the tests themselves on loopback). Installs moto server first if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

source ./scripts/install-emulators.sh

# Integration tests each start a moto server and an esmd process; two at a time suits a
# two-core machine.
exec cargo test --workspace --all-targets -- --test-threads="${ESMD_TEST_THREADS:-4}" "$@"
