//! The narrow interface the shard machinery needs from Kinesis or DynamoDB Streams. Each
//! service's client implements [`StreamApi`] and converts its SDK types into these.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::action::ErrorAction;
use crate::checkpoint::SequenceNumber;
use crate::payload::RecordJson;

/// A shard as listed by the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardInfo {
    pub(crate) shard_id: String,
    pub(crate) parent_shard_id: Option<String>,
    pub(crate) adjacent_parent_shard_id: Option<String>,
    /// Set once the shard is closed (after a split or merge, or for DynamoDB after ~4 h).
    pub(crate) ending_sequence_number: Option<SequenceNumber>,
}

impl ShardInfo {
    pub(crate) fn parents(&self) -> impl Iterator<Item = &str> {
        self.parent_shard_id
            .iter()
            .chain(self.adjacent_parent_shard_id.iter())
            .map(String::as_str)
    }
}

/// Where a new iterator starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IteratorPosition {
    TrimHorizon,
    Latest,
    AtTimestamp(DateTime<Utc>),
    AtSequenceNumber(SequenceNumber),
    AfterSequenceNumber(SequenceNumber),
}

/// One record read from a shard, already rendered as its event JSON.
#[derive(Debug, Clone)]
pub(crate) struct StreamRecord {
    pub(crate) sequence_number: SequenceNumber,
    /// The partition key (Kinesis) or the item's key (DynamoDB): order is kept per key when
    /// `parallelization_factor` > 1.
    pub(crate) key: String,
    /// Approximate arrival (Kinesis) or creation (DynamoDB) time.
    pub(crate) arrival: DateTime<Utc>,
    pub(crate) json: RecordJson,
}

impl crate::batch::BatchRecord for StreamRecord {
    fn json(&self) -> &RecordJson {
        &self.json
    }
}

/// One GetRecords answer.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadBatch {
    pub(crate) records: Vec<StreamRecord>,
    /// `None` when the shard is closed and read to its end.
    pub(crate) next_iterator: Option<String>,
    /// How far behind the tip the iterator is (Kinesis only).
    pub(crate) millis_behind_latest: Option<i64>,
}

const MB: usize = 1024 * 1024;

/// How often a shard may be read, and how much one read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadPacing {
    /// Shortest gap between two GetRecords on one shard.
    pub(crate) min_interval: Duration,
    /// Gap when caught up (the last read returned nothing).
    pub(crate) idle_interval: Duration,
    /// Records per GetRecords.
    pub(crate) max_records: usize,
    /// The most data one GetRecords (or fan-out event) returns, whatever the record count.
    pub(crate) max_bytes: usize,
}

impl ReadPacing {
    /// Kinesis allows 5 GetRecords per second per shard; Lambda reads once a second when
    /// caught up.
    pub(crate) const KINESIS: ReadPacing = ReadPacing {
        min_interval: Duration::from_millis(200),
        idle_interval: Duration::from_secs(1),
        max_records: 10_000,
        max_bytes: 10 * MB,
    };
    /// Enhanced fan-out: a read waits on the subscription itself, so none waits before it.
    pub(crate) const FAN_OUT: ReadPacing = ReadPacing {
        min_interval: Duration::ZERO,
        idle_interval: Duration::ZERO,
        max_records: 10_000,
        max_bytes: 10 * MB,
    };
    /// Lambda polls DynamoDB Streams 4 times a second per shard; a GetRecords returns at most
    /// 1,000 records or 1 MB.
    pub(crate) const DYNAMODB: ReadPacing = ReadPacing {
        min_interval: Duration::from_millis(250),
        idle_interval: Duration::from_millis(250),
        max_records: 1_000,
        max_bytes: MB,
    };
}

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum StreamError {
    #[error("iterator expired: {0}")]
    ExpiredIterator(String),
    #[error("invalid iterator or position: {0}")]
    InvalidArgument(String),
    #[error("throttled: {0}")]
    Throttled(String),
    #[error("stream or shard not found: {0}")]
    NotFound(String),
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("{0}")]
    Transient(String),
}

impl StreamError {
    pub(crate) fn action(&self) -> ErrorAction {
        match self {
            StreamError::ExpiredIterator(_) | StreamError::InvalidArgument(_) => {
                ErrorAction::RefreshIterator
            }
            StreamError::Throttled(_) | StreamError::Transient(_) => ErrorAction::Retry,
            StreamError::NotFound(_) | StreamError::AccessDenied(_) => ErrorAction::StopMapping,
        }
    }
}

/// A stream's shards and records.
pub(crate) trait StreamApi: Send + Sync {
    fn list_shards(&self) -> BoxFuture<'_, Result<Vec<ShardInfo>, StreamError>>;

    fn shard_iterator<'a>(
        &'a self,
        shard_id: &'a str,
        position: &'a IteratorPosition,
    ) -> BoxFuture<'a, Result<String, StreamError>>;

    fn get_records<'a>(
        &'a self,
        shard_id: &'a str,
        iterator: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<ReadBatch, StreamError>>;
}
