//! Conformance with AWS's own recordings: each scenario redoes what a recorded LocalStack
//! test did against AWS (LocalStack's `tests/aws/services/lambda_/event_source_mapping`,
//! recorded against real AWS), with the real esmd binary on moto, mappings created through
//! esmd's Lambda API, and compares esmd's API answers, the events its function received and
//! the records its destinations got with the recording (tests/common/recordings.rs says how).
//! Differences that come from moto rather than esmd are listed in the README's table of
//! emulator differences, and checked here as such.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

struct Api {
    base: String,
    port: u16,
}

impl Api {
    fn section() -> (String, Api) {
        let port = free_port();
        (
            format!("[lambda_api]\nlisten = \"127.0.0.1:{port}\"\n"),
            Api {
                base: format!("http://127.0.0.1:{port}/2015-03-31/event-source-mappings"),
                port,
            },
        )
    }

    /// CreateEventSourceMapping: (status, body).
    fn create(&self, request: Value) -> (u16, Value) {
        assert!(
            wait_listening(self.port, Duration::from_secs(30)),
            "the Lambda API is not listening on {}",
            self.port
        );
        let (status, body) = http_send("POST", &self.base, Some(&request.to_string())).unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    fn get(&self, uuid: &str) -> (u16, Value) {
        let (status, body) = http_get(&format!("{}/{uuid}", self.base)).unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    fn wait_enabled(&self, esmd: &Esmd, uuid: &str) {
        esmd.wait_for(Duration::from_secs(20), "Enabled", || {
            self.get(uuid).1["State"] == "Enabled"
        });
    }
}

/// Creates a mapping and checks the answer against the recorded Create answer.
fn create_conforming(api: &Api, test: &str, key: &str, request: Value) -> String {
    let (status, created) = api.create(request);
    let recorded = recorded(test, key);
    assert_eq!(
        Some(status as u64),
        recorded["$status"].as_u64(),
        "{created}"
    );
    assert_conforms(test, key, &created, recorded);
    created["UUID"].as_str().unwrap().to_string()
}

fn events(function: &FunctionServer) -> Vec<Value> {
    function.calls().iter().map(|c| c.event.clone()).collect()
}

/// SQS FIFO with ReportBatchItemFailures and a redrive policy (maxReceiveCount 2): message 1
/// succeeds, 2 and 3 on their second attempt, 4 never and goes to the DLQ. AWS invokes twice:
/// all four with ApproximateReceiveCount 1, then 2, 3 and 4 with count 2.
///
/// moto differs (README, emulator differences): when 2, 3 and 4 time out together it hands
/// out 4 first (its receive loop clears in-flight marks one message at a time and skips a
/// group that still has one). esmd must not deliver 4 before 2 and 3, so it releases it, and
/// moto counts that receive: 4 reaches the DLQ before a second invocation. Everything else is
/// compared with the recording; that one difference is checked to be exactly this.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_fifo_partial_batch_failures() {
    const TEST: &str = "test_report_batch_item_failures";
    let moto = Moto::start();
    let dlq = Queue::create(&moto, "conf-dlq.fifo", &[("FifoQueue", "true")]).await;
    let policy = json!({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 2}).to_string();
    let queue = Queue::create(
        &moto,
        "conf-source.fifo",
        &[
            ("FifoQueue", "true"),
            ("VisibilityTimeout", "4"),
            ("RedrivePolicy", &policy),
        ],
    )
    .await;
    for (n, fail_attempts) in [(1, 0), (2, 1), (3, 1), (4, 2)] {
        let body = format!(r#"{{"message": {n}, "fail_attempts": {fail_attempts}}}"#);
        queue.send_fifo(&body, "1", &format!("dedup-{n}")).await;
    }
    let attempts: Arc<Mutex<HashMap<i64, i64>>> = Arc::default();
    let function = FunctionServer::start(move |call, _| {
        let mut attempts = attempts.lock().unwrap();
        let failures: Vec<Value> = call
            .records()
            .iter()
            .filter_map(|r| {
                let body: Value = serde_json::from_str(r["body"].as_str()?).ok()?;
                let seen = attempts.entry(body["message"].as_i64()?).or_insert(0);
                *seen += 1;
                (*seen <= body["fail_attempts"].as_i64()?)
                    .then(|| json!({"itemIdentifier": r["messageId"]}))
            })
            .collect();
        Reply::ok(json!({"batchItemFailures": failures}).to_string())
    });
    let (section, api) = Api::section();
    let esmd = Esmd::start(&moto, &function, &section);
    create_conforming(
        &api,
        TEST,
        "create_event_source_mapping",
        json!({"EventSourceArn": queue.arn, "FunctionName": "conf-fifo", "BatchSize": 10,
               "FunctionResponseTypes": ["ReportBatchItemFailures"]}),
    );
    eventually(
        Duration::from_secs(60),
        "message 4 in the DLQ",
        Some(&esmd),
        || async { dlq.peek_bodies().await.len() == 1 },
    )
    .await;
    esmd.wait_until_idle(Duration::from_secs(30));

    let calls = events(&function);
    let summary: Vec<Vec<(String, String)>> = calls
        .iter()
        .map(|c| {
            c["Records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let body = r["body"].as_str().unwrap_or_default().to_string();
                    let count = r["attributes"]["ApproximateReceiveCount"].as_str();
                    (body, count.unwrap_or_default().to_string())
                })
                .collect()
        })
        .collect();
    assert_eq!(calls.len(), 2, "AWS invoked twice: {summary:?}");
    let first = &recorded(TEST, "first_invocation")["Messages"][0]["Body"]["event"];
    assert_conforms(TEST, "first_invocation", &calls[0], first);
    let mut second = recorded(TEST, "second_invocation")["Messages"][0]["Body"]["event"].clone();
    let records = second["Records"].as_array_mut().unwrap();
    if calls[1]["Records"].as_array().unwrap().len() == 2 {
        // moto handed message 4 out early (above): it is the recorded third record.
        let last = records.pop().unwrap();
        assert_eq!(last["body"]["message"], 4, "{summary:?}");
        assert!(summary[1]
            .iter()
            .all(|(body, _)| !body.contains("\"message\": 4")));
    }
    assert_conforms(TEST, "second_invocation", &calls[1], &second);
    let dead: Vec<Value> = dlq
        .peek_bodies()
        .await
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_conforms(
        TEST,
        "dlq_response",
        &dead[0],
        &recorded(TEST, "dlq_response")["Messages"][0]["Body"],
    );
}

/// A standard queue, batch 1, a function that fails once: the message comes back after the
/// visibility timeout with ApproximateReceiveCount 2. No batching window and no message
/// attributes: AWS's records have no `md5OfMessageAttributes` key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_retry_after_the_visibility_timeout() {
    const TEST: &str = "test_failing_lambda_retries_after_visibility_timeout";
    let moto = Moto::start();
    let (queue, _dlq) = Queue::with_dlq(&moto, "conf-retry", 3, 2).await;
    let function = FunctionServer::start(|_, index| {
        if index == 0 {
            Reply::function_error()
        } else {
            Reply::ok("null")
        }
    });
    let (section, api) = Api::section();
    let esmd = Esmd::start(&moto, &function, &section);
    let (_, created) = api
        .create(json!({"EventSourceArn": queue.arn, "FunctionName": "conf-retry", "BatchSize": 1}));
    let uuid = created["UUID"].as_str().unwrap();
    api.wait_enabled(&esmd, uuid);
    let (status, got) = api.get(uuid);
    assert_eq!(status, 200);
    assert_conforms(
        TEST,
        "event_source_mapping",
        &got,
        recorded(TEST, "event_source_mapping"),
    );

