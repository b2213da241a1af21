//! `[aws] client = "lean"`: GetRecords, the Kinesis call of every batch, through esmd's own
//! JSON-protocol client ([`crate::aws::lean`]) instead of the SDK's orchestrator. The records'
//! data stays the base64 text of the answer, which the event carries as it is (the SDK decodes
//! it and the event encodes it again: about a third of the cost of a record). The rarer calls
//! (ListShards, GetShardIterator) stay with the SDK, and so does enhanced fan-out.
//!
//! One difference with the SDK client: the SDK retries a failed GetRecords up to twice before
//! the reader sees it; here the reader's own retry (`docs/esm-semantics.md` §6, three failed
//! reads refresh the iterator at the reader's position) is the only one. Either way no record
//! is skipped.

use std::borrow::Cow;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{stream_error, stream_record, SdkKinesis};
use crate::aws::lean::JsonClient;
use crate::payload::kinesis::{is_canonical_base64, KinesisData, KinesisRecord};
use crate::source::stream::{IteratorPosition, ReadBatch, ShardInfo, StreamApi, StreamError};

/// The Kinesis JSON protocol: `Kinesis_20131202.<Operation>`, awsJson 1.1.
pub(crate) fn kinesis_json(client: crate::aws::lean::SignedClient) -> JsonClient {
    JsonClient::new(client, "Kinesis_20131202", "application/x-amz-json-1.1")
}

pub(crate) struct LeanKinesis {
    /// ListShards and GetShardIterator: a few calls per shard, not per batch.
    sdk: SdkKinesis,
    /// Shared by every mapping on Kinesis.
    client: Arc<JsonClient>,
}

impl LeanKinesis {
    pub(crate) fn new(sdk: SdkKinesis, client: Arc<JsonClient>) -> Self {
        LeanKinesis { sdk, client }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Records<'a> {
    #[serde(default, borrow)]
    records: Vec<WireRecord<'a>>,
    next_shard_iterator: Option<String>,
    millis_behind_latest: Option<i64>,
}

/// Strings are borrowed from the answer unless they hold a JSON escape.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireRecord<'a> {
    #[serde(borrow)]
    sequence_number: Cow<'a, str>,
    /// Seconds since the epoch, with milliseconds (awsJson's timestamp format), read as the
    /// text of the number: see [`epoch_millis`].
    #[serde(borrow)]
    approximate_arrival_timestamp: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    data: Cow<'a, str>,
    #[serde(borrow, default)]
    partition_key: Cow<'a, str>,
}

/// GetRecords' answer as the reader sees it. A record whose data is not base64 as the service
/// writes it is refused with the whole answer, as the SDK refuses one it cannot decode.
fn read_records(body: &[u8], sdk: &SdkKinesis, shard_id: &str) -> Result<ReadBatch, StreamError> {
    let malformed = |e: &dyn std::fmt::Display| {
        StreamError::Transient(format!("Kinesis GetRecords: malformed response: {e}"))
    };
    let answer: Records<'_> = serde_json::from_slice(body).map_err(|e| malformed(&e))?;
    let ctx = sdk.context(shard_id);
    let records = answer
        .records
        .iter()
        .map(|r| {
            if !is_canonical_base64(&r.data) {
                return Err(malformed(&format_args!(
                    "record {} has data that is not base64",
                    r.sequence_number
                )));
            }
            let arrival_millis = r
                .approximate_arrival_timestamp
                .and_then(|raw| epoch_millis(raw.get()))
                .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
            stream_record(
                &KinesisRecord {
                    partition_key: &r.partition_key,
                    sequence_number: &r.sequence_number,
                    data: KinesisData::Base64(&r.data),
                    arrival_millis,
                },
                &ctx,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ReadBatch {
        records,
        next_iterator: answer.next_shard_iterator,
        millis_behind_latest: answer.millis_behind_latest,
    })
}

/// Milliseconds since the epoch from awsJson's number of seconds, read from its decimal text
/// (`1545084650.987`, or Kinesis's `1.545084650987E9`), rounded to the nearest millisecond
/// (Kinesis's own precision; moto writes microseconds) as [`super::nearest_millis`] rounds
/// the SDK's reading.
fn epoch_millis(text: &str) -> Option<i64> {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.starts_with('-')
        || !(whole.bytes().chain(fraction.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // The digits, and where the decimal point falls among them once the exponent moves it;
    // the milliseconds are the digits up to three places after it.
    let digits = whole.bytes().chain(fraction.bytes());
    let point = whole.len() as i64 + i64::from(exponent);
    let mut millis: i64 = 0;
    for (i, d) in digits.map(Some).chain(std::iter::repeat(None)).enumerate() {
        let digit = i64::from(d.map_or(0, |d| d - b'0'));
        if i as i64 >= point + 3 {
            // The first digit after the milliseconds rounds them (a point moved far left
            // leaves nothing to round).
            return millis.checked_add(i64::from(digit >= 5 && i as i64 == point + 3));
        }
        millis = millis.checked_mul(10)?.checked_add(digit)?;
    }
    Some(millis)
}

impl StreamApi for LeanKinesis {
    fn list_shards(&self) -> BoxFuture<'_, Result<Vec<ShardInfo>, StreamError>> {
        self.sdk.list_shards()
    }

    fn shard_iterator<'a>(
        &'a self,
        shard_id: &'a str,
        position: &'a IteratorPosition,
    ) -> BoxFuture<'a, Result<String, StreamError>> {
        self.sdk.shard_iterator(shard_id, position)
    }

    fn get_records<'a>(
        &'a self,
        shard_id: &'a str,
        iterator: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<ReadBatch, StreamError>> {
        Box::pin(async move {
            let request = serde_json::json!({
                "ShardIterator": iterator,
                "Limit": limit.clamp(1, 10_000),
            });
            let body = self
                .client
                .call("GetRecords", request.to_string().into_bytes())
                .await
                .map_err(stream_error)?;
            read_records(&body, &self.sdk, shard_id)
        })
    }
}

#[cfg(test)]
#[path = "lean_tests.rs"]
mod tests;
