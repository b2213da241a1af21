//! A shard worker against in-memory streams: iterator refresh and read pacing.

use super::*;
use crate::batch::BatchLimits;
use crate::checkpoint::SqliteStore;
use crate::checkpoint::{CheckpointStore, SequenceNumber, ShardStatus};
use crate::failure::destination::{Delivery, DestinationError, DestinationSender, StreamKind};
use crate::failure::stream::StreamPolicy;
use crate::filter::FilterSet;
use crate::invoke::{InvokeOutcome, Invoker};
use crate::retry::RetryPolicies;
use crate::source::stream::api::{
    IteratorPosition, ReadPacing, ShardInfo, StreamApi, StreamRecord,
};
use crate::source::stream::api::{ReadBatch, StreamError};
use crate::source::stream::process::Processor;
use crate::source::Shutdown;
use crate::telemetry::MappingStatus;
use bytes::Bytes;
use futures::future::BoxFuture;
use std::sync::Mutex;
use std::time::Duration;

/// A closed shard of ten records whose iterators are `pos:<index>`; the second read
/// fails with an expired iterator and the fourth with an invalid one.
struct FlakyShard {
    reads: Mutex<u32>,
    positions: Mutex<Vec<IteratorPosition>>,
}

fn record(i: usize) -> StreamRecord {
    StreamRecord {
        sequence_number: SequenceNumber::parse((i + 1).to_string()).unwrap(),
        key: "k".into(),
        arrival: chrono::Utc::now(),
        json: serde_json::value::to_raw_value(&serde_json::json!({ "i": i })).unwrap(),
    }
}

impl StreamApi for FlakyShard {
    fn list_shards(&self) -> BoxFuture<'_, Result<Vec<ShardInfo>, StreamError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn shard_iterator<'a>(
        &'a self,
        _: &'a str,
        position: &'a IteratorPosition,
    ) -> BoxFuture<'a, Result<String, StreamError>> {
        self.positions.lock().unwrap().push(position.clone());
        let start = match position {
            IteratorPosition::AfterSequenceNumber(s) => s.as_str().parse::<usize>().unwrap(),
            _ => 0,
        };
        Box::pin(async move { Ok(format!("pos:{start}")) })
    }
    fn get_records<'a>(
        &'a self,
        _: &'a str,
        iterator: &'a str,
        _: usize,
    ) -> BoxFuture<'a, Result<ReadBatch, StreamError>> {
        let n = {
            let mut reads = self.reads.lock().unwrap();
            *reads += 1;
            *reads
        };
        let start: usize = iterator.trim_start_matches("pos:").parse().unwrap();
        Box::pin(async move {
            match n {
                2 => return Err(StreamError::ExpiredIterator("expired".into())),
                4 => return Err(StreamError::InvalidArgument("bad iterator".into())),
                _ => {}
            }
            let end = (start + 3).min(10);
            Ok(ReadBatch {
                records: (start..end).map(record).collect(),
                next_iterator: (end < 10).then(|| format!("pos:{end}")),
                ..Default::default()
            })
        })
    }
}

struct Collect(Mutex<Vec<serde_json::Value>>);
impl Invoker for Collect {
    fn invoke<'a>(&'a self, _: &'a str, payload: Bytes) -> BoxFuture<'a, InvokeOutcome> {
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        self.0
            .lock()
            .unwrap()
            .extend(v["Records"].as_array().unwrap().clone());
        Box::pin(async { InvokeOutcome::Returned { body: Bytes::new() } })
    }
}
struct NoDestination;
impl DestinationSender for NoDestination {
    fn send<'a>(
        &'a self,
        _: &'a crate::config::FailureDestination,
        _: &'a Delivery,
    ) -> BoxFuture<'a, Result<(), DestinationError>> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn an_expired_or_invalid_iterator_is_refreshed_after_the_last_record_read() {
    let text = "[[mapping]]\nevent_source_arn = \"arn:aws:kinesis:us-east-1:1:stream/s\"\nfunction_name = \"f\"\nstarting_position = \"TRIM_HORIZON\"\n";
    let mapping = Arc::new(
        crate::config::Config::parse(text)
            .unwrap()
            .mappings
            .remove(0),
    );
    let status = Arc::new(MappingStatus::new(&mapping));
    let invoker = Arc::new(Collect(Mutex::new(Vec::new())));
    let api = Arc::new(FlakyShard {
        reads: Mutex::new(0),
        positions: Mutex::new(Vec::new()),
    });
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let shutdown = Shutdown::default();
    let ctx = Arc::new(ShardContext {
        uuid: mapping.uuid.clone(),
        api: api.clone(),
        store: store.clone(),
        processor: Arc::new(Processor {
            mapping: Arc::clone(&mapping),
            kind: StreamKind::Kinesis,
            function_arn: "f".into(),
            invoker: invoker.clone(),
            destinations: Arc::new(NoDestination),
            status: Arc::clone(&status),
            shutdown: shutdown.clone(),
            policy: StreamPolicy::default(),
            on_failure: None,
            delays: RetryPolicies::IMMEDIATE,
        }),
        filters: Arc::new(FilterSet::default()),
        filter_view: crate::payload::kinesis::filter_view,
        limits: BatchLimits::for_mapping(&mapping),
        lanes: 1,
        tumbling_window: None,
        pacing: ReadPacing {
            min_interval: Duration::from_millis(1),
            idle_interval: Duration::from_millis(1),
            max_records: 100,
        },
        shutdown,
        status,
        closed: Default::default(),
    });
    let (lease, _) = store
        .acquire(&mapping.uuid, "shard-0")
        .await
        .unwrap()
        .unwrap();
    let shard = ShardInfo {
        shard_id: "shard-0".into(),
        parent_shard_id: None,
        adjacent_parent_shard_id: None,
        ending_sequence_number: Some(SequenceNumber::parse("10").unwrap()),
    };
    let outcome = run_shard(ctx, shard, lease, None, IteratorPosition::TrimHorizon, None).await;
    assert_eq!(outcome, ShardOutcome::Ended);
    let seen: Vec<i64> = invoker
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|r| r["i"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seen,
        (0..10).collect::<Vec<_>>(),
        "every record once, in order"
    );
    let positions = api.positions.lock().unwrap().clone();
    assert_eq!(positions[0], IteratorPosition::TrimHorizon);
    assert_eq!(
        positions[1],
        IteratorPosition::AfterSequenceNumber(SequenceNumber::parse("3").unwrap()),
        "refreshed after the last record read"
    );
    assert_eq!(positions.len(), 3);
    let stored = store.shards(&mapping.uuid).await.unwrap();
    assert_eq!(stored[0].status, ShardStatus::Ended);
    assert_eq!(
        stored[0].sequence_number,
        Some(SequenceNumber::parse("10").unwrap())
    );
}