    queue
        .send(r#"{"destination": "d", "fail_attempts": 1}"#)
        .await;
    esmd.wait_for(Duration::from_secs(30), "two attempts", || {
        function.completed() >= 2
    });
    let calls = events(&function);
    for (i, key) in ["first_attempt", "second_attempt"].iter().enumerate() {
        let recorded_event = &recorded(TEST, key)["Messages"][0]["Body"]["event"];
        assert_conforms(TEST, key, &calls[i], recorded_event);
    }
}

/// Message attributes reach the function as AWS shapes them, with SQS's MD5 of them (the
/// recorded value is not masked, so it is compared exactly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_message_attributes_and_their_md5() {
    use aws_sdk_sqs::types::MessageAttributeValue;
    const TEST: &str = "test_message_body_and_attributes_passed_correctly";
    let moto = Moto::start();
    let queue = Queue::create(&moto, "conf-attributes", &[]).await;
    let function = FunctionServer::start(|_, _| Reply::ok("null"));
    let (section, api) = Api::section();
    let esmd = Esmd::start(&moto, &function, &section);
    let (_, created) = api.create(
        json!({"EventSourceArn": queue.arn, "FunctionName": "conf-attributes", "BatchSize": 1}),
    );
    api.wait_enabled(&esmd, created["UUID"].as_str().unwrap());
    let attribute = |data_type: &str, value: &str| {
        MessageAttributeValue::builder()
            .data_type(data_type)
            .string_value(value)
            .build()
            .unwrap()
    };
    queue
        .client
        .send_message()
        .queue_url(&queue.url)
        // Python's json.dumps spacing, as the recorded test sent it.
        .message_body(r#"{"destination": "d", "fail_attempts": 0}"#)
        .message_attributes("Title", attribute("String", "The Whistler"))
        .message_attributes("Author", attribute("String", "John Grisham"))
        .message_attributes("WeeksOn", attribute("Number", "6"))
        .send()
        .await
        .unwrap();
    esmd.wait_for(Duration::from_secs(30), "the message", || {
        function.completed() >= 1
    });
    let recorded_event = &recorded(TEST, "first_attempt")["Messages"][0]["Body"]["event"];
    assert_conforms(TEST, "first_attempt", &events(&function)[0], recorded_event);
}

/// A batching window of 1 s: a record without message attributes has
/// `"md5OfMessageAttributes": null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_with_a_batching_window() {
    const TEST: &str = "test_sqs_event_source_mapping";
    let moto = Moto::start();
    let queue = Queue::create(&moto, "conf-window", &[]).await;
    let function = FunctionServer::start(|_, _| Reply::ok("null"));
    let (section, api) = Api::section();
    let esmd = Esmd::start(&moto, &function, &section);
    let uuid = create_conforming(
        &api,
        TEST,
        "create-event-source-mapping-response",
        json!({"EventSourceArn": queue.arn, "FunctionName": "conf-window", "BatchSize": 10,
               "MaximumBatchingWindowInSeconds": 1}),
    );
    api.wait_enabled(&esmd, &uuid);
    queue.send(&json!({"foo": "bar"}).to_string()).await;
    esmd.wait_for(Duration::from_secs(30), "the message", || {
        function.completed() >= 1
    });
    assert_conforms(
        TEST,
        "events",
        &json!(events(&function)),
        recorded(TEST, "events"),
    );
}

