//! Enhanced fan-out: [`StreamApi`] over SubscribeToShard, for a mapping whose
//! `event_source_arn` is a registered stream consumer. The consumer has 2 MB/s per shard to
//! itself and records are pushed over HTTP/2 as they arrive, instead of one GetRecords a
//! second on shared throughput.
//!
//! The shard machinery reads through iterators, so this presents a subscription as one: an
//! "iterator" here is a position (`TRIM_HORIZON`, `AFTER:<sequence number>`, ...). The first
//! read of a position subscribes from it; each event's `ContinuationSequenceNumber` becomes
//! the next position, and a read of that position continues on the same subscription. So a
//! subscription that ends (AWS closes them after 5 minutes), is renewed (before then, at
//! [`RENEW_AFTER`]) or breaks is resumed from the last continuation, with nothing lost or
//! read twice; an event with `ChildShards` ends the shard, and the lineage rules start its
//! children. `ResourceInUseException` (a resubscription within 5 s) and throttles are retried
//! with the reader's backoff. Everything else (batching, windows, parallelization,
//! checkpoints) is the polling path's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_kinesis::primitives::DateTime as SdkDateTime;
use aws_sdk_kinesis::types::{
    ShardIteratorType, StartingPosition, SubscribeToShardEvent, SubscribeToShardEventStream,
};
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{classify_stream_error, SdkKinesis};
use crate::checkpoint::SequenceNumber;
use crate::source::stream::{IteratorPosition, ReadBatch, ShardInfo, StreamApi, StreamError};

/// AWS ends a subscription after 5 minutes; esmd renews it a little before.
pub(crate) const RENEW_AFTER: Duration = Duration::from_secs(290);

