//! A lane: `parallelization_factor` lanes per shard gather their records into batches and
//! process them one at a time. Records reach a lane by a hash of their key ([`lane_of`]), so
//! order holds per partition key (Kinesis) or item key (DynamoDB); with one lane it holds for
//! the whole shard.

use std::collections::hash_map::DefaultHasher;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::api::StreamRecord;
use super::context::ShardContext;
use super::progress::Progress;
use crate::batch::{Batch, PushRejected};
use crate::checkpoint::SequenceNumber;

/// The lane of a record key.
pub(super) fn lane_of(key: &str, lanes: usize) -> usize {
    if lanes <= 1 {
        return 0;
    }
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % lanes as u64) as usize
}

/// A lane: gathers its records into batches and processes them one at a time.
pub(super) async fn run_lane(
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

    #[test]
    fn lanes_are_stable_per_key() {
        for key in ["a", "b", "order-17"] {
            let lane = lane_of(key, 4);
            assert!(lane < 4);
            assert_eq!(lane, lane_of(key, 4));
        }
        assert_eq!(lane_of("x", 1), 0);
    }
}