/// A second mapping of the same queue and function: 409 ResourceConflictException with
/// AWS's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_mappings_are_a_conflict() {
    const TEST: &str = "test_duplicate_event_source_mappings";
    let moto = Moto::start();
    let queue = Queue::create(&moto, "conf-duplicate", &[]).await;
    let function = FunctionServer::start(|_, _| Reply::ok("null"));
    let (section, api) = Api::section();
    let _esmd = Esmd::start(&moto, &function, &section);
    let request = json!({"EventSourceArn": queue.arn, "FunctionName": "conf-duplicate"});
    create_conforming(&api, TEST, "create", request.clone());
    let (status, error) = api.create(request);
    let recorded_error = recorded(TEST, "error");
    assert_eq!(Some(status as u64), recorded_error["$status"].as_u64());
    // botocore adds `Error` (code and message) from the response; the body is the rest.
    let mut body_only = recorded_error.clone();
    body_only.as_object_mut().unwrap().remove("Error");
    assert_conforms(TEST, "error", &error, &body_only);
}

/// The records of every invocation, in order.
fn all_records(function: &FunctionServer) -> Vec<Value> {
    function
        .calls()
        .iter()
        .flat_map(|c| c.records().clone())
        .collect()
}

/// The first failure record an SQS destination received, parsed (waits up to a minute).
async fn first_record(destination: &Queue, esmd: &Esmd) -> Value {
    eventually(
        Duration::from_secs(60),
        "the failure record",
        Some(esmd),
        || async { !destination.peek_bodies().await.is_empty() },
    )
    .await;
    queue_payloads(destination).await.remove(0)
}

