//! [`StreamApi`] over Kinesis Data Streams (aws-sdk-kinesis). SDK types stop here.
//! Shared-throughput polling (GetRecords) is here; enhanced fan-out (SubscribeToShard through
//! a registered stream consumer) is [`fanout`], behind the same trait.

pub(crate) mod fanout;
pub(crate) mod lean;

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::DateTime as SdkDateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use chrono::{DateTime, TimeZone, Utc};
use futures::future::BoxFuture;

use super::stream::{IteratorPosition, ReadBatch, ShardInfo, StreamApi, StreamError, StreamRecord};
use crate::aws::error::{AwsFailure, FailureClass};
use crate::checkpoint::SequenceNumber;
use crate::payload::kinesis::{record_json, KinesisContext, KinesisData, KinesisRecord};

/// One Kinesis stream.
#[derive(Clone, Debug)]
pub(crate) struct SdkKinesis {
    client: aws_sdk_kinesis::Client,
    stream_name: String,
    stream_arn: String,
    region: String,
    invoke_identity_arn: String,
}

impl SdkKinesis {
    pub(crate) fn new(
        client: aws_sdk_kinesis::Client,
        stream_arn: &str,
        stream_name: &str,
        region: &str,
        invoke_identity_arn: String,
    ) -> Self {
        SdkKinesis {
            client,
            stream_name: stream_name.to_string(),
            stream_arn: stream_arn.to_string(),
            region: region.to_string(),
            invoke_identity_arn,
        }
    }
}

impl SdkKinesis {
    /// Records as the service returned them (GetRecords and SubscribeToShard share the
    /// type), rendered as their events.
    fn render(
        &self,
        shard_id: &str,
        records: &[aws_sdk_kinesis::types::Record],
    ) -> Result<Vec<StreamRecord>, StreamError> {
        let ctx = self.context(shard_id);
        records
            .iter()
            .map(|r| {
                let arrival_millis = r
                    .approximate_arrival_timestamp()
                    .and_then(nearest_millis)
                    .unwrap_or_else(|| Utc::now().timestamp_millis());
                stream_record(
                    &KinesisRecord {
                        partition_key: r.partition_key().unwrap_or_default(),
                        sequence_number: r.sequence_number(),
                        data: KinesisData::Bytes(r.data().as_ref()),
                        arrival_millis,
                    },
                    &ctx,
                )
            })
            .collect()
    }

    fn context<'a>(&'a self, shard_id: &'a str) -> KinesisContext<'a> {
        KinesisContext {
            shard_id,
            stream_arn: &self.stream_arn,
            region: &self.region,
            invoke_identity_arn: &self.invoke_identity_arn,
        }
    }
}

/// The SDK's timestamp to the nearest millisecond. Kinesis writes milliseconds, which the SDK
/// reads through an `f64` a few nanoseconds short (`1545084650.987` as `…650.986999988`):
/// truncated, as its `to_millis` does, the event would say `…650.986`.
pub(crate) fn nearest_millis(t: &SdkDateTime) -> Option<i64> {
    let rounded = (i64::from(t.subsec_nanos()) + 500_000) / 1_000_000;
    t.secs().checked_mul(1000)?.checked_add(rounded)
}

/// A record as the shard machinery holds it: its position, its key, and its event.
fn stream_record(
    record: &KinesisRecord<'_>,
    ctx: &KinesisContext<'_>,
) -> Result<StreamRecord, StreamError> {
    Ok(StreamRecord {
        sequence_number: seq(record.sequence_number)?,
        key: record.partition_key.to_string(),
        arrival: Utc
            .timestamp_millis_opt(record.arrival_millis)
            .single()
            .unwrap_or_default(),
        json: record_json(record, ctx),
    })
}

pub(crate) fn classify_stream_error<E>(
    err: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> StreamError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    stream_error(AwsFailure::from_sdk(&err))
}

/// What a shard's reader does about a failed call, whichever client made it.
pub(crate) fn stream_error(failure: AwsFailure) -> StreamError {
    let text = failure.to_string();
    match failure.class {
        FailureClass::ExpiredIterator => StreamError::ExpiredIterator(text),
        FailureClass::InvalidArgument => StreamError::InvalidArgument(text),
        FailureClass::Throttled => StreamError::Throttled(text),
        FailureClass::NotFound => StreamError::NotFound(text),
        FailureClass::AccessDenied => StreamError::AccessDenied(text),
        // Anything else (a 5xx, a reset, a refusal the reader cannot act on) is retried;
        // three failed reads in a row refresh the iterator.
        FailureClass::Transient | FailureClass::TooLarge | FailureClass::Rejected => {
            StreamError::Transient(text)
        }
    }
}

/// An SDK timestamp as chrono's, by the same rounding as [`nearest_millis`].
pub(crate) fn to_chrono(t: &SdkDateTime) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(nearest_millis(t).unwrap_or(0))
        .single()
        .unwrap_or_default()
}

fn seq(text: &str) -> Result<SequenceNumber, StreamError> {
    SequenceNumber::parse(text).map_err(|e| StreamError::Transient(e.to_string()))
}

impl StreamApi for SdkKinesis {
    fn list_shards(&self) -> BoxFuture<'_, Result<Vec<ShardInfo>, StreamError>> {
        Box::pin(async move {
            let mut shards = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut req = self.client.list_shards();
                req = match &token {
                    Some(t) => req.next_token(t),
                    None => req.stream_name(&self.stream_name),
                };
                let out = req.send().await.map_err(classify_stream_error)?;
                for s in out.shards() {
                    shards.push(ShardInfo {
                        shard_id: s.shard_id().to_string(),
                        parent_shard_id: s.parent_shard_id().map(str::to_string),
                        adjacent_parent_shard_id: s.adjacent_parent_shard_id().map(str::to_string),
                        ending_sequence_number: s
                            .sequence_number_range()
                            .and_then(|r| r.ending_sequence_number())
                            .map(seq)
                            .transpose()?,
                    });
                }
                match out.next_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_string()),
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
                .stream_name(&self.stream_name)
                .shard_id(shard_id);
            let req = match position {
                IteratorPosition::TrimHorizon => {
                    req.shard_iterator_type(ShardIteratorType::TrimHorizon)
                }
                IteratorPosition::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
                IteratorPosition::AtTimestamp(t) => req
                    .shard_iterator_type(ShardIteratorType::AtTimestamp)
                    .timestamp(SdkDateTime::from_millis(t.timestamp_millis())),
                IteratorPosition::AtSequenceNumber(s) => req
                    .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                    .starting_sequence_number(s.as_str()),
                IteratorPosition::AfterSequenceNumber(s) => req
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .starting_sequence_number(s.as_str()),
            };
            let out = req.send().await.map_err(classify_stream_error)?;
            out.shard_iterator
                .ok_or_else(|| StreamError::InvalidArgument(format!("no iterator for {shard_id}")))
        })
    }

    fn get_records<'a>(
        &'a self,
        shard_id: &'a str,
        iterator: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<ReadBatch, StreamError>> {
        Box::pin(async move {
            let out = self
                .client
                .get_records()
                .shard_iterator(iterator)
                .limit(limit.min(10_000) as i32)
                .send()
                .await
                .map_err(classify_stream_error)?;
            let records = self.render(shard_id, out.records())?;
            Ok(ReadBatch {
                records,
                next_iterator: out.next_shard_iterator().map(str::to_string),
                millis_behind_latest: out.millis_behind_latest(),
            })
        })
    }
}
