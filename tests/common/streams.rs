//! Kinesis streams and DynamoDB tables with streams, shared by the stream tests.

use std::time::Duration;

use super::*;

pub async fn kinesis(endpoint: &str) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(&sdk_config(endpoint).await)
}

pub fn stream_arn(name: &str) -> String {
    format!("arn:aws:kinesis:{REGION}:123456789012:stream/{name}")
}

pub async fn create_stream(client: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .expect("create stream");
    for _ in 0..100 {
        let d = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .expect("describe");
        if d.stream_description_summary()
            .map(|s| s.stream_status().as_str())
            == Some("ACTIVE")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stream {name} never became active");
}

pub async fn put(client: &aws_sdk_kinesis::Client, stream: &str, key: &str, data: &str) -> String {
    client
        .put_record()
        .stream_name(stream)
        .partition_key(key)
        .data(aws_sdk_kinesis::primitives::Blob::new(
            data.as_bytes().to_vec(),
        ))
        .send()
        .await
        .expect("put record")
        .sequence_number()
        .to_string()
}

/// Waits until a tumbling window of `secs` has just begun, so a short test stays inside it.
pub async fn at_window_start(secs: i64) {
    loop {
        let ms = chrono::Utc::now().timestamp_millis() % (secs * 1000);
        if ms < 300 {
            return;
        }
        tokio::time::sleep(Duration::from_millis((secs * 1000 - ms) as u64 + 20)).await;
    }
}

/// Creates a table keyed by `id` (S) with a stream of the given view; returns the stream ARN.
pub async fn table_with_stream(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    view: aws_sdk_dynamodb::types::StreamViewType,
) -> String {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        StreamSpecification,
    };
    let out = client
        .create_table()
        .table_name(name)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(view)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create table");
    out.table_description()
        .and_then(|t| t.latest_stream_arn())
        .expect("stream arn")
        .to_string()
}

/// A Kinesis record's data, decoded (base64 in the event).
pub fn kinesis_data(record: &serde_json::Value) -> String {
    use base64::Engine;
    let b64 = record["kinesis"]["data"].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}