/// The bodies of the messages in `queue`, parsed.
async fn queue_payloads(queue: &Queue) -> Vec<Value> {
    queue
        .peek_bodies()
        .await
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect()
}

/// Kinesis, LATEST, ten records: AWS's record shape, field by field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_records() {
    const TEST: &str = "test_create_kinesis_event_source_mapping";
    let moto = Moto::start();
    let kinesis = kinesis(&moto.endpoint).await;
    create_stream(&kinesis, "conf-stream", 1).await;
    let function = FunctionServer::start(|_, _| Reply::ok("null"));
    let (section, api) = Api::section();
    let esmd = Esmd::start(&moto, &function, &section);
    let uuid = create_conforming(
        &api,
        TEST,
        "create_event_source_mapping_response",
        json!({"EventSourceArn": stream_arn("conf-stream"), "FunctionName": "conf-kinesis",
               "StartingPosition": "LATEST"}),
    );
    api.wait_enabled(&esmd, &uuid);
    esmd.wait_until_idle(Duration::from_secs(30));
    for i in 0..10 {
        put(&kinesis, "conf-stream", &format!("test_{i}"), "hello").await;
    }
    esmd.wait_for(Duration::from_secs(30), "10 records", || {
        all_records(&function).len() >= 10
    });
    let recorded_records = &recorded(TEST, "kinesis_records")["Records"];
    assert_conforms(
        TEST,
        "kinesis_records",
        &json!(all_records(&function)),
        recorded_records,
    );
}

/// Kinesis, a function that always fails, MaximumRetryAttempts 1: after two invocations the
/// record's batch goes to the SQS destination in AWS's shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_on_failure_destination() {
    const TEST: &str = "test_kinesis_event_source_mapping_with_on_failure_destination_config";
    let moto = Moto::start();
    let kinesis = kinesis(&moto.endpoint).await;
    create_stream(&kinesis, "conf-failing", 1).await;
    let destination = Queue::create(&moto, "conf-kinesis-failures", &[]).await;
    let function = FunctionServer::start(|_, _| Reply::function_error());
    let (section, api) = Api::section();
    let esmd = Esmd::start(&moto, &function, &section);
    create_conforming(
        &api,
        TEST,
        "create_event_source_mapping_response",
        json!({"EventSourceArn": stream_arn("conf-failing"), "FunctionName": "conf-failing",
               "StartingPosition": "TRIM_HORIZON", "BatchSize": 1,
               "MaximumBatchingWindowInSeconds": 1, "MaximumRetryAttempts": 1,
               "DestinationConfig": {"OnFailure": {"Destination": destination.arn}}}),
    );
    put(&kinesis, "conf-failing", "test", "hello").await;
    let record = first_record(&destination, &esmd).await;
    let recorded_payload = &recorded(TEST, "sqs_payload")["Messages"][0]["Body"];
    assert_conforms(TEST, "sqs_payload", &record, recorded_payload);
}

