//! One shard: a [`Reader`] that pages through it in order, and lanes that batch, invoke and
//! settle its records (one lane per `parallelization_factor`, or one windowed lane with
//! tumbling windows). The shard's checkpoint is the end of the settled prefix, kept by
//! [`Progress`]. When the reader stops, the lanes drain; a shard read to its end and fully
//! settled is marked `ended` (its children may start), any other is released.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::api::{IteratorPosition, ShardInfo, StreamRecord};
use super::context::ShardContext;
use super::progress::Progress;
use super::reader::Reader;
use crate::checkpoint::{SequenceNumber, ShardLease, ShardStatus, WindowState};
use crate::telemetry::ShardState;

/// How a shard worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShardOutcome {
    /// Read to its end and checkpointed: children may start.
    Ended,
    /// Shutdown: the lease is released, the checkpoint stays.
    Stopped,
    /// The checkpoint store refused a write (lease lost or storage failure).
    Failed(String),
}

/// Reads and processes one shard until it ends or shutdown.
pub(crate) async fn run_shard(
    ctx: Arc<ShardContext>,
    shard: ShardInfo,
    lease: ShardLease,
    checkpoint: Option<SequenceNumber>,
    start: IteratorPosition,
    window: Option<WindowState>,
) -> ShardOutcome {
    let shard_id = shard.shard_id.clone();
    let progress = Arc::new(Progress::new(lease, checkpoint.clone()));
    ctx.status.update_shard(&shard_id, |v| {
        v.status = ShardState::Reading;
        v.owner = Some(progress.lease.owner.clone());
        v.checkpoint = checkpoint.as_ref().map(|s| s.to_string());
    });

    let mut senders = Vec::with_capacity(ctx.lanes);
    let mut lanes = tokio::task::JoinSet::new();
    if let Some(length) = ctx.tumbling_window {
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
            lanes.spawn(super::lane::run_lane(
                Arc::clone(&ctx),
                shard_id.clone(),
                Arc::clone(&progress),
                rx,
            ));
        }
    }

    let ended = Reader::new(&ctx, &shard, &progress, &senders, checkpoint, start)
        .run()
        .await;
    drop(senders);
    while lanes.join_next().await.is_some() {}

    if let Some(failure) = progress.failure() {
        ctx.status
            .update_shard(&shard_id, |v| v.status = ShardState::Failed);
        return ShardOutcome::Failed(failure);
    }
    let outstanding = progress.watermark.lock().await.outstanding();
    if ended && outstanding == 0 {
        if let Err(e) = ctx.store.finish(&progress.lease, ShardStatus::Ended).await {
            return ShardOutcome::Failed(e.to_string());
        }
        ctx.status.update_shard(&shard_id, |v| {
            v.status = ShardState::Ended;
            v.iterator_age_ms = 0;
        });
        return ShardOutcome::Ended;
    }
    let _ = ctx.store.release(&progress.lease).await;
    ctx.status
        .update_shard(&shard_id, |v| v.status = ShardState::Stopped);
    ShardOutcome::Stopped
}

#[cfg(test)]
#[path = "shard_tests.rs"]
mod tests;
