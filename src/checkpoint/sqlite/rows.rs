//! The SQLite schema and its rows: reading shards, and the one checked write (lease, never
//! backwards, window) every checkpoint goes through.

use rusqlite::{params, Connection, OptionalExtension};

use super::super::{
    CheckpointError, RestartAt, SequenceNumber, ShardCheckpoint, ShardLease, ShardStatus,
    WindowState,
};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mappings (
    uuid TEXT PRIMARY KEY,
    event_source_arn TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS shards (
    mapping_uuid TEXT NOT NULL,
    shard_id TEXT NOT NULL,
    sequence_number TEXT,
    status TEXT NOT NULL,
    owner TEXT,
    lease_counter INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL,
    window TEXT,
    restart_at TEXT,
    PRIMARY KEY (mapping_uuid, shard_id)
);
";

pub(super) fn storage(e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Storage(e.to_string())
}

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(super) fn read_shards(
    conn: &Connection,
    uuid: &str,
) -> Result<Vec<ShardCheckpoint>, CheckpointError> {
    let mut stmt = conn
        .prepare(
            "SELECT shard_id, sequence_number, status, updated_at, window, restart_at FROM shards \
             WHERE mapping_uuid = ?1 ORDER BY shard_id",
        )
        .map_err(storage)?;
    let rows = stmt
        .query_map([uuid], |r| {
            Ok(Row {
                shard_id: r.get(0)?,
                seq: r.get(1)?,
                status: r.get(2)?,
                updated_at: r.get(3)?,
                window: r.get(4)?,
                restart_at: r.get(5)?,
            })
        })
        .map_err(storage)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(storage)?.into_checkpoint()?);
    }
    Ok(out)
}

/// One `shards` row as stored.
pub(super) struct Row {
    pub(super) shard_id: String,
    pub(super) seq: Option<String>,
    pub(super) status: String,
    pub(super) updated_at: String,
    pub(super) window: Option<String>,
    pub(super) restart_at: Option<String>,
}

impl Row {
    pub(super) fn into_checkpoint(self) -> Result<ShardCheckpoint, CheckpointError> {
        let shard_id = self.shard_id;
        Ok(ShardCheckpoint {
            owner: None,
            sequence_number: self
                .seq
                .map(SequenceNumber::parse)
                .transpose()
                .map_err(|e| storage(format!("shard {shard_id}: {e}")))?,
            status: ShardStatus::parse(&self.status).ok_or_else(|| {
                storage(format!(
                    "shard {shard_id}: unknown status `{}`",
                    self.status
                ))
            })?,
            window: self
                .window
                .map(|w| serde_json::from_str::<WindowState>(&w))
                .transpose()
                .map_err(|e| storage(format!("shard {shard_id}: stored window: {e}")))?,
            restart_at: match self.restart_at {
                None => None,
                Some(text) => Some(RestartAt::parse(&text).ok_or_else(|| {
                    storage(format!(
                        "shard {shard_id}: unknown restart position `{text}`"
                    ))
                })?),
            },
            shard_id,
            updated_at: self.updated_at,
        })
    }
}

/// Checks the lease and, when `proposed` is given, that it does not move backwards; then
/// writes the checkpoint (and the window, when `window` is `Some`).
/// Checks one checkpoint write against the shard's row (the lease it was read under, never
/// backwards) and applies it, inside `tx`, which the caller commits (`group` commits several
/// in one transaction). A refused write changes nothing.
pub(super) fn apply_checkpoint(
    tx: &rusqlite::Transaction<'_>,
    lease: &ShardLease,
    proposed: Option<&SequenceNumber>,
    window: Option<Option<&WindowState>>,
) -> Result<(), CheckpointError> {
    // Statements prepared once per connection: this runs after every batch.
    let row: Option<(Option<String>, Option<String>, i64)> = tx
        .prepare_cached(
            "SELECT sequence_number, owner, lease_counter FROM shards \
             WHERE mapping_uuid = ?1 AND shard_id = ?2",
        )
        .and_then(|mut select| {
            select
                .query_row(params![lease.mapping_uuid, lease.shard_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
        })
        .map_err(storage)?;
    let Some((current, owner, counter)) = row else {
        return Err(CheckpointError::LeaseLost {
            shard_id: lease.shard_id.clone(),
            owner: "nobody (the shard's state was reset)".into(),
        });
    };
    if owner.as_deref() != Some(lease.owner.as_str()) || counter as u64 != lease.counter {
        return Err(CheckpointError::LeaseLost {
            shard_id: lease.shard_id.clone(),
            owner: owner.unwrap_or_default(),
        });
    }
    if let Some(proposed) = proposed {
        if let Some(current) = current
            .map(SequenceNumber::parse)
            .transpose()
            .map_err(storage)?
        {
            if *proposed < current {
                return Err(CheckpointError::Backwards {
                    shard_id: lease.shard_id.clone(),
                    current,
                    proposed: proposed.clone(),
                });
            }
        }
        tx.prepare_cached(
            "UPDATE shards SET sequence_number = ?3, updated_at = ?4, restart_at = NULL \
             WHERE mapping_uuid = ?1 AND shard_id = ?2",
        )
        .and_then(|mut update| {
            update.execute(params![
                lease.mapping_uuid,
                lease.shard_id,
                proposed.as_str(),
                now()
            ])
        })
        .map_err(storage)?;
    }
    if let Some(window) = window {
        let text = window
            .map(serde_json::to_string)
            .transpose()
            .map_err(storage)?;
        tx.execute(
            "UPDATE shards SET window = ?3, updated_at = ?4 \
             WHERE mapping_uuid = ?1 AND shard_id = ?2",
            params![lease.mapping_uuid, lease.shard_id, text, now()],
        )
        .map_err(storage)?;
    }
    Ok(())
}

pub(super) fn reset(conn: &mut Connection, uuid: &str) -> Result<usize, CheckpointError> {
    let tx = conn.transaction().map_err(storage)?;
    let n = tx
        .execute("DELETE FROM shards WHERE mapping_uuid = ?1", [uuid])
        .map_err(storage)?;
    tx.execute("DELETE FROM mappings WHERE uuid = ?1", [uuid])
        .map_err(storage)?;
    tx.commit().map_err(storage)?;
    Ok(n)
}