/// Kinesis with ReportBatchItemFailures, batch 3, six records of which the last fails
/// always: the function sees 0-2, 3-5, then 5 three more times (MaximumRetryAttempts 3),
/// and 5 reaches the destination with approximateInvokeCount 4 and functionError null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_partial_batch_failures() {
    use base64::Engine;
    const TEST: &str = "test_kinesis_report_batch_item_failures";
    let moto = Moto::start();
    let kinesis = kinesis(&moto.endpoint).await;
    create_stream(&kinesis, "conf-partial", 1).await;
    let destination = Queue::create(&moto, "conf-partial-failures", &[]).await;
    let function = FunctionServer::start(|call, _| {
        let failures: Vec<Value> = call
            .records()
            .iter()
            .filter(|r| {
                let data = r["kinesis"]["data"].as_str().unwrap_or_default();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .unwrap();
                let body: Value = serde_json::from_slice(&bytes).unwrap();
                body["should_fail"] == true
            })
            .map(|r| json!({"itemIdentifier": r["kinesis"]["sequenceNumber"]}))
            .collect();
        Reply::ok(json!({"batchItemFailures": failures}).to_string())
    });
    let (section, api) = Api::section();
    let esmd = Esmd::start(&moto, &function, &section);
    for i in 0..6 {
        // Python's json.dumps spacing, as the recorded test sent it.
        let data = format!(r#"{{"should_fail": {}}}"#, i == 5);
        put(&kinesis, "conf-partial", &format!("test_{i}"), &data).await;
    }
    create_conforming(
        &api,
        TEST,
        "create_event_source_mapping_response",
        json!({"EventSourceArn": stream_arn("conf-partial"), "FunctionName": "conf-partial",
               "StartingPosition": "TRIM_HORIZON", "BatchSize": 3,
               "MaximumBatchingWindowInSeconds": 1, "MaximumRetryAttempts": 3,
               "FunctionResponseTypes": ["ReportBatchItemFailures"],
               "DestinationConfig": {"OnFailure": {"Destination": destination.arn}}}),
    );
    let record = first_record(&destination, &esmd).await;
    let recorded_payload = &recorded(TEST, "sqs_payload")["Messages"][0]["Body"];
    assert_conforms(TEST, "sqs_payload", &record, recorded_payload);
    let mut records = all_records(&function);
    records.sort_by_key(|r| {
        r["kinesis"]["partitionKey"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    let recorded_records = &recorded(TEST, "kinesis_records")["Records"];
    assert_conforms(TEST, "kinesis_records", &json!(records), recorded_records);
}

async fn dynamodb_table(moto: &Moto, name: &str, with_binary: bool) -> String {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        StreamSpecification, StreamViewType,
    };
    let client = aws_sdk_dynamodb::Client::new(&sdk_config(&moto.endpoint).await);
    let out = client
        .create_table()
        .table_name(name)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("my_partition_key")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("my_partition_key")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let arn = out
        .table_description()
        .unwrap()
        .latest_stream_arn()
        .unwrap()
        .to_string();
    use aws_sdk_dynamodb::types::AttributeValue;
    let mut put = client
        .put_item()
        .table_name(name)
        .item("my_partition_key", AttributeValue::S("hello world".into()));
    if with_binary {
        put = put.item(
            "binary_key",
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(b"foobar".to_vec())),
        );
    }
    put.send().await.unwrap();
    arn
}

/// DynamoDB Streams, NEW_IMAGE: AWS's record shape. `SizeBytes` comes from the stream
/// (moto's differs from DynamoDB's; README, emulator differences).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_records() {
    const TEST: &str = "test_dynamodb_event_source_mapping";
    let moto = Moto::start();
    let stream = dynamodb_table(&moto, "conf-table", true).await;
    let function = FunctionServer::start(|_, _| Reply::ok("null"));
    let (section, api) = Api::section();
    let esmd = Esmd::start(&moto, &function, &section);
    create_conforming(
        &api,
        TEST,
        "create_event_source_mapping_response",
        json!({"EventSourceArn": stream, "FunctionName": "conf-dynamodb",
               "StartingPosition": "TRIM_HORIZON", "BatchSize": 1,
               "MaximumBatchingWindowInSeconds": 1, "MaximumRetryAttempts": 1}),
    );
    esmd.wait_for(Duration::from_secs(30), "the record", || {
        function.completed() >= 1
    });
    let mut recorded_event = recorded(TEST, "event_logs")[0].clone();
    let mut event = events(&function)[0].clone();
    let moto_size = event["Records"][0]["dynamodb"]["SizeBytes"].take();
    let aws_size = recorded_event["Records"][0]["dynamodb"]["SizeBytes"].take();
    assert!(
        moto_size.is_u64() && aws_size.is_u64(),
        "{moto_size} / {aws_size}"
    );
    assert_conforms(TEST, "event_logs", &event, &recorded_event);
}

