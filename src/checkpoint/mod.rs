//! Where stream mappings remember how far each shard has been processed.
//!
//! The rules every implementation keeps:
//! - a checkpoint is written only after the function confirmed the records up to it (the
//!   workers see to that with [`Watermark`]) and is durable before the next batch is invoked;
//! - it never moves backwards: [`SequenceNumber`]s compare numerically and a lower value is
//!   refused;
//! - keys are the mapping's uuid plus the shard id, and a uuid stays bound to the event
//!   source ARN it was first used with ([`CheckpointStore::bind_mapping`]).
//!
//! A worker holds a [`ShardLease`] while it reads a shard and passes it with every write. The
//! embedded SQLite store has a single owner, so a lease always succeeds; a shared store (a
//! DynamoDB lease table, as KCL keeps) implements the same trait and uses the lease's owner
//! and counter as a fencing token, answering [`CheckpointError::LeaseLost`] to a worker whose
//! shard was taken over.

pub(crate) mod admin;
pub(crate) mod catalog;
#[cfg(test)]
mod contract;
pub(crate) mod dynamodb;
#[cfg(test)]
pub(crate) mod memory;
pub(crate) mod sequence;
pub(crate) mod sqlite;
pub(crate) mod watermark;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::action::ErrorAction;
pub(crate) use sequence::SequenceNumber;
pub(crate) use sqlite::{SqliteStore, StoreLock};
pub(crate) use watermark::Watermark;

/// How far a shard has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ShardStatus {
    /// Being read (or will be, once leased).
    Reading,
    /// Read to its end and fully checkpointed: its children may start.
    Ended,
    /// Never read because the starting position (`LATEST`) was past its end.
    Skipped,
}

impl ShardStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ShardStatus::Reading => "reading",
            ShardStatus::Ended => "ended",
            ShardStatus::Skipped => "skipped",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "reading" => Some(ShardStatus::Reading),
            "ended" => Some(ShardStatus::Ended),
            "skipped" => Some(ShardStatus::Skipped),
            _ => None,
        }
    }

    /// Whether children of a shard in this state may start.
    pub(crate) fn is_finished(self) -> bool {
        matches!(self, ShardStatus::Ended | ShardStatus::Skipped)
    }
}

/// One shard's stored state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ShardCheckpoint {
    pub(crate) shard_id: String,
    /// The last sequence number whose records (and all before it) are done.
    pub(crate) sequence_number: Option<SequenceNumber>,
    pub(crate) status: ShardStatus,
    /// When the row last changed (RFC 3339).
    pub(crate) updated_at: String,
    /// The open tumbling window and its state, for mappings that use windows.
    pub(crate) window: Option<WindowState>,
    /// Where to read next, set by an operator (`esmd checkpoints set`); it wins over the
    /// checkpoint until the next checkpoint is written.
    pub(crate) restart_at: Option<RestartAt>,
    /// Who holds a live lease on the shard (shared stores; `None` when free or expired).
    pub(crate) owner: Option<String>,
}

/// An operator-chosen position for a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) enum RestartAt {
    TrimHorizon,
    Latest,
    AtTimestamp(chrono::DateTime<chrono::Utc>),
    /// Replays from this record (included).
    AtSequenceNumber(SequenceNumber),
}

impl RestartAt {
    /// The stored text form: `TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP:<rfc3339>`,
    /// `AT_SEQUENCE_NUMBER:<n>`.
    pub(crate) fn to_text(&self) -> String {
        match self {
            RestartAt::TrimHorizon => "TRIM_HORIZON".into(),
            RestartAt::Latest => "LATEST".into(),
            RestartAt::AtTimestamp(t) => format!("AT_TIMESTAMP:{}", t.to_rfc3339()),
            RestartAt::AtSequenceNumber(s) => format!("AT_SEQUENCE_NUMBER:{s}"),
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text.split_once(':') {
            None if text == "TRIM_HORIZON" => Some(RestartAt::TrimHorizon),
            None if text == "LATEST" => Some(RestartAt::Latest),
            Some(("AT_TIMESTAMP", t)) => chrono::DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|t| RestartAt::AtTimestamp(t.with_timezone(&chrono::Utc))),
            Some(("AT_SEQUENCE_NUMBER", n)) => SequenceNumber::parse(n)
                .ok()
                .map(RestartAt::AtSequenceNumber),
            _ => None,
        }
    }
}

/// A shard's open tumbling window: its bounds and the state the function last returned. It is
/// stored with the checkpoint so that a restart inside a window resumes the same state.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct WindowState {
    pub(crate) start: chrono::DateTime<chrono::Utc>,
    pub(crate) end: chrono::DateTime<chrono::Utc>,
    pub(crate) state: serde_json::Value,
}

