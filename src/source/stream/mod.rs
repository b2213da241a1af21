//! The shard machinery Kinesis and DynamoDB Streams mappings share.
//!
//! [`StreamSource::run`] is the coordinator: it lists the stream's shards every few seconds,
//! starts a worker ([`shard::run_shard`]) for each shard whose parents are finished, and
//! re-lists at once when a shard ends so its children start without delay. Where a shard
//! starts:
//! - after its checkpoint, when it has one;
//! - at `TRIM_HORIZON` when a parent was read by this mapping (a child after a split or
//!   merge must not skip records);
//! - otherwise at the mapping's `starting_position`. With `LATEST`, a shard that is already
//!   closed is marked `skipped` without reading, and its children count as fresh too.

pub(crate) mod api;
mod balance;
mod context;
mod give_up;
mod lane;
mod lineage;
pub(crate) mod process;
mod progress;
mod read_ahead;
mod reader;
pub(crate) mod shard;
#[cfg(test)]
pub(crate) mod twin;
pub(crate) mod window;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::action::ErrorAction;
use crate::checkpoint::CheckpointError;
use crate::checkpoint::{ShardCheckpoint, ShardStatus};
use crate::config::{MappingConfig, StartingPosition};
use crate::retry::{retry, Pace, Pacer, Retried, RetryPolicies, Step};
use crate::telemetry::events::{
    LeaseStolen, LeaseTaken, MappingErrored, MappingStarted, ShardStarted,
};
use crate::telemetry::{MappingState, ShardState};
pub(crate) use api::{
    IteratorPosition, ReadBatch, ReadPacing, ShardInfo, StreamApi, StreamError, StreamRecord,
};
pub(crate) use context::ShardContext;
pub(crate) use shard::ShardOutcome;

/// How often shards are re-listed to find new ones.
pub(crate) const DISCOVERY_INTERVAL: Duration = Duration::from_secs(5);

/// How often shards and leases are looked at when instances share a lease table: released
/// and expired leases are taken, and shards balanced, within this (one `Query` of the table
/// and one `ListShards` per mapping per period).
pub(crate) const SHARED_DISCOVERY_INTERVAL: Duration = Duration::from_secs(2);

pub(crate) struct StreamSource {
    pub(crate) mapping: Arc<MappingConfig>,
    pub(crate) starting_position: StartingPosition,
    pub(crate) ctx: Arc<ShardContext>,
}

impl StreamSource {
    fn configured_position(&self) -> IteratorPosition {
        match &self.starting_position {
            StartingPosition::TrimHorizon => IteratorPosition::TrimHorizon,
            StartingPosition::Latest => IteratorPosition::Latest,
            StartingPosition::AtTimestamp(t) => IteratorPosition::AtTimestamp(*t),
        }
    }

    pub(crate) async fn run(self) {
        let ctx = Arc::clone(&self.ctx);
        let status = &ctx.status;
        let stop = ctx.shutdown.stop_receiving.clone();
        if !self.bind(&stop).await {
            return;
        }
        MappingStarted {
            uuid: &self.mapping.uuid,
            source: self.mapping.source.arn(),
            function: &self.mapping.function_name,
        }
        .emit();

        let mut workers: JoinSet<(String, ShardOutcome)> = JoinSet::new();
        let mut running: HashSet<String> = HashSet::new();
        let mut pacer = Pacer::new(RetryPolicies::DEFAULT);
        loop {
            let delay = match self.discover(&mut workers, &mut running).await {
                Ok(()) => {
                    pacer.reset();
                    match ctx.store.renew_interval() {
                        Some(_) => SHARED_DISCOVERY_INTERVAL,
                        None => DISCOVERY_INTERVAL,
                    }
                }
                Err(message) => {
                    let delay = pacer.next(Pace::ErrorState);
                    status.set_error(message.clone());
                    MappingErrored {
                        uuid: &self.mapping.uuid,
                        error: &message,
                        retry_in: delay,
                    }
                    .emit();
                    delay
                }
            };
            let wake = tokio::time::sleep(delay);
            tokio::pin!(wake);
            loop {
                tokio::select! {
                    _ = &mut wake => break,
                    _ = stop.cancelled() => {
                        status.set_state(MappingState::Disabling);
                        while workers.join_next().await.is_some() {}
                        return;
                    }
                    Some(joined) = workers.join_next(), if !workers.is_empty() => {
                        if let Ok((shard_id, outcome)) = joined {
                            running.remove(&shard_id);
                            if let ShardOutcome::Failed(message) = &outcome {
                                status.set_error(format!("shard {shard_id}: {message}"));
                            }
                            if outcome == ShardOutcome::Ended {
                                break; // children may start now
                            }
                        }
                    }
                }
            }
        }
    }

