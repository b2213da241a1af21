//! Bad bytes never crash esmd (issue #13, item 4): arbitrary input to every parser that reads
//! what esmd does not control ends in a value or a classified error, never a panic. The
//! parsers: the function's batch response and window state, filter patterns (and matching
//! arbitrary records against them), the config file, the Lambda API's request documents, and
//! each source's record rendering (arbitrary payloads and attribute strings), whose output
//! must stay valid JSON that the filter view can read.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::dynamodb::DynamoDbRecord;
use super::kinesis::{KinesisContext, KinesisData, KinesisRecord};
use super::response::{parse_batch_item_failures, resolve_identifiers};
use super::sqs::{MessageAttribute, NoAttributesMd5, SqsMessage};
use super::window::response_state;
use crate::config::Config;
use crate::filter::FilterPattern;

/// Any JSON value, a few levels deep, with the keys esmd's parsers look for mixed in.
fn json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("batchItemFailures".to_string()),
        Just("itemIdentifier".to_string()),
        Just("state".to_string()),
        Just("body".to_string()),
        Just("numeric".to_string()),
        Just("prefix".to_string()),
        Just("exists".to_string()),
        Just("anything-but".to_string()),
        Just("$or".to_string()),
        ".{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![Just(">"), Just("<="), Just("="), Just("x")]
            .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn function_responses_never_panic(raw in bytes(), value in json(), ids in prop::collection::vec(".{0,6}", 0..4)) {
        let _ = parse_batch_item_failures(&raw);
        let _ = parse_batch_item_failures(value.to_string().as_bytes());
        let _ = response_state(&raw);
        let _ = response_state(value.to_string().as_bytes());
        let _ = resolve_identifiers(&ids, ["a", "b", ""].into_iter());
    }

    #[test]
    fn filter_patterns_never_panic_and_match_anything_without_panicking(text in ".{0,64}", pattern in json(), record in json()) {
        let _ = FilterPattern::parse(&text);
        if let Ok(compiled) = FilterPattern::parse(&pattern.to_string()) {
            let _ = compiled.matches(&record);
        }
    }

    #[test]
    fn config_files_never_panic(text in ".{0,200}", value in json()) {
        let _ = Config::parse(&text);
        // Mapping-shaped documents with arbitrary values in known fields.
        let mut table = toml::Table::new();
        for (field, v) in [("batch_size", &value), ("filter_criteria", &value), ("destination_config", &value)] {
            if let Ok(t) = toml::Value::try_from(v) {
                table.insert(field.to_string(), t);
            }
        }
        table.insert("event_source_arn".into(), toml::Value::String("arn:aws:kinesis:us-east-1:123456789012:stream/s".into()));
        table.insert("function_name".into(), toml::Value::String("f".into()));
        let _ = Config::validate_mapping(&toml::Value::Table(table));
    }

    #[test]
    fn lambda_api_requests_never_panic(value in json(), arn in ".{0,40}") {
        if let Value::Object(mut doc) = value {
            let _ = crate::api::shape::check_fields(&doc, crate::api::shape::Operation::Create);
            doc.insert("EventSourceArn".into(), Value::String(arn));
            let _ = crate::api::shape::to_mapping(&doc, "0b7a4a34-9a4e-4b36-9c1b-5f1f1ce0d7a1");
            let _ = crate::api::shape::merge(&doc, &doc);
        }
    }

    #[test]
    fn records_render_as_json_whatever_they_carry(
        data in bytes(),
        key in ".{0,16}",
        seq in ".{0,16}",
        body in ".{0,64}",
        attribute in ".{0,16}",
        value in json(),
        millis in any::<i64>(),
    ) {
        let ctx = KinesisContext { shard_id: &seq, stream_arn: &key, region: "r", invoke_identity_arn: "i" };
        let kinesis = super::kinesis::record_json(
            &KinesisRecord { partition_key: &key, sequence_number: &seq, data: KinesisData::Bytes(&data), arrival_millis: millis },
            &ctx,
        );
        prop_assert!(serde_json::from_str::<Value>(kinesis.get()).is_ok());
        let _ = super::kinesis::filter_view(kinesis.get());

        let message = SqsMessage {
            message_id: seq.clone(),
            receipt_handle: key.clone(),
            body: body.clone(),
            attributes: vec![(attribute.clone(), body.clone())],
            message_attributes: vec![(attribute.clone(), MessageAttribute {
                data_type: attribute.clone(),
                string_value: Some(body.clone()),
                binary_value: Some(body.clone().into_bytes()),
            })],
            ..SqsMessage::default()
        };
        let sqs = super::sqs::record_json(&message, &key, &seq, NoAttributesMd5::Omitted);
        prop_assert!(sqs.is_ok_and(|j| serde_json::from_str::<Value>(j.get()).is_ok()));
        let _ = super::sqs::filter_view(&message);

        let image = match value {
            Value::Object(m) => m,
            other => [("k".to_string(), other)].into_iter().collect(),
        };
        let dynamodb = super::dynamodb::record_json(
            &DynamoDbRecord {
                event_id: seq.clone(),
                event_name: key.clone(),
                approximate_creation_seconds: millis,
                keys: image.clone(),
                new_image: Some(image.clone()),
                old_image: Some(image),
                sequence_number: seq,
                size_bytes: millis,
                stream_view_type: attribute,
            },
            &key,
            "r",
        );
        prop_assert!(serde_json::from_str::<Value>(dynamodb.get()).is_ok());
        let _ = super::dynamodb::filter_view(dynamodb.get());
        let _ = super::dynamodb::filter_view(&body);
        let _ = super::kinesis::filter_view(&body);
    }
}
