//! The reader of one shard: pages through it in order with GetRecords, within the service's
//! read pacing and a read-ahead budget, refreshes an expired or invalid iterator after the
//! last record read, routes records to their lanes, and notices the shard's end.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::api::{IteratorPosition, ReadBatch, ShardInfo, StreamError, StreamRecord};
use super::context::ShardContext;
use super::progress::Progress;
use crate::action::ErrorAction;
use crate::checkpoint::SequenceNumber;
use crate::retry::{Pace, Pacer, RetryPolicies};
use crate::telemetry::events::{RecordsFilteredOut, RecordsPolled, ShardEnded, ShardReadFailed};

/// Reads after which a failing iterator is replaced even if the error did not say it expired
/// (some emulators answer a bad iterator with a 500).
const FAILURES_BEFORE_REFRESH: u32 = 3;

/// One shard's reader and its state between reads.
pub(super) struct Reader<'a> {
    ctx: &'a ShardContext,
    shard: &'a ShardInfo,
    progress: &'a Progress,
    lanes: &'a [mpsc::Sender<Vec<StreamRecord>>],
    /// Where a new iterator starts when nothing was read yet.
    start: IteratorPosition,
    /// The last record routed: a refreshed iterator starts after it.
    last_read: Option<SequenceNumber>,
    iterator: Option<String>,
    pacer: Pacer,
    failures: u32,
    empty_reads: u32,
    next_read: Instant,
    /// A tumbling window holds its records until it closes, so it is not held to a
    /// read-ahead.
    windowed: bool,
    /// The rendered size of the records read so far, on average: it bounds a read when
    /// nothing is outstanding.
    average_bytes: Option<usize>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(
        ctx: &'a ShardContext,
        shard: &'a ShardInfo,
        progress: &'a Progress,
        lanes: &'a [mpsc::Sender<Vec<StreamRecord>>],
        checkpoint: Option<SequenceNumber>,
        start: IteratorPosition,
    ) -> Self {
        Reader {
            ctx,
            shard,
            progress,
            lanes,
            start,
            last_read: checkpoint,
            iterator: None,
            pacer: Pacer::new(RetryPolicies::DEFAULT),
            failures: 0,
            empty_reads: 0,
            next_read: Instant::now(),
            windowed: ctx.tumbling_window.is_some(),
            average_bytes: None,
        }
    }

    fn shard_id(&self) -> &'a str {
        self.shard.shard_id.as_str()
    }

    /// Reads until the shard ends (true) or shutdown, a lane gone or a refused checkpoint
    /// (false).
    pub(super) async fn run(mut self) -> bool {
        let stop = self.ctx.shutdown.stop_receiving.clone();
        loop {
            if stop.is_cancelled() || self.progress.failure().is_some() {
                return false;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(self.next_read) => {}
                _ = stop.cancelled() => return false,
            }
            let Some(iterator) = self.iterator.clone() else {
                self.open_iterator().await;
                continue;
            };
            let limit = self.limit().await;
            if limit == 0 {
                // The lanes hold a full read-ahead: read again once they have invoked some.
                self.next_read = Instant::now() + self.ctx.pacing.min_interval;
                continue;
            }
            let requested_at = chrono::Utc::now();
            match self
                .ctx
                .api
                .get_records(self.shard_id(), &iterator, limit)
                .await
            {
                Ok(batch) => {
                    if let Some(ended) = self.on_batch(batch, limit, requested_at).await {
                        return ended;
                    }
                }
                Err(e) => self.on_error(&e),
            }
        }
    }

    async fn open_iterator(&mut self) {
        let position = match &self.last_read {
            Some(seq) => IteratorPosition::AfterSequenceNumber(seq.clone()),
            None => self.start.clone(),
        };
        match self
            .ctx
            .api
            .shard_iterator(self.shard_id(), &position)
            .await
        {
            Ok(it) => self.iterator = Some(it),
            Err(e) => self.on_error(&e),
        }
    }

    /// The GetRecords limit for the next read.
    async fn limit(&mut self) -> usize {
        let pacing = &self.ctx.pacing;
        if self.windowed {
            return pacing.max_records;
        }
        let (outstanding, bytes) = {
            let w = self.progress.watermark.lock().await;
            (w.outstanding(), w.outstanding_bytes())
        };
        read_limit(
            ReadAhead {
                max_per_call: pacing.max_records,
                batch_size: self.ctx.limits.max_records,
                lanes: self.ctx.lanes,
                bytes: read_ahead_bytes(self.ctx.limits.window),
            },
            (outstanding, bytes),
            self.average_bytes,
        )
    }

    /// A failed read: refresh the iterator on an expired or invalid one (and after repeated
    /// failures), wait on the error state's pace for a missing stream or denied access, and
    /// on the transient pace otherwise.
    fn on_error(&mut self, e: &StreamError) {
        self.failures += 1;
        let action = e.action();
        if action == ErrorAction::RefreshIterator || self.failures >= FAILURES_BEFORE_REFRESH {
            self.iterator = None;
        }
        let delay = match action {
            ErrorAction::RefreshIterator => Duration::ZERO,
            ErrorAction::StopMapping => {
                let shard_id = self.shard_id();
                self.ctx.status.set_error(format!("shard {shard_id}: {e}"));
                self.pacer.next(Pace::ErrorState)
            }
            _ => self.pacer.next(Pace::Transient),
        };
        ShardReadFailed {
            uuid: &self.ctx.uuid,
            shard_id: self.shard_id(),
            error: &e.to_string(),
            action: if self.iterator.is_none() {
                "refresh iterator"
            } else {
                "retry"
            },
        }
        .emit();
        self.next_read = Instant::now() + delay;
    }

    /// A successful read: pace the next one, route the records, move the horizon, and say
    /// whether the shard ended (`Some(true)`), a lane is gone (`Some(false)`) or reading goes
    /// on (`None`).
    async fn on_batch(
        &mut self,
        batch: ReadBatch,
        limit: usize,
        requested_at: chrono::DateTime<chrono::Utc>,
    ) -> Option<bool> {
        self.failures = 0;
        self.pacer.reset();
        let ctx = self.ctx;
        ctx.status.set_polling();
        let caught_up = caught_up(batch.records.len(), limit, batch.millis_behind_latest);
        let interval = if caught_up {
            ctx.pacing.idle_interval
        } else {
            ctx.pacing.min_interval
        };
        self.next_read = Instant::now() + interval;
        let age = match (batch.millis_behind_latest, batch.records.last()) {
            (Some(ms), _) => ms,
            (None, Some(r)) => (chrono::Utc::now() - r.arrival).num_milliseconds().max(0),
            (None, None) => 0,
        };
        ctx.status.update_shard(self.shard_id(), |v| {
            v.iterator_age_ms = age;
            v.reads += 1;
        });
        if batch.records.is_empty() {
            self.empty_reads += 1;
        } else {
            self.empty_reads = 0;
            let rendered: usize = batch.records.iter().map(|r| r.json.get().len()).sum();
            self.average_bytes = Some((rendered / batch.records.len()).max(1));
            RecordsPolled {
                uuid: &ctx.uuid,
                metrics: &ctx.status.metrics,
                records: batch.records.len(),
            }
            .emit();
            let (shard_id, progress, lanes) = (self.shard_id(), self.progress, self.lanes);
            if !route(
                ctx,
                shard_id,
                progress,
                lanes,
                batch.records,
                &mut self.last_read,
            )
            .await
            {
                return Some(false);
            }
        }
        if caught_up {
            // Routed before the horizon moves, so a lane that sees the horizon finds the
            // records already in its channel.
            *self
                .progress
                .horizon
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(requested_at);
        }
        if let Some(how) = self.end_of_shard(batch.next_iterator.is_none()) {
            ShardEnded {
                uuid: &ctx.uuid,
                shard_id: self.shard_id(),
                how,
            }
            .emit();
            self.progress
                .ended
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return Some(true);
        }
        self.iterator = batch.next_iterator;
        None
    }

    /// Whether the shard has been read to its end, and how that was seen: a null
    /// `NextShardIterator` (AWS, LocalStack, kinesis-local) or, for emulators that never send
    /// one (moto), a closed shard whose reads passed its `EndingSequenceNumber` or came back
    /// empty twice.
    fn end_of_shard(&self, no_next_iterator: bool) -> Option<&'static str> {
        if no_next_iterator {
            return Some("null NextShardIterator");
        }
        let ending = self.shard.ending_sequence_number.clone().or_else(|| {
            self.ctx
                .closed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(self.shard_id())
                .cloned()
        });
        let past_end = |end: &SequenceNumber| {
            self.last_read.as_ref().is_some_and(|l| l >= end) && self.empty_reads > 0
                || self.empty_reads >= 2
        };
        ending
            .as_ref()
            .is_some_and(past_end)
            .then_some("closed shard read past its EndingSequenceNumber")
    }
}