/// DynamoDB Streams, a function that always fails, MaximumRetryAttempts 1: the batch goes
/// to the SQS destination in AWS's shape (`DDBStreamBatchInfo`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_on_failure_destination() {
    const TEST: &str = "test_dynamodb_event_source_mapping_with_on_failure_destination_config";
    let moto = Moto::start();
    let stream = dynamodb_table(&moto, "conf-failing-table", false).await;
    let destination = Queue::create(&moto, "conf-ddb-failures", &[]).await;
    let function = FunctionServer::start(|_, _| Reply::function_error());
    let (section, api) = Api::section();
    let esmd = Esmd::start(&moto, &function, &section);
    create_conforming(
        &api,
        TEST,
        "create_event_source_mapping_response",
        json!({"EventSourceArn": stream, "FunctionName": "conf-ddb-failing",
               "StartingPosition": "TRIM_HORIZON", "BatchSize": 1,
               "MaximumBatchingWindowInSeconds": 1, "MaximumRetryAttempts": 1,
               "DestinationConfig": {"OnFailure": {"Destination": destination.arn}}}),
    );
    let record = first_record(&destination, &esmd).await;
    let recorded_payload = &recorded(TEST, "destination_queue_messages")["Messages"][0]["Body"];
    assert_conforms(
        TEST,
        "destination_queue_messages",
        &record,
        recorded_payload,
    );
}

/// Where an on-failure record can be read back: an SNS topic (through an SQS queue
/// subscribed with raw delivery) or an S3 bucket.
enum Inbox {
    Sns(Queue),
    S3(aws_sdk_s3::Client),
}

impl Inbox {
    /// The destination ARN and where its records arrive.
    async fn sns(moto: &Moto, name: &str) -> (String, Inbox) {
        let (topic_arn, inbox) = sns_inbox(moto, name).await;
        (topic_arn, Inbox::Sns(inbox))
    }

    async fn s3(moto: &Moto, bucket: &str) -> (String, Inbox) {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk_config(&moto.endpoint).await)
                .force_path_style(true)
                .build(),
        );
        s3.create_bucket().bucket(bucket).send().await.unwrap();
        (format!("arn:aws:s3:::{bucket}"), Inbox::S3(s3))
    }

    async fn first(&self) -> Option<Value> {
        match self {
            Inbox::Sns(queue) => queue_payloads(queue).await.into_iter().next(),
            Inbox::S3(s3) => {
                let bucket = "conf-failures";
                let listed = s3.list_objects_v2().bucket(bucket).send().await.ok()?;
                let key = listed.contents().first()?.key()?.to_string();
                let object = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
                let bytes = object.body.collect().await.ok()?.into_bytes();
                serde_json::from_slice(&bytes).ok()
            }
        }
    }
}

