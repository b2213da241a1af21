#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests against a real moto server (started by
# the tests themselves on loopback). Installs moto server first if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing moto server (pip install 'moto[server]')" >&2
  python3 -m pip install --quiet 'moto[server]'
fi
export MOTO_SERVER="${MOTO_SERVER:-$(command -v moto_server)}"

# aws-cli drives the Lambda API tests (tests/lambda_api.rs), as a LocalStack user would.
if ! command -v aws >/dev/null 2>&1 && [ -z "${AWS_CLI:-}" ]; then
  echo "installing aws-cli (pip install awscli)" >&2
  python3 -m pip install --quiet awscli
fi

# kinesis-local (the Kinesis engine LocalStack uses) for the resharding test.
if [ ! -f .ci/node/node_modules/kinesis-local/main.js ] && [ -z "${KINESIS_LOCAL_DIR:-}" ]; then
  echo "installing kinesis-local (npm install kinesis-local@0.6.2 into .ci/node)" >&2
  mkdir -p .ci/node
  (cd .ci/node && npm install --silent --no-audit --no-fund kinesis-local@0.6.2)
fi

# Integration tests each start a moto server and an esmd process; two at a time suits a
# two-core machine.
exec cargo test --all-targets -- --test-threads="${ESMD_TEST_THREADS:-4}" "$@"
