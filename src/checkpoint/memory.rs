//! An in-memory [`CheckpointStore`]: the twin of the SQLite store for unit tests. It keeps
//! the same rules (fencing by owner and counter, never backwards, one ARN per uuid) and
//! passes the same contract suite ([`super::contract`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::future::BoxFuture;

use super::{
    CheckpointError, CheckpointStore, RestartAt, SequenceNumber, ShardCheckpoint, ShardLease,
    ShardStatus, WindowState,
};

#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    state: Mutex<State>,
    owner: String,
    /// Fails every checkpoint and window write with a storage error (a full disk).
    failing: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    mappings: BTreeMap<String, String>,
    /// (uuid, shard) → the shard's row and its lease (owner, counter).
    shards: BTreeMap<(String, String), (ShardCheckpoint, Option<String>, u64)>,
}

impl MemoryStore {
    pub(crate) fn new(owner: &str) -> Self {
        MemoryStore {
            state: Mutex::default(),
            owner: owner.to_string(),
            failing: Default::default(),
        }
    }

    /// From now on, checkpoint and window writes fail as a full disk would make them.
    pub(crate) fn fail_writes(&self) {
        self.failing
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn writable(&self) -> Result<(), CheckpointError> {
        match self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            true => Err(CheckpointError::Storage("disk I/O error (injected)".into())),
            false => Ok(()),
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, CheckpointError>,
    ) -> Result<T, CheckpointError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }
}

fn new_row(shard_id: &str) -> ShardCheckpoint {
    ShardCheckpoint {
        shard_id: shard_id.into(),
        sequence_number: None,
        status: ShardStatus::Reading,
        updated_at: now(),
        window: None,
        restart_at: None,
        owner: None,
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

/// The row `lease` may write, or why not.
fn leased<'s>(
    state: &'s mut State,
    lease: &ShardLease,
) -> Result<&'s mut ShardCheckpoint, CheckpointError> {
    let key = (lease.mapping_uuid.clone(), lease.shard_id.clone());
    match state.shards.get_mut(&key) {
        Some((row, Some(owner), counter)) if *owner == lease.owner && *counter == lease.counter => {
            Ok(row)
        }
        Some((_, owner, _)) => Err(CheckpointError::LeaseLost {
            shard_id: lease.shard_id.clone(),
            owner: owner.clone().unwrap_or_default(),
        }),
        None => Err(CheckpointError::LeaseLost {
            shard_id: lease.shard_id.clone(),
            owner: "nobody (the shard's state was reset)".into(),
        }),
    }
}

fn advance(row: &mut ShardCheckpoint, proposed: &SequenceNumber) -> Result<(), CheckpointError> {
    if let Some(current) = &row.sequence_number {
        if proposed < current {
            return Err(CheckpointError::Backwards {
                shard_id: row.shard_id.clone(),
                current: current.clone(),
                proposed: proposed.clone(),
            });
        }
    }
    row.sequence_number = Some(proposed.clone());
    row.restart_at = None;
    row.updated_at = now();
    Ok(())
}

impl CheckpointStore for MemoryStore {
    fn set_position<'a>(
        &'a self,
        uuid: &'a str,
        shard_id: &'a str,
        position: &'a RestartAt,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(async move {
            self.with(|state| {
                let entry = state
                    .shards
                    .entry((uuid.into(), shard_id.into()))
                    .or_insert_with(|| (new_row(shard_id), None, 0));
                entry.0.sequence_number = None;
                entry.0.window = None;
                entry.0.status = ShardStatus::Reading;
                entry.0.restart_at = Some(position.clone());
                entry.1 = None;
                entry.2 += 1;
                Ok(())
            })
        })
    }

    fn reset<'a>(&'a self, uuid: &'a str) -> BoxFuture<'a, Result<usize, CheckpointError>> {
        Box::pin(async move {
            self.with(|state| {
                let before = state.shards.len();
                state.shards.retain(|(u, _), _| u != uuid);
                state.mappings.remove(uuid);
                Ok(before - state.shards.len())
            })
        })
    }

    fn bind_mapping<'a>(
        &'a self,
        uuid: &'a str,
        arn: &'a str,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(async move {
            self.with(|state| match state.mappings.get(uuid) {
                Some(stored) if stored != arn => Err(CheckpointError::SourceChanged {
                    uuid: uuid.into(),
                    stored: stored.clone(),
                    configured: arn.into(),
                }),
                Some(_) => Ok(()),
                None => {
                    state.mappings.insert(uuid.into(), arn.into());
                    Ok(())
                }
            })
        })
    }

    fn shards<'a>(
        &'a self,
        uuid: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ShardCheckpoint>, CheckpointError>> {
        Box::pin(async move {
            self.with(|state| {
                Ok(state
                    .shards
                    .iter()
                    .filter(|((u, _), _)| u == uuid)
                    .map(|(_, (row, _, _))| row.clone())
                    .collect())
            })
        })
    }

    fn acquire<'a>(
        &'a self,
        uuid: &'a str,
        shard_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<(ShardLease, ShardCheckpoint)>, CheckpointError>> {
        Box::pin(async move {
            self.with(|state| {
                let entry = state
                    .shards
                    .entry((uuid.into(), shard_id.into()))
                    .or_insert_with(|| (new_row(shard_id), None, 0));
                // One owner, as in the SQLite store: a lease is simply taken over.
                entry.1 = Some(self.owner.clone());
                entry.2 += 1;
                let lease = ShardLease {
                    mapping_uuid: uuid.into(),
                    shard_id: shard_id.into(),
                    owner: self.owner.clone(),
                    counter: entry.2,
                };
                Ok(Some((lease, entry.0.clone())))
            })
        })
    }

    fn checkpoint<'a>(
        &'a self,
        lease: &'a ShardLease,
        sequence_number: &'a SequenceNumber,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(async move {
            self.writable()?;
            self.with(|state| advance(leased(state, lease)?, sequence_number))
        })
    }

    fn save_window<'a>(
        &'a self,
        lease: &'a ShardLease,
        sequence_number: Option<&'a SequenceNumber>,
        window: Option<&'a WindowState>,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(async move {
            self.writable()?;
            self.with(|state| {
                let row = leased(state, lease)?;
                // Both or neither: check before changing anything.
                let mut updated = row.clone();
                if let Some(seq) = sequence_number {
                    advance(&mut updated, seq)?;
                }
                updated.window = window.cloned();
                *row = updated;
                Ok(())
            })
        })
    }

    fn finish<'a>(
        &'a self,
        lease: &'a ShardLease,
        status: ShardStatus,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(async move {
            self.with(|state| {
                let key = (lease.mapping_uuid.clone(), lease.shard_id.clone());
                if let Some((row, owner, _)) = state.shards.get_mut(&key) {
                    row.status = status;
                    row.updated_at = now();
                    *owner = None;
                }
                Ok(())
            })
        })
    }

    fn release<'a>(&'a self, lease: &'a ShardLease) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(async move {
            self.with(|state| {
                let key = (lease.mapping_uuid.clone(), lease.shard_id.clone());
                if let Some((_, owner, _)) = state.shards.get_mut(&key) {
                    if owner.as_deref() == Some(lease.owner.as_str()) {
                        *owner = None;
                    }
                }
                Ok(())
            })
        })
    }
}
