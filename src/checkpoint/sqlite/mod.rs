//! The embedded checkpoint store: one SQLite file in WAL mode with `synchronous = FULL`, so a
//! checkpoint that returned has reached the disk before the next batch is invoked.

use std::path::Path;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use rusqlite::{params, Connection, OptionalExtension};

mod catalog;
mod group;
mod lock;
mod rows;

use group::{Write, Writer};
pub(crate) use lock::StoreLock;
use rows::{now, read_shards, reset, storage, Row, SCHEMA};

use super::{
    CheckpointError, CheckpointStore, RestartAt, SequenceNumber, ShardCheckpoint, ShardLease,
    ShardStatus, WindowState,
};

/// The SQLite store. Cheap to clone; calls run on the blocking pool.
#[derive(Clone)]
pub(crate) struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Checkpoint writes, committed in groups.
    writer: Arc<Writer>,
    owner: String,
    /// The file, named in every error a call returns (`:memory:` in tests).
    path: Arc<str>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("owner", &self.owner)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, CheckpointError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| storage(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| storage(format!("cannot open {}: {e}", path.display())))?;
        Self::init(conn, &path.display().to_string())
    }

    /// An in-memory store, for tests.
    #[cfg(test)]
    pub(crate) fn in_memory() -> Result<Self, CheckpointError> {
        Self::init(Connection::open_in_memory().map_err(storage)?, ":memory:")
    }

    fn init(conn: Connection, path: &str) -> Result<Self, CheckpointError> {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(storage)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(storage)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(storage)?;
        conn.execute_batch(SCHEMA).map_err(storage)?;
        conn.execute_batch(catalog::SCHEMA).map_err(storage)?;
        // Stores written by older versions lack the later columns.
        for column in ["window", "restart_at"] {
            let present: bool = conn
                .query_row(
                    "SELECT COUNT(*) FROM pragma_table_info('shards') WHERE name = ?1",
                    [column],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(storage)?
                > 0;
            if !present {
                conn.execute_batch(&format!("ALTER TABLE shards ADD COLUMN {column} TEXT"))
                    .map_err(storage)?;
            }
        }
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            writer: Arc::default(),
            owner: format!("{host}:{}", std::process::id()),
            path: path.into(),
        })
    }

    async fn with<T, F>(&self, f: F) -> Result<T, CheckpointError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str) -> Result<T, CheckpointError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let owner = self.owner.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard, &owner)
        })
        .await
        .map_err(storage)?;
        result.map_err(|e| self.named(e))
    }

    /// A checkpoint write, committed with any others that are waiting ([`group`]).
    async fn write(&self, write: Write) -> Result<(), CheckpointError> {
        let result = self.writer.write(&self.conn, write).await;
        result.map_err(|e| self.named(e))
    }

    /// A disk that is full or failing: name the file, so the operator knows where to look.
    fn named(&self, e: CheckpointError) -> CheckpointError {
        match e {
            CheckpointError::Storage(m) => CheckpointError::Storage(format!("{}: {m}", self.path)),
            other => other,
        }
    }

    /// A mapping's shards, without a runtime (for tests of old stores).
    #[cfg(test)]
    pub(crate) fn shards_blocking(
        &self,
        uuid: &str,
    ) -> Result<Vec<ShardCheckpoint>, CheckpointError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        read_shards(&conn, uuid)
    }
}

/// Moves a shard to an operator-chosen position: the checkpoint and any window are cleared, the
/// lease counter raised.
fn set_position(
    conn: &mut Connection,
    uuid: &str,
    shard_id: &str,
    position: &RestartAt,
) -> Result<(), CheckpointError> {
    conn.execute(
        "INSERT INTO shards (mapping_uuid, shard_id, status, updated_at) \
         VALUES (?1, ?2, 'reading', ?3) ON CONFLICT DO NOTHING",
        params![uuid, shard_id, now()],
    )
    .map_err(storage)?;
    conn.execute(
        "UPDATE shards SET sequence_number = NULL, window = NULL, restart_at = ?3, \
         status = 'reading', owner = NULL, lease_counter = lease_counter + 1, updated_at = ?4 \
         WHERE mapping_uuid = ?1 AND shard_id = ?2",
        params![uuid, shard_id, position.to_text(), now()],
    )
    .map_err(storage)?;
    Ok(())
}