/// How many records a shard keeps read but not yet checkpointed: four batches per lane, and
/// at least 5,000 so that small batches still read in bulk. 5,000 records of 1 KiB are 2.5 s of
/// a Kinesis shard's 2 MB/s read limit: the budget never slows a shard on AWS, and bounds
/// memory at a few MB per shard when the function is the bottleneck.
const READ_AHEAD_BATCHES: usize = 4;
const MIN_READ_AHEAD: usize = 5_000;
/// And how many bytes (of rendered event JSON) those records may hold: large records fill
/// the budget before their count does. 4 MiB is two seconds of a shard's 2 MB/s read limit;
/// with a batching window a batch may gather up to the 6 MB invocation payload limit, so the
/// budget is 8 MiB there.
pub(crate) const READ_AHEAD_BYTES: usize = 4 * 1024 * 1024;
pub(crate) const READ_AHEAD_BYTES_WINDOWED: usize = 8 * 1024 * 1024;

/// The byte budget of a shard's read-ahead for a mapping's batching window.
pub(crate) fn read_ahead_bytes(batching_window: std::time::Duration) -> usize {
    if batching_window.is_zero() {
        READ_AHEAD_BYTES
    } else {
        READ_AHEAD_BYTES_WINDOWED
    }
}

/// What bounds a shard's read-ahead.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadAhead {
    /// The source's maximum records per GetRecords call.
    pub(crate) max_per_call: usize,
    pub(crate) batch_size: usize,
    pub(crate) lanes: usize,
    /// The byte budget ([`read_ahead_bytes`]).
    pub(crate) bytes: usize,
}