/// [`RENEW_AFTER`], or `ESMD_FANOUT_RENEW_MS` (a test hook: the integration tests renew
/// subscriptions every few seconds to show that a renewal loses and repeats nothing).
pub(crate) fn renew_after() -> Duration {
    std::env::var("ESMD_FANOUT_RENEW_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(RENEW_AFTER, Duration::from_millis)
}

/// How long one read waits for an event with records before answering "nothing yet" (the
/// reader then reads again at once: the wait is the subscription's, not a poll interval).
const READ_WAIT: Duration = Duration::from_secs(1);

/// One open subscription: the position its next event continues from, and its events.
struct Subscription {
    next: String,
    events: mpsc::Receiver<Result<SubscribeToShardEvent, StreamError>>,
    opened: Instant,
}

pub(crate) struct SdkKinesisFanOut {
    polling: SdkKinesis,
    consumer_arn: String,
    renew_after: Duration,
    /// By shard. Never held across an await.
    subscriptions: Mutex<HashMap<String, Subscription>>,
}

impl SdkKinesisFanOut {
    pub(crate) fn new(polling: SdkKinesis, consumer_arn: &str, renew_after: Duration) -> Self {
        SdkKinesisFanOut {
            polling,
            consumer_arn: consumer_arn.to_string(),
            renew_after,
            subscriptions: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Subscription>> {
        self.subscriptions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open subscription that continues from `position`, unless it is due for renewal.
    fn take_continuing(&self, shard_id: &str, position: &str) -> Option<Subscription> {
        let sub = self.lock().remove(shard_id)?;
        (sub.next == position && sub.opened.elapsed() < self.renew_after).then_some(sub)
    }

    async fn subscribe(&self, shard_id: &str, position: &str) -> Result<Subscription, StreamError> {
        let start = starting_position(position)?;
        let out = self
            .polling
            .client
            .subscribe_to_shard()
            .consumer_arn(&self.consumer_arn)
            .shard_id(shard_id)
            .starting_position(start)
            // The subscription's event stream lasts up to 5 minutes: no attempt timeout.
            .customize()
            .config_override(
                aws_sdk_kinesis::config::Builder::default().timeout_config(
                    aws_config::timeout::TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(5))
                        .disable_operation_attempt_timeout()
                        .build(),
                ),
            )
            .send()
            .await
            .map_err(classify_stream_error)?;
        tracing::debug!(shard = shard_id, position, "subscribed to shard");
        let (tx, events) = mpsc::channel(4);
        let mut stream = out.event_stream;
        tokio::spawn(async move {
            loop {
                let item = match stream.recv().await {
                    Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event))) => {
                        Ok(event)
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(e) => Err(StreamError::Transient(format!("subscription: {e}"))),
                };
                let failed = item.is_err();
                // The reader dropped the subscription (renewal, a new position): stop.
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Subscription {
            next: position.to_string(),
            events,
            opened: Instant::now(),
        })
    }
}

/// The position a read token stands for, as SubscribeToShard takes it.
fn starting_position(token: &str) -> Result<StartingPosition, StreamError> {
    let bad = || StreamError::InvalidArgument(format!("not a fan-out position: {token}"));
    let b = StartingPosition::builder();
    let b = match token.split_once(':') {
        None if token == "TRIM_HORIZON" => b.r#type(ShardIteratorType::TrimHorizon),
        None if token == "LATEST" => b.r#type(ShardIteratorType::Latest),
        Some(("AT", seq)) => b
            .r#type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(seq),
        Some(("AFTER", seq)) => b
            .r#type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(seq),
        Some(("AT_TIMESTAMP", millis)) => b
            .r#type(ShardIteratorType::AtTimestamp)
            .timestamp(SdkDateTime::from_millis(millis.parse().map_err(|_| bad())?)),
        _ => return Err(bad()),
    };
    b.build().map_err(|_| bad())
}

/// The read token for a position.
fn token(position: &IteratorPosition) -> String {
    match position {
        IteratorPosition::TrimHorizon => "TRIM_HORIZON".into(),
        IteratorPosition::Latest => "LATEST".into(),
        IteratorPosition::AtTimestamp(t) => format!("AT_TIMESTAMP:{}", t.timestamp_millis()),
        IteratorPosition::AtSequenceNumber(s) => format!("AT:{}", s.as_str()),
        IteratorPosition::AfterSequenceNumber(s) => format!("AFTER:{}", s.as_str()),
    }
}

impl StreamApi for SdkKinesisFanOut {
    fn list_shards(&self) -> BoxFuture<'_, Result<Vec<ShardInfo>, StreamError>> {
        self.polling.list_shards()
    }

    fn shard_iterator<'a>(
        &'a self,
        _shard_id: &'a str,
        position: &'a IteratorPosition,
    ) -> BoxFuture<'a, Result<String, StreamError>> {
        Box::pin(async move { Ok(token(position)) })
    }

    fn get_records<'a>(
        &'a self,
        shard_id: &'a str,
        iterator: &'a str,
        _limit: usize,
    ) -> BoxFuture<'a, Result<ReadBatch, StreamError>> {
        Box::pin(async move {
            let mut sub = match self.take_continuing(shard_id, iterator) {
                Some(sub) => sub,
                None => self.subscribe(shard_id, iterator).await?,
            };
            let deadline = Instant::now() + READ_WAIT;
            loop {
                let event = match tokio::time::timeout_at(deadline, sub.events.recv()).await {
                    // Nothing yet: read again from where the subscription stands.
                    Err(_) => return Ok(self.keep(shard_id, sub, Vec::new(), None)),
                    // The subscription ended: the next read resubscribes from its position.
                    Ok(None) => return Ok(empty(&sub.next)),
                    Ok(Some(Err(e))) => return Err(e),
                    Ok(Some(Ok(event))) => event,
                };
                let records = self.polling.render(shard_id, event.records())?;
                if !event.child_shards().is_empty() {
                    // The shard is closed and read to its end.
                    return Ok(ReadBatch {
                        records,
                        next_iterator: None,
                        millis_behind_latest: Some(event.millis_behind_latest()),
                    });
                }
                let continuation = event.continuation_sequence_number();
                if !continuation.is_empty() {
                    SequenceNumber::parse(continuation)
                        .map_err(|e| StreamError::Transient(e.to_string()))?;
                    sub.next = format!("AFTER:{continuation}");
                }
                if !records.is_empty() {
                    let behind = Some(event.millis_behind_latest());
                    return Ok(self.keep(shard_id, sub, records, behind));
                }
            }
        })
    }
}

impl SdkKinesisFanOut {
    /// Keeps the subscription for the next read and answers this one.
    fn keep(
        &self,
        shard_id: &str,
        sub: Subscription,
        records: Vec<crate::source::stream::StreamRecord>,
        millis_behind_latest: Option<i64>,
    ) -> ReadBatch {
        let next = sub.next.clone();
        self.lock().insert(shard_id.to_string(), sub);
        ReadBatch {
            records,
            next_iterator: Some(next),
            millis_behind_latest,
        }
    }
}

