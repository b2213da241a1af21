//! One shard's progress, shared by its reader and its lanes: the [`Watermark`] over records
//! read but not settled, the lease every checkpoint is written under, and whether the shard
//! ended or its store refused a write. The checkpoint moves only over the settled prefix, and
//! is written, durably, before a lane invokes its next batch.

use std::sync::Mutex;

use super::context::ShardContext;
use crate::action::ErrorAction;
use crate::checkpoint::{CheckpointError, SequenceNumber, ShardLease, Watermark, WindowState};
use crate::telemetry::events::LeaseLost;

/// Shared between the reader and the lanes.
pub(crate) struct Progress {
    pub(super) watermark: tokio::sync::Mutex<Watermark>,
    pub(super) lease: ShardLease,
    failed: Mutex<Option<String>>,
    /// The failure was a lost lease: another instance owns the shard now.
    lost: std::sync::atomic::AtomicBool,
    /// When the last read that found the reader caught up was sent: every record that
    /// arrived in the stream before this instant has been routed to a lane.
    pub(super) horizon: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    /// The reader reached the shard's end (not shutdown).
    pub(super) ended: std::sync::atomic::AtomicBool,
}

impl Progress {
    pub(super) fn new(lease: ShardLease, checkpoint: Option<SequenceNumber>) -> Self {
        Progress {
            watermark: tokio::sync::Mutex::new(Watermark::new(checkpoint)),
            lease,
            failed: Mutex::new(None),
            lost: Default::default(),
            horizon: Mutex::new(None),
            ended: Default::default(),
        }
    }

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
                Ok(()) => {
                    let at = chrono::Utc::now().to_rfc3339();
                    ctx.status
                        .update_shard(shard_id, |v| v.checkpointed_at = Some(at));
                }
                Err(e @ CheckpointError::Backwards { .. }) => {
                    tracing::error!(mapping = %ctx.uuid, shard = shard_id, error = %e, "refused a backwards checkpoint");
                }
                Err(CheckpointError::LeaseLost { owner, .. }) => self.lose(ctx, shard_id, &owner),
                Err(e) => {
                    tracing::error!(mapping = %ctx.uuid, shard = shard_id, error = %e, "checkpoint failed; stopping the shard");
                    let reason = format!("shard {shard_id}: {e}");
                    if e.action() == ErrorAction::Fatal {
                        // The store cannot keep our promises: drain everything and exit
                        // non-zero rather than run on without checkpoints.
                        ctx.shutdown
                            .fatal
                            .raise(format!("mapping {}: {reason}", ctx.uuid));
                    }
                    *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                }
            }
        }
        let (checkpoint, outstanding) = (
            watermark.checkpoint().map(|s| s.to_string()),
            watermark.outstanding(),
        );
        ctx.status.update_shard(shard_id, |v| {
            v.checkpoint = checkpoint;
            v.outstanding_records = outstanding;
        });
    }

    /// Another instance took the shard: stop reading and writing it at once. The batch in
    /// flight may be delivered again by the new owner; nothing else.
    pub(super) fn lose(&self, ctx: &ShardContext, shard_id: &str, owner: &str) {
        LeaseLost {
            uuid: &ctx.uuid,
            metrics: &ctx.status.metrics,
            shard_id,
            owner,
        }
        .emit();
        self.lost.store(true, std::sync::atomic::Ordering::SeqCst);
        *self.failed.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(format!("lease taken by {owner}"));
    }

    pub(super) fn lease_lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
