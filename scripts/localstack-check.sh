#!/usr/bin/env bash
# Runs esmd's SQS and Kinesis integration tests against LocalStack instead of moto.
#
# LocalStack runs on the host, without Docker: localstack-core 2026.3.0 in a Python 3.13
# virtualenv (.localstack/venv, created on first use from pyenv's 3.13 or $LOCALSTACK_PYTHON).
# Its DynamoDB and Lambda need Docker, so only SQS and Kinesis are checked (with SNS and S3 as
# failure destinations); the function side
# is the tests' own Invoke endpoint, as with moto. Not part of CI (it takes several minutes).
#
#   scripts/localstack-check.sh            the subset below
#   scripts/localstack-check.sh <filter>   only tests whose name contains <filter>
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.localstack/venv
PORT="${LOCALSTACK_PORT:-4566}"
if [ ! -x "$VENV/bin/python" ]; then
  python="${LOCALSTACK_PYTHON:-}"
  if [ -z "$python" ]; then
    python="$(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.13*/bin/python 2>/dev/null | tail -1)"
  fi
  [ -x "$python" ] || { echo "need Python 3.13 (pyenv install 3.13, or set LOCALSTACK_PYTHON)" >&2; exit 1; }
  echo "creating $VENV with localstack-core 2026.3.0" >&2
  "$python" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    'localstack-core[runtime]==2026.3.0' 'cbor2<6' 'pyopenssl==24.3.0' 'cryptography<45' service_identity
fi

log=.localstack/localstack.log
echo "starting LocalStack on 127.0.0.1:$PORT (log: $log)" >&2
OVERRIDE_IN_DOCKER=0 GATEWAY_LISTEN="127.0.0.1:$PORT" SERVICES=sqs,kinesis,sns,s3 \
  SQS_ENDPOINT_STRATEGY=path LOCALSTACK_VOLUME_DIR="$PWD/.localstack/volume" \
  "$VENV/bin/python" -m localstack.runtime.main >"$log" 2>&1 &
localstack=$!
trap 'kill $localstack 2>/dev/null; wait $localstack 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  if curl -sf "http://127.0.0.1:$PORT/_localstack/health" | grep -q '"sqs": "available"'; then
    break
  fi
  kill -0 $localstack 2>/dev/null || { echo "LocalStack exited; see $log" >&2; exit 1; }
  sleep 1
done

# Tests left out, and why (each is covered against moto in CI):
skip=(
  # On SIGTERM esmd abandons its pending long poll and releases the messages it gathered.
  # LocalStack keeps serving the abandoned poll, which receives a released message again and
  # hides it for the visibility timeout (300 s in this test): the message is not lost, but the
  # test's "visible at once" does not hold. See README, "Known limitations".
  shutdown_releases_gathered_messages_at_once
)
args=()
for t in "${skip[@]}"; do args+=(--skip "$t"); done

export ESMD_TEST_ENDPOINT="http://127.0.0.1:$PORT"
cargo test --no-fail-fast --test sqs --test kinesis -- --test-threads=1 "${args[@]}" "$@"
