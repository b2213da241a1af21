//! The reader of one shard: pages through it in order with GetRecords, within the service's
//! read pacing and a read-ahead budget, refreshes an expired or invalid iterator after the
//! last record read, routes records to their lanes, and notices the shard's end.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::api::{IteratorPosition, ReadBatch, ShardInfo, StreamError, StreamRecord};
use super::context::ShardContext;
use super::progress::Progress;
use super::read_ahead::{caught_up, read_ahead_bytes, read_limit, ReadAhead};
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
    /// The average rendered size of the last read's records: it bounds a read when nothing
    /// is outstanding.
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
    async fn limit(&self) -> usize {
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
                bytes_per_call: pacing.max_bytes,
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
            RecordsPolled {
                uuid: &ctx.uuid,
                metrics: &ctx.status.metrics,
                records: batch.records.len(),
            }
            .emit();
            let (shard_id, progress, lanes) = (self.shard_id(), self.progress, self.lanes);
            let routed = route(
                ctx,
                shard_id,
                progress,
                lanes,
                batch.records,
                &mut self.last_read,
            )
            .await;
            match routed {
                Some(average) => self.average_bytes = Some(average),
                None => return Some(false),
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

/// Registers records, settles the filtered-out ones and hands the rest to their lanes.
/// Returns the records' average rendered size, or None when a lane is gone or shutdown began.
async fn route(
    ctx: &ShardContext,
    shard_id: &str,
    progress: &Progress,
    lanes: &[mpsc::Sender<Vec<StreamRecord>>],
    records: Vec<StreamRecord>,
    last_read: &mut Option<SequenceNumber>,
) -> Option<usize> {
    let count = records.len().max(1);
    let mut rendered = 0;
    let mut per_lane: Vec<Vec<StreamRecord>> = vec![Vec::new(); lanes.len()];
    let mut filtered = Vec::new();
    {
        let mut watermark = progress.watermark.lock().await;
        for record in records {
            let size = record.json.get().len();
            rendered += size;
            if !watermark.register(record.sequence_number.clone(), size) {
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
            sent = lane.send(records) => if sent.is_err() { return None },
            _ = ctx.shutdown.stop_receiving.cancelled() => return None,
        }
    }
    Some((rendered / count).max(1))
}
