#!/usr/bin/env bash
# Installs what the integration tests and the fault campaign run against, when missing:
# moto server and aws-cli (PyPI), kinesis-local (npm, under .ci/node). Source it: it exports
# MOTO_SERVER.
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

# kinesis-local (the Kinesis engine LocalStack uses) where a shard must end or fan-out runs.
if [ ! -f .ci/node/node_modules/kinesis-local/main.js ] && [ -z "${KINESIS_LOCAL_DIR:-}" ]; then
  echo "installing kinesis-local (npm install kinesis-local@0.6.2 into .ci/node)" >&2
  mkdir -p .ci/node
  (cd .ci/node && npm install --silent --no-audit --no-fund kinesis-local@0.6.2)
fi
