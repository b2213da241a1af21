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
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{CheckpointError, SequenceNumber, ShardLease, ShardStatus, WindowState};
use crate::telemetry::events::LeaseReleased;
use crate::telemetry::ShardState;

/// How a shard worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShardOutcome {
    /// Read to its end and checkpointed: children may start.
    Ended,
    /// Shutdown: the lease is released, the checkpoint stays.
    Stopped,
    /// Another instance took the shard's lease; it reads the shard from here on.
    LeaseLost,
    /// The checkpoint store refused a write (storage failure).
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
    let held = &ctx.status.metrics.leases_held;
    held.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

    let renewer = ctx.store.renew_interval().map(|every| {
        let done = CancellationToken::new();
        let task = tokio::spawn(renew(
            Arc::clone(&ctx),
            shard_id.clone(),
            Arc::clone(&progress),
            every,
            done.clone(),
        ));
        (done, task)
    });
    let ended = Reader::new(&ctx, &shard, &progress, &senders, checkpoint, start)
        .run()
        .await;
    drop(senders);
    while lanes.join_next().await.is_some() {}
    if let Some((done, task)) = renewer {
        done.cancel();
        let _ = task.await;
    }

    let outcome = settle_end(&ctx, &shard_id, &progress, ended).await;
    held.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    outcome
}

/// How the worker ends once its reader and lanes stopped: handed over, failed, ended (marked
/// in the store so children may start) or stopped (lease released).
async fn settle_end(
    ctx: &ShardContext,
    shard_id: &str,
    progress: &Progress,
    ended: bool,
) -> ShardOutcome {
    if progress.lease_lost() {
        ctx.status
            .update_shard(shard_id, |v| v.status = ShardState::Stopped);
        return ShardOutcome::LeaseLost;
    }
    if let Some(failure) = progress.failure() {
        ctx.status
            .update_shard(shard_id, |v| v.status = ShardState::Failed);
        return ShardOutcome::Failed(failure);
    }
    let outstanding = progress.watermark.lock().await.outstanding();
    if ended && outstanding == 0 {
        if let Err(e) = ctx.store.finish(&progress.lease, ShardStatus::Ended).await {
            return ShardOutcome::Failed(e.to_string());
        }
        ctx.status.update_shard(shard_id, |v| {
            v.status = ShardState::Ended;
            v.iterator_age_ms = 0;
        });
        return ShardOutcome::Ended;
    }
    if ctx.store.release(&progress.lease).await.is_ok() {
        LeaseReleased {
            uuid: &ctx.uuid,
            metrics: &ctx.status.metrics,
            shard_id,
        }
        .emit();
    }
    ctx.status
        .update_shard(shard_id, |v| v.status = ShardState::Stopped);
    ShardOutcome::Stopped
}

/// Renews the shard's lease every `every` until `done`; a renewal refused because another
/// instance took the lease stops the shard at once. A renewal that fails otherwise is tried
/// again at the next tick: if the lease expires meanwhile, the fenced writes find out.
async fn renew(
    ctx: Arc<ShardContext>,
    shard_id: String,
    progress: Arc<Progress>,
    every: std::time::Duration,
    done: CancellationToken,
) {
    loop {
        if !crate::retry::sleep_or_cancel(every, &done).await {
            return;
        }
        match ctx.store.renew(&progress.lease).await {
            Ok(()) => {}
            Err(CheckpointError::LeaseLost { owner, .. }) => {
                progress.lose(&ctx, &shard_id, &owner);
                return;
            }
            Err(e) => {
                tracing::warn!(mapping = %ctx.uuid, shard = %shard_id, error = %e, "lease renewal failed; retrying at the next tick");
            }
        }
    }
}

#[cfg(test)]
#[path = "shard_tests.rs"]
mod tests;
