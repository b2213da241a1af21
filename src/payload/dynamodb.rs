//! AWS's DynamoDB Streams event record (`docs/esm-semantics.md` §4): `eventVersion` 1.1,
//! `ApproximateCreationDateTime` as a number of seconds, and images present as the stream's
//! view type and the event name say.

use serde::Serialize;
use serde_json::{Map, Value};

use super::RecordJson;

/// A stream record as esmd sees it. Images are DynamoDB-JSON objects (`{"S": "x"}`), already
/// converted from the SDK's types by the source client.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DynamoDbRecord {
    pub(crate) event_id: String,
    /// `INSERT`, `MODIFY` or `REMOVE`.
    pub(crate) event_name: String,
    /// Seconds since the epoch.
    pub(crate) approximate_creation_seconds: i64,
    pub(crate) keys: Map<String, Value>,
    pub(crate) new_image: Option<Map<String, Value>>,
    pub(crate) old_image: Option<Map<String, Value>>,
    pub(crate) sequence_number: String,
    pub(crate) size_bytes: i64,
    /// `KEYS_ONLY`, `NEW_IMAGE`, `OLD_IMAGE` or `NEW_AND_OLD_IMAGES`.
    pub(crate) stream_view_type: String,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "ApproximateCreationDateTime")]
    approximate_creation_date_time: i64,
    #[serde(rename = "Keys")]
    keys: &'a Map<String, Value>,
    #[serde(rename = "NewImage", skip_serializing_if = "Option::is_none")]
    new_image: Option<&'a Map<String, Value>>,
    #[serde(rename = "OldImage", skip_serializing_if = "Option::is_none")]
    old_image: Option<&'a Map<String, Value>>,
    #[serde(rename = "SequenceNumber")]
    sequence_number: &'a str,
    #[serde(rename = "SizeBytes")]
    size_bytes: i64,
    #[serde(rename = "StreamViewType")]
    stream_view_type: &'a str,
}

#[derive(Serialize)]
struct Outer<'a> {
    #[serde(rename = "eventID")]
    event_id: &'a str,
    #[serde(rename = "eventName")]
    event_name: &'a str,
    #[serde(rename = "eventVersion")]
    event_version: &'static str,
    #[serde(rename = "eventSource")]
    event_source: &'static str,
    #[serde(rename = "awsRegion")]
    aws_region: &'a str,
    dynamodb: Body<'a>,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: &'a str,
}

fn includes_new(view: &str) -> bool {
    matches!(view, "NEW_IMAGE" | "NEW_AND_OLD_IMAGES")
}

fn includes_old(view: &str) -> bool {
    matches!(view, "OLD_IMAGE" | "NEW_AND_OLD_IMAGES")
}

pub(crate) fn record_json(record: &DynamoDbRecord, stream_arn: &str, region: &str) -> RecordJson {
    let view = record.stream_view_type.as_str();
    let event = record.event_name.as_str();
    let outer = Outer {
        event_id: &record.event_id,
        event_name: event,
        event_version: "1.1",
        event_source: "aws:dynamodb",
        aws_region: region,
        dynamodb: Body {
            approximate_creation_date_time: record.approximate_creation_seconds,
            keys: &record.keys,
            new_image: record
                .new_image
                .as_ref()
                .filter(|_| includes_new(view) && event != "REMOVE"),
            old_image: record
                .old_image
                .as_ref()
                .filter(|_| includes_old(view) && event != "INSERT"),
            sequence_number: &record.sequence_number,
            size_bytes: record.size_bytes,
            stream_view_type: view,
        },
        event_source_arn: stream_arn,
    };
    RecordJson::serialize(&outer).unwrap_or_else(|_| RecordJson::empty())
}

/// What a filter pattern sees: the record as sent (`eventName`, `dynamodb.*` with typed
/// values).
pub(crate) fn filter_view(record_json: &str) -> Value {
    serde_json::from_str(record_json).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn record(event: &str, view: &str) -> DynamoDbRecord {
        DynamoDbRecord {
            event_id: "c4ca4238a0b923820dcc509a6f75849b".into(),
            event_name: event.into(),
            approximate_creation_seconds: 1_428_537_600,
            keys: obj(serde_json::json!({"Id": {"N": "101"}})),
            new_image: Some(obj(
                serde_json::json!({"Message": {"S": "New item!"}, "Id": {"N": "101"}}),
            )),
            old_image: Some(obj(
                serde_json::json!({"Message": {"S": "Old"}, "Id": {"N": "101"}}),
            )),
            sequence_number: "4421584500000000017450439091".into(),
            size_bytes: 26,
            stream_view_type: view.into(),
        }
    }

    const ARN: &str =
        "arn:aws:dynamodb:us-east-1:123456789012:table/ExampleTableWithStream/stream/2015-06-27T00:48:05.899";

    /// The example from Lambda's DynamoDB page (esm-semantics.md §4), byte for byte.
    #[test]
    fn golden_insert_matches_the_reference_example() {
        let mut r = record("INSERT", "NEW_AND_OLD_IMAGES");
        r.old_image = None;
        let expected = r#"{"eventID":"c4ca4238a0b923820dcc509a6f75849b","eventName":"INSERT","eventVersion":"1.1","eventSource":"aws:dynamodb","awsRegion":"us-east-1","dynamodb":{"ApproximateCreationDateTime":1428537600,"Keys":{"Id":{"N":"101"}},"NewImage":{"Message":{"S":"New item!"},"Id":{"N":"101"}},"SequenceNumber":"4421584500000000017450439091","SizeBytes":26,"StreamViewType":"NEW_AND_OLD_IMAGES"},"eventSourceARN":"arn:aws:dynamodb:us-east-1:123456789012:table/ExampleTableWithStream/stream/2015-06-27T00:48:05.899"}"#;
        assert_eq!(record_json(&r, ARN, "us-east-1").get(), expected);
        let parsed: aws_lambda_events::event::dynamodb::EventRecord =
            serde_json::from_str(expected).unwrap();
        assert_eq!(parsed.event_name, "INSERT");
    }

    #[test]
    fn images_follow_the_view_type_and_event() {
        let has = |event: &str, view: &str| {
            let v: Value =
                serde_json::from_str(record_json(&record(event, view), ARN, "r").get()).unwrap();
            (
                v["dynamodb"].get("NewImage").is_some(),
                v["dynamodb"].get("OldImage").is_some(),
            )
        };
        for (event, view, expected) in [
            ("INSERT", "NEW_AND_OLD_IMAGES", (true, false)),
            ("MODIFY", "NEW_AND_OLD_IMAGES", (true, true)),
            ("REMOVE", "NEW_AND_OLD_IMAGES", (false, true)),
            ("INSERT", "NEW_IMAGE", (true, false)),
            ("MODIFY", "NEW_IMAGE", (true, false)),
            ("REMOVE", "NEW_IMAGE", (false, false)),
            ("INSERT", "OLD_IMAGE", (false, false)),
            ("MODIFY", "OLD_IMAGE", (false, true)),
            ("REMOVE", "OLD_IMAGE", (false, true)),
            ("INSERT", "KEYS_ONLY", (false, false)),
            ("MODIFY", "KEYS_ONLY", (false, false)),
            ("REMOVE", "KEYS_ONLY", (false, false)),
        ] {
            assert_eq!(has(event, view), expected, "{event} {view}");
        }
    }
}
