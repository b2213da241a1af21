//! [`StreamApi`] over DynamoDB Streams (aws-sdk-dynamodbstreams). SDK types stop here:
//! attribute values become DynamoDB-JSON objects (`{"S": "x"}`).

use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use base64::Engine;
use chrono::{TimeZone, Utc};
use futures::future::BoxFuture;
use serde_json::{Map, Value};

use super::kinesis::{classify_stream_error, to_chrono};
use super::stream::{IteratorPosition, ReadBatch, ShardInfo, StreamApi, StreamError, StreamRecord};
use crate::checkpoint::SequenceNumber;
use crate::payload::dynamodb::{record_json, DynamoDbRecord};

/// One table's stream.
#[derive(Clone, Debug)]
pub(crate) struct SdkDynamoDbStreams {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    region: String,
}

impl SdkDynamoDbStreams {
    pub(crate) fn new(
        client: aws_sdk_dynamodbstreams::Client,
        stream_arn: &str,
        region: &str,
    ) -> Self {
        SdkDynamoDbStreams {
            client,
            stream_arn: stream_arn.to_string(),
            region: region.to_string(),
        }
    }
}

fn seq(text: &str) -> Result<SequenceNumber, StreamError> {
    SequenceNumber::parse(text).map_err(|e| StreamError::Transient(e.to_string()))
}

/// An SDK attribute value as DynamoDB JSON.
pub(crate) fn attribute_json(value: &AttributeValue) -> Value {
    let b64 = |b: &aws_sdk_dynamodbstreams::primitives::Blob| {
        Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
    };
    let (tag, inner) = match value {
        AttributeValue::S(s) => ("S", Value::String(s.clone())),
        AttributeValue::N(n) => ("N", Value::String(n.clone())),
        AttributeValue::B(b) => ("B", b64(b)),
        AttributeValue::Ss(v) => ("SS", v.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(v) => ("NS", v.iter().cloned().map(Value::String).collect()),
        AttributeValue::Bs(v) => ("BS", v.iter().map(b64).collect()),
        AttributeValue::M(m) => ("M", Value::Object(image(m))),
        AttributeValue::L(l) => ("L", l.iter().map(attribute_json).collect()),
        AttributeValue::Null(b) => ("NULL", Value::Bool(*b)),
        AttributeValue::Bool(b) => ("BOOL", Value::Bool(*b)),
        _ => ("NULL", Value::Bool(true)),
    };
    let mut m = Map::new();
    m.insert(tag.to_string(), inner);
    Value::Object(m)
}

/// An item image, with attributes sorted by name so the JSON is deterministic.
pub(crate) fn image(map: &std::collections::HashMap<String, AttributeValue>) -> Map<String, Value> {
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|k| (k.clone(), attribute_json(&map[k])))
        .collect()
}

impl StreamApi for SdkDynamoDbStreams {
    fn list_shards(&self) -> BoxFuture<'_, Result<Vec<ShardInfo>, StreamError>> {
        Box::pin(async move {
            let mut shards = Vec::new();
            let mut start: Option<String> = None;
            loop {
                let out = self
                    .client
                    .describe_stream()
                    .stream_arn(&self.stream_arn)
                    .set_exclusive_start_shard_id(start.clone())
                    .send()
                    .await
                    .map_err(classify_stream_error)?;
                let Some(desc) = out.stream_description else {
                    break;
                };
                for s in desc.shards() {
                    shards.push(ShardInfo {
                        shard_id: s.shard_id().unwrap_or_default().to_string(),
                        parent_shard_id: s.parent_shard_id().map(str::to_string),
                        adjacent_parent_shard_id: None,
                        ending_sequence_number: s
                            .sequence_number_range()
                            .and_then(|r| r.ending_sequence_number())
                            .map(seq)
                            .transpose()?,
                    });
                }
                match desc.last_evaluated_shard_id() {
                    Some(id) if !id.is_empty() => start = Some(id.to_string()),
                    _ => break,
                }
            }
            Ok(shards)
        })
    }

    fn shard_iterator<'a>(
        &'a self,
        shard_id: &'a str,
        position: &'a IteratorPosition,
    ) -> BoxFuture<'a, Result<String, StreamError>> {
        Box::pin(async move {
            let req = self
                .client
                .get_shard_iterator()
                .stream_arn(&self.stream_arn)
                .shard_id(shard_id);
            let req = match position {
                IteratorPosition::TrimHorizon | IteratorPosition::AtTimestamp(_) => {
                    req.shard_iterator_type(ShardIteratorType::TrimHorizon)
                }
                IteratorPosition::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
                IteratorPosition::AtSequenceNumber(s) => req
                    .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                    .sequence_number(s.as_str()),
                IteratorPosition::AfterSequenceNumber(s) => req
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .sequence_number(s.as_str()),
            };
            let out = req.send().await.map_err(classify_stream_error)?;
            out.shard_iterator
                .ok_or_else(|| StreamError::InvalidArgument(format!("no iterator for {shard_id}")))
        })
    }

    fn get_records<'a>(
        &'a self,
        _shard_id: &'a str,
        iterator: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<ReadBatch, StreamError>> {
        Box::pin(async move {
            let out = self
                .client
                .get_records()
                .shard_iterator(iterator)
                .limit(limit.min(1_000) as i32)
                .send()
                .await
                .map_err(classify_stream_error)?;
            let mut records = Vec::with_capacity(out.records().len());
            for r in out.records() {
                let Some(body) = r.dynamodb() else { continue };
                let sequence_number = body.sequence_number().unwrap_or_default().to_string();
                let created = body
                    .approximate_creation_date_time()
                    .map(to_chrono)
                    .unwrap_or_else(Utc::now);
                let keys = body.keys().map(image).unwrap_or_default();
                let record = DynamoDbRecord {
                    event_id: r.event_id().unwrap_or_default().to_string(),
                    event_name: r
                        .event_name()
                        .map(|n| n.as_str().to_string())
                        .unwrap_or_default(),
                    approximate_creation_seconds: created.timestamp(),
                    keys,
                    new_image: body.new_image().map(image),
                    old_image: body.old_image().map(image),
                    sequence_number: sequence_number.clone(),
                    size_bytes: body.size_bytes().unwrap_or_default(),
                    stream_view_type: body
                        .stream_view_type()
                        .map(|v| v.as_str().to_string())
                        .unwrap_or_default(),
                };
                records.push(StreamRecord {
                    sequence_number: seq(&sequence_number)?,
                    key: serde_json::to_string(&record.keys).unwrap_or_default(),
                    arrival: Utc
                        .timestamp_opt(created.timestamp(), 0)
                        .single()
                        .unwrap_or(created),
                    json: record_json(&record, &self.stream_arn, &self.region),
                });
            }
            Ok(ReadBatch {
                records,
                next_iterator: out.next_shard_iterator().map(str::to_string),
                millis_behind_latest: None,
            })
        })
    }
}
