#!/usr/bin/env bash
# The main job, end to end on this machine: moto server (SQS), a sample function, and esmd
# running config/sqs.toml. Sends messages and shows them arriving at the function and being
# deleted from the queue, then stops esmd with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_PORT=${MOTO_PORT:-5123}
FUNCTION_PORT=${FUNCTION_PORT:-9001}
ADMIN=http://127.0.0.1:9464
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if ! command -v moto_server >/dev/null 2>&1; then
  echo "== installing moto server"
  python3 -m pip install --quiet 'moto[server]'
fi
echo "== building esmd"
cargo build --quiet

export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT
export AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:$FUNCTION_PORT

echo "== starting moto server on :$MOTO_PORT and the sample function on :$FUNCTION_PORT"
moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$work/moto.log" 2>&1 & pids+=($!)
python3 scripts/sample_function.py "$FUNCTION_PORT" & pids+=($!)
for _ in $(seq 100); do curl -fs "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1 && break; sleep 0.1; done

sqs() { python3 - "$@" <<'PY'
import os, sys, boto3
c = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
cmd = sys.argv[1]
if cmd == "create":
    print(c.create_queue(QueueName="orders")["QueueUrl"])
elif cmd == "send":
    url = c.get_queue_url(QueueName="orders")["QueueUrl"]
    for i in range(int(sys.argv[2])):
        c.send_message(QueueUrl=url, MessageBody='{"orderId": %d}' % i)
elif cmd == "count":
    url = c.get_queue_url(QueueName="orders")["QueueUrl"]
    a = c.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    print(int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"]))
PY
}

echo "== creating queue: $(sqs create)"
echo "== starting esmd with config/sqs.toml"
(cd "$work" && exec "$OLDPWD/target/debug/esmd" run --config "$OLDPWD/config/sqs.toml") & esmd_pid=$!; pids+=($esmd_pid)
for _ in $(seq 100); do curl -fs "$ADMIN/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fs "$ADMIN/readyz"

echo "== sending 5 messages"
sqs send 5
for _ in $(seq 100); do [ "$(sqs count)" = 0 ] && break; sleep 0.2; done
echo "== messages left in the queue: $(sqs count)"
echo "== esmd metrics:"
curl -fs "$ADMIN/metrics" | grep -E '^esmd_(polled|invoked|deleted)_events_total'
echo "== mapping state:"
curl -fs "$ADMIN/mappings"; echo
echo "== stopping esmd (SIGTERM)"
kill -TERM "$esmd_pid"; wait "$esmd_pid" && echo "esmd exited 0"