/// A stream mapping whose function always fails (batch 1, window 1, one retry), with an
/// on-failure destination; returns the failure record it wrote.
async fn failure_record(moto: &Moto, source: &str, destination: &str, inbox: &Inbox) -> Value {
    let function = FunctionServer::start(|_, _| Reply::function_error());
    let (section, api) = Api::section();
    let esmd = Esmd::start(moto, &function, &section);
    let (status, created) = api.create(json!({
        "EventSourceArn": source, "FunctionName": "conf-failing",
        "StartingPosition": "TRIM_HORIZON", "BatchSize": 1,
        "MaximumBatchingWindowInSeconds": 1, "MaximumRetryAttempts": 1,
        "DestinationConfig": {"OnFailure": {"Destination": destination}}}));
    assert_eq!(status, 202, "{created}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(record) = inbox.first().await {
            return record;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failure record\n{}",
            esmd.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Python's json.dumps of the recorded tests' Kinesis record.
const KINESIS_FAILING_DATA: &str = r#"{"input": "hello", "value": "world", "raise_error": 1}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_on_failure_to_sns() {
    const TEST: &str = "test_kinesis_event_source_mapping_with_sns_on_failure_destination_config";
    let moto = Moto::start();
    let kinesis = kinesis(&moto.endpoint).await;
    create_stream(&kinesis, "conf-sns", 1).await;
    put(&kinesis, "conf-sns", "custom", KINESIS_FAILING_DATA).await;
    let (topic, inbox) = Inbox::sns(&moto, "conf-failures").await;
    let record = failure_record(&moto, &stream_arn("conf-sns"), &topic, &inbox).await;
    let recorded_message = &recorded(TEST, "failure_sns_message")["Message"];
    assert_conforms(TEST, "failure_sns_message", &record, recorded_message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_on_failure_to_s3() {
    const TEST: &str = "test_kinesis_event_source_mapping_with_s3_on_failure_destination";
    let moto = Moto::start();
    let kinesis = kinesis(&moto.endpoint).await;
    create_stream(&kinesis, "conf-s3", 1).await;
    put(&kinesis, "conf-s3", "custom", KINESIS_FAILING_DATA).await;
    let (bucket, inbox) = Inbox::s3(&moto, "conf-failures").await;
    let record = failure_record(&moto, &stream_arn("conf-s3"), &bucket, &inbox).await;
    assert_conforms(TEST, "record_body", &record, recorded(TEST, "record_body"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_on_failure_to_sns() {
    const TEST: &str = "test_dynamodb_event_source_mapping_with_sns_on_failure_destination_config";
    let moto = Moto::start();
    let stream = dynamodb_table(&moto, "conf-sns-table", false).await;
    let (topic, inbox) = Inbox::sns(&moto, "conf-failures").await;
    let record = failure_record(&moto, &stream, &topic, &inbox).await;
    let recorded_message = &recorded(TEST, "failure_sns_message")["Message"];
    assert_conforms(TEST, "failure_sns_message", &record, recorded_message);
}

/// The S3 record carries the batch (`payload`); its `SizeBytes` comes from the stream, and
/// moto's differs from DynamoDB's (README, emulator differences).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_on_failure_to_s3() {
    const TEST: &str = "test_dynamodb_event_source_mapping_with_s3_on_failure_destination";
    let moto = Moto::start();
    let stream = dynamodb_table(&moto, "conf-s3-table", false).await;
    let (bucket, inbox) = Inbox::s3(&moto, "conf-failures").await;
    let mut record = failure_record(&moto, &stream, &bucket, &inbox).await;
    let mut recorded_record = recorded(TEST, "record_body").clone();
    if let Some(text) = record["payload"].as_str() {
        record["payload"] = serde_json::from_str(text).unwrap();
    }
    let moto_size = record["payload"]["Records"][0]["dynamodb"]["SizeBytes"].take();
    let aws_size = recorded_record["payload"]["Records"][0]["dynamodb"]["SizeBytes"].take();
    assert!(
        moto_size.is_u64() && aws_size.is_u64(),
        "{moto_size} / {aws_size}"
    );
    assert_conforms(TEST, "record_body", &record, &recorded_record);
}

/// The recorded filter cases: (id, pattern, matching body, non-matching body), written as
/// the recorded test wrote them (Python's json.dumps spacing).
const FILTER_CASES: [(&str, &str, &str, &str); 9] = [
    (
        "single",
        r#"{"body": {"my-key": ["my-value"]}}"#,
        r#"{"my-key": "my-value"}"#,
        r#"{"my-key": "other-value"}"#,
    ),
    (
        "or",
        r#"{"body": {"my-key": ["my-value-one", "my-value-two"]}}"#,
        r#"{"my-key": "my-value-two"}"#,
        r#"{"my-key": "other-value"}"#,
    ),
    (
        "and",
        r#"{"body": {"my-key-one": ["other-filter", "my-value-one"], "my-key-two": ["my-value-two"]}}"#,
        r#"{"my-key-one": "my-value-one", "my-key-two": "my-value-two"}"#,
        r#"{"my-key-one": "other-value-", "my-key-two": "my-value-two"}"#,
    ),
    (
        "exists",
        r#"{"body": {"my-key": [{"exists": true}]}}"#,
        r#"{"my-key": "any-value-one"}"#,
        r#"{"other-key": "any-value-two"}"#,
    ),
    (
        "numeric-bigger",
        r#"{"body": {"my-number": [{"numeric": [">", 100]}]}}"#,
        r#"{"my-number": 101}"#,
        r#"{"my-number": 100}"#,
    ),
    (
        "numeric-smaller",
        r#"{"body": {"my-number": [{"numeric": ["<", 100]}]}}"#,
        r#"{"my-number": 99}"#,
        r#"{"my-number": 100}"#,
    ),
    (
        "numeric-range",
        r#"{"body": {"my-number": [{"numeric": [">=", 100, "<", 200]}]}}"#,
        r#"{"my-number": 100}"#,
        r#"{"my-number": 200}"#,
    ),
    (
        "prefix",
        r#"{"body": {"my-key": [{"prefix": "yes"}]}}"#,
        r#"{"my-key": "yes-value"}"#,
        r#"{"my-key": "no-value"}"#,
    ),
    (
        "valid-json-filter",
        r#"{"body": {"my-key": ["my-value"]}}"#,
        r#"{"my-key": "my-value"}"#,
        "plain-string",
    ),
];

/// SQS event filtering, each recorded case: only the matching message reaches the function,
/// in one invocation, and the other is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_event_filters() {
    let moto = Moto::start();
    let function = FunctionServer::start(|_, _| Reply::ok("null"));
    let (section, api) = Api::section();
    let esmd = Esmd::start(&moto, &function, &section);
    let mut queues = Vec::new();
    for (i, (case, pattern, matching, not_matching)) in FILTER_CASES.iter().enumerate() {
        let test = format!("test_sqs_event_filter[{case}]");
        let queue = Queue::create(&moto, &format!("conf-filter-{i}"), &[]).await;
        queue.send(matching).await;
        queue.send(not_matching).await;
        create_conforming(
            &api,
            &test,
            "create_event_source_mapping_response",
            json!({"EventSourceArn": queue.arn, "FunctionName": format!("conf-filter-{i}"),
                   "MaximumBatchingWindowInSeconds": 1,
                   "FilterCriteria": {"Filters": [{"Pattern": pattern}]}}),
        );
        queues.push((test, queue, format!("conf-filter-{i}")));
    }
    for (test, queue, name) in &queues {
        eventually(Duration::from_secs(30), test, Some(&esmd), || async {
            queue.is_empty().await
        })
        .await;
        let received: Vec<Value> = function
            .calls()
            .iter()
            .filter(|c| &c.function == name)
            .map(|c| c.event.clone())
            .collect();
        assert_conforms(
            test,
            "invocation_events",
            &json!(received),
            recorded(test, "invocation_events"),
        );
    }
}

/// Invalid patterns are refused as AWS refuses them: 400 InvalidParameterValueException,
/// "Invalid filter pattern definition." (esmd adds which pattern and why).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_invalid_event_filters() {
    let moto = Moto::start();
    let function = FunctionServer::start(|_, _| Reply::ok("null"));
    let (section, api) = Api::section();
    let _esmd = Esmd::start(&moto, &function, &section);
    let cases = [
        ("None", "null"),
        ("simple string", r#""simple string""#),
        ("invalid_filter2", r#"{"eventSource": "aws:sqs"}"#),
        ("invalid_filter3", r#"{"eventSource": []}"#),
    ];
    for (case, pattern) in cases {
        let test = format!("test_sqs_invalid_event_filter[{case}]");
        let (status, error) = api.create(json!({
            "EventSourceArn": queue_arn("conf-invalid-filter"), "FunctionName": "f",
            "FilterCriteria": {"Filters": [{"Pattern": pattern}]}}));
        let recorded_error = recorded(&test, "create_event_source_mapping_exception");
        assert_eq!(
            Some(status as u64),
            recorded_error["$status"].as_u64(),
            "{case}: {error}"
        );
        assert_eq!(error["Type"], recorded_error["Type"], "{case}");
        let aws_message = recorded_error["message"].as_str().unwrap();
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(aws_message), "{case}: {message}");
    }
}