/// The GetRecords limit for the next read: what the read-ahead budget (records and bytes)
/// has room for, at most the source's maximum per call. 0 means wait: the lanes have enough
/// to work on. Without it a shard that is behind reads 10,000 records every 200 ms while its
/// function takes them 100 at a time, and memory grows with the backlog. `outstanding` is
/// (records, bytes) read and not yet checkpointed; the room in bytes is counted in records
/// of their average size so far (`average`, the shard's last read, when nothing is
/// outstanding). A read is always allowed when nothing is outstanding; the first one, with no
/// size known yet, reads a batch per lane, so that a shard's first read cannot hold a
/// backlog of records of any size.
pub(crate) fn read_limit(
    ahead: ReadAhead,
    outstanding: (usize, usize),
    average: Option<usize>,
) -> usize {
    let (records, bytes) = outstanding;
    let budget = (ahead.batch_size * ahead.lanes.max(1) * READ_AHEAD_BATCHES).max(MIN_READ_AHEAD);
    let by_count = budget.saturating_sub(records).min(ahead.max_per_call);
    let average = match (records, average) {
        (0, None) => return by_count.min(ahead.batch_size * ahead.lanes.max(1)).max(1),
        (0, Some(a)) => a.max(1),
        _ => (bytes / records).max(1),
    };
    let by_bytes = ahead.bytes.saturating_sub(bytes) / average;
    if records == 0 {
        return by_count.min(by_bytes).max(1);
    }
    by_count.min(by_bytes)
}

