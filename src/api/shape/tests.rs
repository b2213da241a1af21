use serde_json::json;

use super::*;

const UUID: &str = "0b7a4a34-9a4e-4b36-9c1b-5f1f1ce0d7a1";

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn rendered(doc: &Value) -> Value {
    let mapping = to_mapping(&object(doc.clone()), UUID).unwrap();
    render(
        &mapping,
        &Status {
            state: "Enabled",
            last_modified: 1.0,
            last_processing_result: "OK".into(),
        },
    )
}

/// Every field given to Create comes back from Get unchanged (FunctionName comes back as
/// FunctionArn, as in AWS).
#[test]
fn every_sqs_field_round_trips() {
    let doc = json!({
        "EventSourceArn": "arn:aws:sqs:eu-west-1:111122223333:orders",
        "FunctionName": "process",
        "Enabled": false,
        "BatchSize": 50,
        "MaximumBatchingWindowInSeconds": 3,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "FilterCriteria": {"Filters": [{"Pattern": "{\"body\": {\"kind\": [\"a\"]}}"}]},
        "ScalingConfig": {"MaximumConcurrency": 7},
        "ProvisionedPollerConfig": {"MinimumPollers": 3, "MaximumPollers": 6},
        "MetricsConfig": {"Metrics": ["EventCount"]},
    });
    let out = rendered(&doc);
    for (key, value) in object(doc) {
        match key.as_str() {
            "FunctionName" => assert_eq!(
                out["FunctionArn"],
                "arn:aws:lambda:eu-west-1:111122223333:function:process"
            ),
            "Enabled" => {}
            _ => assert_eq!(out[&key], value, "{key}"),
        }
    }
    assert_eq!(out["UUID"], UUID);
    assert_eq!(
        out["EventSourceMappingArn"],
        format!("arn:aws:lambda:eu-west-1:111122223333:event-source-mapping:{UUID}")
    );
    assert!(out.get("StartingPosition").is_none(), "{out}");
}

#[test]
fn every_stream_field_round_trips() {
    let doc = json!({
        "EventSourceArn": "arn:aws:kinesis:us-east-1:123456789012:stream/clicks",
        "FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:f:live",
        "BatchSize": 500,
        "MaximumBatchingWindowInSeconds": 2,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "StartingPosition": "AT_TIMESTAMP",
        "StartingPositionTimestamp": 1_700_000_000.5,
        "ParallelizationFactor": 4,
        "BisectBatchOnFunctionError": true,
        "MaximumRetryAttempts": 3,
        "MaximumRecordAgeInSeconds": 3600,
        "TumblingWindowInSeconds": 30,
        "DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:123456789012:dlq"}},
    });
    let out = rendered(&doc);
    for (key, value) in object(doc) {
        match key.as_str() {
            "FunctionName" => assert_eq!(out["FunctionArn"], value),
            _ => assert_eq!(out[&key], value, "{key}"),
        }
    }
}

#[test]
fn stream_defaults_are_reported_as_aws_reports_them() {
    let out = rendered(&json!({
        "EventSourceArn": "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2024-01-01T00:00:00.000",
        "FunctionName": "123456789012:function:f",
        "StartingPosition": "LATEST",
    }));
    assert_eq!(out["BatchSize"], 100);
    assert_eq!(out["ParallelizationFactor"], 1);
    assert_eq!(out["MaximumRetryAttempts"], -1);
    assert_eq!(out["MaximumRecordAgeInSeconds"], -1);
    assert_eq!(out["TumblingWindowInSeconds"], 0);
    assert_eq!(out["BisectBatchOnFunctionError"], false);
    assert_eq!(out["DestinationConfig"], json!({"OnFailure": {}}));
    assert_eq!(out["FunctionResponseTypes"], json!([]));
    assert_eq!(
        out["FunctionArn"],
        "arn:aws:lambda:us-east-1:123456789012:function:f"
    );
}

#[test]
fn problems_name_aws_fields() {
    let doc = object(json!({
        "EventSourceArn": "arn:aws:sqs:us-east-1:123456789012:q",
        "FunctionName": "f",
        "BatchSize": 50,
        "FilterCriteria": {"Filters": [{"Pattern": "{\"a\": 1}"}]},
        "StartingPosition": "LATEST",
    }));
    let err = to_mapping(&doc, UUID).unwrap_err();
    assert_eq!(err.kind, "InvalidParameterValueException");
    assert_eq!(err.status, 400);
    for needle in [
        "MaximumBatchingWindowInSeconds",
        "FilterCriteria.Filters[0].Pattern",
        "StartingPosition",
    ] {
        assert!(err.message.contains(needle), "{needle} in {}", err.message);
    }
    assert!(!err.message.contains("batch_size"), "{}", err.message);

    let wrong_type = object(
        json!({"EventSourceArn": "arn:aws:sqs:us-east-1:123456789012:q", "FunctionName": "f", "BatchSize": "ten"}),
    );
    let err = to_mapping(&wrong_type, UUID).unwrap_err();
    assert_eq!(err.message, "BatchSize must be an integer");
}

#[test]
fn paths_translate_segment_by_segment() {
    assert_eq!(api_path("batch_size"), "BatchSize");
    assert_eq!(
        api_path("filter_criteria.filter[3].pattern"),
        "FilterCriteria.Filters[3].Pattern"
    );
    assert_eq!(
        api_path("destination_config.on_failure.destination_arn"),
        "DestinationConfig.OnFailure.Destination"
    );
    assert_eq!(
        api_path("scaling_config.maximum_concurrency"),
        "ScalingConfig.MaximumConcurrency"
    );
}

#[test]
fn unsupported_and_create_only_fields_are_refused_by_name() {
    let topics = object(json!({"FunctionName": "f", "Topics": ["t"]}));
    let err = check_fields(&topics, Operation::Create).unwrap_err();
    assert!(err.message.starts_with("Topics is not supported"), "{err}");

    let moved = object(json!({"StartingPosition": "LATEST"}));
    assert!(check_fields(&moved, Operation::Create).is_ok());
    let err = check_fields(&moved, Operation::Update).unwrap_err();
    assert!(
        err.message.contains("StartingPosition cannot be changed"),
        "{err}"
    );

    let no_tags = object(json!({"FunctionName": "f", "Tags": {}, "BatchSize": null}));
    assert!(check_fields(&no_tags, Operation::Create).is_ok());
}

#[test]
fn an_update_merges_and_empty_settings_remove_them() {
    let stored = object(json!({
        "EventSourceArn": "arn:aws:sqs:us-east-1:123456789012:q",
        "FunctionName": "f",
        "BatchSize": 5,
        "ScalingConfig": {"MaximumConcurrency": 4},
        "FilterCriteria": {"Filters": [{"Pattern": "{}"}]},
    }));
    let merged = merge(
        &stored,
        &object(
            json!({"BatchSize": 7, "ScalingConfig": {}, "FilterCriteria": {"Filters": []}, "Enabled": null}),
        ),
    );
    assert_eq!(
        Value::Object(merged),
        json!({
            "EventSourceArn": "arn:aws:sqs:us-east-1:123456789012:q",
            "FunctionName": "f",
            "BatchSize": 7,
        })
    );
}
