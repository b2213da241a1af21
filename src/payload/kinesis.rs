//! AWS's Kinesis event record (`docs/esm-semantics.md` §4): `kinesis.data` is base64,
//! `approximateArrivalTimestamp` a number of seconds with milliseconds, and `eventID` is
//! `shardId:sequenceNumber`.

use base64::Engine;
use serde::Serialize;

use super::RecordJson;

/// A Kinesis record as esmd sees it: the SDK's type stops at the source client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KinesisRecord {
    pub(crate) partition_key: String,
    pub(crate) sequence_number: String,
    pub(crate) data: Vec<u8>,
    /// Approximate arrival, milliseconds since the epoch.
    pub(crate) arrival_millis: i64,
}

/// What every record of one mapping shares.
#[derive(Debug, Clone)]
pub(crate) struct KinesisContext<'a> {
    pub(crate) shard_id: &'a str,
    pub(crate) stream_arn: &'a str,
    pub(crate) region: &'a str,
    pub(crate) invoke_identity_arn: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Inner<'a> {
    kinesis_schema_version: &'static str,
    partition_key: &'a str,
    sequence_number: &'a str,
    data: String,
    approximate_arrival_timestamp: f64,
}

#[derive(Serialize)]
struct Outer<'a> {
    kinesis: Inner<'a>,
    #[serde(rename = "eventSource")]
    event_source: &'static str,
    #[serde(rename = "eventVersion")]
    event_version: &'static str,
    #[serde(rename = "eventID")]
    event_id: String,
    #[serde(rename = "eventName")]
    event_name: &'static str,
    #[serde(rename = "invokeIdentityArn")]
    invoke_identity_arn: &'a str,
    #[serde(rename = "awsRegion")]
    aws_region: &'a str,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: &'a str,
}

/// Seconds since the epoch with milliseconds, as the number AWS sends.
pub(crate) fn epoch_seconds(millis: i64) -> f64 {
    millis as f64 / 1000.0
}

pub(crate) fn record_json(record: &KinesisRecord, ctx: &KinesisContext<'_>) -> RecordJson {
    let outer = Outer {
        kinesis: Inner {
            kinesis_schema_version: "1.0",
            partition_key: &record.partition_key,
            sequence_number: &record.sequence_number,
            data: base64::engine::general_purpose::STANDARD.encode(&record.data),
            approximate_arrival_timestamp: epoch_seconds(record.arrival_millis),
        },
        event_source: "aws:kinesis",
        event_version: "1.0",
        event_id: format!("{}:{}", ctx.shard_id, record.sequence_number),
        event_name: "aws:kinesis:record",
        invoke_identity_arn: ctx.invoke_identity_arn,
        aws_region: ctx.region,
        event_source_arn: ctx.stream_arn,
    };
    // Serialising plain strings and a finite number cannot fail.
    serde_json::value::to_raw_value(&outer).unwrap_or_else(|_| {
        serde_json::value::RawValue::from_string("{}".into()).unwrap_or_default()
    })
}

/// What a filter pattern sees: the record's fields, with `data` decoded from base64 and
/// parsed when it is JSON, both at the top level (`{"data": …}`, `{"partitionKey": …}`, as
/// Lambda's filtering page writes them) and under `kinesis`.
pub(crate) fn filter_view(record_json: &str) -> serde_json::Value {
    use serde_json::Value;
    let Ok(Value::Object(mut outer)) = serde_json::from_str::<Value>(record_json) else {
        return Value::Null;
    };
    if let Some(Value::Object(inner)) = outer.get_mut("kinesis") {
        if let Some(Value::String(data)) = inner.get("data") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(data)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            let value = match decoded {
                Some(text) => serde_json::from_str::<Value>(&text)
                    .ok()
                    .filter(|v| v.is_object() || v.is_array())
                    .unwrap_or(Value::String(text)),
                None => Value::String(data.clone()),
            };
            inner.insert("data".into(), value);
        }
        let lifted: Vec<(String, Value)> =
            inner.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (k, v) in lifted {
            outer.entry(k).or_insert(v);
        }
    }
    Value::Object(outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from Lambda's Kinesis page (esm-semantics.md §4), byte for byte.
    #[test]
    fn golden_record_matches_the_reference_example() {
        let record = KinesisRecord {
            partition_key: "1".into(),
            sequence_number: "49590338271490256608559692538361571095921575989136588898".into(),
            data: b"Hello, this is a test.".to_vec(),
            arrival_millis: 1_545_084_650_987,
        };
        let ctx = KinesisContext {
            shard_id: "shardId-000000000006",
            stream_arn: "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
            region: "us-east-2",
            invoke_identity_arn: "arn:aws:iam::123456789012:role/lambda-role",
        };
        let expected = r#"{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"1","sequenceNumber":"49590338271490256608559692538361571095921575989136588898","data":"SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==","approximateArrivalTimestamp":1545084650.987},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000006:49590338271490256608559692538361571095921575989136588898","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/lambda-role","awsRegion":"us-east-2","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"}"#;
        assert_eq!(record_json(&record, &ctx).get(), expected);
        // The community event types deserialise it.
        let parsed: aws_lambda_events::event::kinesis::KinesisEventRecord =
            serde_json::from_str(expected).unwrap();
        assert_eq!(parsed.kinesis.partition_key, "1");
    }

    #[test]
    fn filter_view_decodes_json_data() {
        let record = KinesisRecord {
            partition_key: "pk".into(),
            sequence_number: "1".into(),
            data: br#"{"temperature":70}"#.to_vec(),
            arrival_millis: 0,
        };
        let ctx = KinesisContext {
            shard_id: "s",
            stream_arn: "arn",
            region: "r",
            invoke_identity_arn: "i",
        };
        let view = filter_view(record_json(&record, &ctx).get());
        assert_eq!(view["data"]["temperature"], 70);
        assert_eq!(view["partitionKey"], "pk");
        assert_eq!(view["kinesis"]["data"]["temperature"], 70);
    }
}