    /// Binds the mapping's uuid to its event source in the store, retrying slowly while the
    /// store fails. A uuid stays bound to its event source: a changed ARN is refused (the
    /// mapping stays in its error state), and an unusable store stops the process. Returns
    /// false when the mapping must not run.
    async fn bind(&self, stop: &tokio_util::sync::CancellationToken) -> bool {
        let (ctx, uuid) = (&self.ctx, &self.mapping.uuid);
        let errored = |e: &CheckpointError, delay| {
            ctx.status.set_error(e.to_string());
            MappingErrored {
                uuid,
                error: &e.to_string(),
                retry_in: delay,
            }
            .emit();
        };
        let bound = retry(
            RetryPolicies::DEFAULT,
            stop,
            |_| async {
                let Err(e) = ctx
                    .store
                    .bind_mapping(uuid, self.mapping.source.arn())
                    .await
                else {
                    return Step::Done(());
                };
                match e.action() {
                    ErrorAction::StopMapping => Step::Stop(e),
                    ErrorAction::Fatal => {
                        ctx.shutdown.fatal.raise(format!("mapping {uuid}: {e}"));
                        Step::Stop(e)
                    }
                    _ => Step::Retry {
                        error: e,
                        pace: Pace::ErrorState,
                        after: None,
                    },
                }
            },
            |e, _, delay| errored(e, delay),
        )
        .await;
        match bound {
            Retried::Done(()) => true,
            Retried::Stopped(e) => {
                errored(&e, Duration::ZERO);
                false
            }
            Retried::Cancelled => false,
        }
    }

    /// Takes the shard's lease and starts its worker at `position`; returns whether a worker
    /// started (not when another owner holds the lease, nor for a closed shard at `LATEST`,
    /// which is marked skipped).
    async fn start_shard(
        &self,
        shard: &ShardInfo,
        position: IteratorPosition,
        workers: &mut JoinSet<(String, ShardOutcome)>,
        steal: bool,
    ) -> Result<bool, String> {
        let ctx = &self.ctx;
        let (uuid, shard_id) = (&self.mapping.uuid, &shard.shard_id);
        let taken = match steal {
            true => ctx.store.steal(uuid, shard_id).await,
            false => ctx.store.acquire(uuid, shard_id).await,
        };
        let Some((lease, stored)) = taken.map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        if !steal {
            LeaseTaken {
                uuid,
                metrics: &ctx.status.metrics,
                shard_id,
                counter: lease.counter,
            }
            .emit();
        }
        // Another instance may have moved the checkpoint since the listing: resume after the
        // one that came with the lease (an operator's position still wins).
        let position = match (&stored.sequence_number, &stored.restart_at) {
            (Some(seq), None) => IteratorPosition::AfterSequenceNumber(seq.clone()),
            _ => position,
        };
        if position == IteratorPosition::Latest && shard.ending_sequence_number.is_some() {
            // Nothing after LATEST on a closed shard.
            ctx.store
                .finish(&lease, ShardStatus::Skipped)
                .await
                .map_err(|e| e.to_string())?;
            ctx.status
                .update_shard(&shard.shard_id, |v| v.status = ShardState::Skipped);
            return Ok(false);
        }
        ShardStarted {
            uuid: &self.mapping.uuid,
            shard_id: &shard.shard_id,
            position: &format!("{position:?}"),
        }
        .emit();
        let (worker_ctx, shard) = (Arc::clone(ctx), shard.clone());
        workers.spawn(async move {
            let id = shard.shard_id.clone();
            let (checkpoint, window) = (stored.sequence_number, stored.window);
            let outcome =
                shard::run_shard(worker_ctx, shard, lease, checkpoint, position, window).await;
            (id, outcome)
        });
        Ok(true)
    }