/// An open shard that returns `per_read` new records on every read.
struct Endless {
    per_read: usize,
    reads: Mutex<usize>,
}

impl StreamApi for Endless {
    fn list_shards(&self) -> BoxFuture<'_, Result<Vec<ShardInfo>, StreamError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn shard_iterator<'a>(
        &'a self,
        _: &'a str,
        _: &'a IteratorPosition,
    ) -> BoxFuture<'a, Result<String, StreamError>> {
        Box::pin(async { Ok("it".to_string()) })
    }
    fn get_records<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: usize,
    ) -> BoxFuture<'a, Result<ReadBatch, StreamError>> {
        let n = {
            let mut reads = self.reads.lock().unwrap();
            *reads += 1;
            *reads
        };
        let records = (0..self.per_read).map(|i| record(n * 10 + i)).collect();
        Box::pin(async move {
            Ok(ReadBatch {
                records,
                next_iterator: Some("it".into()),
                millis_behind_latest: None,
            })
        })
    }
}

async fn reads_in(per_read: usize, window: Duration) -> usize {
    let text = "[[mapping]]\nevent_source_arn = \"arn:aws:kinesis:us-east-1:1:stream/s\"\nfunction_name = \"f\"\nstarting_position = \"TRIM_HORIZON\"\n";
    let mapping = Arc::new(
        crate::config::Config::parse(text)
            .unwrap()
            .mappings
            .remove(0),
    );
    let status = Arc::new(MappingStatus::new(&mapping));
    let api = Arc::new(Endless {
        per_read,
        reads: Mutex::new(0),
    });
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let shutdown = Shutdown::default();
    let ctx = Arc::new(ShardContext {
        uuid: mapping.uuid.clone(),
        api: api.clone(),
        store: store.clone(),
        processor: Arc::new(Processor {
            mapping: Arc::clone(&mapping),
            kind: StreamKind::Kinesis,
            function_arn: "f".into(),
            invoker: Arc::new(Collect(Mutex::new(Vec::new()))),
            destinations: Arc::new(NoDestination),
            status: Arc::clone(&status),
            shutdown: shutdown.clone(),
            policy: StreamPolicy::default(),
            on_failure: None,
            delays: RetryPolicies::IMMEDIATE,
        }),
        filters: Arc::new(FilterSet::default()),
        filter_view: crate::payload::kinesis::filter_view,
        limits: BatchLimits::for_mapping(&mapping),
        lanes: 1,
        tumbling_window: None,
        pacing: ReadPacing::KINESIS,
        shutdown: shutdown.clone(),
        status,
        closed: Default::default(),
    });
    let (lease, _) = store
        .acquire(&mapping.uuid, "shard-0")
        .await
        .unwrap()
        .unwrap();
    let shard = ShardInfo {
        shard_id: "shard-0".into(),
        parent_shard_id: None,
        adjacent_parent_shard_id: None,
        ending_sequence_number: None,
    };
    let worker = tokio::spawn(run_shard(
        ctx,
        shard,
        lease,
        None,
        IteratorPosition::TrimHorizon,
        None,
    ));
    tokio::time::sleep(window).await;
    shutdown.stop_receiving.cancel();
    assert_eq!(worker.await.unwrap(), ShardOutcome::Stopped);
    let n = *api.reads.lock().unwrap();
    n
}

#[tokio::test]
async fn kinesis_reads_stay_under_five_per_second_and_slow_to_one_when_caught_up() {
    let busy = reads_in(1, Duration::from_millis(2100)).await;
    assert!(
        (8..=11).contains(&busy),
        "{busy} reads in 2.1 s while behind"
    );
    let idle = reads_in(0, Duration::from_millis(2100)).await;
    assert!(
        (2..=3).contains(&idle),
        "{idle} reads in 2.1 s when caught up"
    );
}
