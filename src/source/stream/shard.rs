//! One shard: a reader that pages through it in order, and `parallelization_factor` lanes
//! that batch, invoke and settle its records. Records are routed to lanes by a hash of their
//! key, so order holds per partition key (Kinesis) or item key (DynamoDB); with one lane it
//! holds for the whole shard. The shard's checkpoint is the end of the settled prefix
//! ([`Watermark`]) and is written, durably, before a lane invokes its next batch.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::api::{IteratorPosition, ReadPacing, ShardInfo, StreamApi, StreamRecord};
use super::process::Processor;
use crate::batch::{Batch, BatchLimits, PushRejected};
use crate::checkpoint::{
    CheckpointError, CheckpointStore, SequenceNumber, ShardLease, ShardStatus, Watermark,
    WindowState,
};
use crate::failure::{error_state_backoff, transient_backoff, ErrorAction};
use crate::filter::FilterSet;
use crate::source::Shutdown;
use crate::telemetry::events::{ShardEnded, ShardReadFailed};
use crate::telemetry::{MappingMetrics, MappingStatus};

/// What `/mappings` shows per shard.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ShardView {
    pub status: String,
    pub checkpoint: Option<String>,
    pub iterator_age_ms: i64,
    pub outstanding_records: usize,
}

pub type ShardViews = Arc<Mutex<BTreeMap<String, ShardView>>>;

/// What every shard of one mapping shares.
pub struct ShardContext {
    pub uuid: String,
    pub api: Arc<dyn StreamApi>,
    pub store: Arc<dyn CheckpointStore>,
    pub processor: Arc<Processor>,
    pub filters: Arc<FilterSet>,
    pub filter_view: fn(&str) -> serde_json::Value,
    pub limits: BatchLimits,
    pub lanes: usize,
    pub pacing: ReadPacing,
    pub shutdown: Shutdown,
    pub status: Arc<MappingStatus>,
    pub views: ShardViews,
    /// Ending sequence numbers of closed shards, refreshed by every listing: a shard may be
    /// closed (split or merged) while it is being read.
    pub closed: Arc<Mutex<std::collections::HashMap<String, SequenceNumber>>>,
}

impl ShardContext {
    pub fn update_view(&self, shard_id: &str, f: impl FnOnce(&mut ShardView)) {
        let mut views = self.views.lock().unwrap_or_else(|e| e.into_inner());
        f(views.entry(shard_id.to_string()).or_default());
        let max_age = views.values().map(|v| v.iterator_age_ms).max().unwrap_or(0);
        self.status
            .metrics
            .iterator_age_ms
            .store(max_age, std::sync::atomic::Ordering::Relaxed);
        *self.status.shards.lock().unwrap_or_else(|e| e.into_inner()) =
            serde_json::to_value(&*views).unwrap_or_default();
    }
}

/// How a shard worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardOutcome {
    /// Read to its end and checkpointed: children may start.
    Ended,
    /// Shutdown: the lease is released, the checkpoint stays.
    Stopped,
    /// The checkpoint store refused a write (lease lost or storage failure).
    Failed(String),
}

/// Shared between the reader and the lanes.
pub(super) struct Progress {
    watermark: tokio::sync::Mutex<Watermark>,
    lease: ShardLease,
    failed: Mutex<Option<String>>,
    /// When the last read that found the reader caught up was sent: every record that
    /// arrived in the stream before this instant has been routed to a lane.
    horizon: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    /// The reader reached the shard's end (not shutdown).
    ended: std::sync::atomic::AtomicBool,
}

impl Progress {
    /// Marks records done and durably moves the checkpoint over the done prefix.
    pub(super) async fn settle(&self, ctx: &ShardContext, shard_id: &str, done: &[SequenceNumber]) {
        self.write(ctx, shard_id, done, None).await
    }

    /// Like [`Progress::settle`], and replaces the shard's tumbling-window state in the same
    /// write (`None` closes the window).
    pub(super) async fn settle_window(
        &self,
        ctx: &ShardContext,
        shard_id: &str,
        done: &[SequenceNumber],
        window: Option<&WindowState>,
    ) {
        self.write(ctx, shard_id, done, Some(window)).await
    }