    /// With a shared lease table: when this instance holds fewer than its share of the open
    /// shards, takes one shard from the most loaded instance ([`balance::shard_to_steal`]).
    async fn balance(
        &self,
        shards: &[ShardInfo],
        stored: &HashMap<String, ShardCheckpoint>,
        listed: &HashSet<&str>,
        running: &mut HashSet<String>,
        workers: &mut JoinSet<(String, ShardOutcome)>,
    ) -> Result<(), String> {
        let Some(me) = self.ctx.store.owner() else {
            return Ok(());
        };
        let configured = self.configured_position();
        let open: Vec<(&ShardInfo, Option<String>)> = shards
            .iter()
            .filter_map(|shard| {
                if running.contains(&shard.shard_id) {
                    return Some((shard, Some(me.to_string())));
                }
                lineage::start_position(shard, stored, listed, &configured)?;
                let owner = stored.get(&shard.shard_id).and_then(|s| s.owner.clone());
                Some((shard, owner))
            })
            .collect();
        let leases: Vec<(String, Option<String>)> = open
            .iter()
            .map(|(shard, owner)| (shard.shard_id.clone(), owner.clone()))
            .collect();
        for target in balance::shards_to_steal(me, &leases) {
            let Some((shard, _)) = open.iter().find(|(s, _)| s.shard_id == target) else {
                continue;
            };
            let Some(position) = lineage::start_position(shard, stored, listed, &configured) else {
                continue;
            };
            if self.start_shard(shard, position, workers, true).await? {
                LeaseStolen {
                    uuid: &self.mapping.uuid,
                    metrics: &self.ctx.status.metrics,
                    shard_id: &target,
                }
                .emit();
                running.insert(target);
            }
        }
        Ok(())
    }

    /// Lists shards and starts workers for the ones that may run now.
    async fn discover(
        &self,
        workers: &mut JoinSet<(String, ShardOutcome)>,
        running: &mut HashSet<String>,
    ) -> Result<(), String> {
        let ctx = &self.ctx;
        let mut shards = ctx
            .api
            .list_shards()
            .await
            .map_err(|e| format!("listing shards of {}: {e}", self.mapping.source.arn()))?;
        shards.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
        {
            let mut closed = ctx.closed.lock().unwrap_or_else(|e| e.into_inner());
            for s in &shards {
                if let Some(end) = &s.ending_sequence_number {
                    closed.insert(s.shard_id.clone(), end.clone());
                }
            }
        }
        let stored: HashMap<String, ShardCheckpoint> = ctx
            .store
            .shards(&self.mapping.uuid)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|c| (c.shard_id.clone(), c))
            .collect();
        let listed: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
        if ctx.status.state() != MappingState::Error {
            ctx.status.set_polling();
        }
        let configured = self.configured_position();
        let me = ctx.store.owner();
        for shard in &shards {
            if running.contains(&shard.shard_id) {
                continue;
            }
            // Another instance's live lease: no point asking for it (balancing may steal it).
            let owner = stored.get(&shard.shard_id).and_then(|s| s.owner.as_deref());
            if owner.is_some_and(|o| Some(o) != me) {
                continue;
            }
            let Some(position) = lineage::start_position(shard, &stored, &listed, &configured)
            else {
                continue;
            };
            if self.start_shard(shard, position, workers, false).await? {
                running.insert(shard.shard_id.clone());
            }
        }
        self.balance(&shards, &stored, &listed, running, workers)
            .await
    }
}

/// The ARN Lambda would show for the function, for on-failure records.
pub(crate) fn function_arn(function_name: &str, region: &str, account_id: &str) -> String {
    if function_name.starts_with("arn:") {
        function_name.to_string()
    } else if function_name.matches(':').count() >= 2 {
        // account:function:name[:qualifier]
        format!("arn:aws:lambda:{region}:{function_name}")
    } else {
        format!("arn:aws:lambda:{region}:{account_id}:function:{function_name}")
    }
}
