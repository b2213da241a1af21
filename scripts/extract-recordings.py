#!/usr/bin/env python3
"""Extracts the facts esmd's conformance suite (tests/conformance.rs) compares against from
LocalStack's AWS-recorded snapshots of event source mappings, into
tests/recordings/aws-esm.json.

LocalStack (Apache-2.0) records its integration tests against real AWS and keeps the
recorded responses, with account ids, ARNs, uuids, timestamps and receipt handles masked as
`<...>`. The key sets, value types, unmasked values and the order of invocations are AWS's.
Only recorded data is copied (no test code); each entry names the file and test it came from.

usage: scripts/extract-recordings.py /path/to/localstack-checkout [--out FILE]
"""
import argparse
import json
import pathlib
import subprocess
import sys

DIR = "tests/aws/services/lambda_/event_source_mapping"

# file -> test -> the recorded entries esmd's replay uses
SELECT = {
    "test_lambda_integration_sqs.snapshot.json": {
        "test_report_batch_item_failures": [
            "create_event_source_mapping", "first_invocation", "second_invocation", "dlq_response"],
        "test_failing_lambda_retries_after_visibility_timeout": [
            "event_source_mapping", "first_attempt", "second_attempt"],
        "test_message_body_and_attributes_passed_correctly": ["first_attempt"],
        "test_sqs_event_source_mapping": ["create-event-source-mapping-response", "events"],
        "test_duplicate_event_source_mappings": ["create", "error"],
        **{f"test_sqs_event_filter[{case}]": [
            "create_event_source_mapping_response", "invocation_events"]
           for case in ["single", "or", "and", "exists", "numeric-bigger", "numeric-smaller",
                        "numeric-range", "prefix", "valid-json-filter"]},
        **{f"test_sqs_invalid_event_filter[{case}]": ["create_event_source_mapping_exception"]
           for case in ["None", "simple string", "invalid_filter2", "invalid_filter3"]},
    },
    "test_lambda_integration_kinesis.snapshot.json": {
        "test_create_kinesis_event_source_mapping": [
            "create_event_source_mapping_response", "kinesis_records"],
        "test_kinesis_event_source_mapping_with_on_failure_destination_config": [
            "create_event_source_mapping_response", "sqs_payload"],
        "test_kinesis_report_batch_item_failures": [
            "create_event_source_mapping_response", "sqs_payload", "kinesis_records"],
        "test_kinesis_event_source_mapping_with_sns_on_failure_destination_config": [
            "failure_sns_message"],
        "test_kinesis_event_source_mapping_with_s3_on_failure_destination": ["record_body"],
    },
    "test_lambda_integration_dynamodbstreams.snapshot.json": {
        "test_dynamodb_event_source_mapping": [
            "create_event_source_mapping_response", "event_logs"],
        "test_dynamodb_event_source_mapping_with_on_failure_destination_config": [
            "create_event_source_mapping_response", "destination_queue_messages"],
        "test_dynamodb_event_source_mapping_with_sns_on_failure_destination_config": [
            "failure_sns_message"],
        "test_dynamodb_event_source_mapping_with_s3_on_failure_destination": ["record_body"],
    },
}


def strip_metadata(value):
    """Drops botocore's ResponseMetadata, except the HTTP status code (kept as a fact)."""
    if isinstance(value, dict):
        out = {k: strip_metadata(v) for k, v in value.items() if k != "ResponseMetadata"}
        meta = value.get("ResponseMetadata")
        if isinstance(meta, dict) and "HTTPStatusCode" in meta:
            out["$status"] = meta["HTTPStatusCode"]
        return out
    if isinstance(value, list):
        return [strip_metadata(v) for v in value]
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkout", type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parent.parent
                        / "tests" / "recordings" / "aws-esm.json")
    args = parser.parse_args()
    try:
        commit = subprocess.run(["git", "-C", str(args.checkout), "rev-parse", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        commit = "unknown"
    out = {
        "source": "https://github.com/localstack/localstack (Apache-2.0), recorded against AWS",
        "commit": commit,
        "directory": DIR,
        "recordings": {},
    }
    for file, tests in SELECT.items():
        snapshot = json.loads((args.checkout / DIR / file).read_text())
        for test, keys in tests.items():
            matches = [k for k in snapshot if k.endswith("::" + test)]
            if len(matches) != 1:
                sys.exit(f"{file}: expected one recording of {test}, found {len(matches)}")
            content = snapshot[matches[0]]["recorded-content"]
            missing = [k for k in keys if k not in content]
            if missing:
                sys.exit(f"{file}::{test}: no recorded {missing}")
            out["recordings"][test] = {
                "file": f"{DIR}/{file}",
                "test": matches[0],
                "recorded_date": snapshot[matches[0]].get("recorded-date"),
                "facts": {k: strip_metadata(content[k]) for k in keys},
            }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, sort_keys=False) + "\n")
    print(f"{args.out}: {len(out['recordings'])} recordings from {commit}")


if __name__ == "__main__":
    main()