    pub(super) fn horizon(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        *self.horizon.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn shard_ended(&self) -> bool {
        self.ended.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn write(
        &self,
        ctx: &ShardContext,
        shard_id: &str,
        done: &[SequenceNumber],
        window: Option<Option<&WindowState>>,
    ) {
        let mut watermark = self.watermark.lock().await;
        for seq in done {
            watermark.complete(seq);
        }
        let advanced = watermark.advance();
        let written = match (window, &advanced) {
            (Some(window), _) => Some(
                ctx.store
                    .save_window(&self.lease, advanced.as_ref(), window)
                    .await,
            ),
            (None, Some(cp)) => Some(ctx.store.checkpoint(&self.lease, cp).await),
            (None, None) => None,
        };
        if let Some(written) = written {
            match written {
                Ok(()) => {}
                Err(e @ CheckpointError::Backwards { .. }) => {
                    tracing::error!(mapping = %ctx.uuid, shard = shard_id, error = %e, "refused a backwards checkpoint");
                }
                Err(e) => {
                    tracing::error!(mapping = %ctx.uuid, shard = shard_id, error = %e, "checkpoint failed; stopping the shard");
                    *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                }
            }
        }
        let (checkpoint, outstanding) = (
            watermark.checkpoint().map(|s| s.to_string()),
            watermark.outstanding(),
        );
        ctx.update_view(shard_id, |v| {
            v.checkpoint = checkpoint;
            v.outstanding_records = outstanding;
        });
    }

    pub(super) fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn lane_of(key: &str, lanes: usize) -> usize {
    if lanes <= 1 {
        return 0;
    }
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % lanes as u64) as usize
}

/// Reads and processes one shard until it ends or shutdown.
pub async fn run_shard(
    ctx: Arc<ShardContext>,
    shard: ShardInfo,
    lease: ShardLease,
    checkpoint: Option<SequenceNumber>,
    start: IteratorPosition,
    window: Option<WindowState>,
) -> ShardOutcome {
    let shard_id = shard.shard_id.clone();
    let progress = Arc::new(Progress {
        watermark: tokio::sync::Mutex::new(Watermark::new(checkpoint.clone())),
        lease,
        failed: Mutex::new(None),
        horizon: Mutex::new(None),
        ended: Default::default(),
    });
    let tumbling = ctx
        .processor
        .mapping
        .stream
        .as_ref()
        .and_then(|s| s.tumbling_window);
    ctx.update_view(&shard_id, |v| {
        v.status = "reading".into();
        v.checkpoint = checkpoint.as_ref().map(|s| s.to_string());
    });

    let mut senders = Vec::with_capacity(ctx.lanes);
    let mut lanes = tokio::task::JoinSet::new();
    if let Some(length) = tumbling {
        // A window's state belongs to the whole shard, so windows use one lane.
        let (tx, rx) = mpsc::channel::<Vec<StreamRecord>>(4);
        senders.push(tx);
        lanes.spawn(super::window::run_window_lane(
            Arc::clone(&ctx),
            shard_id.clone(),
            Arc::clone(&progress),
            rx,
            length,
            window,
        ));
    } else {
        for _ in 0..ctx.lanes.max(1) {
            let (tx, rx) = mpsc::channel::<Vec<StreamRecord>>(4);
            senders.push(tx);
            lanes.spawn(run_lane(
                Arc::clone(&ctx),
                shard_id.clone(),
                Arc::clone(&progress),
                rx,
            ));
        }
    }

    let ended = read(&ctx, &shard, &progress, &senders, checkpoint, start).await;
    drop(senders);
    while lanes.join_next().await.is_some() {}

    if let Some(failure) = progress.failure() {
        ctx.update_view(&shard_id, |v| v.status = "failed".into());
        return ShardOutcome::Failed(failure);
    }
    let outstanding = progress.watermark.lock().await.outstanding();
    if ended && outstanding == 0 {
        if let Err(e) = ctx.store.finish(&progress.lease, ShardStatus::Ended).await {
            return ShardOutcome::Failed(e.to_string());
        }
        ctx.update_view(&shard_id, |v| {
            v.status = "ended".into();
            v.iterator_age_ms = 0;
        });
        return ShardOutcome::Ended;
    }
    let _ = ctx.store.release(&progress.lease).await;
    ctx.update_view(&shard_id, |v| v.status = "stopped".into());
    ShardOutcome::Stopped
}

/// The reader: returns true when the shard was read to its end, false on shutdown.
async fn read(
    ctx: &ShardContext,
    shard: &ShardInfo,
    progress: &Progress,
    lanes: &[mpsc::Sender<Vec<StreamRecord>>],
    checkpoint: Option<SequenceNumber>,
    start: IteratorPosition,
) -> bool {
    let shard_id = shard.shard_id.as_str();
    let stop = &ctx.shutdown.stop_receiving;
    let mut last_read = checkpoint;
    let position = |last: &Option<SequenceNumber>| match last {
        Some(seq) => IteratorPosition::AfterSequenceNumber(seq.clone()),
        None => start.clone(),
    };
    let mut iterator: Option<String> = None;
    let mut transient = transient_backoff();
    let mut slow = error_state_backoff();
    let mut failures = 0u32;
    let mut empty_reads = 0u32;
    let mut next_read = Instant::now();
    // A tumbling window holds its records until it closes, so it is not held to a read-ahead.
    let windowed = ctx
        .processor
        .mapping
        .stream
        .as_ref()
        .is_some_and(|s| s.tumbling_window.is_some());
    loop {
        if stop.is_cancelled() || progress.failure().is_some() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next_read) => {}
            _ = stop.cancelled() => return false,
        }
        let limit = match &iterator {
            Some(_) if !windowed => {
                let outstanding = progress.watermark.lock().await.outstanding();
                read_limit(
                    ctx.pacing.max_records,
                    ctx.limits.max_records,
                    ctx.lanes,
                    outstanding,
                )
            }
            _ => ctx.pacing.max_records,
        };
        if limit == 0 {
            // The lanes hold a full read-ahead: read again once they have invoked some of it.
            next_read = Instant::now() + ctx.pacing.min_interval;
            continue;
        }
        let requested_at = chrono::Utc::now();
        let result = match &iterator {
            Some(it) => ctx.api.get_records(shard_id, it, limit).await,
            None => match ctx
                .api
                .shard_iterator(shard_id, &position(&last_read))
                .await
            {
                Ok(it) => {
                    iterator = Some(it);
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        let batch = match result {
            Ok(batch) => batch,
            Err(e) => {
                failures += 1;
                let action = e.action();
                // Refresh on an expired or invalid iterator, and after repeated failures
                // (some emulators answer a bad iterator with a 500).
                if action == ErrorAction::RefreshIterator || failures >= 3 {
                    iterator = None;
                }
                let delay = match action {
                    ErrorAction::RefreshIterator => Duration::ZERO,
                    ErrorAction::StopMapping => {
                        ctx.status.set_error(format!("shard {shard_id}: {e}"));
                        slow.next().unwrap_or(Duration::from_secs(30))
                    }
                    _ => transient.next().unwrap_or(Duration::from_secs(10)),
                };
                ShardReadFailed {
                    uuid: &ctx.uuid,
                    shard_id,
                    error: &e.to_string(),
                    action: if iterator.is_none() {
                        "refresh iterator"
                    } else {
                        "retry"
                    },
                }
                .emit();
                next_read = Instant::now() + delay;
                continue;
            }
        };
        failures = 0;
        ctx.status.set_polling();
        let caught_up = batch.records.is_empty() || batch.millis_behind_latest == Some(0);
        next_read = Instant::now()
            + if caught_up {
                ctx.pacing.idle_interval
            } else {
                ctx.pacing.min_interval
            };
        let age = match (batch.millis_behind_latest, batch.records.last()) {
            (Some(ms), _) => ms,
            (None, Some(r)) => (chrono::Utc::now() - r.arrival).num_milliseconds().max(0),
            (None, None) => 0,
        };
        ctx.update_view(shard_id, |v| v.iterator_age_ms = age);

        if batch.records.is_empty() {
            empty_reads += 1;
        } else {
            empty_reads = 0;
            MappingMetrics::add(&ctx.status.metrics.polled, batch.records.len());
            if !route(
                ctx,
                shard_id,
                progress,
                lanes,
                batch.records,
                &mut last_read,
            )
            .await
            {
                return false;
            }
        }
        if caught_up {
            // Routed before the horizon moves, so a lane that sees the horizon finds the
            // records already in its channel.
            *progress.horizon.lock().unwrap_or_else(|e| e.into_inner()) = Some(requested_at);
        }

        let ending = shard.ending_sequence_number.clone().or_else(|| {
            ctx.closed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(shard_id)
                .cloned()
        });
        let closed_and_done = ending.as_ref().is_some_and(|end| {
            last_read.as_ref().is_some_and(|l| l >= end) && empty_reads > 0 || empty_reads >= 2
        });
        let how = if batch.next_iterator.is_none() {
            Some("null NextShardIterator")
        } else if closed_and_done {
            Some("closed shard read past its EndingSequenceNumber")
        } else {
            None
        };
        if let Some(how) = how {
            ShardEnded {
                uuid: &ctx.uuid,
                shard_id,
                how,
            }
            .emit();
            progress
                .ended
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return true;
        }
        iterator = batch.next_iterator;
    }
}

/// How many records a shard keeps read but not yet checkpointed: four batches per lane, and
/// at least 5,000 so that small batches still read in bulk. 5,000 records of 1 KiB are 2.5 s of
/// a Kinesis shard's 2 MB/s read limit: the budget never slows a shard on AWS, and bounds
/// memory at a few MB per shard when the function is the bottleneck.
const READ_AHEAD_BATCHES: usize = 4;
const MIN_READ_AHEAD: usize = 5_000;

/// The GetRecords limit for the next read: what the read-ahead budget has room for, at most
/// the source's maximum per call. 0 means wait: the lanes have enough to work on. Without it a
/// shard that is behind reads 10,000 records every 200 ms while its function takes them 100 at
/// a time, and memory grows with the backlog.
pub fn read_limit(
    max_per_call: usize,
    batch_size: usize,
    lanes: usize,
    outstanding: usize,
) -> usize {
    let budget = (batch_size * lanes.max(1) * READ_AHEAD_BATCHES).max(MIN_READ_AHEAD);
    budget.saturating_sub(outstanding).min(max_per_call)
}

/// Registers records, settles the filtered-out ones and hands the rest to their lanes.
async fn route(
    ctx: &ShardContext,
    shard_id: &str,
    progress: &Progress,
    lanes: &[mpsc::Sender<Vec<StreamRecord>>],
    records: Vec<StreamRecord>,
    last_read: &mut Option<SequenceNumber>,
) -> bool {
    let mut per_lane: Vec<Vec<StreamRecord>> = vec![Vec::new(); lanes.len()];
    let mut filtered = Vec::new();
    {
        let mut watermark = progress.watermark.lock().await;
        for record in records {
            if !watermark.register(record.sequence_number.clone()) {
                continue; // read twice (after an iterator refresh)
            }
            *last_read = Some(record.sequence_number.clone());
            if !ctx.filters.is_empty()
                && !ctx.filters.accepts(&(ctx.filter_view)(record.json.get()))
            {
                filtered.push(record.sequence_number);
                continue;
            }
            per_lane[lane_of(&record.key, lanes.len())].push(record);
        }
    }
    if !filtered.is_empty() {
        MappingMetrics::add(&ctx.status.metrics.filtered_out, filtered.len());
        progress.settle(ctx, shard_id, &filtered).await;
    }
    for (lane, records) in lanes.iter().zip(per_lane) {
        if records.is_empty() {
            continue;
        }
        tokio::select! {
            sent = lane.send(records) => if sent.is_err() { return false },
            _ = ctx.shutdown.stop_receiving.cancelled() => return false,
        }
    }
    true
}

/// A lane: gathers its records into batches and processes them one at a time.
async fn run_lane(
    ctx: Arc<ShardContext>,
    shard_id: String,
    progress: Arc<Progress>,
    mut rx: mpsc::Receiver<Vec<StreamRecord>>,
) {
    let mut buffer: VecDeque<StreamRecord> = VecDeque::new();
    let stop = ctx.shutdown.stop_receiving.clone();
    loop {
        if buffer.is_empty() {
            tokio::select! {
                got = rx.recv() => match got {
                    Some(records) => buffer.extend(records),
                    None => return,
                },
                _ = stop.cancelled() => return,
            }
        }
        let Some(records) =
            gather(&ctx, &shard_id, &progress, &mut buffer, &mut rx, |_| true).await
        else {
            return;
        };
        if records.is_empty() {
            continue;
        }
        let processed = ctx.processor.process(&shard_id, &records).await;
        let done = settled_prefix(&records, processed.settled);
        progress.settle(&ctx, &shard_id, &done).await;
        if processed.interrupted || progress.failure().is_some() {
            return;
        }
    }
}

pub(super) fn settled_prefix(records: &[StreamRecord], settled: usize) -> Vec<SequenceNumber> {
    records[..settled]
        .iter()
        .map(|r| r.sequence_number.clone())
        .collect()
}

/// Fills one batch from `buffer` and the lane's channel, within the batch limits and the
/// batching window, taking only records for which `belongs` holds (a record that does not
/// ends the batch). A record too large for any invocation is reported on its own. Returns
/// `None` when the lane must stop (shutdown).
pub(super) async fn gather(
    ctx: &ShardContext,
    shard_id: &str,
    progress: &Progress,
    buffer: &mut VecDeque<StreamRecord>,
    rx: &mut mpsc::Receiver<Vec<StreamRecord>>,
    belongs: impl Fn(&StreamRecord) -> bool,
) -> Option<Vec<StreamRecord>> {
    let stop = &ctx.shutdown.stop_receiving;
    let deadline = Instant::now() + ctx.limits.window;
    let mut batch: Batch<StreamRecord> = Batch::new(ctx.limits);
    let mut full = false;
    loop {
        while let Some(record) = buffer.pop_front() {
            if !belongs(&record) {
                buffer.push_front(record);
                full = true;
                break;
            }
            match batch.try_push(record) {
                Ok(()) => {}
                Err(PushRejected::Full(r)) => {
                    buffer.push_front(r);
                    full = true;
                    break;
                }
                Err(PushRejected::TooLarge(r)) => {
                    if !batch.is_empty() {
                        buffer.push_front(r);
                        full = true;
                        break;
                    }
                    // Too large for any invocation: report it on its own.
                    if !ctx.processor.reject_oversized(shard_id, &r).await {
                        return None;
                    }
                    progress.settle(ctx, shard_id, &[r.sequence_number]).await;
                }
            }
        }
        if full || batch.is_full() || ctx.limits.window.is_zero() {
            break;
        }
        tokio::select! {
            got = rx.recv() => match got {
                Some(records) => buffer.extend(records),
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
            _ = stop.cancelled() => return None,
        }
    }
    Some(batch.into_records())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::SqliteStore;
    use crate::failure::destination::{Delivery, DestinationError, DestinationSender, StreamKind};
    use crate::source::stream::api::{ReadBatch, StreamError};
    use crate::source::stream::process::RetryDelays;
    use crate::target::{InvokeOutcome, Invoker};
    use bytes::Bytes;
    use futures::future::BoxFuture;

    #[test]
    fn the_read_ahead_bounds_what_a_shard_holds() {
        // batch 100, one lane: 5,000 records (the floor) at most.
        assert_eq!(read_limit(10_000, 100, 1, 0), 5_000);
        assert_eq!(read_limit(10_000, 100, 1, 4_600), 400);
        assert_eq!(read_limit(10_000, 100, 1, 5_000), 0);
        assert_eq!(read_limit(10_000, 100, 1, 9_000), 0);
        // batch 1,000, four lanes: 16,000, capped per call.
        assert_eq!(read_limit(10_000, 1_000, 4, 0), 10_000);
        assert_eq!(read_limit(1_000, 1_000, 4, 15_500), 500);
    }

    proptest::proptest! {
        #[test]
        fn a_read_never_passes_the_budget_or_the_per_call_maximum(
            max in 1usize..10_001, batch in 1usize..10_001, lanes in 1usize..11, outstanding in 0usize..200_000,
        ) {
            let limit = read_limit(max, batch, lanes, outstanding);
            let budget = (batch * lanes * 4).max(5_000);
            proptest::prop_assert!(limit <= max);
            proptest::prop_assert!(outstanding + limit <= budget.max(outstanding));
            proptest::prop_assert_eq!(limit == 0, outstanding >= budget);
        }
    }

    #[test]
    fn lanes_are_stable_per_key() {
        for key in ["a", "b", "order-17"] {
            let lane = lane_of(key, 4);
            assert!(lane < 4);
            assert_eq!(lane, lane_of(key, 4));
        }
        assert_eq!(lane_of("x", 1), 0);
    }

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
                delays: RetryDelays::IMMEDIATE,
            }),
            filters: Arc::new(FilterSet::default()),
            filter_view: crate::payload::kinesis::filter_view,
            limits: BatchLimits::for_mapping(&mapping),
            lanes: 1,
            pacing: ReadPacing {
                min_interval: Duration::from_millis(1),
                idle_interval: Duration::from_millis(1),
                max_records: 100,
            },
            shutdown,
            status,
            views: Default::default(),
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
                    ..Default::default()
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
                delays: RetryDelays::IMMEDIATE,
            }),
            filters: Arc::new(FilterSet::default()),
            filter_view: crate::payload::kinesis::filter_view,
            limits: BatchLimits::for_mapping(&mapping),
            lanes: 1,
            pacing: ReadPacing::KINESIS,
            shutdown: shutdown.clone(),
            status,
            views: Default::default(),
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
}