fn empty(next: &str) -> ReadBatch {
    ReadBatch {
        records: Vec::new(),
        next_iterator: Some(next.to_string()),
        millis_behind_latest: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::types::{ChildShard, HashKeyRange, Record};

    const SEQ_1: &str = "49590338271490256608559692538361571095921575989136588898";
    const SEQ_2: &str = "49590338271490256608559692538361571095921575989136588899";

    /// A fan-out reader with one open subscription on `shardId-0`, fed by the returned sender
    /// (no network: reads continue on the subscription).
    fn reader_with_subscription() -> (
        SdkKinesisFanOut,
        mpsc::Sender<Result<SubscribeToShardEvent, StreamError>>,
    ) {
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
            .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_kinesis::config::Credentials::for_tests())
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let polling = SdkKinesis::new(
            aws_sdk_kinesis::Client::from_conf(config),
            "arn:aws:kinesis:us-east-1:123456789012:stream/s",
            "s",
            "us-east-1",
            "arn:aws:iam::123456789012:role/esmd".into(),
        );
        let reader = SdkKinesisFanOut::new(
            polling,
            "arn:aws:kinesis:us-east-1:123456789012:stream/s/consumer/c:1",
            RENEW_AFTER,
        );
        let (tx, events) = mpsc::channel(8);
        reader.lock().insert(
            "shardId-0".into(),
            Subscription {
                next: "TRIM_HORIZON".into(),
                events,
                opened: Instant::now(),
            },
        );
        (reader, tx)
    }

    fn event(records: &[&str], continuation: &str, children: bool) -> SubscribeToShardEvent {
        let mut b = SubscribeToShardEvent::builder()
            .set_records(Some(Vec::new()))
            .continuation_sequence_number(continuation)
            .millis_behind_latest(0);
        for seq in records {
            b = b.records(
                Record::builder()
                    .sequence_number(*seq)
                    .partition_key("k")
                    .data(aws_sdk_kinesis::primitives::Blob::new(b"x".to_vec()))
                    .build()
                    .unwrap(),
            );
        }
        if children {
            b = b.child_shards(
                ChildShard::builder()
                    .shard_id("shardId-1")
                    .parent_shards("shardId-0")
                    .hash_key_range(
                        HashKeyRange::builder()
                            .starting_hash_key("0")
                            .ending_hash_key("1")
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            );
        }
        b.build().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn events_continue_from_their_continuation_and_child_shards_end_the_shard() {
        let (reader, tx) = reader_with_subscription();
        // An empty event moves the position; the read waits for records.
        tx.send(Ok(event(&[], SEQ_1, false))).await.unwrap();
        tx.send(Ok(event(&[SEQ_2], SEQ_2, false))).await.unwrap();
        let batch = reader
            .get_records("shardId-0", "TRIM_HORIZON", 100)
            .await
            .unwrap();
        assert_eq!(batch.records.len(), 1);
        assert_eq!(
            batch.next_iterator.as_deref(),
            Some(format!("AFTER:{SEQ_2}").as_str())
        );

        // Nothing for a second: an empty answer that keeps the position and the subscription.
        let idle = reader
            .get_records("shardId-0", &format!("AFTER:{SEQ_2}"), 100)
            .await
            .unwrap();
        assert!(idle.records.is_empty());
        assert_eq!(
            idle.next_iterator.as_deref(),
            Some(format!("AFTER:{SEQ_2}").as_str())
        );

        // The shard's end: the last records, then no next position.
        tx.send(Ok(event(&[SEQ_2], "", true))).await.unwrap();
        let end = reader
            .get_records("shardId-0", &format!("AFTER:{SEQ_2}"), 100)
            .await
            .unwrap();
        assert_eq!(end.records.len(), 1);
        assert_eq!(end.next_iterator, None, "ChildShards ends the shard");
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscription_that_ends_is_resumed_from_its_position() {
        let (reader, tx) = reader_with_subscription();
        drop(tx);
        let ended = reader
            .get_records("shardId-0", "TRIM_HORIZON", 100)
            .await
            .unwrap();
        assert!(ended.records.is_empty());
        assert_eq!(ended.next_iterator.as_deref(), Some("TRIM_HORIZON"));
        assert!(
            reader.lock().is_empty(),
            "the next read subscribes again from there"
        );
    }

    #[test]
    fn positions_round_trip_through_tokens() {
        let seq = SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898")
            .unwrap();
        for position in [
            IteratorPosition::TrimHorizon,
            IteratorPosition::Latest,
            IteratorPosition::AtSequenceNumber(seq.clone()),
            IteratorPosition::AfterSequenceNumber(seq),
            IteratorPosition::AtTimestamp(
                chrono::DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
            ),
        ] {
            let start = starting_position(&token(&position)).unwrap();
            let expected = match &position {
                IteratorPosition::TrimHorizon => ShardIteratorType::TrimHorizon,
                IteratorPosition::Latest => ShardIteratorType::Latest,
                IteratorPosition::AtTimestamp(_) => ShardIteratorType::AtTimestamp,
                IteratorPosition::AtSequenceNumber(_) => ShardIteratorType::AtSequenceNumber,
                IteratorPosition::AfterSequenceNumber(_) => ShardIteratorType::AfterSequenceNumber,
            };
            assert_eq!(start.r#type(), &expected);
        }
        assert!(starting_position("shardIterator-from-GetShardIterator").is_err());
    }
}