/// Whether a read found the shard's tip, so the next read waits the idle interval: it came
/// back empty, or the stream says it is not behind and the read was not cut short by its
/// limit. A read that filled its limit may have left records behind (moto and kinesis-local
/// report `MillisBehindLatest` 0 throughout a backlog), so the next one comes at the
/// shard's minimum interval.
pub(crate) fn caught_up(returned: usize, limit: usize, millis_behind: Option<i64>) -> bool {
    returned == 0 || (millis_behind == Some(0) && returned < limit)
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
            if !watermark.register(record.sequence_number.clone(), record.json.get().len()) {
                continue; // read twice (after an iterator refresh)
            }
            *last_read = Some(record.sequence_number.clone());
            if !ctx.filters.is_empty()
                && !ctx.filters.accepts(&(ctx.filter_view)(record.json.get()))
            {
                filtered.push(record.sequence_number);
                continue;
            }
            per_lane[super::lane::lane_of(&record.key, lanes.len())].push(record);
        }
    }
    if !filtered.is_empty() {
        RecordsFilteredOut {
            uuid: &ctx.uuid,
            metrics: &ctx.status.metrics,
            records: filtered.len(),
        }
        .emit();
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

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;

    fn ahead(max_per_call: usize, batch_size: usize, lanes: usize, bytes: usize) -> ReadAhead {
        ReadAhead {
            max_per_call,
            batch_size,
            lanes,
            bytes,
        }
    }

    #[test]
    fn the_read_ahead_bounds_what_a_shard_holds() {
        let a = ahead(10_000, 100, 1, 8 * MIB);
        // batch 100, one lane: 5,000 records (the floor) at most.
        assert_eq!(read_limit(a, (0, 0), Some(KIB)), 5_000);
        assert_eq!(read_limit(a, (4_600, 4_600 * KIB), None), 400);
        assert_eq!(read_limit(a, (5_000, 5_000 * KIB), None), 0);
        assert_eq!(read_limit(a, (9_000, 9_000 * KIB), None), 0);
        // batch 1,000, four lanes: 16,000, or what the bytes hold, capped per call.
        assert_eq!(
            read_limit(ahead(10_000, 1_000, 4, 8 * MIB), (0, 0), Some(KIB)),
            8_192
        );
        assert_eq!(
            read_limit(ahead(20_000, 1_000, 4, 80 * MIB), (0, 0), Some(KIB)),
            16_000
        );
        assert_eq!(
            read_limit(ahead(1_000, 1_000, 4, 8 * MIB), (15_500, 15_500), None),
            500
        );
    }

    #[test]
    fn large_records_fill_the_byte_budget_before_the_count() {
        let a = ahead(10_000, 100, 1, 8 * MIB);
        // 100 records of 64 KiB are 6.25 MiB: room for 28 more of that size, not 4,900.
        assert_eq!(read_limit(a, (100, 100 * 64 * KIB), None), 28);
        assert_eq!(read_limit(a, (128, 128 * 64 * KIB), None), 0);
        // Nothing outstanding: a read is always allowed, whatever the records' size.
        assert!(read_limit(a, (0, 0), None) > 0);
        assert_eq!(read_limit(a, (0, 0), Some(16 * MIB)), 1);
    }

    #[test]
    fn with_nothing_outstanding_the_earlier_average_bounds_the_read() {
        // 2 KiB records on a 4 MiB budget: 2,048 records, not the 5,000 floor.
        let a = ahead(10_000, 100, 1, 4 * MIB);
        assert_eq!(read_limit(a, (0, 0), Some(2 * KIB)), 2_048);
        // The first read (no size known): one batch per lane.
        assert_eq!(read_limit(a, (0, 0), None), 100);
        assert_eq!(
            read_limit(ahead(10_000, 100, 4, 4 * MIB), (0, 0), None),
            400
        );
    }

    #[test]
    fn a_read_cut_short_by_its_limit_is_not_the_tip() {
        assert!(caught_up(0, 100, None));
        assert!(caught_up(0, 100, Some(5_000)));
        assert!(caught_up(40, 100, Some(0)));
        assert!(
            !caught_up(100, 100, Some(0)),
            "full read: more may be waiting"
        );
        assert!(!caught_up(40, 100, Some(1)));
        assert!(
            !caught_up(40, 100, None),
            "no lag reported: only an empty read is the tip"
        );
    }

    #[test]
    fn a_batching_window_may_gather_a_full_payload() {
        use std::time::Duration;
        assert_eq!(read_ahead_bytes(Duration::ZERO), READ_AHEAD_BYTES);
        assert!(read_ahead_bytes(Duration::from_secs(1)) > crate::config::MAX_INVOKE_PAYLOAD_BYTES);
    }

    proptest::proptest! {
        #[test]
        fn a_read_never_passes_the_budget_or_the_per_call_maximum(
            max in 1usize..10_001, batch in 1usize..10_001, lanes in 1usize..11,
            outstanding in 0usize..200_000, size in 1usize..1_000_000,
            windowed in proptest::bool::ANY,
        ) {
            let bytes = outstanding * size;
            let budget_bytes = if windowed { READ_AHEAD_BYTES_WINDOWED } else { READ_AHEAD_BYTES };
            let a = ahead(max, batch, lanes, budget_bytes);
            let known = (outstanding == 0).then_some(size);
            let limit = read_limit(a, (outstanding, bytes), known);
            let budget = (batch * lanes * 4).max(5_000);
            proptest::prop_assert!(limit <= max);
            proptest::prop_assert!(outstanding + limit <= budget.max(outstanding));
            // Past the byte budget only by the one record an empty shard may always read.
            proptest::prop_assert!(bytes + limit * size <= budget_bytes.max(bytes).max(size));
            // An empty shard can always read: the budget never stalls it.
            proptest::prop_assert!(outstanding > 0 || limit > 0);
        }
    }
}
