//! The stream source on its in-memory twins, through the same builder the daemon uses, on
//! paused time: iterator refresh, read pacing, and shard lineage across a split.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::checkpoint::memory::MemoryStore;
use crate::checkpoint::{CheckpointStore, SequenceNumber, ShardStatus};
use crate::config::Config;
use crate::failure::destination::NoDestination;
use crate::invoke::twin::ScriptedFunction;
use crate::source::build::{build, Dependencies};
use crate::source::sqs::twin::MemorySqs;
use crate::source::stream::api::{
    IteratorPosition, ReadBatch, ShardInfo, StreamApi, StreamError, StreamRecord,
};
use crate::source::stream::twin::MemoryStream;
use crate::source::Shutdown;
use crate::telemetry::MappingStatus;

struct Harness {
    function: Arc<ScriptedFunction>,
    store: Arc<MemoryStore>,
    uuid: String,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

fn start(api: Arc<dyn StreamApi>, extra: &str) -> Harness {
    let text = format!(
        "[[mapping]]\nevent_source_arn = \"arn:aws:kinesis:us-east-1:123456789012:stream/s\"\n\
         function_name = \"f\"\nstarting_position = \"TRIM_HORIZON\"\n{extra}"
    );
    let mapping = Arc::new(Config::parse(&text).unwrap().mappings.remove(0));
    let function = Arc::new(ScriptedFunction::ok());
    let store = Arc::new(MemoryStore::new("test-host"));
    let shutdown = Shutdown::default();
    let deps = Dependencies {
        sqs: Arc::new(MemorySqs::default()),
        invoker: function.clone(),
        stream_api: Some(api),
        destinations: Arc::new(NoDestination),
        store: Some(store.clone()),
    };
    let status = Arc::new(MappingStatus::new(&mapping));
    let task = tokio::spawn(build(Arc::clone(&mapping), deps, status, shutdown.clone()).unwrap());
    Harness {
        function,
        store,
        uuid: mapping.uuid.clone(),
        shutdown,
        task,
    }
}

impl Harness {
    fn data(&self) -> Vec<String> {
        self.function.record_fields("data").concat()
    }

    async fn until(&self, limit: Duration, fact: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        while !fact(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not reached in {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) -> Arc<MemoryStore> {
        self.shutdown.stop_receiving.cancel();
        self.task.await.unwrap();
        self.store
    }
}

#[tokio::test(start_paused = true)]
async fn an_expired_iterator_is_refreshed_after_the_last_record_read() {
    let stream = Arc::new(MemoryStream::default());
    stream.add_shard("shard-0", &[]);
    for i in 0..3 {
        stream.put("shard-0", "k", &format!("r{i}"));
    }
    let h = start(stream.clone(), "");
    h.until(Duration::from_secs(10), |h| h.data().len() == 3)
        .await;
    stream.expire_read(1);
    for i in 3..10 {
        stream.put("shard-0", "k", &format!("r{i}"));
    }
    stream.close("shard-0");
    h.until(Duration::from_secs(30), |h| h.data().len() == 10)
        .await;
    let expected: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    assert_eq!(h.data(), expected, "every record once, in order");
    assert_eq!(
        stream.positions("shard-0"),
        [
            IteratorPosition::TrimHorizon,
            IteratorPosition::AfterSequenceNumber(SequenceNumber::parse("3").unwrap())
        ],
        "refreshed after the last record read"
    );
    let uuid = h.uuid.clone();
    let store = h.stop().await;
    let stored = store.shards(&uuid).await.unwrap();
    assert_eq!(stored[0].status, ShardStatus::Ended);
    assert_eq!(
        stored[0].sequence_number,
        Some(SequenceNumber::parse("10").unwrap())
    );
}

#[tokio::test(start_paused = true)]
async fn a_split_finishes_the_parent_before_either_child_starts() {
    let stream = Arc::new(MemoryStream::default());
    stream.add_shard("shard-0", &[]);
    for i in 0..5 {
        stream.put("shard-0", &format!("k{i}"), &format!("p{i}"));
    }
    let h = start(stream.clone(), "parallelization_factor = 3");
    h.until(Duration::from_secs(10), |h| h.data().len() == 5)
        .await;
    stream.close("shard-0");
    stream.add_shard("shard-1", &["shard-0"]);
    stream.add_shard("shard-2", &["shard-0"]);
    for i in 0..4 {
        stream.put("shard-1", "a", &format!("a{i}"));
        stream.put("shard-2", "b", &format!("b{i}"));
    }
    h.until(Duration::from_secs(60), |h| h.data().len() == 13)
        .await;
    let data = h.data();
    let first_child = data.iter().position(|d| !d.starts_with('p')).unwrap();
    assert_eq!(
        first_child, 5,
        "every parent record before any child record: {data:?}"
    );
    for prefix in ["a", "b"] {
        let child: Vec<&String> = data.iter().filter(|d| d.starts_with(prefix)).collect();
        let expected: Vec<String> = (0..4).map(|i| format!("{prefix}{i}")).collect();
        assert_eq!(
            child,
            expected.iter().collect::<Vec<_>>(),
            "order per child shard"
        );
    }
    assert_eq!(
        stream.positions("shard-1"),
        [IteratorPosition::TrimHorizon],
        "a child of a shard this mapping read starts at TRIM_HORIZON"
    );
    let uuid = h.uuid.clone();
    let store = h.stop().await;
    let parent = store.shards(&uuid).await.unwrap();
    assert_eq!(parent[0].shard_id, "shard-0");
    assert_eq!(parent[0].status, ShardStatus::Ended);
}

/// An open shard that returns `per_read` new records on every read and never says how far
/// behind it is.
struct Endless {
    per_read: usize,
    reads: Mutex<usize>,
}

impl StreamApi for Endless {
    fn list_shards(&self) -> BoxFuture<'_, Result<Vec<ShardInfo>, StreamError>> {
        let shard = ShardInfo {
            shard_id: "shard-0".into(),
            parent_shard_id: None,
            adjacent_parent_shard_id: None,
            ending_sequence_number: None,
        };
        Box::pin(async { Ok(vec![shard]) })
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
        let records = (0..self.per_read)
            .map(|i| StreamRecord {
                sequence_number: SequenceNumber::parse((n * 10 + i).to_string()).unwrap(),
                key: "k".into(),
                arrival: chrono::Utc::now(),
                json: crate::payload::RecordJson::serialize(&serde_json::json!({ "i": i }))
                    .unwrap(),
            })
            .collect();
        Box::pin(async move {
            Ok(ReadBatch {
                records,
                next_iterator: Some("it".into()),
                millis_behind_latest: None,
            })
        })
    }
}

/// How many reads the source makes in `window` of (paused) time.
async fn reads_in(per_read: usize, window: Duration) -> usize {
    let api = Arc::new(Endless {
        per_read,
        reads: Mutex::new(0),
    });
    let h = start(api.clone(), "");
    tokio::time::sleep(window).await;
    h.stop().await;
    let n = *api.reads.lock().unwrap();
    n
}

#[tokio::test(start_paused = true)]
async fn kinesis_reads_stay_under_five_per_second_and_slow_to_one_when_caught_up() {
    let busy = reads_in(1, Duration::from_millis(2100)).await;
    assert!(
        (10..=11).contains(&busy),
        "{busy} reads in 2.1 s while behind"
    );
    let idle = reads_in(0, Duration::from_millis(2100)).await;
    assert!(
        (2..=3).contains(&idle),
        "{idle} reads in 2.1 s when caught up"
    );
}