impl CheckpointStore for SqliteStore {
    fn set_position<'a>(
        &'a self,
        uuid: &'a str,
        shard_id: &'a str,
        position: &'a RestartAt,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        let (uuid, shard, position) = (uuid.to_string(), shard_id.to_string(), position.clone());
        Box::pin(self.with(move |conn, _| set_position(conn, &uuid, &shard, &position)))
    }

    fn reset<'a>(&'a self, uuid: &'a str) -> BoxFuture<'a, Result<usize, CheckpointError>> {
        let uuid = uuid.to_string();
        Box::pin(self.with(move |conn, _| reset(conn, &uuid)))
    }

    fn bind_mapping<'a>(
        &'a self,
        uuid: &'a str,
        event_source_arn: &'a str,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        let (uuid, arn) = (uuid.to_string(), event_source_arn.to_string());
        Box::pin(self.with(move |conn, _| {
            let tx = conn.transaction().map_err(storage)?;
            let stored: Option<String> = tx
                .query_row(
                    "SELECT event_source_arn FROM mappings WHERE uuid = ?1",
                    [&uuid],
                    |r| r.get(0),
                )
                .optional()
                .map_err(storage)?;
            match stored {
                Some(stored) if stored != arn => {
                    return Err(CheckpointError::SourceChanged {
                        uuid,
                        stored,
                        configured: arn,
                    })
                }
                Some(_) => {}
                None => {
                    tx.execute(
                        "INSERT INTO mappings (uuid, event_source_arn, created_at) VALUES (?1, ?2, ?3)",
                        params![uuid, arn, now()],
                    )
                    .map_err(storage)?;
                }
            }
            tx.commit().map_err(storage)
        }))
    }

    fn shards<'a>(
        &'a self,
        uuid: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ShardCheckpoint>, CheckpointError>> {
        let uuid = uuid.to_string();
        Box::pin(self.with(move |conn, _| read_shards(conn, &uuid)))
    }

    fn acquire<'a>(
        &'a self,
        uuid: &'a str,
        shard_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<(ShardLease, ShardCheckpoint)>, CheckpointError>> {
        let (uuid, shard) = (uuid.to_string(), shard_id.to_string());
        Box::pin(self.with(move |conn, owner| {
            let tx = conn.transaction().map_err(storage)?;
            tx.execute(
                "INSERT INTO shards (mapping_uuid, shard_id, status, updated_at) \
                 VALUES (?1, ?2, 'reading', ?3) ON CONFLICT DO NOTHING",
                params![uuid, shard, now()],
            )
            .map_err(storage)?;
            // A single-process store: whoever held the lease before is this daemon's past
            // life, so the lease is simply taken over and its counter bumped.
            tx.execute(
                "UPDATE shards SET owner = ?3, lease_counter = lease_counter + 1 \
                 WHERE mapping_uuid = ?1 AND shard_id = ?2",
                params![uuid, shard, owner],
            )
            .map_err(storage)?;
            let (row, counter): (Row, i64) = tx
                .query_row(
                    "SELECT sequence_number, status, updated_at, window, lease_counter, \
                     restart_at FROM shards WHERE mapping_uuid = ?1 AND shard_id = ?2",
                    params![uuid, shard],
                    |r| {
                        Ok((
                            Row {
                                shard_id: shard.clone(),
                                seq: r.get(0)?,
                                status: r.get(1)?,
                                updated_at: r.get(2)?,
                                window: r.get(3)?,
                                restart_at: r.get(5)?,
                            },
                            r.get(4)?,
                        ))
                    },
                )
                .map_err(storage)?;
            tx.commit().map_err(storage)?;
            let checkpoint = row.into_checkpoint()?;
            Ok(Some((
                ShardLease {
                    mapping_uuid: uuid,
                    shard_id: shard,
                    owner: owner.to_string(),
                    counter: counter as u64,
                },
                checkpoint,
            )))
        }))
    }

    fn checkpoint<'a>(
        &'a self,
        lease: &'a ShardLease,
        sequence_number: &'a SequenceNumber,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(self.write(Write {
            lease: lease.clone(),
            proposed: Some(sequence_number.clone()),
            window: None,
        }))
    }

    fn save_window<'a>(
        &'a self,
        lease: &'a ShardLease,
        sequence_number: Option<&'a SequenceNumber>,
        window: Option<&'a WindowState>,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(self.write(Write {
            lease: lease.clone(),
            proposed: sequence_number.cloned(),
            window: Some(window.cloned()),
        }))
    }

    fn finish<'a>(
        &'a self,
        lease: &'a ShardLease,
        status: ShardStatus,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        let lease = lease.clone();
        Box::pin(self.with(move |conn, _| {
            conn.execute(
                "UPDATE shards SET status = ?3, owner = NULL, updated_at = ?4 \
                 WHERE mapping_uuid = ?1 AND shard_id = ?2",
                params![lease.mapping_uuid, lease.shard_id, status.as_str(), now()],
            )
            .map_err(storage)?;
            Ok(())
        }))
    }

    fn release<'a>(&'a self, lease: &'a ShardLease) -> BoxFuture<'a, Result<(), CheckpointError>> {
        let lease = lease.clone();
        Box::pin(self.with(move |conn, _| {
            conn.execute(
                "UPDATE shards SET owner = NULL WHERE mapping_uuid = ?1 AND shard_id = ?2 AND owner = ?3",
                params![lease.mapping_uuid, lease.shard_id, lease.owner],
            )
            .map_err(storage)?;
            Ok(())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::parse(s).unwrap()
    }

    #[tokio::test]
    async fn checkpoints_persist_and_never_move_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/esmd.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store.bind_mapping("m1", "arn:s1").await.unwrap();
            let (lease, cp) = store.acquire("m1", "shard-0").await.unwrap().unwrap();
            assert_eq!(cp.sequence_number, None);
            assert_eq!(cp.status, ShardStatus::Reading);
            store.checkpoint(&lease, &seq("9")).await.unwrap();
            store.checkpoint(&lease, &seq("10")).await.unwrap();
            let err = store.checkpoint(&lease, &seq("9")).await.unwrap_err();
            assert!(matches!(err, CheckpointError::Backwards { .. }), "{err}");
            store.release(&lease).await.unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let (lease, cp) = store.acquire("m1", "shard-0").await.unwrap().unwrap();
        assert_eq!(cp.sequence_number, Some(seq("10")));
        assert_eq!(lease.counter, 2);
        store.finish(&lease, ShardStatus::Ended).await.unwrap();
        let shards = store.shards("m1").await.unwrap();
        assert_eq!(shards[0].status, ShardStatus::Ended);
    }

    #[tokio::test]
    async fn window_state_is_stored_with_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("esmd.db");
        let window = WindowState {
            start: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            end: chrono::DateTime::from_timestamp(1_700_000_060, 0).unwrap(),
            state: serde_json::json!({"count": 3, "keys": ["a"]}),
        };
        {
            let store = SqliteStore::open(&path).unwrap();
            let (lease, _) = store.acquire("m", "s").await.unwrap().unwrap();
            store
                .save_window(&lease, Some(&seq("5")), Some(&window))
                .await
                .unwrap();
            // A plain checkpoint leaves the window alone.
            store.checkpoint(&lease, &seq("6")).await.unwrap();
            let err = store
                .save_window(&lease, Some(&seq("4")), None)
                .await
                .unwrap_err();
            assert!(matches!(err, CheckpointError::Backwards { .. }));
        }
        let store = SqliteStore::open(&path).unwrap();
        let (lease, cp) = store.acquire("m", "s").await.unwrap().unwrap();
        assert_eq!(cp.sequence_number, Some(seq("6")));
        assert_eq!(cp.window, Some(window));
        store.save_window(&lease, None, None).await.unwrap();
        let (_, cp) = store.acquire("m", "s").await.unwrap().unwrap();
        assert_eq!(cp.window, None);
        assert_eq!(cp.sequence_number, Some(seq("6")));
    }

    #[test]
    fn a_store_from_before_windows_gains_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&SCHEMA.replace("    window TEXT,\n", ""))
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert!(store.shards_blocking("m").unwrap().is_empty());
    }
}