/// The right to write one shard's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardLease {
    pub(crate) mapping_uuid: String,
    pub(crate) shard_id: String,
    /// Who holds the lease (host and process).
    pub(crate) owner: String,
    /// Incremented on every take-over; a shared store refuses writes with an older counter.
    pub(crate) counter: u64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckpointError {
    #[error(
        "mapping {uuid} was used with event source {stored}, not {configured}; a changed \
         source needs a new uuid (or delete the mapping's checkpoints with \
         `esmd checkpoints reset`)"
    )]
    SourceChanged {
        uuid: String,
        stored: String,
        configured: String,
    },
    #[error("checkpoint for {shard_id} would move backwards from {current} to {proposed}")]
    Backwards {
        shard_id: String,
        current: SequenceNumber,
        proposed: SequenceNumber,
    },
    #[error("lease on {shard_id} is held by {owner}")]
    LeaseLost { shard_id: String, owner: String },
    #[error("checkpoint store: {0}")]
    Storage(String),
}

impl CheckpointError {
    pub(crate) fn action(&self) -> ErrorAction {
        match self {
            CheckpointError::SourceChanged { .. } => ErrorAction::StopMapping,
            // A backwards write is a bug in the caller; the stored value stands.
            CheckpointError::Backwards { .. } => ErrorAction::Proceed,
            CheckpointError::LeaseLost { .. } => ErrorAction::StopMapping,
            CheckpointError::Storage(_) => ErrorAction::Fatal,
        }
    }
}

/// Durable per-shard progress. Every method is async so that a networked store fits.
pub(crate) trait CheckpointStore: Send + Sync {
    /// Binds `uuid` to `event_source_arn` on first use; refuses a different ARN later.
    fn bind_mapping<'a>(
        &'a self,
        uuid: &'a str,
        event_source_arn: &'a str,
    ) -> BoxFuture<'a, Result<(), CheckpointError>>;

    /// Every shard the mapping has state for.
    fn shards<'a>(
        &'a self,
        uuid: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ShardCheckpoint>, CheckpointError>>;

    /// Takes the lease on a shard, creating its row (status `reading`) if needed. Returns the
    /// stored state with the lease, or `None` when another owner holds it.
    fn acquire<'a>(
        &'a self,
        uuid: &'a str,
        shard_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<(ShardLease, ShardCheckpoint)>, CheckpointError>>;

    /// Moves the shard's checkpoint forward to `sequence_number`, durably.
    fn checkpoint<'a>(
        &'a self,
        lease: &'a ShardLease,
        sequence_number: &'a SequenceNumber,
    ) -> BoxFuture<'a, Result<(), CheckpointError>>;

    /// Replaces the shard's tumbling-window state (`None` closes the window) and, when given,
    /// moves the checkpoint forward, in one durable write: a restart never sees a checkpoint
    /// past records whose effect on the state was lost.
    fn save_window<'a>(
        &'a self,
        lease: &'a ShardLease,
        sequence_number: Option<&'a SequenceNumber>,
        window: Option<&'a WindowState>,
    ) -> BoxFuture<'a, Result<(), CheckpointError>>;

    /// Marks the shard `ended` (or `skipped`), which lets its children start.
    fn finish<'a>(
        &'a self,
        lease: &'a ShardLease,
        status: ShardStatus,
    ) -> BoxFuture<'a, Result<(), CheckpointError>>;

    /// Gives the lease up (shutdown); the checkpoint stays.
    fn release<'a>(&'a self, lease: &'a ShardLease) -> BoxFuture<'a, Result<(), CheckpointError>>;

    /// Operator (`esmd checkpoints set`): the shard's next reader starts at `position`; its
    /// checkpoint and window are cleared and any holder's lease is fenced off.
    fn set_position<'a>(
        &'a self,
        uuid: &'a str,
        shard_id: &'a str,
        position: &'a RestartAt,
    ) -> BoxFuture<'a, Result<(), CheckpointError>>;

    /// Operator (`esmd checkpoints reset`): forgets every shard of a mapping and its binding;
    /// returns how many shards were cleared.
    fn reset<'a>(&'a self, uuid: &'a str) -> BoxFuture<'a, Result<usize, CheckpointError>>;

    /// Takes the lease on a shard even while another instance holds it (lease balancing);
    /// the holder is fenced off. A store with one owner takes it as [`Self::acquire`] does.
    fn steal<'a>(
        &'a self,
        uuid: &'a str,
        shard_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<(ShardLease, ShardCheckpoint)>, CheckpointError>> {
        self.acquire(uuid, shard_id)
    }

    /// This instance's name as a lease owner.
    fn owner(&self) -> Option<&str> {
        None
    }

    /// How often a held lease must be renewed; `None` for a store with one owner, whose
    /// leases never expire.
    fn renew_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// Extends a held lease; [`CheckpointError::LeaseLost`] when another owner took it.
    fn renew<'a>(&'a self, _lease: &'a ShardLease) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(async { Ok(()) })
    }
}
